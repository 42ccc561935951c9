package ike

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/ike/cert"
	"github.com/mobikevpn/mobikevpn/ike/wire"
)

// testPKI makes a CA, optionally an intermediate, and leaves.
type testPKI struct {
	ca    *x509.Certificate
	caKey crypto.Signer
}

func newKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	var k crypto.Signer
	var err error
	switch kind {
	case "rsa":
		k, err = rsa.GenerateKey(rand.Reader, 3072)
	case "ecdsa":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ecdsa384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var serial int64 = 100

func issue(t testing.TB, tmpl *x509.Certificate, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	serial++
	tmpl.SerialNumber = big.NewInt(serial)
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newPKI(t testing.TB, name string) *testPKI {
	k := newKey(t, "ecdsa384")
	ca := issue(t, &x509.Certificate{
		Subject: pkix.Name{Organization: []string{"mobikevpn test"}, CommonName: name},
		IsCA:    true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, nil, k.Public(), k)
	return &testPKI{ca: ca, caKey: k}
}

// leaf returns a credential for cn with the given SANs.
func (p *testPKI) leaf(t testing.TB, kind, cn string, dns, emails []string, ips []netip.Addr) *cert.Credential {
	k := newKey(t, kind)
	tmpl := &x509.Certificate{
		Subject:  pkix.Name{Organization: []string{"mobikevpn test"}, CommonName: cn},
		DNSNames: dns, EmailAddresses: emails, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	for _, a := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, a.AsSlice())
	}
	return &cert.Credential{Chain: []*x509.Certificate{issue(t, tmpl, p.ca, k.Public(), p.caKey)}, Key: k}
}

// certPair sets both ends to certificates from pki (gwKind, clKind keys).
func certPair(t *testing.T, p *testPKI, gwKind, clKind string, mutate func(g, c *Config)) (*testNet, *endpoint, *endpoint) {
	gwCred := p.leaf(t, gwKind, "gw.example.org", []string{"gw.example.org"}, nil, []netip.Addr{gwAddr})
	clCred := p.leaf(t, clKind, "alice", nil, []string{"alice@example.org"}, nil)
	return pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		gc, cc := g.Connections[0], c.Connections[0]
		gc.LocalAuth, gc.RemoteAuth, gc.LocalCred, gc.RemoteCAs = AuthPubkey, AuthPubkey, gwCred, []*x509.Certificate{p.ca}
		cc.LocalAuth, cc.RemoteAuth, cc.LocalCred, cc.RemoteCAs = AuthPubkey, AuthPubkey, clCred, []*x509.Certificate{p.ca}
		gc.LocalID = "" // the certificate's subject
		g.PSK, c.PSK = nil, nil
		if mutate != nil {
			mutate(g, c)
		}
	})
}

func TestCertificateAuthentication(t *testing.T) {
	p := newPKI(t, "mobikevpn test CA")
	for _, kinds := range [][2]string{{"ecdsa", "ecdsa"}, {"rsa", "ed25519"}, {"ed25519", "rsa"}} {
		t.Run(kinds[0]+"-"+kinds[1], func(t *testing.T) {
			n, gw, cl := certPair(t, p, kinds[0], kinds[1], nil)
			if !n.run(time.Minute, established(gw, cl)) {
				t.Fatalf("not established: client %v gateway %v", cl.events, gw.events)
			}
			checkChildPair(t, gw, cl)
			// The gateway presents its subject DN; the client its email.
			if got := cl.e.Status(n.now)[0].RemoteID; !strings.Contains(got, "CN=gw.example.org") {
				t.Errorf("client sees the gateway as %q", got)
			}
			if got := gw.e.Status(n.now)[0].RemoteID; got != "alice@example.org" {
				t.Errorf("gateway sees the client as %q", got)
			}
			// RFC 7427 was used (both sent SIGNATURE_HASH_ALGORITHMS).
			for _, m := range decrypted(t, cl, gw) {
				if a := wire.Find[*wire.Auth](m.Payloads); a != nil && a.Method != wire.AuthDigitalSignature {
					t.Errorf("client AUTH method %v", a.Method)
				}
			}
		})
	}
}

func TestCertificateRefusals(t *testing.T) {
	p := newPKI(t, "mobikevpn test CA")
	other := newPKI(t, "another CA")
	cases := []struct {
		name   string
		mutate func(g, c *Config)
	}{
		{"unknown CA", func(g, c *Config) { g.Connections[0].RemoteCAs = []*x509.Certificate{other.ca} }},
		{"identity not in the certificate", func(g, c *Config) {
			c.Connections[0].LocalID = "mallory@example.org"
		}},
		{"gateway identity mismatch", func(g, c *Config) {
			c.Connections[0].RemoteID = "CN=other.example.org, O=mobikevpn test"
		}},
		{"certificate from another CA", func(g, c *Config) {
			c.Connections[0].LocalCred = other.leaf(t, "ecdsa", "alice", nil, []string{"alice@example.org"}, nil)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, gw, cl := certPair(t, p, "ecdsa", "ecdsa", tc.mutate)
			n.run(time.Minute, func() bool { return cl.hasEvent(EventFailed) != nil })
			ev := cl.hasEvent(EventFailed)
			if ev == nil || !strings.HasPrefix(ev.Reason, "AUTHENTICATION_FAILED") {
				t.Fatalf("client events %v", cl.events)
			}
			n.run(time.Minute, nil)
			if len(gw.e.byID) != 0 || len(gw.outbound) != 0 || len(cl.outbound) != 0 {
				t.Errorf("state left behind: gateway %d SAs", len(gw.e.byID))
			}
		})
	}
}

func TestCertificateChainFragmented(t *testing.T) {
	// An RSA-3072 leaf under an intermediate: IKE_AUTH needs fragmentation to cross a
	// path with 1280-byte datagrams.
	p := newPKI(t, "root")
	ik := newKey(t, "ecdsa")
	inter := issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "intermediate"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	}, p.ca, ik.Public(), p.caKey)
	ip := &testPKI{ca: inter, caKey: ik}
	gwCred := ip.leaf(t, "rsa", "gw.example.org", []string{"gw.example.org"}, nil, nil)
	gwCred.Chain = append(gwCred.Chain, inter)
	n, gw, cl := certPair(t, p, "ecdsa", "rsa", func(g, c *Config) {
		g.Connections[0].LocalCred = gwCred
		g.FragmentSize, c.FragmentSize = 1280, 1280
	})
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatalf("not established: %v %v", cl.events, gw.events)
	}
	gf, _ := countFragments(t, gw)
	cf, _ := countFragments(t, cl)
	if gf < 2 || cf < 2 {
		t.Errorf("fragments: gateway %d client %d", gf, cf)
	}
	for _, ep := range []*endpoint{gw, cl} {
		for _, d := range ep.sent {
			if len(d.data)+20+8+4 > 1280 {
				t.Errorf("%s sent %d octets", ep.name, len(d.data))
			}
		}
	}
}

func TestPSKAndCertificateConnectionsSideBySide(t *testing.T) {
	// A gateway with a PSK connection and a certificate connection picks by the AUTH
	// method the client uses.
	p := newPKI(t, "mobikevpn test CA")
	gwCred := p.leaf(t, "ecdsa", "gw.example.org", []string{"gw.example.org"}, nil, nil)
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		pk := *g.Connections[0]
		pk.Name = "certs"
		pk.LocalAuth, pk.RemoteAuth, pk.LocalCred, pk.RemoteCAs = AuthPubkey, AuthPubkey, gwCred, []*x509.Certificate{p.ca}
		pk.LocalID = ""
		g.Connections = append([]*Conn{&pk}, g.Connections...)
	})
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatalf("PSK client not established: %v", cl.events)
	}
	if got := gw.e.Status(n.now)[0].Name; got != "rw" {
		t.Errorf("PSK client landed on connection %q", got)
	}
}
