package cert

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/wire"
)

// The files under testdata were made by strongSwan 5.9.8's pki and OpenSSL 3.0; see
// testdata/README.md.

func td(name string) string { return filepath.Join("testdata", name) }

func loadOne(t testing.TB, name string) *x509.Certificate {
	t.Helper()
	cs, err := LoadCAs([]string{td(name)})
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 {
		t.Fatalf("%s: %d certificates", name, len(cs))
	}
	return cs[0]
}

func readTD(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(td(name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// outerSignature splits a certificate into its TBSCertificate, the DER of its
// signatureAlgorithm and the signature value.
func outerSignature(t testing.TB, c *x509.Certificate) (tbs, algID, sig []byte) {
	t.Helper()
	var outer struct {
		TBS    asn1.RawValue
		SigAlg asn1.RawValue
		Sig    asn1.BitString
	}
	if _, err := asn1.Unmarshal(c.Raw, &outer); err != nil {
		t.Fatal(err)
	}
	return outer.TBS.FullBytes, outer.SigAlg.FullBytes, outer.Sig.Bytes
}

// TestStrongSwanSignatures: pki made its certificates with libstrongswan's
// signature_params_build() and private_key_t.sign(), the same code that builds an RFC
// 7427 AUTH payload in charon's pubkey_authenticator.c. So each certificate's
// signatureAlgorithm and signature, put behind the length octet, is AUTH data as charon
// would send it over the TBSCertificate as signed octets, and Verify must accept it.
// The AlgorithmIdentifiers must also equal what we produce for the same scheme.
func TestStrongSwanSignatures(t *testing.T) {
	for _, tc := range []struct {
		cert, issuer string
		want         scheme
	}{
		{"rsa-ca.pem", "rsa-ca.pem", scheme{alg: algRSAPKCS1, hash: crypto.SHA256}},
		{"rsa-gw.pem", "rsa-ca.pem", scheme{alg: algRSAPKCS1, hash: crypto.SHA256}},
		{"rsa-gw-sha512.pem", "rsa-ca.pem", scheme{alg: algRSAPKCS1, hash: crypto.SHA512}},
		{"rsa-gw-pss256.pem", "rsa-ca.pem", scheme{alg: algRSAPSS, hash: crypto.SHA256, salt: 32}},
		{"rsa-gw-pss384.pem", "rsa-ca.pem", scheme{alg: algRSAPSS, hash: crypto.SHA384, salt: 48}},
		{"ecdsa-ca.pem", "ecdsa-ca.pem", scheme{alg: algECDSA, hash: crypto.SHA384}},
		{"ecdsa-int.pem", "ecdsa-ca.pem", scheme{alg: algECDSA, hash: crypto.SHA384}},
		{"ecdsa-gw.der.crt", "ecdsa-int.pem", scheme{alg: algECDSA, hash: crypto.SHA256}},
		{"ed25519-ca.pem", "ed25519-ca.pem", scheme{alg: algEd25519}},
		{"ed25519-gw.pem", "ed25519-ca.pem", scheme{alg: algEd25519}},
	} {
		c, issuer := loadOne(t, tc.cert), loadOne(t, tc.issuer)
		tbs, algID, sig := outerSignature(t, c)
		ours, err := tc.want.algorithmIdentifier()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ours, algID) {
			t.Errorf("%s: strongSwan's AlgorithmIdentifier %x, ours for %v %x", tc.cert, algID, tc.want, ours)
		}
		auth := append(append([]byte{byte(len(algID))}, algID...), sig...)
		if err := Verify(wire.AuthDigitalSignature, auth, tbs, issuer); err != nil {
			t.Errorf("%s: %v", tc.cert, err)
		}
		tbs = bytes.Clone(tbs)
		tbs[len(tbs)-1] ^= 1
		if err := Verify(wire.AuthDigitalSignature, auth, tbs, issuer); !errors.Is(err, ErrSignature) {
			t.Errorf("%s: altered TBSCertificate: %v", tc.cert, err)
		}
	}
}

// TestOpenSSLSignatures: known answers by OpenSSL over testdata/signed.bin. The
// deterministic ones (PKCS#1 v1.5, Ed25519) must be exactly what Sign produces; all
// must pass Verify.
func TestOpenSSLSignatures(t *testing.T) {
	signed := readTD(t, "signed.bin")
	rsaCred, err := LoadCredential([]string{td("rsa-gw.pem")}, td("rsa-gw.key"))
	if err != nil {
		t.Fatal(err)
	}
	edCred, err := LoadCredential([]string{td("ed25519-gw.pem")}, td("ed25519-gw.key"))
	if err != nil {
		t.Fatal(err)
	}
	ecLeaf := loadOne(t, "ecdsa-gw.der.crt")

	// Method 1: exactly OpenSSL's "dgst -sha1 -sign".
	m, got, err := rsaCred.Sign(signed, nil)
	if err != nil || m != wire.AuthRSASig {
		t.Fatalf("method %d, %v", m, err)
	}
	if want := readTD(t, "rsa-gw.sha1.sig"); !bytes.Equal(got, want) {
		t.Error("method 1 signature differs from OpenSSL's SHA-1 PKCS#1 v1.5 signature")
	}
	if err := Verify(wire.AuthRSASig, readTD(t, "rsa-gw.sha1.sig"), signed, rsaCred.Chain[0]); err != nil {
		t.Error(err)
	}

	// Method 14 sha256WithRSAEncryption: the A.1.2 prefix and OpenSSL's signature.
	want := append(append([]byte{15}, unhex(t, rfcSHA256WithRSA)...), readTD(t, "rsa-gw.sha256.sig")...)
	m, got, err = rsaCred.Sign(signed, []uint16{2, 3, 4, 5})
	if err != nil || m != wire.AuthDigitalSignature || !bytes.Equal(got, want) {
		t.Errorf("RSA method %d %v: AUTH data differs from A.1.2 prefix + OpenSSL's signature", m, err)
	}
	if err := Verify(14, want, signed, rsaCred.Chain[0]); err != nil {
		t.Error(err)
	}

	// Ed25519: the RFC 8420 prefix and OpenSSL's signature.
	want = append(append([]byte{7}, unhex(t, rfcEd25519)...), readTD(t, "ed25519-gw.sig")...)
	m, got, err = edCred.Sign(signed, []uint16{5})
	if err != nil || m != wire.AuthDigitalSignature || !bytes.Equal(got, want) {
		t.Errorf("Ed25519 method %d %v: AUTH data differs from the RFC 8420 prefix + OpenSSL's signature", m, err)
	}
	if err := Verify(14, want, signed, edCred.Chain[0]); err != nil {
		t.Error(err)
	}

	// RSASSA-PSS (SHA-256, salt 32) by OpenSSL, with strongSwan's and RFC 7427's prefixes.
	pss := readTD(t, "rsa-gw.pss256.sig")
	for _, prefix := range []string{derPSSSHA256, rfcPSSSHA256} {
		p := unhex(t, prefix)
		if err := Verify(14, append(append([]byte{byte(len(p))}, p...), pss...), signed, rsaCred.Chain[0]); err != nil {
			t.Errorf("OpenSSL PSS signature: %v", err)
		}
	}

	// ECDSA P-256 SHA-256 by OpenSSL: DER under RFC 7427, r|s as method 9.
	der := readTD(t, "ecdsa-gw.sha256.sig")
	if err := Verify(14, append(append([]byte{12}, unhex(t, rfcECDSAWith256)...), der...), signed, ecLeaf); err != nil {
		t.Errorf("OpenSSL ECDSA signature under RFC 7427: %v", err)
	}
	var rs struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &rs); err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 64)
	rs.R.FillBytes(raw[:32])
	rs.S.FillBytes(raw[32:])
	if err := Verify(wire.AuthECDSA256, raw, signed, ecLeaf); err != nil {
		t.Errorf("OpenSSL ECDSA signature as method 9: %v", err)
	}
}

func TestLoadCredential(t *testing.T) {
	signed := readTD(t, "signed.bin")
	for _, tc := range []struct {
		name   string
		certs  []string
		key    string
		dn     string
		chain  int
		pubKey func(crypto.PublicKey) bool
	}{
		{"RSA, PEM PKCS#1 key", []string{"rsa-gw.pem"}, "rsa-gw.key", "C=CH, O=mobikevpn test, CN=gw.example.org", 1,
			func(k crypto.PublicKey) bool { r, ok := k.(*rsa.PublicKey); return ok && r.N.BitLen() == 3072 }},
		{"ECDSA, DER SEC1 key, DER leaf after its PEM CA", []string{"ecdsa-int.pem", "ecdsa-gw.der.crt"}, "ecdsa-gw.der",
			"C=CH, O=mobikevpn test, CN=moon.example.org", 2,
			func(k crypto.PublicKey) bool {
				e, ok := k.(*ecdsa.PublicKey)
				return ok && e.Curve.Params().Name == "P-256"
			}},
		{"Ed25519, PEM PKCS#8 key", []string{"ed25519-gw.pem"}, "ed25519-gw.key", "C=CH, O=mobikevpn test, CN=sun.example.org", 1,
			func(k crypto.PublicKey) bool { _, ok := k.(ed25519.PublicKey); return ok }},
	} {
		cred, err := LoadCredential(func() (fs []string) {
			for _, c := range tc.certs {
				fs = append(fs, td(c))
			}
			return
		}(), td(tc.key))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(cred.Chain) != tc.chain || !tc.pubKey(cred.Chain[0].PublicKey) {
			t.Fatalf("%s: chain of %d, leaf key %T", tc.name, len(cred.Chain), cred.Chain[0].PublicKey)
		}
		id := cred.ID()
		want := wire.IDFromString(tc.dn)
		if id.IDType != wire.ID_DER_ASN1_DN || !bytes.Equal(id.Data, want.Data) || id.String() != tc.dn {
			t.Errorf("%s: ID %v (%x), want %s", tc.name, id.String(), id.Data, tc.dn)
		}
		for _, peer := range [][]uint16{nil, SupportedHashes()} {
			m, data, err := cred.Sign(signed, peer)
			if peer == nil && tc.name[:3] == "Ed2" {
				if err == nil {
					t.Errorf("%s: classic Ed25519 signature", tc.name)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if err := Verify(m, data, signed, cred.Chain[0]); err != nil {
				t.Errorf("%s, method %d: %v", tc.name, m, err)
			}
		}
	}

	for _, tc := range []struct {
		name  string
		certs []string
		key   string
		err   string
	}{
		{"key of another certificate", []string{"rsa-gw.pem"}, "ed25519-gw.key", "matches none"},
		{"CA key for the leaf", []string{"rsa-gw.pem"}, "rsa-ca.key", "matches none"},
		{"no certificates", nil, "rsa-gw.key", "no certificate file"},
		{"missing certificate file", []string{"nonexistent.pem"}, "rsa-gw.key", "no such file"},
		{"missing key file", []string{"rsa-gw.pem"}, "nonexistent.key", "no such file"},
		{"certificate as key", []string{"rsa-gw.pem"}, "rsa-gw.pem", "no PEM private key block"},
		{"signature as key", []string{"rsa-gw.pem"}, "rsa-gw.sha1.sig", "not a PEM or DER"},
		{"key as certificate", []string{"rsa-gw.key"}, "rsa-gw.key", "no PEM CERTIFICATE block"},
		{"garbage certificate", []string{"signed.bin"}, "rsa-gw.key", "neither PEM nor DER"},
	} {
		var fs []string
		for _, c := range tc.certs {
			fs = append(fs, td(c))
		}
		_, err := LoadCredential(fs, td(tc.key))
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.err)
		}
	}
}

func TestValidateTestdata(t *testing.T) {
	roots, err := LoadCAs([]string{td("rsa-ca.pem"), td("ecdsa-ca.pem"), td("ed25519-ca.pem")})
	if err != nil {
		t.Fatal(err)
	}
	if len(roots) != 3 {
		t.Fatalf("%d roots", len(roots))
	}
	at := func(tm time.Time) *Validator { return &Validator{Roots: roots, Now: func() time.Time { return tm }} }
	v := at(testNow)
	rsaGW, ecGW, ecInt, edGW := loadOne(t, "rsa-gw.pem"), loadOne(t, "ecdsa-gw.der.crt"), loadOne(t, "ecdsa-int.pem"), loadOne(t, "ed25519-gw.pem")

	for _, chain := range [][]*x509.Certificate{{rsaGW}, {ecGW, ecInt}, {edGW}, {loadOne(t, "rsa-gw-pss256.pem")}} {
		leaf, err := v.Validate(chain)
		if err != nil || leaf != chain[0] {
			t.Errorf("%s: %v", chain[0].Subject, err)
		}
	}
	for _, tc := range []struct {
		name  string
		v     *Validator
		chain []*x509.Certificate
		err   string
	}{
		{"intermediate missing", v, []*x509.Certificate{ecGW}, "does not chain to a trusted CA"},
		{"other CA only", &Validator{Roots: roots[:1], Now: v.Now}, []*x509.Certificate{edGW}, "does not chain to a trusted CA"},
		{"leaf expired", at(time.Date(2035, 7, 1, 0, 0, 0, 0, time.UTC)), []*x509.Certificate{rsaGW}, "is not valid at 2035-07-01T00:00:00Z"},
		{"leaf not yet valid", at(time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)), []*x509.Certificate{edGW}, "CN=sun.example.org"},
		{"CA as leaf", v, []*x509.Certificate{ecInt}, "is a CA certificate"},
		{"root as leaf", v, []*x509.Certificate{roots[0]}, "is a CA certificate"},
		{"no roots", &Validator{Now: v.Now}, []*x509.Certificate{rsaGW}, "no trusted CA"},
		{"nothing", v, nil, "no certificate"},
	} {
		_, err := tc.v.Validate(tc.chain)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.err)
		}
	}
}

func TestIDMatchesTestdata(t *testing.T) {
	rsaGW, ecGW, edGW := loadOne(t, "rsa-gw.pem"), loadOne(t, "ecdsa-gw.der.crt"), loadOne(t, "ed25519-gw.pem")
	for _, tc := range []struct {
		id   string
		leaf *x509.Certificate
		want bool
	}{
		{"C=CH, O=mobikevpn test, CN=gw.example.org", rsaGW, true},
		{"c=ch, o=MOBIKEVPN TEST, cn=GW.example.org", rsaGW, true},
		{"C=CH, O=mobikevpn test, CN=gw.example.org", ecGW, false},
		{"C=CH, CN=gw.example.org, O=mobikevpn test", rsaGW, false}, // RDN order matters
		{"C=CH, O=mobikevpn test", rsaGW, false},
		{"gw.example.org", rsaGW, true},
		{"@GW.Example.ORG", rsaGW, true},
		{"fqdn:gw.example.org", rsaGW, true},
		{"gw.example.org", ecGW, false},
		{"other.example.org", rsaGW, false},
		{"example.org", rsaGW, false},
		{"alice@example.org", rsaGW, true},
		{"ALICE@Example.org", rsaGW, true},
		{"bob@example.org", rsaGW, false},
		{"198.51.100.1", rsaGW, true},
		{"198.51.100.2", rsaGW, false},
		{"2001:db8::1", rsaGW, true},
		{"2001:db8::2", rsaGW, false},
		{"moon.example.org", ecGW, true},
		{"carol@example.org", ecGW, true},
		{"192.0.2.7", ecGW, true},
		{"192.0.2.7", rsaGW, false},
		{"C=CH, O=mobikevpn test, CN=sun.example.org", edGW, true},
		{"sun.example.org", edGW, true},
		{"dave@example.org", edGW, true},
		{"2001:db8::7", edGW, true},
		{"keyid:gw.example.org", rsaGW, false},
		{"%null", rsaGW, false},
	} {
		id := wire.IDFromString(tc.id)
		if got := IDMatches(&id, tc.leaf); got != tc.want {
			t.Errorf("IDMatches(%q (type %d), %s) = %v, want %v", tc.id, id.IDType, tc.leaf.Subject, got, tc.want)
		}
	}
	// An address in the form of the other family never matches.
	a4 := netip.MustParseAddr("198.51.100.1").As4()
	if IDMatches(&wire.ID{IDType: wire.ID_IPV6_ADDR, Data: a4[:]}, rsaGW) {
		t.Error("4-octet ID_IPV6_ADDR matched")
	}
	if IDMatches(nil, rsaGW) || IDMatches(&wire.ID{IDType: wire.ID_FQDN, Data: []byte("gw.example.org")}, nil) {
		t.Error("nil matched")
	}
	if IDMatches(&wire.ID{IDType: wire.ID_DER_ASN1_DN}, rsaGW) {
		t.Error("empty DN matched")
	}
}

// TestCertReqTestdata: CERTREQ hashes of the CAs, known answers from strongSwan's
// "pki --print" (keyid, the SHA-1 of the subjectPublicKeyInfo that charon puts in
// CERTREQ) and from "openssl x509 -pubkey | openssl pkey -pubin -outform DER | sha1sum".
func TestCertReqTestdata(t *testing.T) {
	rsaCA, ecCA, ecInt, edCA := loadOne(t, "rsa-ca.pem"), loadOne(t, "ecdsa-ca.pem"), loadOne(t, "ecdsa-int.pem"), loadOne(t, "ed25519-ca.pem")
	const (
		rsaKeyID   = "4a64d8401edcecce3e981640f8d49eed329a2b10"
		ecKeyID    = "1a5dd85866b5cdc5e6a205f37561738f95c13810"
		ecIntKeyID = "32e9a03749d116847f0a103fd09510084b2caa86"
		edKeyID    = "bd10ed6b9b25d1dd191eecda2646dc52d5f9b802"
	)
	got := hex.EncodeToString(CertReqData([]*x509.Certificate{rsaCA, ecCA, ecInt, edCA}))
	if want := rsaKeyID + ecKeyID + ecIntKeyID + edKeyID; got != want {
		t.Errorf("CERTREQ data %s, want %s", got, want)
	}
	if len(CertReqData(nil)) != 0 {
		t.Error("CERTREQ data for no CA")
	}
	for _, tc := range []struct {
		data string
		cas  []*x509.Certificate
		want bool
	}{
		{rsaKeyID, []*x509.Certificate{rsaCA}, true},
		{ecKeyID + rsaKeyID, []*x509.Certificate{edCA, rsaCA}, true},
		{edKeyID, []*x509.Certificate{rsaCA, ecCA}, false},
		{ecIntKeyID, []*x509.Certificate{ecCA}, false},
		{"", []*x509.Certificate{rsaCA}, false},
		{rsaKeyID[:38], []*x509.Certificate{rsaCA}, false},
		{rsaKeyID + "00", []*x509.Certificate{rsaCA}, false},
		{rsaKeyID, nil, false},
	} {
		if got := MatchCertReq(unhex(t, tc.data), tc.cas); got != tc.want {
			t.Errorf("MatchCertReq(%s) = %v, want %v", tc.data, got, tc.want)
		}
	}
}
