package wire

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// wantSyntaxErr fails unless err is an INVALID_SYNTAX *Error about a Notify payload
// whose text contains every one of words.
func wantSyntaxErr(t *testing.T, what string, err error, words ...string) {
	t.Helper()
	var we *Error
	if !errors.As(err, &we) || we.Notify != INVALID_SYNTAX || we.Payload != PayloadNotify {
		t.Errorf("%s: error %v, want an INVALID_SYNTAX *Error about a Notify payload", what, err)
		return
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: error %q does not mention %q", what, err, w)
		}
	}
}

func TestSwitchAddress(t *testing.T) {
	v4, v6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	mapped := netip.MustParseAddr("::ffff:198.51.100.7")
	// The Notify Message Type is not checked: any number the peers agreed on works.
	for _, typ := range []NotifyType{SWITCH_TO_IP_ADDRESS, 40971, 65535, COOKIE2} {
		for _, a := range []netip.Addr{v4, v6} {
			n := NewAddressNotify(typ, a)
			got, err := n.SwitchAddress()
			if err != nil || got != a {
				t.Errorf("type %d, %v: %v %v", typ, a, got, err)
			}
			// Through the wire and back.
			p, err := ParseNotify(n.AppendBody(nil))
			if err != nil {
				t.Fatal(err)
			}
			if p.NotifyType != typ {
				t.Errorf("type %d came back as %d", typ, p.NotifyType)
			}
			if got, err := p.SwitchAddress(); err != nil || got != a {
				t.Errorf("parsed type %d, %v: %v %v", typ, a, got, err)
			}
		}
	}
	// NewAddressNotify writes an IPv4-mapped address as IPv4.
	if n := NewAddressNotify(40971, mapped); len(n.Data) != 4 {
		t.Errorf("mapped address written as %d octets", len(n.Data))
	} else if got, err := n.SwitchAddress(); err != nil || got != mapped.Unmap() {
		t.Errorf("mapped: %v %v", got, err)
	}
	// A peer's 16-octet mapped address is returned as it came.
	m16 := mapped.As16()
	if got, err := (&Notify{NotifyType: 40971, Data: m16[:]}).SwitchAddress(); err != nil || got != mapped {
		t.Errorf("16-octet mapped: %v %v", got, err)
	}

	bad := map[string]*Notify{
		"no data":       {NotifyType: 40971},
		"1 octet":       {NotifyType: 40971, Data: []byte{1}},
		"3 octets":      {NotifyType: 40971, Data: []byte{1, 2, 3}},
		"5 octets":      {NotifyType: 40971, Data: make([]byte, 5)},
		"15 octets":     {NotifyType: 40971, Data: make([]byte, 15)},
		"17 octets":     {NotifyType: 40971, Data: make([]byte, 17)},
		"address+port":  {NotifyType: 40971, Data: make([]byte, 6)},
		"protocol IKE":  {NotifyType: 40971, Protocol: ProtoIKE, Data: v4.AsSlice()},
		"protocol ESP":  {NotifyType: 40971, Protocol: ProtoESP, Data: v6.AsSlice()},
		"4-octet SPI":   {NotifyType: 40971, SPI: []byte{1, 2, 3, 4}, Data: v4.AsSlice()},
		"8-octet SPI":   {NotifyType: SWITCH_TO_IP_ADDRESS, Protocol: ProtoIKE, SPI: make([]byte, 8), Data: v6.AsSlice()},
		"ESP with SPI":  {NotifyType: SWITCH_TO_IP_ADDRESS, Protocol: ProtoESP, SPI: []byte{1, 2, 3, 4}, Data: v4.AsSlice()},
		"NO_NATS shape": NewNoNATsAllowed(netip.MustParseAddrPort("192.0.2.1:500"), netip.MustParseAddrPort("198.51.100.1:500")),
	}
	for what, n := range bad {
		a, err := n.SwitchAddress()
		if err == nil {
			t.Errorf("%s: accepted as %v", what, a)
			continue
		}
		if a.IsValid() {
			t.Errorf("%s: error with address %v", what, a)
		}
		wantSyntaxErr(t, what, err, "SWITCH_TO_IP_ADDRESS", "want 4 or 16 octets, protocol 0, no SPI")
	}
	// The error names the configured type's number.
	_, err := (&Notify{NotifyType: 50000, Data: []byte{1}}).SwitchAddress()
	wantSyntaxErr(t, "type 50000", err, "50000", "1 octets of data")

	// Address is unchanged for the built-in type.
	if a, err := NewAddressNotify(SWITCH_TO_IP_ADDRESS, v6).Address(); err != nil || a != v6 {
		t.Errorf("Address: %v %v", a, err)
	}
}

func TestNoNATsAllowed(t *testing.T) {
	ap := netip.MustParseAddrPort
	good := []struct {
		src, dst         netip.AddrPort
		wantSrc, wantDst netip.AddrPort
		wire             []byte
	}{
		{ap("192.0.2.10:4500"), ap("198.51.100.1:4500"), ap("192.0.2.10:4500"), ap("198.51.100.1:4500"),
			[]byte{192, 0, 2, 10, 198, 51, 100, 1, 0x11, 0x94, 0x11, 0x94}},
		{ap("192.0.2.10:500"), ap("198.51.100.1:4500"), ap("192.0.2.10:500"), ap("198.51.100.1:4500"),
			[]byte{192, 0, 2, 10, 198, 51, 100, 1, 0x01, 0xf4, 0x11, 0x94}},
		{ap("[::ffff:192.0.2.10]:65535"), ap("[::ffff:198.51.100.1]:0"), ap("192.0.2.10:65535"), ap("198.51.100.1:0"),
			[]byte{192, 0, 2, 10, 198, 51, 100, 1, 0xff, 0xff, 0, 0}},
		{ap("[::ffff:192.0.2.10]:500"), ap("198.51.100.1:500"), ap("192.0.2.10:500"), ap("198.51.100.1:500"),
			[]byte{192, 0, 2, 10, 198, 51, 100, 1, 0x01, 0xf4, 0x01, 0xf4}},
		{ap("[2001:db8::1]:4500"), ap("[2001:db8:1::2]:500"), ap("[2001:db8::1]:4500"), ap("[2001:db8:1::2]:500"),
			[]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
				0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
				0x11, 0x94, 0x01, 0xf4}},
	}
	for _, g := range good {
		n := NewNoNATsAllowed(g.src, g.dst)
		if n.NotifyType != NO_NATS_ALLOWED || n.Protocol != ProtoNone || len(n.SPI) != 0 {
			t.Errorf("%v -> %v: %+v", g.src, g.dst, n)
		}
		if !bytes.Equal(n.Data, g.wire) {
			t.Errorf("%v -> %v: data %x, want %x", g.src, g.dst, n.Data, g.wire)
		}
		body := n.AppendBody(nil)
		if want := append([]byte{0, 0, 0x40, 0x12}, g.wire...); !bytes.Equal(body, want) {
			t.Errorf("%v -> %v: body %x, want %x", g.src, g.dst, body, want)
		}
		p, err := ParseNotify(body)
		if err != nil {
			t.Fatal(err)
		}
		s, d, err := p.NoNATsAllowed()
		if err != nil || s != g.wantSrc || d != g.wantDst {
			t.Errorf("%v -> %v: got %v -> %v, %v", g.src, g.dst, s, d, err)
		}
	}

	// Families that still differ after Unmap: both in their 16-octet form.
	n := NewNoNATsAllowed(ap("192.0.2.10:500"), ap("[2001:db8::1]:500"))
	if len(n.Data) != 36 {
		t.Fatalf("mixed families: %d octets", len(n.Data))
	}
	if s, d, err := n.NoNATsAllowed(); err != nil || s.Addr().Unmap() != netip.MustParseAddr("192.0.2.10") || d != ap("[2001:db8::1]:500") {
		t.Errorf("mixed families: %v %v %v", s, d, err)
	}
	// A peer's 16-octet mapped addresses are returned as they came.
	m := append(append(bytes.Repeat([]byte{0}, 10), 0xff, 0xff, 192, 0, 2, 1), bytes.Repeat([]byte{0}, 10)...)
	m = append(m, 0xff, 0xff, 198, 51, 100, 1, 0x11, 0x94, 0x11, 0x94)
	if s, d, err := (&Notify{NotifyType: NO_NATS_ALLOWED, Data: m}).NoNATsAllowed(); err != nil ||
		s != ap("[::ffff:192.0.2.1]:4500") || d != ap("[::ffff:198.51.100.1]:4500") {
		t.Errorf("16-octet mapped: %v %v %v", s, d, err)
	}

	v4 := NewNoNATsAllowed(ap("192.0.2.10:4500"), ap("198.51.100.1:4500")).Data
	v6 := NewNoNATsAllowed(ap("[2001:db8::1]:4500"), ap("[2001:db8::2]:4500")).Data
	shapes := map[string]*Notify{
		"no data":                {NotifyType: NO_NATS_ALLOWED},
		"8 octets (no ports)":    {NotifyType: NO_NATS_ALLOWED, Data: v4[:8]},
		"11 octets":              {NotifyType: NO_NATS_ALLOWED, Data: v4[:11]},
		"13 octets":              {NotifyType: NO_NATS_ALLOWED, Data: append(append([]byte{}, v4...), 0)},
		"6 octets (one addr)":    {NotifyType: NO_NATS_ALLOWED, Data: v4[:6]},
		"24 octets":              {NotifyType: NO_NATS_ALLOWED, Data: make([]byte, 24)},
		"32 octets (no ports)":   {NotifyType: NO_NATS_ALLOWED, Data: v6[:32]},
		"35 octets":              {NotifyType: NO_NATS_ALLOWED, Data: v6[:35]},
		"37 octets":              {NotifyType: NO_NATS_ALLOWED, Data: append(append([]byte{}, v6...), 0)},
		"IPv4 and IPv6, 24 oct.": {NotifyType: NO_NATS_ALLOWED, Data: append(append(append([]byte{}, v4[:4]...), v6[:16]...), v4[8:]...)},
		"protocol IKE":           {NotifyType: NO_NATS_ALLOWED, Protocol: ProtoIKE, Data: v4},
		"protocol ESP":           {NotifyType: NO_NATS_ALLOWED, Protocol: ProtoESP, Data: v6},
		"4-octet SPI":            {NotifyType: NO_NATS_ALLOWED, SPI: []byte{1, 2, 3, 4}, Data: v4},
		"ESP with SPI":           {NotifyType: NO_NATS_ALLOWED, Protocol: ProtoESP, SPI: []byte{1, 2, 3, 4}, Data: v6},
	}
	for what, n := range shapes {
		s, d, err := n.NoNATsAllowed()
		if err == nil {
			t.Errorf("%s: accepted as %v -> %v", what, s, d)
			continue
		}
		if s.IsValid() || d.IsValid() {
			t.Errorf("%s: error with %v -> %v", what, s, d)
		}
		wantSyntaxErr(t, what, err, "NO_NATS_ALLOWED", "want 12 (IPv4) or 36 (IPv6) octets, protocol 0, no SPI")
	}
	for _, typ := range []NotifyType{UPDATE_SA_ADDRESSES, NAT_DETECTION_SOURCE_IP, UNEXPECTED_NAT_DETECTED, SWITCH_TO_IP_ADDRESS} {
		_, _, err := (&Notify{NotifyType: typ, Data: v4}).NoNATsAllowed()
		wantSyntaxErr(t, typ.String(), err, typ.String(), "not NO_NATS_ALLOWED")
	}
}
