package esp

import (
	"bytes"
	"net/netip"
	"sync"
	"testing"

	"github.com/mobikevpn/mobikevpn/udp"
	"github.com/mobikevpn/mobikevpn/udp/memnet"
)

// Handing an inbound SA from one datapath (b) to another (c, a cluster node that
// continues it): nothing is lost, and no packet that either accepted is accepted again.
func TestHandInbound(t *testing.T) {
	p := newPair(t, testSuites[0].keys, false, 0)
	cV4 := netip.MustParseAddr("203.0.113.5")
	c := newPeer(t, p.n, cV4)
	var mu sync.Mutex
	var captured [][]byte // the ESP datagrams from a, as an attacker on the path sees them
	p.n.SetFilter(func(pk *memnet.Packet) []memnet.Packet {
		if pk.Src.Addr() == aV4 && len(pk.Data) > 8 {
			mu.Lock()
			captured = append(captured, bytes.Clone(pk.Data))
			mu.Unlock()
		}
		return []memnet.Packet{*pk}
	})
	p.start(t)
	c.start(t)
	for i := range 5 {
		through(t, p.a, p.b, ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, []byte{byte(i)}))
	}
	top, err := p.b.d.HandInbound(0x1001)
	if err != nil || top != 5 {
		t.Fatalf("HandInbound: top %d, %v", top, err)
	}
	if _, err := p.b.d.HandInbound(0x1001); err == nil {
		t.Error("handed over twice")
	}
	must(t, c.d.AddInbound(SAConfig{SPI: 0x1001, Keys: p.kAB, LocalTS: netTS, RemoteTS: clientTS, Seq: top}))
	// Until the other side is ready, b holds the SA's packets.
	for i := range 3 {
		must(t, p.a.tun.Inject(ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, []byte{10 + byte(i)})))
	}
	eventually(t, "three packets held", func() bool {
		sa := p.b.d.in.Load().get(0x1001)
		sa.mu.Lock()
		defer sa.mu.Unlock()
		return len(sa.hand.held) == 3
	})
	p.b.expectNothing(t)
	must(t, p.b.d.ForwardInbound(0x1001, ap(bV4, nattPort), ap(cV4, nattPort)))
	for i := range 3 {
		if got := c.recv(t); got[len(got)-1] != 10+byte(i) {
			t.Errorf("held packet %d arrived as %x", i, got)
		}
	}
	// Later packets still reaching b go straight on to c.
	for i := range 2 {
		through(t, p.a, c, ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, []byte{20 + byte(i)}))
	}
	p.b.expectNothing(t)
	if cc, _ := c.d.InboundCounters(0x1001); cc.Seq != 10 || cc.Packets != 5 {
		t.Errorf("c's inbound SA: %+v", cc)
	}
	// Every datagram a sent, replayed to c: each accepted once already (by b or c).
	mu.Lock()
	replays := append([][]byte(nil), captured...)
	mu.Unlock()
	if len(replays) != 10 {
		t.Fatalf("%d datagrams captured, want 10", len(replays))
	}
	attacker := p.n.Host(netip.MustParseAddr("198.18.0.66"))
	conns, err := attacker.Listen(nattPort)
	must(t, err)
	before := c.d.Drops().Replay
	for _, d := range replays {
		if _, err := conns[0].WriteBatch([]udp.Message{{Buffer: d, N: len(d), Remote: ap(cV4, nattPort)}}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "every replay refused", func() bool { return c.d.Drops().Replay-before == uint64(len(replays)) })
	c.expectNothing(t)

	// The SA comes back to b (c hands it back) while b still forwards: b's new SA
	// replaces the forwarding one at once, starting at c's top; an SA that is not
	// handed over is never replaced.
	ctop, err := c.d.HandInbound(0x1001)
	must(t, err)
	must(t, p.b.d.AddInbound(SAConfig{SPI: 0x1001, Keys: p.kAB, LocalTS: netTS, RemoteTS: clientTS, Seq: ctop}))
	if err := p.b.d.AddInbound(SAConfig{SPI: 0x1001, Keys: p.kAB, LocalTS: netTS, RemoteTS: clientTS}); err == nil {
		t.Error("an SA that is not handed over was replaced")
	}
	through(t, p.a, p.b, ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, []byte{30}))
	if bc, _ := p.b.d.InboundCounters(0x1001); bc.Seq != 11 || bc.Packets != 1 {
		t.Errorf("b's inbound SA after it came back: %+v", bc)
	}
}

// A hand-over that did not happen: the SA accepts packets again; what was held
// meanwhile is dropped and counted.
func TestResumeInbound(t *testing.T) {
	p := newPair(t, testSuites[0].keys, false, 0)
	p.start(t)
	through(t, p.a, p.b, ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, nil))
	if _, err := p.b.d.HandInbound(0x1001); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		must(t, p.a.tun.Inject(ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, nil)))
	}
	eventually(t, "held", func() bool {
		sa := p.b.d.in.Load().get(0x1001)
		sa.mu.Lock()
		defer sa.mu.Unlock()
		return len(sa.hand.held) == 2
	})
	must(t, p.b.d.ResumeInbound(0x1001))
	if p.b.d.Drops().HandQueue != 2 {
		t.Errorf("held packets dropped: %d, want 2", p.b.d.Drops().HandQueue)
	}
	through(t, p.a, p.b, ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, []byte{1}))
	if err := p.b.d.ResumeInbound(0x1001); err == nil {
		t.Error("resumed an SA that is not handed over")
	}
	if err := p.b.d.ForwardInbound(0x1001, ap(bV4, nattPort), ap(aV4, nattPort)); err == nil {
		t.Error("forwarded an SA that is not handed over")
	}
	// And the outbound cap of a failed hand-over is lifted.
	bound, err := p.a.d.ReserveOutbound(1, MinReserve)
	must(t, err)
	must(t, p.a.d.UnreserveOutbound(1, bound))
	if got := p.a.d.out.Load().child(1).seqMax.Load(); got != 1<<32-1 {
		t.Errorf("after UnreserveOutbound the SA may go to %d", got)
	}
	if err := p.a.d.UnreserveOutbound(1, bound); err == nil {
		t.Error("lifted a cap twice")
	}
}

// What an SA being handed over holds is bounded.
func TestHandQueueBounded(t *testing.T) {
	p := newPair(t, testSuites[0].keys, false, 0)
	sa := p.b.d.in.Load().get(0x1001)
	h := &handState{}
	for range maxHeldPackets + 10 {
		h.hold(p.b.d, sa, make([]byte, 100))
	}
	if len(h.held) != maxHeldPackets || p.b.d.Drops().HandQueue != 10 {
		t.Errorf("held %d, dropped %d", len(h.held), p.b.d.Drops().HandQueue)
	}
	h = &handState{}
	for range 10 {
		h.hold(p.b.d, sa, make([]byte, maxHeldBytes/4))
	}
	if h.bytes > maxHeldBytes || len(h.held) != 4 {
		t.Errorf("held %d packets, %d bytes", len(h.held), h.bytes)
	}
	// All the SAs being handed over together hold at most maxHeldAllBytes, and give it
	// back when they are done.
	d := p.b.d
	d.heldBytes.Store(0)
	var hs []*handState
	for range maxHeldAllBytes/maxHeldBytes + 1 {
		h := &handState{}
		for range 8 {
			h.hold(d, sa, make([]byte, maxHeldBytes/8))
		}
		hs = append(hs, h)
	}
	if got := d.heldBytes.Load(); got > maxHeldAllBytes || hs[len(hs)-1].bytes != 0 || hs[0].bytes != maxHeldBytes {
		t.Errorf("held %d bytes in all, the last SA %d, the first %d", got, hs[len(hs)-1].bytes, hs[0].bytes)
	}
	for _, h := range hs {
		h.release(d)
	}
	if got := d.heldBytes.Load(); got != 0 {
		t.Errorf("%d bytes still counted after every hand-over let go", got)
	}
}

// A leased outbound SA (a cluster's failover reservation) sends up to its lease and
// drops what is beyond until LeaseOutbound raises it; a move's cap and a lifted move
// cap respect the lease.
func TestLeaseOutbound(t *testing.T) {
	p := newPair(t, testSuites[0].keys, false, 0)
	p.start(t)
	const lease = 2 * MinReserve
	must(t, p.a.d.InstallOutbound(1, SAConfig{SPI: 0x1001, Keys: p.kAB, LocalTS: clientTS, RemoteTS: netTS, Seq: 0, Lease: lease},
		ap(aV4, nattPort), ap(bV4, nattPort)))
	sa := p.a.d.out.Load().child(1)
	sa.seq.Store(lease - 1)
	through(t, p.a, p.b, ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, []byte{1}))
	must(t, p.a.tun.Inject(ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, nil)))
	eventually(t, "beyond the lease dropped", func() bool { return p.a.d.Drops().SeqExhausted == 1 })
	p.b.expectNothing(t)
	if _, err := p.a.d.LeaseOutbound(7, lease); err == nil {
		t.Error("a lease for an unknown child accepted")
	}
	// A lower lease changes nothing; a higher one lets it go on.
	if last, err := p.a.d.LeaseOutbound(1, lease-10); err != nil || last != lease || sa.seqMax.Load() != lease {
		t.Fatalf("lowered lease: last %d, cap %d, %v", last, sa.seqMax.Load(), err)
	}
	if _, err := p.a.d.LeaseOutbound(1, 100*MinReserve); err != nil {
		t.Fatal(err)
	}
	through(t, p.a, p.b, ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, []byte{2}))
	// A move caps it below the lease; a new lease meanwhile does not lift that cap,
	// and lifting the move's cap goes back to the lease, not to the SA's end.
	bound, err := p.a.d.ReserveOutbound(1, MinReserve)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.a.d.LeaseOutbound(1, 200*MinReserve); err != nil || sa.seqMax.Load() != bound {
		t.Fatalf("a lease lifted a move's cap: cap %d, bound %d, %v", sa.seqMax.Load(), bound, err)
	}
	must(t, p.a.d.UnreserveOutbound(1, bound))
	if got := sa.seqMax.Load(); got != 200*MinReserve {
		t.Errorf("after the move's cap was lifted: cap %d, want the lease %d", got, 200*MinReserve)
	}
	// A lease never goes beyond the SA's own end.
	if _, err := p.a.d.LeaseOutbound(1, 1<<40); err != nil || sa.seqMax.Load() != 1<<32-1 {
		t.Errorf("a lease beyond the 32-bit sequence space: cap %d, %v", sa.seqMax.Load(), err)
	}
}
