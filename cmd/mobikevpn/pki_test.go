package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mobikevpn/mobikevpn/internal/config"
)

// readCert parses the first certificate of a PEM file.
func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// pkiSet runs pki ca, gateway and client in a new folder (that pki ca creates).
func pkiSet(t *testing.T, h *harness) (dir string, out [3]result) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "pki")
	out[0] = h.run("pki", "ca", "--dir", dir)
	out[1] = h.run("pki", "gateway", "--name", "gw.example.org", "--dir", dir, "--ip", "198.51.100.1", "--ip", "2001:db8::1")
	out[2] = h.run("pki", "client", "--dir", dir, "--name", "alice@example.org", "--days", "30")
	for _, r := range out {
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
	}
	return dir, out
}

func TestPKI(t *testing.T) {
	h := newHarness()
	dir, out := pkiSet(t, h)
	for _, want := range []string{"wrote " + filepath.Join(dir, "ca.pem"), "wrote " + filepath.Join(dir, "ca.key"), "mobikevpn pki gateway --dir " + dir} {
		if !strings.Contains(out[0].stdout, want) {
			t.Errorf("pki ca: stdout lacks %q:\n%s", want, out[0].stdout)
		}
	}
	for _, want := range []string{
		"wrote " + filepath.Join(dir, "gw.example.org.pem") + `: gateway certificate "CN=gw.example.org" (DNS gw.example.org, IP 198.51.100.1, IP 2001:db8::1)`,
		"local:  { auth: pubkey, certs: [gw.example.org.pem], key: gw.example.org.key }",
		"remote: { auth: pubkey, cacerts: [ca.pem] }",
	} {
		if !strings.Contains(out[1].stdout, want) {
			t.Errorf("pki gateway: stdout lacks %q:\n%s", want, out[1].stdout)
		}
	}
	for _, want := range []string{
		"(email alice@example.org)",
		"local:  { auth: pubkey, id: alice@example.org, certs: [alice@example.org.pem], key: alice@example.org.key }",
		"remote: { auth: pubkey, id: gw.example.org, cacerts: [ca.pem] }\n", // the one gateway of the folder
	} {
		if !strings.Contains(out[2].stdout, want) {
			t.Errorf("pki client: stdout lacks %q:\n%s", want, out[2].stdout)
		}
	}
	for _, name := range []string{"ca.key", "gw.example.org.key", "alice@example.org.key"} {
		if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", name, st, err)
		}
	}

	ca := readCert(t, filepath.Join(dir, "ca.pem"))
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	gw := readCert(t, filepath.Join(dir, "gw.example.org.pem"))
	if _, err := gw.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("gateway: %v", err)
	}
	if len(gw.IPAddresses) != 2 || !slices.Equal(gw.DNSNames, []string{"gw.example.org"}) {
		t.Errorf("gateway SANs: DNS %v, IP %v", gw.DNSNames, gw.IPAddresses)
	}
	cl := readCert(t, filepath.Join(dir, "alice@example.org.pem"))
	if _, err := cl.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client: %v", err)
	}
	if !slices.Equal(cl.EmailAddresses, []string{"alice@example.org"}) || cl.NotAfter.Sub(cl.NotBefore).Hours() > 31*24 {
		t.Errorf("client: emails %v, valid %v to %v", cl.EmailAddresses, cl.NotBefore, cl.NotAfter)
	}
}

// hintLines are the configuration lines pki printed (local and remote), indented as
// in a connection.
func hintLines(t *testing.T, stdout string) string {
	t.Helper()
	var out []string
	for _, ln := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(ln, "    local:  {") || strings.HasPrefix(ln, "    remote: {") {
			out = append(out, ln)
		}
	}
	if len(out) != 2 {
		t.Fatalf("no local and remote lines in %q", stdout)
	}
	return strings.Join(out, "\n") + "\n"
}

// TestPKIConfigLoads: configurations made of the lines pki prints load, with the
// credential and the CA they name, and check passes.
func TestPKIConfigLoads(t *testing.T) {
	h := newHarness()
	dir, out := pkiSet(t, h)
	v6 := h.run("pki", "gateway", "--dir", dir, "--name", "2001:db8::5")
	if v6.code != 0 {
		t.Fatal(v6.stderr)
	}
	configs := []struct{ name, text, leaf string }{
		{"gw.yaml", "connections:\n  rw:\n" + hintLines(t, out[1].stdout) + "    children: { net: {} }\n", "gw.example.org"},
		{"gw6.yaml", "connections:\n  rw:\n" + hintLines(t, v6.stdout) + "    children: { net: {} }\n", "2001:db8::5"},
		{"client.yaml", "connections:\n  home:\n    remote_addrs: [198.51.100.1]\n" + hintLines(t, out[2].stdout) +
			"    children: { net: { remote_ts: [0.0.0.0/0] } }\n", "alice@example.org"},
	}
	for _, tc := range configs {
		path := filepath.Join(dir, tc.name)
		if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatalf("%s: %v\n%s", tc.name, err, tc.text)
		}
		conn := cfg.Connections[0]
		if conn.Local.Cred == nil || len(conn.Local.Cred.Chain) == 0 || len(conn.Remote.CAs) != 1 {
			t.Fatalf("%s: credential %+v, CAs %d", tc.name, conn.Local.Cred, len(conn.Remote.CAs))
		}
		if cn := conn.Local.Cred.Chain[0].Subject.CommonName; cn != tc.leaf {
			t.Errorf("%s: leaf CN=%s, want CN=%s", tc.name, cn, tc.leaf)
		}
		if r := h.run("check", "-c", path); r.code != 0 || !strings.Contains(r.stdout, "configuration OK") {
			t.Errorf("check %s: exit %d, %s%s", tc.name, r.code, r.stdout, r.stderr)
		}
	}
}

func TestPKINoOverwrite(t *testing.T) {
	h := newHarness()
	dir, _ := pkiSet(t, h)
	pemPath := filepath.Join(dir, "gw.example.org.pem")
	before, err := os.ReadFile(pemPath)
	if err != nil {
		t.Fatal(err)
	}
	h.run("pki", "gateway", "--dir", dir, "--name", "gw.example.org").expect(t, exitFailed, "gw.example.org.key: file already exists; use --force")
	h.run("pki", "ca", "--dir", dir).expect(t, exitFailed, filepath.Join(dir, "ca.key")+": file already exists")
	if after, _ := os.ReadFile(pemPath); !bytes.Equal(before, after) {
		t.Error("the gateway certificate changed without --force")
	}
	if r := h.run("pki", "gateway", "--dir", dir, "--name", "gw.example.org", "--force"); r.code != 0 {
		t.Fatalf("--force: exit %d: %s", r.code, r.stderr)
	}
	if after, _ := os.ReadFile(pemPath); bytes.Equal(before, after) {
		t.Error("--force did not replace the certificate")
	}
	if st, err := os.Stat(filepath.Join(dir, "gw.example.org.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("replaced key: %v %v", st, err)
	}
	if gw := readCert(t, pemPath); len(gw.IPAddresses) != 0 {
		t.Errorf("the new certificate has the old --ip: %v", gw.IPAddresses)
	}
}

func TestPKIBadUsage(t *testing.T) {
	h := newHarness()
	dir, _ := pkiSet(t, h)
	missing := filepath.Join(t.TempDir(), "none")
	for _, tc := range []struct {
		code int
		args []string
		frag string
	}{
		{exitUsage, []string{"pki", "ca"}, "pki ca needs --dir DIR"},
		{exitUsage, []string{"pki", "ca", "--dir", dir, "extra"}, "ca takes no arguments"},
		{exitUsage, []string{"pki", "ca", "--dir", missing, "--days", "0"}, "pki ca --days 0: the validity must be 1 to 36500 days"},
		{exitUsage, []string{"pki", "ca", "--dir", missing, "--cn", ""}, "the CA's common name is empty"},
		{exitUsage, []string{"pki", "gateway", "--dir", dir}, "pki gateway needs --name NAME"},
		{exitUsage, []string{"pki", "gateway", "--dir", dir, "--name", "../x"}, "pki gateway --name: name \"../x\": holds a path separator"},
		{exitUsage, []string{"pki", "gateway", "--dir", dir, "--name", "ca"}, "ca.pem and ca.key are the CA's files"},
		{exitUsage, []string{"pki", "gateway", "--dir", dir, "--name", "gw_1"}, `gateway name "gw_1": neither an IP address nor a host name`},
		{exitUsage, []string{"pki", "gateway", "--dir", dir, "--name", "gw2", "--ip", "nope"}, `pki gateway --ip "nope": not an IP address`},
		{exitUsage, []string{"pki", "client", "--dir", dir, "--name", "bob@"}, `client name "bob@": not an email address`},
		{exitUsage, []string{"pki", "client", "--dir", dir, "--name", "x", "--days", "99999"}, "--days 99999"},
		{exitUsage, []string{"pki", "client", "--bogus"}, "flag provided but not defined: -bogus"},
		{exitFailed, []string{"pki", "gateway", "--dir", missing, "--name", "gw"}, "none/ca.pem: no such file or directory (make the CA first: mobikevpn pki ca --dir " + missing + ")"},
		{exitFailed, []string{"pki", "client", "--dir", dir + "/gw.example.org.pem", "--name", "x"}, "pki client: "},
	} {
		name := strings.NewReplacer(missing, "MISSING", dir, "DIR").Replace(strings.Join(tc.args, " "))
		t.Run(name, func(t *testing.T) { h.run(tc.args...).expect(t, tc.code, tc.frag) })
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("a refused pki ca made its folder")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "gw2*")); len(left) != 0 {
		t.Errorf("refused commands left files: %v", left)
	}
}
