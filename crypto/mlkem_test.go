package crypto

import (
	"bytes"
	"crypto/mlkem"
	"crypto/sha3"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/cryptotest"

	"github.com/mobikevpn/mobikevpn/wire"
)

// The KATs: NIST ACVP (key generation, encapsulation) and Wycheproof (decapsulation,
// implicit rejection included, and encapsulation keys that fail FIPS 203's checks). See
// the headers of the testdata files for their sources.

// TestMLKEM768ACVPKeyGen: the seed d || z, read from rand, gives ek; the expanded dk's
// tail (ek || H(ek) || z) matches. Its head dk_PKE is not reachable: crypto/mlkem keeps
// the seed form only.
func TestMLKEM768ACVPKeyGen(t *testing.T) {
	n := 0
	for _, r := range readRecords(t, "mlkem768_acvp.txt") {
		if r["kind"] != "keygen" {
			continue
		}
		n++
		d, z, ek, dk := r.hex(t, "d"), r.hex(t, "z"), r.hex(t, "ek"), r.hex(t, "dk")
		rd := bytes.NewReader(append(append([]byte(nil), d...), z...))
		kx, err := NewKeyExchange(wire.KE_MLKEM768, rd)
		if err != nil {
			t.Fatalf("tcId %s: %v", r["tcId"], err)
		}
		if rd.Len() != 0 {
			t.Errorf("tcId %s: %d seed octets left unread", r["tcId"], rd.Len())
		}
		if !bytes.Equal(kx.PublicKey(), ek) {
			t.Errorf("tcId %s: encapsulation key differs", r["tcId"])
		}
		h := sha3.Sum256(ek)
		if len(dk) != 2400 || !bytes.Equal(dk[1152:2336], ek) || !bytes.Equal(dk[2336:2368], h[:]) || !bytes.Equal(dk[2368:], z) {
			t.Errorf("tcId %s: dk is not dk_PKE || ek || H(ek) || z", r["tcId"])
		}
	}
	if n != 10 {
		t.Fatalf("%d keygen vectors, want 10", n)
	}
}

// TestMLKEM768ACVPEncap: the responder, given ek and a reader that yields m, answers
// with the vector's ciphertext and shared secret.
func TestMLKEM768ACVPEncap(t *testing.T) {
	n := 0
	for _, r := range readRecords(t, "mlkem768_acvp.txt") {
		if r["kind"] != "encap" {
			continue
		}
		n++
		ct, k, err := RespondKeyExchange(wire.KE_MLKEM768, r.hex(t, "ek"), bytes.NewReader(r.hex(t, "m")))
		if err != nil {
			t.Fatalf("tcId %s: %v", r["tcId"], err)
		}
		if !bytes.Equal(ct, r.hex(t, "c")) || !bytes.Equal(k, r.hex(t, "k")) {
			t.Errorf("tcId %s: ciphertext or shared secret differs", r["tcId"])
		}
	}
	if n != 10 {
		t.Fatalf("%d encap vectors, want 10", n)
	}
}

// TestMLKEM768WycheproofDecaps: the initiator's key from the seed, and its
// decapsulation of valid, random and bit-flipped ciphertexts (the last two rejected
// implicitly: K = J(z || c)); a ciphertext of the wrong length is an error.
func TestMLKEM768WycheproofDecaps(t *testing.T) {
	n, rejected := 0, 0
	for _, r := range readRecords(t, "mlkem768_wycheproof.txt") {
		if r["kind"] != "decaps" {
			continue
		}
		n++
		seed := r.hex(t, "seed")
		kx, err := NewKeyExchange(wire.KE_MLKEM768, bytes.NewReader(seed))
		if err != nil {
			t.Fatalf("tcId %s: %v", r["tcId"], err)
		}
		if !bytes.Equal(kx.PublicKey(), r.hex(t, "ek")) {
			t.Errorf("tcId %s: encapsulation key differs", r["tcId"])
		}
		c := r.hex(t, "c")
		k, err := kx.SharedSecret(c)
		if r["result"] == "invalid" {
			if err == nil {
				t.Errorf("tcId %s (%s): ciphertext of %d octets accepted", r["tcId"], r["comment"], len(c))
			}
			continue
		}
		if err != nil || !bytes.Equal(k, r.hex(t, "K")) {
			t.Errorf("tcId %s (%s): shared secret differs (err %v)", r["tcId"], r["comment"], err)
		}
		if r["rejection"] == "yes" {
			rejected++
			if !bytes.Equal(k, sha3.SumSHAKE256(append(seed[32:], c...), 32)) {
				t.Errorf("tcId %s: K is not J(z || c)", r["tcId"])
			}
		}
	}
	if n != 17 || rejected != 8 {
		t.Fatalf("%d decaps vectors, %d implicitly rejected; want 17, 8", n, rejected)
	}
}

// TestMLKEM768WycheproofEncaps: valid keys give the vector's ciphertext and secret;
// keys of the wrong length or with a coefficient not below q are refused as the
// peer's fault, before any randomness is drawn.
func TestMLKEM768WycheproofEncaps(t *testing.T) {
	n, refused := 0, 0
	for _, r := range readRecords(t, "mlkem768_wycheproof.txt") {
		if r["kind"] != "encaps" {
			continue
		}
		n++
		rd := bytes.NewReader(r.hex(t, "m"))
		ct, k, err := RespondKeyExchange(wire.KE_MLKEM768, r.hex(t, "ek"), rd)
		if r["result"] == "invalid" {
			refused++
			if !errors.Is(err, ErrInvalidKEData) || ct != nil || k != nil {
				t.Errorf("tcId %s (%s%s): err %v, want ErrInvalidKEData", r["tcId"], r["comment"], r["flags"], err)
			}
			if rd.Len() != 32 {
				t.Errorf("tcId %s: randomness drawn for a refused key", r["tcId"])
			}
			continue
		}
		if err != nil || !bytes.Equal(ct, r.hex(t, "c")) || !bytes.Equal(k, r.hex(t, "K")) {
			t.Errorf("tcId %s (%s): ciphertext or shared secret differs (err %v)", r["tcId"], r["comment"], err)
		}
	}
	if n != 14 || refused != 10 {
		t.Fatalf("%d encaps vectors, %d refused; want 14, 10", n, refused)
	}
}

// TestMLKEM768TwoParty runs both roles through the API: the initiator's encapsulation
// key, the responder's ciphertext, equal secrets; the same randomness gives the same
// exchange.
func TestMLKEM768TwoParty(t *testing.T) {
	run := func(t *testing.T, ri, rr func() *detReader) (ek, ct, secret []byte) {
		var a KeyExchange
		var err error
		if ri == nil {
			a, err = NewKeyExchange(wire.KE_MLKEM768, nil)
		} else {
			a, err = NewKeyExchange(wire.KE_MLKEM768, ri())
		}
		if err != nil {
			t.Fatal(err)
		}
		if a.Group() != wire.KE_MLKEM768 {
			t.Fatalf("Group() = %d", a.Group())
		}
		ek = a.PublicKey()
		var sr []byte
		if rr == nil {
			ct, sr, err = RespondKeyExchange(wire.KE_MLKEM768, ek, nil)
		} else {
			ct, sr, err = RespondKeyExchange(wire.KE_MLKEM768, ek, rr())
		}
		if err != nil {
			t.Fatal(err)
		}
		si, err := a.SharedSecret(ct)
		if err != nil {
			t.Fatal(err)
		}
		if len(ek) != 1184 || len(ct) != 1088 || len(si) != 32 || !bytes.Equal(si, sr) {
			t.Fatalf("ek %d, ct %d, secrets %x / %x", len(ek), len(ct), si, sr)
		}
		ek[0] ^= 1
		if bytes.Equal(a.PublicKey(), ek) {
			t.Fatal("PublicKey returns the key's own slice")
		}
		ek[0] ^= 1
		return ek, ct, si
	}
	seeded := func(s string) func() *detReader { return func() *detReader { return &detReader{seed: []byte(s)} } }
	t.Run("crypto/rand", func(t *testing.T) {
		ek1, ct1, s1 := run(t, nil, nil)
		ek2, ct2, s2 := run(t, nil, nil)
		if bytes.Equal(ek1, ek2) || bytes.Equal(ct1, ct2) || bytes.Equal(s1, s2) {
			t.Fatal("two exchanges from crypto/rand are alike")
		}
	})
	t.Run("reader", func(t *testing.T) {
		ek1, ct1, s1 := run(t, seeded("i"), seeded("r"))
		ek2, ct2, s2 := run(t, seeded("i"), seeded("r"))
		if !bytes.Equal(ek1, ek2) || !bytes.Equal(ct1, ct2) || !bytes.Equal(s1, s2) {
			t.Fatal("the same readers gave different exchanges")
		}
		ek3, ct3, _ := run(t, seeded("i"), seeded("x"))
		if !bytes.Equal(ek1, ek3) || bytes.Equal(ct1, ct3) {
			t.Fatal("another responder reader: want the same key, another ciphertext")
		}
	})
	t.Run("global random", func(t *testing.T) {
		// How a test makes the crypto/rand path reproducible too.
		var cts [2][]byte
		for i := range cts {
			cryptotest.SetGlobalRandom(t, 7)
			_, cts[i], _ = run(t, nil, nil)
		}
		if !bytes.Equal(cts[0], cts[1]) {
			t.Fatal("SetGlobalRandom does not fix the exchange")
		}
	})
}

// setCoeff sets coefficient i (0 to 767) of the 12-bit packed t-hat in ek to v.
func setCoeff(ek []byte, i int, v uint16) {
	b := ek[i/2*3:]
	if i%2 == 0 {
		b[0] = byte(v)
		b[1] = b[1]&0xf0 | byte(v>>8)
	} else {
		b[1] = b[1]&0x0f | byte(v<<4)
		b[2] = byte(v >> 4)
	}
}

// reduced reports whether every coefficient of ek's t-hat is below q = 3329 (FIPS 203
// section 7.2, modulus check), decoded independently of crypto/mlkem.
func reduced(ek []byte) bool {
	for i := 0; i+2 < 1152; i += 3 {
		c0 := uint16(ek[i]) | uint16(ek[i+1]&0x0f)<<8
		c1 := uint16(ek[i+1])>>4 | uint16(ek[i+2])<<4
		if c0 >= 3329 || c1 >= 3329 {
			return false
		}
	}
	return true
}

func TestMLKEM768MalformedEncapsulationKey(t *testing.T) {
	a, err := NewKeyExchange(wire.KE_MLKEM768, &detReader{seed: []byte("malformed")})
	if err != nil {
		t.Fatal(err)
	}
	ek := a.PublicKey()
	bad := map[string][]byte{
		"empty":      nil,
		"short":      ek[:1183],
		"long":       append(append([]byte(nil), ek...), 0),
		"ciphertext": make([]byte, 1088),
		"x25519":     make([]byte, 32),
	}
	for _, c := range []struct {
		i int
		v uint16
	}{{0, 3329}, {1, 4095}, {767, 3329}, {400, 0xfff}} {
		k := append([]byte(nil), ek...)
		setCoeff(k, c.i, c.v)
		if reduced(k) {
			t.Fatalf("coefficient %d = %d: still reduced", c.i, c.v)
		}
		bad[fmt.Sprintf("coefficient %d = %d", c.i, c.v)] = k
	}
	for name, k := range bad {
		ct, s, err := RespondKeyExchange(wire.KE_MLKEM768, k, nil)
		if !errors.Is(err, ErrInvalidKEData) || ct != nil || s != nil {
			t.Errorf("%s: err %v, want ErrInvalidKEData", name, err)
		}
	}
	// The largest reduced coefficient, and any rho, are fine.
	k := append([]byte(nil), ek...)
	setCoeff(k, 5, 3328)
	copy(k[1152:], bytes.Repeat([]byte{0xff}, 32))
	if !reduced(k) {
		t.Fatal("3328 not reduced")
	}
	if _, _, err := RespondKeyExchange(wire.KE_MLKEM768, k, nil); err != nil {
		t.Errorf("reduced key with another rho refused: %v", err)
	}
}

func TestMLKEM768Ciphertext(t *testing.T) {
	a, _ := NewKeyExchange(wire.KE_MLKEM768, &detReader{seed: []byte("ct")})
	ct, s, err := RespondKeyExchange(wire.KE_MLKEM768, a.PublicKey(), &detReader{seed: []byte("m")})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 1087, 1089, 1184} {
		if _, err := a.SharedSecret(make([]byte, n)); err == nil {
			t.Errorf("ciphertext of %d octets accepted", n)
		}
	}
	// A tampered ciphertext decapsulates, to another secret (implicit rejection).
	ct[100] ^= 0x20
	got, err := a.SharedSecret(ct)
	if err != nil || len(got) != 32 || bytes.Equal(got, s) {
		t.Errorf("tampered ciphertext: %x, %v", got, err)
	}
}

// TestRespondKeyExchange: the responder's call serves the DH groups too; only the
// peer's data is ErrInvalidKEData, not a failing randomness source or an unknown
// method.
func TestRespondKeyExchange(t *testing.T) {
	for _, g := range allGroups {
		a, _ := NewKeyExchange(g, nil)
		ours, shared, err := RespondKeyExchange(g, a.PublicKey(), nil)
		if err != nil {
			t.Fatalf("group %d: %v", g, err)
		}
		if mine, err := a.SharedSecret(ours); err != nil || !bytes.Equal(mine, shared) {
			t.Errorf("group %d: secrets differ (%v)", g, err)
		}
		if _, _, err := RespondKeyExchange(g, make([]byte, 3), nil); !errors.Is(err, ErrInvalidKEData) {
			t.Errorf("group %d: short value: %v", g, err)
		}
		if _, _, err := RespondKeyExchange(g, a.PublicKey(), bytes.NewReader(nil)); err == nil || errors.Is(err, ErrInvalidKEData) {
			t.Errorf("group %d: no randomness: %v", g, err)
		}
	}
	a, _ := NewKeyExchange(wire.KE_MLKEM768, nil)
	if _, _, err := RespondKeyExchange(wire.KE_MLKEM768, a.PublicKey(), bytes.NewReader(nil)); err == nil || errors.Is(err, ErrInvalidKEData) {
		t.Errorf("mlkem768: no randomness: %v", err)
	}
	if _, err := NewKeyExchange(wire.KE_MLKEM768, bytes.NewReader(make([]byte, 63))); err == nil {
		t.Error("mlkem768 key from 63 octets")
	}
	for _, g := range []uint16{wire.DH_NONE, wire.KE_MLKEM512, wire.KE_MLKEM1024} {
		if _, _, err := RespondKeyExchange(g, make([]byte, 800), nil); err == nil || errors.Is(err, ErrInvalidKEData) {
			t.Errorf("group %d: %v", g, err)
		}
	}
}

// TestMLKEMAdditionalKE: ML-KEM is negotiable only as an additional key exchange (RFC
// 9370, ke1_mlkem768), never as the IKE_SA_INIT group; in ESP only after a KE.
func TestMLKEMAdditionalKE(t *testing.T) {
	for _, g := range []uint16{wire.KE_MLKEM512, wire.KE_MLKEM768, wire.KE_MLKEM1024} {
		if GroupSupported(g) {
			t.Errorf("GroupSupported(%d)", g)
		}
	}
	for _, s := range []string{"aes256gcm16-prfsha384-mlkem768", "aes256gcm16-prfsha384-x25519-ke1_mlkem1024",
		"aes256gcm16-prfsha384-x25519-ke8_mlkem768", "aes256gcm16-prfsha384-x25519-ke1_foo"} {
		if _, err := ParseIKEProposal(s); err == nil {
			t.Errorf("ParseIKEProposal(%q) accepted", s)
		}
	}
	if _, err := ParseESPProposal("aes256gcm16-ke1_mlkem768"); err == nil || !strings.Contains(err.Error(), "need a key exchange method") {
		t.Errorf("ESP with ke1_ and no KE: %v", err)
	}
	hybrid, err := ParseIKEProposal("aes256gcm16-prfsha384-x25519-ke1_mlkem768")
	if err != nil {
		t.Fatal(err)
	}
	if got := ProposalString(hybrid[0]); got != "IKE:aes256gcm16/prfsha384/x25519/ke1_mlkem768" {
		t.Fatalf("proposal %s", got)
	}
	optional, _ := ParseIKEProposal("aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke1_none")
	plain, _ := ParseIKEProposal("aes256gcm16-prfsha384-x25519")
	for _, c := range []struct {
		name         string
		ours, theirs []wire.Proposal
		want         string // "" for no match
	}{
		{"both hybrid", hybrid, hybrid, "aes256gcm16-prfsha384-x25519-ke1_mlkem768"},
		{"ours optional, peer hybrid", optional, hybrid, "aes256gcm16-prfsha384-x25519-ke1_mlkem768"},
		{"ours optional, peer plain", optional, plain, "aes256gcm16-prfsha384-x25519"},
		{"ours required, peer plain", hybrid, plain, ""},
		{"ours plain, peer hybrid", plain, hybrid, ""},
		{"ours plain, peer optional", plain, optional, "aes256gcm16-prfsha384-x25519"},
	} {
		checkSelect(t, c.name, c.ours, c.theirs, c.want, func(p wire.Proposal) (fmt.Stringer, error) { return IKESuiteFromProposal(p) })
	}
	// A response that drops the required ADDKE1 is refused.
	if err := CheckResponseProposal(hybrid, plain[0]); err == nil {
		t.Error("response without the required ADDKE1 accepted")
	}
	if got := WithoutAddKE(hybrid); HasAddKE(got) || !HasAddKE(hybrid) || ProposalString(got[0]) != ProposalString(plain[0]) {
		t.Errorf("WithoutAddKE: %s", ProposalsString(got))
	}
	// ML-KEM as the IKE_SA_INIT key exchange is never selected.
	ours := WithoutAddKE(plain)
	for i := range ours[0].Transforms {
		if tr := &ours[0].Transforms[i]; tr.Type == wire.TransformDH {
			tr.ID = wire.KE_MLKEM768
		}
	}
	if p, ok := SelectProposal(ours, ours); ok {
		t.Errorf("selected %s", ProposalString(p))
	}
}

// FuzzRespondMLKEM768 gives the responder arbitrary encapsulation keys: it encapsulates
// exactly to those of 1184 octets whose coefficients are all below q, and refuses the
// others as the peer's fault.
func FuzzRespondMLKEM768(f *testing.F) {
	a, _ := NewKeyExchange(wire.KE_MLKEM768, &detReader{seed: []byte("fuzz")})
	ek := a.PublicKey()
	f.Add(ek)
	nr := append([]byte(nil), ek...)
	setCoeff(nr, 10, 3329)
	f.Add(nr)
	f.Add(ek[:1183])
	f.Add(make([]byte, 1184))
	f.Add(bytes.Repeat([]byte{0xff}, 1184))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, peer []byte) {
		ct, s, err := RespondKeyExchange(wire.KE_MLKEM768, peer, bytes.NewReader(make([]byte, 32)))
		valid := len(peer) == mlkem.EncapsulationKeySize768 && reduced(peer)
		switch {
		case valid && (err != nil || len(ct) != 1088 || len(s) != 32):
			t.Fatalf("valid key: ct %d, secret %d, err %v", len(ct), len(s), err)
		case !valid && (!errors.Is(err, ErrInvalidKEData) || ct != nil || s != nil):
			t.Fatalf("invalid key of %d octets: err %v", len(peer), err)
		}
	})
}

// FuzzMLKEM768Decapsulate gives the initiator arbitrary ciphertexts: exactly those of
// 1088 octets give a 32-octet secret.
func FuzzMLKEM768Decapsulate(f *testing.F) {
	a, _ := NewKeyExchange(wire.KE_MLKEM768, &detReader{seed: []byte("fuzz")})
	ct, _, _ := RespondKeyExchange(wire.KE_MLKEM768, a.PublicKey(), &detReader{seed: []byte("m")})
	f.Add(ct)
	f.Add(ct[:1087])
	f.Add(make([]byte, 1088))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, c []byte) {
		s, err := a.SharedSecret(c)
		if (err == nil) != (len(c) == 1088) || err == nil && len(s) != 32 {
			t.Fatalf("ciphertext of %d octets: secret %d, err %v", len(c), len(s), err)
		}
	})
}

// BenchmarkKeyExchange compares a whole exchange (the initiator's key pair, the
// responder's answer, the initiator's secret) and its steps for X25519 and ML-KEM-768,
// with crypto/rand as in production.
func BenchmarkKeyExchange(b *testing.B) {
	for _, g := range []struct {
		name string
		id   uint16
	}{{"x25519", wire.DH_X25519}, {"mlkem768", wire.KE_MLKEM768}} {
		a, _ := NewKeyExchange(g.id, nil)
		ours, _, _ := RespondKeyExchange(g.id, a.PublicKey(), nil)
		b.Run(g.name+"/exchange", func(b *testing.B) {
			for b.Loop() {
				i, _ := NewKeyExchange(g.id, nil)
				r, _, _ := RespondKeyExchange(g.id, i.PublicKey(), nil)
				if _, err := i.SharedSecret(r); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(g.name+"/initiator-keygen", func(b *testing.B) {
			for b.Loop() {
				if _, err := NewKeyExchange(g.id, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(g.name+"/respond", func(b *testing.B) {
			for b.Loop() {
				if _, _, err := RespondKeyExchange(g.id, a.PublicKey(), nil); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(g.name+"/initiator-secret", func(b *testing.B) {
			for b.Loop() {
				if _, err := a.SharedSecret(ours); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// checkSelect checks that the responder with ours selects the suite want ("" for none)
// from the initiator's theirs, and that the initiator accepts that answer; suite reads
// a selected proposal.
func checkSelect(t *testing.T, name string, ours, theirs []wire.Proposal, want string, suite func(wire.Proposal) (fmt.Stringer, error)) {
	t.Helper()
	p, ok := SelectProposal(ours, theirs)
	got := ""
	if ok {
		s, err := suite(p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got = s.String()
		if err := CheckResponseProposal(theirs, p); err != nil {
			t.Errorf("%s: the initiator refuses %s: %v", name, got, err)
		}
	}
	if got != want {
		t.Errorf("%s: selected %q, want %q", name, got, want)
	}
}
