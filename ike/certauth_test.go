package ike

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/cert"
	"github.com/mobikevpn/mobikevpn/wire"
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
		IsCA:    true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
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
			if len(gw.e.store.byID) != 0 || len(gw.outbound) != 0 || len(cl.outbound) != 0 {
				t.Errorf("state left behind: gateway %d SAs", len(gw.e.store.byID))
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

// leafFrom issues a leaf credential from tmpl (its subject gets the test organisation).
func (p *testPKI) leafFrom(t testing.TB, kind string, tmpl *x509.Certificate) *cert.Credential {
	k := newKey(t, kind)
	tmpl.Subject.Organization = []string{"mobikevpn test"}
	if tmpl.KeyUsage == 0 {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	return &cert.Credential{Chain: []*x509.Certificate{issue(t, tmpl, p.ca, k.Public(), p.caKey)}, Key: k}
}

// crl is a CRL of p's CA listing revoked, valid from thisUpdate to nextUpdate.
func (p *testPKI) crl(t testing.TB, number int64, thisUpdate, nextUpdate time.Time, revoked ...*x509.Certificate) *x509.RevocationList {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: thisUpdate, ReasonCode: 1})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, p.ca, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	l, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// captureLog sends cfg's log to the returned buffer.
func captureLog(cfg *Config) *bytes.Buffer {
	var b bytes.Buffer
	cfg.Logger = slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return &b
}

// wantRefused runs n until ep's initiation failed and checks that it failed with
// AUTHENTICATION_FAILED and that neither end kept an IKE SA or ESP state.
func wantRefused(t *testing.T, n *testNet, gw, cl *endpoint) {
	t.Helper()
	n.run(time.Minute, func() bool { return cl.hasEvent(EventFailed) != nil })
	if ev := cl.hasEvent(EventFailed); ev == nil || !strings.HasPrefix(ev.Reason, "AUTHENTICATION_FAILED") {
		t.Fatalf("want AUTHENTICATION_FAILED on the client; client events %v, gateway events %v", cl.events, gw.events)
	}
	n.run(time.Minute, nil)
	if cl.hasEvent(EventEstablished) != nil {
		t.Errorf("the client reported the tunnel established: %v", cl.events)
	}
	if len(gw.e.store.byID) != 0 || len(cl.e.store.byID) != 0 || len(gw.outbound) != 0 || len(cl.outbound) != 0 {
		t.Errorf("state left behind: gateway %d SAs, client %d SAs, ESP out %d/%d", len(gw.e.store.byID), len(cl.e.store.byID), len(gw.outbound), len(cl.outbound))
	}
}

// TestCertGatewayIdentity (issue 11): a client authenticating its gateway by certificate
// accepts only the gateway it names (remote id), or, naming none, the one whose
// certificate carries the address it contacted (remote_addrs) as an IP subjectAltName.
// Another certificate of the same CA (any other client's, say) is refused with
// AUTHENTICATION_FAILED and no SA, unless the connection opts out explicitly
// (RemotePolicy.AnyID, accept_any_id in the configuration).
func TestCertGatewayIdentity(t *testing.T) {
	p := newPKI(t, "mobikevpn test CA")
	// The real gateway: its DN, its name and its address (gwAddr) are in its certificate.
	gateway := p.leaf(t, "ecdsa", "gw.example.org", []string{"gw.example.org"}, nil, []netip.Addr{gwAddr})
	// Certificates of the same CA that are not the gateway's: another client's, one
	// naming another host, one with the gateway's name but not its address.
	mallory := p.leaf(t, "ecdsa", "mallory", nil, []string{"mallory@example.org"}, nil)
	other := p.leaf(t, "ecdsa", "other.example.org", []string{"other.example.org"}, nil, []netip.Addr{netip.MustParseAddr("198.51.100.99")})
	nameOnly := p.leaf(t, "ed25519", "gw.example.org", []string{"gw.example.org"}, nil, nil)
	gwDN := "O=mobikevpn test, CN=gw.example.org" // RDNs in the certificate's order
	for _, tc := range []struct {
		name     string
		gwCred   *cert.Credential
		gwID     string // the gateway's local id ("" = its certificate's subject)
		remoteID string // the client's remote id
		anyID    bool
		ok       bool
	}{
		// The client names the gateway (FQDN, DN, IP): the right certificate passes,
		// the others of the same CA do not.
		{"named fqdn/gateway", gateway, "", "gw.example.org", false, true},
		{"named dn/gateway", gateway, "", gwDN, false, true},
		{"named ip/gateway", gateway, "", gwAddr.String(), false, true},
		{"named fqdn/another client's certificate", mallory, "", "gw.example.org", false, false},
		{"named fqdn/another host's certificate", other, "other.example.org", "gw.example.org", false, false},
		{"named dn/another host's certificate", other, "", gwDN, false, false},
		{"named ip/certificate without the address", nameOnly, "gw.example.org", gwAddr.String(), false, false},
		// No remote id (%any, as the configuration leaves it): the gateway's address
		// must be in its certificate. The gateway may present any identity of it.
		{"default/gateway presenting its DN", gateway, "", "%any", false, true},
		{"default/gateway presenting its name", gateway, "gw.example.org", "", false, true},
		{"default/another client's certificate", mallory, "", "%any", false, false},
		{"default/another host's certificate", other, "", "%any", false, false},
		{"default/another host's certificate presenting its address", other, "198.51.100.99", "%any", false, false},
		{"default/the gateway's name without its address", nameOnly, "gw.example.org", "%any", false, false},
		// The explicit opt-out accepts any certificate of the CA: the old behaviour.
		{"accept any id/another client's certificate", mallory, "", "%any", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var clLog *bytes.Buffer
			n, gw, cl := certPair(t, p, "ecdsa", "ecdsa", func(g, c *Config) {
				g.Connections[0].LocalCred, g.Connections[0].LocalID = tc.gwCred, tc.gwID
				c.Connections[0].RemoteID = tc.remoteID
				c.Connections[0].RemotePolicy.AnyID = tc.anyID
				clLog = captureLog(c)
			})
			if !tc.ok {
				wantRefused(t, n, gw, cl)
				if !strings.Contains(clLog.String(), "the peer's authentication failed") {
					t.Errorf("the client's log does not say why:\n%s", clLog)
				}
				t.Logf("client: %s", grepLog(clLog.String(), "the peer's authentication failed"))
				return
			}
			if !n.run(time.Minute, established(gw, cl)) {
				t.Fatalf("not established: client %v gateway %v\n%s", cl.events, gw.events, clLog)
			}
			checkChildPair(t, gw, cl)
			// The client names the gateway in IDr only when configured to: a default
			// identity is checked, not sent (the gateway may present another one of its
			// certificate, and a strongSwan gateway looks up its configuration by IDr).
			for _, m := range decrypted(t, cl, gw) {
				if m.Header.Exchange != wire.IKE_AUTH {
					continue
				}
				idr := wire.FindID(m.Payloads, false)
				if anyID(tc.remoteID) != (idr == nil) {
					t.Errorf("remote id %q: IDr sent: %v", tc.remoteID, idr)
				}
			}
		})
	}
}

func grepLog(s, sub string) string {
	for _, ln := range strings.Split(s, "\n") {
		if strings.Contains(ln, sub) {
			return ln
		}
	}
	return ""
}

// TestCertGatewaySideUnchanged: a gateway (no remote addresses, remote id %any) still
// authenticates any client its CA vouches for, whatever the client's identity.
func TestCertGatewaySideUnchanged(t *testing.T) {
	p := newPKI(t, "mobikevpn test CA")
	for i, cl := range []*cert.Credential{
		p.leaf(t, "ecdsa", "bob", nil, []string{"bob@example.org"}, nil),
		p.leaf(t, "ecdsa", "host.example.org", []string{"host.example.org"}, nil, nil),
	} {
		n, gw, c := certPair(t, p, "ecdsa", "ecdsa", func(g, c *Config) {
			c.Connections[0].LocalCred = cl
			c.Connections[0].LocalID = []string{"bob@example.org", ""}[i]
		})
		if !n.run(time.Minute, established(gw, c)) {
			t.Fatalf("client %d not established: %v %v", i, c.events, gw.events)
		}
	}
}

var (
	oidServerAuth = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}
	oidClientAuth = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}
	oidIPsecIKE   = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 17}
)

// TestCertEKU: with required extended key usages (RemotePolicy.EKUs, eku in the
// configuration) the peer's certificate must carry one of them; without, any or none
// is fine (the default, as strongSwan's).
func TestCertEKU(t *testing.T) {
	p := newPKI(t, "mobikevpn test CA")
	gwCert := func(ekus []x509.ExtKeyUsage, unknown ...asn1.ObjectIdentifier) *cert.Credential {
		return p.leafFrom(t, "ecdsa", &x509.Certificate{
			Subject: pkix.Name{CommonName: "gw.example.org"}, DNSNames: []string{"gw.example.org"},
			IPAddresses: []net.IP{gwAddr.AsSlice()}, ExtKeyUsage: ekus, UnknownExtKeyUsage: unknown,
		})
	}
	serverAuth := gwCert([]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth})
	ipsecIKE := gwCert(nil, oidIPsecIKE)
	clientOnly := gwCert([]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	none := gwCert(nil)
	both := []asn1.ObjectIdentifier{oidServerAuth, oidIPsecIKE}
	for _, tc := range []struct {
		name   string
		gwCred *cert.Credential
		want   []asn1.ObjectIdentifier
		ok     bool
	}{
		{"not required/no EKU", none, nil, true},
		{"not required/clientAuth only", clientOnly, nil, true},
		{"required/serverAuth", serverAuth, both, true},
		{"required/ipsecIKE", ipsecIKE, both, true},
		{"required/no EKU extension", none, both, false},
		{"required/clientAuth only", clientOnly, both, false},
		{"required ipsecIKE/serverAuth only", serverAuth, []asn1.ObjectIdentifier{oidIPsecIKE}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var clLog *bytes.Buffer
			n, gw, cl := certPair(t, p, "ecdsa", "ecdsa", func(g, c *Config) {
				g.Connections[0].LocalCred = tc.gwCred
				c.Connections[0].RemotePolicy.EKUs = tc.want
				clLog = captureLog(c)
			})
			if tc.ok {
				if !n.run(time.Minute, established(gw, cl)) {
					t.Fatalf("not established: %v %v\n%s", cl.events, gw.events, clLog)
				}
				return
			}
			wantRefused(t, n, gw, cl)
			if ln := grepLog(clLog.String(), "the peer's authentication failed"); !strings.Contains(ln, "extended key usage") {
				t.Errorf("the client's log does not name the extended key usage: %q", ln)
			}
		})
	}
	// The gateway requires clientAuth of its clients: a client certificate without it
	// is refused by the gateway (AUTHENTICATION_FAILED in its IKE_AUTH response).
	t.Run("gateway requires clientAuth", func(t *testing.T) {
		for _, ekus := range [][]x509.ExtKeyUsage{{x509.ExtKeyUsageClientAuth}, {x509.ExtKeyUsageServerAuth}} {
			clCred := p.leafFrom(t, "ecdsa", &x509.Certificate{Subject: pkix.Name{CommonName: "alice"},
				EmailAddresses: []string{"alice@example.org"}, ExtKeyUsage: ekus})
			n, gw, cl := certPair(t, p, "ecdsa", "ecdsa", func(g, c *Config) {
				c.Connections[0].LocalCred = clCred
				g.Connections[0].RemotePolicy.EKUs = []asn1.ObjectIdentifier{oidClientAuth}
			})
			if ekus[0] == x509.ExtKeyUsageClientAuth {
				if !n.run(time.Minute, established(gw, cl)) {
					t.Fatalf("clientAuth client not established: %v %v", cl.events, gw.events)
				}
				continue
			}
			wantRefused(t, n, gw, cl)
			if gw.hasEvent(EventEstablished) != nil {
				t.Errorf("the gateway established an SA with a serverAuth-only client")
			}
		}
	})
}

// TestCertRevocation: with CRLs (RemotePolicy.CRLs, crls in the configuration) a
// certificate of the peer's chain listed as revoked in the newest CRL of its issuer is
// refused with AUTHENTICATION_FAILED; an unlisted one is accepted. A CRL past its
// nextUpdate still revokes what it lists; what it does not list is accepted with a
// warning. A CRL that does not verify with the issuer's key is ignored, with a warning.
func TestCertRevocation(t *testing.T) {
	p := newPKI(t, "mobikevpn test CA")
	now := time.Now()
	gateway := p.leaf(t, "ecdsa", "gw.example.org", []string{"gw.example.org"}, nil, []netip.Addr{gwAddr})
	bystander := p.leaf(t, "ecdsa", "old.example.org", []string{"old.example.org"}, nil, nil)
	// An intermediate CA (revoked by the root in one case) and a gateway under it.
	ik := newKey(t, "ecdsa")
	inter := issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "intermediate"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, p.ca, ik.Public(), p.caKey)
	ip := &testPKI{ca: inter, caKey: ik}
	viaInter := ip.leaf(t, "ecdsa", "gw.example.org", []string{"gw.example.org"}, nil, []netip.Addr{gwAddr})
	viaInter.Chain = append(viaInter.Chain, inter)
	// A CA with the same name as the trusted one, another key: its CRL must not count.
	forger := &testPKI{caKey: newKey(t, "ecdsa384")}
	forger.ca = issue(t, &x509.Certificate{Subject: p.ca.Subject, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, nil, forger.caKey.Public(), forger.caKey)

	current := func(revoked ...*x509.Certificate) *x509.RevocationList {
		return p.crl(t, 2, now.Add(-time.Hour), now.Add(24*time.Hour), revoked...)
	}
	expired := func(revoked ...*x509.Certificate) *x509.RevocationList {
		return p.crl(t, 1, now.Add(-48*time.Hour), now.Add(-time.Hour), revoked...)
	}
	for _, tc := range []struct {
		name   string
		gwCred *cert.Credential
		crls   []*x509.RevocationList
		ok     bool
		warn   string // a warning the client must log
	}{
		{"no CRL", gateway, nil, true, ""},
		{"not revoked", gateway, []*x509.RevocationList{current(bystander.Chain[0])}, true, ""},
		{"revoked", gateway, []*x509.RevocationList{current(bystander.Chain[0], gateway.Chain[0])}, false, ""},
		{"intermediate revoked", viaInter, []*x509.RevocationList{current(inter)}, false, ""},
		{"leaf under an intermediate revoked by the intermediate's CRL", viaInter,
			[]*x509.RevocationList{current(), ip.crl(t, 7, now.Add(-time.Hour), now.Add(time.Hour), viaInter.Chain[0])}, false, ""},
		{"intermediate not revoked", viaInter, []*x509.RevocationList{current(bystander.Chain[0])}, true, ""},
		{"revoked in an expired CRL", gateway, []*x509.RevocationList{expired(gateway.Chain[0])}, false, ""},
		{"not listed in an expired CRL", gateway, []*x509.RevocationList{expired(bystander.Chain[0])}, true, "expired"},
		// The newest CRL of an issuer counts: an older one listing the gateway (a hold
		// since released) does not.
		{"listed in an older CRL, not in the newest", gateway, []*x509.RevocationList{expired(gateway.Chain[0]), current()}, true, ""},
		{"forged CRL", gateway, []*x509.RevocationList{forger.crl(t, 9, now.Add(-time.Hour), now.Add(time.Hour), gateway.Chain[0])}, true, "does not verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var clLog *bytes.Buffer
			n, gw, cl := certPair(t, p, "ecdsa", "ecdsa", func(g, c *Config) {
				g.Connections[0].LocalCred = tc.gwCred
				c.Connections[0].RemotePolicy.CRLs = tc.crls
				clLog = captureLog(c)
			})
			if tc.ok {
				if !n.run(time.Minute, established(gw, cl)) {
					t.Fatalf("not established: %v %v\n%s", cl.events, gw.events, clLog)
				}
				if tc.warn != "" && !strings.Contains(grepLog(clLog.String(), "level=WARN"), tc.warn) {
					t.Errorf("no warning about %q in the client's log:\n%s", tc.warn, clLog)
				}
				return
			}
			wantRefused(t, n, gw, cl)
			if ln := grepLog(clLog.String(), "the peer's authentication failed"); !strings.Contains(ln, "revoked") {
				t.Errorf("the client's log does not say the certificate is revoked: %q", ln)
			}
		})
	}
	// The gateway checks its clients against its CRLs the same way.
	t.Run("gateway refuses a revoked client", func(t *testing.T) {
		clCred := p.leaf(t, "ecdsa", "alice", nil, []string{"alice@example.org"}, nil)
		n, gw, cl := certPair(t, p, "ecdsa", "ecdsa", func(g, c *Config) {
			c.Connections[0].LocalCred = clCred
			g.Connections[0].RemotePolicy.CRLs = []*x509.RevocationList{current(clCred.Chain[0])}
		})
		wantRefused(t, n, gw, cl)
		if gw.hasEvent(EventEstablished) != nil {
			t.Errorf("the gateway established an SA with a revoked client")
		}
	})
}
