package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// certFiles are the test certificates of the cert package, for configurations that
// need a certificate and key.
func certFiles(t *testing.T) map[string]string {
	t.Helper()
	read := func(f string) string {
		b, err := os.ReadFile(filepath.Join("..", "..", "cert", "testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	return map[string]string{"gw.pem": read("rsa-gw.pem"), "gw.key": read("rsa-gw.key"), "ca.pem": read("rsa-ca.pem")}
}

const eapGateway = `
secrets:
  - { type: eap, ids: [alice], secret: "correct horse" }
  - { type: eap, ids: [bob, carol], secret: 0x626f62 }
  - { ids: [gw.example.org], psk: "not an eap secret" }
radius:
  servers:
    - { addr: 198.18.0.5:1812, secret: "radius secret" }
    - { addr: "2001:db8::5", secret: 0x7365 }
  timeout: 1s
connections:
  rw:
    local: { auth: pubkey, certs: [gw.pem], key: gw.key }
    remote: { auth: eap-mschapv2 }
    children: { net: {} }
  tls:
    local: { auth: pubkey, certs: [gw.pem], key: gw.key }
    remote: { auth: eap-tls, cacerts: [ca.pem], eku: [clientAuth], eap_only: true }
    children: { net: {} }
  corp:
    local: { auth: pubkey, certs: [gw.pem], key: gw.key }
    remote: { auth: eap-radius }
    children: { net: {} }
`

func TestEAPGateway(t *testing.T) {
	files := certFiles(t)
	files["gw.yaml"] = eapGateway
	cfg := mustLoad(t, writeFiles(t, files))
	for name, want := range map[string]string{"rw": AuthEAPMSCHAPv2, "tls": AuthEAPTLS, "corp": AuthEAPRadius} {
		if got := cfg.Connection(name).Remote.Auth; got != want {
			t.Errorf("%s: remote auth %q, want %q", name, got, want)
		}
	}
	if r := cfg.Connection("tls").Remote; len(r.CAs) != 1 || !r.EAPOnly {
		t.Error("eap-tls: CAs not loaded")
	}
	for id, want := range map[string]string{"alice": "correct horse", "bob": "bob", "carol": "bob"} {
		if got, ok := cfg.EAPSecret(id); !ok || string(got) != want {
			t.Errorf("EAPSecret(%s) = %q, %v", id, got, ok)
		}
	}
	if _, ok := cfg.EAPSecret("gw.example.org"); ok {
		t.Error("a psk secret served as an EAP password")
	}
	if psk, ok := cfg.PSK("gw.example.org", "alice"); !ok || string(psk) != "not an eap secret" {
		t.Errorf("PSK = %q, %v", psk, ok)
	}
	r := cfg.Radius
	want := []RadiusServer{
		{Addr: netip.MustParseAddrPort("198.18.0.5:1812"), Secret: []byte("radius secret")},
		{Addr: netip.MustParseAddrPort("[2001:db8::5]:1812"), Secret: []byte("se")},
	}
	if r == nil || len(r.Servers) != 2 || r.Timeout != time.Second || r.Tries != 3 {
		t.Fatalf("radius %+v", r)
	}
	for i := range want {
		if r.Servers[i].Addr != want[i].Addr || string(r.Servers[i].Secret) != string(want[i].Secret) {
			t.Errorf("server %d: %v", i, r.Servers[i].Addr)
		}
	}
}

func TestEAPClient(t *testing.T) {
	files := certFiles(t)
	files["gw.yaml"] = `
secrets:
  - { type: eap, ids: [alice], secret: "correct horse" }
connections:
  home:
    remote_addrs: [198.51.100.1]
    local: { auth: eap-mschapv2, eap_id: alice }
    remote: { auth: pubkey, id: gw.example.org, cacerts: [ca.pem] }
    children: { net: { remote_ts: [198.18.0.0/16] } }
  cert:
    remote_addrs: [198.51.100.1]
    local: { auth: eap-tls, certs: [gw.pem], key: gw.key }
    remote: { auth: pubkey, id: gw.example.org, cacerts: [ca.pem], eap_only: true }
    children: { net: { remote_ts: [198.18.0.0/16] } }
`
	cfg := mustLoad(t, writeFiles(t, files))
	if c := cfg.Connection("home"); c.Local.Auth != AuthEAPMSCHAPv2 || c.Local.EAPID != "alice" {
		t.Errorf("home: %+v", c.Local)
	}
	if c := cfg.Connection("cert"); c.Local.Auth != AuthEAPTLS || c.Local.Cred == nil || !c.Remote.EAPOnly {
		t.Errorf("cert: %+v", c.Local)
	}
}

func TestEAPBadConfigs(t *testing.T) {
	gw := "    local: { auth: pubkey, certs: [gw.pem], key: gw.key }\n"
	conn := func(body string) string { return "connections:\n  rw:\n" + body + "    children: { net: {} }\n" }
	client := func(secrets, local string) string {
		return secrets + "connections:\n  home:\n    remote_addrs: [198.51.100.1]\n" + local +
			"    remote: { auth: pubkey, id: gw.example.org, cacerts: [ca.pem] }\n    children: { net: {} }\n"
	}
	alice := "secrets: [{ type: eap, ids: [alice], secret: pw }]\n"
	tests := []struct{ name, yaml, key, frag string }{
		{"eap-radius without radius", conn(gw + "    remote: { auth: eap-radius } #<\n"), "connections.rw.remote.auth", "eap-radius needs the RADIUS servers"},
		{"eap on a client's remote", client(alice, "    local: { auth: eap-mschapv2, eap_id: alice }\n") +
			"", "", ""},
		{"eap-tls gateway without cert", conn("    local: { auth: psk, id: gw }\n    remote: { auth: eap-tls, cacerts: [ca.pem] } #<\n"), "connections.rw.remote.auth", "the gateway's TLS certificate"},
		{"eap-tls without cacerts", conn(gw + "    remote: { auth: eap-tls } #<\n"), "connections.rw.remote.cacerts", "missing"},
		{"eap-mschapv2 on a gateway's local", conn("    local: { auth: eap-mschapv2, eap_id: gw } #<\n    remote: { auth: psk }\n"), "connections.rw.local.auth", "only a client"},
		{"client without eap secret", client("", "    local: { auth: eap-mschapv2, eap_id: alice } #<\n"), "connections.home.local.auth", "no entry in secrets of type eap"},
		{"client without eap_id", client(alice, "    local: { auth: eap-mschapv2 } #<\n"), "connections.home.local.eap_id", "needs our user name"},
		{"eap_id with psk", client(alice, "    local: { auth: psk, id: a, eap_id: alice } #<\n"), "connections.home.local.eap_id", "only used with auth: eap-mschapv2 or eap-tls"},
		{"eap secret with psk", "secrets:\n  - { type: eap, ids: [a], psk: x } #<\n" + conn(gw+"    remote: { auth: eap-mschapv2 }\n"), "secrets[0].psk", "the EAP password is secret"},
		{"eap secret missing", "secrets:\n  - { type: eap, ids: [a] } #<\n" + conn(gw+"    remote: { auth: eap-mschapv2 }\n"), "secrets[0]", "missing secret"},
		{"secret on psk", "secrets:\n  - { ids: [a], psk: x, secret: y } #<\n" + conn(gw+"    remote: { auth: eap-mschapv2 }\n"), "secrets[0].secret", "only used with type: eap"},
		{"radius no servers", "radius: { servers: [] } #<\n" + conn(gw+"    remote: { auth: eap-radius }\n"), "radius.servers", "at least one server"},
		{"radius bad addr", "radius:\n  servers:\n    - { addr: radius.example.org, secret: s } #<\n" + conn(gw+"    remote: { auth: eap-radius }\n"), "radius.servers[0].addr", "not an address"},
		{"radius no secret", "radius:\n  servers:\n    - { addr: 198.18.0.5 } #<\n" + conn(gw+"    remote: { auth: eap-radius }\n"), "radius.servers[0].secret", "missing"},
		{"eap_only with mschapv2", client(alice, "    local: { auth: eap-mschapv2, eap_id: alice }\n") + "", "", ""},
		{"eap_only on a mschapv2 gateway", conn(gw + "    remote: { auth: eap-mschapv2, eap_only: true } #<\n"), "connections.rw.remote.eap_only", "with auth: eap-tls only"},
		{"radius tries", "radius:\n  servers: [{ addr: 198.18.0.5, secret: s }]\n  tries: 0 #<\n" + conn(gw+"    remote: { auth: eap-radius }\n"), "radius.tries", "out of range"},
	}
	for _, tc := range tests {
		if tc.key == "" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) { expectConfigError(t, tc.yaml, certFiles(t), tc.key, tc.frag) })
	}
	// A client asking to authenticate its gateway by EAP (RFC 5998) is refused.
	y := strings.Replace(client(alice, "    local: { auth: eap-mschapv2, eap_id: alice }\n"), "remote: { auth: pubkey, id: gw.example.org, cacerts: [ca.pem] }", "remote: { auth: eap-mschapv2 } #<", 1)
	expectConfigError(t, y, certFiles(t), "connections.home.remote.auth", "a client authenticates its gateway with pubkey or psk")
	y = strings.Replace(client(alice, "    local: { auth: eap-mschapv2, eap_id: alice }\n"), "cacerts: [ca.pem] }", "cacerts: [ca.pem], eap_only: true } #<", 1)
	expectConfigError(t, y, certFiles(t), "connections.home.remote.eap_only", "needs local: { auth: eap-tls }")
}
