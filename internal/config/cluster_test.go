package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const clusterGateway = "secrets: [{ ids: [gw.example.org, alice@example.org], psk: s }]\n" +
	"connections:\n  rw:\n" +
	"    local_addrs: [198.51.100.1, 2001:db8:1::1]\n" +
	"    remote_addrs: \"%any\"\n" +
	"    local: { auth: psk, id: gw.example.org }\n" +
	"    remote: { auth: psk, id: \"%any\" }\n" +
	"    children: { net: { local_ts: [198.18.0.0/16] } }\n"

var stateKeyHex = strings.Repeat("ab", 32) + "\n"

func TestClusterSection(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"cluster.key": stateKeyHex,
		"gw.yaml": clusterGateway + "cluster:\n  node: gw-a\n  etcd: { endpoints: [http://198.18.9.1:2379, unix:///run/etcd.sock] }\n" +
			"  state_key_file: cluster.key\n",
	})
	cfg := mustLoad(t, dir)
	c := cfg.Cluster
	if c == nil || c.Node != "gw-a" || c.Prefix != DefaultClusterPrefix || c.LeaseTTL != DefaultLeaseTTL ||
		!slices.Equal(c.Endpoints, []string{"http://198.18.9.1:2379", "unix:///run/etcd.sock"}) || c.StateKeyFile != filepath.Join(dir, "cluster.key") {
		t.Fatalf("cluster: %+v", c)
	}
	// The node's addresses default to the responder connections' local_addrs.
	if !slices.Equal(c.Addrs, []netip.Addr{adr("198.51.100.1"), adr("2001:db8:1::1")}) {
		t.Errorf("addrs: %v", c.Addrs)
	}
	if !c.Failover {
		t.Error("failover is off by default")
	}
	dir = writeFiles(t, map[string]string{
		"cluster.key": strings.Repeat("k", 32), "ca.pem": "x", "node.pem": "x", "node.key": "x",
		"gw.yaml": clusterGateway + "cluster:\n  node: gw-b\n  addrs: [203.0.113.1]\n  lease_ttl: 3s\n" +
			"  etcd: { endpoints: https://198.18.9.1:2379, prefix: /vpn/, tls: { ca: ca.pem, cert: node.pem, key: node.key } }\n" +
			"  state_key_file: cluster.key\n  balance: { enabled: true, interval: 30s, max_skew: 0.5 }\n  failover: false\n",
	})
	c = mustLoad(t, dir).Cluster
	if !slices.Equal(c.Addrs, []netip.Addr{adr("203.0.113.1")}) || c.LeaseTTL != 3*time.Second || c.Prefix != "/vpn/" ||
		c.TLSCA != filepath.Join(dir, "ca.pem") || c.TLSCert == "" || c.TLSKey == "" ||
		c.Balance != (Balance{Enabled: true, Interval: 30 * time.Second, MaxSkew: 0.5}) || c.Failover {
		t.Errorf("cluster: %+v", c)
	}
	if mustLoad(t, writeFiles(t, map[string]string{"gw.yaml": clusterGateway})).Cluster != nil {
		t.Error("a cluster without a cluster section")
	}
	base := clusterGateway + "cluster:\n  node: a\n  etcd: { endpoints: [http://198.18.9.1:2379] }\n  state_key_file: cluster.key\n"
	dir = writeFiles(t, map[string]string{"cluster.key": stateKeyHex, "inner.sh": "#!/bin/sh\n",
		"gw.yaml": base + "  inner: { mode: hook, hook: inner.sh }\n"})
	if err := os.Chmod(filepath.Join(dir, "inner.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	if in := mustLoad(t, dir).Cluster.Inner; in == nil || in.Mode != InnerHook || in.Hook != filepath.Join(dir, "inner.sh") {
		t.Errorf("inner hook: %+v", in)
	}
	dir = writeFiles(t, map[string]string{"cluster.key": stateKeyHex, "gw.yaml": base + "  inner: { mode: arp, interface: lo }\n"})
	if in := mustLoad(t, dir).Cluster.Inner; in == nil || in.Mode != InnerARP || in.Interface != "lo" {
		t.Errorf("inner arp: %+v", in)
	}
}

func TestClusterSectionErrors(t *testing.T) {
	key := map[string]string{"cluster.key": stateKeyHex}
	section := func(body string) string { return clusterGateway + "cluster:\n" + body }
	etcd := "  etcd: { endpoints: [http://198.18.9.1:2379] }\n"
	sk := "  state_key_file: cluster.key\n"
	for _, tc := range []struct {
		name, yaml string
		files      map[string]string
		key, frag  string
	}{
		{"no node", section(etcd + sk), key, "cluster.node", "missing; this node's name"},
		{"bad node", section("  node: gw/a #<\n" + etcd + sk), key, "cluster.node", "no '/' or spaces"},
		{"no etcd", section("  node: a\n" + sk), key, "cluster.etcd", "missing; e.g. { endpoints"},
		{"bad endpoint", section("  node: a\n  etcd: { endpoints: [198.18.9.1:2379] } #<\n" + sk), key, "cluster.etcd.endpoints[0]", "not an etcd client URL"},
		{"bad prefix", section("  node: a\n  etcd: { endpoints: http://e:2379, prefix: vpn } #<\n" + sk), key, "cluster.etcd.prefix", "starts and ends with '/'"},
		{"half tls", section("  node: a\n  etcd: { endpoints: http://e:2379, tls: { ca: cluster.key } } #<\n" + sk), key, "cluster.etcd.tls.cert", "missing; this node's client certificate"},
		{"no state key", section("  node: a\n" + etcd), key, "cluster.state_key_file", "missing; a file of 32 random bytes"},
		{"short state key", section("  node: a\n" + etcd + "  state_key_file: short.key #<\n"), map[string]string{"short.key": "abc"},
			"cluster.state_key_file", "a cluster state key is 32 random bytes"},
		{"lease too short", section("  node: a\n" + etcd + sk + "  lease_ttl: 1s #<\n"), key, "cluster.lease_ttl", "out of range; allowed: 2s..1m0s"},
		{"bad addr", section("  node: a\n  addrs: [gw-a] #<\n" + etcd + sk), key, "cluster.addrs[0]", "not an IP address"},
		{"inner mode", section("  node: a\n" + etcd + sk + "  inner: { mode: garp, interface: lo } #<\n"), key, "cluster.inner.mode", `"garp"; allowed: arp, ndp, hook`},
		{"inner no interface", section("  node: a\n" + etcd + sk + "  inner: { mode: arp } #<\n"), key, "cluster.inner.interface", "missing; mode arp announces on this interface"},
		{"inner no such interface", section("  node: a\n" + etcd + sk + "  inner: { mode: ndp, interface: nonesuch0 } #<\n"), key, "cluster.inner.interface", `"nonesuch0": no such network interface here`},
		{"inner no hook", section("  node: a\n" + etcd + sk + "  inner: { mode: hook } #<\n"), key, "cluster.inner.hook", "missing; mode hook runs this executable"},
		{"inner hook not executable", section("  node: a\n" + etcd + sk + "  inner: { mode: hook, hook: cluster.key } #<\n"), key, "cluster.inner.hook", "is not executable"},
		{"inner hook and interface", section("  node: a\n" + etcd + sk + "  inner: { mode: arp, interface: lo, hook: /bin/sh } #<\n"), key, "cluster.inner.hook", "only with mode hook"},
		{"balance enabled", section("  node: a\n" + etcd + sk + "  balance: { enabled: maybe } #<\n"), key, "cluster.balance.enabled", ""},
		{"balance interval", section("  node: a\n" + etcd + sk + "  balance: { enabled: false, interval: 0s } #<\n"), key, "cluster.balance.interval",
			"out of range; allowed: 1s..1h"},
		{"balance skew", section("  node: a\n" + etcd + sk + "  balance: { max_skew: -1 } #<\n"), key, "cluster.balance.max_skew", ""},
		{"failover", section("  node: a\n" + etcd + sk + "  failover: maybe #<\n"), key, "cluster.failover", ""},
		{"balance key", section("  node: a\n" + etcd + sk + "  balance: { rate: 5 } #<\n"), key, "cluster.balance.rate",
			"unknown key; allowed here: enabled, interval, max_skew"},
	} {
		t.Run(tc.name, func(t *testing.T) { expectConfigError(t, tc.yaml, tc.files, tc.key, tc.frag) })
	}
	// No responder with local_addrs: the addresses must be given.
	initiatorOnly := strings.Replace(clusterGateway, "    local_addrs: [198.51.100.1, 2001:db8:1::1]\n", "", 1)
	expectConfigError(t, initiatorOnly+"cluster:\n  node: a\n"+etcd+sk, key, "cluster.addrs", "no responder connection has local_addrs")
	// A state key readable by others is refused.
	dir := writeFiles(t, map[string]string{"cluster.key": stateKeyHex, "gw.yaml": section("  node: a\n" + etcd + sk)})
	if err := os.Chmod(filepath.Join(dir, "cluster.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(filepath.Join(dir, "gw.yaml")); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Errorf("a world-readable state key: %v", err)
	}
}
