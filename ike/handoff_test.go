package ike

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/mobike"
	"github.com/mobikevpn/mobikevpn/wire"
)

// Handing the gateway's SA from node A to node B of a cluster (Handoff): each node
// serves only its own address and announces the other's as a cluster address.

func nodeConfig(t testing.TB, own netip.Addr) Config {
	cfg := clusterGateway(t)
	cfg.Connections[0].LocalAddrs = []netip.Addr{own}
	cfg.Connections[0].Announce = mobike.Announce{Mode: mobike.Auto}
	return cfg
}

func handoffPair(t *testing.T) (n *testNet, a, b, cl *endpoint) {
	t.Helper()
	return handoffPairWith(t, mobike.SwitchPolicy{Additional: true})
}

// handoffPairWith is handoffPair with the client's switch_accept policy.
func handoffPairWith(t *testing.T, accept mobike.SwitchPolicy) (n *testNet, a, b, cl *endpoint) {
	t.Helper()
	n = newTestNet(t)
	a = n.add("node-a", gwAddr, nodeConfig(t, gwAddr))
	cc := clientConfig(t, stateIKE, stateESP)
	cc.Connections[0].SwitchAccept = accept
	cl = n.add("client", clientAddr, cc)
	b = n.add("node-b", gwAddr2, nodeConfig(t, gwAddr2))
	n.apply(a, a.e.SetClusterAddrs(n.now, []netip.Addr{gwAddr2}))
	n.apply(b, b.e.SetClusterAddrs(n.now, []netip.Addr{gwAddr}))
	n.apply(cl, cl.e.StartAll(n.now))
	if !n.run(time.Minute, established(a, cl)) {
		t.Fatalf("not established: %v %v", cl.events, a.events)
	}
	return n, a, b, cl
}

// handOver hands IKE SA id of a to b (Handoff, the state through its encoding,
// Import) and returns b's id for it and a's actions that send the switch request
// (not carried out).
func handOver(t *testing.T, n *testNet, a, b *endpoint, id uint64) (uint64, []Action) {
	t.Helper()
	st, sends, err := a.e.Handoff(n.now, id, gwAddr2)
	if err != nil {
		t.Fatal(err)
	}
	idB, acts, err := b.e.Import(n.now, roundTrip(t, st))
	if err != nil {
		t.Fatal(err)
	}
	n.apply(b, acts)
	return idB, sends
}

// switchRequests counts the SWITCH_TO_IP_ADDRESS requests (INFORMATIONAL requests) ep
// sent to the client.
func switchRequests(ep *endpoint) int { return exchangesTo(ep, clientAddr, wire.INFORMATIONAL, false) }

func TestHandoff(t *testing.T) {
	for _, lose := range []bool{false, true} {
		name := "switch request delivered"
		if lose {
			name = "A's switch request lost"
		}
		t.Run(name, func(t *testing.T) {
			n, a, b, cl := handoffPair(t)
			saA := onlySA(t, a)
			spiI, spiR := saA.spiI, saA.spiR
			st, sends, err := a.e.Handoff(n.now, saA.id, gwAddr2)
			if err != nil {
				t.Fatal(err)
			}
			if st.Pending == nil || st.Local.Addr() != gwAddr2 || st.Path.IKE.Local.Addr() != gwAddr2 || st.Path.ESP.Local.Addr() != gwAddr2 {
				t.Fatalf("exported: pending %v, local %v, paths %v %v", st.Pending, st.Local, st.Path.IKE, st.Path.ESP)
			}
			if !slices.ContainsFunc(st.Path.Left, func(l mobike.StampedAddr) bool { return l.Addr == gwAddr }) {
				t.Errorf("A's address is not among those left: %v", st.Path.Left)
			}
			// Nothing went out yet: the request waits for B.
			if len(n.inflight) != 0 || switchRequests(a) != 0 {
				t.Fatal("Handoff sent something itself")
			}
			idB, acts, err := b.e.Import(n.now, roundTrip(t, st))
			if err != nil {
				t.Fatal(err)
			}
			n.apply(b, acts)
			if lose {
				n.drop = func(d datagram) bool { return d.from.Addr() == gwAddr }
			}
			n.apply(a, sends)
			sent := n.now
			inv := makeBeforeBreak(t, n, b, cl)
			if !n.run(time.Minute, func() bool { return b.hasEvent(EventSwitched) != nil && b.e.store.byID[idB].win.pending == nil }) {
				t.Fatalf("the client did not move to B, or B's switch request stayed unanswered: B events %v, client events %v", b.events, cl.events)
			}
			// Once the client arrived, B's copy of the request is answered at once, not at
			// its next retransmission: nothing else, not even the check of the client's
			// address that ESP waits for, goes out before.
			if took := n.now.Sub(sent); !lose && took > time.Second {
				t.Errorf("B's switch request was answered %v after A sent it", took)
			}
			n.drop = nil
			forget, err := a.e.Forget(n.now, saA.id)
			if err != nil {
				t.Fatal(err)
			}
			n.apply(a, forget)
			flowsAt(t, b, cl, clientAddr, gwAddr2)
			saB := b.e.store.byID[idB]
			if saB.spiI != spiI || saB.spiR != spiR || countExchanges(cl, wire.IKE_SA_INIT, false) != 1 {
				t.Error("the SA was not moved as it was (new SPIs or a new handshake)")
			}
			// switch_hold: the SA left A, not B.
			if snap, err := saB.pm.Snapshot(); err != nil || !slices.ContainsFunc(snap.Left, func(l mobike.StampedAddr) bool { return l.Addr == gwAddr }) ||
				slices.ContainsFunc(snap.Left, func(l mobike.StampedAddr) bool { return l.Addr == gwAddr2 }) {
				t.Errorf("addresses left by a switch: %v (%v)", snap.Left, err)
			}
			if got := switchRequests(a) + switchRequests(b); lose && switchRequests(b) == 0 || got == 0 {
				t.Errorf("switch requests: A sent %d, B %d", switchRequests(a), switchRequests(b))
			}
			// B carries on: a liveness check each way, a Child SA rekey.
			b.e.livenessCheck(n.now, saB)
			b.e.schedule(saB)
			n.apply(b, b.e.take())
			n.runChecked(10*time.Second, inv)
			if saB.win.pending != nil {
				t.Fatal("B's liveness check was not answered")
			}
			old := saB.children[0].spiIn
			n.apply(b, b.e.RekeyChild(n.now, old))
			n.runChecked(time.Minute, inv)
			oneChildEach(t, n, b, cl)
			if saB.children[0].spiIn == old || a.hasEvent(EventDeleted) != nil || b.hasEvent(EventDeleted) != nil || cl.hasEvent(EventDeleted) != nil {
				t.Error("after the move: no rekey, or an SA was deleted")
			}
		})
	}
}

// A hand-over that the other node did not take: A takes the SA back, nothing having
// gone to the client, and carries on with the message ID it had.
func TestHandoffReclaimed(t *testing.T) {
	n, a, _, cl := handoffPair(t)
	saA := onlySA(t, a)
	next := saA.win.nextReqID
	if _, _, err := a.e.Handoff(n.now, saA.id, gwAddr2); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.e.Handoff(n.now, saA.id, gwAddr2); err == nil {
		t.Error("an SA handed over was handed over again")
	}
	acts, err := a.e.Reclaim(n.now, saA.id)
	if err != nil {
		t.Fatal(err)
	}
	n.apply(a, acts)
	if saA.handedOver || saA.win.nextReqID != next || saA.win.pending != nil || saA.pm.SwitchPending().IsValid() {
		t.Fatalf("after Reclaim: handed over %v, next ID %d (was %d), switch pending %v", saA.handedOver, saA.win.nextReqID, next, saA.pm.SwitchPending())
	}
	if _, err := a.e.Reclaim(n.now, saA.id); err == nil {
		t.Error("an SA that is ours was reclaimed")
	}
	// A's next request uses the message ID the hand-over did not use, and is answered.
	a.e.livenessCheck(n.now, saA)
	a.e.schedule(saA)
	n.apply(a, a.e.take())
	n.run(10*time.Second, func() bool { return saA.win.pending == nil })
	if saA.win.pending != nil || saA.win.nextReqID != next+1 || switchRequests(a) != 1 || cl.hasEvent(EventDeleted) != nil {
		t.Errorf("liveness check after Reclaim: pending %v, next ID %d, %d requests sent", saA.win.pending, saA.win.nextReqID, switchRequests(a))
	}
}

// Only an SA whose peer can be asked to switch, quiet, can be handed over.
func TestHandoffRefusals(t *testing.T) {
	n, a, _, _ := handoffPair(t)
	saA := onlySA(t, a)
	for name, to := range map[string]netip.Addr{"unspecified": netip.IPv4Unspecified(), "invalid": {}} {
		if _, _, err := a.e.Handoff(n.now, saA.id, to); err == nil {
			t.Errorf("handed over to an %s address", name)
		}
	}
	a.e.livenessCheck(n.now, saA)
	if _, _, err := a.e.Handoff(n.now, saA.id, gwAddr2); err == nil {
		t.Error("handed over with a request outstanding")
	}
	n.apply(a, a.e.take())
	n.run(10*time.Second, func() bool { return saA.win.pending == nil })
	saA.peerRMobike = false
	saA.pm = nil
	if _, _, err := a.e.Handoff(n.now, saA.id, gwAddr2); err == nil {
		t.Error("handed over without a path manager")
	}
	if _, _, err := a.e.Handoff(n.now, 999, gwAddr2); err == nil {
		t.Error("handed over an SA that does not exist")
	}
}

// The other nodes' addresses are announced in IKE_AUTH, and peers hear when they
// change.
func TestClusterAddrsAnnounced(t *testing.T) {
	n, a, _, cl := handoffPair(t)
	saC := onlySA(t, cl)
	if !slices.Contains(saC.pm.PeerAddrs(), gwAddr2) {
		t.Fatalf("the client did not hear of node B in IKE_AUTH: %v", saC.pm.PeerAddrs())
	}
	third := netip.MustParseAddr("203.0.113.7")
	n.apply(a, a.e.SetClusterAddrs(n.now, []netip.Addr{gwAddr2, third, gwAddr2}))
	n.run(10*time.Second, func() bool { return slices.Contains(saC.pm.PeerAddrs(), third) })
	if got := saC.pm.PeerAddrs(); !slices.Contains(got, third) || !slices.Contains(got, gwAddr2) || slices.Contains(got, gwAddr) {
		t.Errorf("after a node joined the client knows %v", got)
	}
	n.apply(a, a.e.SetClusterAddrs(n.now, nil))
	n.run(10*time.Second, func() bool { return len(saC.pm.PeerAddrs()) == 0 })
	if got := saC.pm.PeerAddrs(); len(got) != 0 {
		t.Errorf("with no other node the client knows %v", got)
	}
}

// The peer's own request in flight when the SA is handed over (its liveness check
// reached A after A gave the SA away): A drops it, and the peer's retransmission must
// find B once it follows the switch; the SA survives, and A does not take the request
// for the peer staying.
func TestHandoffWithPeerRequestInFlight(t *testing.T) {
	n, a, b, cl := handoffPair(t)
	saA, saC := onlySA(t, a), onlySA(t, cl)
	// The client's liveness check is held on the way to A.
	var held []datagram
	n.drop = func(d datagram) bool {
		if d.from.Addr() == clientAddr && d.to.Addr() == gwAddr {
			held = append(held, d)
			return true
		}
		return false
	}
	cl.e.livenessCheck(n.now, saC)
	cl.e.schedule(saC)
	n.apply(cl, cl.e.take())
	if len(held) != 1 {
		t.Fatalf("%d datagrams held", len(held))
	}
	idB, sends := handOver(t, n, a, b, saA.id)
	n.drop = nil
	n.inflight = append(n.inflight, held...) // the check reaches A now: handed over, it drops it
	n.apply(a, sends)
	if !n.run(2*time.Minute, func() bool {
		return b.hasEvent(EventSwitched) != nil && saC.win.pending == nil && b.e.store.byID[idB].win.pending == nil
	}) {
		t.Fatalf("not settled: client pending %v, B events %v, client events %v", saC.win.pending, b.events, cl.events)
	}
	if cl.hasEvent(EventDeleted) != nil || cl.hasEvent(EventFailed) != nil {
		t.Errorf("the client lost the SA: %v", cl.events)
	}
	// The check sent before the client saw the switch request, and its retransmission
	// after its answer, do not count as the client staying with A.
	if a.hasEvent(EventPeerStayed) != nil {
		t.Error("A reported that a peer which moved stayed")
	}
	n.apply(a, mustForget(t, a, n, saA.id))
	flowsAt(t, b, cl, clientAddr, gwAddr2)
}

func mustForget(t *testing.T, ep *endpoint, n *testNet, id uint64) []Action {
	t.Helper()
	acts, err := ep.e.Forget(n.now, id)
	if err != nil {
		t.Fatal(err)
	}
	return acts
}
