package udp

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// datagram i of a test train: its index in the first two bytes, then a pattern.
func trainDatagram(i, size int) []byte {
	b := make([]byte, size)
	b[0], b[1] = byte(i>>8), byte(i)
	for k := 2; k < size; k++ {
		b[k] = byte(i + k)
	}
	return b
}

// readDatagrams reads until want datagrams (GRO trains split at Segment) arrived.
func readDatagrams(t *testing.T, c Conn, want int) (got [][]byte, trains int) {
	t.Helper()
	msgs := make([]Message, 8)
	for i := range msgs {
		msgs[i].Buffer = make([]byte, MaxGROSize)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < want {
		if time.Now().After(deadline) {
			t.Fatalf("got %d of %d datagrams", len(got), want)
		}
		n, err := c.ReadBatch(msgs)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs[:n] {
			if m.Truncated {
				t.Fatal("truncated read")
			}
			b := m.Buffer[:m.N]
			seg := m.Segment
			if seg == 0 {
				seg = len(b)
			} else {
				trains++
			}
			for off := 0; off < len(b); off += seg {
				got = append(got, append([]byte(nil), b[off:min(off+seg, len(b))]...))
			}
		}
	}
	return got, trains
}

func offloader(t *testing.T, c Conn, gso, gro bool) {
	t.Helper()
	o, ok := c.(Offloader)
	if !ok {
		t.Fatal("Linux Conn is not an Offloader")
	}
	gsoOn, groOn := o.SetOffload(gso, gro)
	if gsoOn != gso || groOn != (gro && kernelAtLeast(5, 12)) {
		t.Fatalf("SetOffload(%v, %v) = %v, %v", gso, gro, gsoOn, groOn)
	}
}

// Runs of equal datagrams go out as segmented sends and arrive, with GRO, as trains:
// every datagram arrives once, whole, in order, and mixed destinations and lengths
// are not merged.
func TestGSOAndGRO(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	a, b, c := listenFamily(t, lo), listenFamily(t, lo), listenFamily(t, lo)
	offloader(t, a, true, false)
	offloader(t, b, false, true)
	toB, toC := netip.AddrPortFrom(lo, b.LocalAddr().Port()), netip.AddrPortFrom(lo, c.LocalAddr().Port())
	var msgs []Message
	var wantB, wantC [][]byte
	add := func(dst netip.AddrPort, size int) {
		d := trainDatagram(len(msgs), size)
		msgs = append(msgs, Message{Buffer: d, N: size, Remote: dst})
		if dst == toB {
			wantB = append(wantB, d)
		} else {
			wantC = append(wantC, d)
		}
	}
	for range 100 { // more than one train's 64 segments
		add(toB, 1200)
	}
	add(toB, 700) // a shorter one ends the train
	add(toB, 1200)
	add(toC, 1200) // another destination
	for range 10 {
		add(toB, 300)
	}
	add(toB, 400) // longer than the train: not in it
	n, err := a.WriteBatch(msgs)
	if n != len(msgs) || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	gotB, trains := readDatagrams(t, b, len(wantB))
	for i := range wantB {
		if !bytes.Equal(gotB[i], wantB[i]) {
			t.Fatalf("datagram %d to b: %d bytes, index %x; want %d bytes, index %x", i, len(gotB[i]), gotB[i][:2], len(wantB[i]), wantB[i][:2])
		}
	}
	if kernelAtLeast(5, 12) && trains == 0 {
		t.Error("no GRO train arrived")
	}
	gotC, _ := readDatagrams(t, c, 1)
	if !bytes.Equal(gotC[0], wantC[0]) {
		t.Fatal("datagram to c changed")
	}
}

// How WriteBatch groups messages into segmented sends.
func TestPrepareWritesGrouping(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	c := listenFamily(t, lo).(*linuxConn)
	x, y := netip.AddrPortFrom(lo, 1000), netip.AddrPortFrom(lo, 1001)
	src := netip.AddrPortFrom(lo, 0)
	mk := func(dst netip.AddrPort, n int) Message { return Message{Buffer: make([]byte, 2000), N: n, Remote: dst} }
	var msgs []Message
	for range 70 {
		msgs = append(msgs, mk(x, 100))
	}
	msgs = append(msgs, mk(x, 50), mk(x, 100), mk(y, 100), mk(y, 100))
	m := mk(y, 100)
	m.Local = src
	msgs = append(msgs, m, mk(y, 0), mk(y, 0))
	c.wmu.Lock()
	defer c.wmu.Unlock()
	nh, nm, err := c.prepareWrites(msgs, true, 0)
	if err != nil || nm != len(msgs) {
		t.Fatalf("prepareWrites: %d headers, %d messages, %v", nh, nm, err)
	}
	// 64 | 6 + the short one | 1 | 2 to y | 1 from src | two empty ones alone
	want := []int{0, 64, 71, 72, 74, 75, 76, 77}
	if nh != len(want)-1 {
		t.Fatalf("%d headers, want %d", nh, len(want)-1)
	}
	for h, f := range want {
		if c.w.first[h] != f {
			t.Fatalf("header %d starts at message %d, want %d (%v)", h, c.w.first[h], f, c.w.first[:nh+1])
		}
	}
	// Without GSO, and for the first plain messages, one header each.
	if nh, _, _ = c.prepareWrites(msgs[:10], false, 0); nh != 10 {
		t.Fatalf("without GSO: %d headers for 10 messages", nh)
	}
	if nh, _, _ = c.prepareWrites(msgs[:10], true, 5); nh != 6 {
		t.Fatalf("5 plain, then a train: %d headers", nh)
	}
}

// A train whose segments exceed the path MTU is refused by the kernel (EINVAL) and
// goes out unsegmented (fragmented) instead; GSO stays on.
func TestGSOFallbackAboveMTU(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace with a small MTU")
	}
	runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("unshare(CLONE_NEWNET): %v", err)
	}
	l, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetMTU(l, 1500); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	waitLoopback(t, "127.0.0.1:0")
	lo := netip.MustParseAddr("127.0.0.1")
	a, b := listenFamily(t, lo), listenFamily(t, lo)
	offloader(t, a, true, false)
	dst := netip.AddrPortFrom(lo, b.LocalAddr().Port())
	var msgs []Message
	for i := range 5 {
		msgs = append(msgs, Message{Buffer: trainDatagram(i, 3000), N: 3000, Remote: dst})
	}
	for i := 5; i < 10; i++ {
		msgs = append(msgs, Message{Buffer: trainDatagram(i, 1000), N: 1000, Remote: dst})
	}
	n, err := a.WriteBatch(msgs)
	if n != len(msgs) || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	got, _ := readDatagrams(t, b, len(msgs))
	for i := range msgs {
		if !bytes.Equal(got[i], msgs[i].Buffer) {
			t.Fatalf("datagram %d: %d bytes", i, len(got[i]))
		}
	}
	if !a.(*linuxConn).gso.Load() {
		t.Fatal("GSO turned off by a train above the MTU")
	}
}

// Offloads off: no trains, and SetOffload reports them off.
func TestOffloadOff(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	a, b := listenFamily(t, lo), listenFamily(t, lo)
	offloader(t, a, false, false)
	offloader(t, b, false, false)
	dst := netip.AddrPortFrom(lo, b.LocalAddr().Port())
	var msgs []Message
	for i := range 20 {
		msgs = append(msgs, Message{Buffer: trainDatagram(i, 500), N: 500, Remote: dst})
	}
	if n, err := a.WriteBatch(msgs); n != len(msgs) || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	got, trains := readDatagrams(t, b, len(msgs))
	if trains != 0 || len(got) != len(msgs) {
		t.Fatalf("%d trains, %d datagrams", trains, len(got))
	}
}

func TestParseRelease(t *testing.T) {
	for _, tc := range []struct {
		in       string
		maj, min int
		ok       bool
	}{
		{"6.1.0-13-amd64", 6, 1, true},
		{"5.12", 5, 12, true},
		{"6.18.44-fc-v669", 6, 18, true},
		{"4", 0, 0, false},
		{"x.1", 0, 0, false},
		{"", 0, 0, false},
		{"5.", 0, 0, false},
	} {
		maj, min, ok := parseRelease(tc.in)
		if maj != tc.maj || min != tc.min || ok != tc.ok {
			t.Errorf("parseRelease(%q) = %d, %d, %v", tc.in, maj, min, ok)
		}
	}
}

// FuzzParseControl feeds received control data: pktinfo and UDP_GRO cmsgs.
func FuzzParseControl(f *testing.F) {
	oob := make([]byte, oobSize)
	n := putPktinfo(oob, netip.MustParseAddr("192.0.2.1"), "")
	n += putGRO(oob[n:], 1400)
	f.Add(append([]byte(nil), oob[:n]...))
	n = putPktinfo(oob, netip.MustParseAddr("2001:db8::1"), "")
	n += putGRO(oob[n:], 64)
	f.Add(append([]byte(nil), oob[:n]...))
	f.Add(append([]byte(nil), oob[:putGRO(oob, 0)]...))
	f.Fuzz(func(t *testing.T, b []byte) {
		buf := make([]uint64, (len(b)+7)/8)
		al := unsafeBytes(buf)[:len(b)]
		copy(al, b)
		a, seg := parseControl(al)
		if a.IsValid() && !a.Is4() && !a.Is6() {
			t.Fatalf("invalid address %v", a)
		}
		if seg < 0 || seg > MaxGROSize {
			t.Fatalf("segment size %d", seg)
		}
	})
}

// putGRO writes a UDP_GRO cmsg as the kernel does (an int).
func putGRO(oob []byte, size int) int {
	n := putSegment(oob, size) // same layout but a u16: widen it
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Type = unix.UDP_GRO
	h.SetLen(unix.CmsgLen(4))
	d := oob[unix.CmsgLen(0):]
	binary.NativeEndian.PutUint32(d, uint32(size))
	return n
}

func TestParseControlGRO(t *testing.T) {
	buf := make([]uint64, oobSize/8)
	oob := unsafeBytes(buf)
	// IPV6_PKTINFO has the address at the same place on send and receive.
	n := putPktinfo(oob, netip.MustParseAddr("2001:db8::7"), "")
	n += putGRO(oob[n:], 1234)
	a, seg := parseControl(oob[:n])
	if a != netip.MustParseAddr("2001:db8::7") || seg != 1234 {
		t.Fatalf("parseControl = %v, %d", a, seg)
	}
}
