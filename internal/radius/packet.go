package radius

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
)

// Code is a RADIUS packet's Code (RFC 2865 section 3).
type Code uint8

// The codes of the authentication exchange.
const (
	AccessRequest   Code = 1
	AccessAccept    Code = 2
	AccessReject    Code = 3
	AccessChallenge Code = 11
)

func (c Code) String() string {
	switch c {
	case AccessRequest:
		return "Access-Request"
	case AccessAccept:
		return "Access-Accept"
	case AccessReject:
		return "Access-Reject"
	case AccessChallenge:
		return "Access-Challenge"
	}
	return fmt.Sprintf("Code(%d)", uint8(c))
}

// Attribute types used here (RFC 2865, 2869, 3162, 3579).
const (
	attrUserName             = 1
	attrNASIPAddress         = 4
	attrNASPort              = 5
	attrServiceType          = 6
	attrReplyMessage         = 18
	attrState                = 24
	attrVendorSpecific       = 26
	attrCalledStationID      = 30
	attrCallingStationID     = 31
	attrNASIdentifier        = 32
	attrAcctSessionID        = 44
	attrNASPortType          = 61
	attrEAPMessage           = 79
	attrMessageAuthenticator = 80
	attrNASPortID            = 87
	attrNASIPv6Address       = 95
)

// Values and the Microsoft vendor attributes (RFC 2548).
const (
	serviceTypeFramed  = 2
	nasPortTypeVirtual = 5
	vendorMicrosoft    = 311
	msMPPESendKey      = 16
	msMPPERecvKey      = 17
)

const (
	headerLen = 20   // Code, Identifier, Length, Authenticator
	authLen   = 16   // the Request/Response Authenticator and Message-Authenticator
	maxPacket = 4096 // RFC 2865 section 3
	maxValue  = 253  // an attribute's value: 255 minus Type and Length
	minMSKLen = 64   // strongSwan zero-pads the MSK to this length
)

// ErrMalformed is wrapped by the errors about an answer that breaks the protocol.
var ErrMalformed = errors.New("malformed RADIUS packet")

// Attribute is one attribute of an answer, as received.
type Attribute struct {
	Type  uint8
	Value []byte
}

// parseAttributes splits the attribute area of a packet. Each attribute has a
// Length of at least 2 that fits in what is left; anything else is malformed.
func parseAttributes(b []byte) ([]Attribute, error) {
	var attrs []Attribute
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, fmt.Errorf("%w: truncated attribute header", ErrMalformed)
		}
		n := int(b[1])
		if n < 2 || n > len(b) {
			return nil, fmt.Errorf("%w: attribute %d has length %d (%d octets left)", ErrMalformed, b[0], n, len(b))
		}
		attrs = append(attrs, Attribute{Type: b[0], Value: b[2:n:n]})
		b = b[n:]
	}
	return attrs, nil
}

// encoder builds a packet: the header, then the attributes in order.
type encoder struct {
	b   []byte
	err error
}

func newEncoder(code Code, id uint8, auth [authLen]byte) *encoder {
	e := &encoder{b: make([]byte, headerLen, 512)}
	e.b[0], e.b[1] = byte(code), id
	copy(e.b[4:headerLen], auth[:])
	return e
}

func (e *encoder) add(typ uint8, v []byte) {
	if len(v) > maxValue {
		if e.err == nil {
			e.err = fmt.Errorf("radius: attribute %d: %d octets (at most %d)", typ, len(v), maxValue)
		}
		return
	}
	e.b = append(e.b, typ, byte(2+len(v)))
	e.b = append(e.b, v...)
}

func (e *encoder) addString(typ uint8, s string) { e.add(typ, []byte(s)) }

func (e *encoder) addUint32(typ uint8, v uint32) { e.add(typ, binary.BigEndian.AppendUint32(nil, v)) }

// finish sets the Length and, if secret is given, appends a Message-Authenticator
// computed over the whole packet (RFC 3579 section 3.2), the last attribute.
func (e *encoder) finish(secret []byte) ([]byte, error) {
	if e.err != nil {
		return nil, e.err
	}
	var ma int
	if secret != nil {
		ma = len(e.b) + 2
		e.add(attrMessageAuthenticator, make([]byte, authLen))
	}
	if len(e.b) > maxPacket {
		return nil, fmt.Errorf("radius: packet of %d octets (at most %d)", len(e.b), maxPacket)
	}
	binary.BigEndian.PutUint16(e.b[2:4], uint16(len(e.b)))
	if secret != nil {
		copy(e.b[ma:ma+authLen], messageAuthenticator(e.b, nil, ma, secret))
	}
	return e.b, nil
}

// messageAuthenticator is HMAC-MD5 keyed with the secret over pkt with the
// Message-Authenticator's value (at offset ma) zeroed and, for an answer, the
// Request Authenticator in place of the Response Authenticator (reqAuth non-nil).
func messageAuthenticator(pkt, reqAuth []byte, ma int, secret []byte) []byte {
	m := hmac.New(md5.New, secret)
	m.Write(pkt[:4])
	if reqAuth != nil {
		m.Write(reqAuth)
	} else {
		m.Write(pkt[4:headerLen])
	}
	m.Write(pkt[headerLen:ma])
	m.Write(make([]byte, authLen))
	m.Write(pkt[ma+authLen:])
	return m.Sum(nil)
}

// responseAuthenticator is MD5(Code|Identifier|Length|RequestAuth|Attributes|Secret).
func responseAuthenticator(pkt, reqAuth, secret []byte) []byte {
	h := md5.New()
	h.Write(pkt[:4])
	h.Write(reqAuth)
	h.Write(pkt[headerLen:])
	h.Write(secret)
	return h.Sum(nil)
}

// header checks the framing of a received datagram and returns the packet, cut
// to its Length (octets beyond it are padding, RFC 2865 section 3).
func header(d []byte) ([]byte, error) {
	if len(d) < headerLen {
		return nil, fmt.Errorf("%w: %d octets", ErrMalformed, len(d))
	}
	n := int(binary.BigEndian.Uint16(d[2:4]))
	if n < headerLen || n > maxPacket || n > len(d) {
		return nil, fmt.Errorf("%w: Length %d in a datagram of %d octets", ErrMalformed, n, len(d))
	}
	return d[:n], nil
}

// verifyAnswer checks an answer to the request whose Request Authenticator is
// reqAuth: its code, its attributes' framing, the Response Authenticator and a
// Message-Authenticator (required in every answer: our requests carry EAP-Message,
// RFC 3579 section 3.2). The comparisons are in constant time. pkt is cut to its
// Length already (header).
func verifyAnswer(pkt, reqAuth, secret []byte) ([]Attribute, error) {
	switch Code(pkt[0]) {
	case AccessAccept, AccessReject, AccessChallenge:
	default:
		return nil, fmt.Errorf("%w: unexpected %v", ErrMalformed, Code(pkt[0]))
	}
	attrs, err := parseAttributes(pkt[headerLen:])
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(responseAuthenticator(pkt, reqAuth, secret), pkt[4:headerLen]) != 1 {
		return nil, errors.New("radius: wrong Response Authenticator")
	}
	ma, off := -1, headerLen
	for _, a := range attrs {
		if a.Type == attrMessageAuthenticator {
			if ma >= 0 || len(a.Value) != authLen {
				return nil, fmt.Errorf("%w: Message-Authenticator repeated or of %d octets", ErrMalformed, len(a.Value))
			}
			ma = off + 2
		}
		off += 2 + len(a.Value)
	}
	if ma < 0 {
		return nil, errors.New("radius: no Message-Authenticator")
	}
	if subtle.ConstantTimeCompare(messageAuthenticator(pkt, reqAuth, ma, secret), pkt[ma:ma+authLen]) != 1 {
		return nil, errors.New("radius: wrong Message-Authenticator")
	}
	return attrs, nil
}

// answerOf reads the attributes of a verified answer. An Access-Accept's MS-MPPE
// keys are decrypted with reqAuth and secret and make the MSK; when they are
// present but cannot be decrypted the error says so (the Answer is still filled in,
// without MSK).
func answerOf(code Code, attrs []Attribute, reqAuth, secret []byte) (Answer, error) {
	a := Answer{Code: code, Attributes: attrs}
	var send, recv []byte
	var keyErr error
	for _, at := range attrs {
		switch at.Type {
		case attrEAPMessage:
			a.EAP = append(a.EAP, at.Value...)
		case attrState:
			if a.State == nil {
				a.State = append([]byte{}, at.Value...)
			}
		case attrReplyMessage:
			a.ReplyMessage += string(at.Value)
		case attrVendorSpecific:
			if code != AccessAccept {
				continue
			}
			s, r, err := mppeKeys(at.Value, reqAuth, secret)
			if err == nil && (s != nil && send != nil || r != nil && recv != nil) {
				err = fmt.Errorf("%w: MS-MPPE key repeated", ErrMalformed)
			}
			if err != nil {
				keyErr = err
				continue
			}
			if s != nil {
				send = s
			}
			if r != nil {
				recv = r
			}
		}
	}
	if keyErr != nil {
		return a, keyErr
	}
	if send != nil && recv != nil {
		a.MSK = buildMSK(recv, send)
	}
	return a, nil
}

// buildMSK joins the keys as strongSwan's eap-radius does (libradius
// radius_socket.c decrypt_msk): MS-MPPE-Recv-Key then MS-MPPE-Send-Key, zero-padded
// to 64 octets when shorter.
func buildMSK(recv, send []byte) []byte {
	msk := append(append([]byte{}, recv...), send...)
	if len(msk) < minMSKLen {
		msk = append(msk, make([]byte, minMSKLen-len(msk))...)
	}
	return msk
}

// mppeKeys reads one Vendor-Specific attribute. For Microsoft's (RFC 2548) it walks
// the vendor attributes inside and decrypts an MS-MPPE-Send-Key or -Recv-Key; other
// vendors' attributes are ignored.
func mppeKeys(v, reqAuth, secret []byte) (send, recv []byte, err error) {
	if len(v) < 4 || binary.BigEndian.Uint32(v[:4]) != vendorMicrosoft {
		return nil, nil, nil
	}
	for b := v[4:]; len(b) > 0; {
		if len(b) < 2 || b[1] < 2 || int(b[1]) > len(b) {
			return nil, nil, fmt.Errorf("%w: Microsoft vendor attribute framing", ErrMalformed)
		}
		typ, val := b[0], b[2:b[1]]
		b = b[b[1]:]
		if typ != msMPPESendKey && typ != msMPPERecvKey {
			continue
		}
		k, err := decryptMPPEKey(val, reqAuth, secret)
		if err != nil {
			return nil, nil, err
		}
		if typ == msMPPESendKey {
			if send != nil {
				return nil, nil, fmt.Errorf("%w: MS-MPPE-Send-Key repeated", ErrMalformed)
			}
			send = k
		} else {
			if recv != nil {
				return nil, nil, fmt.Errorf("%w: MS-MPPE-Recv-Key repeated", ErrMalformed)
			}
			recv = k
		}
	}
	return send, recv, nil
}

// decryptMPPEKey decrypts an MS-MPPE-Send-Key or -Recv-Key value (RFC 2548 section
// 2.4.2): a 2-octet Salt A, then C = c(1)..c(n) with b(1) = MD5(S + R + A),
// b(i) = MD5(S + c(i-1)), p(i) = c(i) xor b(i), S the secret and R the Request
// Authenticator. The plaintext's first octet is the key's length, which must fit.
func decryptMPPEKey(v, reqAuth, secret []byte) ([]byte, error) {
	if len(v) < 2+authLen || (len(v)-2)%authLen != 0 {
		return nil, fmt.Errorf("%w: MS-MPPE key of %d octets", ErrMalformed, len(v))
	}
	salt, c := v[:2], v[2:]
	p := make([]byte, len(c))
	h := md5.New()
	h.Write(secret)
	h.Write(reqAuth)
	h.Write(salt)
	for i := 0; i < len(c); i += authLen {
		b := h.Sum(nil)
		subtle.XORBytes(p[i:i+authLen], c[i:i+authLen], b)
		h.Reset()
		h.Write(secret)
		h.Write(c[i : i+authLen])
	}
	if p[0] == 0 || int(p[0]) > len(p)-1 {
		return nil, fmt.Errorf("%w: MS-MPPE key length %d in %d octets", ErrMalformed, p[0], len(p)-1)
	}
	return p[1 : 1+int(p[0]) : 1+int(p[0])], nil
}
