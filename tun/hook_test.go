//go:build !windows

package tun

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hookScript writes a script that appends its environment to a log and fails for
// PREFIX=192.0.2.99/32.
func hookScript(t *testing.T) (path, log string) {
	dir := t.TempDir()
	log = filepath.Join(dir, "log")
	path = filepath.Join(dir, "updown.sh")
	script := "#!/bin/sh\n" +
		`if [ "$PREFIX" = 192.0.2.99/32 ]; then echo "refused $PREFIX" >&2; exit 3; fi` + "\n" +
		`echo "$ACTION $DEV $PREFIX $FAMILY" >> '` + log + "'\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, log
}

func readLog(t *testing.T, log string) []string {
	b, err := os.ReadFile(log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func TestHookConfigurator(t *testing.T) {
	path, log := hookScript(t)
	c, err := NewConfigurator(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(*HookConfigurator); !ok {
		t.Fatalf("NewConfigurator(hook) = %T", c)
	}
	steps := []error{
		c.Up("mvpn0"),
		c.AddAddress("mvpn0", netip.MustParsePrefix("198.18.0.1/24")),
		c.AddAddress("mvpn0", netip.MustParsePrefix("198.18.0.1/24")), // already added: no run
		c.AddAddress("mvpn0", netip.MustParsePrefix("2001:db8:1::1/64")),
		c.AddRoute("mvpn0", netip.MustParsePrefix("198.18.5.1/24")), // masked
		c.AddRoute("mvpn0", netip.MustParsePrefix("2001:db8:5::/64")),
		c.DelRoute("mvpn0", netip.MustParsePrefix("198.18.5.0/24")),
		c.DelRoute("mvpn0", netip.MustParsePrefix("198.18.77.0/24")), // not ours: no run
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	err = c.AddRoute("mvpn0", netip.MustParsePrefix("192.0.2.99/32"))
	if err == nil || !strings.Contains(err.Error(), "refused 192.0.2.99/32") {
		t.Fatalf("failing hook: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := c.AddAddress("mvpn0", netip.MustParsePrefix("198.18.0.2/24")); err == nil {
		t.Fatal("AddAddress after Close succeeded")
	}
	want := []string{
		"up mvpn0  ",
		"add-address mvpn0 198.18.0.1/24 4",
		"add-address mvpn0 2001:db8:1::1/64 6",
		"add-route mvpn0 198.18.5.0/24 4",
		"add-route mvpn0 2001:db8:5::/64 6",
		"del-route mvpn0 198.18.5.0/24 4",
		// Close, newest first; the failed route was never added.
		"del-route mvpn0 2001:db8:5::/64 6",
		"del-address mvpn0 2001:db8:1::1/64 6",
		"del-address mvpn0 198.18.0.1/24 4",
	}
	got := readLog(t, log)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("hook runs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestHookMissing(t *testing.T) {
	if _, err := NewConfigurator(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Fatal("missing hook accepted")
	}
}
