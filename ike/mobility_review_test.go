package ike

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/mobike"
	"github.com/mobikevpn/mobikevpn/wire"
)

// Tests of the mobility review's findings (R1, R2, R4 to R8 and the lower-severity
// ones): each failed before its fix. R3 (requests queued on an IKE SA that is rekeyed)
// is fixed and tested elsewhere.

// R1: an on-path attacker who can only copy and inject (not drop) races a re-sourced
// copy of the client's UPDATE_SA_ADDRESSES. The gateway's IKE path follows the copy,
// its return routability check goes to the victim and is never answered, and the
// gateway ended the whole IKE SA ("peer not responding") although the client is
// alive, talks to it, and its own UPDATE was answered. Now the check is given up: IKE
// goes back to the verified path, the client hears from the gateway there and tells it
// again where it is.
func TestUnansweredCheckDoesNotEndSA(t *testing.T) {
	n, gw, cl := mobikePair(t, nil)
	cl.addrs = append(cl.addrs, clientAddr2)
	n.apply(cl, cl.e.SetLocalAddrs(n.now, cl.addrs))
	n.run(5*time.Second, nil)
	// ESP from the gateway keeps arriving (traffic flows): the client sees no reason
	// for a liveness check.
	cl.e.cfg.InboundActivity = func(uint32) time.Time { return n.now }
	raced := false
	n.nat = func(d *datagram) {
		if raced || d.from != clientAP2 {
			return
		}
		if m := decryptFor(t, *d, gw); m != nil && !m.Header.IsResponse() && wire.FindNotify(m.Payloads, wire.UPDATE_SA_ADDRESSES) != nil {
			raced = true
			// The attacker's copy, re-sourced to the victim, arrives first.
			n.inflight = append(n.inflight, datagram{from: victim, to: d.to, data: append([]byte(nil), d.data...)})
		}
	}
	natC, natG := cl.e.Status(n.now)[0], gw.e.Status(n.now)[0]
	cl.src = clientAddr2
	start := n.now
	n.apply(cl, cl.e.RoutesChanged(n.now))
	var recovered time.Duration
	n.runChecked(10*time.Minute, func() {
		if recovered == 0 && len(gw.outbound) == 1 && checkOneOutbound(t, gw).Remote == clientAP2 {
			recovered = n.now.Sub(start)
		}
	})
	if !raced {
		t.Fatal("no UPDATE_SA_ADDRESSES seen")
	}
	if len(gw.e.store.byID) != 1 {
		t.Fatalf("the gateway ended the IKE SA: events %v", gw.events)
	}
	flowsAt(t, gw, cl, clientAddr2, gwAddr)
	espNeverTo(t, gw, victim)
	if gsa := onlySA(t, gw); gsa.pm.Verified(victim) {
		t.Error("the victim's address counts as verified")
	}
	// The reply the client got described the victim's address in its NAT detection;
	// the new UPDATE's reply set the client's NAT state right again. (Both ends force
	// UDP encapsulation here, which shows as natRemote.)
	if cs := cl.e.Status(n.now)[0]; cs.NATLocal || cs.NATLocal != natC.NATLocal || cs.NATRemote != natC.NATRemote {
		t.Errorf("the client's NAT state: local %v remote %v, before the move %v %v", cs.NATLocal, cs.NATRemote, natC.NATLocal, natC.NATRemote)
	}
	if gs := gw.e.Status(n.now)[0]; gs.NATLocal || gs.NATLocal != natG.NATLocal || gs.NATRemote != natG.NATRemote {
		t.Errorf("the gateway's NAT state: local %v remote %v, before the move %v %v", gs.NATLocal, gs.NATRemote, natG.NATLocal, natG.NATRemote)
	}
	t.Logf("the gateway's ESP reached the client's new address %v after the raced update", recovered)
}

// R1: giving a check up is not a way to keep a dead peer: the verified path gets one
// more round of retransmissions, then the peer is dead.
func TestGivenUpCheckStillFindsDeadPeer(t *testing.T) {
	n, gw, cl := mobikePair(t, nil)
	n.injectUpdate(cl, victim, gwAP) // the check goes to the victim
	n.flush()
	if _, ok := lostCheck(t, n, cl); !ok {
		t.Fatalf("no check to the victim: %v", n.lost)
	}
	n.drop = func(datagram) bool { return true } // and the client is gone
	start, from := n.now, len(gw.sent)
	n.run(20*time.Minute, func() bool { return len(gw.e.store.byID) == 0 })
	if len(gw.e.store.byID) != 0 {
		t.Fatalf("the gateway keeps an SA whose peer answers nowhere: %v", gw.events)
	}
	if ev := gw.hasEvent(EventDeleted); ev == nil || !strings.Contains(ev.Reason, "timeout") {
		t.Errorf("gateway events %v", gw.events)
	}
	// Default retransmission: ~165 s per round, two rounds.
	if took := n.now.Sub(start); took > 2*166*time.Second {
		t.Errorf("the gateway found the peer dead after %v", took)
	} else {
		t.Logf("the gateway found the peer dead after %v", took)
	}
	// The second round went to the verified address (the check, outstanding all the
	// time, is the only request the gateway sent).
	toClient := 0
	for _, d := range gw.sent[from:] {
		if h, err := wire.ParseHeader(d.data); err == nil && !h.IsResponse() && d.to == clientAP {
			toClient++
		}
	}
	if want := gw.e.cfg.Retransmit.Tries + 1; toClient != want {
		t.Errorf("%d sends of the given-up check to the verified address, want %d", toClient, want)
	}
}

// natClient builds a client behind a NAT that hands out a new public port per inside
// port; rebind() makes it forget its mappings.
func natClient(t *testing.T) (n *testNet, gw, cl *endpoint, rebind func()) {
	return natClientWith(t, nil)
}

// natClientWith is natClient with mutate adjusting the configurations.
func natClientWith(t *testing.T, mutate func(g, c *Config)) (n *testNet, gw, cl *endpoint, rebind func()) {
	public := netip.MustParseAddr("198.51.100.77")
	port := uint16(20000)
	n, gw, cl = pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		c.Connections[0].DPDDelay = 2 * time.Second
		g.Connections[0].Encap, c.Connections[0].Encap = false, false
		if mutate != nil {
			mutate(g, c)
		}
	})
	n.inflight = nil
	cl.e = mustNew(t, cl.e.cfg)
	mapping := map[uint16]uint16{}
	n.nat = func(d *datagram) {
		switch {
		case d.from.Addr() == clientAddr:
			p, ok := mapping[d.from.Port()]
			if !ok {
				port++
				p = port
				mapping[d.from.Port()] = p
			}
			d.from = netip.AddrPortFrom(public, p)
		case d.to.Addr() == public:
			for in, p := range mapping {
				if p == d.to.Port() {
					d.to = netip.AddrPortFrom(clientAddr, in)
					return
				}
			}
			d.to = netip.AddrPortFrom(public, 1)
		}
	}
	n.apply(cl, cl.e.StartAll(n.now))
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	return n, gw, cl, func() { mapping = map[uint16]uint16{} }
}

// R2: RFC 4555 3.8 compares the NAT_DETECTION_DESTINATION_IP of a liveness check with the
// previous UPDATE_SA_ADDRESSES (or IKE_SA_INIT) response. The client started with no
// value (lastNATD nil) and forgot it at every IKE SA rekey, so the first liveness check
// after establishment or after a rekey only recorded: a NAT rebinding that happened
// before it was never noticed, and the gateway's ESP went to the dead mapping for good
// while every liveness check succeeded. Now the value is seeded from IKE_SA_INIT (when
// it describes the SA's path), kept across rekeys, and with none the first check
// updates.
func TestFirstNATRebindingIsNoticed(t *testing.T) {
	t.Run("after IKE_AUTH", func(t *testing.T) {
		n, gw, cl, rebind := natClient(t)
		before, _ := checkChildPair(t, gw, cl)
		// Traffic flowed until now (no liveness check yet); the NAT reboots.
		rebind()
		n.run(20*time.Second, nil)
		g, _ := checkChildPair(t, gw, cl)
		if g.Remote == before.Remote {
			t.Errorf("gateway's ESP still goes to the old mapping %v (IKE at %v)", g.Remote, gw.e.Status(n.now)[0].Remote)
		}
	})
	t.Run("after an IKE SA rekey", func(t *testing.T) {
		n, gw, cl, rebind := natClient(t)
		n.run(5*time.Second, nil) // a first liveness check records the mapping
		n.apply(gw, gw.e.RekeyIKE(n.now, gw.e.Status(n.now)[0].ID))
		n.run(time.Second, nil)
		before, _ := checkChildPair(t, gw, cl)
		rebind()
		n.run(20*time.Second, nil)
		g, _ := checkChildPair(t, gw, cl)
		if g.Remote == before.Remote {
			t.Errorf("gateway's ESP still goes to the old mapping %v", g.Remote)
		}
	})
}

// R4: the gateway loses the local address of a return routability check that is under
// way. LocalGone moved IKE to another address and resent the outstanding request
// "on the new path", but the check stayed bound to its path: it kept going out (with
// its tries reset) from the address that is gone, the switch request and address
// update waited behind it, and the IKE SA died when it ran out. Now the check starts
// again from the new address.
func TestCheckFollowsLocalAddressChange(t *testing.T) {
	n, gw, cl := mobikePair(t, nil)
	cl.e.cfg.InboundActivity = func(uint32) time.Time { return n.now } // ESP keeps arriving
	cl.addrs = append(cl.addrs, clientAddr2)
	n.apply(cl, cl.e.SetLocalAddrs(n.now, cl.addrs))
	n.run(5*time.Second, nil)
	// The client moves; the gateway's first check to its new address is lost.
	lose := true
	n.drop = func(d datagram) bool {
		h, _ := wire.ParseHeader(d.data)
		return lose && d.from == gwAP && d.to == clientAP2 && !h.IsResponse()
	}
	cl.src = clientAddr2
	n.apply(cl, cl.e.RoutesChanged(n.now))
	n.flush()
	lose = false
	if st := gw.e.Status(n.now)[0].MobikeState; st != "verifying" {
		t.Fatalf("gateway state %q", st)
	}
	// Now the gateway's first address goes.
	gw.addrs = []netip.Addr{gwAddr2}
	n.apply(gw, gw.e.SetLocalAddrs(n.now, []netip.Addr{gwAddr2}))
	n.run(10*time.Minute, nil)
	if len(gw.e.store.byID) != 1 || gw.hasEvent(EventDeleted) != nil {
		t.Fatalf("the gateway lost the IKE SA: %v", gw.events)
	}
	flowsAt(t, gw, cl, clientAddr2, gwAddr2)
}

// R5: SetIKEPath{Resend} restarted the outstanding request's retransmission count
// (r.tries = 0), so a client whose source address choice keeps changing never found
// a dead gateway dead: each move gave the outstanding request a full set of tries.
// Moves now send a copy on the new path and keep the count and the schedule (RFC 4555
// 3.5: outstanding requests continue retransmitting on the new addresses).
func TestMovesDoNotResetRetransmissionTries(t *testing.T) {
	n, gw, cl := mobikePair(t, func(g, c *Config) { c.Connections[0].DPDAction = "clear" })
	cl.addrs = append(cl.addrs, clientAddr2)
	n.apply(cl, cl.e.SetLocalAddrs(n.now, cl.addrs))
	n.run(5*time.Second, nil)
	n.drop = func(datagram) bool { return true } // the gateway is gone
	start := n.now
	var gone time.Duration
	for i := 0; i < 20 && len(cl.e.store.byID) > 0; i++ {
		// The route flips every 40 s (the clock goes there even when nothing is due).
		flip := n.now.Add(40 * time.Second)
		n.run(40*time.Second, nil)
		if len(cl.e.store.byID) == 0 {
			break
		}
		n.now = flip
		if i%2 == 0 {
			cl.src = clientAddr2
		} else {
			cl.src = clientAddr
		}
		n.apply(cl, cl.e.RoutesChanged(n.now))
	}
	gone = n.now.Sub(start)
	if len(cl.e.store.byID) > 0 {
		t.Fatalf("after %v the client still holds the IKE SA to a gateway that never answered (the default retransmission gives up after ~165 s)", gone)
	}
	// The liveness check starts within dpd_delay (30 s); its retransmissions take
	// ~165 s, whatever the moves.
	if gone > 30*time.Second+166*time.Second {
		t.Errorf("the client found the gateway dead only %v after it went", gone)
	}
	if ev := cl.hasEvent(EventDeleted); ev == nil || !strings.Contains(ev.Reason, "timeout") {
		t.Errorf("client events %v", cl.events)
	}
	t.Logf("the client found the gateway dead %v after it went, with a route change every 40 s", gone)
	_ = gw
}

// R6: the source address of an address update that did not come from the SA's peer
// address was kept as a probe candidate "only" (PeerAddresses -> remember), but
// candidates() also fed committed moves: Reevaluate's "pair of the other family"
// and updateReply's "UNACCEPTABLE_ADDRESSES: try another pair" move IKE and ESP at
// once, without any reply from that pair. An on-path attacker who raced one re-sourced
// copy of the gateway's address update made the client send its ESP to a third party
// when it later changed address family. Now such senders are probe candidates only.
func TestInjectedSenderNeverCommitted(t *testing.T) {
	cl6 := netip.MustParseAddr("2001:db8:1::10")
	victim6 := netip.AddrPortFrom(netip.MustParseAddr("2001:db8:66::66"), 4500)
	n, gw, cl := mobikePair(t, nil)
	cl.addrs = append(cl.addrs, cl6)
	n.apply(cl, cl.e.SetLocalAddrs(n.now, cl.addrs))
	n.run(5*time.Second, nil)
	raced := false
	n.nat = func(d *datagram) {
		if raced || d.from != gwAP {
			return
		}
		if m := decryptFor(t, *d, cl); m != nil && !m.Header.IsResponse() && wire.FindNotify(m.Payloads, wire.NO_ADDITIONAL_ADDRESSES) != nil {
			raced = true
			n.inflight = append(n.inflight, datagram{from: victim6, to: netip.AddrPortFrom(cl6, 4500), data: append([]byte(nil), d.data...)})
		}
	}
	// The gateway's second address goes: it says so (NO_ADDITIONAL_ADDRESSES).
	n.apply(gw, gw.e.SetLocalAddrs(n.now, []netip.Addr{gwAddr}))
	n.run(10*time.Second, nil)
	if !raced {
		t.Fatal("no address update seen")
	}
	// Later the client's IPv4 address goes (an IPv6-only network).
	cl.addrs = []netip.Addr{cl6}
	cl.src = netip.Addr{} // the routing table has no IPv4 source any more
	n.apply(cl, cl.e.SetLocalAddrs(n.now, cl.addrs))
	n.run(30*time.Second, nil)
	espNeverTo(t, cl, victim6)
	if r := cl.e.Status(n.now)[0].Remote; r == victim6 {
		t.Errorf("the client's IKE SA moved to the injected address %v", r)
	}
	if c := requestsTo(cl, victim6.Addr()); c != 0 {
		t.Logf("the client sent %d requests to the injected address", c)
	}
}

// R7: a tentative UPDATE_SA_ADDRESSES whose replies keep arriving from another path
// than the one it went to (maxReissue times) was given up with a NoteFellBack only. The
// gateway did take those UPDATEs (it answered them) and moved IKE, and ESP when the
// client's address is verified, to the new path; the client stayed on the old one and
// never told the gateway (unlike the other fallbacks, which send an UPDATE on the old
// path): the two ends disagreed for good. Now it sends an UPDATE on the old path.
func TestTentativeGivenUpTellsGateway(t *testing.T) {
	n, gw, cl := mobikePair(t, nil)
	// Replies from the gateway's second address arrive re-sourced (an asymmetric path,
	// a source NAT at the gateway's site, or an attacker).
	n.nat = func(d *datagram) {
		if d.from == gwAP2 {
			d.from = gwAP
		}
	}
	if err := switchAndRun(t, n, gw, gwAddr2); err != nil {
		t.Fatal(err)
	}
	n.run(30*time.Second, nil)
	if cl.hasEvent(EventMoveFailed) == nil {
		t.Fatalf("client events %v", cl.events)
	}
	cs, gs := cl.e.Status(n.now)[0], gw.e.Status(n.now)[0]
	if cs.Remote.Addr() != gs.Local.Addr() {
		t.Errorf("the ends disagree: the client uses %v, the gateway %v", cs.Remote, gs.Local)
	}
	if g := checkOneOutbound(t, gw); g.Local.Addr() != cs.Remote.Addr() {
		t.Errorf("the gateway's ESP goes from %v, the client's to %v", g.Local, cs.Remote)
	}
	if len(messagesTo(t, cl, gw, gwAP, hasNotify(wire.UPDATE_SA_ADDRESSES))) == 0 {
		t.Error("no UPDATE_SA_ADDRESSES on the old path after giving the new one up")
	}
	flowsAt(t, gw, cl, clientAddr, gwAddr)
}

// R8: with retransmit tries <= FallbackAfter (tries: 1 or 2, which the configuration
// accepts), a tentative UPDATE_SA_ADDRESSES spent every try on the new path: the
// client never fell back and declared the gateway dead, although the old path works.
// Now its first retransmission goes to the old path.
func TestFallbackWithFewRetransmitTries(t *testing.T) {
	for _, tries := range []int{1, 2} {
		t.Run(strconv.Itoa(tries), func(t *testing.T) {
			n, gw, cl := mobikePair(t, func(g, c *Config) {
				c.Retransmit = Retransmit{Timeout: 500 * time.Millisecond, Tries: tries, Base: 1.5}
			})
			n.drop = func(d datagram) bool { return d.to.Addr() == gwAddr2 || d.from.Addr() == gwAddr2 }
			if err := switchAndRun(t, n, gw, gwAddr2); err != nil {
				t.Fatal(err)
			}
			n.run(time.Minute, nil)
			if len(cl.e.store.byID) != 1 || cl.hasEvent(EventDeleted) != nil {
				t.Fatalf("a switch to an unreachable address cost the IKE SA: %v", cl.events)
			}
			if cl.hasEvent(EventMoveFailed) == nil {
				t.Errorf("no fallback: %v", cl.events)
			}
			flowsAt(t, gw, cl, clientAddr, gwAddr)
			if got := requestsTo(cl, gwAddr2); got != 1 {
				t.Errorf("%d requests to the unreachable target, want 1", got)
			}
		})
	}
}

// R2 with a client that does not float (it talks to port 4500 from IKE_SA_INIT on):
// the NAT detection of IKE_SA_INIT describes the mapping the SA keeps, so liveness
// checks are compared with it from the first one: no update while it holds, an update
// as soon as it changed.
func TestNATDetectionSeededFromIKESAInit(t *testing.T) {
	noFloat := func(g, c *Config) { c.Connections[0].RemotePort = 4500 }
	t.Run("unchanged", func(t *testing.T) {
		n, gw, cl, _ := natClientWith(t, noFloat)
		if r := gw.e.Status(n.now)[0].Remote; r.Port() == 1 {
			t.Fatalf("gateway remote %v", r)
		}
		n.run(20*time.Second, nil)
		if got := len(messagesTo(t, cl, gw, netip.AddrPort{}, hasNotify(wire.UPDATE_SA_ADDRESSES))); got != 0 {
			t.Errorf("%d UPDATE_SA_ADDRESSES although the NAT mapping never changed", got)
		}
		if cl.e.livenessChecks == 0 {
			t.Error("no liveness check ran")
		}
	})
	t.Run("rebound before the first liveness check", func(t *testing.T) {
		n, gw, cl, rebind := natClientWith(t, noFloat)
		before, _ := checkChildPair(t, gw, cl)
		rebind()
		n.run(20*time.Second, nil)
		if g, _ := checkChildPair(t, gw, cl); g.Remote == before.Remote {
			t.Errorf("gateway's ESP still goes to the old mapping %v", g.Remote)
		}
	})
}

// 8a (RFC 4555 3.5): NAT traversal changes only when the UPDATE_SA_ADDRESSES carried
// NAT detection notifies; one without them left the gateway believing in no NAT.
func TestUpdateWithoutNATDetectionKeepsNATState(t *testing.T) {
	n, gw, cl := mobikePair(t, nil)
	csa := onlySA(t, cl)
	cookie := &wire.Notify{NotifyType: wire.COOKIE2, Data: []byte("0123456789abcdef")}
	// NAT detection that says both ends are translated.
	ps := append([]wire.Payload{&wire.Notify{NotifyType: wire.UPDATE_SA_ADDRESSES}}, cl.e.natDetection(csa, victim, victim)...)
	n.inject(cl, clientAP, gwAP, wire.INFORMATIONAL, append(ps, cookie)...)
	n.flush()
	if gs := gw.e.Status(n.now)[0]; !gs.NATLocal || !gs.NATRemote {
		t.Fatalf("NAT state after NAT detection: local %v remote %v", gs.NATLocal, gs.NATRemote)
	}
	moves := len(gw.moves)
	// An UPDATE_SA_ADDRESSES without NAT detection (as with NO_NATS_ALLOWED).
	n.inject(cl, clientAP, gwAP, wire.INFORMATIONAL, &wire.Notify{NotifyType: wire.UPDATE_SA_ADDRESSES}, cookie)
	n.flush()
	if gs := gw.e.Status(n.now)[0]; !gs.NATLocal || !gs.NATRemote {
		t.Errorf("an UPDATE without NAT detection changed the NAT state: local %v remote %v", gs.NATLocal, gs.NATRemote)
	}
	for _, m := range gw.moves[moves:] {
		if !m.Keepalive {
			t.Errorf("keepalives turned off: %+v", m)
		}
	}
}

// 8b: a switch the client refused stayed pending at the gateway: a later arrival of the
// client at that address, for its own reasons, counted as the switch (EventSwitched,
// with the time since the request) and stamped switch_hold on the address it left.
func TestRefusedSwitchIsNoSwitchLater(t *testing.T) {
	n, gw, cl := mobikePair(t, func(g, c *Config) {
		c.Connections[0].SwitchAccept = mobike.SwitchPolicy{} // refuses every switch
		g.Connections[0].SwitchHold = time.Hour
	})
	if err := switchAndRun(t, n, gw, gwAddr2); err != nil {
		t.Fatal(err)
	}
	if cl.hasEvent(EventSwitchRefused) == nil {
		t.Fatalf("client events %v", cl.events)
	}
	n.run(mobike.SwitchExpiry, nil)
	// The client moves to the gateway's second address by itself.
	n.injectUpdate(cl, clientAP, gwAP2)
	n.run(5*time.Second, nil)
	if gs := gw.e.Status(n.now)[0]; gs.Local != gwAP2 {
		t.Fatalf("the gateway did not follow the update: %v", gs.Local)
	}
	if ev := gw.hasEvent(EventSwitched); ev != nil {
		t.Errorf("an unrelated move counted as the refused switch: %v", gw.events)
	}
	// And the gateway may ask to go back at once (no switch_hold on gwAddr).
	if _, _, err := gw.e.Switch(n.now, SwitchSelector{All: true}, gwAddr); err != nil {
		t.Errorf("switch back: %v", err)
	}
}

// 8c: a verified peer address stayed verified for the SA's lifetime. ESP now goes to
// an address it left more than mobike.VerifiedHold ago only after a new check.
func TestVerificationExpires(t *testing.T) {
	n, gw, cl := mobikePair(t, nil)
	cl.addrs = append(cl.addrs, clientAddr2)
	n.apply(cl, cl.e.SetLocalAddrs(n.now, cl.addrs))
	n.run(5*time.Second, nil)
	checksTo := func() int {
		return len(messagesTo(t, gw, cl, clientAP2, func(m *wire.Message) bool {
			return !m.Header.IsResponse() && wire.FindNotify(m.Payloads, wire.COOKIE2) != nil
		}))
	}
	move := func(to netip.Addr) {
		t.Helper()
		cl.src = to
		n.apply(cl, cl.e.RoutesChanged(n.now))
		n.run(10*time.Second, nil)
		flowsAt(t, gw, cl, to, gwAddr)
	}
	move(clientAddr2)
	first := checksTo()
	if first == 0 {
		t.Fatal("no check of the new address")
	}
	move(clientAddr)
	move(clientAddr2) // within the hold: verified, no new check
	if got := checksTo(); got != first {
		t.Errorf("%d checks after a move back within the hold, want %d", got, first)
	}
	move(clientAddr)
	n.run(mobike.VerifiedHold, nil)
	// A new check before ESP goes there.
	cl.src = clientAddr2
	n.apply(cl, cl.e.RoutesChanged(n.now))
	n.runChecked(10*time.Second, func() {
		if checksTo() == first && checkOneOutbound(t, gw).Remote == clientAP2 {
			t.Fatal("ESP went to an address verified more than VerifiedHold ago without a new check")
		}
	})
	if checksTo() == first {
		t.Error("no new check")
	}
	flowsAt(t, gw, cl, clientAddr2, gwAddr)
}
