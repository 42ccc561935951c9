package config

import (
	"errors"
	"strings"
	"testing"
)

// Issue 11: max_children per connection, and the volume limits of Child SAs
// (rekey_bytes, life_bytes, rekey_packets, life_packets, as swanctl.conf).

func limitsConfig(connKeys, childKeys string) string {
	return `
secrets:
  - ids: [gw.example.org]
    psk: "secret"
connections:
  rw:
    local: { auth: psk, id: gw.example.org }
    remote: { auth: psk }
` + connKeys + `    children:
      net:
        remote_ts: [0.0.0.0/0]
` + childKeys
}

func TestLimitsDefaults(t *testing.T) {
	cfg, err := Parse([]byte(limitsConfig("", "")), "gw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Connections[0]
	if c.MaxChildren != 32 || DefaultMaxChildren != 32 {
		t.Errorf("max_children default %d", c.MaxChildren)
	}
	ch := c.Children[0]
	if ch.RekeyBytes != 0 || ch.LifeBytes != 0 || ch.RekeyPackets != 0 || ch.LifePackets != 0 {
		t.Errorf("volume limits by default: %+v", ch)
	}
}

func TestLimitsGood(t *testing.T) {
	const (
		k = 1 << 10
		m = 1 << 20
		g = 1 << 30
	)
	for _, tc := range []struct {
		conn, child                  string
		max                          int
		rekeyB, lifeB, rekeyP, lifeP uint64
	}{
		{"    max_children: 5\n", "", 5, 0, 0, 0, 0},
		{"    max_children: 1\n", "", 1, 0, 0, 0, 0},
		{"    max_children: 1000\n", "", 1000, 0, 0, 0, 0},
		{"", "        rekey_bytes: 500M\n        life_bytes: 1G\n        rekey_packets: 1000000\n        life_packets: 2M\n",
			32, 500 * m, g, 1000000, 2 * m},
		{"", "        rekey_bytes: 10k\n        rekey_packets: 100\n", 32, 10 * k, 10*k + k, 100, 110},
		{"", "        rekey_bytes: 1T\n", 32, 1 << 40, (1 << 40) + (1<<40)/10, 0, 0},
		{"", "        life_bytes: 4096\n        life_packets: 7\n", 32, 0, 4096, 0, 7},
		{"", "        rekey_bytes: 0\n        life_bytes: 0\n", 32, 0, 0, 0, 0},
		{"", "        rekey_bytes: \"2 G\"\n", 32, 2 * g, 2*g + 2*g/10, 0, 0},
	} {
		cfg, err := Parse([]byte(limitsConfig(tc.conn, tc.child)), "gw.yaml")
		if err != nil {
			t.Errorf("%q %q: %v", tc.conn, tc.child, err)
			continue
		}
		c := cfg.Connections[0]
		ch := c.Children[0]
		if c.MaxChildren != tc.max || ch.RekeyBytes != tc.rekeyB || ch.LifeBytes != tc.lifeB || ch.RekeyPackets != tc.rekeyP || ch.LifePackets != tc.lifeP {
			t.Errorf("%q %q: max_children %d, rekey_bytes %d, life_bytes %d, rekey_packets %d, life_packets %d; want %d %d %d %d %d",
				tc.conn, tc.child, c.MaxChildren, ch.RekeyBytes, ch.LifeBytes, ch.RekeyPackets, ch.LifePackets,
				tc.max, tc.rekeyB, tc.lifeB, tc.rekeyP, tc.lifeP)
		}
	}
}

func TestLimitsBad(t *testing.T) {
	for _, tc := range []struct {
		conn, child, key, frag string
	}{
		{"    max_children: 0\n", "", "connections.rw.max_children", "0 is out of range; allowed: 1..1000"},
		{"    max_children: 1001\n", "", "connections.rw.max_children", "out of range; allowed: 1..1000"},
		{"    max_children: many\n", "", "connections.rw.max_children", `"many" is not an integer`},
		{"", "        rekey_bytes: 10X\n", "connections.rw.children.net.rekey_bytes", `"10X" is not a number of bytes`},
		{"", "        life_packets: -1\n", "connections.rw.children.net.life_packets", `"-1" is not a number of packets`},
		{"", "        life_bytes: 1.5G\n", "connections.rw.children.net.life_bytes", "not a number of bytes"},
		{"", "        rekey_packets: 99999999999T\n", "connections.rw.children.net.rekey_packets", "too large"},
		{"", "        rekey_bytes: 2G\n        life_bytes: 1G\n", "connections.rw.children.net.life_bytes",
			"life_bytes (1073741824) must be more than rekey_bytes (2147483648)"},
		{"", "        rekey_packets: 100\n        life_packets: 100\n", "connections.rw.children.net.life_packets", "must be more than rekey_packets"},
		{"", "        rekey_bytes: [1]\n", "connections.rw.children.net.rekey_bytes", "expected"},
		{"", "        life_byte: 1\n", "connections.rw.children.net.life_byte", "unknown key"},
	} {
		_, err := Parse([]byte(limitsConfig(tc.conn, tc.child)), "gw.yaml")
		var ce *Error
		if !errors.As(err, &ce) {
			t.Errorf("%q %q: error %v, want one at %s", tc.conn, tc.child, err, tc.key)
			continue
		}
		if ce.Key != tc.key || !strings.Contains(ce.Msg, tc.frag) || ce.Line == 0 {
			t.Errorf("%q %q: error %v; want at %s, containing %q", tc.conn, tc.child, err, tc.key, tc.frag)
		}
	}
}
