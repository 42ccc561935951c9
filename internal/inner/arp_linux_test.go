package inner

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// segment puts the calling goroutine's thread into a fresh network namespace (the
// node) joined by a veth pair to another namespace (a host on the inner segment), and
// returns the node's interface and the host's namespace name, for `ip netns exec`.
// The node's namespace dies with the thread when the test returns.
func segment(t *testing.T) (string, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	host := fmt.Sprintf("mvt-inner-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", host).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", host).Run() })
	runtime.LockOSThread() // never unlocked: the thread, and the node's namespace, die with the test
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	la := netlink.NewLinkAttrs()
	la.Name = "inner0"
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "host0"}); err != nil {
		t.Fatal(err)
	}
	hns, err := netns.GetFromName(host)
	if err != nil {
		t.Fatal(err)
	}
	defer hns.Close()
	peer, _ := netlink.LinkByName("host0")
	if err := netlink.LinkSetNsFd(peer, int(hns)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{
		"ip addr add 198.18.1.1/24 dev inner0", "ip -6 addr add 2001:db8:1::1/64 dev inner0 nodad", "ip link set inner0 up",
		"ip link set lo up", "ip route add 198.18.1.77/32 dev lo", "ip -6 route add 2001:db8:1::77/128 dev lo",
		"sysctl -qw net.ipv4.conf.inner0.forwarding=1", "sysctl -qw net.ipv6.conf.inner0.forwarding=1", "sysctl -qw net.ipv6.conf.inner0.proxy_ndp=1",
	} {
		run(t, "", c)
	}
	for _, c := range []string{
		"ip addr add 198.18.1.2/24 dev host0", "ip -6 addr add 2001:db8:1::2/64 dev host0 nodad", "ip link set host0 up",
		"sysctl -qw net.ipv4.conf.host0.arp_accept=1",
	} {
		run(t, host, c)
	}
	return "inner0", host
}

// run runs command c in netns ns ("": the calling thread's, through its /proc path).
func run(t *testing.T, ns, c string) string {
	t.Helper()
	args := strings.Fields(c)
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, args...)
	} else {
		args = append([]string{"nsenter", "--net=" + fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())}, args...)
	}
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v %s", c, err, out)
	}
	return string(out)
}

// The node answers ARP and NDP for the addresses it claims, announces them (a host
// that accepts gratuitous ARP learns the node's MAC address at once), and stops
// answering once it released them.
func TestARPAnnouncer(t *testing.T) {
	ifname, host := segment(t)
	ifi, _ := net.InterfaceByName(ifname)
	mac := ifi.HardwareAddr.String()
	an, err := NewARP(ifname)
	if err != nil {
		t.Fatal(err)
	}
	v4, v6 := netip.MustParseAddr("198.18.1.77"), netip.MustParseAddr("2001:db8:1::77")
	for _, a := range []netip.Addr{v4, v6} {
		if err := an.Claim(a); err != nil {
			t.Fatal(err)
		}
	}
	proxies := run(t, "", "ip neigh show proxy dev inner0")
	if !strings.Contains(proxies, "198.18.1.77") || !strings.Contains(proxies, "2001:db8:1::77") {
		t.Fatalf("proxy entries: %q", proxies)
	}
	// The gratuitous ARP made the host learn the node's MAC address.
	if !waitOut(t, host, "ip neigh show 198.18.1.77 dev host0", mac) {
		t.Errorf("the host did not learn %s from the gratuitous ARP: %q (node MAC %s)", v4, run(t, host, "ip neigh show dev host0"), mac)
	}
	// A host that asks is answered: ARP and NDP.
	run(t, host, "ip neigh flush dev host0")
	exec.Command("ip", "netns", "exec", host, "ping", "-c1", "-W1", "198.18.1.77").Run()
	exec.Command("ip", "netns", "exec", host, "ping", "-6", "-c1", "-W1", "2001:db8:1::77").Run()
	for _, a := range []string{"198.18.1.77", "2001:db8:1::77"} {
		if !waitOut(t, host, "ip neigh show "+a+" dev host0", mac) {
			t.Errorf("%s not answered with the node's MAC: %q", a, run(t, host, "ip neigh show dev host0"))
		}
	}
	if err := an.Release(v4); err != nil {
		t.Fatal(err)
	}
	if err := an.Close(); err != nil {
		t.Fatal(err)
	}
	if p := run(t, "", "ip neigh show proxy dev inner0"); strings.TrimSpace(p) != "" {
		t.Errorf("proxy entries left after Release and Close: %q", p)
	}
}

// A node that does not forward cannot answer for anyone: NewARP says so.
func TestARPAnnouncerNeedsForwarding(t *testing.T) {
	ifname, _ := segment(t)
	run(t, "", "sysctl -qw net.ipv4.conf.inner0.forwarding=0")
	if _, err := NewARP(ifname); err == nil || !strings.Contains(err.Error(), "forwarding is 0") {
		t.Errorf("NewARP without forwarding: %v", err)
	}
	if _, err := NewARP("nonesuch0"); err == nil {
		t.Error("NewARP of a missing interface")
	}
}

// waitOut waits up to 3 s for command c in ns to print want.
func waitOut(t *testing.T, ns, c, want string) bool {
	for range 30 {
		if strings.Contains(run(t, ns, c), want) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}
