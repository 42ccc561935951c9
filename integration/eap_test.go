package integration

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// EAP (issue 17): EAP-MSCHAPv2 and EAP-TLS between our client and our gateway, and
// against strongSwan in both roles; the Windows-style profile; EAP-RADIUS with a real
// FreeRADIUS. The gateways prove themselves with rsa-gw.pem (CN=gw.example.org, EKU
// serverAuth, subjectAltNames gw.example.org and 198.51.100.1); EAP-TLS clients use
// ecdsa-gw.der.crt (carol@example.org, under an intermediate CA).

const (
	eapUser     = "alice"
	eapPassword = "correct horse battery"
	radiusAddr  = "198.18.9.5" // FreeRADIUS, on the gateway host's loopback
	radiusKey   = "radius shared secret"
)

// mvEAPGateway is our gateway asking its clients for EAP method (remote auth).
func (l *interopLab) mvEAPGateway(t *testing.T, method string, o mvOpts) *proc {
	copyTestdata(t, l.dir, "rsa-gw.pem", "rsa-gw.key", "ecdsa-ca.pem")
	o.Local = `{ auth: pubkey, id: gw.example.org, certs: [rsa-gw.pem], key: rsa-gw.key }`
	switch method {
	case "eap-tls":
		o.Remote = `{ auth: eap-tls, cacerts: [ecdsa-ca.pem] }`
	default:
		o.Remote = fmt.Sprintf(`{ auth: %s }`, method)
	}
	o.Secrets = append(o.Secrets, fmt.Sprintf(`{ type: eap, ids: [%s], secret: %q }`, eapUser, eapPassword))
	return l.mvGateway(o)
}

// mvEAPClient is our client authenticating with EAP method (local auth) with password
// pw (EAP-MSCHAPv2), the gateway known as gwID.
func (l *interopLab) mvEAPClient(t *testing.T, method, pw, gwID string, o mvOpts) *proc {
	copyTestdata(t, l.dir, "rsa-ca.pem", "ecdsa-gw.der.crt", "ecdsa-gw.der", "ecdsa-int.pem")
	switch method {
	case "eap-tls":
		o.Local = `{ auth: eap-tls, eap_id: carol@example.org, certs: [ecdsa-gw.der.crt, ecdsa-int.pem], key: ecdsa-gw.der }`
	default:
		o.Local = fmt.Sprintf(`{ auth: eap-mschapv2, eap_id: %s }`, eapUser)
		o.Secrets = append(o.Secrets, fmt.Sprintf(`{ type: eap, ids: [%s], secret: %q }`, eapUser, pw))
	}
	o.Remote = fmt.Sprintf(`{ auth: pubkey, id: %q, cacerts: [rsa-ca.pem] }`, gwID)
	return l.mvClient(o)
}

// swEAPGateway is strongSwan as the gateway, asking for EAP method.
func swEAPGateway(t *testing.T, method string) swOpts {
	o := swGatewayOpts(nil, nil)
	o.Files = certFiles(t, "x509/rsa-gw.pem", "rsa/rsa-gw.key", "x509ca/rsa-ca.pem", "x509ca/ecdsa-ca.pem", "x509ca/ecdsa-int.pem")
	o.Conns[0].Local = swAuth{Auth: "pubkey", ID: "gw.example.org", Extra: []string{"certs = rsa-gw.pem"}}
	o.Conns[0].Remote = swAuth{Auth: method, Extra: []string{"eap_id = %any"}}
	o.Secrets = []swSecret{{IDs: []string{eapUser}, PSK: eapPassword, EAP: true}}
	return o
}

// swEAPClient is strongSwan as the client authenticating with EAP method.
func swEAPClient(t *testing.T, method, pw, gwID string) swOpts {
	o := swClientOpts("198.51.100.1", nil, nil)
	o.Files = certFiles(t, "x509ca/rsa-ca.pem", "x509/ecdsa-gw.der.crt", "ecdsa/ecdsa-gw.der", "x509ca/ecdsa-int.pem", "x509ca/ecdsa-ca.pem")
	switch method {
	case "eap-tls":
		o.Conns[0].Local = swAuth{Auth: "eap-tls", ID: "carol@example.org", Extra: []string{"certs = ecdsa-gw.der.crt"}}
	default:
		o.Conns[0].Local = swAuth{Auth: method, ID: eapUser}
		o.Secrets = []swSecret{{IDs: []string{eapUser}, PSK: pw, EAP: true}}
	}
	o.Conns[0].Remote = swAuth{Auth: "pubkey", ID: gwID, Extra: []string{"cacerts = rsa-ca.pem"}}
	return o
}

// mvEAPTraffic checks our client's SA: established, with a virtual IP from prefix,
// pings both ways through it.
func (l *interopLab) mvEAPTraffic(t *testing.T, vipPrefix string) {
	t.Helper()
	sa := mvSA(t, l.clSock)
	if sa == nil {
		t.Fatal("the client has no IKE SA")
	}
	vips, _ := sa["virtual_ips"].([]any)
	if len(vips) == 0 || !strings.HasPrefix(fmt.Sprint(vips[0]), vipPrefix) {
		t.Fatalf("client virtual IPs %v, want one from %s0/24", vips, vipPrefix)
	}
	l.ping(l.cl, "198.18.0.1", 3) // fails the test on any loss
	l.ping(l.gw, fmt.Sprint(vips[0]), 3)
}

// mvGatewaySA checks our gateway's only SA: the peer's identity (the EAP identity).
func mvGatewayPeer(t *testing.T, sock, want string) {
	t.Helper()
	sa := mvSA(t, sock)
	if sa == nil {
		t.Fatal("the gateway has no IKE SA")
	}
	if sa["remote_id"] != want {
		t.Errorf("the gateway sees the client as %v, want %s", sa["remote_id"], want)
	}
}

// eapIdentity is who the gateway sees after EAP with method.
func eapIdentity(method string) string {
	if method == "eap-tls" {
		return "carol@example.org"
	}
	return eapUser
}

func TestEAPMatrix(t *testing.T) {
	for _, method := range []string{"eap-mschapv2", "eap-tls"} {
		t.Run("mv-client/mv-gateway/"+method, func(t *testing.T) {
			l := newInteropLab(t)
			l.mvEAPGateway(t, method, mvOpts{})
			l.mvEAPClient(t, method, eapPassword, "gw.example.org", mvOpts{})
			if out, err := l.mvUp(l.clSock, "home"); err != nil {
				t.Fatalf("mobikevpn up home: %v\n%s", err, out)
			}
			l.mvEAPTraffic(t, "198.18.100.")
			mvGatewayPeer(t, l.gwSock, eapIdentity(method))
		})
		t.Run("mv-client/sw-gateway/"+method, func(t *testing.T) {
			l := newInteropLab(t)
			sw := l.swGateway(swEAPGateway(t, method))
			l.mvEAPClient(t, method, eapPassword, "gw.example.org", mvOpts{})
			if out, err := l.mvUp(l.clSock, "home"); err != nil {
				t.Fatalf("mobikevpn up home: %v\n%s", err, out)
			}
			l.trafficCheck(t, sw, "198.18.200.")
			want := map[string]string{"eap-mschapv2": "EAP_MSCHAPV2", "eap-tls": "EAP_TLS"}[method]
			if log := sw.log(); !strings.Contains(log, "EAP method "+want+" succeeded, MSK established") {
				t.Errorf("strongSwan's log lacks \"%s succeeded\":\n%s", want, grepLines(log, "EAP"))
			}
		})
		t.Run("sw-client/mv-gateway/"+method, func(t *testing.T) {
			l := newInteropLab(t)
			l.mvEAPGateway(t, method, mvOpts{})
			sw := l.swClient(swEAPClient(t, method, eapPassword, "gw.example.org"))
			sw.mustInitiate("home", "net")
			l.trafficCheck(t, sw, "198.18.100.")
			mvGatewayPeer(t, l.gwSock, eapIdentity(method))
		})
	}
}

// TestEAPWindowsProfile: a client as Windows' built-in one is set up (strongSwan plays
// it): EAP-MSCHAPv2, its IKE identity its address, no IDr, AES-CBC with SHA-2, the
// gateway named by its address, which its certificate (EKU serverAuth) carries.
func TestEAPWindowsProfile(t *testing.T) {
	l := newInteropLab(t)
	l.mvEAPGateway(t, "eap-mschapv2", mvOpts{
		Proposals:    []string{"aes256-sha256-modp2048", "aes256-sha256-ecp256"},
		ESPProposals: []string{"aes256-sha256", "aes128-sha256"},
	})
	// Windows names no IDr (strongSwan with id %any neither) and checks that the
	// gateway's certificate is for the name it dialled, with EKU serverAuth.
	gwCert := readCert(t, "rsa-gw.pem")
	if !slices.Contains(gwCert.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.ContainsFunc(gwCert.IPAddresses, func(ip net.IP) bool { return ip.String() == "198.51.100.1" }) {
		t.Fatal("rsa-gw.pem lacks EKU serverAuth or the IP subjectAltName 198.51.100.1")
	}
	o := swEAPClient(t, "eap-mschapv2", eapPassword, "%any")
	o.Conns[0].Proposals = []string{"aes256-sha256-modp2048"}
	o.Conns[0].Children[0].ESPProposals = []string{"aes256-sha256"}
	o.Conns[0].Local = swAuth{Auth: "eap-mschapv2", ID: "192.0.2.10", Extra: []string{"eap_id = " + eapUser}}
	sw := l.swClient(o)
	sw.mustInitiate("home", "net")
	l.trafficCheck(t, sw, "198.18.100.")
	mvGatewayPeer(t, l.gwSock, eapUser)
	if req := grepLines(sw.log(), "generating IKE_AUTH request 1"); req == "" || strings.Contains(req, "IDr") {
		t.Errorf("the client's first IKE_AUTH: %q, want one without IDr", req)
	}
	sa := mvSA(t, l.gwSock)
	if p := fmt.Sprint(sa["proposal"]); !strings.Contains(p, "AES_CBC") && !strings.Contains(strings.ToLower(p), "aes256-sha256") {
		t.Errorf("negotiated %s, want AES-CBC with SHA-256", p)
	}
}

// TestEAPRefused: a wrong password is refused with AUTHENTICATION_FAILED and nothing
// is installed, with our client and with strongSwan's.
func TestEAPRefused(t *testing.T) {
	t.Run("mv-client", func(t *testing.T) {
		l := newInteropLab(t)
		gw := l.mvEAPGateway(t, "eap-mschapv2", mvOpts{})
		l.mvEAPClient(t, "eap-mschapv2", "wrong password", "gw.example.org", mvOpts{})
		out, err := l.mvUp(l.clSock, "home")
		if err == nil {
			t.Fatalf("mobikevpn up succeeded with a wrong password:\n%s", out)
		}
		if !strings.Contains(out, "EAP") {
			t.Errorf("up's error does not name EAP: %s", out)
		}
		if !waitFor(5*time.Second, func() bool { return mvSA(t, l.gwSock) == nil && mvSA(t, l.clSock) == nil }) {
			t.Error("an SA was left")
		}
		if !strings.Contains(gw.output(), "wrong password for user alice") {
			t.Errorf("the gateway's log does not say why:\n%s", grepLines(gw.output(), "EAP"))
		}
		if strings.Contains(gw.output(), eapPassword) {
			t.Error("the gateway logged the password")
		}
		l.noRoutes(t)
	})
	t.Run("sw-client", func(t *testing.T) {
		l := newInteropLab(t)
		l.mvEAPGateway(t, "eap-mschapv2", mvOpts{})
		sw := l.swClient(swEAPClient(t, "eap-mschapv2", "wrong password", "gw.example.org"))
		if out, err := sw.initiate("home", "net"); err == nil && strings.Contains(out, "completed successfully") {
			t.Fatalf("strongSwan connected with a wrong password:\n%s", out)
		}
		// strongSwan does not answer the MSCHAPv2 failure; our gateway frees the
		// conversation with the half-open SA.
		if len(sw.listSAs()) != 0 {
			t.Errorf("strongSwan kept an SA: %+v", sw.listSAs())
		}
	})
}

// noRoutes checks that the client installed no route toward the protected network.
func (l *interopLab) noRoutes(t *testing.T) {
	t.Helper()
	out, _ := exec.Command("ip", "netns", "exec", l.cl, "ip", "route", "show", "table", "all").CombinedOutput()
	if strings.Contains(string(out), "198.18.0.0/24") {
		t.Errorf("a route to the protected network is left:\n%s", out)
	}
}

// TestEAPRadius: our gateway passes EAP-MSCHAPv2 to FreeRADIUS: a user accepted (our
// client and strongSwan's), a user rejected, and the server down (the client refused
// after the retries, with a log line that says so).
func TestEAPRadius(t *testing.T) {
	radius := func(l *interopLab, start bool) mvOpts {
		l.exec(l.gw, "ip", "addr", "add", radiusAddr+"/32", "dev", "lo")
		if start {
			startFreeRADIUS(t, l.gw, netip.MustParseAddr(radiusAddr), netip.MustParsePrefix("198.18.9.0/24"), radiusKey,
				map[string]string{eapUser: eapPassword})
		}
		return mvOpts{Top: []string{"radius:", fmt.Sprintf("  servers: [{ addr: %q, secret: %q }]", radiusAddr+":1812", radiusKey),
			"  timeout: 1s", "  tries: 2"}}
	}
	t.Run("accepted", func(t *testing.T) {
		l := newInteropLab(t)
		gw := l.mvEAPGateway(t, "eap-radius", radius(l, true))
		l.mvEAPClient(t, "eap-mschapv2", eapPassword, "gw.example.org", mvOpts{})
		if out, err := l.mvUp(l.clSock, "home"); err != nil {
			t.Fatalf("mobikevpn up home: %v\n%s", err, out)
		}
		l.mvEAPTraffic(t, "198.18.100.")
		mvGatewayPeer(t, l.gwSock, eapUser)
		if !strings.Contains(gw.output(), "EAP-RADIUS: accepted") {
			t.Error("the gateway's log lacks the RADIUS accept")
		}
		if strings.Contains(gw.output(), radiusKey) {
			t.Error("the gateway logged the RADIUS secret")
		}
		if drops, _ := statusJSON(t, l.gwSock)["drops"].(map[string]any); drops == nil || drops["radius_dropped"] != 0.0 {
			t.Errorf("status drops: radius_dropped %v, want 0", drops["radius_dropped"])
		}
	})
	t.Run("accepted/sw-client", func(t *testing.T) {
		l := newInteropLab(t)
		l.mvEAPGateway(t, "eap-radius", radius(l, true))
		sw := l.swClient(swEAPClient(t, "eap-mschapv2", eapPassword, "gw.example.org"))
		sw.mustInitiate("home", "net")
		l.trafficCheck(t, sw, "198.18.100.")
	})
	t.Run("rejected", func(t *testing.T) {
		l := newInteropLab(t)
		gw := l.mvEAPGateway(t, "eap-radius", radius(l, true))
		l.mvEAPClient(t, "eap-mschapv2", "wrong password", "gw.example.org", mvOpts{})
		if out, err := l.mvUp(l.clSock, "home"); err == nil {
			t.Fatalf("mobikevpn up succeeded with a wrong password:\n%s", out)
		}
		if !waitFor(5*time.Second, func() bool { return mvSA(t, l.gwSock) == nil && mvSA(t, l.clSock) == nil }) {
			t.Error("an SA was left")
		}
		if !strings.Contains(gw.output(), "EAP-RADIUS: rejected") {
			t.Errorf("the gateway's log lacks the RADIUS reject:\n%s", grepLines(gw.output(), "EAP"))
		}
	})
	t.Run("server down", func(t *testing.T) {
		l := newInteropLab(t)
		gw := l.mvEAPGateway(t, "eap-radius", radius(l, false))
		l.mvEAPClient(t, "eap-mschapv2", eapPassword, "gw.example.org", mvOpts{})
		start := time.Now()
		if out, err := l.mvUp(l.clSock, "home"); err == nil {
			t.Fatalf("mobikevpn up succeeded without a RADIUS server:\n%s", out)
		}
		took := time.Since(start)
		if !strings.Contains(gw.output(), "no RADIUS server answered; the client is refused") {
			t.Errorf("the gateway's log does not say the RADIUS server is down:\n%s", grepLines(gw.output(), "RADIUS"))
		}
		if !waitFor(5*time.Second, func() bool { return mvSA(t, l.gwSock) == nil && mvSA(t, l.clSock) == nil }) {
			t.Error("an SA was left")
		}
		t.Logf("refused after %v (2 tries of 1 s)", took.Round(100*time.Millisecond))
	})
}

// readCert parses one of cert's test certificates.
func readCert(t *testing.T, name string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "cert", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := pem.Decode(b); p != nil {
		b = p.Bytes
	}
	c, err := x509.ParseCertificate(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestEAPOnly: EAP-only authentication (RFC 5998) with EAP-TLS, the gateway proved by
// its TLS certificate instead of an IKE signature: ours with ours, and with strongSwan
// both ways (strongSwan's EAP-only set-up: auth = eap-tls in both rounds).
func TestEAPOnly(t *testing.T) {
	mvOnlyGateway := func(l *interopLab) *proc {
		copyTestdata(t, l.dir, "rsa-gw.pem", "rsa-gw.key", "ecdsa-ca.pem")
		return l.mvGateway(mvOpts{
			Local:  `{ auth: pubkey, id: gw.example.org, certs: [rsa-gw.pem], key: rsa-gw.key }`,
			Remote: `{ auth: eap-tls, cacerts: [ecdsa-ca.pem], eap_only: true }`,
		})
	}
	mvOnlyClient := func(l *interopLab) {
		copyTestdata(t, l.dir, "rsa-ca.pem", "ecdsa-gw.der.crt", "ecdsa-gw.der", "ecdsa-int.pem")
		l.mvClient(mvOpts{
			Local:  `{ auth: eap-tls, eap_id: carol@example.org, certs: [ecdsa-gw.der.crt, ecdsa-int.pem], key: ecdsa-gw.der }`,
			Remote: `{ auth: pubkey, id: gw.example.org, cacerts: [rsa-ca.pem], eap_only: true }`,
		})
	}
	t.Run("mv-client/mv-gateway", func(t *testing.T) {
		l := newInteropLab(t)
		mvOnlyGateway(l)
		mvOnlyClient(l)
		if out, err := l.mvUp(l.clSock, "home"); err != nil {
			t.Fatalf("mobikevpn up home: %v\n%s", err, out)
		}
		l.mvEAPTraffic(t, "198.18.100.")
		mvGatewayPeer(t, l.gwSock, "carol@example.org")
	})
	t.Run("mv-client/sw-gateway", func(t *testing.T) {
		l := newInteropLab(t)
		o := swEAPGateway(t, "eap-tls")
		o.Conns[0].Local = swAuth{Auth: "eap-tls", ID: "gw.example.org", Extra: []string{"certs = rsa-gw.pem"}}
		sw := l.swGateway(o)
		mvOnlyClient(l)
		if out, err := l.mvUp(l.clSock, "home"); err != nil {
			t.Fatalf("mobikevpn up home: %v\n%s", err, out)
		}
		l.trafficCheck(t, sw, "198.18.200.")
		if resp := swPayloads(grepLines(sw.log(), "generating IKE_AUTH response 1 ")); resp != "IDr EAP/REQ/ID" {
			t.Errorf("strongSwan signed its first answer: %s", resp)
		}
	})
	t.Run("sw-client/mv-gateway", func(t *testing.T) {
		l := newInteropLab(t)
		mvOnlyGateway(l)
		o := swEAPClient(t, "eap-tls", "", "gw.example.org")
		// strongSwan does not apply cacerts to a gateway proved inside EAP-TLS (its
		// TLS stack checks the chain against every CA it trusts).
		o.Conns[0].Remote = swAuth{Auth: "eap-tls", ID: "gw.example.org"}
		sw := l.swClient(o)
		sw.mustInitiate("home", "net")
		l.trafficCheck(t, sw, "198.18.100.")
		mvGatewayPeer(t, l.gwSock, "carol@example.org")
		if resp := swPayloads(grepLines(sw.log(), "parsed IKE_AUTH response 1 ")); resp != "IDr EAP/REQ/ID" {
			t.Errorf("our gateway's first answer, as strongSwan parsed it: %q", resp)
		}
	})
}

// swPayloads is the payload list of a strongSwan message log line: "IDr EAP/REQ/ID"
// of "... [ IDr EAP/REQ/ID ]".
func swPayloads(line string) string {
	i, j := strings.Index(line, " [ "), strings.LastIndex(line, "]")
	if i < 0 || j < i {
		return ""
	}
	return strings.TrimSpace(line[i+3 : j])
}
