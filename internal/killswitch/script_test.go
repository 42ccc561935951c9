package killswitch

import (
	"net/netip"
	"strings"
	"testing"
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// TestScriptGolden: the whole script for a full tunnel with both families.
func TestScriptGolden(t *testing.T) {
	got, err := Script("mobikevpn", Spec{Dev: "tun0", Mark: 0x4d56, Block: prefixes("0.0.0.0/0", "::/0")})
	if err != nil {
		t.Fatal(err)
	}
	want := `table inet mobikevpn
delete table inet mobikevpn
table inet mobikevpn {
	counter dropped {
	}

	set block4 {
		type ipv4_addr
		flags interval
		elements = { 0.0.0.0/0 }
	}

	set block6 {
		type ipv6_addr
		flags interval
		elements = { ::/0 }
	}

	chain output {
		type filter hook output priority 0; policy accept;
		oifname "lo" accept
		oifname "tun0" accept
		meta mark 0x00004d56 accept
		ip daddr @block4 counter name "dropped" drop
		ip6 daddr @block6 counter name "dropped" drop
	}

	chain forward {
		type filter hook forward priority 0; policy accept;
		oifname "tun0" accept
		ip daddr @block4 counter name "dropped" drop
		ip6 daddr @block6 counter name "dropped" drop
	}
}
`
	if got != want {
		t.Errorf("script:\n%s\nwant:\n%s", got, want)
	}
}

// chainOf returns the lines of the named chain in script, trimmed.
func chainOf(t *testing.T, script, name string) []string {
	t.Helper()
	_, rest, ok := strings.Cut(script, "\tchain "+name+" {\n")
	if !ok {
		t.Fatalf("no chain %s in:\n%s", name, script)
	}
	body, _, _ := strings.Cut(rest, "\t}\n")
	var out []string
	for _, ln := range strings.Split(strings.TrimSpace(body), "\n") {
		out = append(out, strings.TrimSpace(ln))
	}
	return out
}

func TestScriptFamilies(t *testing.T) {
	for _, tc := range []struct {
		name          string
		block         []netip.Prefix
		sets, nosets  []string
		drops, nodrop []string
	}{
		{"v4 only", prefixes("198.51.100.0/24", "203.0.113.0/24"),
			[]string{"set block4 {", "elements = { 198.51.100.0/24, 203.0.113.0/24 }"}, []string{"block6", "ipv6_addr"},
			[]string{`ip daddr @block4 counter name "dropped" drop`}, []string{"ip6 daddr"}},
		{"v6 only", prefixes("2001:db8:5::/48", "::/0"),
			[]string{"set block6 {", "type ipv6_addr", "elements = { ::/0 }"}, []string{"block4", "ipv4_addr"},
			[]string{`ip6 daddr @block6 counter name "dropped" drop`}, []string{"ip daddr"}},
		{"both", prefixes("2001:db8:5::/48", "10.0.0.0/8"),
			[]string{"elements = { 10.0.0.0/8 }", "elements = { 2001:db8:5::/48 }"}, nil,
			[]string{`ip daddr @block4 counter name "dropped" drop`, `ip6 daddr @block6 counter name "dropped" drop`}, nil},
		{"nothing blocked", nil, nil, []string{"set block", "elements"}, nil, []string{"drop"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Script("kstest", Spec{Dev: "tun0", Mark: 7, Block: tc.block})
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.sets {
				if !strings.Contains(s, w) {
					t.Errorf("no %q in:\n%s", w, s)
				}
			}
			for _, w := range tc.nosets {
				if strings.Contains(s, w) {
					t.Errorf("%q in:\n%s", w, s)
				}
			}
			for _, chain := range []string{"output", "forward"} {
				lines := chainOf(t, s, chain)
				tail := lines[len(lines)-len(tc.drops):]
				for i, w := range tc.drops {
					if tail[i] != w {
						t.Errorf("%s: rule %d from the end is %q, want %q", chain, len(tc.drops)-i, tail[i], w)
					}
				}
				for _, w := range tc.nodrop {
					if strings.Contains(strings.Join(lines, "\n"), w) {
						t.Errorf("%s has %q:\n%s", chain, w, s)
					}
				}
			}
		})
	}
}

func TestScriptRuleOrder(t *testing.T) {
	s, err := Script("kstest", Spec{Dev: "wg-tun.1", Mark: 0xdeadbeef, Block: prefixes("0.0.0.0/0"), LinkSetup: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"type filter hook output priority 0; policy accept;",
		`oifname "lo" accept`,
		`oifname "wg-tun.1" accept`,
		"meta mark 0xdeadbeef accept",
		"meta nfproto ipv4 udp sport 68 udp dport 67 accept",
		"meta nfproto ipv6 udp sport 546 udp dport 547 accept",
		"icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept",
		`ip daddr @block4 counter name "dropped" drop`,
	}
	if got := chainOf(t, s, "output"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("output chain:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Forwarded traffic: only the TUN device is exempt; neither a mark nor link setup.
	want = []string{
		"type filter hook forward priority 0; policy accept;",
		`oifname "wg-tun.1" accept`,
		`ip daddr @block4 counter name "dropped" drop`,
	}
	if got := chainOf(t, s, "forward"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("forward chain:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Without LinkSetup none of its rules.
	s, _ = Script("kstest", Spec{Dev: "tun0", Mark: 1, Block: prefixes("0.0.0.0/0", "::/0")})
	for _, w := range []string{"sport 68", "sport 546", "icmpv6"} {
		if strings.Contains(s, w) {
			t.Errorf("%q without LinkSetup:\n%s", w, s)
		}
	}
}

func TestScriptMergesPrefixes(t *testing.T) {
	block := prefixes(
		"10.0.0.0/8", "0.0.0.0/0", "10.1.2.3/32", "192.0.2.77/24", // all inside 0.0.0.0/0; one not masked
		"2001:db8:1::/64", "2001:db8::/32", "2001:db8::/32", "2001:db9::5/128", "fd00::/8", "fd12::/16",
		"::ffff:0:0/96", // IPv4-mapped: an IPv6 prefix
	)
	orig := append([]netip.Prefix(nil), block...)
	s, err := Script("kstest", Spec{Dev: "tun0", Mark: 1, Block: block})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		"elements = { 0.0.0.0/0 }",
		"elements = { ::ffff:0.0.0.0/96, 2001:db8::/32, 2001:db9::5/128, fd00::/8 }",
	} {
		if !strings.Contains(s, w) {
			t.Errorf("no %q in:\n%s", w, s)
		}
	}
	for i := range block {
		if block[i] != orig[i] {
			t.Fatalf("Script changed the caller's Block: %v, was %v", block, orig)
		}
	}
	// Masked: 192.0.2.77/24 becomes 192.0.2.0/24; adjacent prefixes stay (they do not
	// overlap).
	s, _ = Script("kstest", Spec{Dev: "tun0", Mark: 1, Block: prefixes("192.0.2.77/24", "198.51.100.0/25", "198.51.100.128/25")})
	if w := "elements = { 192.0.2.0/24, 198.51.100.0/25, 198.51.100.128/25 }"; !strings.Contains(s, w) {
		t.Errorf("no %q in:\n%s", w, s)
	}
}

func TestScriptRejects(t *testing.T) {
	good := Spec{Dev: "tun0", Mark: 1, Block: prefixes("0.0.0.0/0")}
	for _, tc := range []struct {
		name  string
		table string
		edit  func(*Spec)
		want  string
	}{
		{"empty dev", "t", func(s *Spec) { s.Dev = "" }, "no TUN device"},
		{"space", "t", func(s *Spec) { s.Dev = "tun 0" }, "not a valid interface name"},
		{"tab", "t", func(s *Spec) { s.Dev = "tun\t0" }, "not a valid interface name"},
		{"quote", "t", func(s *Spec) { s.Dev = `tun"0` }, "not a valid interface name"},
		{"injection", "t", func(s *Spec) { s.Dev = `x" accept` }, "not a valid interface name"},
		{"backslash", "t", func(s *Spec) { s.Dev = `tun\0` }, "not a valid interface name"},
		{"wildcard", "t", func(s *Spec) { s.Dev = "tun*" }, "not a valid interface name"},
		{"slash", "t", func(s *Spec) { s.Dev = "a/b" }, "not a valid interface name"},
		{"colon", "t", func(s *Spec) { s.Dev = "eth0:1" }, "not a valid interface name"},
		{"dot", "t", func(s *Spec) { s.Dev = "." }, "not a valid interface name"},
		{"dotdot", "t", func(s *Spec) { s.Dev = ".." }, "not a valid interface name"},
		{"newline", "t", func(s *Spec) { s.Dev = "tun0\n" }, "not a valid interface name"},
		{"non-ASCII", "t", func(s *Spec) { s.Dev = "tün0" }, "not a valid interface name"},
		{"too long", "t", func(s *Spec) { s.Dev = "abcdefghijklmnop" }, "not a valid interface name"},
		{"mark 0", "t", func(s *Spec) { s.Mark = 0 }, "mark 0"},
		{"zero prefix", "t", func(s *Spec) { s.Block = append(s.Block, netip.Prefix{}) }, "invalid prefix"},
		{"bad bits", "t", func(s *Spec) { s.Block = []netip.Prefix{netip.PrefixFrom(netip.MustParseAddr("10.0.0.0"), 33)} }, "invalid prefix"},
		{"empty table", "", func(*Spec) {}, "not a valid table name"},
		{"table with space", "a b", func(*Spec) {}, "not a valid table name"},
		{"table digit first", "1t", func(*Spec) {}, "not a valid table name"},
		{"table semicolon", "t;flush", func(*Spec) {}, "not a valid table name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			tc.edit(&s)
			got, err := Script(tc.table, s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Script = %q, %v; want an error with %q", got, err, tc.want)
			}
		})
	}
	// The longest name Linux takes, and the characters real names use, pass.
	for _, dev := range []string{"abcdefghijklmno", "tun0", "wlp2s0", "br-1a2b3c", "vlan.100", "veth_x@y", "a"} {
		s := good
		s.Dev = dev
		if _, err := Script("mobikevpn", s); err != nil {
			t.Errorf("%q: %v", dev, err)
		}
	}
}

func TestRemoveScript(t *testing.T) {
	if got, want := removeScript("kstest"), "table inet kstest\ndelete table inet kstest\n"; got != want {
		t.Errorf("removeScript = %q, want %q", got, want)
	}
}
