package esp

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"os"
	"strings"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

// readVectors parses blank-line separated records of "name = hex" lines, skipping
// comments; each record keeps the comment line before it as "title".
func readVectors(t *testing.T, path string) []map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []map[string]string
	cur := map[string]string{}
	title := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			if len(cur) > 0 {
				cur["title"] = title
				recs = append(recs, cur)
				cur = map[string]string{}
			}
		case strings.HasPrefix(line, "#"):
			title = strings.TrimSpace(strings.TrimPrefix(line, "#"))
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: bad line %q", path, line)
			}
			cur[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	if len(cur) > 0 {
		cur["title"] = title
		recs = append(recs, cur)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return recs
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("hex %q: %v", s, err)
	}
	return b
}

func mustSuite(t testing.TB, k Keys) *suite {
	t.Helper()
	s, err := newSuite(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestGCMDraftVectors seals and opens the whole ESP packets of draft-mcgrew-gcm-test-01.
func TestGCMDraftVectors(t *testing.T) {
	recs := readVectors(t, "testdata/draft-mcgrew-gcm-test-01_esp_aes_gcm.txt")
	if len(recs) != 14 {
		t.Fatalf("got %d records, want 14", len(recs))
	}
	for _, r := range recs {
		t.Run(r["title"], func(t *testing.T) {
			key := append(unhex(t, r["key"]), unhex(t, r["salt"])...)
			s := mustSuite(t, Keys{Encr: EncrAESGCM16, EncrKeyBits: (len(key) - 4) * 8, EncrKey: key})
			seqb := unhex(t, r["seq"])
			esn := len(seqb) == 8
			var seq uint64
			if esn {
				seq = binary.BigEndian.Uint64(seqb)
			} else {
				seq = uint64(binary.BigEndian.Uint32(seqb))
			}
			spi := binary.BigEndian.Uint32(unhex(t, r["spi"]))
			iv, pt, want := unhex(t, r["iv"]), unhex(t, r["plaintext"]), unhex(t, r["esp_packet"])
			var sc scratch

			b := make([]byte, 16+len(pt)+16)
			copy(b[16:], pt)
			n := s.sealRaw(&sc, b, spi, seq, esn, iv, len(pt))
			if !bytes.Equal(b[:n], want) {
				t.Fatalf("seal:\n got %x\nwant %x", b[:n], want)
			}

			b = append([]byte(nil), want...)
			got, r0 := s.openRaw(&sc, b, seq, esn)
			if r0 != dropNone || !bytes.Equal(got, pt) {
				t.Fatalf("open: %v %x, want %x", r0, got, pt)
			}

			// Any flipped bit, and (with ESN) a wrong high half, fails authentication.
			for _, i := range []int{0, 5, 9, len(want) / 2, len(want) - 1} {
				b = append([]byte(nil), want...)
				b[i] ^= 0x10
				if _, r0 := s.openRaw(&sc, b, seq, esn); r0 != dropAuth {
					t.Errorf("flipped byte %d: %v, want auth failure", i, r0)
				}
			}
			if esn {
				b = append([]byte(nil), want...)
				if _, r0 := s.openRaw(&sc, b, seq+1<<32, esn); r0 != dropAuth {
					t.Errorf("wrong seq_hi: %v, want auth failure", r0)
				}
			}
		})
	}
}

// TestChaChaRFC7634 reproduces RFC 7634 Appendix A, padding included, from the inner
// packet.
func TestChaChaRFC7634(t *testing.T) {
	recs := readVectors(t, "testdata/rfc7634_chacha20poly1305_examples.txt")
	r := recs[0]
	if !strings.Contains(r["title"], "Appendix A") {
		t.Fatalf("first record is %q", r["title"])
	}
	s := mustSuite(t, Keys{Encr: EncrChaCha20Poly1305, EncrKeyBits: 256, EncrKey: unhex(t, r["keymat"])})
	spi := binary.BigEndian.Uint32(unhex(t, r["spi"]))
	seq := uint64(binary.BigEndian.Uint32(unhex(t, r["seq"])))
	pt, want := unhex(t, r["plaintext"]), unhex(t, r["esp_packet"])
	inner := pt[:len(pt)-4] // the vector's trailer is 01 02 | pad length 2 | next header 4
	if !bytes.Equal(pt[len(pt)-4:], []byte{1, 2, 2, 4}) {
		t.Fatalf("unexpected trailer %x", pt[len(pt)-4:])
	}
	var sc scratch
	b := make([]byte, 16+len(inner)+maxTailLen)
	copy(b[16:], inner)
	n := s.sealIV(&sc, b, spi, seq, false, len(inner), protoIPv4, unhex(t, r["iv"]))
	if !bytes.Equal(b[:n], want) {
		t.Fatalf("seal:\n got %x\nwant %x", b[:n], want)
	}
	payload, nh, r0 := s.open(&sc, append([]byte(nil), want...), seq, false)
	if r0 != dropNone || nh != protoIPv4 || !bytes.Equal(payload, inner) {
		t.Fatalf("open: %v nh %d %x", r0, nh, payload)
	}
}

var testSuites = []struct {
	name string
	keys Keys
}{
	{"aes128gcm", Keys{Encr: EncrAESGCM16, EncrKeyBits: 128, EncrKey: seqBytes(20)}},
	{"aes256gcm", Keys{Encr: EncrAESGCM16, EncrKeyBits: 256, EncrKey: seqBytes(36)}},
	{"chacha20poly1305", Keys{Encr: EncrChaCha20Poly1305, EncrKey: seqBytes(36)}},
	{"aes128cbc-sha256", Keys{Encr: EncrAESCBC, EncrKeyBits: 128, EncrKey: seqBytes(16), Integ: IntegHMACSHA2_256128, IntegKey: seqBytes(32)}},
	{"aes256cbc-sha384", Keys{Encr: EncrAESCBC, EncrKeyBits: 256, EncrKey: seqBytes(32), Integ: IntegHMACSHA2_384192, IntegKey: seqBytes(48)}},
	{"aes256cbc-sha512", Keys{Encr: EncrAESCBC, EncrKeyBits: 256, EncrKey: seqBytes(32), Integ: IntegHMACSHA2_512256, IntegKey: seqBytes(64)}},
	// The transforms old gateways ask for (issue 18).
	{"aes128gcm8", Keys{Encr: EncrAESGCM8, EncrKeyBits: 128, EncrKey: seqBytes(20)}},
	{"aes256gcm12", Keys{Encr: EncrAESGCM12, EncrKeyBits: 256, EncrKey: seqBytes(36)}},
	{"aes128ccm8", Keys{Encr: EncrAESCCM8, EncrKeyBits: 128, EncrKey: seqBytes(19)}},
	{"aes192ccm12", Keys{Encr: EncrAESCCM12, EncrKeyBits: 192, EncrKey: seqBytes(27)}},
	{"aes256ccm16", Keys{Encr: EncrAESCCM16, EncrKeyBits: 256, EncrKey: seqBytes(35)}},
	{"aes128ctr-sha1", Keys{Encr: EncrAESCTR, EncrKeyBits: 128, EncrKey: seqBytes(20), Integ: IntegHMACSHA1_96, IntegKey: seqBytes(20)}},
	{"aes256ctr-sha256", Keys{Encr: EncrAESCTR, EncrKeyBits: 256, EncrKey: seqBytes(36), Integ: IntegHMACSHA2_256128, IntegKey: seqBytes(32)}},
	{"aes128cbc-sha1", Keys{Encr: EncrAESCBC, EncrKeyBits: 128, EncrKey: seqBytes(16), Integ: IntegHMACSHA1_96, IntegKey: seqBytes(20)}},
}

func seqBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	return b
}

// TestSealOpenRoundTrip checks every suite, with and without ESN, for every payload
// length up to 80: layout, alignment, padding, and that open undoes seal.
func TestSealOpenRoundTrip(t *testing.T) {
	for _, ts := range testSuites {
		s := mustSuite(t, ts.keys)
		for _, esn := range []bool{false, true} {
			var sc scratch
			for n := 0; n <= 80; n++ {
				seq := uint64(1)<<32*7 + uint64(n) + 1
				payload := seqBytes(n)
				hl := s.headLen()
				b := make([]byte, hl+n+maxTailLen)
				copy(b[hl:], payload)
				m := s.seal(&sc, b, 0x1234, seq, esn, n, 41)
				if m != s.sealedLen(n) {
					t.Fatalf("%s n=%d: sealed %d bytes, sealedLen %d", ts.name, n, m, s.sealedLen(n))
				}
				if ctLen := m - hl - s.icv; ctLen%s.align != 0 || ctLen < n+2 || ctLen >= n+2+s.align {
					t.Fatalf("%s n=%d: ciphertext length %d", ts.name, n, ctLen)
				}
				if binary.BigEndian.Uint32(b[0:4]) != 0x1234 || binary.BigEndian.Uint32(b[4:8]) != uint32(seq) {
					t.Fatalf("%s: header %x", ts.name, b[:8])
				}
				got, nh, r := s.open(&sc, b[:m], seq, esn)
				if r != dropNone || nh != 41 || !bytes.Equal(got, payload) {
					t.Fatalf("%s esn=%v n=%d: open %v nh=%d %x", ts.name, esn, n, r, nh, got)
				}
				// The trailer is checked: re-seal and verify a wrong seq fails.
				copy(b[hl:], payload)
				m = s.seal(&sc, b, 0x1234, seq, esn, n, 41)
				wrong := seq + 1<<32 // the same low half on the wire
				if !esn {
					wrong = seq
					b[7]++ // without ESN the sequence number is all on the wire
				}
				if _, _, r := s.open(&sc, b[:m], wrong, esn); r != dropAuth {
					t.Fatalf("%s esn=%v: open with wrong seq: %v", ts.name, esn, r)
				}
			}
		}
	}
}

// TestSealTooShort checks that seal refuses a buffer without tailroom.
func TestSealTooShort(t *testing.T) {
	for _, ts := range testSuites {
		s := mustSuite(t, ts.keys)
		var sc scratch
		b := make([]byte, s.sealedLen(100)-1)
		if n := s.seal(&sc, b, 0x1234, 1, false, 100, 4); n != 0 {
			t.Errorf("%s: sealed %d bytes into a short buffer", ts.name, n)
		}
	}
}

func TestCBCIVsUnique(t *testing.T) {
	s := mustSuite(t, testSuites[3].keys)
	s2 := mustSuite(t, testSuites[3].keys)
	var sc scratch
	seen := map[[16]byte]bool{}
	for seq := uint64(1); seq < 1000; seq++ {
		iv := [16]byte(s.nextIV(&sc, seq))
		if seen[iv] {
			t.Fatalf("IV repeated at %d", seq)
		}
		seen[iv] = true
	}
	// Another SA with the same keys has its own IV key.
	if iv := [16]byte(s2.nextIV(&sc, 1)); seen[iv] {
		t.Fatal("two SAs produce the same IV sequence")
	}
}

// TestOpenIndependentCBC opens packets assembled in the test directly with
// crypto/cipher and crypto/hmac (RFC 4303 3.3.2.2 / RFC 4868: ICV = truncated HMAC
// over SPI|seq|IV|ciphertext, followed by seq_hi with ESN), and checks that the
// suite's own packets verify the same way.
func TestOpenIndependentCBC(t *testing.T) {
	for _, tc := range []struct {
		integ   uint16
		newHash func() hash.Hash
		keyLen  int
		icv     int
	}{
		{IntegHMACSHA2_256128, sha256.New, 32, 16},
		{IntegHMACSHA2_384192, sha512.New384, 48, 24},
		{IntegHMACSHA2_512256, sha512.New, 64, 32},
	} {
		for _, esn := range []bool{false, true} {
			t.Run(fmt.Sprintf("integ%d/esn=%v", tc.integ, esn), func(t *testing.T) {
				ek, ik := seqBytes(32), seqBytes(tc.keyLen)[1:]
				ik = append(ik, 0x55)
				s := mustSuite(t, Keys{Encr: EncrAESCBC, EncrKeyBits: 256, EncrKey: ek, Integ: tc.integ, IntegKey: ik})
				const spi = 0xabcdef01
				seq := uint64(0x00000003fffffff0)
				inner := seqBytes(61)
				// Independent construction.
				pad := (16 - (len(inner)+2)%16) % 16
				pt := append([]byte(nil), inner...)
				for i := range pad {
					pt = append(pt, byte(i+1))
				}
				pt = append(pt, byte(pad), 41)
				iv := seqBytes(16)
				block, _ := aes.NewCipher(ek)
				ct := make([]byte, len(pt))
				cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, pt)
				pkt := binary.BigEndian.AppendUint32(nil, spi)
				pkt = binary.BigEndian.AppendUint32(pkt, uint32(seq))
				pkt = append(pkt, iv...)
				pkt = append(pkt, ct...)
				mac := hmac.New(tc.newHash, ik)
				mac.Write(pkt)
				if esn {
					mac.Write(binary.BigEndian.AppendUint32(nil, uint32(seq>>32)))
				}
				pkt = append(pkt, mac.Sum(nil)[:tc.icv]...)

				var sc scratch
				got, nh, r := s.open(&sc, append([]byte(nil), pkt...), seq, esn)
				if r != dropNone || nh != 41 || !bytes.Equal(got, inner) {
					t.Fatalf("open independent packet: %v nh=%d %x", r, nh, got)
				}

				// And the other way: our packet, checked and decrypted independently.
				b := make([]byte, 24+len(inner)+maxTailLen)
				copy(b[24:], inner)
				n := s.seal(&sc, b, spi, seq, esn, len(inner), 41)
				ours := b[:n]
				mac.Reset()
				mac.Write(ours[:n-tc.icv])
				if esn {
					mac.Write(binary.BigEndian.AppendUint32(nil, uint32(seq>>32)))
				}
				if !hmac.Equal(mac.Sum(nil)[:tc.icv], ours[n-tc.icv:]) {
					t.Fatal("our ICV does not verify independently")
				}
				dec := make([]byte, n-24-tc.icv)
				cipher.NewCBCDecrypter(block, ours[8:24]).CryptBlocks(dec, ours[24:n-tc.icv])
				if !bytes.Equal(dec, pt) {
					t.Fatalf("independent decrypt:\n got %x\nwant %x", dec, pt)
				}
			})
		}
	}
}

// TestOpenIndependentAEAD does the same for AES-GCM and ChaCha20-Poly1305 with the
// RFC 4106/7634 nonce (salt | IV) and AAD (SPI | [seq_hi |] seq_lo).
func TestOpenIndependentAEAD(t *testing.T) {
	for _, encr := range []uint16{EncrAESGCM16, EncrChaCha20Poly1305} {
		for _, esn := range []bool{false, true} {
			key := seqBytes(36)
			s := mustSuite(t, Keys{Encr: encr, EncrKey: key})
			var a cipher.AEAD
			if encr == EncrAESGCM16 {
				b, _ := aes.NewCipher(key[:32])
				a, _ = cipher.NewGCM(b)
			} else {
				a, _ = chacha20poly1305.New(key[:32])
			}
			const spi = 0x01020304
			seq := uint64(0x0000000500000007)
			inner := seqBytes(45)
			pt := append([]byte(nil), inner...)
			pad := (4 - (len(inner)+2)%4) % 4
			for i := range pad {
				pt = append(pt, byte(i+1))
			}
			pt = append(pt, byte(pad), 4)
			iv := []byte{9, 8, 7, 6, 5, 4, 3, 2}
			nonce := append(append([]byte(nil), key[32:]...), iv...)
			hdr := binary.BigEndian.AppendUint32(nil, spi)
			hdr = binary.BigEndian.AppendUint32(hdr, uint32(seq))
			aad := hdr
			if esn {
				aad = binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, spi), uint32(seq>>32))
				aad = binary.BigEndian.AppendUint32(aad, uint32(seq))
			}
			pkt := append(append(hdr[:8:8], iv...), a.Seal(nil, nonce, pt, aad)...)
			var sc scratch
			got, nh, r := s.open(&sc, pkt, seq, esn)
			if r != dropNone || nh != 4 || !bytes.Equal(got, inner) {
				t.Fatalf("encr %d esn=%v: %v nh=%d %x", encr, esn, r, nh, got)
			}
		}
	}
}

func TestStripTrailer(t *testing.T) {
	for i, tc := range []struct {
		in      string
		payload string
		nh      byte
		ok      bool
	}{
		{"aabb0004", "aabb", 4, true},
		{"aa01020204", "aa", 4, true},
		{"0029", "", 41, true},
		{"aa01030204", "", 0, false}, // pad bytes not 1,2
		{"aa0103", "", 0, false},     // pad length 3 > 1 available
		{"04", "", 0, false},
		{"", "", 0, false},
		{"aa0102030405060708090929", "aa", 41, true},
	} {
		p, nh, ok := stripTrailer(unhex(t, tc.in))
		if ok != tc.ok || ok && (hex.EncodeToString(p) != tc.payload || nh != tc.nh) {
			t.Errorf("%d: stripTrailer(%s) = %x %d %v", i, tc.in, p, nh, ok)
		}
	}
}

func TestNewSuiteErrors(t *testing.T) {
	for i, k := range []Keys{
		{Encr: EncrAESGCM16, EncrKey: seqBytes(16)},                                  // salt missing
		{Encr: EncrAESGCM16, EncrKeyBits: 256, EncrKey: seqBytes(20)},                // length mismatch
		{Encr: EncrAESGCM16, EncrKey: seqBytes(20), Integ: IntegHMACSHA2_256128},     // AEAD plus integrity
		{Encr: EncrChaCha20Poly1305, EncrKey: seqBytes(32)},                          // salt missing
		{Encr: EncrChaCha20Poly1305, EncrKeyBits: 128, EncrKey: seqBytes(36)},        // bits
		{Encr: EncrAESCBC, EncrKey: seqBytes(16)},                                    // no integrity
		{Encr: EncrAESCBC, EncrKey: seqBytes(16), Integ: 1, IntegKey: seqBytes(16)},  // HMAC-MD5 not offered
		{Encr: EncrAESCBC, EncrKey: seqBytes(16), Integ: IntegHMACSHA2_256128},       // no integrity key
		{Encr: EncrAESCBC, EncrKey: seqBytes(15), Integ: 12, IntegKey: seqBytes(32)}, // key length
		{Encr: 3, EncrKey: seqBytes(24)},                                             // 3DES
	} {
		if _, err := newSuite(k); err == nil {
			t.Errorf("%d: newSuite(%+v) accepted", i, k)
		}
	}
}
