package integration

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Certificate authentication against strongSwan (issue 3): each leaf type (RSA-3072,
// ECDSA P-256 under an intermediate CA, Ed25519) signs on each side in each role;
// identities from the DN and from each kind of subjectAltName; CERTREQ both ways; and
// the refusals (a certificate that does not chain to the configured CA, an identity the
// certificate does not hold) with AUTHENTICATION_FAILED and no state left.

// testCred is one of cert's test credentials.
type testCred struct {
	name   string
	cert   string   // leaf, in cert/testdata
	key    string   // private key
	keyDir string   // strongSwan's folder for that key's format
	chain  []string // intermediate CA certificates sent after the leaf
	ca     string   // the root CA
	dn     string   // the leaf's subject
	caDN   string   // the root's subject (what a CERTREQ for it names)
	// swAuth is how strongSwan logs an AUTH made with this key under RFC 7427, and
	// classicAuth with the key type's own method of RFC 7296.
	swAuth, classicAuth string
}

var (
	credRSA = testCred{name: "rsa", cert: "rsa-gw.pem", key: "rsa-gw.key", keyDir: "rsa", ca: "rsa-ca.pem",
		dn: "C=CH, O=mobikevpn test, CN=gw.example.org", caDN: "C=CH, O=mobikevpn test, CN=mobikevpn test RSA CA",
		swAuth: "RSA_EMSA_PKCS1_SHA2_256", classicAuth: "RSA signature"}
	credECDSA = testCred{name: "ecdsa", cert: "ecdsa-gw.der.crt", key: "ecdsa-gw.der", keyDir: "ecdsa",
		chain: []string{"ecdsa-int.pem"}, ca: "ecdsa-ca.pem",
		dn: "C=CH, O=mobikevpn test, CN=moon.example.org", caDN: "C=CH, O=mobikevpn test, CN=mobikevpn test ECDSA CA",
		swAuth: "ECDSA_WITH_SHA256_DER", classicAuth: "ECDSA-256 signature"}
	credEd25519 = testCred{name: "ed25519", cert: "ed25519-gw.pem", key: "ed25519-gw.key", keyDir: "pkcs8",
		ca: "ed25519-ca.pem", dn: "C=CH, O=mobikevpn test, CN=sun.example.org",
		caDN: "C=CH, O=mobikevpn test, CN=mobikevpn test Ed25519 CA", swAuth: "ED25519"}
)

// certEnd is one side of a certificate test: the credential it signs with and the
// identity it claims.
type certEnd struct {
	cred testCred
	id   string
}

// mvLocal is our local authentication round for e (files copied into dir).
func (e certEnd) mvLocal(t *testing.T, dir string) string {
	copyTestdata(t, dir, append([]string{e.cred.cert, e.cred.key}, e.cred.chain...)...)
	certs := append([]string{e.cred.cert}, e.cred.chain...)
	return fmt.Sprintf(`{ auth: pubkey, id: %q, certs: %s, key: %s }`, e.id, mvYAMLList(certs), e.cred.key)
}

// mvRemoteCert is our remote round for a peer with identity id under root ca (copied
// into dir).
func mvRemoteCert(t *testing.T, dir, id, ca string) string {
	copyTestdata(t, dir, ca)
	return fmt.Sprintf(`{ auth: pubkey, id: %q, cacerts: [%s] }`, id, ca)
}

// swCertOpts turns o's first connection into certificate authentication: local e, the
// peer peerID under peerCA.
func swCertOpts(t *testing.T, o swOpts, e certEnd, peerID, peerCA string) swOpts {
	// strongSwan knows its own root CA too, as a real gateway would: so it recognises
	// our CERTREQ for it.
	files := []string{"x509/" + e.cred.cert, e.cred.keyDir + "/" + e.cred.key, "x509ca/" + peerCA, "x509ca/" + e.cred.ca}
	for _, c := range e.cred.chain {
		files = append(files, "x509ca/"+c)
	}
	o.Files = certFiles(t, files...)
	o.Conns[0].Local = swAuth{Auth: "pubkey", ID: e.id, Extra: []string{"certs = " + e.cred.cert}}
	o.Conns[0].Remote = swAuth{Auth: "pubkey", ID: peerID, Extra: []string{"cacerts = " + peerCA}}
	return o
}

// swAuthLine finds how strongSwan logged the peer's successful authentication.
var swAuthLine = regexp.MustCompile(`authentication of '([^']*)' with ([^ ]+(?: signature)?) successful`)

// TestInteropCertificates: certificate authentication in both roles, each leaf type
// signing on each side, identities from the DN and subjectAltNames, RFC 7427 and the
// classic methods, strongSwan signing RSA with PSS; both ends agree on the identities,
// strongSwan names how it verified us, CERTREQ and CERT chains go both ways, traffic
// flows.
func TestInteropCertificates(t *testing.T) {
	// gw/cl: who signs with what and claims which identity; the identities cover the
	// DN and each subjectAltName kind (FQDN, RFC822, IPv4, IPv6).
	cases := []struct {
		name   string
		gw, cl certEnd
		charon []string // strongSwan's settings
		mode   string   // "" (RFC 7427), "classic" or "pss": how the AUTH methods are named
	}{
		{name: "gw-rsa-dn/cl-ecdsa-email", gw: certEnd{credRSA, credRSA.dn}, cl: certEnd{credECDSA, "carol@example.org"}},
		{name: "gw-ecdsa-fqdn/cl-ed25519-dn", gw: certEnd{credECDSA, "moon.example.org"}, cl: certEnd{credEd25519, credEd25519.dn}},
		{name: "gw-ed25519-ipv6/cl-rsa-email", gw: certEnd{credEd25519, "2001:db8::7"}, cl: certEnd{credRSA, "alice@example.org"}},
		// Without RFC 7427 on strongSwan's side (no SIGNATURE_HASH_ALGORITHMS from it),
		// both ends use the classic methods: RSA (1, PKCS#1 v1.5 SHA-1) and ECDSA-256 (9).
		{name: "classic/gw-rsa-ipv4/cl-ecdsa-email", gw: certEnd{credRSA, "198.51.100.1"}, cl: certEnd{credECDSA, "carol@example.org"},
			charon: []string{"signature_authentication = no"}, mode: "classic"},
		// strongSwan signs RSA with RSASSA-PSS (charon.rsa_pss) and we verify it; we sign
		// with PKCS#1 v1.5 (one certificate, two of its subjectAltNames).
		{name: "rsa-pss/gw-rsa-fqdn/cl-rsa-email", gw: certEnd{credRSA, "gw.example.org"}, cl: certEnd{credRSA, "alice@example.org"},
			charon: []string{"rsa_pss = yes"}, mode: "pss"},
	}
	for _, tc := range cases {
		// method is how strongSwan names the AUTH method of c, signed by strongSwan or not.
		method := func(c testCred, bySW bool) string {
			switch {
			case tc.mode == "classic":
				return c.classicAuth
			case tc.mode == "pss" && bySW && c.name == "rsa":
				return "RSA_EMSA_PSS_SHA2_256_SALT_32"
			}
			return c.swAuth
		}
		t.Run("mv-client/"+tc.name, func(t *testing.T) {
			l := newInteropLab(t)
			o := swCertOpts(t, swGatewayOpts(nil, nil), tc.gw, tc.cl.id, tc.cl.cred.ca)
			o.Charon = tc.charon
			sw := l.swGateway(o)
			cl := l.mvClient(mvOpts{Local: tc.cl.mvLocal(t, l.dir), Remote: mvRemoteCert(t, l.dir, tc.gw.id, tc.gw.cred.ca)})
			if out, err := l.mvUp(l.clSock, "home"); err != nil {
				t.Fatalf("mobikevpn up home: %v\n%s", err, out)
			}
			l.trafficCheck(t, sw, "198.18.200.")
			checkCertSA(t, sw, cl, l.clSock, tc.cl, tc.gw, "initiator", method(tc.cl.cred, false), method(tc.gw.cred, true))
		})
		t.Run("sw-client/"+tc.name, func(t *testing.T) {
			l := newInteropLab(t)
			gw := l.mvGateway(mvOpts{Local: tc.gw.mvLocal(t, l.dir), Remote: mvRemoteCert(t, l.dir, tc.cl.id, tc.cl.cred.ca)})
			o := swCertOpts(t, swClientOpts("198.51.100.1", nil, nil), tc.cl, tc.gw.id, tc.gw.cred.ca)
			o.Charon = tc.charon
			sw := l.swClient(o)
			sw.mustInitiate("home", "net")
			l.trafficCheck(t, sw, "198.18.100.")
			checkCertSA(t, sw, gw, l.gwSock, tc.gw, tc.cl, "responder", method(tc.gw.cred, false), method(tc.cl.cred, true))
		})
	}
}

// checkCertSA checks, after a certificate handshake, the identities both sides agreed
// on, how each verified the other, and the CERTREQ and CERT payloads. us and peer are
// our end and strongSwan's; role is ours.
func checkCertSA(t *testing.T, sw *strongswan, p *proc, sock string, us, peer certEnd, role, usAuth, peerAuth string) {
	t.Helper()
	// The CERT payloads strongSwan sent: its leaf and its intermediate CAs.
	certs := strings.Repeat(" CERT", 1+len(peer.cred.chain))
	sa := mvSA(t, sock)
	if sa == nil {
		t.Fatal("mobikevpn has no IKE SA")
	}
	if sa["local_id"] != us.id || sa["remote_id"] != peer.id {
		t.Errorf("mobikevpn identities %v / %v, want %s / %s", sa["local_id"], sa["remote_id"], us.id, peer.id)
	}
	sas := sw.listSAs()
	if len(sas) != 1 || sas[0].KV["local-id"] != peer.id || sas[0].KV["remote-id"] != us.id {
		t.Errorf("strongSwan identities: %+v, want %s / %s", sas, peer.id, us.id)
	}
	log := sw.log()
	// strongSwan verified us, and signed itself, with the methods it names.
	m := swAuthLine.FindAllStringSubmatch(log, -1)
	var method string
	for _, x := range m {
		if x[1] == us.id {
			method = x[2]
		}
	}
	if method != usAuth {
		t.Errorf("strongSwan authenticated %q with %q, want %s (log: %q)", us.id, method, usAuth, m)
	}
	if want := fmt.Sprintf("authentication of '%s' (myself) with %s successful", peer.id, peerAuth); !strings.Contains(log, want) {
		t.Errorf("strongSwan's log lacks %q", want)
	}
	// Our CERTREQ named the CA that strongSwan's certificate chains to; strongSwan's
	// named ours.
	for _, want := range []string{
		fmt.Sprintf(`received cert request for "%s"`, peer.cred.caDN),
		fmt.Sprintf(`sending cert request for "%s"`, us.cred.caDN),
		fmt.Sprintf(`received end entity cert "%s"`, us.cred.dn),
	} {
		if !strings.Contains(log, want) {
			t.Errorf("strongSwan's log lacks %q", want)
		}
	}
	for _, c := range us.cred.chain {
		dn := map[string]string{"ecdsa-int.pem": "C=CH, O=mobikevpn test, CN=mobikevpn test ECDSA intermediate CA"}[c]
		if !strings.Contains(log, fmt.Sprintf(`received issuer cert "%s"`, dn)) {
			t.Errorf("strongSwan did not receive our intermediate CA %s", dn)
		}
	}
	// What we received from strongSwan: CERTREQ in its first message, its chain in
	// IKE_AUTH.
	ours := p.output()
	wantInit, wantAuth := "received IKE_SA_INIT response", "received IKE_AUTH response"
	if role == "responder" {
		wantInit, wantAuth = "received IKE_SA_INIT request", "received IKE_AUTH request"
	}
	var got []int // CERT payloads in each such message
	for _, ln := range strings.Split(grepLines(ours, wantAuth), "\n") {
		if i := strings.Index(ln, "payloads="); i >= 0 {
			ps := strings.Fields(strings.Trim(ln[i+len("payloads="):], `"`))
			got = append(got, len(ps)-len(slices.DeleteFunc(ps, func(p string) bool { return p == "CERT" })))
		}
	}
	if len(got) != 1 || got[0] != 1+len(peer.cred.chain) {
		t.Errorf("CERT payloads in strongSwan's IKE_AUTH (%s): %v, want %d", wantAuth, got, 1+len(peer.cred.chain))
	}
	if !mvLogHas(ours, wantInit, "CERTREQ") && !mvLogHas(ours, wantAuth, "CERTREQ") {
		t.Errorf("our log shows no CERTREQ from strongSwan")
	}
	t.Logf("strongSwan verified %s (%s) with %s and signed as %s with %s; strongSwan sent%s", us.id, us.cred.name, method, peer.id, peerAuth, certs)
}

// mvLogHas reports whether our debug log has a message line containing msg whose
// payload list contains payloads.
func mvLogHas(log, msg, payloads string) bool {
	for _, ln := range strings.Split(log, "\n") {
		if strings.Contains(ln, msg) && strings.Contains(ln, "payloads=") {
			pl := ln[strings.Index(ln, "payloads="):]
			if strings.Contains(pl, payloads) {
				return true
			}
		}
	}
	return false
}

// forgeCert makes, with strongSwan's pki in dir, an ECDSA CA whose DN is caDN (the DN
// of a CA the verifier trusts, with another key) and a leaf under it. It returns the
// leaf's certificate and key (PEM).
func forgeCert(t *testing.T, dir, caDN, leafDN string, sans ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	run := func(stdin []byte, args ...string) []byte {
		cmd := exec.Command("pki", args...)
		if stdin != nil {
			cmd.Stdin = strings.NewReader(string(stdin))
		}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("pki %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	caKey := filepath.Join(dir, "forged-ca.key")
	caCert := filepath.Join(dir, "forged-ca.pem")
	if err := os.WriteFile(caKey, run(nil, "--gen", "--type", "ecdsa", "--size", "256", "--outform", "pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caCert, run(nil, "--self", "--ca", "--in", caKey, "--dn", caDN, "--outform", "pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	keyPEM = run(nil, "--gen", "--type", "ecdsa", "--size", "256", "--outform", "pem")
	pub := run(keyPEM, "--pub", "--type", "ecdsa")
	args := []string{"--issue", "--type", "pub", "--cacert", caCert, "--cakey", caKey, "--dn", leafDN, "--outform", "pem"}
	for _, s := range sans {
		args = append(args, "--san", s)
	}
	return run(pub, args...), keyPEM
}

// TestInteropCertRefusals: a certificate that does not chain to the configured CA (a
// forged CA with the trusted CA's name, or another CA), or that does not hold the
// identity expected, is refused with AUTHENTICATION_FAILED by whichever side checks it,
// the other side learns it, and neither keeps any state.
func TestInteropCertRefusals(t *testing.T) {
	if _, err := exec.LookPath("pki"); err != nil {
		t.Fatal("strongSwan's pki is not installed (package strongswan-pki)")
	}
	// The forged certificates: same issuer name as the trusted CA, another key.
	forged := func(t *testing.T, dir string, c testCred, id string) (swFiles map[string][]byte, e certEnd) {
		san := strings.TrimPrefix(id, "C=CH, O=mobikevpn test, CN=")
		cp, kp := forgeCert(t, dir, c.caDN, c.dn, san)
		return map[string][]byte{"x509/forged.pem": cp, "ecdsa/forged.key": kp},
			certEnd{cred: testCred{name: "forged", cert: "forged.pem", key: "forged.key", keyDir: "ecdsa", ca: c.ca, dn: c.dn}, id: id}
	}
	t.Run("mv-client/forged-ca", func(t *testing.T) {
		l := newInteropLab(t)
		files, gwEnd := forged(t, l.dir, credRSA, "gw.example.org")
		o := swCertOpts(t, swGatewayOpts(nil, nil), certEnd{credECDSA, "unused"}, "carol@example.org", credECDSA.ca)
		o.Conns[0].Local = swAuth{Auth: "pubkey", ID: gwEnd.id, Extra: []string{"certs = forged.pem"}}
		maps.Copy(o.Files, files)
		sw := l.swGateway(o)
		cl := l.mvClient(mvOpts{Local: certEnd{credECDSA, "carol@example.org"}.mvLocal(t, l.dir), Remote: mvRemoteCert(t, l.dir, "gw.example.org", credRSA.ca)})
		checkClientRefused(t, l, sw, cl, "certificate")
	})
	t.Run("mv-client/wrong-identity", func(t *testing.T) {
		// strongSwan is sun.example.org, under the CA we trust; we want gw.example.org.
		// We name it in IDr, and strongSwan, which has no configuration for that
		// identity, refuses first: it never presents the wrong certificate to us (its
		// vici also refuses a local id its certificate does not hold). Our gateway's
		// own identity check is sw-client/wrong-identity.
		l := newInteropLab(t)
		sw := l.swGateway(swCertOpts(t, swGatewayOpts(nil, nil), certEnd{credEd25519, "sun.example.org"}, "carol@example.org", credECDSA.ca))
		l.mvClient(mvOpts{Local: certEnd{credECDSA, "carol@example.org"}.mvLocal(t, l.dir), Remote: mvRemoteCert(t, l.dir, "gw.example.org", credEd25519.ca)})
		out, err := l.mvUp(l.clSock, "home")
		if err == nil || !strings.Contains(out, "AUTHENTICATION_FAILED") {
			t.Fatalf("mobikevpn up: err %v, output %q; want AUTHENTICATION_FAILED", err, out)
		}
		for _, want := range []string{"looking for peer configs matching 198.51.100.1[gw.example.org]", "no matching peer config found", "generating IKE_AUTH response 1 [ N(AUTH_FAILED) ]"} {
			if !strings.Contains(sw.log(), want) {
				t.Errorf("strongSwan's log lacks %q", want)
			}
		}
		checkNoState(t, l, sw, l.clSock)
	})
	t.Run("sw-client/forged-ca", func(t *testing.T) {
		l := newInteropLab(t)
		gw := l.mvGateway(mvOpts{Local: certEnd{credRSA, "gw.example.org"}.mvLocal(t, l.dir), Remote: mvRemoteCert(t, l.dir, "%any", credECDSA.ca)})
		files, clEnd := forged(t, l.dir, credECDSA, "carol@example.org")
		o := swCertOpts(t, swClientOpts("198.51.100.1", nil, nil), certEnd{credEd25519, "unused"}, "gw.example.org", credRSA.ca)
		o.Conns[0].Local = swAuth{Auth: "pubkey", ID: clEnd.id, Extra: []string{"certs = forged.pem"}}
		maps.Copy(o.Files, files)
		sw := l.swClient(o)
		checkGatewayRefused(t, l, sw, gw, "certificate: ", true)
	})
	t.Run("sw-client/wrong-identity", func(t *testing.T) {
		// Our gateway accepts carol@example.org only; strongSwan is sun.example.org
		// under a CA we trust.
		l := newInteropLab(t)
		gw := l.mvGateway(mvOpts{Local: certEnd{credRSA, "gw.example.org"}.mvLocal(t, l.dir), Remote: mvRemoteCert(t, l.dir, "carol@example.org", credEd25519.ca)})
		sw := l.swClient(swCertOpts(t, swClientOpts("198.51.100.1", nil, nil), certEnd{credEd25519, "sun.example.org"}, "gw.example.org", credRSA.ca))
		checkGatewayRefused(t, l, sw, gw, "no connection matches the peer's identity", true)
	})
	// strongSwan checks ours: the gateway does not trust our client's CA.
	t.Run("mv-client/refused-by-strongswan", func(t *testing.T) {
		l := newInteropLab(t)
		sw := l.swGateway(swCertOpts(t, swGatewayOpts(nil, nil), certEnd{credRSA, "gw.example.org"}, "carol@example.org", credEd25519.ca))
		cl := l.mvClient(mvOpts{Local: certEnd{credECDSA, "carol@example.org"}.mvLocal(t, l.dir), Remote: mvRemoteCert(t, l.dir, "gw.example.org", credRSA.ca)})
		out, err := l.mvUp(l.clSock, "home")
		if err == nil || !strings.Contains(out, "AUTHENTICATION_FAILED") {
			t.Fatalf("mobikevpn up: err %v, output %q; want AUTHENTICATION_FAILED", err, out)
		}
		checkNoState(t, l, sw, l.clSock)
		if !strings.Contains(sw.log(), "no trusted ECDSA public key found for 'carol@example.org'") {
			t.Errorf("strongSwan did not refuse our certificate for the reason expected")
		}
		if !strings.Contains(cl.output(), `msg="connection failed" part=ike conn=home sa=1 reason=AUTHENTICATION_FAILED`) {
			t.Errorf("our client's log does not say why:\n%s", grepLines(cl.output(), "msg="))
		}
	})
	// strongSwan's client checks our gateway: wrong identity.
	t.Run("sw-client/refused-by-strongswan", func(t *testing.T) {
		l := newInteropLab(t)
		gw := l.mvGateway(mvOpts{Local: certEnd{credECDSA, "moon.example.org"}.mvLocal(t, l.dir), Remote: mvRemoteCert(t, l.dir, "%any", credRSA.ca)})
		sw := l.swClient(swCertOpts(t, swClientOpts("198.51.100.1", nil, nil), certEnd{credRSA, "alice@example.org"}, "gw.example.org", credECDSA.ca))
		checkGatewayRefused(t, l, sw, gw, "", false)
		// strongSwan (the initiator) tells us in an INFORMATIONAL; we drop the SA.
		if !strings.Contains(grepLines(sw.log(), "generating INFORMATIONAL request"), "N(AUTH_FAILED)") {
			t.Errorf("strongSwan did not send AUTHENTICATION_FAILED")
		}
		if !mvLogHas(gw.output(), "received INFORMATIONAL request", "N(AUTHENTICATION_FAILED)") {
			t.Errorf("our gateway's log shows no AUTHENTICATION_FAILED from strongSwan")
		}
		if want := "constraint check failed: identity 'gw.example.org' required"; !strings.Contains(sw.log(), want) {
			t.Errorf("strongSwan's log lacks %q:\n%s", want, grepLines(sw.log(), "constraint", "authentication of"))
		}
	})
	// strongSwan requires RSASSA-PSS for the IKE signature ("ike:" leaves the
	// certificates' own signatures alone). We sign RSA with PKCS#1 v1.5 only: cert
	// has an RSAPSS switch, but no configuration key sets it. So strongSwan refuses our
	// signature, cleanly.
	t.Run("mv-client/strongswan-requires-pss", func(t *testing.T) {
		l := newInteropLab(t)
		o := swCertOpts(t, swGatewayOpts(nil, nil), certEnd{credECDSA, "moon.example.org"}, "alice@example.org", credRSA.ca)
		o.Conns[0].Remote.Auth = "ike:rsa/pss-sha256"
		sw := l.swGateway(o)
		l.mvClient(mvOpts{Local: certEnd{credRSA, "alice@example.org"}.mvLocal(t, l.dir), Remote: mvRemoteCert(t, l.dir, "moon.example.org", credECDSA.ca)})
		out, err := l.mvUp(l.clSock, "home")
		if err == nil || !strings.Contains(out, "AUTHENTICATION_FAILED") {
			t.Fatalf("mobikevpn up: err %v, output %q; want AUTHENTICATION_FAILED", err, out)
		}
		if want := "IKE signature scheme RSA_EMSA_PKCS1_SHA2_256 not acceptable"; !strings.Contains(sw.log(), want) {
			t.Errorf("strongSwan's log lacks %q:\n%s", want, grepLines(sw.log(), "authentication of", "not acceptable"))
		}
		checkNoState(t, l, sw, l.clSock)
	})
}

// grepLines returns the lines of s containing any of subs.
func grepLines(s string, subs ...string) string {
	var out []string
	for _, ln := range strings.Split(s, "\n") {
		for _, x := range subs {
			if strings.Contains(ln, x) {
				out = append(out, ln)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// checkClientRefused: our client refuses strongSwan's gateway (why: in our log's error).
func checkClientRefused(t *testing.T, l *interopLab, sw *strongswan, cl *proc, why string) {
	t.Helper()
	out, err := l.mvUp(l.clSock, "home")
	if err == nil || !strings.Contains(out, "AUTHENTICATION_FAILED") {
		t.Fatalf("mobikevpn up: err %v, output %q; want AUTHENTICATION_FAILED", err, out)
	}
	// We told strongSwan (RFC 7296 2.21.2: INFORMATIONAL with AUTHENTICATION_FAILED).
	if !waitFor(3*time.Second, func() bool {
		return strings.Contains(grepLines(sw.log(), "parsed INFORMATIONAL request"), "N(AUTH_FAILED)")
	}) {
		t.Errorf("strongSwan did not receive our AUTHENTICATION_FAILED")
	}
	checkNoState(t, l, sw, l.clSock)
	ln := grepLines(cl.output(), "the peer's authentication failed", "peer identity does not match")
	if !strings.Contains(ln, why) {
		t.Errorf("our client's log does not say why (%q):\n%s", why, ln)
	}
	t.Logf("our client: %s", strings.TrimSpace(ln[strings.Index(ln, "msg="):]))
}

// checkGatewayRefused: strongSwan's initiation fails with AUTHENTICATION_FAILED; if ours
// is set, our gateway refused (why: in its log).
func checkGatewayRefused(t *testing.T, l *interopLab, sw *strongswan, gw *proc, why string, ours bool) {
	t.Helper()
	out, err := sw.initiate("home", "net")
	if err == nil || strings.Contains(out, "initiate completed successfully") {
		t.Fatalf("strongSwan's initiation succeeded:\n%s", out)
	}
	if ours && !strings.Contains(sw.log(), "received AUTHENTICATION_FAILED notify error") {
		t.Errorf("strongSwan did not receive AUTHENTICATION_FAILED from our gateway")
	}
	checkNoState(t, l, sw, l.gwSock)
	if ours {
		ln := grepLines(gw.output(), "AUTH payload does not verify", "no connection matches")
		if !strings.Contains(ln, why) {
			t.Errorf("our gateway's log does not say why (%q):\n%s", why, ln)
		} else {
			t.Logf("our gateway: %s", strings.TrimSpace(ln[strings.Index(ln, "msg="):]))
		}
	}
}

// checkNoState: neither side keeps an IKE SA, and no route for a client address.
func checkNoState(t *testing.T, l *interopLab, sw *strongswan, sock string) {
	t.Helper()
	var ike int
	var sas []swIKESA
	if !waitFor(3*time.Second, func() bool {
		ike, _ = mvCount(t, sock)
		sas = sw.listSAs()
		return ike == 0 && len(sas) == 0
	}) {
		t.Errorf("state left: mobikevpn %d IKE SAs, strongSwan %+v", ike, sas)
	}
	for _, ns := range []string{l.cl, l.gw} {
		if out := l.exec(ns, "ip", "route"); strings.Contains(out, "198.18.100.") || ns == l.cl && strings.Contains(out, "198.18.0.0/24") {
			t.Errorf("a tunnel route is left in %s:\n%s", ns, out)
		}
	}
}

// runPKI runs strongSwan's pki with stdin and returns its output.
func runPKI(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("pki"); err != nil {
		t.Fatal("strongSwan's pki is not installed (package strongswan-pki)")
	}
	cmd := exec.Command("pki", args...)
	if stdin != nil {
		cmd.Stdin = strings.NewReader(string(stdin))
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pki %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// issueUnder makes with pki a new ECDSA leaf under the trusted test CA caCert/caKey
// (cert/testdata names, copied into dir): subject dn, extended key usages flags
// (pki's --flag names), subjectAltNames sans. It returns the certificate and key (PEM).
func issueUnder(t *testing.T, dir, caCert, caKey, dn string, flags []string, sans ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	copyTestdata(t, dir, caCert, caKey)
	keyPEM = runPKI(t, nil, "--gen", "--type", "ecdsa", "--size", "256", "--outform", "pem")
	pub := runPKI(t, keyPEM, "--pub", "--type", "ecdsa")
	args := []string{"--issue", "--type", "pub", "--cacert", filepath.Join(dir, caCert), "--cakey", filepath.Join(dir, caKey), "--dn", dn, "--outform", "pem"}
	for _, f := range flags {
		args = append(args, "--flag", f)
	}
	for _, s := range sans {
		args = append(args, "--san", s)
	}
	return runPKI(t, pub, args...), keyPEM
}

// signCRL makes with pki a CRL of the test CA caCert/caKey (copied into dir) revoking
// the certificates in the files revoked (cert/testdata names or paths), and writes
// it (PEM) to dir/name.
func signCRL(t *testing.T, dir, name, caCert, caKey string, revoked ...string) {
	t.Helper()
	copyTestdata(t, dir, caCert, caKey)
	args := []string{"--signcrl", "--cacert", filepath.Join(dir, caCert), "--cakey", filepath.Join(dir, caKey), "--outform", "pem"}
	for _, r := range revoked {
		if !filepath.IsAbs(r) {
			copyTestdata(t, dir, r)
			r = filepath.Join(dir, r)
		}
		args = append(args, "--reason", "key-compromise", "--cert", r)
	}
	writeFile(t, filepath.Join(dir, name), string(runPKI(t, nil, args...)))
}

// TestInteropCertGatewayIdentity (issue 11): our client authenticating a strongSwan
// gateway by certificate. Without a remote id it expects the gateway's address
// (198.51.100.1) in the gateway's certificate, as an IP subjectAltName, whatever
// identity the gateway presents; another certificate of the same CA (here a host
// "mallory.example.org" the CA certified) is refused with AUTHENTICATION_FAILED, unless
// the client says accept_any_id (the old behaviour, now explicit).
func TestInteropCertGatewayIdentity(t *testing.T) {
	client := certEnd{credECDSA, "carol@example.org"}
	// gateway starts strongSwan's gateway signing as gw (with files extra) and our
	// client with the remote round remote.
	gateway := func(t *testing.T, gw certEnd, extra map[string][]byte, remote string) (*interopLab, *strongswan, *proc) {
		l := newInteropLab(t)
		var o swOpts
		if extra == nil {
			o = swCertOpts(t, swGatewayOpts(nil, nil), gw, client.id, client.cred.ca)
		} else {
			// A certificate made for the test, not in testdata: its files are extra.
			o = swCertOpts(t, swGatewayOpts(nil, nil), certEnd{credRSA, "unused"}, client.id, client.cred.ca)
			o.Conns[0].Local = swAuth{Auth: "pubkey", ID: gw.id, Extra: []string{"certs = " + gw.cred.cert}}
			maps.Copy(o.Files, extra)
		}
		sw := l.swGateway(o)
		copyTestdata(t, l.dir, credRSA.ca)
		cl := l.mvClient(mvOpts{Local: client.mvLocal(t, l.dir), Remote: remote})
		return l, sw, cl
	}
	mallory := func(t *testing.T) (certEnd, map[string][]byte) {
		cp, kp := issueUnder(t, t.TempDir(), credRSA.ca, "rsa-ca.key", "C=CH, O=mobikevpn test, CN=mallory.example.org", nil, "mallory.example.org")
		return certEnd{cred: testCred{name: "mallory", cert: "mallory.pem", key: "mallory.key", keyDir: "ecdsa", ca: credRSA.ca,
				dn: "C=CH, O=mobikevpn test, CN=mallory.example.org"}, id: "mallory.example.org"},
			map[string][]byte{"x509/mallory.pem": cp, "ecdsa/mallory.key": kp}
	}
	const noID = `{ auth: pubkey, cacerts: [rsa-ca.pem] }`
	for _, gwID := range []string{"gw.example.org", credRSA.dn} {
		t.Run("default id/the gateway presenting "+gwID, func(t *testing.T) {
			l, sw, _ := gateway(t, certEnd{credRSA, gwID}, nil, noID)
			if out, err := l.mvUp(l.clSock, "home"); err != nil {
				t.Fatalf("mobikevpn up home: %v\n%s", err, out)
			}
			l.trafficCheck(t, sw, "198.18.200.")
			if sa := mvSA(t, l.clSock); sa == nil || sa["remote_id"] != gwID {
				t.Errorf("our client's SA: %v, want remote_id %s", sa, gwID)
			}
			// A default identity is checked, not sent: strongSwan saw no IDr.
			if want := "looking for peer configs matching 198.51.100.1[%any]"; !strings.Contains(sw.log(), want) {
				t.Errorf("strongSwan's log lacks %q:\n%s", want, grepLines(sw.log(), "looking for peer configs"))
			}
		})
	}
	t.Run("default id/another certificate of the CA", func(t *testing.T) {
		m, files := mallory(t)
		l, sw, cl := gateway(t, m, files, noID)
		checkClientRefused(t, l, sw, cl, "does not carry the peer's address 198.51.100.1 as an IP subjectAltName")
	})
	t.Run("default id/a certificate of the gateway's name without its address", func(t *testing.T) {
		// sun.example.org's certificate carries 2001:db8::7, not 198.51.100.1.
		l := newInteropLab(t)
		sw := l.swGateway(swCertOpts(t, swGatewayOpts(nil, nil), certEnd{credEd25519, "sun.example.org"}, client.id, client.cred.ca))
		copyTestdata(t, l.dir, credEd25519.ca)
		cl := l.mvClient(mvOpts{Local: client.mvLocal(t, l.dir), Remote: `{ auth: pubkey, cacerts: [ed25519-ca.pem] }`})
		checkClientRefused(t, l, sw, cl, "does not carry the peer's address 198.51.100.1")
	})
	t.Run("accept_any_id/another certificate of the CA", func(t *testing.T) {
		m, files := mallory(t)
		l, sw, _ := gateway(t, m, files, `{ auth: pubkey, id: "%any", accept_any_id: true, cacerts: [rsa-ca.pem] }`)
		if out, err := l.mvUp(l.clSock, "home"); err != nil {
			t.Fatalf("mobikevpn up home: %v\n%s", err, out)
		}
		l.trafficCheck(t, sw, "198.18.200.")
		if sa := mvSA(t, l.clSock); sa == nil || sa["remote_id"] != "mallory.example.org" {
			t.Errorf("our client's SA: %v", sa)
		}
	})
}

// TestInteropCertEKU: required extended key usages (eku), in both roles against
// strongSwan. rsa-gw.pem carries serverAuth; the Ed25519 leaf none.
func TestInteropCertEKU(t *testing.T) {
	client := certEnd{credECDSA, "carol@example.org"}
	t.Run("mv-client/serverAuth present", func(t *testing.T) {
		l := newInteropLab(t)
		sw := l.swGateway(swCertOpts(t, swGatewayOpts(nil, nil), certEnd{credRSA, "gw.example.org"}, client.id, client.cred.ca))
		copyTestdata(t, l.dir, credRSA.ca)
		l.mvClient(mvOpts{Local: client.mvLocal(t, l.dir), Remote: `{ auth: pubkey, id: gw.example.org, cacerts: [rsa-ca.pem], eku: [serverAuth, ipsecIKE] }`})
		if out, err := l.mvUp(l.clSock, "home"); err != nil {
			t.Fatalf("mobikevpn up home: %v\n%s", err, out)
		}
		l.trafficCheck(t, sw, "198.18.200.")
	})
	t.Run("mv-client/no extended key usage", func(t *testing.T) {
		l := newInteropLab(t)
		sw := l.swGateway(swCertOpts(t, swGatewayOpts(nil, nil), certEnd{credEd25519, "sun.example.org"}, client.id, client.cred.ca))
		copyTestdata(t, l.dir, credEd25519.ca)
		cl := l.mvClient(mvOpts{Local: client.mvLocal(t, l.dir), Remote: `{ auth: pubkey, id: sun.example.org, cacerts: [ed25519-ca.pem], eku: [serverAuth, ipsecIKE] }`})
		checkClientRefused(t, l, sw, cl, "has no extended key usage extension; the connection requires one of serverAuth, ipsecIKE")
	})
	// Our gateway requires clientAuth of its clients.
	for _, tc := range []struct {
		name  string
		flags []string
		ok    bool
	}{{"clientAuth present", []string{"clientAuth"}, true}, {"serverAuth only", []string{"serverAuth"}, false}} {
		t.Run("sw-client/"+tc.name, func(t *testing.T) {
			l := newInteropLab(t)
			copyTestdata(t, l.dir, credRSA.ca)
			gw := l.mvGateway(mvOpts{Local: certEnd{credECDSA, "moon.example.org"}.mvLocal(t, l.dir),
				Remote: `{ auth: pubkey, cacerts: [rsa-ca.pem], eku: [clientAuth] }`})
			cp, kp := issueUnder(t, t.TempDir(), credRSA.ca, "rsa-ca.key", "C=CH, O=mobikevpn test, CN=dave", tc.flags, "dave@example.org")
			o := swCertOpts(t, swClientOpts("198.51.100.1", nil, nil), certEnd{credRSA, "unused"}, "moon.example.org", credECDSA.ca)
			o.Conns[0].Local = swAuth{Auth: "pubkey", ID: "dave@example.org", Extra: []string{"certs = dave.pem"}}
			maps.Copy(o.Files, map[string][]byte{"x509/dave.pem": cp, "ecdsa/dave.key": kp})
			sw := l.swClient(o)
			if tc.ok {
				sw.mustInitiate("home", "net")
				l.trafficCheck(t, sw, "198.18.100.")
				return
			}
			checkGatewayRefused(t, l, sw, gw, "has extended key usages serverAuth; the connection requires one of clientAuth", true)
		})
	}
}

// TestInteropCertRevocation: CRL files made by strongSwan's pki (crls). Our client
// refuses a strongSwan gateway whose certificate its CA revoked; our gateway refuses a
// revoked strongSwan client once SIGHUP loaded the new CRL file (CRLs are files the
// operator distributes: nothing is fetched).
func TestInteropCertRevocation(t *testing.T) {
	client := certEnd{credECDSA, "carol@example.org"}
	for _, revoked := range []bool{false, true} {
		t.Run(fmt.Sprintf("mv-client/gateway revoked=%v", revoked), func(t *testing.T) {
			l := newInteropLab(t)
			var list []string
			if revoked {
				list = []string{credRSA.cert}
			}
			signCRL(t, l.dir, "rsa-ca.crl", credRSA.ca, "rsa-ca.key", list...)
			sw := l.swGateway(swCertOpts(t, swGatewayOpts(nil, nil), certEnd{credRSA, "gw.example.org"}, client.id, client.cred.ca))
			cl := l.mvClient(mvOpts{Local: client.mvLocal(t, l.dir), Remote: `{ auth: pubkey, id: gw.example.org, cacerts: [rsa-ca.pem], crls: [rsa-ca.crl] }`})
			if revoked {
				checkClientRefused(t, l, sw, cl, "is revoked since")
				return
			}
			if out, err := l.mvUp(l.clSock, "home"); err != nil {
				t.Fatalf("mobikevpn up home: %v\n%s", err, out)
			}
			l.trafficCheck(t, sw, "198.18.200.")
		})
	}
	t.Run("sw-client/revoked after a reload", func(t *testing.T) {
		l := newInteropLab(t)
		// A CRL that revokes another certificate of the CA (so it is not empty).
		other, _ := issueUnder(t, l.dir, credRSA.ca, "rsa-ca.key", "C=CH, O=mobikevpn test, CN=old", nil, "old@example.org")
		writeFile(t, filepath.Join(l.dir, "old.pem"), string(other))
		signCRL(t, l.dir, "clients.crl", credRSA.ca, "rsa-ca.key", filepath.Join(l.dir, "old.pem"))
		gw := l.mvGateway(mvOpts{Local: certEnd{credECDSA, "moon.example.org"}.mvLocal(t, l.dir),
			Remote: `{ auth: pubkey, cacerts: [rsa-ca.pem], crls: [clients.crl] }`})
		sw := l.swClient(swCertOpts(t, swClientOpts("198.51.100.1", nil, nil), certEnd{credRSA, "alice@example.org"}, "moon.example.org", credECDSA.ca))
		sw.mustInitiate("home", "net")
		l.trafficCheck(t, sw, "198.18.100.")
		if out, err := sw.terminateIKE("home"); err != nil {
			t.Fatalf("swanctl --terminate: %v\n%s", err, out)
		}
		checkNoState(t, l, sw, l.gwSock)
		// The CA revokes alice's certificate; the operator installs the new CRL file
		// and reloads.
		signCRL(t, l.dir, "clients.crl", credRSA.ca, "rsa-ca.key", filepath.Join(l.dir, "old.pem"), credRSA.cert)
		gw.signal(syscall.SIGHUP)
		if !waitFor(5*time.Second, func() bool { return strings.Contains(gw.output(), "configuration reloaded") }) {
			t.Fatalf("no reload after SIGHUP:\n%s", lastLines(gw.output(), 30))
		}
		checkGatewayRefused(t, l, sw, gw, "is revoked since", true)
	})
}
