package integration

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// copyTestdata copies cert's test certificates into dir.
func copyTestdata(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join("..", "cert", "testdata", n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// Certificates on both sides (an RSA-3072 gateway, an ECDSA client under an
// intermediate CA), across a path with MTU 1280: IKE_AUTH is fragmented both ways.
func TestCertificatesOverSmallMTU(t *testing.T) {
	l := newTunnelLab(t)
	l.exec(l.rt, "ip", "link", "set", "eth1", "mtu", "1280")
	l.exec(l.gw, "ip", "link", "set", "eth0", "mtu", "1280")
	copyTestdata(t, l.dir, "rsa-gw.pem", "rsa-gw.key", "rsa-ca.pem", "ecdsa-gw.der.crt", "ecdsa-gw.der", "ecdsa-int.pem", "ecdsa-ca.pem")
	gwc := l.gatewayConfig("")
	gwc = strings.Replace(gwc, "    local: { auth: psk, id: gw.example.org }\n    remote: { auth: psk, id: \"%any\" }\n",
		"    local: { auth: pubkey, certs: [rsa-gw.pem], key: rsa-gw.key }\n    remote: { auth: pubkey, id: \"%any\", cacerts: [ecdsa-ca.pem] }\n", 1)
	clc := l.clientConfig("198.51.100.1", "")
	clc = strings.Replace(clc, "    local: { auth: psk, id: alice@example.org }\n    remote: { auth: psk, id: gw.example.org }\n",
		"    local: { auth: pubkey, id: carol@example.org, certs: [ecdsa-gw.der.crt, ecdsa-int.pem], key: ecdsa-gw.der }\n    remote: { auth: pubkey, id: gw.example.org, cacerts: [rsa-ca.pem] }\n", 1)
	l.gwCfg, l.clCfg = filepath.Join(l.dir, "gw.yaml"), filepath.Join(l.dir, "cl.yaml")
	writeFile(t, l.gwCfg, gwc)
	writeFile(t, l.clCfg, clc)
	gw, cl := l.runDaemons()
	took := l.up(cl, gw)
	t.Logf("certificate handshake across MTU 1280: %v", took)
	l.ping(l.cl, "198.18.0.1", 5)
	cs, gs := status(t, l.clSock).IKESAs[0], status(t, l.gwSock).IKESAs[0]
	if !strings.Contains(cs.RemoteID, "CN=gw.example.org") || gs.RemoteID != "carol@example.org" {
		t.Errorf("identities: client sees %q, gateway sees %q", cs.RemoteID, gs.RemoteID)
	}
}

// A client whose remote round takes any certificate of its CA as the gateway (id
// "%any" written out, without accept_any_id) is a configuration error (issue 11): the
// daemon does not start, exits 2 and names the file, line and key, and the way out.
func TestCertificateClientAnyIDRefused(t *testing.T) {
	l := newLab(t)
	ns := l.ns("cl") // a daemon that accepted the file would run there, not on the host
	dir := l.dir
	copyTestdata(t, dir, "rsa-gw.pem", "rsa-gw.key", "rsa-ca.pem")
	cfg := filepath.Join(dir, "cl.yaml")
	writeFile(t, cfg, `control: `+filepath.Join(dir, "cl.sock")+`
connections:
  home:
    remote_addrs: [198.51.100.1]
    local: { auth: pubkey, certs: [rsa-gw.pem], key: rsa-gw.key }
    remote: { auth: pubkey, id: "%any", cacerts: [rsa-ca.pem] }
    children: { net: { remote_ts: [198.18.0.0/24] } }
`)
	// A daemon that accepted the file would run: give it 10 s.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, binary(t), "run", "-c", cfg).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("mobikevpn run: %v, want exit 2\n%s", err, out)
	}
	for _, want := range []string{cfg + ":6: connections.home.remote.id:", "would accept any certificate issued by the CAs in cacerts as the gateway", "accept_any_id: true"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the message lacks %q:\n%s", want, out)
		}
	}
}
