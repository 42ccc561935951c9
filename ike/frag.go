package ike

import (
	"errors"
	"fmt"

	"github.com/mobikevpn/mobikevpn/wire"
)

// IKE fragmentation (RFC 7383): protected messages larger than the path allows are sent
// as Encrypted Fragment payloads, each encrypted and authenticated on its own, and
// reassembled from them.

const (
	// DefaultFragmentSize is the largest IP datagram an IKE fragment makes (strongSwan's
	// fragment_size default; RFC 7383 2.5.1 recommends 1280 for IPv6).
	DefaultFragmentSize = 1280
	// maxFragments and maxReassembly bound what a peer can make us keep.
	maxFragments  = 128
	maxReassembly = 64 << 10
)

var (
	errFragmentsLost = errors.New("reassembly restarted")
	errTooLarge      = errors.New("reassembled message too large")
	errPreauthMemory = errors.New("pre-authentication memory exhausted")
)

// fragBuffer collects the fragments of one message.
type fragBuffer struct {
	msgID     uint32
	total     uint16
	parts     [][]byte
	got       int
	size      int
	innerNext wire.PayloadType
}

// maxIKEMessage is the largest IKE message (UDP payload without the non-ESP marker)
// that fits the fragment size on sa's path.
func (e *Engine) maxIKEMessage(sa *IKESA) int {
	n := e.cfg.FragmentSize - 8 // UDP header
	if sa.remote.Addr().Is4() {
		n -= 20
	} else {
		n -= 40
	}
	if sa.local.Port() == e.cfg.NATTPort {
		n -= 4 // non-ESP marker
	}
	return n
}

// sealMessage encodes and protects payloads under header h: one datagram, or several
// SKF fragments when fragmentation was negotiated and the message is too large.
func (e *Engine) sealMessage(sa *IKESA, h wire.Header, payloads []wire.Payload) ([][]byte, error) {
	if sa.handedOver {
		return nil, errHandedOver
	}
	inner, innerNext := encodeInner(payloads)
	limit := e.maxIKEMessage(sa)
	whole := wire.HeaderLen + wire.GenericHeaderLen + sa.skOut.SealedLen(len(inner))
	if !sa.fragment || whole <= limit {
		data, err := sa.sealInner(h, inner, innerNext)
		if err != nil {
			return nil, err
		}
		return [][]byte{data}, nil
	}
	// The largest chunk whose fragment message fits the limit.
	overhead := wire.HeaderLen + wire.SKFHeaderLen
	chunk := limit - overhead
	for chunk > 0 && overhead+sa.skOut.SealedLen(chunk) > limit {
		chunk--
	}
	if chunk < 64 {
		return nil, fmt.Errorf("fragment size %d leaves no room for data", e.cfg.FragmentSize)
	}
	total := (len(inner) + chunk - 1) / chunk
	if total > maxFragments {
		return nil, fmt.Errorf("message of %d octets needs %d fragments", len(inner), total)
	}
	out := make([][]byte, 0, total)
	for i := 0; i < total; i++ {
		part := inner[i*chunk : min((i+1)*chunk, len(inner))]
		next := wire.PayloadNone
		if i == 0 {
			next = innerNext
		}
		bodyLen := sa.skOut.SealedLen(len(part))
		b := make([]byte, 0, overhead+bodyLen)
		b = wire.AppendSKFHeader(b, h, next, uint16(i+1), uint16(total), bodyLen)
		b, err := sa.skOut.Seal(b, part)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// openMessage decrypts a protected message, or a fragment of one. complete is false
// while fragments are missing; frag is the fragment number (0 for an unfragmented
// message). A *wire.Error means the content is authentic but malformed.
func (e *Engine) openMessage(sa *IKESA, data []byte, m *wire.Message, response bool) (payloads []wire.Payload, complete bool, frag uint16, err error) {
	if len(m.Payloads) == 0 {
		return nil, false, 0, errNotProtected
	}
	skf, ok := m.Payloads[len(m.Payloads)-1].(*wire.SKF)
	if !ok {
		ps, err := sa.open(data, m)
		return ps, err == nil, 0, err
	}
	if !sa.fragment {
		return nil, false, skf.Number, errors.New("fragment without negotiated IKE fragmentation")
	}
	if skf.Total == 0 || skf.Number == 0 || skf.Number > skf.Total || skf.Total > maxFragments {
		return nil, false, skf.Number, errors.New("bad fragment numbers")
	}
	plain, err := sa.skIn.Open(data[:len(data)-len(skf.Body)], skf.Body)
	if err != nil {
		return nil, false, skf.Number, err
	}
	limit, room := maxReassembly, -1
	if !sa.authenticated() {
		limit, room = maxPreauthMessage, e.gate.room(e.cfg.PreauthMemory)
	}
	whole, first, err := sa.win.addFragment(response, m.Header.MessageID, skf, plain, limit, room)
	if whole == nil || err != nil {
		return nil, false, skf.Number, err
	}
	sa.im.noteInner(sa, whole, first)
	ps, err := wire.ParsePayloads(first, whole)
	return ps, err == nil, skf.Number, err
}
