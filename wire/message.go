package wire

import (
	"encoding/binary"
	"fmt"
)

// MaxPayloads bounds the number of payloads ParsePayloads accepts in one chain.
const MaxPayloads = 256

// ParseMessage decodes an IKE message: the header and its chain of unencrypted payloads.
// The header's Length must equal len(b). An SK or SKF payload, if present, is the last
// payload and is returned as *SK or *SKF, still encrypted; because it is last, the
// associated data for its integrity check is b[:len(b)-len(sk.Body)]. The returned
// message shares no memory with b.
func ParseMessage(b []byte) (*Message, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return nil, err
	}
	if uint64(h.Length) != uint64(len(b)) {
		return nil, syntaxErr(PayloadNone, "header length field %d, message is %d octets", h.Length, len(b))
	}
	ps, err := ParsePayloads(h.NextPayload, b[HeaderLen:])
	if err != nil {
		return nil, err
	}
	return &Message{Header: h, Payloads: ps}, nil
}

// Append appends the message: the header, with NextPayload set to the first payload's
// type and Length to the encoded length (m.Header's own values of these are ignored and
// m is not modified), then the payload chain as AppendPayloads writes it.
func (m *Message) Append(b []byte) []byte {
	start := len(b)
	h := m.Header
	h.NextPayload = PayloadNone
	if len(m.Payloads) > 0 {
		h.NextPayload = m.Payloads[0].Type()
	}
	b = h.Append(b)
	b = AppendPayloads(b, m.Payloads)
	binary.BigEndian.PutUint32(b[start+24:], uint32(len(b)-start))
	return b
}

// ParsePayloads decodes a chain of payloads whose first payload has type first; b must
// hold exactly the chain. It is used both for a message's unencrypted payloads and for
// the decrypted content of an SK payload.
//
// Payloads come back as pointers (*SA, *KE, *ID, ...). A payload of a type this package
// does not know is returned as *Unknown when its critical bit is clear (consumers skip
// it); when the bit is set, decoding fails with an *Error carrying Notify
// UNSUPPORTED_CRITICAL_PAYLOAD and Data = the type octet (RFC 7296 2.5). An SK or SKF
// payload ends the chain: it must be the last payload, and its Next Payload field is
// returned as InnerNext. At most MaxPayloads payloads are accepted.
func ParsePayloads(first PayloadType, b []byte) ([]Payload, error) {
	var ps []Payload
	next := first
	for next != PayloadNone {
		t := next
		if len(ps) == MaxPayloads {
			return nil, syntaxErr(PayloadNone, "more than %d payloads", MaxPayloads)
		}
		if len(b) < GenericHeaderLen {
			return nil, syntaxErr(t, "generic header truncated: %d octets remain", len(b))
		}
		next = PayloadType(b[0])
		critical := b[1]&0x80 != 0
		length := int(binary.BigEndian.Uint16(b[2:4]))
		if length < GenericHeaderLen || length > len(b) {
			return nil, syntaxErr(t, "payload length %d, %d octets remain", length, len(b))
		}
		body := b[GenericHeaderLen:length]
		b = b[length:]
		p, err := parseBody(t, critical, body)
		if err != nil {
			return nil, err
		}
		switch q := p.(type) {
		case *SK:
			q.InnerNext = next
			next = PayloadNone
		case *SKF:
			q.InnerNext = next
			next = PayloadNone
		}
		ps = append(ps, p)
	}
	if len(b) != 0 {
		if n := len(ps); n > 0 && (ps[n-1].Type() == PayloadSK || ps[n-1].Type() == PayloadSKF) {
			return nil, syntaxErr(ps[n-1].Type(), "not the last payload (%d octets follow)", len(b))
		}
		return nil, syntaxErr(PayloadNone, "%d octets after the last payload", len(b))
	}
	return ps, nil
}

// parseBody decodes one payload body of type t.
func parseBody(t PayloadType, critical bool, body []byte) (Payload, error) {
	switch t {
	case PayloadSA:
		return ParseSA(body)
	case PayloadKE:
		return ParseKE(body)
	case PayloadIDi, PayloadIDr:
		return ParseID(body, t == PayloadIDi)
	case PayloadCERT:
		return ParseCert(body)
	case PayloadCERTREQ:
		return ParseCertReq(body)
	case PayloadAUTH:
		return ParseAuth(body)
	case PayloadNonce:
		return ParseNonce(body)
	case PayloadNotify:
		return ParseNotify(body)
	case PayloadDelete:
		return ParseDelete(body)
	case PayloadVendor:
		return ParseVendor(body)
	case PayloadTSi, PayloadTSr:
		return ParseTS(body, t == PayloadTSi)
	case PayloadSK:
		return ParseSK(body)
	case PayloadCP:
		return ParseCP(body)
	case PayloadEAP:
		return ParseEAP(body)
	case PayloadSKF:
		return ParseSKF(body)
	}
	if critical {
		return nil, &Error{
			Notify:  UNSUPPORTED_CRITICAL_PAYLOAD,
			Payload: t,
			Data:    []byte{byte(t)},
			Reason:  "unsupported payload type with the critical bit set",
		}
	}
	return &Unknown{PayloadType: t, Body: clone(body)}, nil
}

// AppendPayloads appends the chain ps: each generic header's Next Payload is the type of
// the following payload (0 after the last), and its Payload Length is patched in after
// the body. An *SK or *SKF payload must be the last one; its Next Payload field is its
// InnerNext. The critical bit is set only for an *Unknown payload with Critical.
//
// Every payload must fit its 16-bit length field; a larger one is a programming error
// and panics (decoded payloads always fit).
func AppendPayloads(b []byte, ps []Payload) []byte {
	for i, p := range ps {
		next := PayloadNone
		if i+1 < len(ps) {
			next = ps[i+1].Type()
		}
		critical := false
		switch q := p.(type) {
		case *SK:
			next = q.InnerNext
		case *SKF:
			next = q.InnerNext
		case *Unknown:
			critical = q.Critical
		}
		start := len(b)
		b = appendGeneric(b, next, critical, 0)
		b = p.AppendBody(b)
		n := len(b) - start
		if n > 0xffff {
			panic(fmt.Sprintf("wire: %s payload of %d octets does not fit its length field", p.Type(), n))
		}
		binary.BigEndian.PutUint16(b[start+2:], uint16(n))
	}
	return b
}

// clone returns a copy of b, or nil when b is empty, so that decoded values never alias
// the input and decode the same way however they were produced.
func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// Find returns the first payload of type T in ps (for example Find[*SA](ps)), or T's zero
// value (a nil pointer) when there is none. For IDi/IDr and TSi/TSr use FindID and FindTS.
func Find[T Payload](ps []Payload) T {
	for _, p := range ps {
		if q, ok := p.(T); ok {
			return q
		}
	}
	var zero T
	return zero
}

// FindID returns the first IDi (initiator true) or IDr payload in ps, or nil.
func FindID(ps []Payload, initiator bool) *ID {
	for _, p := range ps {
		if q, ok := p.(*ID); ok && q.Initiator == initiator {
			return q
		}
	}
	return nil
}

// FindTS returns the first TSi (initiator true) or TSr payload in ps, or nil.
func FindTS(ps []Payload, initiator bool) *TS {
	for _, p := range ps {
		if q, ok := p.(*TS); ok && q.Initiator == initiator {
			return q
		}
	}
	return nil
}

// FindNotify returns the first Notify payload of type t in ps, or nil.
func FindNotify(ps []Payload, t NotifyType) *Notify {
	for _, p := range ps {
		if n, ok := p.(*Notify); ok && n.NotifyType == t {
			return n
		}
	}
	return nil
}

// FindNotifies returns every Notify payload of type t in ps, in order.
func FindNotifies(ps []Payload, t NotifyType) []*Notify {
	var ns []*Notify
	for _, p := range ps {
		if n, ok := p.(*Notify); ok && n.NotifyType == t {
			ns = append(ns, n)
		}
	}
	return ns
}
