// Package eap is the Extensible Authentication Protocol (RFC 3748) as IKEv2 carries it
// (RFC 7296 2.16): the packet format, the peer's and the authenticator's side of a
// conversation, and the methods EAP-Identity, EAP-MSCHAPv2 (RFC 2759, keys RFC 3079)
// and EAP-TLS (RFC 5216, TLS 1.3 RFC 9190). It does no I/O: a conversation takes
// packets and returns packets; EAP-TLS runs crypto/tls on an in-memory connection.
// Time and randomness are given.
package eap

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Code is an EAP packet's code (RFC 3748 4).
type Code uint8

// EAP codes.
const (
	CodeRequest  Code = 1
	CodeResponse Code = 2
	CodeSuccess  Code = 3
	CodeFailure  Code = 4
)

func (c Code) String() string {
	switch c {
	case CodeRequest:
		return "Request"
	case CodeResponse:
		return "Response"
	case CodeSuccess:
		return "Success"
	case CodeFailure:
		return "Failure"
	}
	return fmt.Sprintf("Code(%d)", uint8(c))
}

// Type is an EAP method type (RFC 3748 5, IANA "Method Types").
type Type uint8

// EAP method types.
const (
	TypeIdentity     Type = 1
	TypeNotification Type = 2
	TypeNak          Type = 3 // Legacy Nak
	TypeMD5          Type = 4
	TypeTLS          Type = 13
	TypeMSCHAPv2     Type = 26
)

func (t Type) String() string {
	switch t {
	case TypeIdentity:
		return "identity"
	case TypeNotification:
		return "notification"
	case TypeNak:
		return "nak"
	case TypeMD5:
		return "md5"
	case TypeTLS:
		return "tls"
	case TypeMSCHAPv2:
		return "mschapv2"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// MaxPacket bounds the EAP packets this package builds and accepts (an IKE message
// carries one, and IKE fragmentation takes care of the path MTU).
const MaxPacket = 16384

// Packet is one EAP packet. Type and Data are only present in requests and responses
// (Data is the type data after the type octet).
type Packet struct {
	Code Code
	ID   uint8
	Type Type
	Data []byte
}

// ErrMalformed is wrapped by every error of Parse.
var ErrMalformed = errors.New("malformed EAP packet")

// Parse decodes one EAP packet. The length field must match len(b) exactly; Data
// aliases b.
func Parse(b []byte) (Packet, error) {
	if len(b) < 4 {
		return Packet{}, fmt.Errorf("%w: %d octets, want at least 4", ErrMalformed, len(b))
	}
	if len(b) > MaxPacket {
		return Packet{}, fmt.Errorf("%w: %d octets, more than %d", ErrMalformed, len(b), MaxPacket)
	}
	p := Packet{Code: Code(b[0]), ID: b[1]}
	if n := int(binary.BigEndian.Uint16(b[2:4])); n != len(b) {
		return Packet{}, fmt.Errorf("%w: length field %d, packet %d octets", ErrMalformed, n, len(b))
	}
	switch p.Code {
	case CodeRequest, CodeResponse:
		if len(b) < 5 {
			return Packet{}, fmt.Errorf("%w: %s without a type", ErrMalformed, p.Code)
		}
		p.Type = Type(b[4])
		p.Data = b[5:]
	case CodeSuccess, CodeFailure:
		if len(b) != 4 {
			return Packet{}, fmt.Errorf("%w: %s with %d octets of data", ErrMalformed, p.Code, len(b)-4)
		}
	default:
		return Packet{}, fmt.Errorf("%w: unknown code %d", ErrMalformed, b[0])
	}
	return p, nil
}

// Marshal encodes p.
func (p Packet) Marshal() []byte {
	n := 4
	if p.Code == CodeRequest || p.Code == CodeResponse {
		n += 1 + len(p.Data)
	}
	b := make([]byte, 4, n)
	b[0], b[1] = byte(p.Code), p.ID
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	if n > 4 {
		b = append(b, byte(p.Type))
		b = append(b, p.Data...)
	}
	return b
}

// PeerMethod is the peer's (the client's) side of one method in one conversation.
type PeerMethod interface {
	Type() Type
	// Respond answers one request of the method (its type data) with the type data of
	// the response. An error ends the conversation: the peer gives up.
	Respond(req []byte) ([]byte, error)
	// Succeeded reports whether the method came to an end at which the
	// authenticator's EAP-Success is acceptable (MSCHAPv2: the authenticator's response
	// verified; TLS: the handshake completed and the server's certificate verified).
	Succeeded() bool
	// MSK is the Master Session Key (64 octets) once Succeeded, nil before or for
	// a method that derives none.
	MSK() []byte
	// Close frees what the method holds (EAP-TLS: its goroutine) and wipes its keys.
	Close()
}

// ServerMethod is the authenticator's side of one method in one conversation.
type ServerMethod interface {
	Type() Type
	// Start returns the type data of the method's first request to the peer whose
	// EAP identity is identity.
	Start(identity string) ([]byte, error)
	// Next takes the type data of the peer's response. It returns the next request's
	// type data (done false), or the outcome: done with err nil is success (MSK is
	// then available), done with an error is failure (the error says why, for the
	// log; it never holds a secret).
	Next(resp []byte) (req []byte, done bool, err error)
	MSK() []byte
	Close()
}
