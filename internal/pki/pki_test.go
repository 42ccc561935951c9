package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/cert"
	"github.com/mobikevpn/mobikevpn/wire"
)

var now = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func newCA(t *testing.T, days int) *Issued {
	t.Helper()
	ca, err := NewCA(rand.Reader, now, DefaultCAName, days)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// verify verifies c against ca at time at for the extended key usage eku.
func verify(c, ca *x509.Certificate, at time.Time, eku x509.ExtKeyUsage) error {
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	_, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{eku}})
	return err
}

// checkKey: KeyPEM is a PKCS#8 P-256 key, the certificate's.
func checkKey(t *testing.T, is *Issued) {
	t.Helper()
	blk, rest := pem.Decode(is.KeyPEM)
	if blk == nil || blk.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("key PEM: %q", is.KeyPEM)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		t.Fatalf("key %T, want an ECDSA P-256 key", k)
	}
	if !ek.PublicKey.Equal(is.Cert.PublicKey) {
		t.Error("the key is not the certificate's")
	}
	cb, _ := pem.Decode(is.CertPEM)
	if cb == nil || cb.Type != "CERTIFICATE" || !bytes.Equal(cb.Bytes, is.Cert.Raw) {
		t.Error("CertPEM is not the certificate")
	}
}

func TestCA(t *testing.T) {
	ca := newCA(t, DefaultCADays)
	c := ca.Cert
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("basic constraints: CA %v, valid %v, path length %d (zero %v)", c.IsCA, c.BasicConstraintsValid, c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("key usage %b", c.KeyUsage)
	}
	if c.Subject.CommonName != DefaultCAName || c.Issuer.CommonName != DefaultCAName {
		t.Errorf("subject %s, issuer %s", c.Subject, c.Issuer)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if !c.NotBefore.Equal(now.Add(-Backdate)) || !c.NotAfter.Equal(now.AddDate(0, 0, DefaultCADays)) {
		t.Errorf("validity %v to %v", c.NotBefore, c.NotAfter)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v", c.SerialNumber)
	}
	checkKey(t, ca)
	if other := newCA(t, 1); other.Cert.SerialNumber.Cmp(c.SerialNumber) == 0 {
		t.Error("two CAs with the same serial number")
	}
}

func TestGateway(t *testing.T) {
	ca := newCA(t, DefaultCADays)
	ips := []netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("::ffff:198.51.100.1")}
	gw, err := NewGateway(rand.Reader, now, ca, "gw.example.org", ips, DefaultLeafDays)
	if err != nil {
		t.Fatal(err)
	}
	c := gw.Cert
	if err := verify(c, ca.Cert, now, x509.ExtKeyUsageServerAuth); err != nil {
		t.Errorf("serverAuth: %v", err)
	}
	if verify(c, ca.Cert, now, x509.ExtKeyUsageClientAuth) == nil {
		t.Error("a gateway certificate verifies for clientAuth")
	}
	if !slices.ContainsFunc(c.UnknownExtKeyUsage, func(o asn1.ObjectIdentifier) bool { return o.Equal(OIDIPsecIKE) }) {
		t.Errorf("no ipsecIKE among %v", c.UnknownExtKeyUsage)
	}
	if c.Subject.CommonName != "gw.example.org" || !slices.Equal(c.DNSNames, []string{"gw.example.org"}) {
		t.Errorf("subject %s, DNS names %v", c.Subject, c.DNSNames)
	}
	wantIPs := []net.IP{net.ParseIP("198.51.100.1"), net.ParseIP("2001:db8::1")}
	if len(c.IPAddresses) != 2 || !c.IPAddresses[0].Equal(wantIPs[0]) || !c.IPAddresses[1].Equal(wantIPs[1]) {
		t.Errorf("IP addresses %v, want %v (the mapped duplicate once)", c.IPAddresses, wantIPs)
	}
	if c.IsCA || c.KeyUsage != x509.KeyUsageDigitalSignature || len(c.EmailAddresses) != 0 {
		t.Errorf("CA %v, key usage %b, emails %v", c.IsCA, c.KeyUsage, c.EmailAddresses)
	}
	if !c.NotAfter.Equal(now.AddDate(0, 0, DefaultLeafDays)) {
		t.Errorf("not after %v", c.NotAfter)
	}
	if got := SANs(c); got != "DNS gw.example.org, IP 198.51.100.1, IP 2001:db8::1" {
		t.Errorf("SANs %q", got)
	}
	checkKey(t, gw)

	byIP, err := NewGateway(rand.Reader, now, ca, "192.0.2.7", nil, 30)
	if err != nil {
		t.Fatal(err)
	}
	if len(byIP.Cert.DNSNames) != 0 || len(byIP.Cert.IPAddresses) != 1 || byIP.Cert.IPAddresses[0].String() != "192.0.2.7" {
		t.Errorf("gateway named by address: DNS %v, IP %v", byIP.Cert.DNSNames, byIP.Cert.IPAddresses)
	}
}

func TestClient(t *testing.T) {
	ca := newCA(t, DefaultCADays)
	for _, tc := range []struct {
		name        string
		email, host []string
	}{
		{"alice@example.org", []string{"alice@example.org"}, nil},
		{"laptop.example.org", nil, []string{"laptop.example.org"}},
	} {
		cl, err := NewClient(rand.Reader, now, ca, tc.name, DefaultLeafDays)
		if err != nil {
			t.Fatal(err)
		}
		c := cl.Cert
		if err := verify(c, ca.Cert, now, x509.ExtKeyUsageClientAuth); err != nil {
			t.Errorf("%s: clientAuth: %v", tc.name, err)
		}
		if verify(c, ca.Cert, now, x509.ExtKeyUsageServerAuth) == nil {
			t.Errorf("%s: a client certificate verifies for serverAuth", tc.name)
		}
		if c.Subject.CommonName != tc.name || !slices.Equal(c.EmailAddresses, tc.email) || !slices.Equal(c.DNSNames, tc.host) || len(c.IPAddresses) != 0 {
			t.Errorf("%s: subject %s, emails %v, DNS %v, IPs %v", tc.name, c.Subject, c.EmailAddresses, c.DNSNames, c.IPAddresses)
		}
		if c.IsCA || c.KeyUsage != x509.KeyUsageDigitalSignature {
			t.Errorf("%s: CA %v, key usage %b", tc.name, c.IsCA, c.KeyUsage)
		}
		checkKey(t, cl)
	}
}

func TestValidityEndsWithTheCA(t *testing.T) {
	ca := newCA(t, 10)
	cl, err := NewClient(rand.Reader, now, ca, "bob@example.org", DefaultLeafDays)
	if err != nil {
		t.Fatal(err)
	}
	if !cl.Cert.NotAfter.Equal(ca.Cert.NotAfter) {
		t.Errorf("not after %v, the CA's %v", cl.Cert.NotAfter, ca.Cert.NotAfter)
	}
	if err := verify(cl.Cert, ca.Cert, now.AddDate(0, 0, 11), x509.ExtKeyUsageClientAuth); err == nil {
		t.Error("verifies after the CA expired")
	}
}

func TestBadInput(t *testing.T) {
	ca := newCA(t, 1)
	gateway := func(name string) error {
		_, err := NewGateway(rand.Reader, now, ca, name, nil, 1)
		return err
	}
	client := func(name string) error {
		_, err := NewClient(rand.Reader, now, ca, name, 1)
		return err
	}
	tests := []struct {
		what string
		err  error
		frag string
	}{
		{"empty CN", func() error { _, err := NewCA(rand.Reader, now, " ", 1); return err }(), "common name is empty"},
		{"0 days", func() error { _, err := NewCA(rand.Reader, now, "x", 0); return err }(), "1 to 36500 days"},
		{"36501 days", func() error { _, err := NewClient(rand.Reader, now, ca, "a@b.org", MaxDays+1); return err }(), "1 to 36500 days"},
		{"empty name", gateway(""), "the name is empty"},
		{"slash", gateway("a/b"), "path separator"},
		{"backslash", client(`a\b@x.org`), "path separator"},
		{"dot", gateway(".hidden"), `starts with "."`},
		{"dash", client("-rf"), `starts with "-"`},
		{"ca", gateway("CA"), "the CA's files"},
		{"space", client("a b@x.org"), "space or a control character"},
		{"underscore", gateway("gw_1.example.org"), "neither an IP address nor a host name"},
		{"empty label", gateway("gw..example.org"), "empty label"},
		{"hyphen", gateway("gw-.example.org"), "starts or ends with a hyphen"},
		{"zone", gateway("fe80::1%eth0"), "zone"},
		{"no local part", client("@example.org"), "1 to 64 characters"},
		{"two @", client("a@b@example.org"), `'@' is not a letter`},
		{"bad domain", client("a@exa_mple.org"), `domain "exa_mple.org"`},
		{"bad ip", func() error {
			_, err := NewGateway(rand.Reader, now, ca, "gw", []netip.Addr{{}}, 1)
			return err
		}(), "not an IP address"},
	}
	for _, tc := range tests {
		var ie *InputError
		if !errors.As(tc.err, &ie) || !strings.Contains(tc.err.Error(), tc.frag) {
			t.Errorf("%s: error %v, want an InputError with %q", tc.what, tc.err, tc.frag)
		}
	}
}

func TestBadRandom(t *testing.T) {
	if _, err := NewCA(bytes.NewReader(make([]byte, 8)), now, "x", 1); err == nil || !strings.Contains(err.Error(), "random serial number") {
		t.Errorf("short random source: %v", err)
	}
	if _, err := NewCA(bytes.NewReader(make([]byte, 64)), now, "x", 1); err == nil || !strings.Contains(err.Error(), "gave zero") {
		t.Errorf("zero serial: %v", err)
	}
}

// writeSet makes a CA, a gateway and a client in a new folder with WriteFiles.
func writeSet(t *testing.T) (dir string, ca, gw, cl *Issued) {
	t.Helper()
	dir = t.TempDir()
	ca = newCA(t, DefaultCADays)
	var err error
	if gw, err = NewGateway(rand.Reader, now, ca, "gw.example.org", []netip.Addr{netip.MustParseAddr("198.51.100.1")}, DefaultLeafDays); err != nil {
		t.Fatal(err)
	}
	if cl, err = NewClient(rand.Reader, now, ca, "alice@example.org", DefaultLeafDays); err != nil {
		t.Fatal(err)
	}
	files := append(ca.Files(dir, "ca"), gw.Files(dir, "gw.example.org")...)
	if err := WriteFiles(append(files, cl.Files(dir, "alice@example.org")...), false); err != nil {
		t.Fatal(err)
	}
	return dir, ca, gw, cl
}

// TestRepositoryLoader: the files load with package cert, validate against the CA with
// the EKUs a connection may require, vouch for the names, and sign.
func TestRepositoryLoader(t *testing.T) {
	dir, _, _, _ := writeSet(t)
	cas, err := cert.LoadCAs([]string{filepath.Join(dir, "ca.pem")})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		eku  string
		id   wire.ID
	}{
		{"gw.example.org", "ipsecIKE", wire.ID{IDType: wire.ID_FQDN, Data: []byte("gw.example.org")}},
		{"gw.example.org", "serverAuth", wire.ID{IDType: wire.ID_IPV4_ADDR, Data: []byte{198, 51, 100, 1}}},
		{"alice@example.org", "clientAuth", wire.ID{IDType: wire.ID_RFC822_ADDR, Data: []byte("alice@example.org")}},
	} {
		cred, err := cert.LoadCredential([]string{filepath.Join(dir, tc.name+".pem")}, filepath.Join(dir, tc.name+".key"))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		eku, err := cert.ParseEKU(tc.eku)
		if err != nil {
			t.Fatal(err)
		}
		v := &cert.Validator{Roots: cas, Now: func() time.Time { return now }, EKUs: []asn1.ObjectIdentifier{eku}}
		leaf, err := v.Validate(cred.Chain)
		if err != nil {
			t.Errorf("%s with %s: %v", tc.name, tc.eku, err)
			continue
		}
		if !cert.IDMatches(&tc.id, leaf) {
			t.Errorf("%s: does not vouch for %v", tc.name, tc.id)
		}
		signed := []byte("the octets to sign")
		for _, hashes := range [][]uint16{nil, cert.SupportedHashes()} {
			method, data, err := cred.Sign(signed, hashes)
			if err != nil {
				t.Fatalf("%s: sign: %v", tc.name, err)
			}
			if err := cert.Verify(method, data, signed, leaf); err != nil {
				t.Errorf("%s: verify: %v", tc.name, err)
			}
		}
	}
}

func TestWriteFiles(t *testing.T) {
	dir, ca, gw, _ := writeSet(t)
	for name, want := range map[string]fs.FileMode{"ca.key": KeyMode, "gw.example.org.key": KeyMode, "alice@example.org.key": KeyMode, "ca.pem": 0o644} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != want && (want == KeyMode || got&0o400 == 0) {
			t.Errorf("%s: mode %v, want %v", name, got, want)
		}
	}

	// Without force nothing is written when one file exists, and the error names it.
	other, err := NewGateway(rand.Reader, now, ca, "gw.example.org", nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	pemPath := filepath.Join(dir, "gw.example.org.pem")
	keyPath := filepath.Join(dir, "gw.example.org.key")
	if err := os.Remove(keyPath); err != nil {
		t.Fatal(err)
	}
	err = WriteFiles(other.Files(dir, "gw.example.org"), false)
	if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), pemPath) {
		t.Errorf("overwrite without force: %v", err)
	}
	if _, err := os.Stat(keyPath); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the key was written although the certificate exists: %v", err)
	}
	if b, _ := os.ReadFile(pemPath); !bytes.Equal(b, gw.CertPEM) {
		t.Error("the certificate changed without force")
	}

	// With force both are replaced; a key file that was readable is 0600 again.
	if err := os.WriteFile(keyPath, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFiles(other.Files(dir, "gw.example.org"), true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(pemPath); !bytes.Equal(b, other.CertPEM) {
		t.Error("the certificate was not replaced")
	}
	if st, err := os.Stat(keyPath); err != nil || st.Mode().Perm() != KeyMode {
		t.Errorf("replaced key: %v %v", st.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// A file that cannot be written undoes the ones before it.
	files := []File{{Path: filepath.Join(dir, "first.key"), Data: []byte("k"), Mode: KeyMode}, {Path: filepath.Join(dir, "no", "such.pem"), Data: []byte("c"), Mode: CertMode}}
	for _, force := range []bool{false, true} {
		if err := WriteFiles(files, force); err == nil || !strings.Contains(err.Error(), "such.pem") {
			t.Errorf("force %v: %v", force, err)
		}
		if _, err := os.Stat(files[0].Path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("force %v: first.key left behind", force)
		}
	}
}

func TestLoadCA(t *testing.T) {
	dir, ca, _, _ := writeSet(t)
	got, err := LoadCA(filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Cert.Equal(ca.Cert) || !bytes.Equal(got.CertPEM, ca.CertPEM) {
		t.Error("loaded another certificate")
	}
	// It signs: a certificate made with the loaded CA verifies against the original.
	cl, err := NewClient(rand.Reader, now, got, "carol@example.org", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(cl.Cert, ca.Cert, now, x509.ExtKeyUsageClientAuth); err != nil {
		t.Error(err)
	}

	// A SEC1 key does too.
	sec1, err := x509.MarshalECPrivateKey(ca.Key.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	sec1Path := filepath.Join(dir, "sec1.key")
	if err := os.WriteFile(sec1Path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(filepath.Join(dir, CACertFile), sec1Path); err != nil {
		t.Errorf("SEC1 key: %v", err)
	}

	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	caPem, caKey := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	gwPem, gwKey := filepath.Join(dir, "gw.example.org.pem"), filepath.Join(dir, "gw.example.org.key")
	for _, tc := range []struct{ certFile, keyFile, frag string }{
		{filepath.Join(dir, "none.pem"), caKey, "none.pem: no such file"},
		{caPem, filepath.Join(dir, "none.key"), "none.key: no such file"},
		{garbage, caKey, garbage + ": no PEM CERTIFICATE block"},
		{caPem, garbage, garbage + ": no PEM private key block"},
		{gwPem, gwKey, gwPem + `: "CN=gw.example.org" is not a CA certificate`},
		{caPem, gwKey, gwKey + ": not the private key of " + caPem},
	} {
		if _, err := LoadCA(tc.certFile, tc.keyFile); err == nil || !strings.Contains(err.Error(), tc.frag) {
			t.Errorf("LoadCA(%s, %s): %v, want %q", tc.certFile, tc.keyFile, err, tc.frag)
		}
	}
}

func TestGateways(t *testing.T) {
	dir, ca, _, _ := writeSet(t)
	other := newCA(t, 1)
	stranger, err := NewGateway(rand.Reader, now, other, "stranger.example.org", nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	second, err := NewGateway(rand.Reader, now, ca, "198.51.100.9", nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFiles(append(stranger.Files(dir, "stranger.example.org"), second.Files(dir, "198.51.100.9")...), false); err != nil {
		t.Fatal(err)
	}
	if got := Gateways(dir, ca.Cert); !slices.Equal(got, []string{"198.51.100.9", "gw.example.org"}) {
		t.Errorf("gateways %v", got)
	}
	if got := Gateways(t.TempDir(), ca.Cert); len(got) != 0 {
		t.Errorf("gateways of an empty folder: %v", got)
	}
}
