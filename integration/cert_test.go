package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyTestdata copies ike/cert's test certificates into dir.
func copyTestdata(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join("..", "ike", "cert", "testdata", n))
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
