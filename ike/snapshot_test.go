package ike

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/wire"
)

// Failover: node A dies (nothing reaches it or leaves it any more), node B continues
// its SA from A's last snapshot (TakeOver).

// killNode makes everything to and from addr vanish from n.
func killNode(n *testNet, addr netip.Addr) {
	n.drop = func(d datagram) bool { return d.from.Addr() == addr || d.to.Addr() == addr }
}

// takeOver has b continue the SA of snapshot st (through its encoding) from gwAddr2.
func takeOver(t *testing.T, n *testNet, b *endpoint, st SAState) uint64 {
	t.Helper()
	id, acts, err := b.e.TakeOver(n.now, roundTrip(t, st), netip.AddrPortFrom(gwAddr2, 4500))
	if err != nil {
		t.Fatal(err)
	}
	n.apply(b, acts)
	return id
}

// afterTakeOver checks that the client moved to b with the SA as it was (same SPIs, no
// new handshake, flows at b) and that both directions' message IDs stay in step: a
// liveness check each way is answered.
func afterTakeOver(t *testing.T, n *testNet, b, cl *endpoint, idB uint64, spiI, spiR uint64) {
	t.Helper()
	if !n.run(time.Minute, func() bool { return b.hasEvent(EventSwitched) != nil && b.e.store.byID[idB].win.pending == nil }) {
		t.Fatalf("the client did not move to B: B events %v, client events %v", b.events, cl.events)
	}
	flowsAt(t, b, cl, clientAddr, gwAddr2)
	saB := b.e.store.byID[idB]
	if saB.spiI != spiI || saB.spiR != spiR || countExchanges(cl, wire.IKE_SA_INIT, false) != 1 {
		t.Error("the SA was not continued as it was (new SPIs or a new handshake)")
	}
	b.e.livenessCheck(n.now, saB)
	b.e.schedule(saB)
	n.apply(b, b.e.take())
	saC := onlySA(t, cl)
	cl.e.livenessCheck(n.now, saC)
	cl.e.schedule(saC)
	n.apply(cl, cl.e.take())
	n.run(10*time.Second, func() bool { return saB.win.pending == nil && saC.win.pending == nil })
	if saB.win.pending != nil || saC.win.pending != nil {
		t.Fatalf("liveness checks after the take-over unanswered: B's %v, the client's %v", saB.win.pending != nil, saC.win.pending != nil)
	}
	if cl.hasEvent(EventDeleted) != nil || b.hasEvent(EventDeleted) != nil {
		t.Error("an SA was deleted")
	}
}

func TestTakeOver(t *testing.T) {
	n, a, b, cl := handoffPair(t)
	saA := onlySA(t, a)
	st, err := a.e.Snapshot(n.now, saA.id)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending != nil || saA.handedOver || len(st.Children) != 1 {
		t.Fatalf("snapshot of a quiet SA: pending %v, handed over %v, %d Child SAs", st.Pending, saA.handedOver, len(st.Children))
	}
	killNode(n, gwAddr)
	n.now = n.now.Add(5 * time.Second)
	idB := takeOver(t, n, b, st)
	if got := switchRequests(b); got == 0 {
		t.Fatal("B did not ask the client to switch")
	}
	afterTakeOver(t, n, b, cl, idB, saA.spiI, saA.spiR)
}

// A request of A's was on its way when A died: B resends it as A sealed it (the client
// answers it, or answers again), and only then asks for the switch, with the next
// message ID, so the client's window never sees one ID with two contents.
func TestTakeOverRequestInFlight(t *testing.T) {
	for _, reached := range []bool{true, false} {
		name := "the request reached the client"
		if !reached {
			name = "the request was lost"
		}
		t.Run(name, func(t *testing.T) {
			n, a, b, cl := handoffPair(t)
			saA := onlySA(t, a)
			a.e.livenessCheck(n.now, saA)
			a.e.schedule(saA)
			acts := a.e.take()
			st, err := a.e.Snapshot(n.now, saA.id)
			if err != nil {
				t.Fatal(err)
			}
			if st.Pending == nil || !st.Pending.Opaque || st.Pending.MessageID+1 != st.NextRequestID {
				t.Fatalf("snapshot with a request in flight: %+v, next ID %d", st.Pending, st.NextRequestID)
			}
			persisted := 0
			for _, x := range acts {
				if s, ok := x.(Send); ok && s.Persist == saA.id {
					persisted++
				}
			}
			if persisted == 0 {
				t.Error("the request's first transmission does not ask for a snapshot (Send.Persist)")
			}
			if reached {
				// The client gets it and answers; the answer dies with A.
				n.drop = func(d datagram) bool { return d.to.Addr() == gwAddr }
				n.apply(a, acts)
				if !n.run(time.Second, func() bool { return exchangesTo(cl, gwAddr, wire.INFORMATIONAL, true) > 0 }) {
					t.Fatal("the client did not answer A's request")
				}
			}
			killNode(n, gwAddr)
			idB := takeOver(t, n, b, st)
			afterTakeOver(t, n, b, cl, idB, saA.spiI, saA.spiR)
		})
	}
}

// The client's request was answered by A just before it died; the answer was lost. The
// snapshot A wrote before answering (Send.Persist) has the answer: B sends it again
// when the client's retransmission comes, instead of processing the request twice.
func TestTakeOverAnswerLost(t *testing.T) {
	n, a, b, cl := handoffPair(t)
	saA := onlySA(t, a)
	saC := onlySA(t, cl)
	cl.e.livenessCheck(n.now, saC)
	cl.e.schedule(saC)
	n.drop = func(d datagram) bool { return d.from.Addr() == gwAddr } // A's answer is lost
	n.apply(cl, cl.e.take())
	if !n.run(time.Second, func() bool { return exchangesTo(a, clientAddr, wire.INFORMATIONAL, true) > 0 }) {
		t.Fatal("A did not answer the client's request")
	}
	st, err := a.e.Snapshot(n.now, saA.id)
	if err != nil {
		t.Fatal(err)
	}
	if st.LastResponse == nil || st.PeerRequestID != saC.win.nextReqID {
		t.Fatalf("snapshot after the answer: cached answer %v, peer's next request ID %d (the client's is %d)",
			st.LastResponse != nil, st.PeerRequestID, saC.win.nextReqID)
	}
	killNode(n, gwAddr)
	idB := takeOver(t, n, b, st)
	afterTakeOver(t, n, b, cl, idB, saA.spiI, saA.spiR)
}

// A peer without 'R' is not asked; it finds B itself (its liveness check to A fails, it
// probes the cluster addresses it was told of) and B takes its UPDATE_SA_ADDRESSES.
func TestTakeOverPeerFindsSuccessor(t *testing.T) {
	n, a, b, cl := handoffPair(t)
	saA := onlySA(t, a)
	st, err := a.e.Snapshot(n.now, saA.id)
	if err != nil {
		t.Fatal(err)
	}
	st.PeerRMobike = false
	killNode(n, gwAddr)
	idB := takeOver(t, n, b, st)
	if switchRequests(b) != 0 {
		t.Fatal("B asked a peer without 'R' to switch")
	}
	saC := onlySA(t, cl)
	cl.e.livenessCheck(n.now, saC)
	cl.e.schedule(saC)
	n.apply(cl, cl.e.take())
	if !n.run(2*time.Minute, func() bool {
		sa := b.e.store.byID[idB]
		return sa != nil && sa.remote.Addr() == clientAddr && onlySA(t, cl).remote.Addr() == gwAddr2
	}) {
		t.Fatalf("the client did not find B: client events %v, B events %v", cl.events, b.events)
	}
	if cl.hasEvent(EventDeleted) != nil || b.hasEvent(EventDeleted) != nil {
		t.Error("an SA was deleted")
	}
}

// Snapshot refuses what a successor could not continue, and TakeOver what is not a
// gateway's SA or has no address of the peer's family here.
func TestSnapshotRefusals(t *testing.T) {
	n, a, b, _ := handoffPair(t)
	saA := onlySA(t, a)
	if _, err := a.e.Snapshot(n.now, saA.id+100); err == nil {
		t.Error("snapshot of an SA that does not exist")
	}
	st, err := a.e.Snapshot(n.now, saA.id)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.e.TakeOver(n.now, st, netip.MustParseAddrPort("[2001:db8::2]:4500")); err == nil {
		t.Error("taken over from an address of another family")
	}
	stC := st
	stC.OrigInitiator = true // the SA of a client
	if _, _, err := b.e.TakeOver(n.now, stC, netip.AddrPortFrom(gwAddr2, 4500)); !errors.Is(err, ErrNotGateway) {
		t.Errorf("a client's SA taken over by a gateway: %v", err)
	}
	n.apply(a, a.e.RekeyIKE(n.now, saA.id))
	if _, err := a.e.Snapshot(n.now, saA.id); err == nil {
		t.Error("snapshot while the IKE SA is being rekeyed")
	}
}
