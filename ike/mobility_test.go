package ike

import (
	"bytes"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/mobike"
	"github.com/mobikevpn/mobikevpn/wire"
)

// Tests of issue 10's findings against RFC 4555 and draft-smyslov-ipsecme-ikev2-r-mobike:
// each failed before the path manager took over mobility. The peers here can do what an
// authenticated peer or an on-path attacker can: put any source address on a packet
// (inject), rewrite packets on the way (n.nat) or drop them (n.drop).

var (
	victim    = netip.AddrPortFrom(netip.MustParseAddr("203.0.113.66"), 4500) // a third party
	clientAP  = netip.AddrPortFrom(clientAddr, 4500)
	clientAP2 = netip.AddrPortFrom(clientAddr2, 4500)
	gwAP      = netip.AddrPortFrom(gwAddr, 4500)
	gwAP2     = netip.AddrPortFrom(gwAddr2, 4500)
)

// onlySA is ep's one IKE SA.
func onlySA(t *testing.T, ep *endpoint) *IKESA {
	t.Helper()
	st := ep.e.Status(time.Time{})
	if len(st) != 1 {
		t.Fatalf("%s has %d IKE SAs", ep.name, len(st))
	}
	return ep.e.store.byID[st[0].ID]
}

// inject has ep's IKE SA send an authenticated request with its next message ID from src
// to dst: a peer that puts any source address on its packets.
func (n *testNet) inject(ep *endpoint, src, dst netip.AddrPort, ex wire.ExchangeType, ps ...wire.Payload) {
	n.t.Helper()
	sa := onlySA(n.t, ep)
	h := sa.header(ex, sa.win.nextReqID, false)
	sa.win.nextReqID++
	data, err := sa.seal(h, ps)
	if err != nil {
		n.t.Fatal(err)
	}
	n.inflight = append(n.inflight, datagram{from: src, to: dst, data: data})
}

// injectUpdate sends an UPDATE_SA_ADDRESSES with NAT detection for src -> dst and a
// COOKIE2 on behalf of ep.
func (n *testNet) injectUpdate(ep *endpoint, src, dst netip.AddrPort, extra ...wire.Payload) {
	n.t.Helper()
	sa := onlySA(n.t, ep)
	ps := []wire.Payload{&wire.Notify{NotifyType: wire.UPDATE_SA_ADDRESSES}}
	ps = append(ps, ep.e.natDetection(sa, src, dst)...)
	ps = append(ps, extra...)
	ps = append(ps, &wire.Notify{NotifyType: wire.COOKIE2, Data: bytes.Repeat([]byte{0xc2}, 16)})
	n.inject(ep, src, dst, wire.INFORMATIONAL, ps...)
}

// flush delivers everything in flight, and what that causes, without letting time pass.
func (n *testNet) flush() { n.run(0, nil) }

// reseal edits a protected datagram d that sender sent to receiver: edit gets the
// decrypted message and reports whether it changed it.
func reseal(t *testing.T, d *datagram, sender, receiver *endpoint, edit func(*wire.Message) bool) bool {
	t.Helper()
	m := decryptFor(t, *d, receiver)
	if m == nil || !edit(m) {
		return false
	}
	spi := m.Header.SPIr
	if m.Header.IsInitiator() {
		spi = m.Header.SPIi
	}
	sa := sender.e.store.sas[spi]
	data, err := sa.seal(m.Header, m.Payloads)
	if err != nil {
		t.Fatal(err)
	}
	d.data = data
	return true
}

// requestsTo counts the protected requests ep sent to a.
func requestsTo(ep *endpoint, a netip.Addr) int {
	c := 0
	for _, d := range ep.sent {
		if h, err := wire.ParseHeader(d.data); err == nil && !h.IsResponse() && d.to.Addr() == a {
			c++
		}
	}
	return c
}

// messagesTo returns the decrypted messages from sent to peer that went to dst and
// satisfy keep.
func messagesTo(t *testing.T, from, peer *endpoint, dst netip.AddrPort, keep func(*wire.Message) bool) []*wire.Message {
	var out []*wire.Message
	for _, d := range from.sent {
		if dst.IsValid() && d.to != dst {
			continue
		}
		if m := decryptFor(t, d, peer); m != nil && keep(m) {
			out = append(out, m)
		}
	}
	return out
}

func hasNotify(t wire.NotifyType) func(*wire.Message) bool {
	return func(m *wire.Message) bool { return wire.FindNotify(m.Payloads, t) != nil }
}

func espNeverTo(t *testing.T, ep *endpoint, bad netip.AddrPort) {
	t.Helper()
	for _, d := range ep.espTo {
		if d == bad {
			t.Errorf("%s pointed ESP at %v (every destination: %v)", ep.name, bad, ep.espTo)
			return
		}
	}
}

// RFC 4555 5.2, finding 1: the check bound to the address it was captured for, the reply
// to it re-sent elsewhere: a client got a third party's address marked verified.
func TestReturnRoutabilityBoundToItsPath(t *testing.T) {
	n, gw, cl := mobikePair(t, nil)
	// An UPDATE_SA_ADDRESSES from the victim's address: the gateway checks that address
	// (the check goes to the victim, who cannot answer).
	n.injectUpdate(cl, victim, gwAP)
	n.flush()
	if _, ok := lostCheck(t, n, cl); !ok {
		t.Fatalf("no return routability check went to the victim: %v", n.lost)
	}
	// Back at its own address at once: ESP stays there (it is verified).
	n.injectUpdate(cl, clientAP, gwAP)
	n.flush()
	// The gateway retransmits its pending check; the client answers whatever reaches it.
	n.run(20*time.Second, nil)
	// Now the victim again: it was never verified, so ESP must not go there.
	n.injectUpdate(cl, victim, gwAP)
	n.run(20*time.Second, nil)
	espNeverTo(t, gw, victim)
	if gsa := onlySA(t, gw); gsa.pm.Verified(victim) {
		t.Error("the victim's address counts as verified")
	}
	// Verification is per address and port: the client's address with another port is
	// checked before ESP goes there.
	other := netip.AddrPortFrom(clientAddr, 9999)
	n.injectUpdate(cl, other, gwAP)
	n.step(n.now) // deliver the UPDATE only
	if o := checkOneOutbound(t, gw); o.Remote == other {
		t.Errorf("ESP moved to %v without a check (verified by address alone)", other)
	}
	if requestsTo(gw, clientAddr) == 0 || !slices.ContainsFunc(n.inflight, func(d datagram) bool { return d.to == other && d.from.Addr() == gwAddr }) {
		t.Errorf("no check sent to %v", other)
	}
}

// lostCheck finds the return routability check (a request with COOKIE2) that went to
// the victim.
func lostCheck(t *testing.T, n *testNet, cl *endpoint) (datagram, bool) {
	for _, d := range n.lost {
		if m := decryptFor(t, d, cl); d.to == victim && m != nil && !m.Header.IsResponse() && wire.FindNotify(m.Payloads, wire.COOKIE2) != nil {
			return d, true
		}
	}
	return datagram{}, false
}

// switchAndRun has gw ask its clients to switch to to and lets the test network run
// for 5 s; it returns Switch's error.
func switchAndRun(t *testing.T, n *testNet, gw *endpoint, to netip.Addr) error {
	t.Helper()
	_, acts, err := gw.e.Switch(n.now, SwitchSelector{All: true}, to)
	n.apply(gw, acts)
	n.run(5*time.Second, nil)
	return err
}

// sendSwitchRequest has gw send a SWITCH_TO_IP_ADDRESS(to) request whatever its own
// rules say (a confused or hostile gateway).
func sendSwitchRequest(t *testing.T, n *testNet, gw *endpoint, to netip.Addr) {
	t.Helper()
	gw.e.queueRequest(n.now, onlySA(t, gw), &request{exchange: wire.INFORMATIONAL, kind: reqSwitch,
		payloads: []wire.Payload{wire.NewAddressNotify(wire.SWITCH_TO_IP_ADDRESS, to)}})
	n.apply(gw, gw.e.take())
}

func checkOneOutbound(t *testing.T, ep *endpoint) InstallOutbound {
	t.Helper()
	if len(ep.outbound) != 1 {
		t.Fatalf("%s has %d outbound flows", ep.name, len(ep.outbound))
	}
	for _, o := range ep.outbound {
		return o
	}
	return InstallOutbound{}
}

// The reply to a check counts only from where the check went.
func TestReturnRoutabilityReplyFromElsewhere(t *testing.T) {
	n, gw, cl := mobikePair(t, nil)
	n.injectUpdate(cl, victim, gwAP)
	n.flush()
	chk, ok := lostCheck(t, n, cl)
	if !ok {
		t.Fatalf("no check to the victim: %v", n.lost)
	}
	// An on-path attacker saw the check and answers it from the client's own address.
	m := decryptFor(t, chk, cl)
	csa := onlySA(t, cl)
	rh := csa.header(wire.INFORMATIONAL, m.Header.MessageID, true)
	data, err := csa.seal(rh, []wire.Payload{wire.FindNotify(m.Payloads, wire.COOKIE2)})
	if err != nil {
		t.Fatal(err)
	}
	csa.win.peerReqID = m.Header.MessageID + 1
	n.inflight = append(n.inflight, datagram{from: clientAP, to: chk.from, data: data})
	n.flush()
	if gsa := onlySA(t, gw); gsa.pm.Verified(victim) {
		t.Error("a reply from another address verified the victim's")
	}
	espNeverTo(t, gw, victim)
	if len(gw.e.store.byID) != 1 {
		t.Error("the SA did not survive")
	}
}

// Finding 2: Child SAs created or rekeyed while a check is pending went to the unverified
// address, and "dynamic" took its /32 from it.
func TestNoChildSATowardUnverifiedAddress(t *testing.T) {
	extra := &ChildConfig{Name: "extra", LocalTS: []TSConfig{prefixTS("0.0.0.0/0")}, RemoteTS: []TSConfig{prefixTS("198.18.0.0/24")}}
	n, gw, cl := mobikePair(t, func(g, c *Config) {
		// No pool: the gateway's remote "dynamic" is the client's outer address.
		g.Pools, g.Connections[0].Pools = nil, nil
		c.Connections[0].VIPs = nil
		extra.ESPProposals = c.Connections[0].Children[0].ESPProposals
		c.Connections[0].Children = append(c.Connections[0].Children, extra)
		// (the client asks for its second Child SA at once; it must be up before the test)
	})
	n.run(10*time.Second, nil)
	n.injectUpdate(cl, victim, gwAP) // the check goes to the victim and stays unanswered
	n.flush()
	csa := onlySA(t, cl)
	before := len(gw.espTo)
	// A new Child SA and a rekey while the check is pending.
	n.apply(cl, func() []Action { cl.e.createChild(n.now, csa, extra, 0, nil); return cl.e.take() }())
	n.run(time.Second, nil)
	n.apply(cl, func() []Action { cl.e.rekeyChild(n.now, csa, csa.children[0], 0); return cl.e.take() }())
	n.run(time.Second, nil)
	if len(gw.espTo) == before {
		t.Fatal("no Child SA was installed at the gateway")
	}
	espNeverTo(t, gw, victim)
	for _, c := range onlySA(t, gw).children {
		for _, ts := range c.remoteTS {
			if p, ok := ts.Prefix(); ok && p.Contains(victim.Addr()) && p.Bits() > 0 {
				t.Errorf("Child SA %s narrowed its remote selector to the unverified address: %v", c.cfg.Name, tsStrings(c.remoteTS))
			}
		}
	}
}

// Finding 3: a forged-source copy of the gateway's address update moved the client to a
// third address for good (RFC 4555 3.8).
func TestClientIgnoresSpoofedSourceAddressUpdate(t *testing.T) {
	n, gw, cl := mobikePair(t, nil)
	spoof := true
	n.nat = func(d *datagram) {
		if spoof && d.from == gwAP {
			d.from = victim
		}
	}
	// The gateway loses its second address and tells the client; the message arrives
	// with the victim's source address.
	n.apply(gw, gw.e.SetLocalAddrs(n.now, []netip.Addr{gwAddr}))
	n.flush()
	spoof = false
	n.run(30*time.Second, nil)
	if r := cl.e.Status(n.now)[0].Remote; r != gwAP {
		t.Fatalf("the client moved to %v", r)
	}
	espNeverTo(t, cl, victim)
	if c := requestsTo(cl, victim.Addr()); c != 0 {
		t.Errorf("the client sent %d requests to the spoofed source", c)
	}
	flowsAt(t, gw, cl, clientAddr, gwAddr)
	if got := cl.e.Status(n.now)[0].PeerAdditional; len(got) != 0 {
		t.Errorf("the address list (authenticated content) was not taken: %v", got)
	}
}

// Finding 3, probing: a reply from an address pair that was never probed is no hint;
// one from a probed pair is confirmed by an UPDATE_SA_ADDRESSES to exactly that pair
// before ESP moves.
func TestProbeReplyOnlyFromProbedPairs(t *testing.T) {
	n, gw, cl := mobikePair(t, func(g, c *Config) {
		c.Connections[0].DPDDelay = 2 * time.Second
		c.Retransmit = Retransmit{Timeout: 500 * time.Millisecond, Tries: 8, Base: 1.5}
	})
	// Requests to the gateway's first address are lost; replies from its second one are
	// re-sourced to a third party's address.
	n.drop = func(d datagram) bool { return d.to == gwAP }
	spoof := true
	n.nat = func(d *datagram) {
		if spoof && d.from == gwAP2 {
			d.from = victim
		}
	}
	n.run(8*time.Second, nil)
	espNeverTo(t, cl, victim)
	if c := requestsTo(cl, victim.Addr()); c != 0 {
		t.Errorf("the client sent %d requests to an address it never probed", c)
	}
	if r := cl.e.Status(n.now)[0].Remote; r != gwAP {
		t.Fatalf("the client moved to %v", r)
	}
	// Replies come from the probed pair now.
	spoof = false
	updateSeen := false
	n.runChecked(20*time.Second, func() {
		if checkOneOutbound(t, cl).Remote == gwAP2 && !updateSeen {
			// ESP moved: an UPDATE went to exactly that pair before.
			updateSeen = len(messagesTo(t, cl, gw, gwAP2, hasNotify(wire.UPDATE_SA_ADDRESSES))) > 0
			if !updateSeen {
				t.Fatal("ESP moved to the probed pair without an UPDATE_SA_ADDRESSES sent there")
			}
		}
	})
	flowsAt(t, gw, cl, clientAddr, gwAddr2)
}

// Correctness, finding 4: a switch accepted to an address that does not answer lost the
// tunnel. The client keeps ESP on the old path, falls back, tells the gateway.
func TestSwitchToUnreachableTargetFallsBack(t *testing.T) {
	n, gw, cl := mobikePair(t, func(g, c *Config) {
		c.Retransmit = Retransmit{Timeout: 500 * time.Millisecond, Tries: 5, Base: 1.5}
	})
	n.drop = func(d datagram) bool { return d.to.Addr() == gwAddr2 || d.from.Addr() == gwAddr2 }
	_, acts, err := gw.e.Switch(n.now, SwitchSelector{All: true}, gwAddr2)
	if err != nil {
		t.Fatal(err)
	}
	n.apply(gw, acts)
	start := n.now
	var recovered time.Duration
	n.runChecked(time.Minute, func() {
		if o := checkOneOutbound(t, cl); o.Remote != gwAP {
			t.Fatalf("at %v the client's ESP goes to %v", n.now.Sub(start), o.Remote)
		}
		if recovered == 0 && cl.hasEvent(EventMoveFailed) != nil && cl.e.Status(n.now)[0].MobikeState == "stable" {
			recovered = n.now.Sub(start)
		}
	})
	if len(cl.e.store.byID) != 1 || len(gw.e.store.byID) != 1 {
		t.Fatal("the SA did not survive")
	}
	flowsAt(t, gw, cl, clientAddr, gwAddr)
	if recovered == 0 {
		t.Fatalf("no fallback: events %v, state %q", cl.events, cl.e.Status(n.now)[0].MobikeState)
	}
	// Three tries at the target (the first and FallbackAfter retransmissions), then the
	// old path with a new UPDATE_SA_ADDRESSES.
	if got := requestsTo(cl, gwAddr2); got != mobike.FallbackAfter+1 {
		t.Errorf("%d requests to the target, want %d", got, mobike.FallbackAfter+1)
	}
	if len(messagesTo(t, cl, gw, gwAP, hasNotify(wire.UPDATE_SA_ADDRESSES))) == 0 {
		t.Error("no UPDATE_SA_ADDRESSES on the old path after the fallback")
	}
	t.Logf("fell back and stable again %v after the switch request", recovered)
}

// Finding 4: every address the client used stays a probe candidate.
func TestProbeCandidatesKeepUsedAddresses(t *testing.T) {
	n, gw, cl := mobikePair(t, func(g, c *Config) {
		// The gateway announces only its second address: once the SA is there, it
		// announces nothing.
		g.Connections[0].Announce = mobike.Announce{Mode: mobike.List, List: []netip.Addr{gwAddr2}}
		c.Connections[0].DPDDelay = 2 * time.Second
		c.Retransmit = Retransmit{Timeout: 500 * time.Millisecond, Tries: 6, Base: 1.5}
	})
	if err := switchAndRun(t, n, gw, gwAddr2); err != nil {
		t.Fatal(err)
	}
	flowsAt(t, gw, cl, clientAddr, gwAddr2)
	if got := cl.e.Status(n.now)[0].PeerAdditional; len(got) != 0 {
		t.Fatalf("the gateway still announces %v", got)
	}
	// The new path breaks silently: the first address is the way back.
	n.drop = func(d datagram) bool { return d.to.Addr() == gwAddr2 || d.from.Addr() == gwAddr2 }
	n.run(30*time.Second, func() bool { return checkOneOutbound(t, cl).Remote == gwAP })
	n.run(5*time.Second, nil)
	flowsAt(t, gw, cl, clientAddr, gwAddr)
}

// Finding 5: UNACCEPTABLE_ADDRESSES was only logged (RFC 4555 3.5: retry another pair or
// keep the old one).
func TestUnacceptableAddresses(t *testing.T) {
	t.Run("switch target refused: stay", func(t *testing.T) {
		n, gw, cl := mobikePair(t, func(g, c *Config) { c.Connections[0].SwitchAccept = mobike.SwitchPolicy{Any: true} })
		// The gateway no longer has its second address (its datagrams still reach it:
		// the engine alone is told), but a switch to it arrives (a confused gateway).
		n.apply(gw, gw.e.SetLocalAddrs(n.now, []netip.Addr{gwAddr}))
		n.run(5*time.Second, nil)
		sendSwitchRequest(t, n, gw, gwAddr2)
		n.runChecked(10*time.Second, func() {
			if checkOneOutbound(t, cl).Remote != gwAP {
				t.Fatal("the client moved ESP before the gateway accepted")
			}
		})
		flowsAt(t, gw, cl, clientAddr, gwAddr)
		refusals := messagesTo(t, gw, cl, clientAP, hasNotify(wire.UNACCEPTABLE_ADDRESSES))
		if len(refusals) == 0 {
			t.Fatal("the gateway did not refuse")
		}
		// RFC 4555 3.5: UNACCEPTABLE_ADDRESSES and COOKIE2, nothing else.
		if ps := refusals[0].Payloads; len(ps) != 2 || wire.FindNotify(ps, wire.COOKIE2) == nil {
			t.Errorf("the refusal carries %v", ps)
		}
		if ev := cl.hasEvent(EventMoveFailed); ev == nil || !strings.Contains(ev.Reason, "UNACCEPTABLE_ADDRESSES") {
			t.Errorf("client events %v", cl.events)
		}
	})
	t.Run("own move refused: another pair", func(t *testing.T) {
		n, gw, cl := mobikePair(t, nil)
		cl.addrs = append(cl.addrs, clientAddr2)
		n.apply(cl, cl.e.SetLocalAddrs(n.now, cl.addrs))
		n.run(5*time.Second, nil)
		// The routing table prefers the second address; the gateway's answer to the
		// move says UNACCEPTABLE_ADDRESSES (rewritten on the way).
		refused := false
		n.nat = func(d *datagram) {
			if refused || d.to != clientAP2 {
				return
			}
			refused = reseal(t, d, gw, cl, func(m *wire.Message) bool {
				if !m.Header.IsResponse() || wire.FindNotify(m.Payloads, wire.COOKIE2) == nil {
					return false
				}
				m.Payloads = []wire.Payload{&wire.Notify{NotifyType: wire.UNACCEPTABLE_ADDRESSES}, wire.FindNotify(m.Payloads, wire.COOKIE2)}
				return true
			})
		}
		cl.src = clientAddr2
		n.apply(cl, cl.e.RoutesChanged(n.now))
		n.run(20*time.Second, nil)
		if !refused {
			t.Fatal("no UPDATE response to refuse")
		}
		flowsAt(t, gw, cl, clientAddr, gwAddr)
	})
}

// Finding 6: COOKIE2 was not echoed when the request also carried NAT detection (RFC
// 4555 3.7: MUST). Every MOBIKE exchange is checked against the RFC's figures.
func TestMobikeExchangesCarryTheRFCNotifies(t *testing.T) {
	n, gw, cl := mobikePair(t, nil)
	csa := onlySA(t, cl)
	cookie := &wire.Notify{NotifyType: wire.COOKIE2, Data: bytes.Repeat([]byte{7}, 16)}
	from := len(gw.sent)
	reply := func(what string) *wire.Message {
		t.Helper()
		n.flush()
		for _, d := range gw.sent[from:] {
			if m := decryptFor(t, d, cl); m != nil && m.Header.IsResponse() {
				from = len(gw.sent)
				return m
			}
		}
		t.Fatalf("%s: no response", what)
		return nil
	}
	types := func(m *wire.Message) []wire.NotifyType {
		var out []wire.NotifyType
		for _, p := range m.Payloads {
			if nt, ok := p.(*wire.Notify); ok {
				out = append(out, nt.NotifyType)
			}
		}
		return out
	}
	want := func(what string, m *wire.Message, ts ...wire.NotifyType) {
		t.Helper()
		got := types(m)
		if !slices.Equal(got, ts) {
			t.Errorf("%s: response notifies %v, want %v", what, got, ts)
		}
		if c := wire.FindNotify(m.Payloads, wire.COOKIE2); slices.Contains(ts, wire.COOKIE2) && (c == nil || !bytes.Equal(c.Data, cookie.Data)) {
			t.Errorf("%s: COOKIE2 not copied as is", what)
		}
	}
	natd := wire.NAT_DETECTION_SOURCE_IP
	natdd := wire.NAT_DETECTION_DESTINATION_IP
	// A liveness check with NAT detection and COOKIE2 (3.7, 3.8).
	n.inject(cl, clientAP, gwAP, wire.INFORMATIONAL, append(cl.e.natDetection(csa, clientAP, gwAP), cookie)...)
	want("liveness check", reply("liveness check"), natd, natdd, wire.COOKIE2)
	// An address update with COOKIE2 (3.6).
	n.inject(cl, clientAP, gwAP, wire.INFORMATIONAL, &wire.Notify{NotifyType: wire.NO_ADDITIONAL_ADDRESSES}, cookie)
	want("address update", reply("address update"), wire.COOKIE2)
	// UPDATE_SA_ADDRESSES that moves the SA to the gateway's other address (3.5): NAT
	// detection and COOKIE2, nothing else (the gateway's new address set goes in a
	// request of its own).
	ps := append([]wire.Payload{&wire.Notify{NotifyType: wire.UPDATE_SA_ADDRESSES}}, cl.e.natDetection(csa, clientAP, gwAP2)...)
	n.inject(cl, clientAP, gwAP2, wire.INFORMATIONAL, append(ps, cookie)...)
	want("UPDATE_SA_ADDRESSES", reply("UPDATE_SA_ADDRESSES"), natd, natdd, wire.COOKIE2)
	n.run(5*time.Second, nil)
	if len(messagesTo(t, gw, cl, clientAP, func(m *wire.Message) bool {
		return !m.Header.IsResponse() && wire.FindNotify(m.Payloads, wire.ADDITIONAL_IP4_ADDRESS) != nil
	})) == 0 {
		t.Error("the gateway did not announce its new address set in a request")
	}
	// A return routability check carries COOKIE2 only (3.7).
	n.injectUpdate(cl, clientAP2, gwAP2)
	n.flush()
	var check *wire.Message
	for _, m := range messagesTo(t, gw, cl, clientAP2, func(m *wire.Message) bool { return !m.Header.IsResponse() }) {
		check = m
	}
	if check == nil || !slices.Equal(types(check), []wire.NotifyType{wire.COOKIE2}) {
		t.Errorf("return routability check: %v", check)
	}
}

// Finding 7: rmobike: false was ignored on both sides.
func TestRMobikeFalseIsHonoured(t *testing.T) {
	t.Run("client", func(t *testing.T) {
		n, gw, cl := mobikePair(t, func(g, c *Config) { c.Connections[0].RMobike = false })
		sendSwitchRequest(t, n, gw, gwAddr2)
		n.run(10*time.Second, nil)
		flowsAt(t, gw, cl, clientAddr, gwAddr)
	})
	t.Run("gateway", func(t *testing.T) {
		n, gw, _ := mobikePair(t, func(g, c *Config) { g.Connections[0].RMobike = false })
		sent := len(gw.sent)
		_, acts, err := gw.e.Switch(n.now, SwitchSelector{All: true}, gwAddr2)
		var se *SwitchError
		if !errors.As(err, &se) || !se.Usage || !strings.Contains(err.Error(), "rmobike: false") || len(acts) != 0 {
			t.Fatalf("switch with rmobike: false: %v", err)
		}
		n.run(time.Second, nil)
		if len(gw.sent) != sent {
			t.Error("something was sent")
		}
	})
}

// Finding 5: `switch --to` an address the connection does not serve went out with a
// warning.
func TestSwitchToAddressNotServed(t *testing.T) {
	n, gw, _ := mobikePair(t, nil)
	n.apply(gw, gw.e.SetLocalAddrs(n.now, []netip.Addr{gwAddr, gwAddr2}))
	n.run(time.Second, nil)
	onlySA(t, gw).conn.LocalAddrs = []netip.Addr{gwAddr} // the host has gwAddr2, the connection does not serve it
	sent := len(gw.sent)
	_, _, err := gw.e.Switch(n.now, SwitchSelector{All: true}, gwAddr2)
	var se *SwitchError
	if !errors.As(err, &se) || !se.Usage || !strings.Contains(err.Error(), "local_addrs") {
		t.Fatalf("switch to an address the connection does not serve: %v", err)
	}
	n.run(time.Second, nil)
	if len(gw.sent) != sent {
		t.Error("something was sent")
	}
}

// Only a responder asks for switches.
func TestInitiatorCannotSendSwitch(t *testing.T) {
	n, _, cl := mobikePair(t, nil)
	cl.addrs = append(cl.addrs, clientAddr2)
	n.apply(cl, cl.e.SetLocalAddrs(n.now, cl.addrs))
	_, acts, err := cl.e.Switch(n.now, SwitchSelector{All: true}, clientAddr2)
	var se *SwitchError
	if !errors.As(err, &se) || len(acts) != 0 {
		t.Fatalf("the initiator's Switch: %v", err)
	}
}

// Finding 8: INVALID_SYNTAX did not end the IKE SA (RFC 7296 2.21.3), on either side.
func TestInvalidSyntaxEndsTheSA(t *testing.T) {
	t.Run("we send it", func(t *testing.T) {
		n, gw, cl := mobikePair(t, nil)
		// CREATE_CHILD_SA without traffic selectors: badly formatted.
		csa := onlySA(t, cl)
		n.inject(cl, clientAP, gwAP, wire.CREATE_CHILD_SA,
			&wire.SA{Proposals: numberProposals(stripDH(csa.conn.Children[0].ESPProposals), []byte{1, 2, 3, 4})},
			&wire.Nonce{Data: bytes.Repeat([]byte{1}, 32)})
		n.flush()
		if len(messagesTo(t, gw, cl, clientAP, hasNotify(wire.INVALID_SYNTAX))) != 1 {
			t.Fatal("no INVALID_SYNTAX response")
		}
		if len(gw.e.store.byID) != 0 {
			t.Error("the gateway kept the SA")
		}
		if ev := gw.hasEvent(EventDeleted); ev == nil || !strings.Contains(ev.Reason, "INVALID_SYNTAX") {
			t.Errorf("gateway events %v", gw.events)
		}
		if len(messagesTo(t, gw, cl, netip.AddrPort{}, func(m *wire.Message) bool { return wire.Find[*wire.Delete](m.Payloads) != nil })) != 0 {
			t.Error("a Delete was sent (RFC 7296 2.21.3: none is needed)")
		}
	})
	t.Run("we receive it", func(t *testing.T) {
		n, gw, cl := mobikePair(t, func(g, c *Config) { c.Connections[0].DPDDelay = 2 * time.Second })
		n.nat = func(d *datagram) {
			if d.from.Addr() == gwAddr {
				reseal(t, d, gw, cl, func(m *wire.Message) bool {
					if !m.Header.IsResponse() || m.Header.Exchange != wire.INFORMATIONAL {
						return false
					}
					m.Payloads = []wire.Payload{&wire.Notify{NotifyType: wire.INVALID_SYNTAX}}
					return true
				})
			}
		}
		n.run(10*time.Second, func() bool { return len(cl.e.store.byID) == 0 })
		if len(cl.e.store.byID) != 0 {
			t.Fatal("the client kept the SA after INVALID_SYNTAX")
		}
		if ev := cl.hasEvent(EventDeleted); ev == nil || !strings.Contains(ev.Reason, "INVALID_SYNTAX") {
			t.Errorf("client events %v", cl.events)
		}
	})
}

// Finding 8: a peer without MOBIKE behind a NAT whose mapping changed was left on the
// stale port (RFC 7296 2.23).
func TestNATRebindingWithoutMobike(t *testing.T) {
	public := netip.MustParseAddr("198.51.100.77")
	port := uint16(20000)
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		c.Connections[0].DPDDelay = 2 * time.Second
		c.Connections[0].Mobike = false
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
	if gw.e.Status(n.now)[0].Mobike {
		t.Fatal("MOBIKE negotiated")
	}
	before := gw.e.Status(n.now)[0].Remote
	mapping = map[uint16]uint16{}
	n.run(10*time.Second, nil)
	after := gw.e.Status(n.now)[0].Remote
	if after == before || after.Addr() != public {
		t.Fatalf("gateway did not follow the new mapping: %v -> %v", before, after)
	}
	if o := checkOneOutbound(t, gw); o.Remote != after {
		t.Errorf("gateway's ESP goes to %v, the client is at %v", o.Remote, after)
	}
}

// Finding 9: IKE_SA_INIT retransmissions never tried the other remote_addrs (RFC 4555
// 3.1).
func TestInitiatorTriesEveryRemoteAddress(t *testing.T) {
	dead := netip.MustParseAddr("198.51.100.99")
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		c.Connections[0].RemoteAddrs = []netip.Addr{dead, gwAddr}
		c.Retransmit = Retransmit{Timeout: 500 * time.Millisecond, Tries: 4, Base: 1.5}
	})
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatalf("not established through the second address: %v", cl.events)
	}
	if r := cl.e.Status(n.now)[0].Remote; r.Addr() != gwAddr {
		t.Errorf("client's remote %v", r)
	}
	checkChildPair(t, gw, cl)
}

// Finding 10: switches were not rate-limited, and nothing stopped flapping.
func TestSwitchLimitAndHold(t *testing.T) {
	sw := switchAndRun
	t.Run("gateway limit", func(t *testing.T) {
		n, gw, cl := mobikePair(t, func(g, c *Config) {
			g.Connections[0].SwitchLimit = 2
			c.Connections[0].SwitchLimit = 100
		})
		for _, to := range []netip.Addr{gwAddr2, gwAddr} {
			if err := sw(t, n, gw, to); err != nil {
				t.Fatal(err)
			}
		}
		var se *SwitchError
		if err := sw(t, n, gw, gwAddr2); !errors.As(err, &se) || se.Usage || !strings.Contains(err.Error(), "switch_limit") {
			t.Fatalf("third switch in a minute: %v", err)
		}
		flowsAt(t, gw, cl, clientAddr, gwAddr)
		n.now = n.now.Add(time.Minute)
		if err := sw(t, n, gw, gwAddr2); err != nil {
			t.Fatalf("a minute later: %v", err)
		}
		flowsAt(t, gw, cl, clientAddr, gwAddr2)
	})
	t.Run("client limit", func(t *testing.T) {
		n, gw, cl := mobikePair(t, func(g, c *Config) { c.Connections[0].SwitchLimit = 1 })
		if err := sw(t, n, gw, gwAddr2); err != nil {
			t.Fatal(err)
		}
		if err := sw(t, n, gw, gwAddr); err != nil {
			t.Fatal(err)
		}
		flowsAt(t, gw, cl, clientAddr, gwAddr2)
		if ev := cl.hasEvent(EventSwitchRefused); ev == nil || !strings.Contains(ev.Reason, "switch_limit") {
			t.Errorf("client events %v", cl.events)
		}
	})
	t.Run("client hold", func(t *testing.T) {
		n, gw, cl := mobikePair(t, func(g, c *Config) { c.Connections[0].SwitchHold = 30 * time.Second })
		sw(t, n, gw, gwAddr2)
		flowsAt(t, gw, cl, clientAddr, gwAddr2)
		sw(t, n, gw, gwAddr) // back within 30 s: flapping
		flowsAt(t, gw, cl, clientAddr, gwAddr2)
		if ev := cl.hasEvent(EventSwitchRefused); ev == nil || !strings.Contains(ev.Reason, "switch_hold") {
			t.Errorf("client events %v", cl.events)
		}
		n.now = n.now.Add(30 * time.Second)
		sw(t, n, gw, gwAddr)
		flowsAt(t, gw, cl, clientAddr, gwAddr)
	})
	t.Run("gateway hold", func(t *testing.T) {
		n, gw, _ := mobikePair(t, func(g, c *Config) { g.Connections[0].SwitchHold = 30 * time.Second })
		if err := sw(t, n, gw, gwAddr2); err != nil {
			t.Fatal(err)
		}
		if err := sw(t, n, gw, gwAddr); err == nil || !strings.Contains(err.Error(), "switch_hold") {
			t.Fatalf("switch back at once: %v", err)
		}
	})
}

// Finding 11: the notify type of SWITCH_TO_IP_ADDRESS is a setting.
func TestRMobikeNotifyType(t *testing.T) {
	n, gw, cl := mobikePair(t, func(g, c *Config) {
		g.Connections[0].RMobikeNotify = 50000
		c.Connections[0].RMobikeNotify = 50000
	})
	if err := switchAndRun(t, n, gw, gwAddr2); err != nil {
		t.Fatal(err)
	}
	flowsAt(t, gw, cl, clientAddr, gwAddr2)
	if len(messagesTo(t, gw, cl, netip.AddrPort{}, hasNotify(50000))) != 1 || len(messagesTo(t, gw, cl, netip.AddrPort{}, hasNotify(wire.SWITCH_TO_IP_ADDRESS))) != 0 {
		t.Error("the switch request did not use notify type 50000")
	}
	// A peer that uses another number does not understand it: an unknown status
	// notify, ignored.
	n, gw, cl = mobikePair(t, func(g, c *Config) { g.Connections[0].RMobikeNotify = 50000 })
	switchAndRun(t, n, gw, gwAddr2)
	flowsAt(t, gw, cl, clientAddr, gwAddr)
}

// RFC 4555 3.9: NO_NATS_ALLOWED is checked against the IP header; UNEXPECTED_NAT_DETECTED
// leaves everything as it is, and an initiator that gets it tries again.
func TestNoNATsAllowed(t *testing.T) {
	n, gw, cl := mobikePair(t, nil)
	// It says it came from the victim: a NAT (or an attacker) changed the header.
	n.injectUpdate(cl, clientAP, gwAP2, wire.NewNoNATsAllowed(victim, gwAP2))
	n.flush()
	ms := messagesTo(t, gw, cl, clientAP, func(m *wire.Message) bool { return m.Header.IsResponse() })
	last := ms[len(ms)-1]
	if wire.FindNotify(last.Payloads, wire.UNEXPECTED_NAT_DETECTED) == nil || wire.FindNotify(last.Payloads, wire.COOKIE2) == nil {
		t.Errorf("response %v", last.Payloads)
	}
	if gs := gw.e.Status(n.now)[0]; gs.Local != gwAP {
		t.Errorf("the gateway moved to %v", gs.Local)
	}
	// An address update with a mismatching NO_NATS_ALLOWED is not taken either.
	n.inject(cl, clientAP, gwAP, wire.INFORMATIONAL, wire.NewAddressNotify(wire.ADDITIONAL_IP4_ADDRESS, victim.Addr()), wire.NewNoNATsAllowed(victim, gwAP))
	n.flush()
	if onlySA(t, gw).pm.PeerAddrs() != nil && slices.Contains(onlySA(t, gw).pm.PeerAddrs(), victim.Addr()) {
		t.Error("the address list was taken despite UNEXPECTED_NAT_DETECTED")
	}
	// Matching: taken.
	n.injectUpdate(cl, clientAP, gwAP2, wire.NewNoNATsAllowed(clientAP, gwAP2))
	n.run(5*time.Second, nil)
	if gs := gw.e.Status(n.now)[0]; gs.Local != gwAP2 {
		t.Errorf("a matching NO_NATS_ALLOWED was refused: %v", gs.Local)
	}
}

func TestUnexpectedNATDetectedIsRetried(t *testing.T) {
	n, gw, cl := mobikePair(t, nil)
	tampered := 0
	n.nat = func(d *datagram) {
		if tampered >= 2 || d.from.Addr() != gwAddr {
			return
		}
		if reseal(t, d, gw, cl, func(m *wire.Message) bool {
			c2 := wire.FindNotify(m.Payloads, wire.COOKIE2)
			if !m.Header.IsResponse() || c2 == nil {
				return false
			}
			m.Payloads = []wire.Payload{&wire.Notify{NotifyType: wire.UNEXPECTED_NAT_DETECTED}, c2}
			return true
		}) {
			tampered++
		}
	}
	cl.addrs = []netip.Addr{clientAddr2}
	cl.src = clientAddr2
	n.apply(cl, cl.e.SetLocalAddrs(n.now, cl.addrs))
	n.run(20*time.Second, nil)
	if tampered != 2 {
		t.Fatalf("%d responses tampered", tampered)
	}
	flowsAt(t, gw, cl, clientAddr2, gwAddr)
	if got := len(messagesTo(t, cl, gw, netip.AddrPort{}, hasNotify(wire.UPDATE_SA_ADDRESSES))); got != 3 {
		t.Errorf("%d UPDATE_SA_ADDRESSES, want 3 (two answered UNEXPECTED_NAT_DETECTED)", got)
	}
}

// Both ends move at once: the client's address goes while the gateway asks it to switch.
func TestBothSidesMoveAtOnce(t *testing.T) {
	n, gw, cl := mobikePair(t, nil)
	_, acts, err := gw.e.Switch(n.now, SwitchSelector{All: true}, gwAddr2)
	if err != nil {
		t.Fatal(err)
	}
	n.apply(gw, acts)
	cl.addrs = []netip.Addr{clientAddr2}
	cl.src = clientAddr2
	n.apply(cl, cl.e.SetLocalAddrs(n.now, cl.addrs))
	n.run(time.Minute, nil)
	flowsAt(t, gw, cl, clientAddr2, gwAddr2)
	if gw.hasEvent(EventSwitched) == nil {
		t.Error("the switch did not complete")
	}
}

// A switch from an IPv6 path to the gateway's IPv4 address: the client picks its IPv4
// address for it.
func TestSwitchIPv6ToIPv4(t *testing.T) {
	cl6 := netip.MustParseAddr("2001:db8:1::10")
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		g.Connections[0].LocalAddrs = []netip.Addr{gw6, gwAddr2}
		g.Connections[0].Announce = mobike.Announce{Mode: mobike.Auto, List: []netip.Addr{gw6, gwAddr2}}
		c.Connections[0].RemoteAddrs = []netip.Addr{gw6}
		c.Connections[0].SwitchAccept = mobike.SwitchPolicy{Additional: true}
	})
	gw.addrs = []netip.Addr{gw6, gwAddr2}
	cl.addrs = []netip.Addr{cl6, clientAddr}
	cl.src = cl6
	n.inflight = nil
	cl.e = mustNew(t, cl.e.cfg)
	n.apply(cl, cl.e.SetLocalAddrs(n.now, cl.addrs))
	n.apply(cl, cl.e.StartAll(n.now))
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatalf("not established: %v", cl.events)
	}
	if r := cl.e.Status(n.now)[0].Remote.Addr(); r != gw6 {
		t.Fatalf("not on IPv6: %v", r)
	}
	if err := switchAndRun(t, n, gw, gwAddr2); err != nil {
		t.Fatal(err)
	}
	flowsAt(t, gw, cl, clientAddr, gwAddr2)
}

// RFC 4555 3.7 on the responder's side: a return routability reply with another COOKIE2
// closes the SA.
func TestCookie2MismatchSeenByResponder(t *testing.T) {
	n, gw, cl := mobikePair(t, nil)
	tampered := false
	n.nat = func(d *datagram) {
		if tampered || d.from.Addr() != clientAddr2 {
			return
		}
		tampered = reseal(t, d, cl, gw, func(m *wire.Message) bool {
			c2 := wire.FindNotify(m.Payloads, wire.COOKIE2)
			if !m.Header.IsResponse() || c2 == nil {
				return false
			}
			c2.Data = append([]byte(nil), c2.Data...)
			c2.Data[0] ^= 0xff
			return true
		})
	}
	cl.addrs = []netip.Addr{clientAddr2}
	cl.src = clientAddr2
	n.apply(cl, cl.e.SetLocalAddrs(n.now, cl.addrs))
	n.run(time.Minute, func() bool { return len(gw.e.store.byID) == 0 })
	if !tampered {
		t.Fatal("no return routability reply seen")
	}
	if ev := gw.hasEvent(EventDeleted); ev == nil || !strings.Contains(ev.Reason, "COOKIE2") {
		t.Errorf("gateway events %v", gw.events)
	}
}

// Issue 11: with additional_addrs auto and no local_addrs, a client announces only the
// addresses that can reach the gateway, in IKE_AUTH and after.
func TestClientAnnouncesOnlyReachableAddresses(t *testing.T) {
	bridge := netip.MustParseAddr("198.18.5.1")
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		c.Connections[0].Announce = mobike.Announce{Mode: mobike.Auto}
		c.Reachable = func(remote netip.Addr) []netip.Addr { return []netip.Addr{clientAddr, clientAddr2} }
	})
	n.inflight = nil
	cl.addrs = []netip.Addr{clientAddr, clientAddr2, bridge}
	cl.e = mustNew(t, cl.e.cfg)
	n.apply(cl, cl.e.SetLocalAddrs(n.now, cl.addrs))
	n.apply(cl, cl.e.StartAll(n.now))
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatalf("not established: %v", cl.events)
	}
	if got := gw.e.Status(n.now)[0].PeerAdditional; !slices.Equal(got, []netip.Addr{clientAddr2}) {
		t.Errorf("the gateway knows the client's addresses as %v, want only %v (not the bridge's)", got, clientAddr2)
	}
}
