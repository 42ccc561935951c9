package crypto

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"strconv"
	"testing"

	"github.com/mobikevpn/mobikevpn/wire"
)

// Known answers for the legacy algorithms' primitives: AES-CCM, AES-GCM with short
// tags, AES-CTR as RFC 3686 keys it, HMAC-SHA1 and HMAC-SHA1-96.

// checkAEAD seals and opens one known answer and checks that tampering with the
// ciphertext, the tag or the additional data, or cutting the message, is rejected.
func checkAEAD(t *testing.T, name string, a cipher.AEAD, nonce, aad, pt, want []byte) {
	t.Helper()
	if got := a.Seal(nil, nonce, pt, aad); !bytes.Equal(got, want) {
		t.Fatalf("%s: seal\n%x\nwant\n%x", name, got, want)
	}
	got, err := a.Open(nil, nonce, want, aad)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("%s: open: %x, %v", name, got, err)
	}
	// In place, as the SK payload does it.
	buf := append(append(make([]byte, 0, len(want)), pt...), make([]byte, a.Overhead())...)
	if sealed := a.Seal(buf[:0], nonce, buf[:len(pt)], aad); !bytes.Equal(sealed, want) || &sealed[0] != &buf[0] {
		t.Fatalf("%s: in-place seal differs", name)
	}
	if opened, err := a.Open(buf[:0], nonce, buf, aad); err != nil || !bytes.Equal(opened, pt) {
		t.Fatalf("%s: in-place open: %v", name, err)
	}
	for _, i := range []int{0, len(want) / 2, len(want) - 1} {
		bad := bytes.Clone(want)
		bad[i] ^= 0x80
		if _, err := a.Open(nil, nonce, bad, aad); err == nil {
			t.Fatalf("%s: flipping octet %d went unnoticed", name, i)
		}
	}
	if len(aad) > 0 {
		bad := bytes.Clone(aad)
		bad[len(bad)-1] ^= 1
		if _, err := a.Open(nil, nonce, want, bad); err == nil {
			t.Fatalf("%s: changed additional data went unnoticed", name)
		}
		if _, err := a.Open(nil, nonce, want, aad[:len(aad)-1]); err == nil {
			t.Fatalf("%s: shortened additional data went unnoticed", name)
		}
	}
	if _, err := a.Open(nil, nonce, want[:len(want)-1], aad); err == nil {
		t.Fatalf("%s: truncated message opened", name)
	}
	if _, err := a.Open(nil, nonce, want[:a.Overhead()-1], aad); err == nil {
		t.Fatalf("%s: message shorter than the tag opened", name)
	}
}

// RFC 3610 packet vectors, NIST SP 800-38C examples and the IEEE examples collected
// by Nettle: nonces of 7 to 13 octets, tags of 4 to 16, additional data up to 64 KiB
// (the 0xfffe length encoding).
func TestCCMKnownAnswers(t *testing.T) {
	recs := readRecords(t, "rfc3610_sp800_38c_ccm_examples.txt")
	rfc3610 := 0
	for _, r := range recs {
		b, err := aes.NewCipher(r.hex(t, "key"))
		if err != nil {
			t.Fatal(err)
		}
		tagLen, _ := strconv.Atoi(r["tag_len"])
		nonce := r.hex(t, "nonce")
		a, err := newCCM(b, len(nonce), tagLen)
		if err != nil {
			t.Fatalf("%s: %v", r["source"], err)
		}
		rep, _ := strconv.Atoi(r["aad_repeat"])
		aad := bytes.Repeat(r.hex(t, "aad"), rep)
		checkAEAD(t, r["source"], a, nonce, aad, r.hex(t, "plaintext"), r.hex(t, "ciphertext"))
		if a.NonceSize() != len(nonce) || a.Overhead() != tagLen {
			t.Errorf("%s: sizes %d/%d", r["source"], a.NonceSize(), a.Overhead())
		}
		if bytes.Contains([]byte(r["source"]), []byte("RFC 3610")) {
			rfc3610++
		}
	}
	if len(recs) != 39 || rfc3610 != 24 {
		t.Fatalf("%d vectors, %d from RFC 3610", len(recs), rfc3610)
	}
}

// AES-CCM as IPsec uses it (11-octet nonce = 3-octet salt | 8-octet IV, 8/12/16-octet
// ICV), through the algorithm table and the exported NewAEAD.
func TestCCMIPsecExamples(t *testing.T) {
	recs := readRecords(t, "strongswan_aes_ccm_ipsec_examples.txt")
	seen := map[string]bool{}
	for _, r := range recs {
		icv, _ := strconv.Atoi(r["icv_len"])
		keyLen, _ := strconv.Atoi(r["key_len"])
		id := map[int]uint16{8: wire.ENCR_AES_CCM_8, 12: wire.ENCR_AES_CCM_12, 16: wire.ENCR_AES_CCM_16}[icv]
		keymat, iv := r.hex(t, "keymat"), r.hex(t, "iv")
		aad, pt, want := r.hex(t, "aad"), r.hex(t, "plaintext"), r.hex(t, "ciphertext")
		alg := lookupEncr(id, 8*keyLen)
		s, err := alg.newSaltedAEAD(keymat)
		if err != nil {
			t.Fatalf("%s: %v", r["name"], err)
		}
		if got := s.seal(nil, iv, pt, aad); !bytes.Equal(got, want) {
			t.Errorf("%s: seal %x, want %x", r["name"], got, want)
		}
		aead, salt, err := NewAEAD(id, 8*keyLen, keymat)
		if err != nil || !bytes.Equal(salt, keymat[keyLen:]) || len(salt) != 3 {
			t.Fatalf("%s: NewAEAD: salt %x, %v", r["name"], salt, err)
		}
		if aead.NonceSize() != 11 || aead.Overhead() != icv {
			t.Errorf("%s: nonce %d, overhead %d", r["name"], aead.NonceSize(), aead.Overhead())
		}
		checkAEAD(t, r["name"], aead, append(bytes.Clone(salt), iv...), aad, pt, want)
		seen[alg.name] = true
	}
	if len(recs) != 11 || len(seen) < 6 {
		t.Fatalf("%d vectors, algorithms %v", len(recs), seen)
	}
}

// Wycheproof AES-CCM: every group whose parameters CCM allows must give the listed
// results; groups with nonce or tag sizes CCM does not allow are refused by newCCM,
// and Wycheproof marks all their tests invalid. The 11-octet-nonce cases also go
// through the IPsec layout (salt | IV).
func TestWycheproofCCM(t *testing.T) {
	f := readWycheproof(t, "aes_ccm_test.json")
	var valid, invalid, refused, ipsec int
	for _, g := range f.TestGroups {
		for _, tc := range g.Tests {
			key, nonce := unhex(t, tc.Key), unhex(t, tc.IV)
			msg, aad := unhex(t, tc.Msg), unhex(t, tc.AAD)
			ct := append(unhex(t, tc.CT), unhex(t, tc.Tag)...)
			b, err := aes.NewCipher(key)
			if err != nil {
				t.Fatal(err)
			}
			a, err := newCCM(b, len(nonce), g.TagSize/8)
			if err != nil || g.IVSize%8 != 0 || g.TagSize%8 != 0 {
				if tc.Result != "invalid" {
					t.Errorf("tcId %d: parameters refused (%v) for a %s case", tc.TcID, err, tc.Result)
				}
				refused++
				continue
			}
			pt, err := a.Open(nil, nonce, ct, aad)
			switch tc.Result {
			case "valid":
				if got := a.Seal(nil, nonce, msg, aad); !bytes.Equal(got, ct) {
					t.Errorf("tcId %d: seal %x, want %x", tc.TcID, got, ct)
				}
				if err != nil || !bytes.Equal(pt, msg) {
					t.Errorf("tcId %d: open: %v", tc.TcID, err)
				}
				valid++
			case "invalid":
				if err == nil {
					t.Errorf("tcId %d (%v): forged message opened", tc.TcID, tc.Flags)
				}
				invalid++
			default:
				t.Fatalf("tcId %d: result %q", tc.TcID, tc.Result)
			}
			if id, ok := map[int]uint16{64: wire.ENCR_AES_CCM_8, 96: wire.ENCR_AES_CCM_12, 128: wire.ENCR_AES_CCM_16}[g.TagSize]; ok && len(nonce) == 11 {
				s, err := lookupEncr(id, 8*len(key)).newSaltedAEAD(append(bytes.Clone(key), nonce[:3]...))
				if err != nil {
					t.Fatal(err)
				}
				if pt, err := s.open(nil, nonce[3:], ct, aad); (err == nil) != (tc.Result == "valid") || err == nil && !bytes.Equal(pt, msg) {
					t.Errorf("tcId %d: IPsec layout: %v", tc.TcID, err)
				}
				ipsec++
			}
		}
	}
	if valid < 400 || invalid < 80 || refused < 60 || ipsec < 18 {
		t.Fatalf("%d valid, %d invalid, %d refused, %d in the IPsec layout", valid, invalid, refused, ipsec)
	}
}

func TestNewCCMParameters(t *testing.T) {
	b, _ := aes.NewCipher(make([]byte, 16))
	for _, c := range []struct{ nonce, tag int }{{6, 16}, {14, 16}, {11, 2}, {11, 7}, {11, 18}, {11, 0}} {
		if _, err := newCCM(b, c.nonce, c.tag); err == nil {
			t.Errorf("nonce %d, tag %d accepted", c.nonce, c.tag)
		}
	}
	a, err := newCCM(b, 13, 4) // L = 2: messages of at most 65535 octets
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, 13)
	if _, err := a.Open(nil, nonce, make([]byte, 65536+4), nil); err == nil {
		t.Error("a message longer than the length field opened")
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Seal of a message longer than the length field did not panic")
			}
		}()
		a.Seal(nil, nonce, make([]byte, 65536), nil)
	}()
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Seal with a wrong nonce length did not panic")
			}
		}()
		a.Seal(nil, nonce[:12], nil, nil)
	}()
}

// AES-GCM with 8 and 12-octet ICVs (ENCR_AES_GCM_8/12). Wycheproof has only 128-bit
// tags; a shorter GCM tag is the full tag's leftmost octets (NIST SP 800-38D section
// 5.2.1.2), so the valid 96-bit-nonce cases give the expected output with the tag cut.
// For the invalid cases, the short tag must be accepted exactly when its octets match
// those of the correct tag (Go's GCM computes the correct one).
func TestWycheproofGCMShortTags(t *testing.T) {
	f := readWycheproof(t, "aes_gcm_test.json")
	n := map[string]int{}
	for _, g := range f.TestGroups {
		if g.IVSize != 96 || g.TagSize != 128 {
			continue
		}
		for _, icv := range []int{8, 12} {
			id := map[int]uint16{8: wire.ENCR_AES_GCM_8, 12: wire.ENCR_AES_GCM_12}[icv]
			alg := lookupEncr(id, g.KeySize)
			for _, tc := range g.Tests {
				key, nonce := unhex(t, tc.Key), unhex(t, tc.IV)
				msg, aad, ct, tag := unhex(t, tc.Msg), unhex(t, tc.AAD), unhex(t, tc.CT), unhex(t, tc.Tag)
				want := append(bytes.Clone(ct), tag[:icv]...)
				s, err := alg.newSaltedAEAD(append(bytes.Clone(key), nonce[:4]...))
				if err != nil {
					t.Fatal(err)
				}
				name := fmt.Sprintf("%s tcId %d", alg.name, tc.TcID)
				if tc.Result == "valid" {
					if got := s.seal(nil, nonce[4:], msg, aad); !bytes.Equal(got, want) {
						t.Errorf("%s: seal %x, want %x", name, got, want)
					}
					checkAEAD(t, name, s.aead, nonce, aad, msg, want)
					n["valid"]++
					continue
				}
				b, _ := aes.NewCipher(key)
				full, _ := cipher.NewGCM(b)
				right := full.Seal(nil, nonce, msg, aad)
				acceptable := bytes.Equal(right[:len(ct)], ct) && bytes.Equal(right[len(ct):len(ct)+icv], tag[:icv])
				if pt, err := s.open(nil, nonce[4:], want, aad); (err == nil) != acceptable || err == nil && !bytes.Equal(pt, msg) {
					t.Errorf("%s (%v): opened %v, want %v", name, tc.Flags, err == nil, acceptable)
				}
				n["invalid"]++
			}
			n[fmt.Sprint(icv)]++
		}
	}
	if n["valid"] < 2*110 || n["invalid"] < 2*70 || n["8"] != 3 || n["12"] != 3 {
		t.Fatalf("cases %v", n)
	}
	// Through NewAEAD: a 4-octet salt and the short overhead.
	for _, id := range []uint16{wire.ENCR_AES_GCM_8, wire.ENCR_AES_GCM_12} {
		a, salt, err := NewAEAD(id, 256, make([]byte, 36))
		if err != nil || len(salt) != 4 || a.NonceSize() != 12 || a.Overhead() != lookupEncr(id, 256).icvLen {
			t.Errorf("NewAEAD(%d): %v, salt %d, sizes %d/%d", id, err, len(salt), a.NonceSize(), a.Overhead())
		}
	}
}

// RFC 3686 section 6: AES-CTR keyed with key | nonce, counter block nonce | IV | 1,
// through the SK cipher's own encryption.
func TestRFC3686AESCTR(t *testing.T) {
	recs := readRecords(t, "rfc3686_aes_ctr_examples.txt")
	for _, r := range recs {
		keyLen, _ := strconv.Atoi(r["key_len"])
		keymat, iv := r.hex(t, "keymat"), r.hex(t, "iv")
		if cb := r.hex(t, "counter_block_1"); !bytes.Equal(cb, append(append(bytes.Clone(keymat[keyLen:]), iv...), 0, 0, 0, 1)) {
			t.Fatalf("%s: counter block %x", r["name"], cb)
		}
		c, err := NewSKCipher(wire.ENCR_AES_CTR, 8*keyLen, wire.AUTH_HMAC_SHA1_96, keymat, make([]byte, 20))
		if err != nil {
			t.Fatal(err)
		}
		buf := r.hex(t, "plaintext")
		c.(*cbcSK).crypt(buf, iv, true)
		if !bytes.Equal(buf, r.hex(t, "ciphertext")) {
			t.Errorf("%s: encrypted %x, want %s", r["name"], buf, r["ciphertext"])
		}
		c.(*cbcSK).crypt(buf, iv, false)
		if !bytes.Equal(buf, r.hex(t, "plaintext")) {
			t.Errorf("%s: decryption differs", r["name"])
		}
	}
	if len(recs) != 9 {
		t.Fatalf("%d vectors", len(recs))
	}
}

// RFC 2202 section 3: HMAC-SHA1 through the PRF, and truncated to 96 bits (RFC 2404)
// through the integrity algorithm.
func TestRFC2202HMACSHA1(t *testing.T) {
	prf, err := NewPRF(wire.PRF_HMAC_SHA1)
	if err != nil {
		t.Fatal(err)
	}
	in := lookupInteg(wire.AUTH_HMAC_SHA1_96)
	recs := readRecords(t, "rfc2202_hmac_sha1.txt")
	n96 := 0
	for _, r := range recs {
		key, data, digest := r.hex(t, "key"), r.hex(t, "data"), r.hex(t, "digest")
		if got := prf.Compute(key, data); !bytes.Equal(got, digest) {
			t.Errorf("case %s: prf %x", r["test_case"], got)
		}
		got := integMAC(in, key, data)
		if !bytes.Equal(got, digest[:12]) {
			t.Errorf("case %s: ICV %x", r["test_case"], got)
		}
		if _, ok := r["digest96"]; ok {
			if !bytes.Equal(got, r.hex(t, "digest96")) {
				t.Errorf("case %s: ICV %x, want digest-96 %s", r["test_case"], got, r["digest96"])
			}
			n96++
		}
	}
	if len(recs) != 7 || n96 != 1 || prf.Size() != 20 || in.icvLen != 12 || in.keyLen != 20 {
		t.Fatalf("%d cases, %d with digest-96", len(recs), n96)
	}
}

// Wycheproof HMAC-SHA1: the 160-bit groups through the PRF; their valid cases also
// through AUTH_HMAC_SHA1_96, which must give the tag's first 96 bits. (The 80-bit
// groups have no IKE counterpart.)
func TestWycheproofHMACSHA1(t *testing.T) {
	f := readWycheproof(t, "hmac_sha1_test.json")
	prf, _ := NewPRF(wire.PRF_HMAC_SHA1)
	in := lookupInteg(wire.AUTH_HMAC_SHA1_96)
	var nPRF, nInteg int
	for _, g := range f.TestGroups {
		if g.TagSize != 160 {
			continue
		}
		for _, tc := range g.Tests {
			key, msg, tag := unhex(t, tc.Key), unhex(t, tc.Msg), unhex(t, tc.Tag)
			if match := AuthEqual(prf.Compute(key, msg), tag); match != (tc.Result == "valid") {
				t.Errorf("tcId %d (%s): match=%v", tc.TcID, tc.Result, match)
			}
			nPRF++
			if tc.Result == "valid" {
				if got := integMAC(in, key, msg); !bytes.Equal(got, tag[:12]) {
					t.Errorf("tcId %d: ICV %x", tc.TcID, got)
				}
				nInteg++
			}
		}
	}
	if nPRF < 80 || nInteg < 30 {
		t.Fatalf("%d PRF and %d integrity cases", nPRF, nInteg)
	}
}
