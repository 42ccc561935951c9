package config

import (
	"slices"
	"testing"
)

// TestClientKeys: host names in remote_addrs, kill_switch, dns, and a client's
// dpd_action default (restart; a gateway's stays clear).
func TestClientKeys(t *testing.T) {
	dir := writeFiles(t, map[string]string{"gw.yaml": `
metrics: { listen: "[::1]:9520" }
secrets: [{ ids: [gw.example.org, alice@example.org], psk: s }]
connections:
  home:
    remote_addrs: [vpn.Example.org., 198.51.100.1, vpn2.example.org]
    kill_switch: true
    dns: ignore
    local: { auth: psk, id: alice@example.org }
    remote: { auth: psk, id: gw.example.org }
    children: { net: { remote_ts: [0.0.0.0/0, "::/0"] } }
  rw:
    local: { auth: psk, id: gw.example.org }
    remote: { auth: psk, id: alice@example.org }
    children: { net: {} }
`})
	cfg := mustLoad(t, dir)
	if cfg.Metrics != "[::1]:9520" {
		t.Errorf("metrics.listen %q", cfg.Metrics)
	}
	var home, rw *Connection
	for _, c := range cfg.Connections {
		switch c.Name {
		case "home":
			home = c
		case "rw":
			rw = c
		}
	}
	if !slices.Equal(home.RemoteHosts, []string{"vpn.example.org", "vpn2.example.org"}) || len(home.RemoteAddrs) != 1 || !home.Initiator || home.RemoteAny {
		t.Errorf("remote_addrs: hosts %v addrs %v initiator %v any %v", home.RemoteHosts, home.RemoteAddrs, home.Initiator, home.RemoteAny)
	}
	if !home.KillSwitch || home.DNS != "ignore" || home.DPDAction != "restart" {
		t.Errorf("home: kill_switch %v dns %q dpd_action %q", home.KillSwitch, home.DNS, home.DPDAction)
	}
	if rw.KillSwitch || rw.DNS != "apply" || rw.DPDAction != "clear" {
		t.Errorf("rw: kill_switch %v dns %q dpd_action %q", rw.KillSwitch, rw.DNS, rw.DPDAction)
	}
}
