package config

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/ike"
	"github.com/mobikevpn/mobikevpn/wire"
	"maps"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeFiles creates files (name -> content) in a new temporary folder and returns it.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func mustLoad(t *testing.T, dir string) *Config {
	t.Helper()
	cfg, err := Load(filepath.Join(dir, "gw.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return cfg
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func adr(s string) netip.Addr   { return netip.MustParseAddr(s) }

// dynTS and rangeTS are selectors as ParseTS returns them.
func dynTS(proto uint8, lo, hi uint16) ike.TSConfig {
	return ike.TSConfig{Dynamic: true, Selector: wire.TrafficSelector{IPProtocol: proto, StartPort: lo, EndPort: hi}}
}

func rangeTS(start, end string, proto uint8, lo, hi uint16) ike.TSConfig {
	typ := wire.TS_IPV6_ADDR_RANGE
	if adr(start).Is4() {
		typ = wire.TS_IPV4_ADDR_RANGE
	}
	return ike.TSConfig{Selector: wire.TrafficSelector{Type: typ, IPProtocol: proto, StartPort: lo, EndPort: hi, Start: adr(start), End: adr(end)}}
}

func TestInterfaceExample(t *testing.T) {
	example, err := os.ReadFile("testdata/interface-example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := writeFiles(t, map[string]string{"gw.yaml": string(example)})
	cfg := mustLoad(t, dir)

	if want := filepath.Join(dir, "gw.yaml"); cfg.Path != want {
		t.Errorf("Path = %q, want %q", cfg.Path, want)
	}
	if cfg.Control != "/run/mobikevpn/gw.sock" || cfg.LogLevel != "info" || cfg.Keylog != "/var/lib/mobikevpn/keys" {
		t.Errorf("control/log_level/keylog = %q %q %q", cfg.Control, cfg.LogLevel, cfg.Keylog)
	}
	if cfg.Ports != (Ports{IKE: 500, NATT: 4500}) {
		t.Errorf("Ports = %+v", cfg.Ports)
	}
	if cfg.TUN.Name != "mvpn0" || cfg.TUN.MTU != 1400 || !reflect.DeepEqual(cfg.TUN.Addrs, []netip.Prefix{pfx("198.18.0.1/24")}) {
		t.Errorf("TUN = %+v", cfg.TUN)
	}
	if len(cfg.Secrets) != 1 || string(cfg.Secrets[0].PSK) != "a long random secret" ||
		!reflect.DeepEqual(cfg.Secrets[0].IDs, []string{"gw.example.org", "alice@example.org"}) {
		t.Errorf("Secrets = %+v", cfg.Secrets)
	}
	wantPool := Pool{Name: "rw", Addrs: []netip.Prefix{pfx("198.18.100.0/24")}, DNS: []netip.Addr{adr("198.18.0.53")}}
	if len(cfg.Pools) != 1 || !reflect.DeepEqual(cfg.Pools[0], wantPool) {
		t.Errorf("Pools = %+v", cfg.Pools)
	}
	if cfg.CookieThreshold != 10 || cfg.HalfOpenTimeout != 30*time.Second || cfg.Retransmit != (Retransmit{4 * time.Second, 5, 1.8}) {
		t.Errorf("defaults: cookie %d half-open %v retransmit %+v", cfg.CookieThreshold, cfg.HalfOpenTimeout, cfg.Retransmit)
	}
	if len(cfg.Connections) != 1 {
		t.Fatalf("%d connections", len(cfg.Connections))
	}
	c := cfg.Connection("home")
	if c == nil || cfg.Connection("nope") != nil {
		t.Fatal("Connection lookup")
	}
	want := &Connection{
		Name:                   "home",
		LocalAddrs:             []netip.Addr{adr("192.0.2.10")},
		RemoteAddrs:            []netip.Addr{adr("198.51.100.1")},
		RemotePort:             500,
		Proposals:              []string{"aes128gcm16-prfsha256-x25519"},
		Mobike:                 true,
		RMobike:                true,
		AdditionalAddrs:        AdditionalAddrs{Mode: AdditionalAuto},
		SwitchAccept:           []string{"additional"},
		SwitchAcceptAdditional: true,
		SwitchLimit:            5,
		SwitchHold:             30 * time.Second,
		RMobikeNotify:          40970,
		Encap:                  true,
		DPDDelay:               30 * time.Second,
		DPDAction:              "restart", // a client's default
		CloseAction:            "none",
		RekeyTime:              4 * time.Hour,
		Pools:                  []string{"rw"},
		VIPs:                   []netip.Addr{adr("0.0.0.0")},
		Local:                  LocalAuth{Auth: "psk", ID: "alice@example.org"},
		Remote:                 RemoteAuth{Auth: "psk", ID: "gw.example.org"},
		StartAction:            "start",
		Initiator:              true,
		MaxChildren:            32,
		DNS:                    "apply",
		Children: []*Child{{
			Name:         "net",
			LocalTS:      []ike.TSConfig{dynTS(0, 0, 0xffff)},
			RemoteTS:     []ike.TSConfig{rangeTS("198.18.0.0", "198.18.255.255", 0, 0, 0xffff)},
			ESPProposals: []string{"aes128gcm16", "chacha20poly1305"},
			RekeyTime:    time.Hour,
		}},
	}
	// The proposals come parsed too: what the engine takes.
	want.IKEProposals, _ = parseProposals(want.Proposals, ikecrypto.ParseIKEProposal)
	want.Children[0].ParsedESP, _ = parseProposals(want.Children[0].ESPProposals, ikecrypto.ParseESPProposal)
	if len(want.IKEProposals) != 1 || len(want.Children[0].ParsedESP) != 2 {
		t.Fatalf("parsed proposals: %v %v", want.IKEProposals, want.Children[0].ParsedESP)
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("connection home:\n got %+v\nwant %+v", c, want)
	}
	if c.Child("net") != c.Children[0] || c.Child("x") != nil {
		t.Error("Child lookup")
	}
	if psk, ok := cfg.PSK("alice@example.org", "gw.example.org"); !ok || string(psk) != "a long random secret" {
		t.Errorf("PSK = %q, %v", psk, ok)
	}
}

func TestInterfaceExamplePubkey(t *testing.T) {
	example, err := os.ReadFile("testdata/interface-example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Switch to the commented pubkey alternatives.
	var lines []string
	for _, l := range strings.Split(string(example), "\n") {
		trimmed := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(trimmed, "local:  {"), strings.HasPrefix(trimmed, "remote: {"):
			continue
		case strings.HasPrefix(trimmed, "# or:   {"):
			l = strings.Replace(l, "# or:   {", "local:  {", 1)
		case strings.HasPrefix(trimmed, "# remote: {"):
			l = strings.Replace(l, "# remote: {", "remote: {", 1)
		}
		lines = append(lines, l)
	}
	text := strings.Join(lines, "\n")
	if strings.Count(text, "auth: pubkey") != 2 {
		t.Fatalf("example changed; pubkey lines not found:\n%s", text)
	}
	// Real (test) certificates: the loader parses them.
	read := func(f string) string {
		b, err := os.ReadFile(filepath.Join("..", "..", "cert", "testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	dir := writeFiles(t, map[string]string{
		"gw.yaml": text, "gw.pem": read("rsa-gw.pem"), "gw.key": read("rsa-gw.key"), "ca.pem": read("rsa-ca.pem"),
	})
	// The example's connection is a client (remote_addrs [198.51.100.1]), and the
	// commented remote round is the gateway's (id "%any"): on a client it would accept
	// any certificate of the CA as the gateway, so it is refused unless the operator
	// says so (issue 11).
	_, err = Load(filepath.Join(dir, "gw.yaml"))
	var ce *Error
	if !errors.As(err, &ce) || ce.Key != "connections.home.remote.id" || !strings.Contains(ce.Msg, "would accept any certificate") {
		t.Fatalf("%%any on a client: %v", err)
	}
	text = strings.Replace(text, `remote: { auth: pubkey, id: "%any", cacerts: [ca.pem] }`, `remote: { auth: pubkey, id: "%any", cacerts: [ca.pem], accept_any_id: true }`, 1)
	if err := os.WriteFile(filepath.Join(dir, "gw.yaml"), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c := mustLoad(t, dir).Connection("home")
	if c.Local.Cred == nil || len(c.Remote.CAs) != 1 || !strings.Contains(c.Local.Cred.Chain[0].Subject.String(), "gw.example.org") {
		t.Fatalf("credentials not loaded: %+v %+v", c.Local, c.Remote)
	}
	c.Local.Cred, c.Remote.CAs = nil, nil
	wantL := LocalAuth{Auth: "pubkey", ID: "CN=gw.example.org", Certs: []string{filepath.Join(dir, "gw.pem")}, Key: filepath.Join(dir, "gw.key")}
	wantR := RemoteAuth{Auth: "pubkey", ID: "%any", CACerts: []string{filepath.Join(dir, "ca.pem")}, AcceptAnyID: true}
	if !reflect.DeepEqual(c.Local, wantL) || !reflect.DeepEqual(c.Remote, wantR) {
		t.Errorf("auth:\n got %+v %+v\nwant %+v %+v", c.Local, c.Remote, wantL, wantR)
	}
	// A certificate file that is not one is a configuration error naming the key.
	os.WriteFile(filepath.Join(dir, "gw.pem"), []byte("not a certificate"), 0o600)
	if _, err := Load(filepath.Join(dir, "gw.yaml")); err == nil || !strings.Contains(err.Error(), "connections.home.local.key") {
		t.Errorf("bad certificate: %v", err)
	}
}

const minimal = `
secrets:
  - ids: [gw.example.org]
    psk: "secret"
connections:
  rw:
    local: { auth: psk, id: gw.example.org }
    remote: { auth: psk }
    children:
      net: {}
`

func TestDefaults(t *testing.T) {
	dir := writeFiles(t, map[string]string{"gw.yaml": minimal})
	cfg := mustLoad(t, dir)
	if cfg.Control != "" || cfg.LogLevel != "info" || cfg.Keylog != "" || cfg.Updown != "" {
		t.Errorf("top-level defaults: %+v", cfg)
	}
	if cfg.Datapath != (Datapath{Workers: 0, UDPOffload: true}) {
		t.Errorf("datapath defaults: %+v", cfg.Datapath)
	}
	if cfg.Ports != (Ports{500, 4500}) || cfg.TUN.Name != "mvpn0" || cfg.TUN.MTU != 1400 || cfg.TUN.Addrs != nil {
		t.Errorf("ports/tun defaults: %+v %+v", cfg.Ports, cfg.TUN)
	}
	c := cfg.Connections[0]
	if !c.RemoteAny || c.Initiator || c.RemoteAddrs != nil || c.LocalAddrs != nil || c.RemotePort != 500 {
		t.Errorf("responder addresses: %+v", c)
	}
	if !reflect.DeepEqual(c.Proposals, []string{"default"}) || !c.Mobike || !c.RMobike || !c.Encap ||
		c.AdditionalAddrs.Mode != "auto" || c.DPDDelay != 30*time.Second || c.RekeyTime != 4*time.Hour ||
		c.DPDAction != "clear" || c.CloseAction != "none" || c.StartAction != "none" {
		t.Errorf("connection defaults: %+v", c)
	}
	if !reflect.DeepEqual(c.SwitchAccept, []string{"additional"}) || !c.SwitchAcceptAdditional || c.SwitchAcceptAny || c.SwitchAcceptPrefixes != nil {
		t.Errorf("switch_accept default: %+v", c)
	}
	if c.SwitchLimit != 5 || c.SwitchHold != 30*time.Second || c.RMobikeNotify != 40970 {
		t.Errorf("switch defaults: limit %d, hold %v, notify %d", c.SwitchLimit, c.SwitchHold, c.RMobikeNotify)
	}
	if c.Remote.ID != "%any" {
		t.Errorf("remote id default %q", c.Remote.ID)
	}
	ch := c.Children[0]
	dyn := []ike.TSConfig{dynTS(0, 0, 0xffff)}
	if ch.Name != "net" || !reflect.DeepEqual(ch.LocalTS, dyn) || !reflect.DeepEqual(ch.RemoteTS, dyn) ||
		!reflect.DeepEqual(ch.ESPProposals, []string{"default"}) || ch.RekeyTime != time.Hour {
		t.Errorf("child defaults: %+v", ch)
	}
}

func TestGoodVariants(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		check func(t *testing.T, cfg *Config, dir string)
	}{
		{
			name: "swanctl style lists, yes/no, %any, psk_file, hex and base64 keys, extensions",
			files: map[string]string{
				"keys/home.psk": "from a file\n",
				"updown.sh":     "#!/bin/sh\n",
				"gw.yaml": `
control: run/gw.sock
updown: updown.sh
cookie_threshold: 0
half_open_timeout: 1m
retransmit: { timeout: 2s, tries: 3, base: 2 }
datapath: { workers: 1, udp_offload: no }
tun: { addrs: "198.18.0.1/24, 2001:db8::1/64", mtu: 1280 }
secrets:
  - ids: alice@example.org
    psk_file: keys/home.psk
  - ids: [bob@example.org]
    psk: 0x01ff
  - ids: [carol@example.org]
    psk: 0sAQID
pools:
  - name: v4
    addrs: [198.18.100.0/24, 198.18.101.0/24]
  - name: v6
    addrs: 2001:db8:1::/64
    dns: 2001:db8::53
connections:
  home:
    local_addrs: 192.0.2.10, 2001:db8::10
    remote_addrs: "198.51.100.1,198.51.100.2"
    remote_port: 4500
    proposals: aes256gcm16-prfsha384-ecp384, default
    mobike: yes
    rmobike: no
    encap: off
    additional_addrs: [203.0.113.5, 2001:db8::5]
    switch_accept: [any, 203.0.113.0/24, 2001:db8::7]
    switch_limit: 1
    switch_hold: 0s
    rmobike_notify: 65535
    dpd_delay: 0s
    dpd_action: restart
    close_action: restart
    rekey_time: 0
    vips: [0.0.0.0, "::"]
    local: { auth: psk, id: alice@example.org }
    remote: { auth: psk, id: gw.example.org }
    start_action: start
    children:
      a:
        local_ts: dynamic[udp/53]
        remote_ts: [10.0.0.0/8, "10.1.0.1-10.1.0.9[tcp/1024-2048]", "2001:db8::/32[icmpv6/128]", "[udp]"]
        esp_proposals: aes256gcm16-esn
        rekey_time: 20m
      b:
  gw:
    remote_addrs: "%any"
    local_addrs: "%any"
    pools: [v4, v6]
    mobike: false
    additional_addrs: none
    switch_accept: []
    local: { auth: psk, id: carol@example.org }
    remote: { auth: psk, id: "%any" }
    children: { net: { local_ts: 0.0.0.0/0 } }
`},
			check: func(t *testing.T, cfg *Config, dir string) {
				if cfg.Control != filepath.Join(dir, "run/gw.sock") || cfg.Updown != filepath.Join(dir, "updown.sh") {
					t.Errorf("relative paths: %q %q", cfg.Control, cfg.Updown)
				}
				if cfg.CookieThreshold != 0 || cfg.HalfOpenTimeout != time.Minute || cfg.Retransmit != (Retransmit{2 * time.Second, 3, 2}) {
					t.Errorf("extensions: %d %v %+v", cfg.CookieThreshold, cfg.HalfOpenTimeout, cfg.Retransmit)
				}
				if cfg.Datapath != (Datapath{Workers: 1, UDPOffload: false}) {
					t.Errorf("datapath: %+v", cfg.Datapath)
				}
				if !reflect.DeepEqual(cfg.TUN.Addrs, []netip.Prefix{pfx("198.18.0.1/24"), pfx("2001:db8::1/64")}) || cfg.TUN.MTU != 1280 {
					t.Errorf("tun: %+v", cfg.TUN)
				}
				for i, want := range [][]byte{[]byte("from a file"), {1, 0xff}, {1, 2, 3}} {
					if string(cfg.Secrets[i].PSK) != string(want) {
						t.Errorf("secret %d = %x, want %x", i, cfg.Secrets[i].PSK, want)
					}
				}
				if !reflect.DeepEqual(cfg.Pools[1], Pool{Name: "v6", Addrs: []netip.Prefix{pfx("2001:db8:1::/64")}, DNS: []netip.Addr{adr("2001:db8::53")}}) {
					t.Errorf("pool v6: %+v", cfg.Pools[1])
				}
				c := cfg.Connection("home")
				if !reflect.DeepEqual(c.LocalAddrs, []netip.Addr{adr("192.0.2.10"), adr("2001:db8::10")}) ||
					!reflect.DeepEqual(c.RemoteAddrs, []netip.Addr{adr("198.51.100.1"), adr("198.51.100.2")}) ||
					c.RemoteAny || !c.Initiator || c.RemotePort != 4500 {
					t.Errorf("home addresses: %+v", c)
				}
				if !reflect.DeepEqual(c.Proposals, []string{"aes256gcm16-prfsha384-ecp384", "default"}) ||
					!c.Mobike || c.RMobike || c.Encap || c.DPDDelay != 0 || c.RekeyTime != 0 ||
					c.DPDAction != "restart" || c.CloseAction != "restart" {
					t.Errorf("home settings: %+v", c)
				}
				if !reflect.DeepEqual(c.AdditionalAddrs, AdditionalAddrs{Mode: "list", Addrs: []netip.Addr{adr("203.0.113.5"), adr("2001:db8::5")}}) {
					t.Errorf("additional: %+v", c.AdditionalAddrs)
				}
				if !reflect.DeepEqual(c.SwitchAccept, []string{"any", "203.0.113.0/24", "2001:db8::7"}) || !c.SwitchAcceptAny || c.SwitchAcceptAdditional ||
					!reflect.DeepEqual(c.SwitchAcceptPrefixes, []netip.Prefix{pfx("203.0.113.0/24"), pfx("2001:db8::7/128")}) {
					t.Errorf("switch_accept: %+v", c)
				}
				if c.SwitchLimit != 1 || c.SwitchHold != 0 || c.RMobikeNotify != 65535 {
					t.Errorf("home switch settings: limit %d, hold %v, notify %d", c.SwitchLimit, c.SwitchHold, c.RMobikeNotify)
				}
				if !reflect.DeepEqual(c.VIPs, []netip.Addr{adr("0.0.0.0"), adr("::")}) {
					t.Errorf("vips: %v", c.VIPs)
				}
				a := c.Child("a")
				if !reflect.DeepEqual(a.LocalTS, []ike.TSConfig{dynTS(17, 53, 53)}) {
					t.Errorf("a.local_ts: %+v", a.LocalTS)
				}
				wantR := []ike.TSConfig{
					rangeTS("10.0.0.0", "10.255.255.255", 0, 0, 0xffff),
					rangeTS("10.1.0.1", "10.1.0.9", 6, 1024, 2048),
					rangeTS("2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 58, 128<<8, 128<<8|0xff),
					dynTS(17, 0, 0xffff),
				}
				if !reflect.DeepEqual(a.RemoteTS, wantR) {
					t.Errorf("a.remote_ts:\n got %+v\nwant %+v", a.RemoteTS, wantR)
				}
				if !reflect.DeepEqual(a.ESPProposals, []string{"aes256gcm16-esn"}) || a.RekeyTime != 20*time.Minute {
					t.Errorf("child a: %+v", a)
				}
				if b := c.Child("b"); b == nil || b.RekeyTime != time.Hour {
					t.Errorf("child b (null body) should take defaults: %+v", b)
				}
				g := cfg.Connection("gw")
				if !g.RemoteAny || g.Initiator || g.LocalAddrs != nil || g.Mobike || g.RMobike ||
					g.AdditionalAddrs.Mode != "none" || len(g.SwitchAccept) != 0 || g.SwitchAcceptAdditional ||
					!reflect.DeepEqual(g.Pools, []string{"v4", "v6"}) {
					t.Errorf("gw: %+v", g)
				}
				if names := []string{cfg.Connections[0].Name, cfg.Connections[1].Name}; !reflect.DeepEqual(names, []string{"home", "gw"}) {
					t.Errorf("file order lost: %v", names)
				}
			},
		},
	}
	tests = append(tests, struct {
		name  string
		files map[string]string
		check func(t *testing.T, cfg *Config, dir string)
	}{
		name: "switch settings: R-MOBIKE, rmobike: false, and mobike: false with rmobike: false",
		files: map[string]string{"gw.yaml": `
secrets: [{ ids: [gw.example.org], psk: s }]
connections:
  rm:
    switch_limit: 1000
    switch_hold: 2m30s
    rmobike_notify: 40970
    local: { auth: psk, id: gw.example.org }
    remote: { auth: psk }
    children: { net: {} }
  off:
    rmobike: false
    switch_accept: none
    switch_limit: 3
    switch_hold: 1s
    rmobike_notify: 50000
    local: { auth: psk, id: gw.example.org }
    remote: { auth: psk }
    children: { net: {} }
  nomobike:
    mobike: false
    rmobike: false
    additional_addrs: none
    switch_limit: 7
    switch_hold: 0s
    rmobike_notify: 41000
    local: { auth: psk, id: gw.example.org }
    remote: { auth: psk }
    children: { net: {} }
`},
		check: func(t *testing.T, cfg *Config, dir string) {
			for _, w := range []struct {
				name       string
				mobike, rm bool
				limit      int
				hold       time.Duration
				notify     uint16
			}{
				{"rm", true, true, 1000, 150 * time.Second, 40970},
				{"off", true, false, 3, time.Second, 50000},
				{"nomobike", false, false, 7, 0, 41000},
			} {
				c := cfg.Connection(w.name)
				if c.Mobike != w.mobike || c.RMobike != w.rm || c.SwitchLimit != w.limit || c.SwitchHold != w.hold || c.RMobikeNotify != w.notify {
					t.Errorf("%s: mobike %v, rmobike %v, limit %d, hold %v, notify %d", w.name, c.Mobike, c.RMobike, c.SwitchLimit, c.SwitchHold, c.RMobikeNotify)
				}
			}
			if off := cfg.Connection("off"); len(off.SwitchAccept) != 0 || off.SwitchAcceptAdditional || off.SwitchAcceptAny || off.SwitchAcceptPrefixes != nil {
				t.Errorf("switch_accept: none: %+v", off)
			}
		},
	})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, tc.files)
			tc.check(t, mustLoad(t, dir), dir)
		})
	}
}

func TestMergeKeys(t *testing.T) {
	dir := writeFiles(t, map[string]string{"gw.yaml": `
secrets: [{ ids: [a.example.org], psk: x }]
connections:
  one: &base
    local: { auth: psk, id: a.example.org }
    remote: { auth: psk }
    dpd_delay: 7s
    children: { net: { remote_ts: [198.18.0.0/16] } }
  two:
    <<: *base
    dpd_delay: 5s
    children: { other: {} }
  three:
    <<: [*base]
    local: { auth: psk, id: b.example.org }
`})
	cfg := mustLoad(t, dir)
	one, two, three := cfg.Connection("one"), cfg.Connection("two"), cfg.Connection("three")
	if one.DPDDelay != 7*time.Second || two.DPDDelay != 5*time.Second || three.DPDDelay != 7*time.Second {
		t.Errorf("dpd: %v %v %v", one.DPDDelay, two.DPDDelay, three.DPDDelay)
	}
	if two.Children[0].Name != "other" || three.Children[0].Name != "net" || two.Local.ID != "a.example.org" || three.Local.ID != "b.example.org" {
		t.Errorf("merge: %+v %+v", two, three)
	}
}

// TestBadConfigs: each case marks the line the error must name with "#<".
func TestBadConfigs(t *testing.T) {
	const head = "secrets: [{ ids: [gw.example.org, alice@example.org], psk: s }]\n"
	conn := func(body string) string {
		return head + "connections:\n  home:\n" +
			"    remote_addrs: [198.51.100.1]\n" +
			"    local: { auth: psk, id: alice@example.org }\n" +
			"    remote: { auth: psk, id: gw.example.org }\n" + body
	}
	child := func(body string) string { return conn("    children:\n      net:\n" + body) }
	ok := "    children: { net: {} }\n"
	tests := []struct {
		name, yaml string
		files      map[string]string
		key, frag  string
	}{
		{"unknown algorithm", child("        esp_proposals: [aes128gcm16,\n          aes999] #<\n"),
			nil, "connections.home.children.net.esp_proposals[1]", `unknown algorithm "aes999"`},
		{"bad ike proposal", conn("    proposals: [aes128gcm16-prfsha256-x9] #<\n" + ok),
			nil, "connections.home.proposals[0]", `proposal "aes128gcm16-prfsha256-x9": unknown algorithm "x9" (strongSwan proposal syntax`},
		{"prf in esp", child("        esp_proposals: aes128gcm16-prfsha256 #<\n"), nil, "connections.home.children.net.esp_proposals", `"prfsha256" is not allowed in an ESP proposal`},
		{"cbc without integrity", conn("    proposals: [aes128-prfsha256-x25519] #<\n" + ok), nil, "connections.home.proposals[0]", "needs an integrity algorithm"},
		{"no proposals", conn("    proposals: [] #<\n" + ok), nil, "connections.home.proposals", "at least one proposal"},
		{"unknown top key", head + "contrl: /x #<\n", nil, "contrl", "unknown key; allowed here: control, log_level"},
		{"unknown connection key", conn("    mobik: true #<\n" + ok), nil, "connections.home.mobik", "unknown key; allowed here: local_addrs"},
		{"unknown child key", child("        remote_tss: [0.0.0.0/0] #<\n"), nil, "connections.home.children.net.remote_tss", "unknown key; allowed here: local_ts, remote_ts"},
		{"unknown auth key", head + "connections:\n  home:\n    local: { auth: psk, id: a, cert: x } #<\n", nil, "connections.home.local.cert", "allowed here: auth, id, eap_id, certs, key"},
		{"duplicate key", conn("    dpd_delay: 1s\n    dpd_delay: 2s #<\n" + ok), nil, "connections.home.dpd_delay", "duplicate key (first at line"},
		{"ports equal", "ports: { ike: 4500,\n  natt: 4500 } #<\n", nil, "ports.natt", "the two ports must differ"},
		{"port zero", "ports: { ike: 0 } #<\n", nil, "ports.ike", "out of range; allowed: 1..65535"},
		{"port too big", "ports:\n  natt: 70000 #<\n", nil, "ports.natt", "70000 is out of range"},
		{"port not int", "ports:\n  ike: five #<\n", nil, "ports.ike", `"five" is not an integer`},
		{"remote_port zero", conn("    remote_port: 0 #<\n" + ok), nil, "connections.home.remote_port", "allowed: 1..65535"},
		{"mtu small", "tun:\n  mtu: 100 #<\n", nil, "tun.mtu", "allowed: 576..9000"},
		{"mtu text", "tun:\n  mtu: big #<\n", nil, "tun.mtu", "not an integer"},
		{"mtu ipv6", "tun:\n  mtu: 1000 #<\n  addrs: [2001:db8::1/64]\n", nil, "tun.mtu", "below 1280, the IPv6 minimum"},
		{"tun addr without length", "tun:\n  addrs: [198.18.0.1] #<\n", nil, "tun.addrs[0]", "needs a prefix length, e.g. 198.18.0.1/32"},
		{"tun name", "tun:\n  name: a/b #<\n", nil, "tun.name", "not a valid interface name"},
		{"tun is list", "tun: #<\n  - a\n", nil, "tun", "expected a mapping (name, mtu, addrs), got a list"},
		{"log level", "log_level: verbose #<\n", nil, "log_level", `"verbose" is not allowed; use one of: debug, info, warn, error`},
		{"psk and psk_file", "secrets:\n  - ids: [a]\n    psk: x\n    psk_file: f #<\n", nil, "secrets[0].psk_file", "either psk or psk_file, not both"},
		{"no psk", "secrets:\n  - ids: [a] #<\n", nil, "secrets[0]", "missing psk or psk_file"},
		{"psk_file missing", "secrets:\n  - ids: [a]\n    psk_file: nope.psk #<\n", nil, "secrets[0].psk_file", "no such file"},
		{"psk_file empty", "secrets:\n  - ids: [a]\n    psk_file: empty.psk #<\n", map[string]string{"empty.psk": "\n"}, "secrets[0].psk_file", "is empty"},
		{"psk bad hex", "secrets:\n  - psk: 0xzz #<\n", nil, "secrets[0].psk", "starts with 0x but is not hex"},
		{"psk empty", "secrets:\n  - psk: \"\" #<\n", nil, "secrets[0].psk", "must not be empty"},
		{"secrets not list", "secrets: { psk: x } #<\n", nil, "secrets", "expected a list"},
		{"pool duplicate", "pools:\n  - { name: rw, addrs: 198.18.0.0/24 }\n  - { name: rw, addrs: 198.18.1.0/24 } #<\n", nil, "pools[1].name", `a pool named "rw" is already defined`},
		{"pool host bits", "pools:\n  - name: rw\n    addrs: 198.18.100.1/24 #<\n", nil, "pools[0].addrs", "did you mean 198.18.100.0/24"},
		{"pool overlap", "pools:\n  - name: rw\n    addrs: [198.18.0.0/16,\n      198.18.100.0/24] #<\n", nil, "pools[0].addrs[1]", "overlaps 198.18.0.0/16"},
		{"pools overlap", "pools:\n  - { name: a, addrs: [198.18.0.0/24] }\n  - name: b\n    addrs: [2001:db8::/64,\n      198.18.0.128/25] #<\n", nil, "pools[1].addrs[1]", `198.18.0.128/25 overlaps 198.18.0.0/24 of pool "a"`},
		{"pool without addrs", "pools:\n  - name: rw #<\n", nil, "pools[0].addrs", "missing"},
		{"pool bad name", "pools:\n  - name: r w #<\n    addrs: 198.18.0.0/24\n", nil, "pools[0].name", "not a valid name"},
		{"unknown pool", conn("    pools: [rw] #<\n" + ok), nil, "connections.home.pools[0]", `no pool named "rw" in pools (none are defined)`},
		{"responder start", head + "connections:\n  home:\n    remote_addrs: \"%any\"\n    start_action: start #<\n    local: { auth: psk, id: gw.example.org }\n    remote: { auth: psk }\n" + ok,
			nil, "connections.home.start_action", "a responder (remote_addrs %any or empty) cannot start"},
		{"start_action trap", conn("    start_action: trap #<\n" + ok), nil, "connections.home.start_action", "use one of: start, none"},
		{"no matching secret", "secrets: [{ ids: [x.example.org], psk: s }]\nconnections:\n  home: #<\n    local: { auth: psk, id: a }\n    remote: { auth: psk, id: b }\n" + ok,
			nil, "connections.home", `no entry in secrets has an id matching the local id "a" or the remote id "b"`},
		{"psk without id", head + "connections:\n  home:\n    local: { auth: psk } #<\n    remote: { auth: psk }\n" + ok, nil, "connections.home.local.id", "psk authentication needs our identity"},
		{"local id any", head + "connections:\n  home:\n    local: { auth: psk,\n      id: \"%any\" } #<\n", nil, "connections.home.local.id", "must be concrete"},
		{"auth missing", head + "connections:\n  home:\n    local: { id: a } #<\n", nil, "connections.home.local.auth", "missing; use psk, pubkey, eap-mschapv2, eap-tls"},
		{"auth unknown", head + "connections:\n  home:\n    local: { auth: eap } #<\n", nil, "connections.home.local.auth", `"eap" is not allowed; use one of: psk, pubkey`},
		{"pubkey without certs", head + "connections:\n  home:\n    local: { auth: pubkey, key: k } #<\n", nil, "connections.home.local.certs", "needs our certificate"},
		{"pubkey cert missing", head + "connections:\n  home:\n    local:\n      auth: pubkey\n      certs: [gw.pem] #<\n      key: gw.key\n", nil, "connections.home.local.certs[0]", "gw.pem: no such file"},
		{"pubkey key missing", head + "connections:\n  home:\n    local:\n      auth: pubkey\n      certs: [gw.pem]\n      key: gw.key #<\n", map[string]string{"gw.pem": "x"}, "connections.home.local.key", "gw.key: no such file"},
		{"pubkey key is dir", head + "connections:\n  home:\n    local:\n      auth: pubkey\n      certs: [gw.pem]\n      key: keys #<\n", map[string]string{"gw.pem": "x", "keys/k": "x"}, "connections.home.local.key", "is a folder"},
		{"psk with certs", head + "connections:\n  home:\n    local:\n      auth: psk\n      id: a\n      certs: [gw.pem] #<\n", nil, "connections.home.local.certs", "only used with auth: pubkey"},
		{"remote pubkey without cacerts", head + "connections:\n  home:\n    local: { auth: psk, id: a }\n    remote: { auth: pubkey } #<\n", nil, "connections.home.remote.cacerts", "CA certificate"},
		{"local missing", head + "connections:\n  home: #<\n    remote: { auth: psk }\n", nil, "connections.home.local", "missing"},
		{"children missing", conn(""), nil, "connections.home.children", "at least one child"},
		{"children empty", conn("    children: {} #<\n"), nil, "connections.home.children", "no children"},
		{"children list", conn("    children: [net] #<\n"), nil, "connections.home.children", "expected a mapping"},
		{"no connections key", head + "log_level: info\n", nil, "connections", "missing; define at least one connection"},
		{"connections empty", head + "connections: {} #<\n", nil, "connections", "no connections"},
		{"bad connection name", head + "connections:\n  \"my conn\": #<\n    local: {auth: psk}\n", nil, `connections.my conn`, "not a valid connection name"},
		{"dpd negative", conn("    dpd_delay: -5s #<\n" + ok), nil, "connections.home.dpd_delay", "-5s is negative"},
		{"dpd no unit", conn("    dpd_delay: 30 #<\n" + ok), nil, "connections.home.dpd_delay", `"30" is not a duration; use a Go duration such as 30s`},
		{"child rekey", child("        rekey_time: 1x #<\n"), nil, "connections.home.children.net.rekey_time", "not a duration"},
		{"dpd_action trap", conn("    dpd_action: trap #<\n" + ok), nil, "connections.home.dpd_action", "use one of: clear, restart, none"},
		{"ts host bits", child("        local_ts: [10.0.0.1/8] #<\n"), nil, "connections.home.children.net.local_ts[0]", "did you mean 10.0.0.0/8"},
		{"ts bad port", child("        remote_ts: [\"0.0.0.0/0[tcp/99999]\"] #<\n"), nil, "connections.home.children.net.remote_ts[0]", `bad port "99999"`},
		{"ts port without proto", child("        remote_ts: \"0.0.0.0/0[/53]\" #<\n"), nil, "connections.home.children.net.remote_ts", "needs a protocol"},
		{"ts empty list", child("        remote_ts: [] #<\n"), nil, "connections.home.children.net.remote_ts", "at least one traffic selector"},
		{"remote addr bad hostname", head + "connections:\n  home:\n    remote_addrs: [198.51.100.1,\n      vpn_gw.example.org] #<\n",
			nil, "connections.home.remote_addrs[1]", `"vpn_gw.example.org" is neither an IP address nor a valid host name`},
		{"remote addr numeric hostname", head + "connections:\n  home:\n    remote_addrs: [198.51.100.300] #<\n",
			nil, "connections.home.remote_addrs[0]", `"198.51.100.300" is neither an IP address nor a valid host name`},
		{"remote host twice", head + "connections:\n  home:\n    remote_addrs: [vpn.example.org,\n      VPN.example.org.] #<\n",
			nil, "connections.home.remote_addrs[1]", "vpn.example.org is listed twice"},
		{"metrics bad listen", conn(ok) + "metrics: { listen: localhost:9520 } #<\n", nil, "metrics.listen", "is not an address and port"},
		{"metrics no listen", conn(ok) + "metrics: {} #<\n", nil, "metrics.listen", "missing; e.g. listen: 127.0.0.1:9520"},
		{"kill_switch on responder", head + "connections:\n  home:\n    kill_switch: true #<\n", nil, "connections.home.kill_switch", "kill_switch is a client setting"},
		{"dns bad", head + "connections:\n  home:\n    remote_addrs: [198.51.100.1]\n    dns: maybe #<\n", nil, "connections.home.dns", "use one of: apply, ignore"},
		{"remote any mixed", head + "connections:\n  home:\n    remote_addrs: [198.51.100.1, \"%any\"] #<\n", nil, "connections.home.remote_addrs[1]", "%any must be the only entry"},
		{"local addr unspecified", head + "connections:\n  home:\n    local_addrs: 0.0.0.0 #<\n", nil, "connections.home.local_addrs", "unspecified address"},
		{"local addr twice", head + "connections:\n  home:\n    local_addrs: [192.0.2.1, 192.0.2.1] #<\n", nil, "connections.home.local_addrs[1]", "listed twice"},
		{"vips on responder", head + "connections:\n  home:\n    vips: [0.0.0.0] #<\n", nil, "connections.home.vips", "only an initiator"},
		{"vip not address", conn("    vips: [any] #<\n" + ok), nil, "connections.home.vips[0]", `"any" is not an IP address`},
		{"switch_accept bad", conn("    switch_accept: [additional, sometimes] #<\n" + ok), nil, "connections.home.switch_accept[1]", "use additional, any, a CIDR prefix or an address"},
		{"switch_accept host bits", conn("    switch_accept: [203.0.113.1/24] #<\n" + ok), nil, "connections.home.switch_accept[0]", "did you mean 203.0.113.0/24"},
		{"additional bad", conn("    additional_addrs: maybe #<\n" + ok), nil, "connections.home.additional_addrs", `"maybe" is not allowed; use auto, none or a list of IP addresses`},
		{"additional without mobike", conn("    mobike: false\n    additional_addrs: auto #<\n" + ok), nil, "connections.home.additional_addrs", "only announced with MOBIKE"},
		{"rmobike without mobike", conn("    mobike: false\n    rmobike: true #<\n" + ok), nil, "connections.home.rmobike", "rmobike needs mobike"},
		{"switch_limit zero", conn("    switch_limit: 0 #<\n" + ok), nil, "connections.home.switch_limit", "0 is out of range; allowed: 1..1000"},
		{"switch_limit too big", conn("    switch_limit: 1001 #<\n" + ok), nil, "connections.home.switch_limit", "1001 is out of range; allowed: 1..1000"},
		{"switch_limit negative", conn("    switch_limit: -1 #<\n" + ok), nil, "connections.home.switch_limit", "-1 is out of range; allowed: 1..1000"},
		{"switch_limit text", conn("    switch_limit: many #<\n" + ok), nil, "connections.home.switch_limit", `"many" is not an integer; allowed: 1..1000`},
		{"switch_limit fraction", conn("    switch_limit: 2.5 #<\n" + ok), nil, "connections.home.switch_limit", `"2.5" is not an integer`},
		{"switch_limit list", conn("    switch_limit: [5] #<\n" + ok), nil, "connections.home.switch_limit", "expected an integer, got a list"},
		{"switch_hold negative", conn("    switch_hold: -1s #<\n" + ok), nil, "connections.home.switch_hold", "-1s is negative"},
		{"switch_hold no unit", conn("    switch_hold: 30 #<\n" + ok), nil, "connections.home.switch_hold", `"30" is not a duration; use a Go duration such as 30s`},
		{"rmobike_notify libreswan", conn("    rmobike_notify: 40969 #<\n" + ok), nil, "connections.home.rmobike_notify",
			"40969 is out of range; allowed: 40970..65535: the private-use status range starts at 40960, but 40960-40969 are used by libreswan and strongSwan"},
		{"rmobike_notify strongswan", conn("    rmobike_notify: 40960 #<\n" + ok), nil, "connections.home.rmobike_notify", "40960-40969 are used by libreswan and strongSwan"},
		{"rmobike_notify IANA", conn("    rmobike_notify: 16402 #<\n" + ok), nil, "connections.home.rmobike_notify", "private-use status range starts at 40960"},
		{"rmobike_notify zero", conn("    rmobike_notify: 0 #<\n" + ok), nil, "connections.home.rmobike_notify", "allowed: 40970..65535"},
		{"rmobike_notify too big", conn("    rmobike_notify: 65536 #<\n" + ok), nil, "connections.home.rmobike_notify", "65536 is out of range; allowed: 40970..65535"},
		{"rmobike_notify text", conn("    rmobike_notify: switch #<\n" + ok), nil, "connections.home.rmobike_notify", `"switch" is not an integer; allowed: 40970..65535`},
		{"switch_limit without mobike", conn("    mobike: false\n    switch_limit: 3 #<\n" + ok), nil, "connections.home.switch_limit", "switch_limit needs MOBIKE"},
		{"switch_hold without mobike", conn("    mobike: false\n    switch_hold: 10s #<\n" + ok), nil, "connections.home.switch_hold", "switch_hold needs MOBIKE"},
		{"rmobike_notify without mobike", conn("    mobike: false\n    rmobike_notify: 41000 #<\n" + ok), nil, "connections.home.rmobike_notify",
			"rmobike_notify needs MOBIKE: it is a setting of SWITCH_TO_IP_ADDRESS (R-MOBIKE), which works only over MOBIKE; set mobike: true or drop rmobike_notify"},
		{"switch settings without mobike, rmobike true", conn("    mobike: false\n    rmobike: true #<\n    switch_limit: 3\n" + ok), nil, "connections.home.rmobike", "rmobike needs mobike"},
		{"bool", conn("    encap: maybe #<\n" + ok), nil, "connections.home.encap", `"maybe" is not a boolean; use true or false`},
		{"retransmit base", "retransmit:\n  base: 0.5 #<\n", nil, "retransmit.base", "out of range; allowed: 1..10"},
		{"retransmit timeout zero", "retransmit: { timeout: 0s } #<\n", nil, "retransmit.timeout", "must be more than 0"},
		{"datapath workers", "datapath: { workers: 17 } #<\n", nil, "datapath.workers", "out of range; allowed: 0..16"},
		{"datapath offload", "datapath:\n  udp_offload: sometimes #<\n", nil, "datapath.udp_offload", "not a boolean"},
		{"datapath unknown", "datapath:\n  threads: 2 #<\n", nil, "datapath.threads", "unknown"},
		{"half open zero", "half_open_timeout: 0s #<\n", nil, "half_open_timeout", "must be more than 0"},
		{"cookie negative", "cookie_threshold: -1 #<\n", nil, "cookie_threshold", "out of range"},
		{"updown missing", "updown: hook.sh #<\n", nil, "updown", "hook.sh: no such file"},
		{"control too long", "control: /" + strings.Repeat("x", 120) + " #<\n", nil, "control", "limited to 103 bytes"},
		{"yaml syntax", "tun:\n  name: a #<\n name: b\n", nil, "", "YAML syntax"},
		{"two documents", head + "--- #<\nlog_level: info\n", nil, "", "more than one YAML document"},
		{"empty file", "", nil, "", "the file is empty"},
		{"top is list", "- a #<\n", nil, "", "expected a mapping"},
		{"string expected", "control: [a] #<\n", nil, "control", "expected a string, got a list"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { expectConfigError(t, tc.yaml, tc.files, tc.key, tc.frag) })
	}
}

// expectConfigError loads yaml (as gw.yaml, with files beside it) and expects an error
// at key, on the line marked "#<" (if any), whose message contains frag.
func expectConfigError(t *testing.T, yaml string, extra map[string]string, key, frag string) {
	t.Helper()
	files := map[string]string{"gw.yaml": yaml}
	for k, v := range extra {
		files[k] = v
	}
	dir := writeFiles(t, files)
	path := filepath.Join(dir, "gw.yaml")
	_, err := Load(path)
	if err == nil {
		t.Fatalf("Load succeeded; want error at %s", key)
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is %T, not *Error", err, err)
	}
	wantLine := 0
	for i, l := range strings.Split(yaml, "\n") {
		if strings.HasSuffix(l, "#<") {
			wantLine = i + 1
		}
	}
	if ce.File != path || ce.Key != key || (wantLine != 0 && ce.Line != wantLine) {
		t.Errorf("error at %s:%d: %q, want %s:%d: %q (%v)", ce.File, ce.Line, ce.Key, path, wantLine, key, err)
	}
	if !strings.Contains(ce.Msg, frag) {
		t.Errorf("message %q lacks %q", ce.Msg, frag)
	}
}

func TestErrorFormat(t *testing.T) {
	data := []byte(`connections:
  home:
    children:
      net:
        esp_proposals: [aes128gcm16, aes999]
`)
	_, err := Parse(data, "gw.yaml")
	// local and remote are checked before children, so the missing local comes first.
	if err == nil || err.Error() != "gw.yaml:2: connections.home.local: missing; e.g. local: { auth: psk, id: alice@example.org }" {
		t.Errorf("got %v", err)
	}
	data = []byte(`secrets: [{psk: x}]
connections:
  home:
    local: {auth: psk, id: a}
    remote: {auth: psk}
    children:
      net:
        esp_proposals: [aes128gcm16, aes999]
`)
	want := `gw.yaml:8: connections.home.children.net.esp_proposals[1]: unknown algorithm "aes999" (strongSwan proposal syntax, e.g. aes128gcm16, chacha20poly1305, aes128-sha256-x25519 or default)`
	if _, err := Parse(data, "gw.yaml"); err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{File: "a.yaml", Line: 3, Key: "k", Msg: "m"}, "a.yaml:3: k: m"},
		{Error{File: "a.yaml", Msg: "m"}, "a.yaml: m"},
		{Error{Line: 2, Msg: "m"}, "config:2: m"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.e, got, tc.want)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	var ce *Error
	if !errors.As(err, &ce) || !strings.Contains(ce.Msg, "no such file") || !strings.HasSuffix(ce.File, "nope.yaml") {
		t.Errorf("got %v", err)
	}
}

func TestPSKMatching(t *testing.T) {
	cfg := &Config{Secrets: []Secret{
		{IDs: []string{"gw.example.org"}, PSK: []byte("gw-only")},
		{IDs: []string{"gw.example.org", "alice@example.org"}, PSK: []byte("gw-alice")},
		{IDs: []string{"*@example.org"}, PSK: []byte("wild")},
		{IDs: []string{"Carol@Example.org"}, PSK: []byte("carol")},
		{IDs: []string{"%any"}, PSK: []byte("any")},
	}}
	tests := []struct {
		local, remote, want string
	}{
		{"gw.example.org", "alice@example.org", "gw-alice"}, // both sides beat one
		{"alice@example.org", "gw.example.org", "gw-alice"}, // order does not matter
		{"gw.example.org", "bob@example.org", "gw-only"},    // 20+0 twice, wildcard 0+19: the first best wins
		{"bob@example.org", "gw.example.org", "gw-only"},    // same with the sides swapped
		{"mallory@example.org", "x", "wild"},                // only the wildcard matches
		{"carol@example.org", "x", "carol"},                 // case-insensitive exact beats wildcard
		{"x.example.net", "y.example.net", "any"},           // only %any entry matches
		{"gw.example.org", "%any", "gw-only"},               // %any adds 1 to every entry
		{"y.example.net", "%any", "any"},
	}
	for _, tc := range tests {
		got, ok := cfg.PSK(tc.local, tc.remote)
		if !ok || string(got) != tc.want {
			t.Errorf("PSK(%q, %q) = %q, %v; want %q", tc.local, tc.remote, got, ok, tc.want)
		}
	}
	// The returned key is a copy.
	k, _ := cfg.PSK("gw.example.org", "alice@example.org")
	k[0] = 'X'
	if string(cfg.Secrets[1].PSK) != "gw-alice" {
		t.Error("PSK returned the stored slice")
	}
	strict := &Config{Secrets: []Secret{{IDs: []string{"gw.example.org"}, PSK: []byte("k")}}}
	if _, ok := strict.PSK("a", "b"); ok {
		t.Error("PSK matched unrelated ids")
	}
	open := &Config{Secrets: []Secret{{PSK: []byte("k")}}}
	if k, ok := open.PSK("a", "b"); !ok || string(k) != "k" {
		t.Error("a secret without ids must match any")
	}
}

func TestWildcardMatch(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"*@example.org", "a@example.org", true},
		{"*@example.org", "a@example.net", false},
		{"*.example.org", "gw.example.org", true},
		{"a*b*c", "abc", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"ab*ba", "aba", false},
		{"*", "", true},
		{"abc", "abc", true},
		{"abc", "abd", false},
	} {
		if got := wildcardMatch(tc.p, tc.s); got != tc.want {
			t.Errorf("wildcardMatch(%q, %q) = %v", tc.p, tc.s, got)
		}
	}
}

func TestParseTS(t *testing.T) {
	good := []struct {
		in   string
		want ike.TSConfig
		str  string
	}{
		{"dynamic", dynTS(0, 0, 0xffff), "dynamic"},
		{"0.0.0.0/0", rangeTS("0.0.0.0", "255.255.255.255", 0, 0, 0xffff), "0.0.0.0/0"},
		{"::/0", rangeTS("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 0, 0, 0xffff), "::/0"},
		{"198.18.0.0/15", rangeTS("198.18.0.0", "198.19.255.255", 0, 0, 0xffff), "198.18.0.0/15"},
		{"192.0.2.7", rangeTS("192.0.2.7", "192.0.2.7", 0, 0, 0xffff), "192.0.2.7/32"},
		{"192.0.2.7-192.0.2.9", rangeTS("192.0.2.7", "192.0.2.9", 0, 0, 0xffff), "192.0.2.7-192.0.2.9"},
		{"192.0.2.0-192.0.2.255", rangeTS("192.0.2.0", "192.0.2.255", 0, 0, 0xffff), "192.0.2.0/24"},
		{"10.0.0.0/8[tcp/443]", rangeTS("10.0.0.0", "10.255.255.255", 6, 443, 443), "10.0.0.0/8[tcp/443]"},
		{"[udp]", dynTS(17, 0, 0xffff), "dynamic[udp]"},
		{"dynamic[udp/%any]", dynTS(17, 0, 0xffff), "dynamic[udp]"},
		{"dynamic[%any]", dynTS(0, 0, 0xffff), "dynamic"},
		{"0.0.0.0/0[47]", rangeTS("0.0.0.0", "255.255.255.255", 47, 0, 0xffff), "0.0.0.0/0[gre]"},
		{"0.0.0.0/0[icmp/8]", rangeTS("0.0.0.0", "255.255.255.255", 1, 0x800, 0x8ff), "0.0.0.0/0[icmp/8]"},
		{"dynamic[udp/500-4500]", dynTS(17, 500, 4500), "dynamic[udp/500-4500]"},
		{"dynamic[200/1]", dynTS(200, 1, 1), "dynamic[200/1]"},
	}
	for _, tc := range good {
		got, err := ParseTS(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseTS(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			continue
		}
		if s := FormatTS(got); s != tc.str {
			t.Errorf("String(%q) = %q, want %q", tc.in, s, tc.str)
		}
		if again, err := ParseTS(FormatTS(got)); err != nil || again != got {
			t.Errorf("round trip of %q: %+v, %v", tc.in, again, err)
		}
	}
	bad := map[string]string{
		"":                       "empty",
		"10.0.0.1/8":             "host bits",
		"10.0.0.9-10.0.0.1":      "ends before it starts",
		"10.0.0.1-2001:db8::1":   "mixes IPv4 and IPv6",
		"10.0.0.1-x":             "not an address range",
		"dynamic[tcp":            "missing ]",
		"dynamic[foo]":           "unknown protocol",
		"dynamic[0]":             "unknown protocol",
		"dynamic[256]":           "unknown protocol",
		"dynamic[tcp/70000]":     "bad port",
		"dynamic[tcp/20-10]":     "ends before it starts",
		"dynamic[icmp/256]":      "0..255",
		"dynamic[%any/53]":       "needs a protocol",
		"host.example.org":       "not dynamic, a CIDR prefix",
		"10.0.0.0/33":            "not a CIDR prefix",
		"::ffff:10.0.0.0/104":    "IPv4-mapped",
		"fe80::1%eth0":           "not dynamic",
		"dynamic[tcp/1-2-3]":     "bad port",
		"10.0.0.0/8[tcp/443]xyz": "missing ]",
	}
	for in, frag := range bad {
		if _, err := ParseTS(in); err == nil || !strings.Contains(err.Error(), frag) {
			t.Errorf("ParseTS(%q) error %v, want %q", in, err, frag)
		}
	}
}

func FuzzParse(f *testing.F) {
	if example, err := os.ReadFile("testdata/interface-example.yaml"); err == nil {
		f.Add(example)
	}
	f.Add([]byte(minimal))
	f.Add([]byte(minimal + "    switch_limit: 3\n    switch_hold: 45s\n    rmobike_notify: 40971\n"))
	f.Add([]byte(minimal + "    mobike: false\n    rmobike: false\n    additional_addrs: none\n    switch_limit: 1000\n    switch_hold: 0s\n    rmobike_notify: 65535\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("connections: { a: { <<: *b } }\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "fuzz.yaml")
		if err == nil && len(cfg.Connections) == 0 {
			t.Fatal("a config without connections was accepted")
		}
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is %T", err, err)
			}
		}
	})
}

func TestRSAPSSOption(t *testing.T) {
	read := func(f string) string {
		b, err := os.ReadFile(filepath.Join("..", "..", "cert", "testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	dir := writeFiles(t, map[string]string{
		"gw.pem": read("rsa-gw.pem"), "gw.key": read("rsa-gw.key"), "ca.pem": read("rsa-ca.pem"),
		"gw.yaml": `
connections:
  rw:
    local: { auth: pubkey, certs: [gw.pem], key: gw.key, rsa_pss: true }
    remote: { auth: pubkey, cacerts: [ca.pem] }
    children:
      net: {}
`,
	})
	c := mustLoad(t, dir).Connection("rw")
	if c.Local.Cred == nil || !c.Local.Cred.RSAPSS {
		t.Errorf("rsa_pss not applied: %+v", c.Local.Cred)
	}
}

// testCRL is a CRL of cert's RSA test CA listing serials (or, with forge, the same
// issuer name signed by another key), PEM.
func testCRL(t *testing.T, forge bool, serials ...*big.Int) string {
	t.Helper()
	read := func(f string) []byte {
		b, err := os.ReadFile(filepath.Join("..", "..", "cert", "testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	blk, _ := pem.Decode(read("rsa-ca.pem"))
	ca, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ = pem.Decode(read("rsa-ca.key"))
	key, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	var signer crypto.Signer = key
	if forge {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		signer = k
		tmpl := *ca
		tmpl.SignatureAlgorithm, tmpl.PublicKey = 0, nil
		der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, k.Public(), k)
		if err != nil {
			t.Fatal(err)
		}
		if ca, err = x509.ParseCertificate(der); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	tmpl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(time.Hour)}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: now})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca, signer)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
}

// TestRemoteCertPolicy: the remote round's certificate settings (issue 11): a client
// authenticating its gateway by certificate expects the gateway's address when it names
// no id, refuses an explicit "%any" unless accept_any_id says so, and takes eku and crls.
func TestRemoteCertPolicy(t *testing.T) {
	read := func(f string) string {
		b, err := os.ReadFile(filepath.Join("..", "..", "cert", "testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	crl := testCRL(t, false, big.NewInt(0x1234))
	crlDER := func() string { b, _ := pem.Decode([]byte(crl)); return string(b.Bytes) }()
	files := map[string]string{"gw.pem": read("rsa-gw.pem"), "gw.key": read("rsa-gw.key"), "ca.pem": read("rsa-ca.pem"),
		"ca.crl": crl, "ca.der.crl": crlDER, "forged.crl": testCRL(t, true, big.NewInt(7)), "junk.crl": "not a CRL\n",
		"other-ca.pem": read("ed25519-ca.pem")}
	// conf is a connection with the given remote_addrs and remote round.
	conf := func(remoteAddrs, remote string) string {
		return "connections:\n  home:\n" + remoteAddrs +
			"    local: { auth: pubkey, certs: [gw.pem], key: gw.key }\n" + remote + "    children: { net: {} }\n"
	}
	const client = "    remote_addrs: [198.51.100.1]\n"
	const gateway = "    remote_addrs: \"%any\"\n"
	load := func(t *testing.T, yaml string) (*Connection, error) {
		fs := maps.Clone(files)
		fs["gw.yaml"] = yaml
		cfg, err := Load(filepath.Join(writeFiles(t, fs), "gw.yaml"))
		if err != nil {
			return nil, err
		}
		return cfg.Connection("home"), nil
	}
	t.Run("client without id", func(t *testing.T) {
		c, err := load(t, conf(client, "    remote: { auth: pubkey, cacerts: [ca.pem] }\n"))
		if err != nil {
			t.Fatal(err)
		}
		if !c.Initiator || c.Remote.ID != AnyID || c.Remote.AcceptAnyID || c.Remote.EKUOIDs != nil || c.Remote.CRLs != nil {
			t.Errorf("remote %+v", c.Remote)
		}
	})
	t.Run("client accept_any_id", func(t *testing.T) {
		for _, r := range []string{
			"    remote: { auth: pubkey, id: \"%any\", cacerts: [ca.pem], accept_any_id: yes }\n",
			"    remote: { auth: pubkey, cacerts: [ca.pem], accept_any_id: true }\n",
		} {
			c, err := load(t, conf(client, r))
			if err != nil {
				t.Fatal(err)
			}
			if c.Remote.ID != AnyID || !c.Remote.AcceptAnyID {
				t.Errorf("remote %+v", c.Remote)
			}
		}
	})
	t.Run("gateway with %any", func(t *testing.T) {
		for _, r := range []string{"    remote: { auth: pubkey, id: \"%any\", cacerts: [ca.pem] }\n", "    remote: { auth: pubkey, cacerts: [ca.pem] }\n"} {
			c, err := load(t, conf(gateway, r))
			if err != nil || c.Initiator || c.Remote.ID != AnyID || c.Remote.AcceptAnyID {
				t.Errorf("%v %+v", err, c)
			}
		}
	})
	t.Run("eku and crls", func(t *testing.T) {
		c, err := load(t, conf(client, "    remote:\n      auth: pubkey\n      id: gw.example.org\n      cacerts: [ca.pem]\n"+
			"      eku: [serverAuth, ipsecIKE, 1.3.6.1.5.5.7.3.2]\n      crls: [ca.crl, ca.der.crl]\n"))
		if err != nil {
			t.Fatal(err)
		}
		var oids []string
		for _, o := range c.Remote.EKUOIDs {
			oids = append(oids, o.String())
		}
		if !slices.Equal(oids, []string{"1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.17", "1.3.6.1.5.5.7.3.2"}) || !slices.Equal(c.Remote.EKU, []string{"serverAuth", "ipsecIKE", "1.3.6.1.5.5.7.3.2"}) {
			t.Errorf("eku %v %v", c.Remote.EKU, oids)
		}
		if len(c.Remote.CRLs) != 2 || len(c.Remote.CRLFiles) != 2 || c.Remote.CRLs[1].RevokedCertificateEntries[0].SerialNumber.Int64() != 0x1234 {
			t.Errorf("crls %v %d", c.Remote.CRLFiles, len(c.Remote.CRLs))
		}
	})
	for _, tc := range []struct {
		name, yaml, key, frag string
	}{
		{"client with explicit %any", conf(client, "    remote:\n      auth: pubkey\n      id: \"%any\" #<\n      cacerts: [ca.pem]\n"),
			"connections.home.remote.id", `"%any" on a client (remote_addrs [198.51.100.1]) would accept any certificate issued by the CAs in cacerts as the gateway`},
		{"client with explicit %any, opt-out false", conf(client, "    remote:\n      auth: pubkey\n      id: \"%any\" #<\n      cacerts: [ca.pem]\n      accept_any_id: false\n"),
			"connections.home.remote.id", "add accept_any_id: true"},
		{"accept_any_id with a named peer", conf(client, "    remote:\n      auth: pubkey\n      id: gw.example.org\n      cacerts: [ca.pem]\n      accept_any_id: true #<\n"),
			"connections.home.remote.accept_any_id", `only applies with id: "%any" (or no id); this connection names its peer (id: gw.example.org)`},
		{"accept_any_id not a boolean", conf(client, "    remote:\n      auth: pubkey\n      cacerts: [ca.pem]\n      accept_any_id: sure #<\n"),
			"connections.home.remote.accept_any_id", "not a boolean"},
		{"accept_any_id with psk", "secrets: [{ psk: s }]\n" + "connections:\n  home:\n" + client + "    local: { auth: psk, id: a }\n    remote:\n      auth: psk\n      accept_any_id: true #<\n    children: { net: {} }\n",
			"connections.home.remote.accept_any_id", "only used with auth: pubkey"},
		{"eku with psk", "secrets: [{ psk: s }]\n" + "connections:\n  home:\n" + client + "    local: { auth: psk, id: a }\n    remote:\n      auth: psk\n      eku: [serverAuth] #<\n    children: { net: {} }\n",
			"connections.home.remote.eku", "only used with auth: pubkey"},
		{"crls with psk", "secrets: [{ psk: s }]\n" + "connections:\n  home:\n" + client + "    local: { auth: psk, id: a }\n    remote:\n      auth: psk\n      crls: [ca.crl] #<\n    children: { net: {} }\n",
			"connections.home.remote.crls", "only used with auth: pubkey"},
		{"eku unknown", conf(gateway, "    remote:\n      auth: pubkey\n      cacerts: [ca.pem]\n      eku: [serverAuth,\n        webServer] #<\n"),
			"connections.home.remote.eku[1]", `unknown extended key usage "webServer"; use one of serverAuth, clientAuth, ipsecIKE, ikeIntermediate, anyExtendedKeyUsage or a dotted OID`},
		{"eku empty", conf(gateway, "    remote:\n      auth: pubkey\n      cacerts: [ca.pem]\n      eku: [] #<\n"),
			"connections.home.remote.eku", "needs at least one extended key usage"},
		{"eku twice", conf(gateway, "    remote:\n      auth: pubkey\n      cacerts: [ca.pem]\n      eku: [serverAuth, 1.3.6.1.5.5.7.3.1] #<\n"),
			"connections.home.remote.eku[1]", "1.3.6.1.5.5.7.3.1 is listed twice"},
		{"crl missing", conf(gateway, "    remote:\n      auth: pubkey\n      cacerts: [ca.pem]\n      crls: [ca.crl, nope.crl] #<\n"),
			"connections.home.remote.crls[1]", "nope.crl: no such file"},
		{"crl not a CRL", conf(gateway, "    remote:\n      auth: pubkey\n      cacerts: [ca.pem]\n      crls:\n        - junk.crl #<\n"),
			"connections.home.remote.crls[0]", "neither a PEM nor a DER CRL"},
		{"crl is a certificate", conf(gateway, "    remote:\n      auth: pubkey\n      cacerts: [ca.pem]\n      crls: [ca.pem] #<\n"),
			"connections.home.remote.crls[0]", `no PEM "X509 CRL" block`},
		{"crl forged", conf(gateway, "    remote:\n      auth: pubkey\n      cacerts: [ca.pem]\n      crls: [forged.crl] #<\n"),
			"connections.home.remote.crls[0]", `the CRL of "CN=mobikevpn test RSA CA,O=mobikevpn test,C=CH" does not verify with that CA's certificate in cacerts`},
		{"crls empty", conf(gateway, "    remote:\n      auth: pubkey\n      cacerts: [ca.pem]\n      crls: [] #<\n"),
			"connections.home.remote.crls", "needs at least one CRL file"},
		{"unknown remote key", conf(gateway, "    remote: { auth: pubkey, cacerts: [ca.pem], crl: [ca.crl] } #<\n"),
			"connections.home.remote.crl", "allowed here: auth, id, cacerts, accept_any_id, eku, crls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.yaml)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Load: %v, want an error at %s", err, tc.key)
			}
			wantLine := 0
			for i, l := range strings.Split(tc.yaml, "\n") {
				if strings.HasSuffix(l, "#<") {
					wantLine = i + 1
				}
			}
			if ce.Key != tc.key || ce.Line != wantLine || !strings.Contains(ce.Msg, tc.frag) {
				t.Errorf("error %v\nwant line %d, key %s, message with %q", err, wantLine, tc.key, tc.frag)
			}
		})
	}
	// A CRL issued in the name of another CA (an intermediate's, say) loads: it is
	// checked against the chain the peer sends.
	t.Run("crl of another issuer", func(t *testing.T) {
		c, err := load(t, conf(gateway, "    remote: { auth: pubkey, cacerts: [other-ca.pem], crls: [ca.crl] }\n"))
		if err != nil || len(c.Remote.CRLs) != 1 {
			t.Fatalf("%v", err)
		}
	})
}

// Proposals are parsed once, by config, defaults included: the daemon hands them to the
// engine as they are (issue 12: they used to be parsed again there).
func TestProposalsParsedOnce(t *testing.T) {
	cfg, err := Parse([]byte(limitsConfig("", "")), "gw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Connections[0]
	want, _ := parseProposals([]string{"default"}, ikecrypto.ParseIKEProposal)
	if len(c.IKEProposals) == 0 || !reflect.DeepEqual(c.IKEProposals, want) {
		t.Errorf("default IKE proposals: %v", c.IKEProposals)
	}
	wantESP, _ := parseProposals([]string{"default"}, ikecrypto.ParseESPProposal)
	if len(c.Children[0].ParsedESP) == 0 || !reflect.DeepEqual(c.Children[0].ParsedESP, wantESP) {
		t.Errorf("default ESP proposals: %v", c.Children[0].ParsedESP)
	}
}
