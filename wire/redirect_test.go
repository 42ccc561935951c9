package wire

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

func TestRedirectNotifies(t *testing.T) {
	ni := bytes.Repeat([]byte{0xab}, 32)
	for _, gw := range []netip.Addr{netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("2001:db8::2")} {
		n := NewRedirect(gw, ni)
		// On the wire and back.
		var m Message
		m.Header = Header{SPIi: 1, Version: Version, Exchange: IKE_SA_INIT, Flags: FlagResponse}
		m.Payloads = []Payload{n, NewRedirectedFrom(gw)}
		got, err := ParseMessage(m.Append(nil))
		if err != nil {
			t.Fatal(err)
		}
		a, fqdn, nonce, err := FindNotify(got.Payloads, REDIRECT).Redirect()
		if err != nil || a != gw || fqdn != "" || !bytes.Equal(nonce, ni) {
			t.Errorf("REDIRECT %v: %v %q %x %v", gw, a, fqdn, nonce, err)
		}
		a, _, nonce, err = FindNotify(got.Payloads, REDIRECTED_FROM).Redirect()
		if err != nil || a != gw || len(nonce) != 0 {
			t.Errorf("REDIRECTED_FROM %v: %v %x %v", gw, a, nonce, err)
		}
	}
	// The layout of RFC 5685 8.1: type, length, identity, nonce.
	if d := NewRedirect(netip.MustParseAddr("192.0.2.7"), []byte{9}).Data; !bytes.Equal(d, []byte{1, 4, 192, 0, 2, 7, 9}) {
		t.Errorf("REDIRECT data %x", d)
	}
	fq := &Notify{NotifyType: REDIRECT, Data: append([]byte{3, 14}, "vpn.example.org"[:14]...)}
	if _, name, _, err := fq.Redirect(); err != nil || name != "vpn.example.or" {
		t.Errorf("FQDN: %q %v", name, err)
	}
	for name, d := range map[string][]byte{
		"empty":          nil,
		"short":          {1, 4, 192, 0},
		"bad length":     {1, 3, 192, 0, 2},
		"v6 in 4":        {2, 4, 192, 0, 2, 7},
		"unknown type":   {9, 1, 1},
		"empty fqdn":     {3, 0},
		"from with tail": {1, 4, 192, 0, 2, 7, 1},
	} {
		typ := REDIRECT
		if name == "from with tail" {
			typ = REDIRECTED_FROM
		}
		var we *Error
		if _, _, _, err := (&Notify{NotifyType: typ, Data: d}).Redirect(); !errors.As(err, &we) || we.Notify != INVALID_SYNTAX {
			t.Errorf("%s: %v", name, err)
		}
	}
}
