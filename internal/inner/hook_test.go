package inner

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHook(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	script := filepath.Join(dir, "hook")
	body := "#!/bin/sh\necho \"$ACTION $VIP $FAMILY $NODE\" >> " + log + "\n[ \"$VIP\" != 198.18.100.66 ] || { echo refused >&2; exit 3; }\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	h := &Hook{Path: script, Node: "gw-a"}
	if err := h.Claim(netip.MustParseAddr("198.18.100.7")); err != nil {
		t.Fatal(err)
	}
	if err := h.Release(netip.MustParseAddr("2001:db8:100::7")); err != nil {
		t.Fatal(err)
	}
	err := h.Claim(netip.MustParseAddr("198.18.100.66"))
	if err == nil || !strings.Contains(err.Error(), "refused") || !strings.Contains(err.Error(), "claim 198.18.100.66") {
		t.Errorf("a failing hook: %v", err)
	}
	got, _ := os.ReadFile(log)
	want := "claim 198.18.100.7 4 gw-a\nrelease 2001:db8:100::7 6 gw-a\nclaim 198.18.100.66 4 gw-a\n"
	if string(got) != want {
		t.Errorf("the hook saw\n%s\nwant\n%s", got, want)
	}
}
