package daemon

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/ike"
	"github.com/mobikevpn/mobikevpn/internal/config"
	"github.com/mobikevpn/mobikevpn/wire"
)

func TestKeylogLines(t *testing.T) {
	dir := t.TempDir()
	k, err := newKeylog(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	err = k.ikeSA(ike.IKEKeysLog{
		SPIi: 0x0102030405060708, SPIr: 0x1112131415161718,
		Suite: ikecrypto.IKESuite{Encr: wire.ENCR_AES_CBC, EncrKeyBits: 256, Integ: wire.AUTH_HMAC_SHA2_256_128},
		SKei:  []byte{1, 2}, SKer: []byte{3, 4}, SKai: []byte{5}, SKar: []byte{6},
	})
	if err != nil {
		t.Fatal(err)
	}
	gcm := ikecrypto.ESPSuite{Encr: wire.ENCR_AES_GCM_16, EncrKeyBits: 128}
	local, remote := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("198.51.100.1")
	if err := k.espSA(local, remote, 0xd4c3b2a1, gcm, ike.ChildKeys{Encr: []byte{0xbb}}); err != nil {
		t.Fatal(err)
	}
	if err := k.espSA(remote, local, 0xc1a2b3c4, gcm, ike.ChildKeys{Encr: []byte{0xaa}}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "keys", "ikev2_decryption_table"))
	want := `0102030405060708,1112131415161718,0102,0304,"AES-CBC-256 [RFC3602]",05,06,"HMAC_SHA2_256_128 [RFC4868]"` + "\n"
	if string(b) != want {
		t.Errorf("ikev2_decryption_table:\n%s\nwant\n%s", b, want)
	}
	b, _ = os.ReadFile(filepath.Join(dir, "keys", "esp_sa"))
	want = `"IPv4","192.0.2.10","198.51.100.1","0xd4c3b2a1","AES-GCM with 16 octet ICV [RFC4106]","0xbb","NULL","0x"` + "\n" +
		`"IPv4","198.51.100.1","192.0.2.10","0xc1a2b3c4","AES-GCM with 16 octet ICV [RFC4106]","0xaa","NULL","0x"` + "\n"
	if string(b) != want {
		t.Errorf("esp_sa:\n%s\nwant\n%s", b, want)
	}
	for _, f := range []string{"ikev2_decryption_table", "esp_sa"} {
		fi, err := os.Stat(filepath.Join(dir, "keys", f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v %v", f, fi.Mode(), err)
		}
	}
}

func TestIKEConfigFromFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gw.yaml")
	os.WriteFile(path, []byte(`
tun: { name: mvpn0 }
secrets:
  - ids: [gw.example.org]
    psk: "0123456789abcdef0123"
pools:
  - { name: rw, addrs: 198.18.100.0/24, dns: [198.18.0.53] }
connections:
  rw:
    local_addrs: [198.51.100.1]
    proposals: [aes128gcm16-prfsha256-x25519, aes256-sha256-modp2048]
    pools: [rw]
    dpd_delay: 10s
    local: { auth: psk, id: gw.example.org }
    remote: { auth: psk }
    children:
      net:
        local_ts: [198.18.0.0/24, "10.0.0.0/8[tcp/443]"]
        esp_proposals: [aes128gcm16-esn-noesn]
`), 0o600)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ic, err := ikeConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(ic.Connections) != 1 || len(ic.Pools) != 1 || ic.IKEPort != 500 || ic.NATTPort != 4500 {
		t.Fatalf("converted %+v", ic)
	}
	c := ic.Connections[0]
	if len(c.Proposals) != 2 || c.RemoteID != "%any" || c.DPDDelay.Seconds() != 10 || !c.Encap || !c.Mobike {
		t.Errorf("connection %+v", c)
	}
	if c.SwitchLimit != config.DefaultSwitchLimit || c.SwitchHold != config.DefaultSwitchHold || c.RMobikeNotify != wire.SWITCH_TO_IP_ADDRESS {
		t.Errorf("switch defaults: limit %d, hold %v, notify %v", c.SwitchLimit, c.SwitchHold, c.RMobikeNotify)
	}
	ch := c.Children[0]
	if len(ch.LocalTS) != 2 || ch.LocalTS[1].Selector.IPProtocol != 6 || ch.LocalTS[1].Selector.StartPort != 443 ||
		ch.LocalTS[0].Selector.String() != "198.18.0.0/24" || !ch.RemoteTS[0].Dynamic {
		t.Errorf("selectors %+v %+v", ch.LocalTS, ch.RemoteTS)
	}
	if psk, ok := ic.PSK("gw.example.org", "anyone"); !ok || string(psk) != "0123456789abcdef0123" {
		t.Errorf("PSK lookup: %q %v", psk, ok)
	}
	// The engine accepts it.
	if _, err := ike.New(ic); err != nil {
		t.Fatal(err)
	}

}

func TestIKEConnSwitchSettings(t *testing.T) {
	cfg, err := config.Parse([]byte(`
secrets: [{ ids: [gw.example.org], psk: "0123456789abcdef0123" }]
connections:
  rw:
    switch_limit: 2
    switch_hold: 0s
    rmobike_notify: 41234
    local: { auth: psk, id: gw.example.org }
    remote: { auth: psk }
    children: { net: {} }
  other:
    switch_hold: 90s
    local: { auth: psk, id: gw.example.org }
    remote: { auth: psk }
    children: { net: {} }
`), "gw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		name   string
		limit  int
		hold   time.Duration
		notify wire.NotifyType
	}{
		{"rw", 2, 0, 41234},
		{"other", 5, 90 * time.Second, wire.SWITCH_TO_IP_ADDRESS},
	} {
		c, err := ikeConn(cfg.Connection(w.name))
		if err != nil {
			t.Fatal(err)
		}
		if c.SwitchLimit != w.limit || c.SwitchHold != w.hold || c.RMobikeNotify != w.notify {
			t.Errorf("%s: limit %d, hold %v, notify %v; want %d, %v, %v", w.name, c.SwitchLimit, c.SwitchHold, c.RMobikeNotify, w.limit, w.hold, w.notify)
		}
	}
}
