package cert

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/mobikevpn/mobikevpn/wire"
)

// RFC 7427 Appendix A AlgorithmIdentifiers, as printed there.
const (
	rfcSHA1WithRSA   = "300d 0609 2a86 4886 f70d 0101 0505 00" // A.1.1
	rfcSHA256WithRSA = "300d 0609 2a86 4886 f70d 0101 0b05 00" // A.1.2
	rfcSHA384WithRSA = "300d 0609 2a86 4886 f70d 0101 0c05 00" // A.1.3
	rfcSHA512WithRSA = "300d 0609 2a86 4886 f70d 0101 0d05 00" // A.1.4
	rfcDSAWithSHA1   = "3009 0607 2a86 48ce 3804 03"           // A.2.1
	rfcDSAWithSHA256 = "300b 0609 6086 4801 6503 0403 02"      // A.2.2
	rfcECDSAWithSHA1 = "3009 0607 2a86 48ce 3d04 01"           // A.3.1
	rfcECDSAWith256  = "300a 0608 2a86 48ce 3d04 0302"         // A.3.2
	rfcECDSAWith384  = "300a 0608 2a86 48ce 3d04 0303"         // A.3.3
	rfcECDSAWith512  = "300a 0608 2a86 48ce 3d04 0304"         // A.3.4
	rfcPSSEmpty      = "300d 0609 2a86 4886 f70d 0101 0a30 00" // A.4.1
	rfcPSSDefault    = `303e 0609 2a86 4886 f70d 0101 0a30 31a0
	                    0b30 0906 052b 0e03 021a 0500 a118 3016
	                    0609 2a86 4886 f70d 0101 0830 0906 052b
	                    0e03 021a 0500 a203 0201 14a3 0302 0101` // A.4.2
	rfcPSSSHA256 = `3046 0609 2a86 4886 f70d 0101 0a30 39a0
	                0f30 0d06 0960 8648 0165 0304 0201 0500
	                a11c 301a 0609 2a86 4886 f70d 0101 0830
	                0d06 0960 8648 0165 0304 0201 0500 a203
	                0201 20a3 0302 0101` // A.4.3
	// A.4.3 in DER: the trailerField equal to its DEFAULT left out, as strongSwan
	// sends it by default (its charon.rsa_pss_trailerfield = no).
	derPSSSHA256 = `3041 0609 2a86 4886 f70d 0101 0a30 34a0
	                0f30 0d06 0960 8648 0165 0304 0201 0500
	                a11c 301a 0609 2a86 4886 f70d 0101 0830
	                0d06 0960 8648 0165 0304 0201 0500 a203
	                0201 20`
	// RFC 8420 2 (and RFC 8410): id-Ed25519 without parameters.
	rfcEd25519 = "3005 0603 2b65 70"
)

func TestAlgorithmIdentifiersWeProduce(t *testing.T) {
	for _, tc := range []struct {
		s    scheme
		want string
	}{
		{scheme{alg: algRSAPKCS1, hash: crypto.SHA1}, rfcSHA1WithRSA},
		{scheme{alg: algRSAPKCS1, hash: crypto.SHA256}, rfcSHA256WithRSA},
		{scheme{alg: algRSAPKCS1, hash: crypto.SHA384}, rfcSHA384WithRSA},
		{scheme{alg: algRSAPKCS1, hash: crypto.SHA512}, rfcSHA512WithRSA},
		{scheme{alg: algECDSA, hash: crypto.SHA256}, rfcECDSAWith256},
		{scheme{alg: algECDSA, hash: crypto.SHA384}, rfcECDSAWith384},
		{scheme{alg: algECDSA, hash: crypto.SHA512}, rfcECDSAWith512},
		{scheme{alg: algRSAPSS, hash: crypto.SHA256, salt: 32}, derPSSSHA256},
		{scheme{alg: algEd25519}, rfcEd25519},
	} {
		got, err := tc.s.algorithmIdentifier()
		if err != nil {
			t.Fatalf("%v: %v", tc.s, err)
		}
		if want := unhex(t, tc.want); !bytes.Equal(got, want) {
			t.Errorf("%v: AlgorithmIdentifier %x, want %x", tc.s, got, want)
		}
		back, err := parseAlgorithmIdentifier(got)
		if err != nil || back != tc.s {
			t.Errorf("%v: parses back as %v, %v", tc.s, back, err)
		}
	}
	if _, err := (scheme{alg: algRSAPSS, hash: crypto.SHA1, salt: 20}).algorithmIdentifier(); err == nil {
		t.Error("RSASSA-PSS with SHA-1 was encoded")
	}
}

func TestAlgorithmIdentifiersWeAccept(t *testing.T) {
	for _, tc := range []struct {
		name, der string
		want      scheme
		err       string // non-empty: parse must fail with this in the message
	}{
		{"A.1.1", rfcSHA1WithRSA, scheme{alg: algRSAPKCS1, hash: crypto.SHA1}, ""},
		{"A.1.2", rfcSHA256WithRSA, scheme{alg: algRSAPKCS1, hash: crypto.SHA256}, ""},
		{"A.1.3", rfcSHA384WithRSA, scheme{alg: algRSAPKCS1, hash: crypto.SHA384}, ""},
		{"A.1.4", rfcSHA512WithRSA, scheme{alg: algRSAPKCS1, hash: crypto.SHA512}, ""},
		{"A.2.1", rfcDSAWithSHA1, scheme{}, "unsupported AUTH signature algorithm 1.2.840.10040.4.3"},
		{"A.2.2", rfcDSAWithSHA256, scheme{}, "unsupported AUTH signature algorithm 2.16.840.1.101.3.4.3.2"},
		{"A.3.1", rfcECDSAWithSHA1, scheme{alg: algECDSA, hash: crypto.SHA1}, ""},
		{"A.3.2", rfcECDSAWith256, scheme{alg: algECDSA, hash: crypto.SHA256}, ""},
		{"A.3.3", rfcECDSAWith384, scheme{alg: algECDSA, hash: crypto.SHA384}, ""},
		{"A.3.4", rfcECDSAWith512, scheme{alg: algECDSA, hash: crypto.SHA512}, ""},
		{"A.4.1", rfcPSSEmpty, scheme{alg: algRSAPSS, hash: crypto.SHA1, salt: 20}, ""},
		{"A.4.2", rfcPSSDefault, scheme{alg: algRSAPSS, hash: crypto.SHA1, salt: 20}, ""},
		{"A.4.3", rfcPSSSHA256, scheme{alg: algRSAPSS, hash: crypto.SHA256, salt: 32}, ""},
		{"A.4.3 DER", derPSSSHA256, scheme{alg: algRSAPSS, hash: crypto.SHA256, salt: 32}, ""},
		{"Ed25519", rfcEd25519, scheme{alg: algEd25519}, ""},
		// Variants: PKCS#1 without its NULL, ECDSA and Ed25519 with one.
		{"sha256WithRSA no NULL", "300b 0609 2a86 4886 f70d 0101 0b", scheme{alg: algRSAPKCS1, hash: crypto.SHA256}, ""},
		{"ecdsa-with-SHA256 NULL", "300c 0608 2a86 48ce 3d04 0302 0500", scheme{alg: algECDSA, hash: crypto.SHA256}, ""},
		{"Ed25519 NULL", "3007 0603 2b65 70 0500", scheme{alg: algEd25519}, ""},
		// PSS with SHA-384 and its hashes without NULL parameters (RFC 4055 allows both).
		{"PSS SHA-384 absent NULLs", `303d 0609 2a864886f70d01010a 3030
			a00d 300b 0609 608648016503040202
			a11a 3018 0609 2a864886f70d010108 300b 0609 608648016503040202
			a203 0201 30`, scheme{alg: algRSAPSS, hash: crypto.SHA384, salt: 48}, ""},
		{"PSS no params", "300b 0609 2a86 4886 f70d 0101 0a", scheme{}, "without parameters"},
		{"PSS MGF1 SHA-1 with SHA-256", `3036 0609 2a864886f70d01010a 3029
			a00f 300d 0609 608648016503040201 0500
			a111 300f 0609 2a864886f70d010108 3002 0600
			a203 0201 20`, scheme{}, "does not parse"},
		{"PSS MGF1 hash differs", `3038 0609 2a864886f70d01010a 302b
			a00f 300d 0609 608648016503040201 0500
			a118 3016 0609 2a864886f70d010108 3009 0605 2b0e03021a 0500`, scheme{}, "MGF1 with SHA-1 is not supported"},
		{"PSS trailer 2", `3012 0609 2a864886f70d01010a 3005 a303 020102`, scheme{}, "trailerField 2"},
		{"PSS other MGF", `3019 0609 2a864886f70d01010a 300c a10a 3008 0606 2a864886f70d`, scheme{}, "is not MGF1"},
		{"PKCS1 INTEGER params", "300e 0609 2a86 4886 f70d 0101 0b 020100", scheme{}, "unexpected parameters"},
		{"trailing data", "300d 0609 2a86 4886 f70d 0101 0b05 00 00", scheme{}, "followed by data"},
		{"not a SEQUENCE", "0609 2a86 4886 f70d 0101 0b", scheme{}, "does not parse"},
	} {
		got, err := parseAlgorithmIdentifier(unhex(t, tc.der))
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want one with %q", tc.name, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err == "" && got != tc.want:
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSupportedHashes(t *testing.T) {
	got := SupportedHashes()
	want := []uint16{2, 3, 4, 5}
	if len(got) != len(want) {
		t.Fatalf("%v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%v, want %v", got, want)
		}
	}
	got[0] = 99 // callers get their own copy
	if SupportedHashes()[0] != 2 {
		t.Error("SupportedHashes shares its slice")
	}
}

var signedOctets = []byte("RealMessage1 | Nr | prf(SK_pi, IDi') stand-in, long enough to be interesting")

// independentVerify checks data with the standard library directly, not with Verify.
func independentVerify(t *testing.T, method wire.AuthMethod, data []byte, pub crypto.PublicKey) {
	t.Helper()
	h := func(hash crypto.Hash) []byte {
		d := hash.New()
		d.Write(signedOctets)
		return d.Sum(nil)
	}
	var ok bool
	switch method {
	case wire.AuthRSASig:
		ok = rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), crypto.SHA1, h(crypto.SHA1), data) == nil
	case wire.AuthECDSA256, wire.AuthECDSA384, wire.AuthECDSA521:
		hash := map[wire.AuthMethod]crypto.Hash{9: crypto.SHA256, 10: crypto.SHA384, 11: crypto.SHA512}[method]
		n := len(data) / 2
		ok = ecdsa.Verify(pub.(*ecdsa.PublicKey), h(hash), new(big.Int).SetBytes(data[:n]), new(big.Int).SetBytes(data[n:]))
	case wire.AuthDigitalSignature:
		s, sig, err := parseAuthData(data)
		if err != nil {
			t.Fatal(err)
		}
		switch s.alg {
		case algRSAPKCS1:
			ok = rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), s.hash, h(s.hash), sig) == nil
		case algRSAPSS:
			ok = rsa.VerifyPSS(pub.(*rsa.PublicKey), s.hash, h(s.hash), sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
		case algECDSA:
			ok = ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), h(s.hash), sig)
		case algEd25519:
			ok = ed25519.Verify(pub.(ed25519.PublicKey), signedOctets, sig)
		}
	}
	if !ok {
		t.Errorf("method %d: the standard library does not verify %x", method, data)
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	k := testKeys()
	ca, caKey := testCA(t)
	leafOf := func(pub crypto.PublicKey) *x509.Certificate {
		return issue(t, leafTemplate("gw.example.org"), pub, ca, caKey)
	}
	type pick struct {
		peer   []uint16 // nil: classic
		method wire.AuthMethod
		algID  string // for method 14
		size   int    // for classic ECDSA: len of r|s
		err    string // non-empty: Sign fails so
	}
	all := []uint16{2, 3, 4, 5}
	for _, tc := range []struct {
		name        string
		key, other  crypto.Signer
		pss         bool
		picks       []pick
		foreignLeaf crypto.PublicKey // a key of another type
	}{
		{"RSA-3072", k.rsa, k.rsa2, false, []pick{
			{peer: nil, method: wire.AuthRSASig},
			{peer: all, method: 14, algID: rfcSHA256WithRSA},
			{peer: []uint16{2}, method: 14, algID: rfcSHA256WithRSA},
			{peer: []uint16{3}, method: 14, algID: rfcSHA384WithRSA},
			{peer: []uint16{4}, method: 14, algID: rfcSHA512WithRSA},
			{peer: []uint16{4, 3}, method: 14, algID: rfcSHA384WithRSA},
			{peer: []uint16{5, 4}, method: 14, algID: rfcSHA512WithRSA},
			{peer: []uint16{5}, err: "no hash algorithm"},
			{peer: []uint16{1}, err: "no hash algorithm"},
			{peer: []uint16{}, err: "no hash algorithm"},
		}, k.p256.Public()},
		{"RSA-3072 PSS", k.rsa, k.rsa2, true, []pick{
			{peer: nil, method: wire.AuthRSASig},
			{peer: all, method: 14, algID: derPSSSHA256},
			{peer: []uint16{3}, method: 14, algID: "3041 0609 2a864886f70d01010a 3034 a00f 300d 0609 608648016503040202 0500 a11c 301a 0609 2a864886f70d010108 300d 0609 608648016503040202 0500 a203 0201 30"},
			{peer: []uint16{4}, method: 14, algID: "3041 0609 2a864886f70d01010a 3034 a00f 300d 0609 608648016503040203 0500 a11c 301a 0609 2a864886f70d010108 300d 0609 608648016503040203 0500 a203 0201 40"},
		}, k.ed.Public()},
		{"P-256", k.p256, k.p256b, false, []pick{
			{peer: nil, method: wire.AuthECDSA256, size: 64},
			{peer: all, method: 14, algID: rfcECDSAWith256},
			{peer: []uint16{3}, method: 14, algID: rfcECDSAWith384},
			{peer: []uint16{4, 5}, method: 14, algID: rfcECDSAWith512},
			{peer: []uint16{5}, err: "no hash algorithm"},
		}, k.rsa.Public()},
		{"P-384", k.p384, k.p384b, false, []pick{
			{peer: nil, method: wire.AuthECDSA384, size: 96},
			{peer: all, method: 14, algID: rfcECDSAWith384},
			{peer: []uint16{2}, method: 14, algID: rfcECDSAWith256},
			{peer: []uint16{2, 4}, method: 14, algID: rfcECDSAWith512},
		}, k.ed.Public()},
		{"P-521", k.p521, k.p521b, false, []pick{
			{peer: nil, method: wire.AuthECDSA521, size: 132},
			{peer: all, method: 14, algID: rfcECDSAWith512},
			{peer: []uint16{2, 3}, method: 14, algID: rfcECDSAWith384},
		}, k.rsa.Public()},
		{"Ed25519", k.ed, k.ed2, false, []pick{
			{peer: nil, err: "needs RFC 7427"},
			{peer: all, method: 14, algID: rfcEd25519},
			{peer: []uint16{5}, method: 14, algID: rfcEd25519},
			{peer: []uint16{2, 3, 4}, err: "no hash algorithm"},
		}, k.p384.Public()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cred := &Credential{Chain: []*x509.Certificate{leafOf(tc.key.Public())}, Key: tc.key, RSAPSS: tc.pss}
			leaf := cred.Chain[0]
			wrong := leafOf(tc.other.Public())
			foreign := leafOf(tc.foreignLeaf)
			for _, p := range tc.picks {
				method, data, err := cred.Sign(signedOctets, p.peer)
				if p.err != "" {
					if err == nil || !strings.Contains(err.Error(), p.err) {
						t.Errorf("peer %v: Sign error %v, want %q", p.peer, err, p.err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("peer %v: %v", p.peer, err)
				}
				if method != p.method {
					t.Fatalf("peer %v: method %d, want %d", p.peer, method, p.method)
				}
				if p.size != 0 && len(data) != p.size {
					t.Errorf("peer %v: %d octets of r|s, want %d", p.peer, len(data), p.size)
				}
				if p.algID != "" {
					want := unhex(t, p.algID)
					if int(data[0]) != len(want) || !bytes.Equal(data[1:1+len(want)], want) {
						t.Errorf("peer %v: AUTH data starts %x, want length %d and %x", p.peer, data[:min(len(data), 1+len(want))], len(want), want)
					}
				}
				independentVerify(t, method, data, tc.key.Public())
				if err := Verify(method, data, signedOctets, leaf); err != nil {
					t.Errorf("peer %v: Verify: %v", p.peer, err)
				}
				tampered := bytes.Clone(signedOctets)
				tampered[len(tampered)/2] ^= 0x01
				if err := Verify(method, data, tampered, leaf); !errors.Is(err, ErrSignature) {
					t.Errorf("peer %v: tampered signed octets: %v, want ErrSignature", p.peer, err)
				}
				badSig := bytes.Clone(data)
				badSig[len(badSig)-1] ^= 0x80
				if err := Verify(method, badSig, signedOctets, leaf); err == nil {
					t.Errorf("peer %v: tampered signature verifies", p.peer)
				}
				if err := Verify(method, data[:len(data)-1], signedOctets, leaf); err == nil {
					t.Errorf("peer %v: truncated signature verifies", p.peer)
				}
				if err := Verify(method, append(bytes.Clone(data), 0), signedOctets, leaf); err == nil {
					t.Errorf("peer %v: signature with an extra octet verifies", p.peer)
				}
				if err := Verify(method, data, signedOctets, wrong); !errors.Is(err, ErrSignature) {
					t.Errorf("peer %v: other key of the same type: %v, want ErrSignature", p.peer, err)
				}
				if err := Verify(method, data, signedOctets, foreign); err == nil || errors.Is(err, ErrSignature) {
					t.Errorf("peer %v: key of another type: %v, want a mismatch error", p.peer, err)
				}
			}
		})
	}
}

// TestSignDeterministic: PKCS#1 v1.5 and Ed25519 signatures are deterministic, so ours
// equal the standard library's over the same octets (and OpenSSL's, in interop_test.go).
func TestSignDeterministic(t *testing.T) {
	k := testKeys()
	cred := &Credential{Key: k.rsa}
	_, got, err := cred.Sign(signedOctets, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := sha1.Sum(signedOctets)
	want, _ := rsa.SignPKCS1v15(nil, k.rsa, crypto.SHA1, d[:])
	if !bytes.Equal(got, want) {
		t.Error("method 1 signature differs from RSASSA-PKCS1-v1_5 with SHA-1")
	}
	_, got, err = (&Credential{Key: k.ed}).Sign(signedOctets, []uint16{5})
	if err != nil {
		t.Fatal(err)
	}
	if want := ed25519.Sign(k.ed, signedOctets); !bytes.Equal(got[8:], want) || len(got) != 8+64 {
		t.Error("Ed25519 AUTH data is not id-Ed25519 and the signature")
	}
}

func TestVerifyMismatches(t *testing.T) {
	k := testKeys()
	ca, caKey := testCA(t)
	leafOf := func(pub crypto.PublicKey) *x509.Certificate {
		return issue(t, leafTemplate("gw.example.org"), pub, ca, caKey)
	}
	rsaLeaf, p256Leaf, p384Leaf, edLeaf := leafOf(k.rsa.Public()), leafOf(k.p256.Public()), leafOf(k.p384.Public()), leafOf(k.ed.Public())
	sign := func(key crypto.Signer, peer []uint16) []byte {
		_, d, err := (&Credential{Key: key}).Sign(signedOctets, peer)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	p256Raw, p384Raw := sign(k.p256, nil), sign(k.p384, nil)
	rsaClassic := sign(k.rsa, nil)
	all := SupportedHashes()
	ecdsa7427, rsa7427, ed7427 := sign(k.p256, all), sign(k.rsa, all), sign(k.ed, all)
	// sha1WithRSAEncryption under RFC 7427: a valid signature, but a hash we never allow.
	d := sha1.Sum(signedOctets)
	sha1Sig, _ := rsa.SignPKCS1v15(nil, k.rsa, crypto.SHA1, d[:])
	sha1Auth := append(append([]byte{15}, unhex(t, rfcSHA1WithRSA)...), sha1Sig...)

	for _, tc := range []struct {
		name   string
		method wire.AuthMethod
		data   []byte
		leaf   *x509.Certificate
		err    string
	}{
		{"method 9 with a P-384 key", wire.AuthECDSA256, p384Raw, p384Leaf, "does not fit"},
		{"method 10 with a P-256 key", wire.AuthECDSA384, p256Raw, p256Leaf, "does not fit"},
		{"method 11 with a P-256 key", wire.AuthECDSA521, p256Raw, p256Leaf, "does not fit"},
		{"method 9 with an RSA key", wire.AuthECDSA256, p256Raw, rsaLeaf, "RSA-3072 key"},
		{"method 9 with an Ed25519 key", wire.AuthECDSA256, p256Raw, edLeaf, "Ed25519 key"},
		{"method 1 with an ECDSA key", wire.AuthRSASig, rsaClassic, p256Leaf, "ECDSA P-256 key"},
		{"method 9 short", wire.AuthECDSA256, p256Raw[:63], p256Leaf, "63 octets, want 64"},
		{"method 9 long", wire.AuthECDSA256, append(bytes.Clone(p256Raw), 0), p256Leaf, "65 octets"},
		{"ECDSA scheme, RSA key", 14, ecdsa7427, rsaLeaf, "RSA-3072 key"},
		{"RSA scheme, ECDSA key", 14, rsa7427, p256Leaf, "ECDSA P-256 key"},
		{"Ed25519 scheme, RSA key", 14, ed7427, rsaLeaf, "RSA-3072 key"},
		{"RSA scheme, Ed25519 key", 14, rsa7427, edLeaf, "Ed25519 key"},
		{"classic RSA as method 14", 14, rsaClassic, rsaLeaf, ""},
		{"sha1WithRSAEncryption", 14, sha1Auth, rsaLeaf, "did not announce"},
		{"shared key method", wire.AuthSharedKey, rsaClassic, rsaLeaf, "unsupported AUTH method 2"},
		{"NULL method", wire.AuthNULL, nil, rsaLeaf, "unsupported AUTH method 13"},
		{"no certificate", 14, rsa7427, nil, "no certificate"},
		{"empty", 14, nil, rsaLeaf, "empty AUTH data"},
		{"zero ASN.1 length", 14, []byte{0, 1, 2}, rsaLeaf, "ASN.1 length 0"},
		{"ASN.1 length too long", 14, []byte{15, 0x30, 0x0d}, rsaLeaf, "does not fit"},
		{"no signature value", 14, append([]byte{15}, unhex(t, rfcSHA256WithRSA)...), rsaLeaf, "no signature value"},
		{"PSS SHA-1 defaults", 14, append(append([]byte{15}, unhex(t, rfcPSSEmpty)...), sha1Sig...), rsaLeaf, "did not announce"},
	} {
		err := Verify(tc.method, tc.data, signedOctets, tc.leaf)
		if err == nil || errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want a non-signature error with %q", tc.name, err, tc.err)
		}
	}
}

// TestVerifyPSSVariants: a peer may choose any salt length and the explicit trailerField.
func TestVerifyPSSVariants(t *testing.T) {
	k := testKeys()
	ca, caKey := testCA(t)
	leaf := issue(t, leafTemplate("gw.example.org"), k.rsa.Public(), ca, caKey)
	for _, tc := range []struct {
		name      string
		hash      crypto.Hash
		signSalt  int
		algID     func() []byte
		verifies  bool
		wantError bool
	}{
		{"A.4.3 with trailerField", crypto.SHA256, 32, func() []byte { return unhex(t, rfcPSSSHA256) }, true, false},
		{"salt 20 SHA-256", crypto.SHA256, 20, func() []byte { b, _ := (scheme{algRSAPSS, crypto.SHA256, 20}).algorithmIdentifier(); return b }, true, false},
		{"salt 64 SHA-512", crypto.SHA512, 64, func() []byte { b, _ := (scheme{algRSAPSS, crypto.SHA512, 64}).algorithmIdentifier(); return b }, true, false},
		{"salt 100 SHA-384", crypto.SHA384, 100, func() []byte { b, _ := (scheme{algRSAPSS, crypto.SHA384, 100}).algorithmIdentifier(); return b }, true, false},
		{"declared salt differs", crypto.SHA256, 64, func() []byte { return unhex(t, derPSSSHA256) }, false, false},
		{"PSS with SHA-1", crypto.SHA1, 20, func() []byte { return unhex(t, rfcPSSDefault) }, false, true},
	} {
		h := tc.hash.New()
		h.Write(signedOctets)
		sig, err := rsa.SignPSS(rand.Reader, k.rsa, tc.hash, h.Sum(nil), &rsa.PSSOptions{SaltLength: tc.signSalt})
		if err != nil {
			t.Fatal(err)
		}
		ai := tc.algID()
		data := append(append([]byte{byte(len(ai))}, ai...), sig...)
		err = Verify(wire.AuthDigitalSignature, data, signedOctets, leaf)
		switch {
		case tc.verifies && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case !tc.verifies && !tc.wantError && !errors.Is(err, ErrSignature):
			t.Errorf("%s: %v, want ErrSignature", tc.name, err)
		case tc.wantError && (err == nil || errors.Is(err, ErrSignature)):
			t.Errorf("%s: %v, want a non-signature error", tc.name, err)
		}
	}
}

// TestSignErrors: a credential without key, or with an unusable key.
func TestSignErrors(t *testing.T) {
	if _, _, err := (&Credential{}).Sign(signedOctets, nil); err == nil {
		t.Error("Sign without a key succeeded")
	}
	if id := (&Credential{}).ID(); id.IDType != wire.ID_DER_ASN1_DN || len(id.Data) != 0 {
		t.Errorf("ID of an empty chain: %+v", id)
	}
}
