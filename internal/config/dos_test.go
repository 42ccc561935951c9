package config

import (
	"strings"
	"testing"
)

// Issue 11: block_ipv6_prefix and preauth_memory, the limits before authentication.
func TestPreauthKeys(t *testing.T) {
	cfg, err := Parse([]byte(limitsConfig("", "")), "gw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.BlockIPv6Prefix != 64 || cfg.PreauthMemory != 64<<20 {
		t.Errorf("defaults: block_ipv6_prefix %d, preauth_memory %d", cfg.BlockIPv6Prefix, cfg.PreauthMemory)
	}
	cfg, err = Parse([]byte("block_ipv6_prefix: 56\npreauth_memory: 16M\n"+limitsConfig("", "")), "gw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.BlockIPv6Prefix != 56 || cfg.PreauthMemory != 16<<20 {
		t.Errorf("block_ipv6_prefix %d, preauth_memory %d", cfg.BlockIPv6Prefix, cfg.PreauthMemory)
	}
	for _, c := range []struct{ yaml, want string }{
		{"block_ipv6_prefix: 8\n", "gw.yaml:1: block_ipv6_prefix: 8 is out of range; allowed: 16..128"},
		{"block_ipv6_prefix: 129\n", "block_ipv6_prefix: 129 is out of range"},
		{"preauth_memory: 1K\n", "gw.yaml:1: preauth_memory: 1024 bytes is out of range; allowed: 64K..1T"},
		{"preauth_memory: lots\n", `preauth_memory: "lots" is not a number of bytes`},
	} {
		_, err := Parse([]byte(c.yaml+limitsConfig("", "")), "gw.yaml")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.yaml, err, c.want)
		}
	}
}
