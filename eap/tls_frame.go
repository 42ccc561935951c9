package eap

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The EAP-TLS framing (RFC 5216 3.1, kept by RFC 9190): the type data is a flags octet,
// the four-octet TLS Message Length when L is set, then TLS data.
const (
	tlsFlagLength = 0x80 // L: the TLS Message Length is included
	tlsFlagMore   = 0x40 // M: more fragments follow
	tlsFlagStart  = 0x20 // S: EAP-TLS Start (the server's first request)
)

// DefaultTLSFragmentSize is the TLS data per EAP-TLS packet unless a method's
// FragmentSize says otherwise (strongSwan's eap-tls fragment_size is 1024 as well,
// though it counts the EAP header into it).
const DefaultTLSFragmentSize = 1024

// maxTLSFragmentSize is the most TLS data that fits an EAP packet of MaxPacket octets:
// EAP header (4), type (1), flags (1), TLS Message Length (4).
const maxTLSFragmentSize = MaxPacket - 10

// maxTLSMessage bounds one reassembled EAP-TLS message (a TLS flight) either way.
const maxTLSMessage = 64 << 10

// maxTLSRounds bounds the EAP-TLS packets one side processes in a conversation
// (every fragment and every acknowledgement counts).
const maxTLSRounds = 50

// ErrTLSProtocol is wrapped by the errors of malformed or unexpected EAP-TLS packets.
var ErrTLSProtocol = errors.New("eap-tls: protocol violation")

// tlsHeader is one parsed EAP-TLS packet (its type data).
type tlsHeader struct {
	flags  byte
	hasLen bool
	msgLen uint32
	data   []byte // TLS data, aliases the packet
}

func (h tlsHeader) start() bool { return h.flags&tlsFlagStart != 0 }
func (h tlsHeader) more() bool  { return h.flags&tlsFlagMore != 0 }

// ack reports whether h is an acknowledgement: no TLS data, no more fragments announced.
func (h tlsHeader) ack() bool { return len(h.data) == 0 && !h.more() && !h.start() }

// parseTLSData decodes EAP-TLS type data. The reserved flag bits are ignored.
func parseTLSData(b []byte) (tlsHeader, error) {
	if len(b) < 1 {
		return tlsHeader{}, fmt.Errorf("%w: no flags octet", ErrTLSProtocol)
	}
	h := tlsHeader{flags: b[0], data: b[1:]}
	if h.flags&tlsFlagLength != 0 {
		if len(b) < 5 {
			return tlsHeader{}, fmt.Errorf("%w: L flag set but %d octets follow the flags, want at least 4", ErrTLSProtocol, len(b)-1)
		}
		h.hasLen, h.msgLen, h.data = true, binary.BigEndian.Uint32(b[1:5]), b[5:]
		if h.msgLen > maxTLSMessage {
			return tlsHeader{}, fmt.Errorf("%w: TLS Message Length %d, more than %d", ErrTLSProtocol, h.msgLen, maxTLSMessage)
		}
		if int(h.msgLen) < len(h.data) {
			return tlsHeader{}, fmt.Errorf("%w: TLS Message Length %d, but the packet carries %d octets", ErrTLSProtocol, h.msgLen, len(h.data))
		}
	}
	if h.more() && len(h.data) == 0 {
		return tlsHeader{}, fmt.Errorf("%w: M flag set on a fragment without data", ErrTLSProtocol)
	}
	if !h.start() && len(h.data) == 0 && h.hasLen && h.msgLen != 0 {
		return tlsHeader{}, fmt.Errorf("%w: TLS Message Length %d on a packet without data", ErrTLSProtocol, h.msgLen)
	}
	return h, nil
}

// tlsReassembler collects the fragments of one incoming EAP-TLS message.
type tlsReassembler struct {
	buf    []byte
	want   int // the announced total, -1 when the first fragment had no L flag
	active bool
}

// add takes one fragment carrying data. It reports whether the message is complete;
// take then returns it.
func (r *tlsReassembler) add(h tlsHeader) (bool, error) {
	if len(h.data) == 0 {
		return false, fmt.Errorf("%w: fragment without data", ErrTLSProtocol)
	}
	if !r.active {
		r.active, r.want = true, -1
		if h.hasLen {
			r.want = int(h.msgLen)
		}
	} else if h.hasLen && r.want >= 0 && int(h.msgLen) != r.want {
		return false, fmt.Errorf("%w: TLS Message Length changed from %d to %d between fragments", ErrTLSProtocol, r.want, h.msgLen)
	}
	limit := maxTLSMessage
	if r.want >= 0 {
		limit = r.want
	}
	if len(r.buf)+len(h.data) > limit {
		return false, fmt.Errorf("%w: fragments add up to more than %d octets", ErrTLSProtocol, limit)
	}
	r.buf = append(r.buf, h.data...)
	if h.more() {
		if len(r.buf) == r.want {
			return false, fmt.Errorf("%w: more fragments announced after all %d octets arrived", ErrTLSProtocol, r.want)
		}
		return false, nil
	}
	if r.want >= 0 && len(r.buf) != r.want {
		return false, fmt.Errorf("%w: message of %d octets, TLS Message Length said %d", ErrTLSProtocol, len(r.buf), r.want)
	}
	return true, nil
}

// pending reports whether fragments of a message have arrived but not its last.
func (r *tlsReassembler) pending() bool { return r.active }

// take returns the complete message and resets r.
func (r *tlsReassembler) take() []byte {
	m := r.buf
	*r = tlsReassembler{}
	return m
}

// tlsFragmenter splits one outgoing EAP-TLS message into packets of at most size
// octets of TLS data. The first packet carries the L flag and the total length (as
// strongSwan does by default, also when the message fits one packet).
type tlsFragmenter struct {
	msg  []byte
	off  int
	size int
}

// begin starts sending msg and returns the first packet's type data.
func (f *tlsFragmenter) begin(msg []byte, size int) []byte {
	if size <= 0 {
		size = DefaultTLSFragmentSize
	}
	*f = tlsFragmenter{msg: msg, size: min(size, maxTLSFragmentSize)}
	return f.next()
}

// pending reports whether packets of the current message remain to be sent.
func (f *tlsFragmenter) pending() bool { return f.off < len(f.msg) }

// next returns the next packet's type data.
func (f *tlsFragmenter) next() []byte {
	first := f.off == 0
	chunk := f.msg[f.off:min(f.off+f.size, len(f.msg))]
	f.off += len(chunk)
	b := make([]byte, 1, 5+len(chunk))
	if first {
		b[0] |= tlsFlagLength
		b = binary.BigEndian.AppendUint32(b, uint32(len(f.msg)))
	}
	if f.pending() {
		b[0] |= tlsFlagMore
	}
	b = append(b, chunk...)
	if !f.pending() {
		f.msg, f.off = nil, 0
	}
	return b
}

// tlsAck is the type data of an acknowledgement (and of the peer's final empty response).
func tlsAck() []byte { return []byte{0} }
