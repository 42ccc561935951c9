package cert

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	k := testKeys()
	ca, caKey := testCA(t)
	other := issue(t, caTemplate("other CA"), k.ca2Key.Public(), nil, k.ca2Key)
	intTmpl := caTemplate("intermediate CA")
	inter := issue(t, intTmpl, k.p256b.Public(), ca, caKey)

	good := issue(t, leafTemplate("gw.example.org"), k.p256.Public(), ca, caKey)
	foreign := issue(t, leafTemplate("gw.example.org"), k.p256.Public(), other, k.ca2Key)
	viaInter := issue(t, leafTemplate("via.example.org"), k.ed.Public(), inter, k.p256b)
	expTmpl := leafTemplate("old.example.org")
	expTmpl.NotBefore = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	expTmpl.NotAfter = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	expired := issue(t, expTmpl, k.p256.Public(), ca, caKey)
	encTmpl := leafTemplate("enc.example.org")
	encTmpl.KeyUsage = x509.KeyUsageKeyEncipherment
	encOnly := issue(t, encTmpl, k.rsa.Public(), ca, caKey)
	nrTmpl := leafTemplate("nr.example.org")
	nrTmpl.KeyUsage = x509.KeyUsageContentCommitment
	nonRep := issue(t, nrTmpl, k.rsa.Public(), ca, caKey)
	noKUTmpl := leafTemplate("noku.example.org")
	noKUTmpl.KeyUsage = 0
	noKU := issue(t, noKUTmpl, k.rsa.Public(), ca, caKey)
	ekuTmpl := leafTemplate("client.example.org")
	ekuTmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	clientOnly := issue(t, ekuTmpl, k.p384.Public(), ca, caKey)
	byLeaf := issue(t, leafTemplate("sub.example.org"), k.p384.Public(), good, k.p256)

	v := &Validator{Roots: []*x509.Certificate{ca}, Now: func() time.Time { return testNow }}
	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
	}{
		{"direct", []*x509.Certificate{good}},
		{"with an intermediate", []*x509.Certificate{viaInter, inter}},
		{"with an unneeded extra certificate", []*x509.Certificate{good, foreign}},
		{"nonRepudiation only", []*x509.Certificate{nonRep}},
		{"no key usage extension", []*x509.Certificate{noKU}},
		{"clientAuth only", []*x509.Certificate{clientOnly}},
	} {
		leaf, err := v.Validate(tc.chain)
		if err != nil || leaf != tc.chain[0] {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	for _, tc := range []struct {
		name  string
		v     *Validator
		chain []*x509.Certificate
		err   string
	}{
		{"other CA", v, []*x509.Certificate{foreign}, `"CN=gw.example.org,O=mobikevpn test,C=CH" does not chain to a trusted CA`},
		{"intermediate missing", v, []*x509.Certificate{viaInter}, "does not chain to a trusted CA"},
		{"expired", v, []*x509.Certificate{expired}, "is not valid at 2026-01-01T00:00:00Z (valid from 2024-01-01T00:00:00Z to 2025-06-01T00:00:00Z)"},
		{"CA certificate as leaf", v, []*x509.Certificate{inter}, `"CN=intermediate CA,O=mobikevpn test,C=CH" is a CA certificate`},
		{"root as leaf", v, []*x509.Certificate{ca}, "is a CA certificate"},
		{"keyEncipherment only", v, []*x509.Certificate{encOnly}, "neither digitalSignature nor nonRepudiation"},
		{"issued by an end entity", v, []*x509.Certificate{byLeaf, good}, "CN=sub.example.org"},
		{"intermediate expired for this clock", &Validator{Roots: v.Roots, Now: func() time.Time { return time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC) }},
			[]*x509.Certificate{viaInter, inter}, "is not valid at 2036-01-01T00:00:00Z"},
	} {
		leaf, err := tc.v.Validate(tc.chain)
		if err == nil || leaf != nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.err)
		}
	}

	// Now nil is the real clock.
	nowTmpl := leafTemplate("now.example.org")
	nowTmpl.NotBefore = time.Now().Add(-time.Hour)
	nowTmpl.NotAfter = time.Now().Add(time.Hour)
	fresh := issue(t, nowTmpl, k.p256.Public(), ca, caKey)
	if _, err := (&Validator{Roots: v.Roots}).Validate([]*x509.Certificate{fresh}); err != nil {
		t.Errorf("real clock: %v", err)
	}
	if _, err := (&Validator{Roots: v.Roots}).Validate([]*x509.Certificate{expired}); err == nil {
		t.Error("real clock: expired leaf accepted")
	}
}

func TestParseCerts(t *testing.T) {
	k := testKeys()
	ca, caKey := testCA(t)
	leaf := issue(t, leafTemplate("gw.example.org"), k.p256.Public(), ca, caKey)
	got, err := ParseCerts([][]byte{leaf.Raw, ca.Raw})
	if err != nil || len(got) != 2 || !got[0].Equal(leaf) || !got[1].Equal(ca) {
		t.Fatalf("%v, %v", got, err)
	}
	many := make([][]byte, MaxChain+1)
	for i := range many {
		many[i] = leaf.Raw
	}
	if _, err := ParseCerts(many[:MaxChain]); err != nil {
		t.Errorf("%d certificates: %v", MaxChain, err)
	}
	for _, tc := range []struct {
		name     string
		payloads [][]byte
		err      string
	}{
		{"none", nil, "no CERT payload"},
		{"too many", many, "at most 16"},
		{"garbage", [][]byte{[]byte("not a certificate")}, "CERT payload 1"},
		{"empty", [][]byte{leaf.Raw, {}}, "CERT payload 2"},
		{"truncated", [][]byte{leaf.Raw[:len(leaf.Raw)-1]}, "CERT payload 1"},
		{"trailing data", [][]byte{append(bytes.Clone(leaf.Raw), 0)}, "CERT payload 1"},
		{"PEM", [][]byte{pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})}, "CERT payload 1"},
	} {
		if c, err := ParseCerts(tc.payloads); err == nil || c != nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.err)
		}
	}
}

func TestCertReq(t *testing.T) {
	ca, _ := testCA(t)
	k := testKeys()
	other := issue(t, caTemplate("other CA"), k.ca2Key.Public(), nil, k.ca2Key)
	data := CertReqData([]*x509.Certificate{ca, other})
	if len(data) != 40 {
		t.Fatalf("%d octets", len(data))
	}
	if !MatchCertReq(data, []*x509.Certificate{other}) || !MatchCertReq(data[:20], []*x509.Certificate{ca}) {
		t.Error("own CERTREQ data not matched")
	}
	if MatchCertReq(data[:20], []*x509.Certificate{other}) {
		t.Error("matched a CA not named")
	}
}

// TestKeyFormats: every private key encoding LoadCredential reads, and those it refuses.
func TestKeyFormats(t *testing.T) {
	k := testKeys()
	ca, caKey := testCA(t)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pemOf := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }
	pkcs8 := func(key any) []byte {
		b, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	sec1, err := x509.MarshalECPrivateKey(k.p384)
	if err != nil {
		t.Fatal(err)
	}
	rsaLeaf := issue(t, leafTemplate("rsa.example.org"), k.rsa.Public(), ca, caKey)
	ecLeaf := issue(t, leafTemplate("ec.example.org"), k.p384.Public(), ca, caKey)
	edLeaf := issue(t, leafTemplate("ed.example.org"), k.ed.Public(), ca, caKey)
	rsaCert := write("rsa.pem", append(pemOf("CERTIFICATE", ca.Raw), pemOf("CERTIFICATE", rsaLeaf.Raw)...))
	ecCert := write("ec.der", append(bytes.Clone(ecLeaf.Raw), ca.Raw...)) // two DER certificates
	edCert := write("ed.pem", pemOf("CERTIFICATE", edLeaf.Raw))

	for _, tc := range []struct {
		name, cert string
		key        []byte
		pub        crypto.PublicKey
	}{
		{"RSA PKCS#8 PEM", rsaCert, pemOf("PRIVATE KEY", pkcs8(k.rsa)), k.rsa.Public()},
		{"RSA PKCS#8 DER", rsaCert, pkcs8(k.rsa), k.rsa.Public()},
		{"RSA PKCS#1 DER", rsaCert, x509.MarshalPKCS1PrivateKey(k.rsa), k.rsa.Public()},
		{"ECDSA PKCS#8 PEM", ecCert, pemOf("PRIVATE KEY", pkcs8(k.p384)), k.p384.Public()},
		{"ECDSA SEC1 PEM after EC PARAMETERS", ecCert, append(pemOf("EC PARAMETERS", []byte{6, 5, 0x2b, 0x81, 4, 0, 0x22}), pemOf("EC PRIVATE KEY", sec1)...), k.p384.Public()},
		{"ECDSA SEC1 DER", ecCert, sec1, k.p384.Public()},
		{"Ed25519 PKCS#8 DER", edCert, pkcs8(k.ed), k.ed.Public()},
	} {
		cred, err := LoadCredential([]string{tc.cert}, write("key", tc.key))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !samePublicKey(tc.pub, cred.Chain[0].PublicKey) || !samePublicKey(tc.pub, cred.Key.Public()) || len(cred.Chain) != 2 && tc.cert != edCert {
			t.Errorf("%s: wrong leaf or key, chain of %d", tc.name, len(cred.Chain))
		}
		if len(cred.Chain) == 2 && !cred.Chain[1].Equal(ca) {
			t.Errorf("%s: second certificate is not the CA", tc.name)
		}
	}

	encrypted := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00112233445566778899AABBCCDDEEFF"}, Bytes: x509.MarshalPKCS1PrivateKey(k.rsa)})
	badPEM := pemOf("PRIVATE KEY", []byte("garbage"))
	for _, tc := range []struct {
		name string
		key  []byte
		err  string
	}{
		{"encrypted PEM", encrypted, "encrypted private keys are not supported"},
		{"encrypted PKCS#8", pemOf("ENCRYPTED PRIVATE KEY", []byte{0x30, 0}), "encrypted private keys are not supported"},
		{"corrupt PKCS#8 PEM", badPEM, `PEM "PRIVATE KEY" block does not parse`},
		{"garbage", []byte("garbage"), "not a PEM or DER"},
		{"empty", nil, "not a PEM or DER"},
	} {
		_, err := LoadCredential([]string{rsaCert}, write("key", tc.key))
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.err)
			continue
		}
		if strings.Contains(err.Error(), "MII") || strings.Contains(err.Error(), string(tc.key)) && len(tc.key) > 8 {
			t.Errorf("%s: the error quotes the key: %v", tc.name, err)
		}
	}

	// A CA file may hold several PEM certificates; garbage is an error.
	cas, err := LoadCAs([]string{rsaCert, edCert})
	if err != nil || len(cas) != 3 {
		t.Errorf("LoadCAs: %d, %v", len(cas), err)
	}
	if _, err := LoadCAs([]string{write("garbage", []byte("\x30\x03\x02\x01"))}); err == nil {
		t.Error("LoadCAs accepted garbage")
	}
	if _, err := LoadCAs([]string{write("empty", nil)}); err == nil {
		t.Error("LoadCAs accepted an empty file")
	}
	if _, err := LoadCAs([]string{write("badpem", pemOf("CERTIFICATE", []byte("garbage")))}); err == nil {
		t.Error("LoadCAs accepted a corrupt PEM certificate")
	}
}
