package killswitch

import (
	"errors"
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
	"golang.org/x/sys/unix"
)

// The root test runs in a network namespace of its own: its goroutine locks its thread
// and unshares the thread's network namespace, and never unlocks it, so the runtime
// retires the thread, and the namespace with everything in it, when the test returns.
// Nothing reaches the host's ruleset or network. Subtests would run on other threads,
// so the test is one function.

const (
	testTable = "kstest"
	testMark  = 0x4d56
	underlay  = "ks-under0" // the host's network: default routes through it
	tunDev    = "tun-test"  // stands in for the TUN device
)

// enterNetns moves the calling goroutine's thread into a fresh network namespace.
func enterNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace, interfaces and nftables rules")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skipf("needs nft (nftables): %v", err)
	}
	runtime.LockOSThread() // never unlocked, see above
	host, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("unshare(CLONE_NEWNET): %v", err)
	}
	// A child process (nft) runs in this thread's new namespace, not in the host's.
	self, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("readlink", "/proc/self/ns/net").Output()
	if err != nil {
		t.Fatal(err)
	}
	if child := strings.TrimSpace(string(out)); self == host || child != self {
		t.Fatalf("namespaces: the host's %s, this thread's %s, a child's %s", host, self, child)
	}
	if out, err := exec.Command("nft", "list", "tables").CombinedOutput(); err != nil {
		t.Skipf("needs nftables in the kernel: nft list tables: %v: %s", err, out)
	} else if len(out) != 0 {
		t.Fatalf("a new namespace has tables:\n%s", out)
	}
}

// sysctl writes one of the namespace's sysctls (/proc/sys/net is the opening
// thread's namespace's).
func sysctl(t *testing.T, path, value string) {
	t.Helper()
	if err := os.WriteFile("/proc/sys/net/"+path, []byte(value), 0o644); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func addAddr(t *testing.T, l netlink.Link, prefix string) {
	t.Helper()
	a, err := netlink.ParseAddr(prefix)
	must(t, err)
	a.Flags = unix.IFA_F_NODAD // usable at once
	must(t, netlink.AddrAdd(l, a))
}

// addVeth makes a veth pair, name and name+"p", both up, with the given addresses on
// name. (The dummy driver would do, but not every kernel has it; veth is everywhere
// network namespaces are.) Packets sent through name arrive at name+"p", where the
// namespace drops them: they are for another host's hardware address.
func addVeth(t *testing.T, name string, noARP bool, prefixes ...string) netlink.Link {
	t.Helper()
	must(t, netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}))
	l, err := netlink.LinkByName(name)
	must(t, err)
	peer, err := netlink.LinkByName(name + "p")
	must(t, err)
	for _, p := range prefixes {
		addAddr(t, l, p)
	}
	if noARP { // like a TUN device: sends need no neighbour
		must(t, netlink.LinkSetARPOff(l))
	}
	must(t, netlink.LinkSetUp(peer))
	must(t, netlink.LinkSetUp(l))
	return l
}

// setupLab brings lo up and makes the underlay, with default routes through gateways
// whose neighbour entries are static (sends never wait for ARP or ND), and the TUN-like
// device (without ARP, as a TUN device). The namespace is kept quiet, so that nothing
// but the test's own packets leaves (and is counted): no IPv6 link-local addresses,
// router solicitations or DAD, and the MLD reports that joining the addresses'
// solicited-node groups brings go at once, before the test begins.
func setupLab(t *testing.T) {
	t.Helper()
	for s, v := range map[string]string{"addr_gen_mode": "1", "accept_ra": "0", "router_solicitations": "0",
		"accept_dad": "0", "mldv1_unsolicited_report_interval": "0", "mldv2_unsolicited_report_interval": "0"} {
		sysctl(t, "ipv6/conf/default/"+s, v)
		sysctl(t, "ipv6/conf/all/"+s, v)
	}
	lo, err := netlink.LinkByName("lo")
	must(t, err)
	must(t, netlink.LinkSetUp(lo))
	under := addVeth(t, underlay, false, "192.0.2.1/24", "2001:db8:1::1/64")
	addVeth(t, tunDev, true, "198.18.0.1/32")
	for _, gw := range []struct{ ip, mac string }{{"192.0.2.2", "02:00:00:00:00:02"}, {"2001:db8:1::2", "02:00:00:00:00:02"}} {
		ip := net.ParseIP(gw.ip)
		mac, _ := net.ParseMAC(gw.mac)
		family := unix.AF_INET6
		if ip.To4() != nil {
			family = unix.AF_INET
		}
		must(t, netlink.NeighSet(&netlink.Neigh{LinkIndex: under.Attrs().Index, Family: family,
			State: netlink.NUD_PERMANENT, IP: ip, HardwareAddr: mac}))
		must(t, netlink.RouteAdd(&netlink.Route{LinkIndex: under.Attrs().Index, Gw: ip}))
	}
	// Quiet: nothing left the underlay for a while.
	last, since := txPackets(t, underlay), time.Now()
	for deadline := time.Now().Add(5 * time.Second); time.Since(since) < 300*time.Millisecond; time.Sleep(20 * time.Millisecond) {
		if n := txPackets(t, underlay); n != last {
			last, since = n, time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatal("the underlay does not fall quiet")
		}
	}
}

// sendUDP sends one datagram to dst (port 9 unless dst has one) from a socket with
// the given mark (0: none), bound to dev (empty: not bound) and to the local port
// sport (0: any).
func sendUDP(dst string, mark uint32, dev string, sport int) error {
	ap, err := netip.ParseAddrPort(dst)
	if err != nil {
		ap = netip.AddrPortFrom(netip.MustParseAddr(dst), 9)
	}
	family := unix.AF_INET6
	var sa, local unix.Sockaddr = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}, &unix.SockaddrInet6{Port: sport}
	if ap.Addr().Is4() {
		family = unix.AF_INET
		sa, local = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}, &unix.SockaddrInet4{Port: sport}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	if mark != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
			return fmt.Errorf("SO_MARK: %w", err)
		}
	}
	if dev != "" {
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, dev); err != nil {
			return fmt.Errorf("SO_BINDTODEVICE: %w", err)
		}
	}
	if sport != 0 {
		if err := unix.Bind(fd, local); err != nil {
			return fmt.Errorf("bind: %w", err)
		}
	}
	return unix.Sendto(fd, []byte("kill switch test"), 0, sa)
}

// sendICMPv6 sends an ICMPv6 message of type typ (code 0, the rest zero) to dst
// through a raw socket, which fills in the checksum.
func sendICMPv6(dst string, typ byte) error {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	msg := make([]byte, 24) // type, code, checksum, reserved, target address
	msg[0] = typ
	return unix.Sendto(fd, msg, 0, &unix.SockaddrInet6{Addr: netip.MustParseAddr(dst).As16()})
}

func txPackets(t *testing.T, dev string) uint64 {
	t.Helper()
	l, err := netlink.LinkByName(dev)
	must(t, err)
	return l.Attrs().Statistics.TxPackets
}

func nftOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("nft", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// lab checks what becomes of packets under the Firewall f.
type lab struct {
	t *testing.T
	f *Firewall
}

func (l lab) dropped() uint64 {
	l.t.Helper()
	n, err := l.f.Dropped()
	must(l.t, err)
	return n
}

// expect sends one packet and checks what became of it: "sent": it left through the
// device out and the kill switch counted nothing; "dropped": the send failed with
// EPERM, the kill switch counted it, nothing left through out. (Out of lo, a UDP
// datagram to a closed port brings an ICMP error back the same way: one or more.)
func (l lab) expect(want, out, what string, send func() error) {
	l.t.Helper()
	d0, tx0 := l.dropped(), txPackets(l.t, out)
	err := send()
	d1, tx1 := l.dropped(), txPackets(l.t, out)
	left := tx1 == tx0+1 || out == "lo" && tx1 > tx0
	switch want {
	case "sent":
		if err != nil || d1 != d0 || !left {
			l.t.Errorf("%s: %v, dropped %d more, %d more out of %s; want it sent", what, err, d1-d0, tx1-tx0, out)
		}
	case "dropped":
		if !errors.Is(err, unix.EPERM) || d1 != d0+1 || tx1 != tx0 {
			l.t.Errorf("%s: %v, dropped %d more, %d more out of %s; want it dropped (EPERM)", what, err, d1-d0, tx1-tx0, out)
		}
	default:
		l.t.Fatalf("expect %q", want)
	}
}

// udp expects what becomes of a datagram (see sendUDP).
func (l lab) udp(want, out, dst string, mark uint32, dev string, sport int) {
	l.t.Helper()
	l.expect(want, out, fmt.Sprintf("UDP to %s (mark %#x, device %q, port %d)", dst, mark, dev, sport),
		func() error { return sendUDP(dst, mark, dev, sport) })
}

const v4, v6 = "203.0.113.7", "2001:db8:ffff::7"

func TestKillSwitchInNetns(t *testing.T) {
	enterNetns(t)
	setupLab(t)
	f, err := New(Options{Table: testTable})
	must(t, err)
	l := lab{t, f}

	// No kill switch: everything goes out.
	l.udp("sent", underlay, v4, 0, "", 0)
	l.udp("sent", underlay, v6, 0, "", 0)

	fullTunnel(l)
	linkSetup(l)
	splitTunnel(l)
	forwarded(l)
	leftover(l)
}

// fullTunnel: everything is blocked but the TUN device, lo and the mark.
func fullTunnel(l lab) {
	t := l.t
	must(t, l.f.Set(Spec{Dev: tunDev, Mark: testMark, Block: prefixes("0.0.0.0/0", "::/0")}))
	if tables := nftOut(t, "list", "tables"); tables != "table inet "+testTable+"\n" {
		t.Fatalf("nft list tables (this namespace's only):\n%s", tables)
	}
	before := l.dropped()
	l.udp("dropped", underlay, v4, 0, "", 0)
	l.udp("dropped", underlay, v6, 0, "", 0)
	l.udp("dropped", underlay, v4, testMark+1, "", 0) // another mark
	l.udp("sent", underlay, v4, testMark, "", 0)      // the daemon's IKE and ESP
	l.udp("sent", underlay, v6, testMark, "", 0)
	l.udp("dropped", underlay, "192.0.2.2", 0, "", 0) // the local network too
	l.udp("dropped", underlay, v4, 0, underlay, 0)    // bound to the underlay
	l.udp("sent", tunDev, v4, 0, tunDev, 0)           // into the tunnel
	l.udp("sent", "lo", "192.0.2.1", 0, "", 0)        // the host itself
	l.udp("sent", "lo", "[::1]:9", 0, "", 0)
	// Without LinkSetup, no DHCP and no ND.
	l.udp("dropped", underlay, v4+":67", 0, "", 68)
	l.udp("dropped", underlay, "[2001:db8:1::2]:547", 0, "", 546)
	l.expect("dropped", underlay, "neighbour solicitation", func() error { return sendICMPv6("2001:db8:1::2", 135) })
	if d := l.dropped(); d != before+8 {
		t.Errorf("Dropped = %d, want %d", d, before+8)
	}
}

// linkSetup: a full tunnel that lets DHCP and ND through, with overlapping prefixes.
func linkSetup(l lab) {
	t := l.t
	must(t, l.f.Set(Spec{Dev: tunDev, Mark: testMark, LinkSetup: true,
		Block: prefixes("10.0.0.0/8", "0.0.0.0/0", "192.0.2.0/24", "2001:db8::/32", "::/0", "::ffff:0:0/96")}))
	ruleset := nftOut(t, "list", "table", "inet", testTable)
	for _, w := range []string{"elements = { 0.0.0.0/0 }", "elements = { ::/0 }"} {
		if !strings.Contains(ruleset, w) {
			t.Errorf("no %q in:\n%s", w, ruleset)
		}
	}
	l.udp("sent", underlay, v4+":67", 0, "", 68)               // DHCPv4 (a renewal: unicast)
	l.udp("sent", underlay, "[2001:db8:1::2]:547", 0, "", 546) // DHCPv6
	l.udp("dropped", underlay, v4+":68", 0, "", 67)            // not the client's direction
	l.udp("dropped", underlay, v4+":53", 0, "", 68)
	l.expect("sent", underlay, "neighbour solicitation", func() error { return sendICMPv6("2001:db8:1::2", 135) })
	l.expect("sent", underlay, "neighbour advertisement", func() error { return sendICMPv6("2001:db8:1::2", 136) })
	l.expect("sent", underlay, "router solicitation", func() error { return sendICMPv6("2001:db8:1::2", 133) })
	l.expect("dropped", underlay, "echo request", func() error { return sendICMPv6("2001:db8:1::2", 128) })
	l.udp("dropped", underlay, v4, 0, "", 0)
	l.udp("sent", underlay, v4, testMark, "", 0)
}

// splitTunnel: only one prefix is blocked, IPv6 not at all.
func splitTunnel(l lab) {
	t := l.t
	must(t, l.f.Set(Spec{Dev: tunDev, Mark: testMark, Block: prefixes("198.51.100.0/24")}))
	if ruleset := nftOut(t, "list", "table", "inet", testTable); strings.Contains(ruleset, "ip6") || strings.Contains(ruleset, "block6") {
		t.Errorf("IPv6 rules without IPv6 prefixes:\n%s", ruleset)
	}
	l.udp("sent", underlay, v4, 0, "", 0)
	l.udp("sent", underlay, v6, 0, "", 0)
	l.udp("dropped", underlay, "198.51.100.9", 0, "", 0)
	l.udp("sent", underlay, "198.51.100.9", testMark, "", 0)
	l.udp("sent", underlay, "198.51.101.9", 0, "", 0)
}

// leftover: a daemon killed without Remove leaves its table in force; the next one
// replaces it, and removes it.
func leftover(l lab) {
	t := l.t
	must(t, l.f.Set(Spec{Dev: tunDev, Mark: testMark, Block: prefixes("0.0.0.0/0", "::/0")}))
	total := l.dropped()
	// l.f is "killed": a new Firewall finds its table, still dropping.
	g, err := New(Options{Table: testTable})
	must(t, err)
	l2 := lab{t, g}
	if d := l2.dropped(); d != 0 {
		t.Errorf("a new Firewall's Dropped = %d before its Set", d)
	}
	if err := sendUDP(v4, 0, "", 0); !errors.Is(err, unix.EPERM) {
		t.Errorf("with the killed daemon's table left: %v, want EPERM", err)
	}
	must(t, g.Set(Spec{Dev: tunDev, Mark: testMark, Block: prefixes("::/0")}))
	if tables := nftOut(t, "list", "tables"); tables != "table inet "+testTable+"\n" {
		t.Errorf("nft list tables:\n%s", tables)
	}
	l2.udp("sent", underlay, v4, 0, "", 0)
	l2.udp("dropped", underlay, v6, 0, "", 0)
	if d := l2.dropped(); d != 1 {
		t.Errorf("the new Firewall's Dropped = %d, want 1", d)
	}

	must(t, g.Remove())
	if tables := nftOut(t, "list", "tables"); tables != "" {
		t.Errorf("nft list tables after Remove:\n%s", tables)
	}
	l2.udp("sent", underlay, v4, 0, "", 0)
	l2.udp("sent", underlay, v6, 0, "", 0)
	if d := l2.dropped(); d != 1 {
		t.Errorf("Dropped after Remove = %d, want 1 (what was counted)", d)
	}
	must(t, g.Remove())   // nothing to remove
	must(t, l.f.Remove()) // nor for the first Firewall
	if d := l.dropped(); d < total {
		t.Errorf("the first Firewall's Dropped went down from %d to %d", total, d)
	}
}

// lanHost is a second network namespace behind a veth pair (lanDev here), whose
// traffic this namespace routes: a container or a LAN the host shares its network
// with. Its goroutine holds the namespace's thread until stop.
type lanHost struct {
	sends chan string // destinations: one unmarked UDP datagram each
	errs  chan error
}

const lanDev = "ks-lan0"

func startLANHost(t *testing.T) *lanHost {
	t.Helper()
	sysctl(t, "ipv4/ip_forward", "1")
	addVeth(t, lanDev, false, "192.168.50.1/24")
	h := &lanHost{sends: make(chan string), errs: make(chan error)}
	fds := make(chan int)
	go h.run(fds)
	fd := <-fds
	if fd < 0 {
		t.Fatal(<-h.errs)
	}
	peer, err := netlink.LinkByName(lanDev + "p")
	must(t, err)
	err = netlink.LinkSetNsFd(peer, fd)
	unix.Close(fd)
	h.errs <- err // nil: moved, configure it; else give up
	must(t, err)
	must(t, <-h.errs)
	return h
}

// run is the LAN host's goroutine: it never unlocks its thread, so the namespace ends
// with it.
func (h *lanHost) run(fds chan<- int) {
	runtime.LockOSThread()
	fd := -1
	err := unix.Unshare(unix.CLONE_NEWNET)
	if err == nil {
		fd, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	fds <- fd
	if err != nil {
		h.errs <- err
		return
	}
	if <-h.errs != nil {
		return
	}
	err = configureLANHost()
	h.errs <- err
	if err != nil {
		return
	}
	for dst := range h.sends {
		h.errs <- sendUDP(dst, 0, "", 0)
	}
}

func configureLANHost() error {
	l, err := netlink.LinkByName(lanDev + "p")
	if err != nil {
		return err
	}
	a, _ := netlink.ParseAddr("192.168.50.2/24")
	if err := netlink.AddrAdd(l, a); err != nil {
		return err
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return err
	}
	return netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP("192.168.50.1")})
}

func (h *lanHost) send(dst string) error {
	h.sends <- dst
	return <-h.errs
}

func (h *lanHost) stop() { close(h.sends) }

// forwarded: what this namespace routes for the LAN host is blocked just as its own
// traffic, and what it routes into the tunnel is not.
func forwarded(l lab) {
	t := l.t
	h := startLANHost(t)
	defer h.stop()
	tun, err := netlink.LinkByName(tunDev)
	must(t, err)
	must(t, netlink.RouteAdd(&netlink.Route{LinkIndex: tun.Attrs().Index, Dst: &net.IPNet{IP: net.ParseIP("198.18.99.0").To4(), Mask: net.CIDRMask(24, 32)}}))

	must(t, l.f.Remove())
	l.forward(h, "sent", underlay, v4) // no kill switch
	must(t, l.f.Set(Spec{Dev: tunDev, Mark: testMark, Block: prefixes("0.0.0.0/0", "::/0")}))
	l.forward(h, "dropped", underlay, v4)
	l.forward(h, "sent", tunDev, "198.18.99.9")
}

// forward has the LAN host send one datagram to dst, which this namespace routes out
// of out, and checks what became of it. The LAN host's send succeeds either way, and
// the packet arrives here a moment later (after ARP, the first time).
func (l lab) forward(h *lanHost, want, out, dst string) {
	t := l.t
	t.Helper()
	d0, tx0 := l.dropped(), txPackets(t, out)
	if err := h.send(dst); err != nil {
		t.Fatalf("the LAN host's send to %s: %v", dst, err)
	}
	var d1, tx1 uint64
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if d1, tx1 = l.dropped(), txPackets(t, out); d1 != d0 || tx1 != tx0 {
			time.Sleep(50 * time.Millisecond) // anything more?
			d1, tx1 = l.dropped(), txPackets(t, out)
			break
		}
	}
	switch {
	case want == "sent" && (d1 != d0 || tx1 != tx0+1),
		want == "dropped" && (d1 != d0+1 || tx1 != tx0):
		t.Errorf("forwarded to %s: dropped %d more, %d more out of %s; want it %s", dst, d1-d0, tx1-tx0, out, want)
	}
}
