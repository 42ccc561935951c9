package wire

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"testing"
)

// Every decoder has a fuzz target. Each asserts that decoding never panics, that errors
// are *Error values carrying a notify to send, and that a decoded value re-encodes to
// octets that decode to an equal value and re-encode identically. Where the format is
// canonical the re-encoding is the input itself; where it has reserved fields or a
// critical bit that decoding drops, the re-encoding has the input's length and differs
// only by cleared bits.

func checkDecodeErr(t *testing.T, err error) {
	t.Helper()
	var we *Error
	if !errors.As(err, &we) {
		t.Fatalf("error %v is not a *wire.Error", err)
	}
	switch we.Notify {
	case INVALID_SYNTAX, INVALID_MAJOR_VERSION:
	case UNSUPPORTED_CRITICAL_PAYLOAD:
		if len(we.Data) != 1 || PayloadType(we.Data[0]) != we.Payload {
			t.Fatalf("UNSUPPORTED_CRITICAL_PAYLOAD data %x for payload %v", we.Data, we.Payload)
		}
	default:
		t.Fatalf("error notify %v", we.Notify)
	}
	if we.Error() == "" || we.Reason == "" {
		t.Fatal("empty error text")
	}
}

// seedBodies returns payload bodies of the given types found in the golden chains and
// in the capture messages.
func seedBodies(f *testing.F, types ...PayloadType) [][]byte {
	var out [][]byte
	add := func(chain []rawPayload) {
		for _, rp := range chain {
			for _, t := range types {
				if rp.typ == t {
					out = append(out, rp.body)
				}
			}
		}
	}
	for _, tc := range goldenCases {
		add(rawChain(tc.first, hx(tc.wire)))
	}
	for _, m := range captureMessages(f) {
		if len(m) >= HeaderLen {
			add(rawChain(PayloadType(m[16]), m[HeaderLen:]))
		}
	}
	return out
}

func fuzzBody[T Payload](f *testing.F, parse func([]byte) (T, error), canonical bool, types ...PayloadType) {
	for _, b := range seedBodies(f, types...) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := parse(data)
		if err != nil {
			checkDecodeErr(t, err)
			return
		}
		enc := p.AppendBody(nil)
		p2, err := parse(enc)
		if err != nil {
			t.Fatalf("re-encoded %x does not decode: %v", enc, err)
		}
		if !reflect.DeepEqual(p, p2) {
			t.Fatalf("decoded %#v\nre-decoded %#v", p, p2)
		}
		if enc2 := p2.AppendBody(nil); !bytes.Equal(enc, enc2) {
			t.Fatalf("second encoding differs")
		}
		if canonical && !bytes.Equal(enc, data) {
			t.Fatalf("input %x\nre-encoded %x", data, enc)
		}
		if !onlyClearsBits(enc, data) {
			t.Fatalf("re-encoding sets bits: input %x\nre-encoded %x", data, enc)
		}
	})
}

func FuzzParseSA(f *testing.F) { fuzzBody(f, ParseSA, false, PayloadSA) }
func FuzzParseKE(f *testing.F) { fuzzBody(f, ParseKE, false, PayloadKE) }
func FuzzParseID(f *testing.F) {
	fuzzBody(f, func(b []byte) (*ID, error) {
		id, err := ParseID(b, len(b)%2 == 0)
		if err == nil {
			_ = id.String()
		}
		return id, err
	}, false, PayloadIDi, PayloadIDr)
}
func FuzzParseCert(f *testing.F)    { fuzzBody(f, ParseCert, true, PayloadCERT) }
func FuzzParseCertReq(f *testing.F) { fuzzBody(f, ParseCertReq, true, PayloadCERTREQ) }
func FuzzParseAuth(f *testing.F)    { fuzzBody(f, ParseAuth, false, PayloadAUTH) }
func FuzzParseNonce(f *testing.F)   { fuzzBody(f, ParseNonce, true, PayloadNonce) }
func FuzzParseNotify(f *testing.F) {
	for _, n := range []*Notify{
		NewNoNATsAllowed(netip.MustParseAddrPort("192.0.2.10:4500"), netip.MustParseAddrPort("198.51.100.1:4500")),
		NewNoNATsAllowed(netip.MustParseAddrPort("[2001:db8::1]:500"), netip.MustParseAddrPort("[2001:db8::2]:500")),
		NewAddressNotify(SWITCH_TO_IP_ADDRESS, netip.MustParseAddr("198.51.100.2")),
		NewAddressNotify(40999, netip.MustParseAddr("2001:db8::2")),
	} {
		f.Add(n.AppendBody(nil))
	}
	fuzzBody(f, func(b []byte) (*Notify, error) {
		n, err := ParseNotify(b)
		if err == nil {
			checkNotifyAccessors(panicf, n)
		}
		return n, err
	}, true, PayloadNotify)
}
func FuzzParseDelete(f *testing.F) { fuzzBody(f, ParseDelete, true, PayloadDelete) }
func FuzzParseVendor(f *testing.F) { fuzzBody(f, ParseVendor, true, PayloadVendor) }
func FuzzParseTS(f *testing.F) {
	fuzzBody(f, func(b []byte) (*TS, error) {
		ts, err := ParseTS(b, len(b)%2 == 0)
		if err == nil {
			for _, sel := range ts.Selectors {
				_ = sel.String()
			}
		}
		return ts, err
	}, false, PayloadTSi, PayloadTSr)
}
func FuzzParseCP(f *testing.F) {
	fuzzBody(f, func(b []byte) (*CP, error) {
		cp, err := ParseCP(b)
		if err == nil {
			for _, a := range cp.Attrs {
				a.Addr()
				a.Prefix()
			}
		}
		return cp, err
	}, false, PayloadCP)
}
func FuzzParseEAP(f *testing.F) { fuzzBody(f, ParseEAP, true, PayloadEAP) }
func FuzzParseSK(f *testing.F)  { fuzzBody(f, ParseSK, true, PayloadSK) }
func FuzzParseSKF(f *testing.F) { fuzzBody(f, ParseSKF, true, PayloadSKF) }

// panicf reports a failure where fuzzBody's parse function has no *testing.T.
func panicf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

// checkNotifyAccessors runs the typed accessors; they must not panic, an error they
// return must be a decoding error, and what they return must be what the matching
// constructor writes back (the address's own octets for a 16-octet IPv4-mapped address,
// which the constructors write as IPv4). It reports a failure with fatalf: t.Fatalf, or
// panicf where no *testing.T is at hand.
func checkNotifyAccessors(fatalf func(string, ...any), n *Notify) {
	checkErr := func(what string, err error) {
		var we *Error
		if !errors.As(err, &we) || we.Notify != INVALID_SYNTAX || we.Payload != PayloadNotify || we.Reason == "" {
			fatalf("%s: error %v is not an INVALID_SYNTAX *wire.Error about a Notify payload", what, err)
		}
	}
	if a, err := n.Address(); err == nil {
		if !bytes.Equal(a.AsSlice(), n.Data) {
			fatalf("Address %v from %x", a, n.Data)
		}
		if m := NewAddressNotify(n.NotifyType, a); !a.Is4In6() && !bytes.Equal(m.Data, n.Data) {
			fatalf("Address %v does not round-trip: %x, wrote %x", a, n.Data, m.Data)
		}
	}
	if a, err := n.SwitchAddress(); err == nil {
		if !bytes.Equal(a.AsSlice(), n.Data) {
			fatalf("SwitchAddress %v from %x", a, n.Data)
		}
		if m := NewAddressNotify(n.NotifyType, a); !a.Is4In6() && !bytes.Equal(m.Data, n.Data) {
			fatalf("SwitchAddress %v does not round-trip: %x, wrote %x", a, n.Data, m.Data)
		}
		if b, err := n.Address(); n.NotifyType == SWITCH_TO_IP_ADDRESS && (err != nil || b != a) {
			fatalf("SwitchAddress %v, Address %v %v", a, b, err)
		}
	} else {
		checkErr("SwitchAddress", err)
	}
	if src, dst, err := n.NoNATsAllowed(); err == nil {
		if src.Addr().Is4() != dst.Addr().Is4() {
			fatalf("NoNATsAllowed families differ: %v %v", src, dst)
		}
		m := NewNoNATsAllowed(src, dst)
		if !src.Addr().Is4In6() && !dst.Addr().Is4In6() && !bytes.Equal(m.Data, n.Data) {
			fatalf("NoNATsAllowed %v %v does not round-trip: %x, wrote %x", src, dst, n.Data, m.Data)
		}
		s2, d2, err := m.NoNATsAllowed()
		if err != nil || s2.Addr().Unmap() != src.Addr().Unmap() || d2.Addr().Unmap() != dst.Addr().Unmap() ||
			s2.Port() != src.Port() || d2.Port() != dst.Port() {
			fatalf("NoNATsAllowed %v %v re-read as %v %v %v", src, dst, s2, d2, err)
		}
	} else {
		checkErr("NoNATsAllowed", err)
	}
	n.RMOBIKE()
	n.Group()
	n.SignatureHashAlgorithms()
	_ = n.String()
}

func seedMessages(f *testing.F) [][]byte {
	msgs := captureMessages(f)
	msgs = append(msgs, hx(rfc7634Message))
	for _, tc := range goldenCases {
		ps, err := ParsePayloads(tc.first, hx(tc.wire))
		if err != nil {
			f.Fatal(err)
		}
		m := &Message{Header: Header{SPIi: 1, SPIr: 2, Exchange: IKE_AUTH, Flags: FlagInitiator, MessageID: 1}, Payloads: ps}
		msgs = append(msgs, m.Append(nil))
	}
	return msgs
}

func FuzzParseHeader(f *testing.F) {
	for _, m := range seedMessages(f) {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHeader(data)
		if err != nil {
			checkDecodeErr(t, err)
			return
		}
		if enc := h.Append(nil); !bytes.Equal(enc, data[:HeaderLen]) {
			t.Fatalf("input %x\nre-encoded %x", data[:HeaderLen], enc)
		}
	})
}

func FuzzParseMessage(f *testing.F) {
	for _, m := range seedMessages(f) {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMessage(data)
		if err != nil {
			checkDecodeErr(t, err)
			return
		}
		enc := m.Append(nil)
		m2, err := ParseMessage(enc)
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("decoded %#v\nre-decoded %#v", m, m2)
		}
		if !bytes.Equal(m2.Append(nil), enc) {
			t.Fatal("second encoding differs")
		}
		if !onlyClearsBits(enc, data) {
			t.Fatalf("re-encoding sets bits: input %x\nre-encoded %x", data, enc)
		}
	})
}

func FuzzParsePayloads(f *testing.F) {
	for _, tc := range goldenCases {
		f.Add(append([]byte{byte(tc.first)}, hx(tc.wire)...))
	}
	for _, m := range captureMessages(f) {
		if len(m) >= HeaderLen {
			f.Add(append([]byte{m[16]}, m[HeaderLen:]...))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		first, chain := PayloadType(data[0]), data[1:]
		ps, err := ParsePayloads(first, chain)
		if err != nil {
			checkDecodeErr(t, err)
			return
		}
		if len(ps) > MaxPayloads {
			t.Fatalf("%d payloads", len(ps))
		}
		if len(ps) > 0 && ps[0].Type() != first {
			t.Fatalf("first payload %v, chain starts with %v", ps[0].Type(), first)
		}
		enc := AppendPayloads(nil, ps)
		ps2, err := ParsePayloads(first, enc)
		if err != nil {
			t.Fatalf("re-encoded chain does not decode: %v", err)
		}
		if !reflect.DeepEqual(ps, ps2) {
			t.Fatalf("decoded %#v\nre-decoded %#v", ps, ps2)
		}
		if !bytes.Equal(AppendPayloads(nil, ps2), enc) {
			t.Fatal("second encoding differs")
		}
		if !onlyClearsBits(enc, chain) {
			t.Fatalf("re-encoding sets bits: input %x\nre-encoded %x", chain, enc)
		}
		for _, p := range ps {
			if n, ok := p.(*Notify); ok {
				checkNotifyAccessors(t.Fatalf, n)
			}
		}
	})
}

func FuzzIDFromString(f *testing.F) {
	for _, s := range []string{"gw.example.org", "@gw", "user@example.org", "198.51.100.7", "2001:db8::1",
		"CN=gw.example.org, O=Example", "/C=CH/O=x/CN=y", "@#0102", "keyid:#00ff", "%null", "C=CH, E=a@b, 2.5.4.3=x\\,y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id := IDFromString(s)
		txt := id.String()
		if id.IDType == ID_DER_ASN1_DN {
			// A DN we encoded prints and reads back to the same attribute values.
			if id2 := IDFromString(txt); !id.Equal(&id2) {
				t.Fatalf("%q -> %q -> %x, want %x", s, txt, id2.Data, id.Data)
			}
		}
		// The ID fits an ID payload and survives its body codec.
		body := id.AppendBody(nil)
		if len(body) <= 0xffff-GenericHeaderLen {
			if _, err := ParseID(body, true); err != nil {
				t.Fatalf("%q: %v", s, err)
			}
		}
	})
}
