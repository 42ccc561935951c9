package crypto

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"math/big"
	"strconv"
	"strings"
	"testing"

	"github.com/mobikevpn/mobikevpn/wire"
)

var allGroups = []uint16{wire.DH_X25519, wire.DH_ECP256, wire.DH_ECP384, wire.DH_MODP2048, wire.DH_MODP3072, wire.DH_MODP1024, wire.DH_MODP1536}

// RFC 7748 6.1 and RFC 8031 Appendix A.
func TestX25519RFC8031(t *testing.T) {
	recs := readRecords(t, "rfc8031_rfc7748_x25519_examples.txt")
	for _, r := range recs {
		checkKAT(t, wire.DH_X25519, r.hex(t, "private_i"), r.hex(t, "public_i"), r.hex(t, "private_r"), r.hex(t, "public_r"), r.hex(t, "shared"))
	}
	if len(recs) != 2 {
		t.Fatalf("%d records", len(recs))
	}
}

// checkKAT runs a two-party known answer: both public values and both sides' g^ir.
func checkKAT(t *testing.T, group uint16, privI, pubI, privR, pubR, shared []byte) {
	t.Helper()
	ki, err := newKeyExchangeFromPrivate(group, privI)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := newKeyExchangeFromPrivate(group, privR)
	if err != nil {
		t.Fatal(err)
	}
	if ki.Group() != group {
		t.Fatalf("Group() = %d", ki.Group())
	}
	if !bytes.Equal(ki.PublicKey(), pubI) || !bytes.Equal(kr.PublicKey(), pubR) {
		t.Fatalf("group %d: public values\n%x\n%x\nwant\n%x\n%x", group, ki.PublicKey(), kr.PublicKey(), pubI, pubR)
	}
	si, err := ki.SharedSecret(pubR)
	if err != nil {
		t.Fatal(err)
	}
	sr, err := kr.SharedSecret(pubI)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(si, shared) || !bytes.Equal(sr, shared) {
		t.Fatalf("group %d: g^ir %x / %x, want %x", group, si, sr, shared)
	}
}

// RFC 5114 Appendix A ECP test data (groups 19, 20; 21 is not implemented).
func TestECPRFC5114(t *testing.T) {
	seen := map[uint16]bool{}
	for _, r := range readRecords(t, "rfc5114_ecp_dh_examples.txt") {
		priv := r.hex(t, "private_i")
		var group uint16
		switch len(priv) {
		case 32:
			group = wire.DH_ECP256
		case 48:
			group = wire.DH_ECP384
		case 66:
			if GroupSupported(21) {
				t.Fatal("group 21 is supported but untested")
			}
			if _, err := NewKeyExchange(21, nil); err == nil {
				t.Fatal("NewKeyExchange(21) succeeded")
			}
			seen[21] = true
			continue
		}
		seen[group] = true
		checkKAT(t, group, priv, r.hex(t, "ke_data_i"), r.hex(t, "private_r"), r.hex(t, "ke_data_r"), r.hex(t, "shared"))
	}
	if len(seen) != 3 {
		t.Fatalf("groups seen: %v", seen)
	}
}

// Wycheproof X25519. For "acceptable" cases (twist points, non-canonical u, low-order
// points) we compute RFC 7748 X25519 like crypto/ecdh, except that an all-zero result
// (low-order peer point) is an error, as RFC 8031 section 2 requires.
func TestWycheproofX25519(t *testing.T) {
	f := readWycheproof(t, "x25519_test.json")
	var n, zero int
	for _, g := range f.TestGroups {
		for _, tc := range g.Tests {
			kx, err := newKeyExchangeFromPrivate(wire.DH_X25519, unhex(t, tc.Private))
			if err != nil {
				t.Fatalf("tcId %d: %v", tc.TcID, err)
			}
			got, err := kx.SharedSecret(unhex(t, tc.Public))
			want := unhex(t, tc.Shared)
			switch {
			case tc.Result == "invalid":
				if err == nil {
					t.Errorf("tcId %d: invalid case accepted", tc.TcID)
				}
			case bytes.Equal(want, make([]byte, 32)):
				zero++
				if err == nil {
					t.Errorf("tcId %d (%s): all-zero shared secret accepted", tc.TcID, tc.Comment)
				}
			default: // valid, or acceptable with a non-zero result
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("tcId %d (%s %v): %x, %v; want %x", tc.TcID, tc.Result, tc.Flags, got, err, want)
				}
			}
			n++
		}
	}
	if n != 518 || zero == 0 {
		t.Fatalf("%d cases, %d with zero output", n, zero)
	}
}

// Wycheproof ECDH with SEC1 points. IKEv2 KE data is x | y (RFC 5903), so an
// uncompressed point becomes its coordinates; a compressed or otherwise encoded point
// has no KE form: we pass its bytes (and those without the first octet) and expect
// rejection, also for the "acceptable" compressed cases.
func TestWycheproofECDH(t *testing.T) {
	for _, c := range []struct {
		file  string
		group uint16
		size  int
	}{
		{"ecdh_secp256r1_ecpoint_test.json", wire.DH_ECP256, 32},
		{"ecdh_secp384r1_ecpoint_test.json", wire.DH_ECP384, 48},
	} {
		f := readWycheproof(t, c.file)
		var valid, invalid, other int
		for _, g := range f.TestGroups {
			for _, tc := range g.Tests {
				d, ok := new(big.Int).SetString(tc.Private, 16)
				if !ok || d.BitLen() > 8*c.size {
					t.Fatalf("%s tcId %d: private key %q", c.file, tc.TcID, tc.Private)
				}
				kx, err := newKeyExchangeFromPrivate(c.group, d.FillBytes(make([]byte, c.size)))
				if err != nil {
					t.Fatalf("%s tcId %d: %v", c.file, tc.TcID, err)
				}
				pub := unhex(t, tc.Public)
				if len(pub) == 1+2*c.size && pub[0] == 4 {
					got, err := kx.SharedSecret(pub[1:])
					switch tc.Result {
					case "valid":
						valid++
						if err != nil || !bytes.Equal(got, unhex(t, tc.Shared)) {
							t.Errorf("%s tcId %d: %x, %v", c.file, tc.TcID, got, err)
						}
					case "invalid":
						invalid++
						if err == nil {
							t.Errorf("%s tcId %d (%s): off-curve point accepted", c.file, tc.TcID, tc.Comment)
						}
					default:
						t.Fatalf("%s tcId %d: unexpected result %q for an uncompressed point", c.file, tc.TcID, tc.Result)
					}
					continue
				}
				other++
				if _, err := kx.SharedSecret(pub); err == nil {
					t.Errorf("%s tcId %d (%s, %s): non-KE encoding accepted", c.file, tc.TcID, tc.Result, tc.Comment)
				}
				if len(pub) > 0 {
					if _, err := kx.SharedSecret(pub[1:]); err == nil {
						t.Errorf("%s tcId %d (%s, %s): coordinate without prefix accepted", c.file, tc.TcID, tc.Result, tc.Comment)
					}
				}
			}
		}
		if valid < 300 || invalid != 16 || other < 2 {
			t.Fatalf("%s: %d valid, %d invalid, %d other encodings", c.file, valid, invalid, other)
		}
	}
}

// MODP groups 14 and 15 against values computed with Python's pow.
func TestMODPIndependent(t *testing.T) {
	n := 0
	for _, r := range readRecords(t, "independent_vectors.txt") {
		if r["kind"] != "modp" {
			continue
		}
		g, _ := strconv.Atoi(r["group"])
		group := uint16(g)
		p, _ := new(big.Int).SetString(r["prime"], 16)
		if p.Cmp(modpPrime(group)) != 0 {
			t.Fatalf("group %d: prime differs from the RFC 3526 formula's", group)
		}
		xi, _ := new(big.Int).SetString(r["private_i"], 16)
		xr, _ := new(big.Int).SetString(r["private_r"], 16)
		checkKAT(t, group, xi.Bytes(), r.hex(t, "public_i"), xr.Bytes(), r.hex(t, "public_r"), r.hex(t, "shared"))
		n++
	}
	if n != 2 {
		t.Fatalf("%d MODP vectors", n)
	}
}

// The RFC 3526 primes, and RFC 2409's 1024-bit one, are
// p = 2^n - 2^(n-64) - 1 + 2^64 * (floor(2^(n-130) pi) + c).
// Recompute them from pi (Machin's formula in fixed point) to check the constants.
func TestMODPPrimesFromPi(t *testing.T) {
	for _, c := range []struct {
		group uint16
		n     uint
		add   int64
	}{{wire.DH_MODP2048, 2048, 124476}, {wire.DH_MODP3072, 3072, 1690314}, {wire.DH_MODP1024, 1024, 129093}, {wire.DH_MODP1536, 1536, 741804}} {
		k := c.n - 130
		const guard = 64
		pi := piFixed(k + guard)
		f := new(big.Int).Rsh(pi, guard)
		// The guard bits must not be so close to a boundary that the error could carry.
		mask := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), guard), big.NewInt(1))
		low := new(big.Int).And(pi, mask)
		if low.BitLen() <= 16 || new(big.Int).Sub(mask, low).BitLen() <= 16 {
			t.Fatalf("pi guard bits too close to a boundary")
		}
		one := big.NewInt(1)
		p := new(big.Int).Lsh(one, c.n)
		p.Sub(p, new(big.Int).Lsh(one, c.n-64))
		p.Sub(p, one)
		f.Add(f, big.NewInt(c.add))
		p.Add(p, f.Lsh(f, 64))
		if p.Cmp(modpPrime(c.group)) != 0 {
			t.Errorf("group %d: prime constant differs from the RFC 3526 formula", c.group)
		}
		if !p.ProbablyPrime(4) || !new(big.Int).Rsh(p, 1).ProbablyPrime(4) {
			t.Errorf("group %d: not a safe prime", c.group)
		}
	}
}

// piFixed returns about pi * 2^bits (error well below 2^16) with Machin's formula
// pi = 16 atan(1/5) - 4 atan(1/239).
func piFixed(bits uint) *big.Int {
	atanInv := func(x int64) *big.Int {
		one := new(big.Int).Lsh(big.NewInt(1), bits)
		xx := big.NewInt(x * x)
		term := new(big.Int).Div(one, big.NewInt(x)) // 2^bits / x^(2i+1)
		sum := new(big.Int).Set(term)
		for i := int64(1); term.Sign() != 0; i++ {
			term.Div(term, xx)
			t := new(big.Int).Div(term, big.NewInt(2*i+1))
			if i%2 == 1 {
				sum.Sub(sum, t)
			} else {
				sum.Add(sum, t)
			}
		}
		return sum
	}
	pi := new(big.Int).Mul(big.NewInt(16), atanInv(5))
	return pi.Sub(pi, new(big.Int).Mul(big.NewInt(4), atanInv(239)))
}

// detReader is a deterministic byte stream for reproducible keys.
type detReader struct {
	seed []byte
	ctr  uint32
	buf  []byte
}

func (r *detReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(r.buf) == 0 {
			h := sha256.Sum256(append(append([]byte(nil), r.seed...), byte(r.ctr>>24), byte(r.ctr>>16), byte(r.ctr>>8), byte(r.ctr)))
			r.ctr++
			r.buf = h[:]
		}
		c := copy(p[n:], r.buf)
		r.buf = r.buf[c:]
		n += c
	}
	return n, nil
}

func TestKeyExchangeAgreement(t *testing.T) {
	sizes := map[uint16][2]int{ // KE data, shared secret
		wire.DH_X25519: {32, 32}, wire.DH_ECP256: {64, 32}, wire.DH_ECP384: {96, 48},
		wire.DH_MODP2048: {256, 256}, wire.DH_MODP3072: {384, 384},
		wire.DH_MODP1024: {128, 128}, wire.DH_MODP1536: {192, 192},
	}
	for _, g := range allGroups {
		if !GroupSupported(g) {
			t.Fatalf("group %d not supported", g)
		}
		a, err := NewKeyExchange(g, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := NewKeyExchange(g, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		sa, err := a.SharedSecret(b.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		sb, err := b.SharedSecret(a.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sa, sb) || len(a.PublicKey()) != sizes[g][0] || len(sa) != sizes[g][1] {
			t.Errorf("group %d: KE %d octets, secrets %d/%d octets, equal %v", g, len(a.PublicKey()), len(sa), len(sb), bytes.Equal(sa, sb))
		}
		if bytes.Equal(a.PublicKey(), b.PublicKey()) {
			t.Errorf("group %d: two keys are equal", g)
		}
		// The private key comes from the reader.
		c, _ := NewKeyExchange(g, &detReader{seed: []byte("x")})
		d, _ := NewKeyExchange(g, &detReader{seed: []byte("x")})
		e, _ := NewKeyExchange(g, &detReader{seed: []byte("y")})
		if !bytes.Equal(c.PublicKey(), d.PublicKey()) || bytes.Equal(c.PublicKey(), e.PublicKey()) {
			t.Errorf("group %d: keys do not follow the randomness source", g)
		}
		// Wrong lengths are rejected.
		pub := b.PublicKey()
		for _, bad := range [][]byte{nil, pub[:len(pub)-1], append(append([]byte(nil), pub...), 0), append([]byte{4}, pub...)} {
			if _, err := a.SharedSecret(bad); err == nil {
				t.Errorf("group %d: %d-octet KE data accepted", g, len(bad))
			}
		}
	}
	if _, err := NewKeyExchange(wire.DH_NONE, nil); err == nil {
		t.Error("NewKeyExchange(NONE) succeeded")
	}
	if _, err := NewKeyExchange(wire.DH_X25519, bytes.NewReader([]byte{1, 2, 3})); err == nil {
		t.Error("short randomness accepted")
	}
	if _, err := NewKeyExchange(wire.DH_MODP2048, bytes.NewReader(nil)); err == nil {
		t.Error("empty randomness accepted")
	}
	for _, g := range []uint16{1, 16, 21, 22, 30} {
		if GroupSupported(g) {
			t.Errorf("GroupSupported(%d)", g)
		}
	}
}

func TestX25519ZeroOutputRejected(t *testing.T) {
	kx, _ := NewKeyExchange(wire.DH_X25519, nil)
	for _, pub := range []string{
		strings.Repeat("00", 32),                                           // u = 0
		"01" + strings.Repeat("00", 31),                                    // u = 1
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800", // order 8
	} {
		if s, err := kx.SharedSecret(unhex(t, pub)); err == nil {
			t.Errorf("low-order point %s accepted: %x", pub, s)
		}
	}
}

func TestECPRejectsInvalidPoints(t *testing.T) {
	for _, g := range []uint16{wire.DH_ECP256, wire.DH_ECP384} {
		kx, _ := NewKeyExchange(g, nil)
		other, _ := NewKeyExchange(g, nil)
		pub := other.PublicKey()
		offCurve := append([]byte(nil), pub...)
		offCurve[len(offCurve)-1] ^= 1
		allFF := bytes.Repeat([]byte{0xff}, len(pub)) // coordinates above the field prime
		for name, bad := range map[string][]byte{"zero (infinity)": make([]byte, len(pub)), "off curve": offCurve, "not reduced": allFF} {
			if _, err := kx.SharedSecret(bad); err == nil {
				t.Errorf("group %d: %s point accepted", g, name)
			}
		}
	}
}

func TestMODPRejectsBadValues(t *testing.T) {
	for _, g := range []uint16{wire.DH_MODP2048, wire.DH_MODP3072, wire.DH_MODP1024, wire.DH_MODP1536} {
		kx, _ := NewKeyExchange(g, nil)
		p := modpPrime(g)
		size := lookupDH(g).keLen
		enc := func(v *big.Int) []byte { return v.FillBytes(make([]byte, size)) }
		one := big.NewInt(1)
		for name, v := range map[string]*big.Int{
			"0": big.NewInt(0), "1": one, "p-1": new(big.Int).Sub(p, one), "p": p, "p+1": new(big.Int).Add(p, one),
		} {
			if _, err := kx.SharedSecret(enc(v)); err == nil {
				t.Errorf("group %d: y = %s accepted", g, name)
			}
		}
		if _, err := kx.SharedSecret(bytes.Repeat([]byte{0xff}, size)); err == nil {
			t.Errorf("group %d: y = 2^n-1 accepted", g)
		}
		for _, y := range []*big.Int{big.NewInt(2), new(big.Int).Sub(p, big.NewInt(2))} {
			if _, err := kx.SharedSecret(enc(y)); err != nil {
				t.Errorf("group %d: boundary value rejected: %v", g, err)
			}
		}
		for _, n := range []int{0, size - 1, size + 1} {
			if _, err := kx.SharedSecret(make([]byte, n)); err == nil {
				t.Errorf("group %d: %d-octet value accepted", g, n)
			}
		}
		if _, err := newKeyExchangeFromPrivate(g, nil); err == nil {
			t.Errorf("group %d: zero exponent accepted", g)
		}
	}
}

// The legacy groups 2 and 5: the primes as strongSwan's table has them (RFC 2409
// section 6.2, RFC 3526 section 2) and strongSwan's two-party known answers.
func TestMODPLegacyGroups(t *testing.T) {
	primes, kats := 0, 0
	for _, r := range readRecords(t, "modp1024_modp1536_examples.txt") {
		g, _ := strconv.Atoi(r["group"])
		group := uint16(g)
		switch r["kind"] {
		case "prime":
			if p := new(big.Int).SetBytes(r.hex(t, "prime")); p.Cmp(modpPrime(group)) != 0 {
				t.Errorf("group %d: prime differs", group)
			}
			if len(r.hex(t, "prime")) != lookupDH(group).keLen {
				t.Errorf("group %d: KE length %d", group, lookupDH(group).keLen)
			}
			primes++
		case "kat":
			checkKAT(t, group, r.hex(t, "private_i"), r.hex(t, "public_i"), r.hex(t, "private_r"), r.hex(t, "public_r"), r.hex(t, "shared"))
			kats++
		}
	}
	if primes != 2 || kats != 2 {
		t.Fatalf("%d primes, %d known answers", primes, kats)
	}
	for g, name := range map[uint16]string{wire.DH_MODP1024: "modp1024", wire.DH_MODP1536: "modp1536"} {
		if !GroupSupported(g) || dhName(g) != name {
			t.Errorf("group %d: supported %v, name %q", g, GroupSupported(g), dhName(g))
		}
	}
	if _, err := newMODPFromExponent(wire.DH_X25519, big.NewInt(5)); err == nil {
		t.Error("a MODP key for X25519")
	}
}
