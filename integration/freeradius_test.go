package integration

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mobikevpn/mobikevpn/internal/radius/radiustest"
)

// FreeRADIUS (Debian's freeradius package) as the RADIUS server of EAP-RADIUS tests:
// run in a namespace with a configuration of its own written into the test's
// directory (never /etc/freeradius), stopped when the test ends.

// startFreeRADIUS runs FreeRADIUS in namespace ns, listening on addr:1812, with a client
// entry for the given client network and shared secret, and the given users (name →
// cleartext password) allowed to authenticate with EAP-MSCHAPv2 (default_eap_type
// mschapv2, so no Nak round is needed; EAP-MD5 is enabled too), with a private
// configuration directory in t.TempDir() (never touching /etc/freeradius), stopping it
// in t.Cleanup. It returns once FreeRADIUS has opened its socket ("Ready to process
// requests" in its log); its log (debug level, -X) is printed if the test fails, in full
// into $MOBIKEVPN_KEEP_LOGS if that is set.
//
// The configuration is radiustest's: see radiustest.Config for what it holds and the
// characters the secret, names and passwords must not hold (the test fails otherwise).
func startFreeRADIUS(t *testing.T, ns string, addr netip.Addr, clientNet netip.Prefix, secret string, users map[string]string) {
	t.Helper()
	conf := radiustest.Config{Dir: t.TempDir(), Listen: netip.AddrPortFrom(addr, 1812), Client: clientNet, Secret: secret, Users: users}
	srv, err := conf.Start(t.Context(), ns)
	if err != nil {
		var se *radiustest.StartError
		if !errors.As(err, &se) {
			t.Fatalf("startFreeRADIUS: %v", err)
		}
		t.Fatalf("FreeRADIUS in %s did not start listening on %s (%v):\n%s", ns, conf.Listen, err, freeradiusTail(se.Log, 300))
	}
	// Registered after the lab's cleanup, so it runs before it (last in, first out):
	// FreeRADIUS stops before its namespace goes.
	t.Cleanup(func() {
		srv.Stop()
		if !t.Failed() {
			return
		}
		log := srv.Log()
		t.Logf("FreeRADIUS in %s (%s), last lines of its log:\n%s", ns, srv.LogPath(), freeradiusTail(log, 300))
		if keep := os.Getenv("MOBIKEVPN_KEEP_LOGS"); keep != "" {
			os.WriteFile(filepath.Join(keep, ns+"-freeradius.log"), []byte(log), 0o644)
		}
	})
}

func freeradiusTail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines before]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// TestFreeRADIUSHelper: startFreeRADIUS in a namespace answers an EAP-Identity
// (sent by radclient from a NAS namespace) with an EAP-MSCHAPv2 challenge, and drops
// a request signed with another secret.
func TestFreeRADIUSHelper(t *testing.T) {
	l := newLab(t)
	if _, err := exec.LookPath("radclient"); err != nil {
		t.Fatal("radclient is not installed (package freeradius-utils)")
	}
	nas, srv := l.ns("nas"), l.ns("radius")
	l.link(nas, "eth0", []string{"198.18.0.1/24"}, srv, "eth0", []string{"198.18.0.5/24"})
	const secret = `te"st secret!`
	startFreeRADIUS(t, srv, netip.MustParseAddr("198.18.0.5"), netip.MustParsePrefix("198.18.0.0/24"), secret,
		map[string]string{"alice": "wonderland", "bob the builder": "can we fix it?"})
	radclient := func(secret string) (string, error) {
		cmd := exec.Command("ip", "netns", "exec", nas, "radclient", "-x", "-r", "1", "-t", "2", "198.18.0.5:1812", "auth", secret)
		cmd.Stdin = strings.NewReader("User-Name = \"alice\"\nEAP-Message = 0x0201000a01616c696365\nMessage-Authenticator = 0x00\n")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// radclient exits 1 on a Challenge (it expects an Accept): the output tells.
	out, _ := radclient(secret)
	if !strings.Contains(out, "Received Access-Challenge") || !strings.Contains(out, "EAP-Message = 0x01") ||
		!strings.Contains(out, "State = 0x") {
		t.Fatalf("no Access-Challenge with an EAP-Request and a State:\n%s", out)
	}
	if i := strings.Index(out, "EAP-Message = 0x01"); len(out) < i+26 || out[i+24:i+26] != "1a" {
		t.Errorf("the EAP-Request is not of type MSCHAPv2 (26):\n%s", out)
	}
	out, _ = radclient("wrong")
	if strings.Contains(out, "Received") {
		t.Errorf("an answer to a request with the wrong secret:\n%s", out)
	}
}
