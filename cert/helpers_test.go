package cert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// testNow is the clock of the validation tests: inside the validity of every test
// certificate (testdata ones: CAs 2025-01-01..2045-01-01, leaves 2025-06-01..2035-06-01).
var testNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// testKeys are generated once per test binary; RSA-3072 generation is the slow part.
type keySet struct {
	rsa, rsa2     *rsa.PrivateKey
	p256, p256b   *ecdsa.PrivateKey
	p384, p384b   *ecdsa.PrivateKey
	p521, p521b   *ecdsa.PrivateKey
	ed, ed2       ed25519.PrivateKey
	caKey, ca2Key *ecdsa.PrivateKey
}

var testKeys = sync.OnceValue(func() *keySet {
	must := func(k any, err error) any {
		if err != nil {
			panic(err)
		}
		return k
	}
	ec := func(c elliptic.Curve) *ecdsa.PrivateKey {
		return must(ecdsa.GenerateKey(c, rand.Reader)).(*ecdsa.PrivateKey)
	}
	ed := func() ed25519.PrivateKey {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	}
	return &keySet{
		rsa:    must(rsa.GenerateKey(rand.Reader, 3072)).(*rsa.PrivateKey),
		rsa2:   must(rsa.GenerateKey(rand.Reader, 3072)).(*rsa.PrivateKey),
		p256:   ec(elliptic.P256()),
		p256b:  ec(elliptic.P256()),
		p384:   ec(elliptic.P384()),
		p384b:  ec(elliptic.P384()),
		p521:   ec(elliptic.P521()),
		p521b:  ec(elliptic.P521()),
		ed:     ed(),
		ed2:    ed(),
		caKey:  ec(elliptic.P384()),
		ca2Key: ec(elliptic.P256()),
	}
})

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// issue creates a certificate from tmpl for pub, signed by parent/parentKey (self-signed
// when parent is nil).
func issue(t testing.TB, tmpl *x509.Certificate, pub crypto.PublicKey, parent *x509.Certificate, parentKey crypto.Signer) *x509.Certificate {
	t.Helper()
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = serial(t)
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		tmpl.NotAfter = time.Date(2035, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func caTemplate(cn string) *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{Country: []string{"CH"}, Organization: []string{"mobikevpn test"}, CommonName: cn},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
}

func leafTemplate(cn string) *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{Country: []string{"CH"}, Organization: []string{"mobikevpn test"}, CommonName: cn},
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		DNSNames:              []string{cn},
		EmailAddresses:        []string{"bob@example.org"},
		IPAddresses:           []net.IP{net.ParseIP("203.0.113.9"), net.ParseIP("2001:db8::9")},
	}
}

// testCA is a self-signed CA (P-384) made once per call.
func testCA(t testing.TB) (*x509.Certificate, crypto.Signer) {
	k := testKeys().caKey
	return issue(t, caTemplate("mobikevpn test Go CA"), k.Public(), nil, k), k
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.NewReplacer(" ", "", "\n", "", "\t", "").Replace(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
