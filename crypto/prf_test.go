package crypto

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/mobikevpn/mobikevpn/wire"
)

var algByName = map[string]uint16{
	"PRF_HMAC_SHA2_256":      wire.PRF_HMAC_SHA2_256,
	"PRF_HMAC_SHA2_384":      wire.PRF_HMAC_SHA2_384,
	"PRF_HMAC_SHA2_512":      wire.PRF_HMAC_SHA2_512,
	"AUTH_HMAC_SHA2_256_128": wire.AUTH_HMAC_SHA2_256_128,
	"AUTH_HMAC_SHA2_384_192": wire.AUTH_HMAC_SHA2_384_192,
	"AUTH_HMAC_SHA2_512_256": wire.AUTH_HMAC_SHA2_512_256,
}

// RFC 4868 sections 2.7.1 (PRF) and 2.7.2 (truncated integrity).
func TestRFC4868(t *testing.T) {
	var prfs, integs int
	for _, r := range readRecords(t, "rfc4868_hmac_sha2_prf_and_integrity.txt") {
		name := r["algorithm"]
		id, ok := algByName[name]
		if !ok {
			t.Fatalf("unknown algorithm %q", name)
		}
		key, data, want := r.hex(t, "key"), r.hex(t, "data"), r.hex(t, "output")
		var got []byte
		if name[:3] == "PRF" {
			p, err := NewPRF(id)
			if err != nil {
				t.Fatal(err)
			}
			got = p.Compute(key, data)
			// Split input gives the same output.
			if half := len(data) / 2; !bytes.Equal(p.Compute(key, data[:half], data[half:]), want) {
				t.Errorf("%s: split Compute differs", name)
			}
			prfs++
		} else {
			in := lookupInteg(id)
			if len(key) != in.keyLen {
				t.Fatalf("%s: key length %d, table says %d", name, len(key), in.keyLen)
			}
			got = integMAC(in, key, data)
			integs++
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s key %x: got %x, want %x", name, key, got, want)
		}
	}
	if prfs < 12 || integs < 9 {
		t.Fatalf("only %d PRF and %d integrity vectors", prfs, integs)
	}
}

func TestNewPRF(t *testing.T) {
	for id, size := range map[uint16]int{wire.PRF_HMAC_SHA2_256: 32, wire.PRF_HMAC_SHA2_384: 48, wire.PRF_HMAC_SHA2_512: 64, wire.PRF_HMAC_SHA1: 20} {
		p, err := NewPRF(id)
		if err != nil {
			t.Fatal(err)
		}
		if p.Size() != size || p.ID() != id {
			t.Errorf("PRF %d: size %d id %d", id, p.Size(), p.ID())
		}
	}
	for _, id := range []uint16{0, 1, 3, 4, 8} { // MD5, Tiger, AES-XCBC, ...: not implemented
		if _, err := NewPRF(id); err == nil {
			t.Errorf("NewPRF(%d) succeeded", id)
		}
	}
}

// prf+ vectors from NIST CAVP SP 800-135 (via strongSwan).
func TestPRFPlus(t *testing.T) {
	recs := readRecords(t, "ikev2_prf_plus_examples.txt")
	for _, r := range recs {
		p, err := NewPRF(algByName[r["prf"]])
		if err != nil {
			t.Fatal(err)
		}
		key, seed, want := r.hex(t, "key(SKEYSEED)"), r.hex(t, "seed(Ni|Nr|SPIi|SPIr)"), r.hex(t, "prf_plus_output")
		got, err := p.Plus(key, seed, len(want))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: prf+ = %x, want %x", r["prf"], got, want)
		}
		short, _ := p.Plus(key, seed, 7)
		if !bytes.Equal(short, want[:7]) {
			t.Errorf("%s: short prf+ is not a prefix", r["prf"])
		}
	}
	if len(recs) != 7 {
		t.Fatalf("%d prf+ vectors, want 7", len(recs))
	}
}

func TestPRFPlusLimit(t *testing.T) {
	p, _ := NewPRF(wire.PRF_HMAC_SHA2_256)
	if out, err := p.Plus([]byte("k"), []byte("s"), 255*32); err != nil || len(out) != 255*32 {
		t.Fatalf("255 blocks: %d octets, %v", len(out), err)
	}
	if _, err := p.Plus([]byte("k"), []byte("s"), 255*32+1); err == nil {
		t.Fatal("prf+ beyond 255 blocks succeeded")
	}
	if _, err := p.Plus([]byte("k"), []byte("s"), -1); err == nil {
		t.Fatal("negative prf+ length succeeded")
	}
	if out, err := p.Plus([]byte("k"), []byte("s"), 0); err != nil || len(out) != 0 {
		t.Fatalf("empty prf+: %x, %v", out, err)
	}
}

// The NIST ACVP IKEv2 KDF test case from libreswan, run through the real functions
// with an HMAC-SHA-1 PRF.
func TestACVPIKEv2KDF(t *testing.T) {
	in := readRecords(t, "test.acvp.ikev2.inputs.txt")[0]
	raw, err := os.ReadFile(filepath.Join("testdata", "test.acvp.ikev2.json"))
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		SKeySeed      string `json:"sKeySeed"`
		DKM           string `json:"derivedKeyingMaterial"`
		DKMChild      string `json:"derivedKeyingMaterialChild"`
		DKMDh         string `json:"derivedKeyingMaterialDh"`
		SKeySeedReKey string `json:"sKeySeedReKey"`
	}
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	ni, nr := in.hex(t, "nInit"), in.hex(t, "nResp")
	gir, girNew := in.hex(t, "gir"), in.hex(t, "girNew")
	spii := binary.BigEndian.Uint64(in.hex(t, "spiInit"))
	spir := binary.BigEndian.Uint64(in.hex(t, "spiResp"))
	dkm, dkmChild, dkmDh := unhex(t, want.DKM), unhex(t, want.DKMChild), unhex(t, want.DKMDh)
	if in["derivedKeyingMaterialLength"] != "1056" || len(dkm) != 132 {
		t.Fatalf("unexpected DKM length %d", len(dkm))
	}

	prf := newPRFFromHash(2 /* PRF_HMAC_SHA1 */, sha1.New)
	skeyseed := prf.SKEYSEED(ni, nr, gir)
	if !bytes.Equal(skeyseed, unhex(t, want.SKeySeed)) {
		t.Fatalf("SKEYSEED = %x, want %s", skeyseed, want.SKeySeed)
	}

	// With ChaCha20-Poly1305 the IKE SA keys are 20+0+0+36+36+20+20 = 132 octets:
	// exactly the ACVP DKM.
	suite := IKESuite{Encr: wire.ENCR_CHACHA20_POLY1305, PRF: 2, DH: wire.DH_X25519}
	keys, err := DeriveIKEKeys(prf, suite, skeyseed, ni, nr, spii, spir)
	if err != nil {
		t.Fatal(err)
	}
	var cat []byte
	for _, k := range [][]byte{keys.SKd, keys.SKai, keys.SKar, keys.SKei, keys.SKer, keys.SKpi, keys.SKpr} {
		cat = append(cat, k...)
	}
	if !bytes.Equal(cat, dkm) {
		t.Fatalf("IKE keys = %x\nwant DKM  %x", cat, dkm)
	}
	if len(keys.SKai) != 0 || len(keys.SKar) != 0 || len(keys.SKei) != 36 || len(keys.SKd) != 20 {
		t.Fatalf("key lengths d=%d ai=%d ei=%d", len(keys.SKd), len(keys.SKai), len(keys.SKei))
	}

	// Child SA keys: KEYMAT = prf+(SK_d, Ni | Nr), with and without PFS.
	for _, c := range []struct {
		gir  []byte
		want []byte
	}{{nil, dkmChild}, {girNew, dkmDh}} {
		seed := append(append(append([]byte(nil), c.gir...), ni...), nr...)
		full, err := prf.Plus(keys.SKd, seed, len(c.want))
		if err != nil || !bytes.Equal(full, c.want) {
			t.Fatalf("child DKM = %x, %v\nwant %x", full, err, c.want)
		}
		cbc := ESPSuite{Encr: wire.ENCR_AES_CBC, EncrKeyBits: 256, Integ: wire.AUTH_HMAC_SHA2_256_128}
		ck, err := ChildKeymat(prf, keys.SKd, c.gir, ni, nr, cbc)
		if err != nil {
			t.Fatal(err)
		}
		w := c.want
		if !bytes.Equal(ck.EncrI, w[0:32]) || !bytes.Equal(ck.IntegI, w[32:64]) ||
			!bytes.Equal(ck.EncrR, w[64:96]) || !bytes.Equal(ck.IntegR, w[96:128]) {
			t.Fatalf("CBC child keys do not split the DKM in RFC 7296 2.17 order: %+v", ck)
		}
		gcm := ESPSuite{Encr: wire.ENCR_AES_GCM_16, EncrKeyBits: 128}
		ck, err = ChildKeymat(prf, keys.SKd, c.gir, ni, nr, gcm)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ck.EncrI, w[0:20]) || !bytes.Equal(ck.EncrR, w[20:40]) || ck.IntegI != nil || ck.IntegR != nil {
			t.Fatalf("GCM child keys do not split the DKM: %+v", ck)
		}
	}

	rekey := prf.RekeySKEYSEED(keys.SKd, girNew, ni, nr)
	if !bytes.Equal(rekey, unhex(t, want.SKeySeedReKey)) {
		t.Fatalf("rekey SKEYSEED = %x, want %s", rekey, want.SKeySeedReKey)
	}
}

// DeriveIKEKeys slices prf+ output in the RFC 7296 2.14 order with the suite's lengths.
func TestDeriveIKEKeysLayout(t *testing.T) {
	ni, nr := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	skeyseed := bytes.Repeat([]byte{3}, 48)
	for _, c := range []struct {
		suite   IKESuite
		lengths [7]int
	}{
		{IKESuite{Encr: wire.ENCR_AES_CBC, EncrKeyBits: 256, Integ: wire.AUTH_HMAC_SHA2_384_192, PRF: wire.PRF_HMAC_SHA2_384, DH: wire.DH_ECP384},
			[7]int{48, 48, 48, 32, 32, 48, 48}},
		{IKESuite{Encr: wire.ENCR_AES_GCM_16, EncrKeyBits: 128, PRF: wire.PRF_HMAC_SHA2_256, DH: wire.DH_X25519},
			[7]int{32, 0, 0, 20, 20, 32, 32}},
		{IKESuite{Encr: wire.ENCR_AES_GCM_16, EncrKeyBits: 256, PRF: wire.PRF_HMAC_SHA2_512, DH: wire.DH_X25519},
			[7]int{64, 0, 0, 36, 36, 64, 64}},
	} {
		prf, err := NewPRF(c.suite.PRF)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := DeriveIKEKeys(prf, c.suite, skeyseed, ni, nr, 0x0102030405060708, 0x1112131415161718)
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, n := range c.lengths {
			total += n
		}
		seed := append(append(append([]byte(nil), ni...), nr...), 1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18)
		km, _ := prf.Plus(skeyseed, seed, total)
		off := 0
		for i, k := range [][]byte{keys.SKd, keys.SKai, keys.SKar, keys.SKei, keys.SKer, keys.SKpi, keys.SKpr} {
			if len(k) != c.lengths[i] || !bytes.Equal(k, km[off:off+c.lengths[i]]) {
				t.Errorf("%s key %d: %x, want %x", c.suite, i, k, km[off:off+c.lengths[i]])
			}
			off += c.lengths[i]
		}
	}
	bad := IKESuite{Encr: wire.ENCR_AES_CBC, EncrKeyBits: 100, Integ: wire.AUTH_HMAC_SHA2_256_128}
	prf, _ := NewPRF(wire.PRF_HMAC_SHA2_256)
	if _, err := DeriveIKEKeys(prf, bad, skeyseed, ni, nr, 1, 2); err == nil {
		t.Error("DeriveIKEKeys accepted a 100-bit AES key")
	}
	if _, err := ChildKeymat(prf, skeyseed, nil, ni, nr, ESPSuite{Encr: wire.ENCR_AES_CBC, EncrKeyBits: 128}); err == nil {
		t.Error("ChildKeymat accepted AES-CBC without integrity")
	}
}

// Wycheproof HMAC-SHA2: full tags through the PRF, truncated tags through the
// integrity algorithms. HMAC-SHA1 has no 96-bit groups; it is covered by
// TestWycheproofHMACSHA1.
func TestWycheproofHMAC(t *testing.T) {
	for _, c := range []struct {
		file  string
		prf   uint16
		integ uint16
	}{
		{"hmac_sha256_test.json", wire.PRF_HMAC_SHA2_256, wire.AUTH_HMAC_SHA2_256_128},
		{"hmac_sha384_test.json", wire.PRF_HMAC_SHA2_384, wire.AUTH_HMAC_SHA2_384_192},
		{"hmac_sha512_test.json", wire.PRF_HMAC_SHA2_512, wire.AUTH_HMAC_SHA2_512_256},
	} {
		f := readWycheproof(t, c.file)
		prf, _ := NewPRF(c.prf)
		in := lookupInteg(c.integ)
		var nPRF, nInteg int
		for _, g := range f.TestGroups {
			var mac func(key, msg []byte) []byte
			switch g.TagSize / 8 {
			case prf.Size():
				mac = func(key, msg []byte) []byte { return prf.Compute(key, msg) }
				nPRF += len(g.Tests)
			case in.icvLen:
				mac = func(key, msg []byte) []byte { return integMAC(in, key, msg) }
				nInteg += len(g.Tests)
			default:
				t.Fatalf("%s: unexpected tag size %d", c.file, g.TagSize)
			}
			for _, tc := range g.Tests {
				got := mac(unhex(t, tc.Key), unhex(t, tc.Msg))
				match := AuthEqual(got, unhex(t, tc.Tag))
				if match != (tc.Result == "valid") {
					t.Errorf("%s tcId %d (%s): match=%v", c.file, tc.TcID, tc.Result, match)
				}
			}
		}
		if nPRF < 80 || nInteg < 80 {
			t.Fatalf("%s: %d PRF and %d integrity cases", c.file, nPRF, nInteg)
		}
	}
}
