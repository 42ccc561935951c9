package cert

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseEKU(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"serverAuth", "1.3.6.1.5.5.7.3.1"},
		{"clientauth", "1.3.6.1.5.5.7.3.2"},
		{"ipsecIKE", "1.3.6.1.5.5.7.3.17"},
		{"ikeIntermediate", "1.3.6.1.5.5.8.2.2"},
		{"anyExtendedKeyUsage", "2.5.29.37.0"},
		{"1.3.6.1.5.5.7.3.17", "1.3.6.1.5.5.7.3.17"},
		{"1.2.3", "1.2.3"},
	} {
		oid, err := ParseEKU(tc.in)
		if err != nil || oid.String() != tc.want {
			t.Errorf("ParseEKU(%q) = %v, %v; want %s", tc.in, oid, err, tc.want)
		}
	}
	for _, bad := range []string{"", "server", "1", "1..2", "1.2.x", "3.1", "1.2.3456789012", "-1.2"} {
		if oid, err := ParseEKU(bad); err == nil {
			t.Errorf("ParseEKU(%q) = %v, want an error", bad, oid)
		} else if !strings.Contains(err.Error(), "serverAuth, clientAuth, ipsecIKE") {
			t.Errorf("ParseEKU(%q): %v does not list the names", bad, err)
		}
	}
	if n := EKUName(asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 17}); n != "ipsecIKE" {
		t.Errorf("EKUName = %s", n)
	}
	if n := EKUName(asn1.ObjectIdentifier{1, 2, 3}); n != "1.2.3" {
		t.Errorf("EKUName = %s", n)
	}
}

// makeCRL is a CRL signed by ca/key listing revoked, numbered n.
func makeCRL(t testing.TB, ca *x509.Certificate, key crypto.Signer, n int64, this, next time.Time, exts []pkix.Extension, revoked ...*x509.Certificate) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(n), ThisUpdate: this, NextUpdate: next, ExtraExtensions: exts}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: this})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestLoadCRLs(t *testing.T) {
	ca, caKey := testCA(t)
	leaf := issue(t, leafTemplate("gw.example.org"), testKeys().p256.Public(), ca, caKey)
	this, next := testNow.Add(-time.Hour), testNow.Add(time.Hour)
	one := makeCRL(t, ca, caKey, 1, this, next, nil, leaf)
	two := makeCRL(t, ca, caKey, 2, this, next, nil)
	delta := makeCRL(t, ca, caKey, 3, this, next, []pkix.Extension{{Id: oidDeltaCRLIndicator, Value: []byte{2, 1, 1}}})
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pemOf := func(ders ...[]byte) []byte {
		var out []byte
		for _, d := range ders {
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: d})...)
		}
		return out
	}
	crls, err := LoadCRLs([]string{write("a.der", one), write("b.pem", pemOf(one, two))})
	if err != nil || len(crls) != 3 || crls[0].Number.Int64() != 1 || crls[2].Number.Int64() != 2 || len(crls[0].RevokedCertificateEntries) != 1 {
		t.Fatalf("LoadCRLs: %v, %d CRLs", err, len(crls))
	}
	for _, tc := range []struct {
		name, file string
		data       []byte
		want       string
	}{
		{"delta", "d.pem", pemOf(delta), "is a delta CRL"},
		{"certificate", "c.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}), `no PEM "X509 CRL" block`},
		{"garbage", "g.der", []byte("garbage"), "neither a PEM nor a DER CRL"},
		{"empty", "e.pem", nil, "empty file"},
		{"bad PEM CRL", "x.pem", pemOf([]byte{0x30, 0}), "CRL 1"},
	} {
		_, err := LoadCRLs([]string{write(tc.file, tc.data)})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.file) {
			t.Errorf("%s: %v, want %q naming the file", tc.name, err, tc.want)
		}
	}
	if _, err := LoadCRLs([]string{filepath.Join(dir, "missing.pem")}); err == nil {
		t.Error("a missing file loaded")
	}
}

// TestValidatePolicy: Validator's extended key usage and revocation checks, at the fixed
// test clock.
func TestValidatePolicy(t *testing.T) {
	k := testKeys()
	ca, caKey := testCA(t)
	interTmpl := caTemplate("intermediate CA")
	inter := issue(t, interTmpl, k.p256b.Public(), ca, caKey)
	ekuTmpl := func(cn string, ekus []x509.ExtKeyUsage, unknown ...asn1.ObjectIdentifier) *x509.Certificate {
		tm := leafTemplate(cn)
		tm.ExtKeyUsage, tm.UnknownExtKeyUsage = ekus, unknown
		return tm
	}
	plain := issue(t, leafTemplate("gw.example.org"), k.p256.Public(), ca, caKey)
	server := issue(t, ekuTmpl("server.example.org", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}), k.p256.Public(), ca, caKey)
	ike := issue(t, ekuTmpl("ike.example.org", nil, asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 17}), k.p256.Public(), ca, caKey)
	anyEKU := issue(t, ekuTmpl("any.example.org", []x509.ExtKeyUsage{x509.ExtKeyUsageAny}), k.p256.Public(), ca, caKey)
	client := issue(t, ekuTmpl("client.example.org", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}), k.p256.Public(), ca, caKey)
	viaInter := issue(t, leafTemplate("via.example.org"), k.ed.Public(), inter, k.p256b)
	other := issue(t, leafTemplate("other.example.org"), k.p256.Public(), ca, caKey)
	oid := func(s string) asn1.ObjectIdentifier {
		o, err := ParseEKU(s)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	crl := func(issuer *x509.Certificate, key crypto.Signer, n int64, this, next time.Time, revoked ...*x509.Certificate) *x509.RevocationList {
		l, err := x509.ParseRevocationList(makeCRL(t, issuer, key, n, this, next, nil, revoked...))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	cur := func(revoked ...*x509.Certificate) *x509.RevocationList {
		return crl(ca, caKey, 5, testNow.Add(-time.Hour), testNow.Add(time.Hour), revoked...)
	}
	old := func(revoked ...*x509.Certificate) *x509.RevocationList {
		return crl(ca, caKey, 4, testNow.Add(-48*time.Hour), testNow.Add(-24*time.Hour), revoked...)
	}
	forgedCA := issue(t, caTemplate("mobikevpn test Go CA"), k.ca2Key.Public(), nil, k.ca2Key)
	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
		ekus  []string
		crls  []*x509.RevocationList
		err   string // "" accepted
		warn  string // a warning expected
	}{
		{"no EKU required, none present", []*x509.Certificate{plain}, nil, nil, "", ""},
		{"serverAuth required and present", []*x509.Certificate{server}, []string{"serverAuth", "ipsecIKE"}, nil, "", ""},
		{"ipsecIKE required and present", []*x509.Certificate{ike}, []string{"serverAuth", "ipsecIKE"}, nil, "", ""},
		{"EKU required, no extension", []*x509.Certificate{plain}, []string{"serverAuth"}, nil, "has no extended key usage extension; the connection requires one of serverAuth", ""},
		{"EKU required, another", []*x509.Certificate{client}, []string{"serverAuth", "ipsecIKE"}, nil, "has extended key usages clientAuth; the connection requires one of serverAuth, ipsecIKE", ""},
		{"anyExtendedKeyUsage does not stand for serverAuth", []*x509.Certificate{anyEKU}, []string{"serverAuth"}, nil, "anyExtendedKeyUsage", ""},
		{"anyExtendedKeyUsage when listed", []*x509.Certificate{anyEKU}, []string{"serverAuth", "anyExtendedKeyUsage"}, nil, "", ""},
		{"not revoked", []*x509.Certificate{plain}, nil, []*x509.RevocationList{cur(other)}, "", ""},
		{"revoked", []*x509.Certificate{plain}, nil, []*x509.RevocationList{cur(other, plain)}, "is revoked", ""},
		{"revoked intermediate", []*x509.Certificate{viaInter, inter}, nil, []*x509.RevocationList{cur(inter)}, `certificate "CN=intermediate CA,O=mobikevpn test,C=CH"`, ""},
		{"leaf revoked by the intermediate", []*x509.Certificate{viaInter, inter}, nil,
			[]*x509.RevocationList{crl(inter, k.p256b, 1, testNow.Add(-time.Hour), testNow.Add(time.Hour), viaInter)}, "is revoked", ""},
		{"another issuer's CRL lists the serial", []*x509.Certificate{viaInter, inter}, nil,
			[]*x509.RevocationList{crl(ca, caKey, 1, testNow.Add(-time.Hour), testNow.Add(time.Hour), &x509.Certificate{SerialNumber: viaInter.SerialNumber})}, "", ""},
		{"revoked in an expired CRL", []*x509.Certificate{plain}, nil, []*x509.RevocationList{old(plain)}, "is revoked", ""},
		{"expired CRL, not listed", []*x509.Certificate{plain}, nil, []*x509.RevocationList{old(other)}, "", "expired at 2025-12-31T00:00:00Z"},
		{"the newest CRL counts", []*x509.Certificate{plain}, nil, []*x509.RevocationList{old(plain), cur(other)}, "", ""},
		{"the newest CRL counts, in any order", []*x509.Certificate{plain}, nil, []*x509.RevocationList{cur(plain), old()}, "is revoked", ""},
		{"CRL not yet valid", []*x509.Certificate{plain}, nil, []*x509.RevocationList{crl(ca, caKey, 9, testNow.Add(time.Hour), testNow.Add(2*time.Hour), other)}, "", "not valid before"},
		{"forged CRL ignored", []*x509.Certificate{plain}, nil, []*x509.RevocationList{crl(forgedCA, k.ca2Key, 9, testNow.Add(-time.Hour), testNow.Add(time.Hour), plain)}, "", "does not verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var warnings []string
			v := &Validator{Roots: []*x509.Certificate{ca}, Now: func() time.Time { return testNow }, CRLs: tc.crls,
				Warn: func(s string) { warnings = append(warnings, s) }}
			for _, e := range tc.ekus {
				v.EKUs = append(v.EKUs, oid(e))
			}
			leaf, err := v.Validate(tc.chain)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.err == "" && leaf != tc.chain[0]:
				t.Fatalf("leaf %v", leaf)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want %q", err, tc.err)
			}
			w := strings.Join(warnings, "\n")
			if tc.warn == "" && w != "" || !strings.Contains(w, tc.warn) {
				t.Errorf("warnings %q, want %q", w, tc.warn)
			}
			if err != nil {
				t.Logf("%v", err)
			}
			if w != "" {
				t.Logf("warning: %s", w)
			}
		})
	}
}
