package mobike

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, x := range s {
		out = append(out, netip.MustParseAddr(x))
	}
	return out
}

func TestAnnounce(t *testing.T) {
	host := addrs("198.51.100.1", "203.0.113.1", "2001:db8::1", "fe80::1", "127.0.0.1")
	cases := []struct {
		name string
		a    Announce
		cur  string
		want []netip.Addr
	}{
		{"auto from config", Announce{Mode: Auto, List: addrs("198.51.100.1", "203.0.113.1")}, "198.51.100.1", addrs("203.0.113.1")},
		{"auto from host", Announce{Mode: Auto}, "198.51.100.1", addrs("203.0.113.1", "2001:db8::1")},
		{"auto skips what the host lost", Announce{Mode: Auto, List: addrs("198.51.100.1", "192.0.2.99")}, "198.51.100.1", nil},
		{"none", Announce{Mode: None, List: addrs("203.0.113.1")}, "198.51.100.1", nil},
		{"list", Announce{Mode: List, List: addrs("203.0.113.1", "198.51.100.1")}, "198.51.100.1", addrs("203.0.113.1")},
	}
	for _, c := range cases {
		got := c.a.Addresses(netip.MustParseAddr(c.cur), host)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	// Unknown host addresses (nil): the configured ones count.
	if got := (Announce{Mode: Auto, List: addrs("198.51.100.1", "203.0.113.1")}).Addresses(netip.MustParseAddr("198.51.100.1"), nil); !slices.Equal(got, addrs("203.0.113.1")) {
		t.Errorf("unknown host addresses: %v", got)
	}
}

func TestSwitchDecide(t *testing.T) {
	announced := addrs("203.0.113.1")
	both := func(bool) bool { return true }
	only4 := func(is4 bool) bool { return is4 }
	cases := []struct {
		p      SwitchPolicy
		target string
		has    func(bool) bool
		ok     bool
		why    string
	}{
		{SwitchPolicy{Additional: true}, "203.0.113.1", both, true, "announced"},
		// switch_accept: [] refuses every target, announced or not (issue 10).
		{SwitchPolicy{}, "203.0.113.1", both, false, "every switch is refused"},
		// Announced addresses count only with "additional" in the policy.
		{SwitchPolicy{Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}, "203.0.113.1", both, false, "neither"},
		{SwitchPolicy{Additional: true}, "203.0.113.2", both, false, "switch_accept allows only"},
		{SwitchPolicy{}, "203.0.113.2", both, false, "every switch is refused"},
		{SwitchPolicy{Any: true}, "203.0.113.2", both, true, "any"},
		{SwitchPolicy{Prefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}}, "203.0.113.2", both, true, "203.0.113.0/24"},
		{SwitchPolicy{Prefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}}, "198.51.100.2", both, false, "neither"},
		{SwitchPolicy{Any: true}, "2001:db8::2", only4, false, "address family"},
		{SwitchPolicy{Any: true}, "0.0.0.0", both, false, "not a usable"},
		{SwitchPolicy{Any: true}, "224.0.0.1", both, false, "not a usable"},
	}
	for _, c := range cases {
		ok, why := c.p.Decide(netip.MustParseAddr(c.target), announced, c.has)
		if ok != c.ok || !strings.Contains(why, c.why) {
			t.Errorf("%+v %s: %v %q, want %v %q", c.p, c.target, ok, why, c.ok, c.why)
		}
	}
}

func TestPairs(t *testing.T) {
	cur := Pair{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("198.51.100.1")}
	got := Pairs(cur, addrs("192.0.2.10", "192.0.2.20", "2001:db8:1::10"), addrs("198.51.100.1", "203.0.113.1", "2001:db8::1"), 8)
	want := []Pair{
		cur,
		{netip.MustParseAddr("192.0.2.20"), netip.MustParseAddr("198.51.100.1")},
		{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("203.0.113.1")},
		{netip.MustParseAddr("192.0.2.20"), netip.MustParseAddr("203.0.113.1")},
		{netip.MustParseAddr("2001:db8:1::10"), netip.MustParseAddr("2001:db8::1")},
	}
	if !slices.Equal(got, want) {
		t.Errorf("pairs %v, want %v", got, want)
	}
	if got := Pairs(cur, addrs("192.0.2.20", "192.0.2.30"), addrs("198.51.100.1", "203.0.113.1"), 3); len(got) != 3 {
		t.Errorf("bound not applied: %d pairs", len(got))
	}
}

func TestCookie2(t *testing.T) {
	c, err := NewCookie2(bytes.NewReader(bytes.Repeat([]byte{7}, 64)))
	if err != nil || len(c) != Cookie2Len {
		t.Fatalf("%x %v", c, err)
	}
	if CheckCookie2(c, c) != nil {
		t.Error("equal cookies refused")
	}
	bad := bytes.Clone(c)
	bad[0] ^= 1
	if CheckCookie2(c, bad) == nil || CheckCookie2(c, c[:8]) == nil || CheckCookie2(c, nil) == nil {
		t.Error("wrong cookie accepted")
	}
}

// With additional_addrs auto and no local_addrs, only addresses that can reach the peer
// are announced: not a LAN or container bridge address (issue 11).
func TestAnnounceOnlyReachable(t *testing.T) {
	uplink, second, bridge := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.138"), netip.MustParseAddr("198.18.5.1")
	h := Host{Addrs: []netip.Addr{uplink, second, bridge}, Reachable: func(remote netip.Addr) []netip.Addr {
		if remote.Is4() {
			return []netip.Addr{uplink, second}
		}
		return nil
	}}
	a := Announce{Mode: Auto}
	got := a.Addresses(uplink, a.Candidates(h, addrs("198.51.100.1")))
	if !slices.Equal(got, addrs("192.0.2.138")) {
		t.Errorf("announced %v, want only the second uplink", got)
	}
	// A configured list is the operator's choice: not filtered.
	l := Announce{Mode: List, List: []netip.Addr{bridge}}
	if got := l.Addresses(uplink, l.Candidates(h, addrs("198.51.100.1"))); !slices.Equal(got, []netip.Addr{bridge}) {
		t.Errorf("configured list: %v", got)
	}
	// Without a way to tell, every address counts (as before).
	h.Reachable = nil
	if got := a.Addresses(uplink, a.Candidates(h, addrs("198.51.100.1"))); len(got) != 2 {
		t.Errorf("without Reachable: %v", got)
	}
}
