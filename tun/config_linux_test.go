package tun

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// enterNetns moves the calling test goroutine's thread into a fresh network namespace.
// The goroutine stays locked to the thread, so the runtime retires the thread, and
// with it the namespace and everything in it, when the test returns: nothing can leak
// into the host's network. It returns the path of the namespace for tools.
func enterNetns(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace and a TUN device")
	}
	runtime.LockOSThread() // never unlocked, see above
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("unshare(CLONE_NEWNET): %v", err)
	}
	return fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
}

func addrSet(t *testing.T, l netlink.Link) []string {
	t.Helper()
	as, err := netlink.AddrList(l, unix.AF_UNSPEC)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range as {
		if !a.IP.IsLinkLocalUnicast() {
			out = append(out, a.IPNet.String())
		}
	}
	slices.Sort(out)
	return out
}

func routeSet(t *testing.T, l netlink.Link) []string {
	t.Helper()
	rs, err := netlink.RouteList(l, unix.AF_UNSPEC)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		if r.Dst != nil && !r.Dst.IP.IsLinkLocalUnicast() && !r.Dst.IP.IsMulticast() {
			out = append(out, r.Dst.String())
		}
	}
	slices.Sort(out)
	return out
}

func TestNetlinkConfigurator(t *testing.T) {
	nsPath := enterNetns(t)
	const name = "mvpntest0"
	dev, err := Create(name, 1400)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if got, _ := dev.Name(); got != name {
		t.Fatalf("Name %q", got)
	}
	c, err := NewConfigurator("")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(*NetlinkConfigurator); !ok {
		t.Fatalf("NewConfigurator(\"\") = %T", c)
	}
	defer c.Close()
	link, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	// An address someone else put there first: adding it again succeeds, and Close
	// leaves it.
	foreign := "198.18.9.1/32"
	fa, _ := netlink.ParseAddr(foreign)
	if err := netlink.AddrAdd(link, fa); err != nil {
		t.Fatal(err)
	}

	steps := []error{
		c.Up(name),
		c.AddAddress(name, netip.MustParsePrefix("198.18.0.1/24")),
		c.AddAddress(name, netip.MustParsePrefix("2001:db8:1::1/64")),
		c.AddAddress(name, netip.MustParsePrefix(foreign)),
		c.AddRoute(name, netip.MustParsePrefix("198.18.5.0/24")),
		c.AddRoute(name, netip.MustParsePrefix("2001:db8:5::/64")),
		c.AddRoute(name, netip.MustParsePrefix("198.18.6.9/24")), // masked to 198.18.6.0/24
		c.AddRoute(name, netip.MustParsePrefix("198.18.6.0/24")), // ours already
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if err := c.AddRoute("nosuchdev0", netip.MustParsePrefix("198.18.7.0/24")); err == nil {
		t.Fatal("route over a missing device added")
	}
	if err := c.AddAddress(name, netip.Prefix{}); err == nil {
		t.Fatal("invalid prefix accepted")
	}
	link, _ = netlink.LinkByName(name)
	if link.Attrs().Flags&net.FlagUp == 0 {
		t.Fatal("link not up")
	}
	wantAddrs := []string{"198.18.0.1/24", "198.18.9.1/32", "2001:db8:1::1/64"}
	if got := addrSet(t, link); !slices.Equal(got, wantAddrs) {
		t.Fatalf("addresses %v, want %v", got, wantAddrs)
	}
	// The prefix routes of the addresses come from the kernel, ours are added.
	wantRoutes := []string{"198.18.0.0/24", "198.18.5.0/24", "198.18.6.0/24", "2001:db8:1::/64", "2001:db8:5::/64"}
	if got := routeSet(t, link); !slices.Equal(got, wantRoutes) {
		t.Fatalf("routes %v, want %v", got, wantRoutes)
	}
	// The same, as iproute2 sees it.
	if _, err := exec.LookPath("nsenter"); err == nil {
		out, err := exec.Command("nsenter", "--net="+nsPath, "ip", "-6", "route", "show", "dev", name).CombinedOutput()
		if err != nil {
			t.Fatalf("ip route: %v %s", err, out)
		}
		if !strings.Contains(string(out), "2001:db8:5::/64") {
			t.Fatalf("ip -6 route show dev %s:\n%s", name, out)
		}
	}

	// Routes lead into the TUN: a datagram to 198.18.5.7 comes out of Read.
	testRouteIntoTUN(t, dev)
	// And what the VPN writes arrives at local sockets.
	testWriteToStack(t, dev)

	if err := c.DelRoute(name, netip.MustParsePrefix("198.18.6.0/24")); err != nil {
		t.Fatal(err)
	}
	if got := routeSet(t, link); slices.Contains(got, "198.18.6.0/24") {
		t.Fatalf("DelRoute left %v", got)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := addrSet(t, link); !slices.Equal(got, []string{foreign}) {
		t.Fatalf("after Close addresses %v, want only the foreign %s", got, foreign)
	}
	// A /32 has no prefix route, so no route of the device is left.
	if got := routeSet(t, link); len(got) != 0 {
		t.Fatalf("after Close routes %v", got)
	}
}

// readPacket reads from dev until a packet satisfying match arrives.
func readPacket(t *testing.T, dev Device, match func([]byte) bool) []byte {
	t.Helper()
	type result struct {
		pkt []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		bufs := make([][]byte, dev.BatchSize())
		sizes := make([]int, len(bufs))
		for i := range bufs {
			bufs[i] = make([]byte, Headroom+65535)
		}
		for {
			n, err := dev.Read(bufs, sizes, Headroom)
			if err != nil {
				ch <- result{err: err}
				return
			}
			for i := range n {
				p := bufs[i][Headroom : Headroom+sizes[i]]
				if match(p) {
					ch <- result{pkt: append([]byte(nil), p...)}
					return
				}
			}
		}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Read: %v", r.err)
		}
		return r.pkt
	case <-time.After(5 * time.Second):
		t.Fatal("no packet from the TUN device")
		return nil
	}
}

func testRouteIntoTUN(t *testing.T, dev Device) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(198, 18, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dst := &net.UDPAddr{IP: net.IPv4(198, 18, 5, 7), Port: 9}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		// Resend until read: the device may drop what arrives before it is ready.
		for {
			conn.WriteTo([]byte("into the tunnel"), dst)
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	pkt := readPacket(t, dev, func(p []byte) bool {
		return len(p) >= 28 && p[0]>>4 == 4 && p[9] == unix.IPPROTO_UDP && netip.AddrFrom4([4]byte(p[16:20])) == netip.MustParseAddr("198.18.5.7")
	})
	if src := netip.AddrFrom4([4]byte(pkt[12:16])); src != netip.MustParseAddr("198.18.0.1") {
		t.Fatalf("source %v", src)
	}
	ihl := int(pkt[0]&0xf) * 4
	if string(pkt[ihl+8:]) != "into the tunnel" {
		t.Fatalf("payload %q", pkt[ihl+8:])
	}
}

// testWriteToStack writes an IPv4/UDP packet from 198.18.5.7 to 198.18.0.1 into the
// TUN, with exactly Headroom bytes in front of it, and expects a local socket to get
// it.
func testWriteToStack(t *testing.T, dev Device) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(198, 18, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	port := conn.LocalAddr().(*net.UDPAddr).Port
	payload := []byte("out of the tunnel")
	pkt := make([]byte, 20+8+len(payload))
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	pkt[8] = 64
	pkt[9] = unix.IPPROTO_UDP
	copy(pkt[12:16], []byte{198, 18, 5, 7})
	copy(pkt[16:20], []byte{198, 18, 0, 1})
	binary.BigEndian.PutUint16(pkt[10:], ipChecksum(pkt[:20]))
	binary.BigEndian.PutUint16(pkt[20:], 4242)
	binary.BigEndian.PutUint16(pkt[22:], uint16(port))
	binary.BigEndian.PutUint16(pkt[24:], uint16(8+len(payload)))
	copy(pkt[28:], payload) // UDP checksum 0: none, allowed for IPv4
	buf := append(make([]byte, Headroom), pkt...)
	if _, err := dev.Write([][]byte{buf}, Headroom); err != nil {
		t.Fatalf("Write: %v", err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 100)
	n, from, err := conn.ReadFromUDPAddrPort(b)
	if err != nil {
		t.Fatalf("packet written to the TUN did not arrive: %v", err)
	}
	if string(b[:n]) != string(payload) || from != netip.MustParseAddrPort("198.18.5.7:4242") {
		t.Fatalf("got %q from %v", b[:n], from)
	}
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
