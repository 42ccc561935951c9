package crypto

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/mobikevpn/mobikevpn/wire"
)

// propString renders a proposal as "IKE#1:aes128gcm16/aes256gcm16-prfsha256-x25519":
// algorithms of one type joined by '/', types by '-', in transform order.
func propString(p wire.Proposal) string {
	proto := map[wire.ProtocolID]string{wire.ProtoIKE: "IKE", wire.ProtoESP: "ESP"}[p.Protocol]
	var parts []string
	var last wire.TransformType
	for _, t := range p.Transforms {
		name := transformName(t)
		if len(parts) > 0 && t.Type == last {
			parts[len(parts)-1] += "/" + name
		} else {
			parts = append(parts, name)
		}
		last = t.Type
	}
	return fmt.Sprintf("%s#%d:%s", proto, p.Num, strings.Join(parts, "-"))
}

func propStrings(ps []wire.Proposal) []string {
	var out []string
	for _, p := range ps {
		out = append(out, propString(p))
	}
	return out
}

func TestParseProposal(t *testing.T) {
	for _, c := range []struct {
		esp  bool
		in   string
		want []string // or the error's substring as the single element "error: ..."
	}{
		{false, "aes128gcm16-prfsha256-x25519", []string{"IKE#1:aes128gcm16-prfsha256-x25519"}},
		{false, "aes256-sha256-prfsha256-modp2048", []string{"IKE#1:aes256-prfsha256-sha256-modp2048"}},
		{false, "aes256-sha256-modp2048", []string{"IKE#1:aes256-prfsha256-sha256-modp2048"}},
		{false, "aes128-sha384-sha256-ecp384", []string{"IKE#1:aes128-prfsha384/prfsha256-sha384/sha256-ecp384"}},
		{false, "aes128gcm16-sha256-x25519", []string{"IKE#1:aes128gcm16-prfsha256-x25519"}},
		{false, "aes256gcm16-aes128gcm16-prfsha384-prfsha256-ecp384-modp3072", []string{"IKE#1:aes256gcm16/aes128gcm16-prfsha384/prfsha256-ecp384/modp3072"}},
		{false, "aes128gcm16-aes128-sha256-x25519", []string{"IKE#1:aes128gcm16-prfsha256-x25519", "IKE#2:aes128-prfsha256-sha256-x25519"}},
		{false, "aes128-aes128gcm16-prfsha512-sha256-x25519", []string{"IKE#1:aes128gcm16-prfsha512-x25519", "IKE#2:aes128-prfsha512-sha256-x25519"}},
		{false, "chacha20poly1305-prfsha256-curve25519", []string{"IKE#1:chacha20poly1305-prfsha256-x25519"}},
		{false, "AES128GCM16-PRFSHA256-X25519", []string{"IKE#1:aes128gcm16-prfsha256-x25519"}},
		{false, "aes128gcm-aes256gcm128-prfsha256-ecp256", []string{"IKE#1:aes128gcm16/aes256gcm16-prfsha256-ecp256"}},
		{false, "aes-sha2_256-modp3072", []string{"IKE#1:aes128-prfsha256-sha256-modp3072"}},
		{false, "aes128-aes128-sha256-sha256-x25519", []string{"IKE#1:aes128-prfsha256-sha256-x25519"}},
		{false, " aes128gcm16 - prfsha256 - x25519 ", []string{"IKE#1:aes128gcm16-prfsha256-x25519"}},
		{false, "aes128gcm16-prfsha256-x25519,aes256-sha384-ecp384", []string{"IKE#1:aes128gcm16-prfsha256-x25519", "IKE#2:aes256-prfsha384-sha384-ecp384"}},
		{false, "default", []string{
			"IKE#1:aes128gcm16/aes256gcm16/chacha20poly1305-prfsha256/prfsha384/prfsha512-x25519/ecp256/ecp384/modp3072/modp2048",
			"IKE#2:aes256/aes128-prfsha256/prfsha384/prfsha512-sha256/sha384/sha512-x25519/ecp256/ecp384/modp3072/modp2048"}},
		{false, "aes128gcm16-x25519", []string{`error: "aes128gcm16-x25519": no PRF`}},
		{false, "aes128-prfsha256-x25519", []string{`error: aes128 needs an integrity algorithm`}},
		{false, "aes128-sha256", []string{`error: no key exchange method`}},
		{false, "prfsha256-sha256-x25519", []string{`error: no encryption algorithm`}},
		{false, "aes128-sha256-x25519-esn", []string{`error: "esn" is not allowed in an IKE proposal`}},
		{false, "aes128-sha256-x25519-none", []string{`error: "none" is not allowed in an IKE proposal`}},
		{false, "aes128-sha256-foo-x25519", []string{`error: unknown algorithm "foo"`}},
		{false, "aes128-md5-x25519", []string{`error: unknown algorithm "md5"`}},
		{false, "3des-sha256-modp1024", []string{`error: unknown algorithm "3des"`}},
		{false, "aes128--sha256-x25519", []string{`error: empty algorithm name`}},
		{false, "aes128-default", []string{`error: "default" must stand alone`}},
		{false, "", []string{`error: empty proposal`}},
		{false, "aes128gcm16-prfsha256-x25519,", []string{`error: empty proposal`}},

		{true, "aes128gcm16", []string{"ESP#1:aes128gcm16-noesn"}},
		{true, "aes256gcm16-esn", []string{"ESP#1:aes256gcm16-esn"}},
		{true, "aes128-sha256", []string{"ESP#1:aes128-sha256-noesn"}},
		{true, "aes128-sha256-esn-noesn", []string{"ESP#1:aes128-sha256-esn/noesn"}},
		{true, "aes128gcm16-x25519", []string{"ESP#1:aes128gcm16-x25519-noesn"}},
		{true, "aes128gcm16-x25519-none", []string{"ESP#1:aes128gcm16-x25519/none-noesn"}},
		{true, "aes128gcm16-modpnone", []string{"ESP#1:aes128gcm16-noesn"}},
		{true, "chacha20poly1305-sha256", []string{"ESP#1:chacha20poly1305-noesn"}},
		{true, "aes128gcm16-aes256-sha512-ecp256", []string{"ESP#1:aes128gcm16-ecp256-noesn", "ESP#2:aes256-sha512-ecp256-noesn"}},
		{true, "aes128gcm16, chacha20poly1305", []string{"ESP#1:aes128gcm16-noesn", "ESP#2:chacha20poly1305-noesn"}},
		{true, "default", []string{"ESP#1:aes128gcm16/aes256gcm16/chacha20poly1305-noesn", "ESP#2:aes128/aes256-sha256-noesn"}},
		{true, "aes128", []string{`error: aes128 needs an integrity algorithm`}},
		{true, "aes128gcm16-prfsha256", []string{`error: "prfsha256" is not allowed in an ESP proposal`}},
		{true, "aes128gcm16-esp", []string{`error: unknown algorithm "esp"`}},
		{true, "sha256", []string{`error: no encryption algorithm`}},
	} {
		got := checkParse(t, c.esp, c.in, c.want)
		for _, p := range got {
			if p.SPI != nil {
				t.Errorf("%q: SPI set", c.in)
			}
		}
	}
}

// checkParse parses in as an ESP (esp) or IKE proposal string and compares the result
// with want: the proposals as propStrings writes them, or, as the single element
// "error: ...", a substring of the error. It returns the proposals (nil on an error).
func checkParse(t *testing.T, esp bool, in string, want []string) []wire.Proposal {
	t.Helper()
	parse := ParseIKEProposal
	if esp {
		parse = ParseESPProposal
	}
	got, err := parse(in)
	if strings.HasPrefix(want[0], "error: ") {
		if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(want[0], "error: ")) {
			t.Errorf("%q: error %v, want one containing %q", in, err, want[0][7:])
		}
		return nil
	}
	if err != nil {
		t.Errorf("%q: %v", in, err)
		return nil
	}
	if s := propStrings(got); !reflect.DeepEqual(s, want) {
		t.Errorf("%q:\n got %q\nwant %q", in, s, want)
	}
	return got
}

// Wire details: AES transforms carry a TV Key Length attribute, ChaCha20-Poly1305 none.
func TestParsedTransformAttributes(t *testing.T) {
	ps, err := ParseIKEProposal("chacha20poly1305-aes256gcm16-prfsha256-x25519")
	if err != nil {
		t.Fatal(err)
	}
	want := []wire.Transform{
		{Type: wire.TransformENCR, ID: wire.ENCR_CHACHA20_POLY1305},
		{Type: wire.TransformENCR, ID: wire.ENCR_AES_GCM_16, Attrs: []wire.Attribute{{Type: wire.AttrKeyLength, TV: true, Value: 256}}},
		{Type: wire.TransformPRF, ID: wire.PRF_HMAC_SHA2_256},
		{Type: wire.TransformDH, ID: wire.DH_X25519},
	}
	if len(ps) != 1 || ps[0].Num != 1 || ps[0].Protocol != wire.ProtoIKE || !reflect.DeepEqual(ps[0].Transforms, want) {
		t.Fatalf("got %+v", ps)
	}
}

func TestSuiteStrings(t *testing.T) {
	for _, c := range []struct {
		esp  bool
		name string
	}{
		{false, "aes128gcm16-prfsha256-x25519"},
		{false, "aes256-sha256-prfsha256-modp2048"},
		{false, "chacha20poly1305-prfsha512-ecp384"},
		{false, "aes192-sha512-prfsha384-modp3072"},
		{false, "aes256gcm16-prfsha384-ecp256"},
		{true, "aes128gcm16"},
		{true, "aes256gcm16-esn"},
		{true, "aes128-sha256"},
		{true, "aes128gcm16-x25519"},
		{true, "aes256-sha384-ecp384-esn"},
		{true, "chacha20poly1305"},
	} {
		var got string
		if c.esp {
			ps, err := ParseESPProposal(c.name)
			if err != nil || len(ps) != 1 {
				t.Fatalf("%s: %v", c.name, err)
			}
			s, err := ESPSuiteFromProposal(ps[0])
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			got = s.String()
		} else {
			ps, err := ParseIKEProposal(c.name)
			if err != nil || len(ps) != 1 {
				t.Fatalf("%s: %v", c.name, err)
			}
			s, err := IKESuiteFromProposal(ps[0])
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			got = s.String()
		}
		if got != c.name {
			t.Errorf("suite of %q is %q", c.name, got)
		}
	}
	// Direct values, as the brief's examples.
	if s := (IKESuite{Encr: wire.ENCR_AES_GCM_16, EncrKeyBits: 128, PRF: wire.PRF_HMAC_SHA2_256, DH: wire.DH_X25519}).String(); s != "aes128gcm16-prfsha256-x25519" {
		t.Errorf("IKE suite %q", s)
	}
	if s := (ESPSuite{Encr: wire.ENCR_AES_GCM_16, EncrKeyBits: 256, ESN: true}).String(); s != "aes256gcm16-esn" {
		t.Errorf("ESP suite %q", s)
	}
	if s := (ESPSuite{Encr: 3, Integ: 1, DH: 1}).String(); s != "ENCR_3-INTEG_1-KE_1" {
		t.Errorf("unknown suite %q", s)
	}
}

func TestKeyLengths(t *testing.T) {
	for _, c := range []struct {
		s           ESPSuite
		encr, integ int
		aead        bool
	}{
		{ESPSuite{Encr: wire.ENCR_AES_GCM_16, EncrKeyBits: 128}, 20, 0, true},
		{ESPSuite{Encr: wire.ENCR_AES_GCM_16, EncrKeyBits: 256}, 36, 0, true},
		{ESPSuite{Encr: wire.ENCR_CHACHA20_POLY1305}, 36, 0, true},
		{ESPSuite{Encr: wire.ENCR_AES_CBC, EncrKeyBits: 128, Integ: wire.AUTH_HMAC_SHA2_256_128}, 16, 32, false},
		{ESPSuite{Encr: wire.ENCR_AES_CBC, EncrKeyBits: 256, Integ: wire.AUTH_HMAC_SHA2_384_192}, 32, 48, false},
		{ESPSuite{Encr: wire.ENCR_AES_CBC, EncrKeyBits: 256, Integ: wire.AUTH_HMAC_SHA2_512_256}, 32, 64, false},
		{ESPSuite{Encr: wire.ENCR_AES_CBC, EncrKeyBits: 256}, 0, 0, false},
		{ESPSuite{Encr: wire.ENCR_AES_GCM_16, EncrKeyBits: 128, Integ: wire.AUTH_HMAC_SHA2_256_128}, 0, 0, true},
	} {
		e, i := c.s.KeyLengths()
		ie, ii := IKESuite{Encr: c.s.Encr, EncrKeyBits: c.s.EncrKeyBits, Integ: c.s.Integ}.KeyLengths()
		if e != c.encr || i != c.integ || ie != e || ii != i || c.s.IsAEAD() != c.aead {
			t.Errorf("%v: %d/%d (IKE %d/%d) aead=%v", c.s, e, i, ie, ii, c.s.IsAEAD())
		}
	}
}

func tr(typ wire.TransformType, id uint16, keyBits ...uint16) wire.Transform {
	t := wire.Transform{Type: typ, ID: id}
	for _, k := range keyBits {
		t.Attrs = append(t.Attrs, wire.Attribute{Type: wire.AttrKeyLength, TV: true, Value: k})
	}
	return t
}

func TestSuiteFromProposalErrors(t *testing.T) {
	gcm := tr(wire.TransformENCR, wire.ENCR_AES_GCM_16, 128)
	cbc := tr(wire.TransformENCR, wire.ENCR_AES_CBC, 128)
	prf := tr(wire.TransformPRF, wire.PRF_HMAC_SHA2_256)
	integ := tr(wire.TransformINTEG, wire.AUTH_HMAC_SHA2_256_128)
	none := tr(wire.TransformINTEG, wire.AUTH_NONE)
	dh := tr(wire.TransformDH, wire.DH_X25519)
	esn := tr(wire.TransformESN, wire.ESN_NO)
	ike := func(ts ...wire.Transform) wire.Proposal {
		return wire.Proposal{Num: 1, Protocol: wire.ProtoIKE, Transforms: ts}
	}
	esp := func(ts ...wire.Transform) wire.Proposal {
		return wire.Proposal{Num: 1, Protocol: wire.ProtoESP, SPI: []byte{1, 2, 3, 4}, Transforms: ts}
	}
	for name, p := range map[string]wire.Proposal{
		"two ENCR":        ike(gcm, gcm, prf, dh),
		"AEAD with INTEG": ike(gcm, prf, integ, dh),
		"CBC no INTEG":    ike(cbc, prf, dh),
		"CBC INTEG NONE":  ike(cbc, prf, none, dh),
		"no PRF":          ike(gcm, dh),
		"no DH":           ike(gcm, prf),
		"DH NONE":         ike(gcm, prf, tr(wire.TransformDH, wire.DH_NONE)),
		"ESN in IKE":      ike(gcm, prf, dh, esn),
		"no ENCR":         ike(prf, integ, dh),
		"unknown ENCR":    ike(tr(wire.TransformENCR, 3), prf, integ, dh),
		"GCM 64-bit":      ike(tr(wire.TransformENCR, wire.ENCR_AES_GCM_16, 64), prf, dh),
		"GCM no keylen":   ike(tr(wire.TransformENCR, wire.ENCR_AES_GCM_16), prf, dh),
		"unknown group":   ike(gcm, prf, tr(wire.TransformDH, 21)),
		"unknown type":    ike(gcm, prf, dh, tr(13, 1)),
		"odd attribute":   ike(wire.Transform{Type: wire.TransformENCR, ID: wire.ENCR_AES_GCM_16, Attrs: []wire.Attribute{{Type: 14, TV: true, Value: 128}, {Type: 99, TV: true}}}, prf, dh),
		"ESP protocol":    esp(gcm, esn),
	} {
		if s, err := IKESuiteFromProposal(p); err == nil {
			t.Errorf("IKE %s: accepted as %v", name, s)
		}
	}
	if s, err := IKESuiteFromProposal(ike(gcm, prf, none, dh)); err != nil || s.Integ != wire.AUTH_NONE || s.String() != "aes128gcm16-prfsha256-x25519" {
		t.Errorf("AEAD with AUTH_NONE: %v, %v", s, err)
	}
	for name, p := range map[string]wire.Proposal{
		"PRF in ESP":   esp(gcm, prf, esn),
		"CBC no INTEG": esp(cbc, esn),
		"two ESN":      esp(gcm, esn, esn),
		"two DH":       esp(gcm, dh, dh, esn),
		"IKE protocol": ike(gcm, esn),
	} {
		if s, err := ESPSuiteFromProposal(p); err == nil {
			t.Errorf("ESP %s: accepted as %v", name, s)
		}
	}
	if s, err := ESPSuiteFromProposal(esp(gcm, tr(wire.TransformDH, wire.DH_NONE))); err != nil || s.DH != 0 || s.ESN || s.String() != "aes128gcm16" {
		t.Errorf("ESP with DH NONE and no ESN: %v, %v", s, err)
	}
}

func mustParse(t *testing.T, esp bool, s string) []wire.Proposal {
	t.Helper()
	parse := ParseIKEProposal
	if esp {
		parse = ParseESPProposal
	}
	ps, err := parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// peer renumbers proposals as a peer would send them, with SPIs.
func peer(ps []wire.Proposal, spi []byte, firstNum uint8) []wire.Proposal {
	for i := range ps {
		ps[i].Num = firstNum + uint8(i)
		ps[i].SPI = append([]byte(nil), spi...)
	}
	return ps
}

func TestSelectProposal(t *testing.T) {
	for _, c := range []struct {
		name   string
		esp    bool
		ours   string
		theirs string
		want   string // propString of the result, "" for no match
	}{
		{"our order wins", false,
			"aes256gcm16-aes128gcm16-prfsha384-prfsha256-ecp256-x25519",
			"aes128gcm16-aes256gcm16-prfsha256-prfsha384-x25519-ecp256",
			"IKE#5:aes256gcm16-prfsha384-ecp256"},
		{"our proposal order wins over theirs", false,
			"aes256gcm16-prfsha256-x25519,aes128-sha256-x25519",
			"aes128-sha256-x25519,aes256gcm16-prfsha256-x25519",
			"IKE#6:aes256gcm16-prfsha256-x25519"},
		{"falls back to our second proposal", false,
			"aes256gcm16-prfsha256-x25519,aes128-sha256-x25519",
			"aes128-sha512-sha256-x25519",
			"IKE#5:aes128-prfsha256-sha256-x25519"},
		{"no common group", false,
			"aes128gcm16-prfsha256-x25519", "aes128gcm16-prfsha256-ecp256", ""},
		{"no common PRF", false,
			"aes128gcm16-prfsha256-x25519", "aes128gcm16-prfsha512-x25519", ""},
		{"no common cipher", false,
			"aes128gcm16-prfsha256-x25519", "aes256gcm16-prfsha256-x25519", ""},
		{"key length matters", false,
			"aes128-sha256-x25519", "aes256-sha256-x25519", ""},
		{"default against strongSwan-like", false,
			"default", "aes256-sha256-modp2048",
			"IKE#5:aes256-prfsha256-sha256-modp2048"},
		{"ESP AEAD", true, "aes128gcm16", "aes256gcm16-aes128gcm16", "ESP#5:aes128gcm16-noesn"},
		{"ESP PFS required, peer has none", true, "aes128gcm16-x25519", "aes128gcm16", ""},
		{"ESP PFS required, peer makes it optional", true, "aes128gcm16-x25519", "aes128gcm16-ecp256-x25519-none", "ESP#5:aes128gcm16-x25519-noesn"},
		{"ESP no PFS, peer requires it", true, "aes128gcm16", "aes128gcm16-x25519", ""},
		{"ESP no PFS, peer optional", true, "aes128gcm16", "aes128gcm16-x25519-none", "ESP#5:aes128gcm16-noesn"},
		{"ESP PFS optional, peer none", true, "aes128gcm16-x25519-none", "aes128gcm16", "ESP#5:aes128gcm16-noesn"},
		{"ESP both optional, no common group", true, "aes128gcm16-x25519-none", "aes128gcm16-ecp256-none", "ESP#5:aes128gcm16-noesn"},
		{"ESP ESN ours both, peer noesn", true, "aes128gcm16-esn-noesn", "aes128gcm16-noesn", "ESP#5:aes128gcm16-noesn"},
		{"ESP ESN ours both, peer both", true, "aes128gcm16-esn-noesn", "aes128gcm16-noesn-esn", "ESP#5:aes128gcm16-esn"},
		{"ESP ESN required", true, "aes128gcm16-esn", "aes128gcm16", ""},
		{"ESP classic", true, "aes128gcm16,aes128-aes256-sha512-sha256", "aes256-sha256-sha512", "ESP#5:aes256-sha512-noesn"},
	} {
		ours := mustParse(t, c.esp, c.ours)
		theirs := peer(mustParse(t, c.esp, c.theirs), []byte{9, 8, 7, 6}, 5)
		got, ok := SelectProposal(ours, theirs)
		if c.want == "" {
			if ok {
				t.Errorf("%s: selected %s", c.name, propString(got))
			}
			continue
		}
		if !ok {
			t.Errorf("%s: no match", c.name)
			continue
		}
		if s := propString(got); s != c.want {
			t.Errorf("%s: selected %s, want %s", c.name, s, c.want)
		}
		if string(got.SPI) != "\x09\x08\x07\x06" {
			t.Errorf("%s: SPI %x", c.name, got.SPI)
		}
		// The answer passes the initiator's check and yields a suite.
		if err := CheckResponseProposal(theirs, got); err != nil {
			t.Errorf("%s: initiator rejects the selection: %v", c.name, err)
		}
		var err error
		if c.esp {
			_, err = ESPSuiteFromProposal(got)
		} else {
			_, err = IKESuiteFromProposal(got)
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

func TestSelectProposalPeerQuirks(t *testing.T) {
	ours := mustParse(t, false, "aes128gcm16-aes256gcm16-prfsha256-x25519")
	gcm128 := tr(wire.TransformENCR, wire.ENCR_AES_GCM_16, 128)
	gcm256 := tr(wire.TransformENCR, wire.ENCR_AES_GCM_16, 256)
	prf := tr(wire.TransformPRF, wire.PRF_HMAC_SHA2_256)
	dh := tr(wire.TransformDH, wire.DH_X25519)
	odd := gcm128
	odd.Attrs = append(odd.Attrs, wire.Attribute{Type: 99, TV: true, Value: 1})

	// AEAD with an explicit INTEG of NONE from the peer: no INTEG in the answer.
	theirs := []wire.Proposal{{Num: 1, Protocol: wire.ProtoIKE, Transforms: []wire.Transform{gcm128, prf, tr(wire.TransformINTEG, wire.AUTH_NONE), dh}}}
	got, ok := SelectProposal(ours, theirs)
	if !ok || propString(got) != "IKE#1:aes128gcm16-prfsha256-x25519" {
		t.Errorf("AEAD + INTEG NONE: %v %s", ok, propString(got))
	}

	// A transform with an attribute we do not understand is skipped.
	theirs = []wire.Proposal{{Num: 1, Protocol: wire.ProtoIKE, Transforms: []wire.Transform{odd, gcm256, prf, dh}}}
	got, ok = SelectProposal(ours, theirs)
	if !ok || propString(got) != "IKE#1:aes256gcm16-prfsha256-x25519" {
		t.Errorf("unknown attribute: %v %s", ok, propString(got))
	}

	// A proposal with an unknown transform type is unacceptable (RFC 7296 3.3.6); a
	// proposal of another protocol is skipped.
	theirs = []wire.Proposal{
		{Num: 1, Protocol: wire.ProtoIKE, Transforms: []wire.Transform{gcm128, prf, dh, tr(13, 36)}},
		{Num: 2, Protocol: wire.ProtoESP, SPI: []byte{1, 2, 3, 4}, Transforms: []wire.Transform{gcm128, prf, dh}},
		{Num: 3, Protocol: wire.ProtoIKE, SPI: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Transforms: []wire.Transform{gcm256, prf, dh}},
	}
	got, ok = SelectProposal(ours, theirs)
	if !ok || propString(got) != "IKE#3:aes256gcm16-prfsha256-x25519" || len(got.SPI) != 8 {
		t.Errorf("skipping: %v %s", ok, propString(got))
	}
	theirs[2].SPI[0] = 0xee
	if got.SPI[0] == 0xee {
		t.Error("selected SPI aliases the peer's")
	}
	got.Transforms[0].Attrs[0].Value = 1
	if ours[0].Transforms[0].Attrs[0].Value != 128 {
		t.Error("selected transforms alias ours")
	}
	if _, ok := SelectProposal(ours, theirs[:2]); ok {
		t.Error("selected from an unacceptable or foreign proposal")
	}
	if _, ok := SelectProposal(ours, nil); ok {
		t.Error("selected from nothing")
	}
}

func TestPreferGroup(t *testing.T) {
	ours := mustParse(t, false, "aes128gcm16-prfsha256-x25519-ecp256-modp2048,aes128-sha256-x25519")
	theirs := mustParse(t, false, "aes128gcm16-prfsha256-modp2048-ecp256-x25519")
	got, _ := SelectProposal(ours, theirs)
	if propString(got) != "IKE#1:aes128gcm16-prfsha256-x25519" {
		t.Fatalf("without preference: %s", propString(got))
	}
	pref := PreferGroup(ours, wire.DH_MODP2048)
	got, _ = SelectProposal(pref, theirs)
	if propString(got) != "IKE#1:aes128gcm16-prfsha256-modp2048" {
		t.Fatalf("with preference: %s", propString(got))
	}
	if s := propStrings(pref); s[0] != "IKE#1:aes128gcm16-prfsha256-modp2048/x25519/ecp256" || s[1] != "IKE#2:aes128-prfsha256-sha256-x25519" {
		t.Fatalf("reordered: %q", s)
	}
	if s := propString(ours[0]); s != "IKE#1:aes128gcm16-prfsha256-x25519/ecp256/modp2048" {
		t.Fatalf("original changed: %s", s)
	}
}

func TestCheckResponseProposal(t *testing.T) {
	offered := mustParse(t, false, "aes128gcm16-prfsha256-prfsha384-x25519-ecp256,aes256-sha256-x25519")
	espOffered := mustParse(t, true, "aes128gcm16-x25519-esn-noesn,aes128-sha256")
	espOptional := mustParse(t, true, "aes128gcm16-x25519-none")
	gcm128 := tr(wire.TransformENCR, wire.ENCR_AES_GCM_16, 128)
	prf := tr(wire.TransformPRF, wire.PRF_HMAC_SHA2_256)
	dh := tr(wire.TransformDH, wire.DH_X25519)
	noesn := tr(wire.TransformESN, wire.ESN_NO)
	ike := func(num uint8, ts ...wire.Transform) wire.Proposal {
		return wire.Proposal{Num: num, Protocol: wire.ProtoIKE, Transforms: ts}
	}
	esp := func(num uint8, ts ...wire.Transform) wire.Proposal {
		return wire.Proposal{Num: num, Protocol: wire.ProtoESP, SPI: []byte{1, 2, 3, 4}, Transforms: ts}
	}
	for _, c := range []struct {
		name    string
		offered []wire.Proposal
		got     wire.Proposal
		err     string // "" = accepted
	}{
		{"good", offered, ike(1, gcm128, tr(wire.TransformPRF, wire.PRF_HMAC_SHA2_384), tr(wire.TransformDH, wire.DH_ECP256)), ""},
		{"good classic", offered, ike(2, tr(wire.TransformENCR, wire.ENCR_AES_CBC, 256), prf, tr(wire.TransformINTEG, wire.AUTH_HMAC_SHA2_256_128), dh), ""},
		{"AEAD + INTEG NONE", offered, ike(1, gcm128, prf, tr(wire.TransformINTEG, wire.AUTH_NONE), dh), ""},
		{"wrong number", offered, ike(3, gcm128, prf, dh), "did not offer"},
		{"number of the other proposal", offered, ike(2, gcm128, prf, dh), "aes128gcm16, which we did not offer in proposal 2"},
		{"extra transform", offered, ike(1, gcm128, prf, dh, tr(wire.TransformDH, wire.DH_ECP256)), "more than one KE"},
		{"unoffered algorithm", offered, ike(1, tr(wire.TransformENCR, wire.ENCR_AES_GCM_16, 256), prf, dh), "aes256gcm16, which we did not offer"},
		{"unoffered key length", offered, ike(2, tr(wire.TransformENCR, wire.ENCR_AES_CBC, 128), prf, tr(wire.TransformINTEG, wire.AUTH_HMAC_SHA2_256_128), dh), "aes128, which we did not offer"},
		{"missing PRF", offered, ike(1, gcm128, dh), "no PRF"},
		{"missing KE", offered, ike(1, gcm128, prf), "no key exchange"},
		{"missing ENCR", offered, ike(1, prf, dh), "no encryption"},
		{"classic without INTEG", offered, ike(2, tr(wire.TransformENCR, wire.ENCR_AES_CBC, 256), prf, dh), "no integrity"},
		{"classic with INTEG NONE", offered, ike(2, tr(wire.TransformENCR, wire.ENCR_AES_CBC, 256), prf, tr(wire.TransformINTEG, wire.AUTH_NONE), dh), "did not offer"},
		{"unknown type", offered, ike(1, gcm128, prf, dh, tr(13, 1)), "unknown transform type"},
		{"odd attribute", offered, ike(1, wire.Transform{Type: wire.TransformENCR, ID: wire.ENCR_AES_GCM_16, Attrs: []wire.Attribute{{Type: 14, TV: true, Value: 128}, {Type: 15, TV: true}}}, prf, dh), "did not offer"},
		{"wrong protocol", offered, esp(1, gcm128, noesn), "protocol"},
		{"ESP good", espOffered, esp(1, gcm128, dh, tr(wire.TransformESN, wire.ESN_YES)), ""},
		{"ESP classic good", espOffered, esp(2, tr(wire.TransformENCR, wire.ENCR_AES_CBC, 128), tr(wire.TransformINTEG, wire.AUTH_HMAC_SHA2_256_128), noesn), ""},
		{"ESP missing ESN", espOffered, esp(1, gcm128, dh), "no ESN"},
		{"ESP PFS dropped", espOffered, esp(1, gcm128, noesn), "PFS"},
		{"ESP unoffered PFS", espOffered, esp(2, tr(wire.TransformENCR, wire.ENCR_AES_CBC, 128), tr(wire.TransformINTEG, wire.AUTH_HMAC_SHA2_256_128), dh, noesn), "x25519, which we did not offer"},
		{"ESP optional PFS dropped", espOptional, esp(1, gcm128, noesn), ""},
		{"ESP optional PFS NONE", espOptional, esp(1, gcm128, tr(wire.TransformDH, wire.DH_NONE), noesn), ""},
		{"ESP PRF", espOptional, esp(1, gcm128, prf, noesn), "did not offer"},
	} {
		err := CheckResponseProposal(c.offered, c.got)
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: %v, want %q", c.name, err, c.err)
		}
	}
}
