package crypto

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"strconv"
	"testing"

	"github.com/mobikevpn/mobikevpn/wire"
)

// skSuites lists every encryption/integrity combination an IKE SA can use.
func skSuites() []IKESuite {
	var out []IKESuite
	for _, e := range encrAlgs {
		if e.aead {
			out = append(out, IKESuite{Encr: e.id, EncrKeyBits: e.keyBits})
			continue
		}
		for _, in := range integAlgs {
			out = append(out, IKESuite{Encr: e.id, EncrKeyBits: e.keyBits, Integ: in.id})
		}
	}
	return out
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func newTestSK(t testing.TB, s IKESuite) SKCipher {
	t.Helper()
	el, il := s.KeyLengths()
	c, err := NewSKCipher(s.Encr, int(s.EncrKeyBits), s.Integ, randBytes(el), randBytes(il))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testAAD is an IKE header and an SK generic header whose lengths fit the body.
func testAAD(bodyLen int) []byte {
	aad := make([]byte, 32)
	copy(aad, "0123456789abcdef")
	aad[16], aad[17], aad[18], aad[19] = byte(wire.PayloadSK), wire.Version, byte(wire.INFORMATIONAL), byte(wire.FlagInitiator)
	total := 32 + bodyLen
	aad[24], aad[25], aad[26], aad[27] = byte(total>>24), byte(total>>16), byte(total>>8), byte(total)
	aad[28] = byte(wire.PayloadNotify)
	aad[30], aad[31] = byte((4+bodyLen)>>8), byte(4+bodyLen)
	return aad
}

// RFC 7634 Appendix B: the complete encrypted INFORMATIONAL message.
func TestRFC7634IKEv2Message(t *testing.T) {
	var r record
	for _, rec := range readRecords(t, "rfc7634_chacha20poly1305_examples.txt") {
		if _, ok := rec["ike_message"]; ok {
			r = rec
		}
	}
	if r == nil {
		t.Fatal("no IKEv2 record")
	}
	msg, aad, iv := r.hex(t, "ike_message"), r.hex(t, "aad"), r.hex(t, "iv")
	plain := r.hex(t, "plaintext") // inner payloads followed by Pad Length 0
	if !bytes.Equal(msg[:32], aad) {
		t.Fatal("aad is not the message's first 32 octets")
	}
	c, err := NewSKCipher(wire.ENCR_CHACHA20_POLY1305, 0, wire.AUTH_NONE, r.hex(t, "keymat"), nil)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := c.Open(msg[:32], msg[32:])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(inner, plain[:len(plain)-1]) || plain[len(plain)-1] != 0 {
		t.Fatalf("Open = %x, want %x", inner, plain[:len(plain)-1])
	}
	if c.SealedLen(len(inner)) != len(msg)-32 {
		t.Fatalf("SealedLen = %d, want %d", c.SealedLen(len(inner)), len(msg)-32)
	}
	again := c.(ivSealer).sealWithIV(append([]byte(nil), msg[:32]...), inner, iv)
	if !bytes.Equal(again, msg) {
		t.Fatalf("re-encrypted\n%x\nwant\n%x", again, msg)
	}
	// Any change to header, IV, ciphertext or tag fails.
	for i := range msg {
		bad := append([]byte(nil), msg...)
		bad[i] ^= 0x40
		if _, err := c.Open(bad[:32], bad[32:]); !errors.Is(err, ErrSKAuth) {
			t.Fatalf("flipped octet %d: %v", i, err)
		}
	}
}

// RFC 7634 Appendix A (ESP) through the same salt | IV construction.
func TestRFC7634ESP(t *testing.T) {
	r := readRecords(t, "rfc7634_chacha20poly1305_examples.txt")[0]
	if r["spi"] != "01020304" {
		t.Fatal("first record is not the ESP example")
	}
	a, err := lookupEncr(wire.ENCR_CHACHA20_POLY1305, 0).newSaltedAEAD(r.hex(t, "keymat"))
	if err != nil {
		t.Fatal(err)
	}
	want := append(r.hex(t, "ciphertext"), r.hex(t, "icv")...)
	if got := a.seal(nil, r.hex(t, "iv"), r.hex(t, "plaintext"), r.hex(t, "aad")); !bytes.Equal(got, want) {
		t.Fatalf("seal = %x, want %x", got, want)
	}
	pt, err := a.open(nil, r.hex(t, "iv"), want, r.hex(t, "aad"))
	if err != nil || !bytes.Equal(pt, r.hex(t, "plaintext")) {
		t.Fatalf("open: %x, %v", pt, err)
	}
}

// draft-mcgrew-gcm-test-01 ESP packets (AES-GCM with salt | IV nonces), including
// through the exported NewAEAD.
func TestGCMESPExamples(t *testing.T) {
	recs := readRecords(t, "draft-mcgrew-gcm-test-01_esp_aes_gcm.txt")
	for i, r := range recs {
		key, salt, iv := r.hex(t, "key"), r.hex(t, "salt"), r.hex(t, "iv")
		keymat := append(append([]byte(nil), key...), salt...)
		want := append(r.hex(t, "ciphertext"), r.hex(t, "icv")...)
		a, err := lookupEncr(wire.ENCR_AES_GCM_16, 8*len(key)).newSaltedAEAD(keymat)
		if err != nil {
			t.Fatal(err)
		}
		if got := a.seal(nil, iv, r.hex(t, "plaintext"), r.hex(t, "aad")); !bytes.Equal(got, want) {
			t.Errorf("case %d: seal = %x, want %x", i+1, got, want)
		}
		aead, gotSalt, err := NewAEAD(wire.ENCR_AES_GCM_16, 8*len(key), keymat)
		if err != nil || !bytes.Equal(gotSalt, salt) {
			t.Fatalf("NewAEAD: salt %x, %v", gotSalt, err)
		}
		pt, err := aead.Open(nil, append(append([]byte(nil), salt...), iv...), want, r.hex(t, "aad"))
		if err != nil || !bytes.Equal(pt, r.hex(t, "plaintext")) {
			t.Errorf("case %d: NewAEAD open: %v", i+1, err)
		}
	}
	if len(recs) < 10 {
		t.Fatalf("%d records", len(recs))
	}
	if _, _, err := NewAEAD(wire.ENCR_AES_CBC, 128, make([]byte, 16)); err == nil {
		t.Error("NewAEAD accepted AES-CBC")
	}
	if _, _, err := NewAEAD(wire.ENCR_AES_GCM_16, 128, make([]byte, 16)); err == nil {
		t.Error("NewAEAD accepted keying material without salt")
	}
}

// Wycheproof AES-GCM and ChaCha20-Poly1305 groups with 96-bit nonces, split as
// salt (first 4 octets) | IV (last 8) the way the SK payload and ESP use them.
func TestWycheproofAEAD(t *testing.T) {
	for _, c := range []struct {
		file string
		encr uint16
	}{
		{"aes_gcm_test.json", wire.ENCR_AES_GCM_16},
		{"chacha20_poly1305_test.json", wire.ENCR_CHACHA20_POLY1305},
	} {
		f := readWycheproof(t, c.file)
		n := map[string]int{}
		for _, g := range f.TestGroups {
			if g.IVSize != 96 || g.TagSize != 128 {
				continue // not expressible as salt | 64-bit IV
			}
			keyBits := g.KeySize
			if c.encr == wire.ENCR_CHACHA20_POLY1305 {
				keyBits = 0
			}
			alg := lookupEncr(c.encr, keyBits)
			if alg == nil {
				t.Fatalf("%s: no algorithm for %d-bit keys", c.file, g.KeySize)
			}
			for _, tc := range g.Tests {
				nonce := unhex(t, tc.IV)
				a, err := alg.newSaltedAEAD(append(unhex(t, tc.Key), nonce[:4]...))
				if err != nil {
					t.Fatal(err)
				}
				msg, aad := unhex(t, tc.Msg), unhex(t, tc.AAD)
				want := append(unhex(t, tc.CT), unhex(t, tc.Tag)...)
				pt, err := a.open(nil, nonce[4:], want, aad)
				switch tc.Result {
				case "valid":
					if got := a.seal(nil, nonce[4:], msg, aad); !bytes.Equal(got, want) {
						t.Errorf("%s tcId %d: seal = %x, want %x", c.file, tc.TcID, got, want)
					}
					if err != nil || !bytes.Equal(pt, msg) {
						t.Errorf("%s tcId %d: open: %v", c.file, tc.TcID, err)
					}
				case "invalid":
					if err == nil {
						t.Errorf("%s tcId %d (%v): forged message opened", c.file, tc.TcID, tc.Flags)
					}
				default:
					t.Fatalf("%s tcId %d: result %q", c.file, tc.TcID, tc.Result)
				}
				n[fmt.Sprint(g.KeySize)]++
			}
		}
		if c.encr == wire.ENCR_AES_GCM_16 && (n["128"] < 60 || n["192"] < 60 || n["256"] < 60) ||
			c.encr == wire.ENCR_CHACHA20_POLY1305 && n["256"] < 300 {
			t.Fatalf("%s: cases per key size %v", c.file, n)
		}
	}
}

// AES-CBC + HMAC-SHA2 SK payloads against messages built with Python.
func TestSKCBCIndependent(t *testing.T) {
	n := 0
	for _, r := range readRecords(t, "independent_vectors.txt") {
		if r["kind"] != "sk_cbc" {
			continue
		}
		bits, _ := strconv.Atoi(r["encr_bits"])
		integ, _ := strconv.Atoi(r["integ"])
		c, err := NewSKCipher(wire.ENCR_AES_CBC, bits, uint16(integ), r.hex(t, "sk_e"), r.hex(t, "sk_a"))
		if err != nil {
			t.Fatal(err)
		}
		aad, pt, msg := r.hex(t, "aad"), r.hex(t, "plaintext"), r.hex(t, "message")
		if got := c.(ivSealer).sealWithIV(aad, pt, r.hex(t, "iv")); !bytes.Equal(got, msg) {
			t.Errorf("aes%d/%d %d octets: sealed\n%x\nwant\n%x", bits, integ, len(pt), got, msg)
		}
		if c.SealedLen(len(pt)) != len(msg)-len(aad) {
			t.Errorf("SealedLen(%d) = %d, want %d", len(pt), c.SealedLen(len(pt)), len(msg)-len(aad))
		}
		got, err := c.Open(aad, msg[len(aad):])
		if err != nil || !bytes.Equal(got, pt) {
			t.Errorf("Open: %x, %v", got, err)
		}
		n++
	}
	if n != 12 {
		t.Fatalf("%d CBC vectors", n)
	}
}

func TestSKRoundTripAndTamper(t *testing.T) {
	for _, s := range skSuites() {
		t.Run(s.String(), func(t *testing.T) {
			c := newTestSK(t, s)
			for _, n := range []int{0, 1, 7, 15, 16, 17, 31, 32, 100, 1000} {
				pt := randBytes(n)
				aad := testAAD(c.SealedLen(n))
				aadCopy := append([]byte(nil), aad...)
				msg, err := c.Seal(aad, pt)
				if err != nil {
					t.Fatal(err)
				}
				if len(msg) != len(aad)+c.SealedLen(n) || !bytes.Equal(msg[:len(aad)], aadCopy) {
					t.Fatalf("%d octets: message of %d octets", n, len(msg))
				}
				got, err := c.Open(msg[:len(aad)], msg[len(aad):])
				if err != nil || !bytes.Equal(got, pt) {
					t.Fatalf("%d octets: Open %x, %v", n, got, err)
				}
				if n > 32 {
					continue
				}
				for i := range msg { // every octet of header, IV, ciphertext and ICV counts
					bad := append([]byte(nil), msg...)
					bad[i] ^= 1
					if _, err := c.Open(bad[:len(aad)], bad[len(aad):]); err == nil {
						t.Fatalf("%d octets: flipping octet %d went unnoticed", n, i)
					}
				}
				for cut := 1; cut <= 17; cut += 8 {
					if _, err := c.Open(msg[:len(aad)], msg[len(aad):len(msg)-cut]); err == nil {
						t.Fatalf("truncated body accepted")
					}
				}
				if _, err := c.Open(msg[:len(aad)], append(msg[len(aad):len(msg):len(msg)], 0)); err == nil {
					t.Fatalf("extended body accepted")
				}
			}
			for n := 0; n < 40; n++ {
				if _, err := c.Open(testAAD(n), make([]byte, n)); err == nil {
					t.Fatalf("%d zero octets accepted", n)
				}
			}
			// Two seals of the same message use different IVs.
			m1, _ := c.Seal(testAAD(c.SealedLen(4)), []byte("ping"))
			m2, _ := c.Seal(testAAD(c.SealedLen(4)), []byte("ping"))
			if bytes.Equal(m1, m2) {
				t.Fatal("two seals are identical")
			}
		})
	}
}

// A Pad Length larger than the decrypted data is rejected even when the ICV is right.
func TestSKBadPadLength(t *testing.T) {
	aad := testAAD(64)
	// AEAD: a 1-octet plaintext claiming 5 octets of padding.
	keymat := randBytes(20)
	c, _ := NewSKCipher(wire.ENCR_AES_GCM_16, 128, wire.AUTH_NONE, keymat, nil)
	a, _ := lookupEncr(wire.ENCR_AES_GCM_16, 128).newSaltedAEAD(keymat)
	iv := []byte("12345678")
	body := a.seal(append([]byte(nil), iv...), iv, []byte{5}, aad)
	if _, err := c.Open(aad, body); err == nil || errors.Is(err, ErrSKAuth) {
		t.Fatalf("AEAD: bad pad length: %v", err)
	}
	body = a.seal(append([]byte(nil), iv...), iv, []byte{'x', 0}, aad) // good twin
	if pt, err := c.Open(aad, body); err != nil || string(pt) != "x" {
		t.Fatalf("AEAD good twin: %q, %v", pt, err)
	}

	// CBC: a block whose last octet says 16.
	ek, ak := randBytes(16), randBytes(32)
	cc, _ := NewSKCipher(wire.ENCR_AES_CBC, 128, wire.AUTH_HMAC_SHA2_256_128, ek, ak)
	for _, c := range []struct {
		pad byte
		ok  bool
	}{{16, false}, {255, false}, {15, true}} {
		block := make([]byte, 16)
		block[15] = c.pad
		b, _ := aes.NewCipher(ek)
		iv := randBytes(16)
		ct := make([]byte, 16)
		cipher.NewCBCEncrypter(b, iv).CryptBlocks(ct, block)
		body := append(iv, ct...)
		body = append(body, integMAC(lookupInteg(wire.AUTH_HMAC_SHA2_256_128), ak, aad, body)...)
		pt, err := cc.Open(aad, body)
		if c.ok != (err == nil) || c.ok && len(pt) != 0 {
			t.Errorf("CBC pad length %d: %x, %v", c.pad, pt, err)
		}
	}
}

func TestSKAEADCounter(t *testing.T) {
	c := newTestSK(t, IKESuite{Encr: wire.ENCR_AES_GCM_16, EncrKeyBits: 256})
	for want := byte(1); want <= 3; want++ {
		msg, err := c.Seal(testAAD(c.SealedLen(0)), nil)
		if err != nil {
			t.Fatal(err)
		}
		if iv := msg[32:40]; !bytes.Equal(iv, []byte{0, 0, 0, 0, 0, 0, 0, want}) {
			t.Fatalf("IV %x, want counter %d", iv, want)
		}
	}
	c.(*aeadSK).ctr.Store(math.MaxUint64 - 1)
	msg, err := c.Seal(testAAD(c.SealedLen(0)), nil)
	if err != nil || !bytes.Equal(msg[32:40], bytes.Repeat([]byte{0xff}, 8)) {
		t.Fatalf("last IV: %x, %v", msg[32:40], err)
	}
	for range 2 {
		if _, err := c.Seal(testAAD(c.SealedLen(0)), nil); err == nil {
			t.Fatal("Seal after the last IV succeeded")
		}
	}
}

// Seal works when the plaintext already sits in aad's spare capacity, where the body
// goes.
func TestSKSealInPlace(t *testing.T) {
	for _, s := range skSuites() {
		c := newTestSK(t, s)
		pt := []byte("the inner payloads, in place")
		buf := make([]byte, 0, 1024)
		aad := testAAD(c.SealedLen(len(pt)))
		buf = append(append(buf, aad...), pt...)
		msg, err := c.Seal(buf[:len(aad)], buf[len(aad):])
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Open(msg[:len(aad)], msg[len(aad):])
		if err != nil || !bytes.Equal(got, []byte("the inner payloads, in place")) {
			t.Fatalf("%s: in-place seal: %q, %v", s, got, err)
		}
	}
}

func TestNewSKCipherErrors(t *testing.T) {
	for name, c := range map[string]struct {
		encr       uint16
		bits       int
		integ      uint16
		ekey, ikey int
	}{
		"gcm short key":      {wire.ENCR_AES_GCM_16, 128, wire.AUTH_NONE, 16, 0},
		"gcm with integ":     {wire.ENCR_AES_GCM_16, 128, wire.AUTH_HMAC_SHA2_256_128, 20, 32},
		"gcm with integ key": {wire.ENCR_AES_GCM_16, 128, wire.AUTH_NONE, 20, 32},
		"chacha 256 attr":    {wire.ENCR_CHACHA20_POLY1305, 256, wire.AUTH_NONE, 36, 0},
		"cbc no integ":       {wire.ENCR_AES_CBC, 128, wire.AUTH_NONE, 16, 0},
		"cbc bad integ key":  {wire.ENCR_AES_CBC, 128, wire.AUTH_HMAC_SHA2_256_128, 16, 16},
		"cbc bad key":        {wire.ENCR_AES_CBC, 256, wire.AUTH_HMAC_SHA2_256_128, 16, 32},
		"cbc 64-bit":         {wire.ENCR_AES_CBC, 64, wire.AUTH_HMAC_SHA2_256_128, 8, 32},
		"3des":               {3, 0, wire.AUTH_HMAC_SHA2_256_128, 24, 32},
		"md5 integ":          {wire.ENCR_AES_CBC, 128, wire.AUTH_HMAC_MD5_96, 16, 16},
		"sha1 bad key":       {wire.ENCR_AES_CBC, 128, wire.AUTH_HMAC_SHA1_96, 16, 32},
		"ctr no nonce":       {wire.ENCR_AES_CTR, 128, wire.AUTH_HMAC_SHA1_96, 16, 20},
		"ctr no integ":       {wire.ENCR_AES_CTR, 128, wire.AUTH_NONE, 20, 0},
		"ccm with integ":     {wire.ENCR_AES_CCM_8, 128, wire.AUTH_HMAC_SHA1_96, 19, 20},
		"ccm 4-octet salt":   {wire.ENCR_AES_CCM_16, 128, wire.AUTH_NONE, 20, 0},
		"gcm8 no salt":       {wire.ENCR_AES_GCM_8, 256, wire.AUTH_NONE, 32, 0},
	} {
		if _, err := NewSKCipher(c.encr, c.bits, c.integ, make([]byte, c.ekey), make([]byte, c.ikey)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestZeroSK(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 20)
	c, err := NewSKCipher(wire.ENCR_AES_GCM_16, 128, wire.AUTH_NONE, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	ZeroSK(c)
	if k := c.(*aeadSK).key; !bytes.Equal(k, make([]byte, len(k))) {
		t.Errorf("AEAD key not zeroed: %x", k)
	}
	c, err = NewSKCipher(wire.ENCR_AES_CBC, 128, wire.AUTH_HMAC_SHA2_256_128, bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 32))
	if err != nil {
		t.Fatal(err)
	}
	ZeroSK(c)
	if k := c.(*cbcSK).integKey; !bytes.Equal(k, make([]byte, len(k))) {
		t.Errorf("integrity key not zeroed: %x", k)
	}
}

// An AEAD SK cipher taken over by another engine continues its IV counter; the counter
// never goes back, and a CBC cipher (random IVs) has none.
func TestSealCounterResume(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 20)
	a, err := NewSKCipher(wire.ENCR_AES_GCM_16, 128, wire.AUTH_NONE, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := a.Seal(make([]byte, 8), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	last, ok := SealCounter(a)
	if !ok || last != 3 {
		t.Fatalf("SealCounter = %d, %v; want 3", last, ok)
	}
	b, _ := NewSKCipher(wire.ENCR_AES_GCM_16, 128, wire.AUTH_NONE, key, nil)
	ResumeSealCounter(b, last)
	ResumeSealCounter(b, 1) // never back
	msg, err := b.Seal(make([]byte, 8), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if iv := msg[8:16]; !bytes.Equal(iv, []byte{0, 0, 0, 0, 0, 0, 0, 4}) {
		t.Errorf("the resumed cipher's IV is %x, want the one after 3", iv)
	}
	c, _ := NewSKCipher(wire.ENCR_AES_CBC, 128, wire.AUTH_HMAC_SHA2_256_128, make([]byte, 16), make([]byte, 32))
	if _, ok := SealCounter(c); ok {
		t.Error("a CBC cipher reports an IV counter")
	}
	ResumeSealCounter(c, 5) // nothing to do, no panic
}
