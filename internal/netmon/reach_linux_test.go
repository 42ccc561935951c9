package netmon

import (
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// A client with an uplink (default route), a second uplink with a worse default route,
// and a bridge without any route beyond its own prefix: only the uplinks' addresses can
// reach the gateway.
func TestReachable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (a network namespace); ./scripts/test.sh runs it as root")
	}
	var b [3]byte
	rand.Read(b[:])
	name := "mvrc" + hex.EncodeToString(b[:])
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"netns", "exec", name}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	for _, l := range [][2]string{{"up0", "up0p"}, {"up1", "up1p"}, {"br0", "br0p"}} {
		run("ip", "link", "add", l[0], "type", "veth", "peer", "name", l[1])
		run("ip", "link", "set", l[0], "up")
		run("ip", "link", "set", l[1], "up")
	}
	run("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0")
	run("ip", "addr", "add", "192.0.2.10/25", "dev", "up0")
	run("ip", "addr", "add", "192.0.2.138/25", "dev", "up1")
	run("ip", "addr", "add", "198.18.5.1/24", "dev", "br0")
	run("ip", "addr", "add", "2001:db8:1::10/64", "dev", "up0")
	run("ip", "route", "add", "default", "via", "192.0.2.1", "dev", "up0", "metric", "10")
	run("ip", "route", "add", "default", "via", "192.0.2.129", "dev", "up1", "metric", "100")
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	got, err := reachable(*h, netip.MustParseAddr("198.51.100.1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.138")}; !slices.Equal(got, want) {
		t.Errorf("reachable toward 198.51.100.1: %v, want %v (not the bridge's 198.18.5.1)", got, want)
	}
	// No IPv6 route beyond the on-link prefix: nothing reaches an IPv6 gateway elsewhere,
	// while a neighbour on the prefix is reached from up0.
	if got, _ := reachable(*h, netip.MustParseAddr("2001:db8:2::1"), 0); len(got) != 0 {
		t.Errorf("reachable toward 2001:db8:2::1: %v, want none", got)
	}
	if got, _ := reachable(*h, netip.MustParseAddr("2001:db8:1::1"), 0); !slices.Equal(got, []netip.Addr{netip.MustParseAddr("2001:db8:1::10")}) {
		t.Errorf("reachable toward 2001:db8:1::1: %v", got)
	}
}
