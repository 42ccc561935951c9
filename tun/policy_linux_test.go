package tun

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// routeDev is the device `ip route get dst [mark mark]` picks, or "" when none.
func routeDev(t *testing.T, dst string, mark uint32) string {
	t.Helper()
	rs, err := netlink.RouteGetWithOptions(net.ParseIP(dst), &netlink.RouteGetOptions{Mark: mark})
	if err != nil || len(rs) == 0 {
		return ""
	}
	l, err := netlink.LinkByIndex(rs[0].LinkIndex)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Name
}

func policyRules(t *testing.T, table int) int {
	t.Helper()
	n := 0
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		rs, err := netlink.RuleListFiltered(fam, &netlink.Rule{Table: table}, netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Fatal(err)
		}
		n += len(rs)
	}
	return n
}

// TestPolicyRouting: a full tunnel's default routes go to their own table, which
// every packet but the marked ones uses: the tunnel device for everything, the
// underlay for the daemon's marked sockets. Close removes rules and routes; a
// killed daemon's leftovers are removed by the next UsePolicyRouting.
func TestPolicyRouting(t *testing.T) {
	enterNetns(t)
	p := DefaultPolicyRouting
	// The underlay: a veth link with a default route (no dummy module here).
	under := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "under0"}, PeerName: "under1"}
	if err := netlink.LinkAdd(under); err != nil {
		t.Fatal(err)
	}
	if peer, err := netlink.LinkByName("under1"); err != nil || netlink.LinkSetUp(peer) != nil {
		t.Fatalf("veth peer: %v", err)
	}
	ul, _ := netlink.LinkByName("under0")
	a, _ := netlink.ParseAddr("192.0.2.10/24")
	if err := netlink.AddrAdd(ul, a); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(ul); err != nil {
		t.Fatal(err)
	}
	if err := netlink.RouteAdd(&netlink.Route{Gw: net.ParseIP("192.0.2.1"), LinkIndex: ul.Attrs().Index}); err != nil {
		t.Fatal(err)
	}
	const name = "mvpnpol0"
	dev, err := Create(name, 1400)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	tl, _ := netlink.LinkByName(name)

	// Leftovers of a killed daemon: a rule and a route in the table.
	stale := policyRule(p, unix.AF_INET)
	stale.Priority = p.Priority + 1
	if err := netlink.RuleAdd(stale); err != nil {
		t.Fatal(err)
	}
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: ul.Attrs().Index, Dst: ipNet(netip.MustParsePrefix("198.18.0.0/16")), Table: p.Table}); err != nil {
		t.Fatal(err)
	}
	c, err := NewNetlinkConfigurator()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.UsePolicyRouting(p); err != nil {
		t.Fatal(err)
	}
	if n := policyRules(t, p.Table); n != 0 {
		t.Fatalf("%d stale rules left", n)
	}
	if rs, _ := netlink.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: p.Table}, netlink.RT_FILTER_TABLE); len(rs) != 0 {
		t.Fatalf("stale routes left: %v", rs)
	}
	if err := c.Up(name); err != nil {
		t.Fatal(err)
	}
	for _, pf := range []string{"0.0.0.0/0", "::/0"} {
		if err := c.AddRoute(name, netip.MustParsePrefix(pf)); err != nil {
			t.Fatal(err)
		}
	}
	if n := policyRules(t, p.Table); n != 2 {
		t.Fatalf("%d rules, want one per family", n)
	}
	if got := routeDev(t, "203.0.113.9", 0); got != name {
		t.Errorf("unmarked traffic to 203.0.113.9 goes to %q, want the tunnel", got)
	}
	if got := routeDev(t, "192.0.2.1", 0); got != name {
		t.Errorf("unmarked traffic to the underlay's own subnet goes to %q, want the tunnel (full tunnel)", got)
	}
	if got := routeDev(t, "203.0.113.9", p.Mark); got != "under0" {
		t.Errorf("marked traffic goes to %q, want the underlay", got)
	}
	if got := routeDev(t, "2001:db8::1", 0); got != name {
		t.Errorf("unmarked IPv6 goes to %q, want the tunnel", got)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n := policyRules(t, p.Table); n != 0 {
		t.Errorf("%d rules left after Close", n)
	}
	if rs, _ := netlink.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: p.Table, LinkIndex: tl.Attrs().Index}, netlink.RT_FILTER_TABLE); len(rs) != 0 {
		t.Errorf("routes left after Close: %v", rs)
	}
	if got := routeDev(t, "203.0.113.9", 0); got != "under0" {
		t.Errorf("after Close, traffic goes to %q, want the underlay", got)
	}
}
