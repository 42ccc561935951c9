package memnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/udp"
)

var (
	addrA  = netip.MustParseAddr("192.0.2.1")
	addrA2 = netip.MustParseAddr("192.0.2.11")
	addrA6 = netip.MustParseAddr("2001:db8::1")
	addrB  = netip.MustParseAddr("198.51.100.1")
	addrB2 = netip.MustParseAddr("198.51.100.2")
	addrB6 = netip.MustParseAddr("2001:db8::2")
)

func listen(t *testing.T, h *Host, port uint16) (v4, v6 *Conn) {
	t.Helper()
	cs, err := h.Listen(port)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 {
		t.Fatalf("Listen returned %d conns", len(cs))
	}
	t.Cleanup(func() { cs[0].Close(); cs[1].Close() })
	return cs[0].(*Conn), cs[1].(*Conn)
}

func send(t *testing.T, c udp.Conn, local netip.Addr, to netip.AddrPort, payloads ...string) {
	t.Helper()
	msgs := make([]udp.Message, len(payloads))
	for i, p := range payloads {
		msgs[i] = udp.Message{Buffer: []byte(p), N: len(p), Remote: to, Local: netip.AddrPortFrom(local, 0)}
	}
	if n, err := c.WriteBatch(msgs); n != len(msgs) || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
}

// recv reads exactly n datagrams or fails after 5 seconds.
func recv(t *testing.T, c udp.Conn, n int) []udp.Message {
	t.Helper()
	var out []udp.Message
	deadline := time.After(5 * time.Second)
	for len(out) < n {
		type res struct {
			msgs []udp.Message
			err  error
		}
		ch := make(chan res, 1)
		go func() {
			msgs := make([]udp.Message, n-len(out))
			for i := range msgs {
				msgs[i].Buffer = make([]byte, 1500)
			}
			k, err := c.ReadBatch(msgs)
			ch <- res{msgs[:k], err}
		}()
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatalf("ReadBatch: %v", r.err)
			}
			out = append(out, r.msgs...)
		case <-deadline:
			t.Fatalf("got %d of %d datagrams", len(out), n)
		}
	}
	return out
}

// nothingQueued checks that c has no datagram waiting.
func nothingQueued(t *testing.T, c *Conn) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.count != 0 || c.held != nil {
		t.Fatalf("%d datagrams queued, held %v", c.count, c.held != nil)
	}
}

func payload(m udp.Message) string { return string(m.Buffer[:m.N]) }

func TestDeliveryAndAddresses(t *testing.T) {
	nw := New()
	a := nw.Host(addrA, addrA2, addrA6)
	b := nw.Host(addrB, addrB2, addrB6)
	a4, a6 := listen(t, a, 500)
	b4, b6 := listen(t, b, 0)
	if a4.LocalAddr() != netip.MustParseAddrPort("0.0.0.0:500") || a6.LocalAddr() != netip.MustParseAddrPort("[::]:500") {
		t.Fatalf("LocalAddr %v %v", a4.LocalAddr(), a6.LocalAddr())
	}
	port := b4.LocalAddr().Port()
	if port == 0 || b6.LocalAddr().Port() != port {
		t.Fatalf("ephemeral ports %v %v", b4.LocalAddr(), b6.LocalAddr())
	}

	// Unset Local: the first address of the family is the source.
	send(t, a4, netip.Addr{}, netip.AddrPortFrom(addrB2, port), "one", "two")
	got := recv(t, b4, 2)
	for i, want := range []string{"one", "two"} {
		m := got[i]
		if payload(m) != want || m.Local != netip.AddrPortFrom(addrB2, port) || m.Remote != netip.AddrPortFrom(addrA, 500) {
			t.Fatalf("got %q Local %v Remote %v", payload(m), m.Local, m.Remote)
		}
	}
	// Chosen source, and the reply goes back to it from where the request arrived.
	send(t, a4, addrA2, netip.AddrPortFrom(addrB, port), "req")
	req := recv(t, b4, 1)[0]
	if req.Remote != netip.AddrPortFrom(addrA2, 500) || req.Local != netip.AddrPortFrom(addrB, port) {
		t.Fatalf("request Local %v Remote %v", req.Local, req.Remote)
	}
	send(t, b4, req.Local.Addr(), req.Remote, "resp")
	resp := recv(t, a4, 1)[0]
	if resp.Remote != req.Local || resp.Local != req.Remote {
		t.Fatalf("response Local %v Remote %v", resp.Local, resp.Remote)
	}
	// IPv6 goes to the IPv6 conn; mapped IPv4 destinations are plain IPv4.
	send(t, a6, netip.Addr{}, netip.AddrPortFrom(addrB6, port), "six")
	if m := recv(t, b6, 1)[0]; payload(m) != "six" || m.Remote != netip.AddrPortFrom(addrA6, 500) {
		t.Fatalf("IPv6: %q from %v", payload(m), m.Remote)
	}
	send(t, a4, netip.Addr{}, netip.AddrPortFrom(netip.AddrFrom16(addrB.As16()), port), "mapped")
	if m := recv(t, b4, 1)[0]; m.Local.Addr() != addrB {
		t.Fatalf("mapped destination arrived at %v", m.Local)
	}
	nothingQueued(t, b6)
	if s := nw.Stats(); s.Sent != 6 || s.Delivered != 6 {
		t.Fatalf("stats %+v", s)
	}
}

func TestSenderMayReuseBuffer(t *testing.T) {
	nw := New()
	a4, _ := listen(t, nw.Host(addrA), 1)
	b4, _ := listen(t, nw.Host(addrB), 2)
	buf := []byte("first")
	msgs := []udp.Message{{Buffer: buf, N: 5, Remote: netip.AddrPortFrom(addrB, 2)}}
	a4.WriteBatch(msgs)
	copy(buf, "XXXXX")
	if m := recv(t, b4, 1)[0]; payload(m) != "first" {
		t.Fatalf("got %q", payload(m))
	}
}

func TestWriteErrors(t *testing.T) {
	nw := New()
	a := nw.Host(addrA)
	a4, a6 := listen(t, a, 1)
	b4, _ := listen(t, nw.Host(addrB), 2)
	to := netip.AddrPortFrom(addrB, 2)
	cases := []struct {
		msg udp.Message
		is  error
	}{
		{udp.Message{Buffer: []byte("x"), N: 1, Remote: to, Local: netip.AddrPortFrom(addrA2, 0)}, ErrAddrNotAvailable},
		{udp.Message{Buffer: []byte("x"), N: 1, Remote: to, Local: netip.AddrPortFrom(addrA6, 0)}, nil},
		{udp.Message{Buffer: []byte("x"), N: 1, Remote: netip.AddrPortFrom(addrB6, 2)}, nil},
		{udp.Message{Buffer: []byte("x"), N: 2, Remote: to}, nil},
		{udp.Message{Buffer: []byte("x"), N: 1, Remote: netip.AddrPortFrom(addrB, 0)}, nil},
	}
	for i, tc := range cases {
		ok := udp.Message{Buffer: []byte("ok"), N: 2, Remote: to}
		n, err := a4.WriteBatch([]udp.Message{ok, tc.msg, ok})
		if n != 1 || err == nil || (tc.is != nil && !errors.Is(err, tc.is)) {
			t.Fatalf("case %d: WriteBatch = %d, %v", i, n, err)
		}
	}
	// A host without IPv6 addresses cannot send IPv6.
	if n, err := a6.WriteBatch([]udp.Message{{Buffer: []byte("x"), N: 1, Remote: netip.AddrPortFrom(addrB6, 2)}}); n != 0 || !errors.Is(err, ErrNoSourceAddr) {
		t.Fatalf("IPv6 from a host without IPv6: %d, %v", n, err)
	}
	recv(t, b4, len(cases)) // the first message of each case
	nothingQueued(t, b4)
}

func TestRemoveAddr(t *testing.T) {
	nw := New()
	a := nw.Host(addrA, addrA2)
	a4, _ := listen(t, a, 500)
	b := nw.Host(addrB)
	b4, _ := listen(t, b, 500)
	if err := a.RemoveAddr(addrA); err != nil {
		t.Fatal(err)
	}
	if got := a.Addrs(); len(got) != 1 || got[0] != addrA2 {
		t.Fatalf("Addrs %v", got)
	}
	// Sending from the lost address fails.
	_, err := a4.WriteBatch([]udp.Message{{Buffer: []byte("x"), N: 1, Remote: netip.AddrPortFrom(addrB, 500), Local: netip.AddrPortFrom(addrA, 0)}})
	if !errors.Is(err, ErrAddrNotAvailable) {
		t.Fatalf("send from removed address: %v", err)
	}
	// The kernel's choice is now the remaining address.
	send(t, a4, netip.Addr{}, netip.AddrPortFrom(addrB, 500), "x")
	if m := recv(t, b4, 1)[0]; m.Remote.Addr() != addrA2 {
		t.Fatalf("source %v", m.Remote)
	}
	// Datagrams to the lost address are dropped.
	send(t, b4, netip.Addr{}, netip.AddrPortFrom(addrA, 500), "lost")
	nothingQueued(t, a4)
	if s := nw.Stats(); s.Unroutable != 1 {
		t.Fatalf("Unroutable %d", s.Unroutable)
	}
	// The address can move to another host, which then receives it.
	if err := b.AddAddr(addrA); err != nil {
		t.Fatal(err)
	}
	if err := a.AddAddr(addrA); err == nil {
		t.Fatal("one address on two hosts")
	}
	send(t, a4, netip.Addr{}, netip.AddrPortFrom(addrA, 500), "moved")
	if m := recv(t, b4, 1)[0]; payload(m) != "moved" || m.Local.Addr() != addrA {
		t.Fatalf("%q at %v", payload(m), m.Local)
	}
	if err := a.RemoveAddr(addrB); err == nil {
		t.Fatal("removed an address the host does not have")
	}
}

func TestListenPortInUse(t *testing.T) {
	nw := New()
	h := nw.Host(addrA)
	c4, c6 := listen(t, h, 4500)
	if _, err := h.Listen(4500); err == nil {
		t.Fatal("port bound twice")
	}
	c4.Close()
	if _, err := h.Listen(4500); err == nil {
		t.Fatal("port bound while its IPv6 conn is open")
	}
	c6.Close()
	cs, err := h.Listen(4500)
	if err != nil {
		t.Fatalf("port not released by Close: %v", err)
	}
	cs[0].Close()
	cs[1].Close()
	// A closed Conn cannot send.
	if _, err := c4.WriteBatch([]udp.Message{{Buffer: []byte("x"), N: 1, Remote: netip.AddrPortFrom(addrA, 1)}}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}

func TestCloseUnblocksReader(t *testing.T) {
	nw := New()
	c4, _ := listen(t, nw.Host(addrA), 1)
	errc := make(chan error, 1)
	go func() {
		_, err := c4.ReadBatch(make([]udp.Message, 4))
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	c4.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadBatch: %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("ReadBatch still blocked after Close")
	}
	if err := c4.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestTruncatedAndBatch(t *testing.T) {
	nw := New()
	a4, _ := listen(t, nw.Host(addrA), 1)
	b4, _ := listen(t, nw.Host(addrB), 2)
	send(t, a4, netip.Addr{}, netip.AddrPortFrom(addrB, 2), "0123456789", "abc", "x")
	msgs := make([]udp.Message, 8)
	for i := range msgs {
		msgs[i].Buffer = make([]byte, 5)
	}
	n, err := b4.ReadBatch(msgs)
	if n != 3 || err != nil {
		t.Fatalf("ReadBatch = %d, %v; want all 3 queued", n, err)
	}
	if !msgs[0].Truncated || msgs[0].N != 5 || payload(msgs[0]) != "01234" {
		t.Fatalf("long datagram: %q truncated=%v", payload(msgs[0]), msgs[0].Truncated)
	}
	if msgs[1].Truncated || payload(msgs[1]) != "abc" {
		t.Fatalf("short datagram: %q truncated=%v", payload(msgs[1]), msgs[1].Truncated)
	}
}

func TestQueueFull(t *testing.T) {
	nw := New()
	nw.SetQueueLen(4)
	a4, _ := listen(t, nw.Host(addrA), 1)
	b4, _ := listen(t, nw.Host(addrB), 2)
	for i := range 10 {
		send(t, a4, netip.Addr{}, netip.AddrPortFrom(addrB, 2), fmt.Sprint(i))
	}
	got := recv(t, b4, 4)
	for i, m := range got {
		if payload(m) != fmt.Sprint(i) {
			t.Fatalf("datagram %d is %q: the oldest must stay", i, payload(m))
		}
	}
	nothingQueued(t, b4)
	if b4.Dropped() != 6 || nw.Stats().QueueFull != 6 {
		t.Fatalf("Dropped %d, stats %+v", b4.Dropped(), nw.Stats())
	}
}

func TestLossRate(t *testing.T) {
	const n = 10000
	run := func(seed uint64) (int, []string) {
		nw := New()
		nw.SetImpairment(Impairment{Loss: 0.3, Seed: seed})
		nw.SetQueueLen(n)
		a4, _ := listen(t, nw.Host(addrA), 1)
		b4, _ := listen(t, nw.Host(addrB), 2)
		msgs := make([]udp.Message, n)
		for i := range msgs {
			p := fmt.Appendf(nil, "%d", i)
			msgs[i] = udp.Message{Buffer: p, N: len(p), Remote: netip.AddrPortFrom(addrB, 2)}
		}
		if k, err := a4.WriteBatch(msgs); k != n || err != nil {
			t.Fatalf("WriteBatch = %d, %v", k, err)
		}
		s := nw.Stats()
		if s.Sent != n || s.Lost+s.Delivered != n {
			t.Fatalf("stats %+v", s)
		}
		// Everything delivered is queued already, so ReadBatch does not block.
		got := make([]udp.Message, s.Delivered)
		for i := range got {
			got[i].Buffer = make([]byte, 8)
		}
		if k, err := b4.ReadBatch(got); k != len(got) || err != nil {
			t.Fatalf("ReadBatch = %d, %v; want %d", k, err, len(got))
		}
		nothingQueued(t, b4)
		var first []string
		for _, m := range got[:20] {
			first = append(first, payload(m))
		}
		return int(s.Lost), first
	}
	lost, first := run(1)
	if rate := float64(lost) / n; rate < 0.28 || rate > 0.32 {
		t.Fatalf("loss rate %.3f, want about 0.3", rate)
	}
	lost2, first2 := run(1)
	if lost2 != lost || fmt.Sprint(first2) != fmt.Sprint(first) {
		t.Fatal("same seed, different losses")
	}
	if lost3, first3 := run(2); lost3 == lost && fmt.Sprint(first3) == fmt.Sprint(first) {
		t.Fatal("different seeds, same losses")
	}
}

func TestDuplicateAndReorder(t *testing.T) {
	nw := New()
	a4, _ := listen(t, nw.Host(addrA), 1)
	b4, _ := listen(t, nw.Host(addrB), 2)
	to := netip.AddrPortFrom(addrB, 2)

	nw.SetImpairment(Impairment{Duplicate: 1})
	send(t, a4, netip.Addr{}, to, "dup")
	for _, m := range recv(t, b4, 2) {
		if payload(m) != "dup" {
			t.Fatalf("got %q", payload(m))
		}
	}
	nothingQueued(t, b4)

	// Reorder everything: each datagram is held until the next one, so pairs swap.
	nw.SetImpairment(Impairment{Reorder: 1})
	send(t, a4, netip.Addr{}, to, "1", "2", "3", "4", "5")
	got := recv(t, b4, 4)
	want := []string{"2", "1", "4", "3"}
	for i := range want {
		if payload(got[i]) != want[i] {
			t.Fatalf("order %v, want %v", got, want)
		}
	}
	b4.mu.Lock()
	if b4.count != 0 || b4.held == nil {
		t.Fatalf("%d queued, held %v; want only \"5\" held", b4.count, b4.held != nil)
	}
	b4.mu.Unlock()
	nw.Flush()
	if m := recv(t, b4, 1)[0]; payload(m) != "5" {
		t.Fatalf("flushed %q", payload(m))
	}
	if s := nw.Stats(); s.Duplicated != 1 || s.Reordered != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestFilter(t *testing.T) {
	nw := New()
	a4, _ := listen(t, nw.Host(addrA), 1)
	b4, _ := listen(t, nw.Host(addrB), 2)
	var seen []Packet
	nw.SetFilter(func(p *Packet) []Packet {
		seen = append(seen, Packet{Src: p.Src, Dst: p.Dst, Data: append([]byte(nil), p.Data...)})
		switch string(p.Data) {
		case "drop":
			return nil
		case "rewrite":
			return []Packet{{Src: p.Src, Dst: p.Dst, Data: []byte("rewritten")}, *p}
		}
		return []Packet{*p}
	})
	send(t, a4, netip.Addr{}, netip.AddrPortFrom(addrB, 2), "drop", "rewrite", "pass")
	got := recv(t, b4, 3)
	if payload(got[0]) != "rewritten" || payload(got[1]) != "rewrite" || payload(got[2]) != "pass" {
		t.Fatalf("got %q %q %q", payload(got[0]), payload(got[1]), payload(got[2]))
	}
	if len(seen) != 3 || seen[0].Src != netip.AddrPortFrom(addrA, 1) || seen[0].Dst != netip.AddrPortFrom(addrB, 2) {
		t.Fatalf("filter saw %+v", seen)
	}
	if nw.Stats().Filtered != 1 {
		t.Fatalf("stats %+v", nw.Stats())
	}
}

func TestNAT(t *testing.T) {
	nw := New()
	client := nw.Host(netip.MustParseAddr("10.0.0.2"))
	lanPeer := nw.Host(netip.MustParseAddr("10.0.0.3"))
	server := nw.Host(addrB, addrB2)
	other := nw.Host(addrA)
	public := netip.MustParseAddr("203.0.113.1")
	nat, err := nw.AddNAT(public, netip.MustParsePrefix("10.0.0.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	c4, _ := listen(t, client, 4500)
	l4, _ := listen(t, lanPeer, 4500)
	s4, _ := listen(t, server, 4500)
	o4, _ := listen(t, other, 4500)
	inside := netip.MustParseAddrPort("10.0.0.2:4500")

	// Nothing gets in before the client sent something.
	send(t, o4, netip.Addr{}, netip.AddrPortFrom(public, 20000), "probe")
	// The private address is not routable from outside.
	send(t, s4, netip.Addr{}, inside, "direct")
	nothingQueued(t, c4)
	if s := nw.Stats(); s.NATDropped != 1 || s.Unroutable != 1 {
		t.Fatalf("stats %+v", s)
	}

	// Outbound: the source is rewritten.
	send(t, c4, netip.Addr{}, netip.AddrPortFrom(addrB, 4500), "hello")
	m := recv(t, s4, 1)[0]
	mapped, ok := nat.Mapping(inside)
	if !ok || m.Remote != mapped || mapped.Addr() != public || mapped.Port() == 4500 {
		t.Fatalf("server saw %v, mapping %v %v", m.Remote, mapped, ok)
	}
	// Inbound: the reply is mapped back.
	send(t, s4, m.Local.Addr(), m.Remote, "reply")
	r := recv(t, c4, 1)[0]
	if r.Remote != netip.AddrPortFrom(addrB, 4500) || r.Local != inside {
		t.Fatalf("client saw reply from %v at %v", r.Remote, r.Local)
	}
	// Same inside endpoint, another destination: same mapping.
	send(t, c4, netip.Addr{}, netip.AddrPortFrom(addrB2, 4500), "second")
	if m2 := recv(t, s4, 1)[0]; m2.Remote != mapped {
		t.Fatalf("second destination saw %v, want %v", m2.Remote, mapped)
	}
	// Address-and-port-dependent filtering: a stranger, and the server from another
	// port, are refused; after SetFiltering they get in.
	send(t, o4, netip.Addr{}, mapped, "stranger")
	s2, _ := listen(t, server, 5000)
	send(t, s2, addrB, mapped, "other port")
	nothingQueued(t, c4)
	nat.SetFiltering(AddressDependent)
	send(t, o4, netip.Addr{}, mapped, "stranger")
	send(t, s2, addrB, mapped, "other port")
	if m := recv(t, c4, 1)[0]; payload(m) != "other port" {
		t.Fatalf("address-dependent filtering let in %q", payload(m))
	}
	nothingQueued(t, c4)
	nat.SetFiltering(EndpointIndependent)
	send(t, o4, netip.Addr{}, mapped, "stranger")
	if m := recv(t, c4, 1)[0]; payload(m) != "stranger" {
		t.Fatalf("got %q", payload(m))
	}
	nat.SetFiltering(AddressAndPortDependent)

	// Inside the LAN there is no translation.
	send(t, c4, netip.Addr{}, netip.MustParseAddrPort("10.0.0.3:4500"), "lan")
	if m := recv(t, l4, 1)[0]; m.Remote != inside {
		t.Fatalf("LAN peer saw %v", m.Remote)
	}

	// Rebinding with a new port only: the old mapping is gone, the next datagram
	// creates a new one.
	if err := nat.Rebind(netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	send(t, s4, addrB, mapped, "to old mapping")
	nothingQueued(t, c4)
	send(t, c4, netip.Addr{}, netip.AddrPortFrom(addrB, 4500), "after rebind")
	m = recv(t, s4, 1)[0]
	if m.Remote.Addr() != public || m.Remote.Port() == mapped.Port() {
		t.Fatalf("after port rebinding the server saw %v (was %v)", m.Remote, mapped)
	}
	// Rebinding to a new public address.
	newPublic := netip.MustParseAddr("203.0.113.99")
	if err := nat.Rebind(newPublic); err != nil {
		t.Fatal(err)
	}
	if nat.Public() != newPublic {
		t.Fatalf("Public %v", nat.Public())
	}
	send(t, c4, netip.Addr{}, netip.AddrPortFrom(addrB, 4500), "moved")
	m = recv(t, s4, 1)[0]
	if m.Remote.Addr() != newPublic {
		t.Fatalf("after address rebinding the server saw %v", m.Remote)
	}
	send(t, s4, addrB, m.Remote, "reply after move")
	if r := recv(t, c4, 1)[0]; payload(r) != "reply after move" || r.Local != inside {
		t.Fatalf("got %q at %v", payload(r), r.Local)
	}
	// The old public address is gone.
	before := nw.Stats().Unroutable
	send(t, s4, addrB, netip.AddrPortFrom(public, m.Remote.Port()), "old address")
	if nw.Stats().Unroutable != before+1 {
		t.Fatal("old public address still routed")
	}

	// Configuration mistakes are refused.
	if _, err := nw.AddNAT(newPublic); err == nil {
		t.Fatal("two NATs with one public address")
	}
	if _, err := nw.AddNAT(netip.MustParseAddr("203.0.113.2"), netip.MustParsePrefix("10.0.0.128/25")); err == nil {
		t.Fatal("overlapping inside prefixes")
	}
	if _, err := nw.AddNAT(addrA); err == nil {
		t.Fatal("NAT on a host's address")
	}
	if err := other.AddAddr(newPublic); err == nil {
		t.Fatal("host took the NAT's address")
	}
}

// A steady flow through the network reuses its buffers.
func TestSteadyStateAllocs(t *testing.T) {
	nw := New()
	a4, _ := listen(t, nw.Host(addrA), 1)
	b4, _ := listen(t, nw.Host(addrB), 2)
	out := make([]udp.Message, 32)
	in := make([]udp.Message, 32)
	for i := range out {
		out[i] = udp.Message{Buffer: make([]byte, 1400), N: 1400, Remote: netip.AddrPortFrom(addrB, 2)}
		in[i].Buffer = make([]byte, 1500)
	}
	round := func() {
		a4.WriteBatch(out)
		for got := 0; got < len(out); {
			k, _ := b4.ReadBatch(in)
			got += k
		}
	}
	round()
	if allocs := testing.AllocsPerRun(100, round); allocs != 0 {
		t.Fatalf("%v allocations per batch of 32", allocs)
	}
}
