package system

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// TestHookDNS: with an updown hook, the DNS servers and the virtual IPs go to the hook
// (ACTION=dns), and their removal too.
func TestHookDNS(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "calls")
	hook := filepath.Join(dir, "updown")
	script := "#!/bin/sh\necho \"$ACTION|$DEV|$DNS|$VIPS|$FULL_TUNNEL\" >> " + out + "\n"
	if err := os.WriteFile(hook, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	h := &hookDNS{path: hook}
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	if err := h.Apply("mvpn0", []netip.Addr{a("198.18.0.53"), a("2001:db8:ff::53")}, []netip.Addr{a("198.18.100.1")}, true); err != nil {
		t.Fatal(err)
	}
	if err := h.Revert(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := "dns|mvpn0|198.18.0.53 2001:db8:ff::53|198.18.100.1|yes\ndns|mvpn0|||no\n"
	if string(b) != want {
		t.Fatalf("hook calls:\n%s\nwant:\n%s", b, want)
	}
}
