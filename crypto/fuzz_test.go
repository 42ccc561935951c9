package crypto

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/mobikevpn/mobikevpn/wire"
)

// fuzzCiphers returns one SKCipher per suite with fixed keys, so a corpus entry
// replays the same way.
func fuzzCiphers(t testing.TB) []SKCipher {
	var out []SKCipher
	for i, s := range skSuites() {
		el, il := s.KeyLengths()
		ek := bytes.Repeat([]byte{byte(i + 1)}, el)
		ik := bytes.Repeat([]byte{byte(i + 101)}, il)
		c, err := NewSKCipher(s.Encr, int(s.EncrKeyBits), s.Integ, ek, ik)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// FuzzSKOpen feeds arbitrary SK payload bodies to every cipher: no panic, and a
// body that opens yields less plaintext than its length. Seeds are valid messages.
func FuzzSKOpen(f *testing.F) {
	ciphers := fuzzCiphers(f)
	for i, c := range ciphers {
		for _, pt := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("payload"), 5)} {
			aad := testAAD(c.SealedLen(len(pt)))
			msg, err := c.Seal(aad, pt)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint8(i), msg[:len(aad)], msg[len(aad):])
		}
	}
	f.Fuzz(func(t *testing.T, idx uint8, aad, body []byte) {
		c := ciphers[int(idx)%len(ciphers)]
		pt, err := c.Open(aad, body)
		if err != nil {
			return
		}
		if len(pt) >= len(body) {
			t.Fatalf("opened %d octets into %d", len(body), len(pt))
		}
		// What opens re-seals to something that opens to the same plaintext.
		msg, err := c.Seal(append([]byte(nil), aad...), pt)
		if err != nil {
			t.Fatal(err)
		}
		again, err := c.Open(aad, msg[len(aad):])
		if err != nil || !bytes.Equal(again, pt) {
			t.Fatalf("re-sealed message: %v", err)
		}
	})
}

// FuzzParseProposal: no panic; whatever parses is well formed, selects against
// itself, passes the initiator's check, and the suite's name parses back to the same
// selection.
func FuzzParseProposal(f *testing.F) {
	for _, s := range []string{
		"aes128gcm16-prfsha256-x25519", "aes256-sha256-prfsha256-modp2048", "default",
		"aes128gcm16-aes128-sha256-x25519", "aes128gcm16-x25519-none-esn-noesn",
		"chacha20poly1305-prfsha512-curve25519,aes192-sha384-ecp384", "aes-sha2_512-modp3072",
		"aes128--x", "esn", "",
		"aes128ctr-sha1-prfsha1-modp1024", "aes128ccm8-aes256gcm12-aes192ccm-sha-modp1536-none",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, esp bool) {
		parse, proto := ParseIKEProposal, wire.ProtoIKE
		if esp {
			parse, proto = ParseESPProposal, wire.ProtoESP
		}
		ps, err := parse(s)
		if err != nil {
			return
		}
		if len(ps) == 0 {
			t.Fatal("no proposals and no error")
		}
		for i, p := range ps {
			if p.Num != uint8(i+1) || p.Protocol != proto || p.SPI != nil {
				t.Fatalf("proposal %d: num %d protocol %d", i, p.Num, p.Protocol)
			}
			one := []wire.Proposal{p}
			sel, ok := SelectProposal(one, one)
			if !ok {
				t.Fatalf("%q: proposal %d does not select against itself", s, i+1)
			}
			if err := CheckResponseProposal(one, sel); err != nil {
				t.Fatalf("%q: %v", s, err)
			}
			var name string
			if esp {
				suite, err := ESPSuiteFromProposal(sel)
				if err != nil {
					t.Fatalf("%q: %v", s, err)
				}
				name = suite.String()
			} else {
				suite, err := IKESuiteFromProposal(sel)
				if err != nil {
					t.Fatalf("%q: %v", s, err)
				}
				name = suite.String()
			}
			back, err := parse(name)
			if err != nil || len(back) != 1 || !reflect.DeepEqual(back[0].Transforms, sel.Transforms) {
				t.Fatalf("%q: suite %q parses to %+v (%v), selection %+v", s, name, back, err, sel.Transforms)
			}
		}
	})
}

// fuzzProposals decodes arbitrary bytes into peer proposals, biased towards the
// transform IDs we know.
func fuzzProposals(data []byte) []wire.Proposal {
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return b
	}
	ids := []uint16{0, 1, 5, 7, 12, 13, 14, 15, 19, 20, 28, 31, 20, 12}
	var out []wire.Proposal
	for n := int(next() % 5); n > 0; n-- {
		p := wire.Proposal{Num: uint8(len(out) + 1), Protocol: wire.ProtocolID(next() % 4)}
		for k := int(next() % 12); k > 0; k-- {
			b := next()
			t := wire.Transform{Type: wire.TransformType(b % 7), ID: ids[int(next())%len(ids)]}
			if b&0x80 != 0 {
				t.ID = uint16(next())
			}
			switch next() % 5 {
			case 1:
				t.Attrs = []wire.Attribute{{Type: wire.AttrKeyLength, TV: true, Value: []uint16{128, 192, 256, 64}[next()%4]}}
			case 2:
				t.Attrs = []wire.Attribute{{Type: uint16(next()), TV: next()%2 == 0, Value: 128}}
			}
			p.Transforms = append(p.Transforms, t)
		}
		out = append(out, p)
	}
	return out
}

// FuzzSelectProposal: arbitrary peer proposals never panic the selection, and any
// selection passes the initiator's check and yields a suite.
func FuzzSelectProposal(f *testing.F) {
	f.Add([]byte{1, 1, 4, 0, 10, 1, 2, 0, 0, 1, 0, 0, 4, 11, 0})
	f.Add([]byte{2, 3, 3, 0, 8, 1, 5, 0, 0, 1, 1, 0, 0, 3, 0, 0, 1, 1, 0, 0})
	ike, _ := ParseIKEProposal("default")
	esp, _ := ParseESPProposal("aes128gcm16-x25519-none-esn-noesn,default")
	f.Fuzz(func(t *testing.T, data []byte) {
		theirs := fuzzProposals(data)
		for _, ours := range [][]wire.Proposal{ike, esp} {
			sel, ok := SelectProposal(ours, theirs)
			if !ok {
				continue
			}
			if err := CheckResponseProposal(theirs, sel); err != nil {
				t.Fatalf("selection %+v fails the check: %v", sel, err)
			}
			var err error
			if sel.Protocol == wire.ProtoIKE {
				_, err = IKESuiteFromProposal(sel)
			} else {
				_, err = ESPSuiteFromProposal(sel)
			}
			if err != nil {
				t.Fatalf("selection %+v: %v", sel, err)
			}
		}
	})
}
