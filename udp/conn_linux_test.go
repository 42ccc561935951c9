package udp

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestIPv6SocketIsV6Only(t *testing.T) {
	if !hasIPv6Loopback() {
		t.Skip("host has no IPv6")
	}
	c := listenFamily(t, netip.IPv6Unspecified())
	rc, err := c.(*linuxConn).uc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil || v != 1 {
		t.Fatalf("IPV6_V6ONLY = %d, %v", v, gerr)
	}
}

func TestSocketBuffers(t *testing.T) {
	c := listenFamily(t, netip.IPv4Unspecified())
	rc, _ := c.(*linuxConn).uc.SyscallConn()
	var rcv, snd int
	rc.Control(func(fd uintptr) {
		rcv, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		snd, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
	})
	// The kernel doubles the requested value; without CAP_NET_ADMIN it caps it at
	// net.core.[rw]mem_max.
	if os.Geteuid() == 0 && (rcv < SocketBufferSize || snd < SocketBufferSize) {
		t.Fatalf("as root: SO_RCVBUF %d SO_SNDBUF %d, want >= %d", rcv, snd, SocketBufferSize)
	}
	if rcv < 200<<10 {
		t.Fatalf("SO_RCVBUF %d: buffer was not raised", rcv)
	}
}

// The kernel refuses a source address the host does not have; the error names the
// failed message.
func TestWriteFromForeignSourceFails(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	a := listenFamily(t, lo)
	b := listenFamily(t, lo)
	dst := netip.AddrPortFrom(lo, b.LocalAddr().Port())
	msgs := []Message{
		{Buffer: []byte("ok"), N: 2, Remote: dst},
		{Buffer: []byte("bad"), N: 3, Remote: dst, Local: netip.MustParseAddrPort("203.0.113.77:0")},
	}
	n, err := a.WriteBatch(msgs)
	if n != 1 || err == nil {
		t.Fatalf("WriteBatch = %d, %v; want 1 and an error", n, err)
	}
	if got := readN(t, b, 1, 64)[0]; string(got.Buffer[:got.N]) != "ok" {
		t.Fatalf("got %q", got.Buffer[:got.N])
	}
}

// IPv6 has a single loopback address, so the IPv6 source choice is tested in a fresh
// network namespace of this thread with 2001:db8::1 and 2001:db8::2 on its lo. The
// namespace has no other interface and disappears with the thread: the test goroutine
// stays locked to it, so the runtime retires the thread when the test ends.
func TestChosenSourceIPv6(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace (CAP_SYS_ADMIN) for a second IPv6 address")
	}
	runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("unshare(CLONE_NEWNET): %v", err)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"2001:db8::1/128", "2001:db8::2/128", "198.51.100.1/32"} {
		addr, _ := netlink.ParseAddr(a)
		addr.Flags = unix.IFA_F_NODAD
		if err := netlink.AddrAdd(lo, addr); err != nil {
			t.Fatalf("add %s: %v", a, err)
		}
	}
	waitLoopback(t, "[2001:db8::1]:0", "[2001:db8::2]:0", "[::1]:0", "198.51.100.1:0", "127.0.0.1:0")
	testChosenSource(t, netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"))
	testChosenSource(t, netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("::1"))
	testChosenSource(t, netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("127.0.0.1"))
}

// waitLoopback returns once a datagram sent to each of addrs comes back: the kernel
// installs the local route of a new IPv6 address asynchronously (after its DAD work
// runs, even with IFA_F_NODAD), and until then datagrams to it vanish without an error.
func waitLoopback(t *testing.T, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		pc, err := net.ListenPacket("udp", a)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, err := pc.WriteTo([]byte("probe"), pc.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			pc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if _, _, err := pc.ReadFrom(make([]byte, 16)); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("loopback in the new namespace does not deliver to %s", a)
			}
		}
		pc.Close()
	}
}

// A steady-state batch (write on one socket, read on another) allocates nothing.
func TestBatchAllocs(t *testing.T) {
	for _, lo := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()} {
		if lo.Is6() && !hasIPv6Loopback() {
			continue
		}
		a := listenFamily(t, lo)
		b := listenFamily(t, lo)
		const n = 32
		out := make([]Message, n)
		in := make([]Message, n)
		for i := range out {
			out[i] = Message{Buffer: make([]byte, 1200), N: 1200, Remote: netip.AddrPortFrom(lo, b.LocalAddr().Port()), Local: netip.AddrPortFrom(lo, 0)}
			in[i].Buffer = make([]byte, 1500)
		}
		var failed error
		round := func() {
			if _, err := a.WriteBatch(out); err != nil {
				failed = err
				return
			}
			for got := 0; got < n; {
				k, err := b.ReadBatch(in[:n-got])
				if err != nil {
					failed = err
					return
				}
				got += k
			}
		}
		round()
		allocs := testing.AllocsPerRun(50, round)
		if failed != nil {
			t.Fatal(failed)
		}
		if allocs != 0 {
			t.Fatalf("%v: %v allocations per batch of %d, want 0", lo, allocs, n)
		}
	}
}

func FuzzParsePktinfo(f *testing.F) {
	oob := make([]byte, oobSize)
	f.Add(oob[:putPktinfo(oob, netip.MustParseAddr("192.0.2.1"), "")])
	f.Add(oob[:putPktinfo(oob, netip.MustParseAddr("2001:db8::1"), "")])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		// The cmsg header is read in place, so give it the alignment the kernel does.
		buf := make([]uint64, (len(b)+7)/8)
		al := unsafeBytes(buf)[:len(b)]
		copy(al, b)
		a := parsePktinfo(al)
		if a.IsValid() && !a.Is4() && !a.Is6() {
			t.Fatalf("invalid address %v", a)
		}
	})
}

func FuzzParseSockaddr(f *testing.F) {
	var sa unix.RawSockaddrInet6
	f.Add(sockaddrBytes(&sa, putSockaddr(&sa, netip.MustParseAddrPort("192.0.2.1:4500"))))
	f.Add(sockaddrBytes(&sa, putSockaddr(&sa, netip.MustParseAddrPort("[2001:db8::1]:500"))))
	f.Fuzz(func(t *testing.T, b []byte) {
		var sa unix.RawSockaddrInet6
		copy((*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(&sa))[:], b)
		ap := parseSockaddr(&sa, uint32(len(b)))
		if ap.IsValid() {
			var back unix.RawSockaddrInet6
			if ap.Addr().Zone() == "" && parseSockaddr(&back, putSockaddr(&back, ap)) != ap {
				t.Fatalf("%v does not round-trip", ap)
			}
		}
	})
}

func TestSockaddrRoundTrip(t *testing.T) {
	for _, s := range []string{"192.0.2.1:4500", "[2001:db8::1]:500", "[fe80::1%7]:500", "0.0.0.0:1"} {
		ap := netip.MustParseAddrPort(s)
		var sa unix.RawSockaddrInet6
		if got := parseSockaddr(&sa, putSockaddr(&sa, ap)); got != ap {
			t.Fatalf("%v -> %v", ap, got)
		}
	}
	// An IPv4-mapped source from the kernel appears as plain IPv4.
	var sa unix.RawSockaddrInet6
	putSockaddr(&sa, netip.MustParseAddrPort("[::ffff:192.0.2.1]:500"))
	if got := parseSockaddr(&sa, unix.SizeofSockaddrInet6); got != netip.MustParseAddrPort("192.0.2.1:500") {
		t.Fatalf("mapped address parsed as %v", got)
	}
	if ifi, err := net.InterfaceByName("lo"); err == nil {
		if zoneIndex("lo") != uint32(ifi.Index) {
			t.Fatalf("zoneIndex(lo) = %d, want %d", zoneIndex("lo"), ifi.Index)
		}
	}
}

func unsafeBytes(u []uint64) []byte {
	if len(u) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&u[0])), 8*len(u))
}

func sockaddrBytes(sa *unix.RawSockaddrInet6, n uint32) []byte {
	return append([]byte(nil), (*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(sa))[:n]...)
}

// TestSetMark: SO_MARK is set on the socket (read back with getsockopt).
func TestSetMark(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN) for SO_MARK")
	}
	c, err := ListenAddr(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := SetMark(c, 4555); err != nil {
		t.Fatal(err)
	}
	var got int
	var gerr error
	if err := c.(*linuxConn).rc.Control(func(fd uintptr) {
		got, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK)
	}); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	if got != 4555 {
		t.Fatalf("SO_MARK %d, want 4555", got)
	}
}
