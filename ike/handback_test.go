package ike

import (
	"slices"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/mobike"
	"github.com/mobikevpn/mobikevpn/wire"
)

// A peer that does not follow the switch request of a hand-over (it refuses the
// target: switch_accept: []) stays with node A and checks A's liveness there, which
// A, having handed the SA over, drops; A reports that the peer stayed once its answer
// to the switch and then its request reached A. B hands the SA back (HandBack); A
// forgets its handed-over copy and imports the returned state; the peer's retransmitted
// check is answered by A, and the SA carries on there: no new handshake, nothing
// deleted. When B's copy of the switch request was not answered yet, it goes back
// outstanding: A resends it and gets the peer's cached answer. When A's request was
// lost (the peer answered B's copy), A cannot tell (B's timeout hands the SA back).
func TestHandBack(t *testing.T) {
	for _, aLost := range []bool{false, true} {
		name := "the peer stays and A hears it"
		if aLost {
			name = "A's switch request lost"
		}
		t.Run(name, func(t *testing.T) {
			n, a, b, cl := handoffPairWith(t, mobike.SwitchPolicy{}) // the client refuses every switch
			saA, saC := onlySA(t, a), onlySA(t, cl)
			spiI, spiR := saA.spiI, saA.spiR
			idB, sends := handOver(t, n, a, b, saA.id)
			if aLost {
				n.drop = func(d datagram) bool { return d.from.Addr() == gwAddr && d.to.Addr() == clientAddr }
			}
			n.apply(a, sends)
			saB := b.e.store.byID[idB]
			// The client answers, refuses, and checks A's liveness (which A drops), before
			// its retransmission.
			within := 3 * time.Second
			if aLost {
				within = 6 * time.Second // B's copy goes out at its first retransmission (4 s)
			}
			if !n.run(within, func() bool {
				return cl.hasEvent(EventSwitchRefused) != nil && saC.win.pending != nil && (aLost && saB.win.pending == nil || !aLost && a.hasEvent(EventPeerStayed) != nil)
			}) {
				t.Fatalf("the client did not refuse and check A: events %v", cl.events)
			}
			n.drop = nil
			if got := a.hasEvent(EventPeerStayed) != nil; got == aLost {
				t.Fatalf("A reported the peer stayed: %v (events %v)", got, a.events)
			}
			back, err := b.e.HandBack(n.now, idB, gwAddr)
			if err != nil {
				t.Fatal(err)
			}
			if back.Local.Addr() != gwAddr || back.Path.IKE.Local.Addr() != gwAddr || back.Path.ESP.Local.Addr() != gwAddr ||
				back.Path.SwitchTo.IsValid() || (back.Pending != nil) == aLost {
				t.Fatalf("handed back: local %v, paths %v %v, switch to %v, pending %v", back.Local, back.Path.IKE, back.Path.ESP, back.Path.SwitchTo, back.Pending)
			}
			if !slices.ContainsFunc(back.Path.Left, func(l mobike.StampedAddr) bool { return l.Addr == gwAddr2 }) {
				t.Errorf("B's address is not among those left: %v", back.Path.Left)
			}
			if _, err := b.e.HandBack(n.now, idB, gwAddr); err == nil {
				t.Error("handed back twice")
			}
			n.apply(a, mustForget(t, a, n, saA.id))
			idA, acts, err := a.e.Import(n.now, roundTrip(t, back))
			if err != nil {
				t.Fatal(err)
			}
			n.apply(a, acts)
			n.apply(b, mustForget(t, b, n, idB))
			saA = a.e.store.byID[idA]
			if !n.run(time.Minute, func() bool { return saC.win.pending == nil && saA.win.pending == nil }) {
				t.Fatalf("not settled: client pending %v, A pending %v; client events %v", saC.win.pending, saA.win.pending, cl.events)
			}
			flowsAt(t, a, cl, clientAddr, gwAddr)
			if saA.spiI != spiI || saA.spiR != spiR || countExchanges(cl, wire.IKE_SA_INIT, false) != 1 ||
				cl.hasEvent(EventDeleted) != nil || cl.hasEvent(EventFailed) != nil || cl.hasEvent(EventMoved) != nil {
				t.Errorf("the SA did not carry on at A as it was: client events %v", cl.events)
			}
			// A carries on: a liveness check, a Child SA rekey.
			inv := makeBeforeBreak(t, n, a, cl)
			a.e.livenessCheck(n.now, saA)
			a.e.schedule(saA)
			n.apply(a, a.e.take())
			n.runChecked(10*time.Second, inv)
			old := saA.children[0].spiIn
			n.apply(a, a.e.RekeyChild(n.now, old))
			n.runChecked(time.Minute, inv)
			oneChildEach(t, n, a, cl)
			if saA.win.pending != nil || saA.children[0].spiIn == old || cl.hasEvent(EventDeleted) != nil {
				t.Error("after the hand-back: a check unanswered, no rekey, or an SA deleted")
			}
		})
	}
}

// A hand-back the first node did not take: B takes the SA back and carries on.
func TestHandBackReclaimed(t *testing.T) {
	n, a, b, _ := handoffPair(t)
	saA := onlySA(t, a)
	idB, _ := handOver(t, n, a, b, saA.id)
	if _, err := b.e.HandBack(n.now, idB, gwAddr); err != nil {
		t.Fatal(err)
	}
	saB := b.e.store.byID[idB]
	acts, err := b.e.Reclaim(n.now, idB)
	if err != nil {
		t.Fatal(err)
	}
	n.apply(b, acts)
	if saB.handedOver || saB.handingBack || saB.win.pending == nil {
		t.Fatalf("after Reclaim: handed over %v, handing back %v, its switch request pending %v", saB.handedOver, saB.handingBack, saB.win.pending != nil)
	}
	if _, err := b.e.HandBack(n.now, 999, gwAddr); err == nil {
		t.Error("handed back an SA that does not exist")
	}
}
