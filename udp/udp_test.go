package udp

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

// listenPair opens two wildcard sockets of the family of lo and fails the test if it
// cannot.
func listenFamily(t *testing.T, lo netip.Addr) Conn {
	t.Helper()
	wild := netip.IPv4Unspecified()
	if lo.Is6() {
		wild = netip.IPv6Unspecified()
	}
	c, err := ListenAddr(netip.AddrPortFrom(wild, 0))
	if err != nil {
		t.Fatalf("ListenAddr(%v): %v", wild, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func hasIPv6Loopback() bool {
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// readN reads until n datagrams arrived or the deadline passed.
func readN(t *testing.T, c Conn, n int, size int) []Message {
	t.Helper()
	out := make([]Message, 0, n)
	done := make(chan error, 1)
	go func() {
		for len(out) < n {
			msgs := make([]Message, c.BatchSize())
			for i := range msgs {
				msgs[i].Buffer = make([]byte, size)
			}
			k, err := c.ReadBatch(msgs)
			if err != nil {
				done <- err
				return
			}
			out = append(out, msgs[:k]...)
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ReadBatch: %v", err)
		}
	case <-time.After(5 * time.Second):
		c.Close()
		<-done
		t.Fatalf("timed out after %d of %d datagrams", len(out), n)
	}
	return out
}

func TestListenBothFamiliesSamePort(t *testing.T) {
	conns, err := Listen(0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if !hasIPv6Loopback() {
		if len(conns) != 1 || !conns[0].LocalAddr().Addr().Is4() {
			t.Fatalf("host without IPv6: want one IPv4 conn, got %d", len(conns))
		}
		return
	}
	if len(conns) != 2 {
		t.Fatalf("got %d conns, want 2", len(conns))
	}
	a4, a6 := conns[0].LocalAddr(), conns[1].LocalAddr()
	if a4.Addr() != netip.IPv4Unspecified() || a6.Addr() != netip.IPv6Unspecified() {
		t.Fatalf("addresses %v %v", a4, a6)
	}
	if a4.Port() == 0 || a4.Port() != a6.Port() {
		t.Fatalf("ports differ or zero: %v %v", a4, a6)
	}
	// The same fixed port again must fail: both sockets are really bound.
	if again, err := Listen(a4.Port()); err == nil {
		for _, c := range again {
			c.Close()
		}
		t.Fatalf("Listen(%d) twice succeeded", a4.Port())
	}
	// An IPv4 datagram to the port reaches the IPv4 socket, never the IPv6 one
	// (IPV6_V6ONLY).
	s := listenFamily(t, netip.IPv4Unspecified())
	msg := []Message{{Buffer: []byte("v4"), N: 2, Remote: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), a4.Port())}}
	if _, err := s.WriteBatch(msg); err != nil {
		t.Fatal(err)
	}
	got := readN(t, conns[0], 1, 64)
	if string(got[0].Buffer[:got[0].N]) != "v4" {
		t.Fatalf("got %q", got[0].Buffer[:got[0].N])
	}
}

func testRoundTrip(t *testing.T, lo netip.Addr, count int) {
	a := listenFamily(t, lo)
	b := listenFamily(t, lo)
	dst := netip.AddrPortFrom(lo, b.LocalAddr().Port())
	msgs := make([]Message, count)
	for i := range msgs {
		p := fmt.Appendf(nil, "datagram %d to %v", i, dst)
		msgs[i] = Message{Buffer: p, N: len(p), Remote: dst}
	}
	n, err := a.WriteBatch(msgs)
	if err != nil || n != count {
		t.Fatalf("WriteBatch = %d, %v; want %d", n, err, count)
	}
	got := readN(t, b, count, 2048)
	for i, m := range got {
		want := fmt.Sprintf("datagram %d to %v", i, dst)
		if string(m.Buffer[:m.N]) != want || m.Truncated {
			t.Fatalf("datagram %d: %q truncated=%v, want %q", i, m.Buffer[:m.N], m.Truncated, want)
		}
		if m.Local != dst {
			t.Fatalf("datagram %d: Local %v, want %v", i, m.Local, dst)
		}
		if want := netip.AddrPortFrom(lo, a.LocalAddr().Port()); m.Remote != want {
			t.Fatalf("datagram %d: Remote %v, want %v", i, m.Remote, want)
		}
	}
}

func TestRoundTripIPv4(t *testing.T) {
	testRoundTrip(t, netip.MustParseAddr("127.0.0.1"), 64)
}

func TestRoundTripIPv6(t *testing.T) {
	if !hasIPv6Loopback() {
		t.Skip("host has no ::1")
	}
	testRoundTrip(t, netip.IPv6Loopback(), 64)
}

// More than one batch in one call: WriteBatch splits it.
func TestWriteLargerThanBatch(t *testing.T) {
	testRoundTrip(t, netip.MustParseAddr("127.0.0.1"), 3*batchSize+5)
}

// TestConcurrentWriters: WriteBatch is safe for concurrent use (the ESP datapath and
// the IKE sender share a NAT-T socket): several goroutines write batches on one socket
// at once and every datagram arrives whole. Run with -race to check the locking.
func TestConcurrentWriters(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	a := listenFamily(t, lo)
	b := listenFamily(t, lo)
	dst := netip.AddrPortFrom(lo, b.LocalAddr().Port())
	const writers, batches, per = 4, 8, 8
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			for k := range batches {
				msgs := make([]Message, per)
				for i := range msgs {
					p := fmt.Appendf(nil, "writer %d batch %d datagram %d", w, k, i)
					msgs[i] = Message{Buffer: p, N: len(p), Remote: dst, Local: netip.AddrPortFrom(lo, 0)}
				}
				if n, err := a.WriteBatch(msgs); err != nil || n != per {
					errs <- fmt.Errorf("writer %d: WriteBatch = %d, %v", w, n, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for _, m := range readN(t, b, writers*batches*per, 2048) {
		if m.Truncated {
			t.Fatalf("truncated datagram %q", m.Buffer[:m.N])
		}
		seen[string(m.Buffer[:m.N])] = true
	}
	for w := range writers {
		for k := range batches {
			for i := range per {
				if s := fmt.Sprintf("writer %d batch %d datagram %d", w, k, i); !seen[s] {
					t.Errorf("%q missing", s)
				}
			}
		}
	}
}

// 127.0.0.0/8 is local on lo, so a second local address needs no setup: send from
// 127.0.0.2 and to 127.0.0.3.
func TestChosenSourceIPv4(t *testing.T) {
	testChosenSource(t, netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"))
}

func testChosenSource(t *testing.T, src, dstAddr netip.Addr) {
	a := listenFamily(t, src)
	b := listenFamily(t, src)
	dst := netip.AddrPortFrom(dstAddr, b.LocalAddr().Port())
	msgs := []Message{
		{Buffer: []byte("chosen"), N: 6, Remote: dst, Local: netip.AddrPortFrom(src, 0)},
		{Buffer: []byte("chosen-port-ignored"), N: 19, Remote: dst, Local: netip.AddrPortFrom(src, 9)},
	}
	if n, err := a.WriteBatch(msgs); n != 2 || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	got := readN(t, b, 2, 64)
	for _, m := range got {
		if want := netip.AddrPortFrom(src, a.LocalAddr().Port()); m.Remote != want {
			t.Fatalf("Remote %v, want %v", m.Remote, want)
		}
		if m.Local != dst {
			t.Fatalf("Local %v, want %v", m.Local, dst)
		}
	}
	// Reply from where the request came to, as a responder does.
	reply := []Message{{Buffer: []byte("reply"), N: 5, Remote: got[0].Remote, Local: got[0].Local}}
	if _, err := b.WriteBatch(reply); err != nil {
		t.Fatal(err)
	}
	r := readN(t, a, 1, 64)[0]
	if r.Remote != dst || r.Local != netip.AddrPortFrom(src, a.LocalAddr().Port()) {
		t.Fatalf("reply Remote %v Local %v", r.Remote, r.Local)
	}
}

// A message that cannot be sent stops the batch: the count says which one failed and
// the messages before it went out.
func TestWriteBatchStopsAtBadMessage(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	a := listenFamily(t, lo)
	b := listenFamily(t, lo)
	dst := netip.AddrPortFrom(lo, b.LocalAddr().Port())
	for _, bad := range []Message{
		{Buffer: []byte("x"), N: 1, Remote: netip.MustParseAddrPort("[2001:db8::1]:500")},
		{Buffer: []byte("x"), N: 1, Remote: netip.AddrPortFrom(lo, 0)},
		{Buffer: []byte("x"), N: 2, Remote: dst},
		{Buffer: []byte("x"), N: 1, Remote: dst, Local: netip.MustParseAddrPort("[::1]:0")},
	} {
		msgs := []Message{{Buffer: []byte("first"), N: 5, Remote: dst}, bad, {Buffer: []byte("third"), N: 5, Remote: dst}}
		n, err := a.WriteBatch(msgs)
		if n != 1 || err == nil {
			t.Fatalf("bad message %+v: WriteBatch = %d, %v; want 1 and an error", bad, n, err)
		}
		if got := readN(t, b, 1, 64)[0]; string(got.Buffer[:got.N]) != "first" {
			t.Fatalf("got %q", got.Buffer[:got.N])
		}
	}
}

func TestTruncated(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	a := listenFamily(t, lo)
	b := listenFamily(t, lo)
	dst := netip.AddrPortFrom(lo, b.LocalAddr().Port())
	big := bytes.Repeat([]byte{0xab}, 1000)
	msgs := []Message{{Buffer: big, N: len(big), Remote: dst}, {Buffer: big[:100], N: 100, Remote: dst}}
	if _, err := a.WriteBatch(msgs); err != nil {
		t.Fatal(err)
	}
	got := readN(t, b, 2, 100)
	if !got[0].Truncated || got[0].N != 100 {
		t.Fatalf("1000-byte datagram into 100 bytes: Truncated=%v N=%d", got[0].Truncated, got[0].N)
	}
	if got[1].Truncated || got[1].N != 100 {
		t.Fatalf("100-byte datagram into 100 bytes: Truncated=%v N=%d", got[1].Truncated, got[1].N)
	}
}

func TestCloseUnblocksReader(t *testing.T) {
	c := listenFamily(t, netip.IPv4Unspecified())
	errc := make(chan error, 1)
	go func() {
		_, err := c.ReadBatch([]Message{{Buffer: make([]byte, 10)}})
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadBatch after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadBatch still blocked after Close")
	}
}

// BenchmarkLoopback moves batches of 1200-byte datagrams over 127.0.0.1.
func BenchmarkLoopback(b *testing.B) {
	lo := netip.MustParseAddr("127.0.0.1")
	a, err := ListenAddr(netip.AddrPortFrom(lo, 0))
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	r, err := ListenAddr(netip.AddrPortFrom(lo, 0))
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	n := a.BatchSize()
	out := make([]Message, n)
	in := make([]Message, n)
	for i := range out {
		out[i] = Message{Buffer: make([]byte, 1200), N: 1200, Remote: r.LocalAddr()}
		in[i].Buffer = make([]byte, 1500)
	}
	b.SetBytes(int64(n * 1200))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.WriteBatch(out); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < n; {
			k, err := r.ReadBatch(in[:n-got])
			if err != nil {
				b.Fatal(err)
			}
			got += k
		}
	}
}
