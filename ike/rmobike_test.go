package ike

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/mobike"
	"github.com/mobikevpn/mobikevpn/wire"
)

// Tests for draft-smyslov-ipsecme-ikev2-r-mobike section 4, one MUST or MUST NOT each.

var gw6 = netip.MustParseAddr("2001:db8:2::1")

// decrypted returns the unfragmented protected messages from sent, opened with the
// receiving SA's keys (the test holds both ends).
func decrypted(t *testing.T, from, to *endpoint) []wire.Message {
	t.Helper()
	var out []wire.Message
	for _, d := range from.sent {
		if m := decryptFor(t, d, to); m != nil {
			out = append(out, *m)
		}
	}
	return out
}

func TestRMobikeCapability(t *testing.T) {
	for _, r := range []bool{true, false} {
		n, gw, cl := mobikePair(t, func(g, c *Config) { c.Connections[0].RMobike = r })
		// 4.1: the initiator's MOBIKE_SUPPORTED carries 'R' exactly when enabled; the
		// responder's never does.
		for _, m := range decrypted(t, cl, gw) {
			if nt := wire.FindNotify(m.Payloads, wire.MOBIKE_SUPPORTED); nt != nil && nt.RMOBIKE() != r {
				t.Errorf("rmobike=%v: client sent MOBIKE_SUPPORTED %x", r, nt.Data)
			}
		}
		for _, m := range decrypted(t, gw, cl) {
			if nt := wire.FindNotify(m.Payloads, wire.MOBIKE_SUPPORTED); nt != nil && len(nt.Data) != 0 {
				t.Errorf("gateway sent MOBIKE_SUPPORTED with data %x", nt.Data)
			}
		}
		if gs := gw.e.Status(n.now)[0]; gs.RMobike != r || cl.e.Status(n.now)[0].RMobike != r {
			t.Errorf("rmobike=%v: status gateway %v client %v", r, gs.RMobike, cl.e.Status(n.now)[0].RMobike)
		}
	}
}

func TestRMobikeOtherDataIsNotR(t *testing.T) {
	// Any content of MOBIKE_SUPPORTED but the single octet 'R' is not an advertisement.
	for _, data := range [][]byte{{0x52, 0x52}, {0x72}, {0}} {
		if (&wire.Notify{NotifyType: wire.MOBIKE_SUPPORTED, Data: data}).RMOBIKE() {
			t.Errorf("%x counted as 'R'", data)
		}
	}
}

func TestSwitchOnlyToPeersWithR(t *testing.T) {
	n, gw, _ := mobikePair(t, func(g, c *Config) { c.Connections[0].RMobike = false })
	sent := len(gw.sent)
	_, acts, err := gw.e.Switch(n.now, SwitchSelector{All: true}, gwAddr2)
	var se *SwitchError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "R-MOBIKE") || len(acts) != 0 {
		t.Fatalf("switch to a peer without R: %v, %d actions", err, len(acts))
	}
	n.run(time.Second, nil)
	if len(gw.sent) != sent {
		t.Error("something was sent to a peer without R")
	}
}

func TestSwitchMoves(t *testing.T) {
	n, gw, cl := mobikePair(t, nil)
	inv := makeBeforeBreak(t, n, gw, cl)
	targets, acts, err := gw.e.Switch(n.now, SwitchSelector{All: true}, gwAddr2)
	if err != nil || len(targets) != 1 || !targets[0].RMobike {
		t.Fatalf("Switch: %v %+v", err, targets)
	}
	n.apply(gw, acts)
	// The request goes from the SA's current address.
	sw := n.inflight[len(n.inflight)-1]
	if sw.from.Addr() != gwAddr || sw.to.Addr() != clientAddr {
		t.Fatalf("SWITCH_TO_IP_ADDRESS sent %v -> %v", sw.from, sw.to)
	}
	// Deliver only the request; the gateway has changed nothing yet.
	n.step(n.now)
	if gs := gw.e.Status(n.now)[0]; gs.Local.Addr() != gwAddr {
		t.Errorf("gateway moved before the UPDATE: %v", gs.Local)
	}
	n.runChecked(10*time.Second, inv)
	flowsAt(t, gw, cl, clientAddr, gwAddr2)
	if gw.hasEvent(EventSwitched) == nil {
		t.Error("no switched event")
	}
	// The client answered with an empty response first, then sent UPDATE_SA_ADDRESSES
	// with NAT-D and COOKIE2 to the new address, from its address, same port.
	var sawEmpty, sawUpdate bool
	for i, d := range cl.sent {
		m := decryptFor(t, d, gw)
		if m == nil {
			continue
		}
		if m.Header.IsResponse() && len(m.Payloads) == 0 && !sawUpdate {
			sawEmpty = true
		}
		if wire.FindNotify(m.Payloads, wire.UPDATE_SA_ADDRESSES) != nil {
			if !sawEmpty {
				t.Error("UPDATE_SA_ADDRESSES before the empty response")
			}
			sawUpdate = true
			if d.to != netip.AddrPortFrom(gwAddr2, 4500) || d.from != netip.AddrPortFrom(clientAddr, 4500) {
				t.Errorf("UPDATE went %v -> %v (datagram %d)", d.from, d.to, i)
			}
			if wire.FindNotify(m.Payloads, wire.COOKIE2) == nil || wire.FindNotify(m.Payloads, wire.NAT_DETECTION_SOURCE_IP) == nil {
				t.Error("UPDATE without COOKIE2 or NAT-D")
			}
		}
	}
	if !sawEmpty || !sawUpdate {
		t.Errorf("empty response %v, update %v", sawEmpty, sawUpdate)
	}
	// No rekey: the Child SAs are the same, re-pointed.
	if len(gw.inbound) != 1 || len(cl.inbound) != 1 {
		t.Error("Child SAs replaced")
	}
}

// decryptFor opens one datagram with the keys of the SA it belongs to at the peer.
func decryptFor(t *testing.T, d datagram, peer *endpoint) *wire.Message {
	h, err := wire.ParseHeader(d.data)
	if err != nil || h.Exchange == wire.IKE_SA_INIT {
		return nil
	}
	spi := h.SPIr
	if !h.IsInitiator() {
		spi = h.SPIi
	}
	sa := peer.e.store.sas[spi]
	if sa == nil {
		return nil
	}
	m, err := wire.ParseMessage(d.data)
	if err != nil {
		return nil
	}
	sk, ok := m.Payloads[len(m.Payloads)-1].(*wire.SK)
	if !ok {
		return nil
	}
	pt, err := sa.skIn.Open(d.data[:len(d.data)-len(sk.Body)], sk.Body)
	if err != nil {
		return nil
	}
	ps, err := wire.ParsePayloads(sk.InnerNext, pt)
	if err != nil {
		return nil
	}
	return &wire.Message{Header: h, Payloads: ps}
}

func TestSwitchRefusedStaysAndChecksLiveness(t *testing.T) {
	n, gw, cl := mobikePair(t, func(g, c *Config) {
		g.Connections[0].Announce = mobike.Announce{Mode: mobike.None}
		c.Connections[0].SwitchAccept = mobike.SwitchPolicy{Additional: true}
	})
	if got := cl.e.Status(n.now)[0].PeerAdditional; len(got) != 0 {
		t.Fatalf("gateway announced %v with additional_addrs none", got)
	}
	before := countExchanges(cl, wire.INFORMATIONAL, false)
	_, acts, err := gw.e.Switch(n.now, SwitchSelector{All: true}, gwAddr2)
	if err != nil {
		t.Fatal(err)
	}
	n.apply(gw, acts)
	n.run(10*time.Second, nil)
	flowsAt(t, gw, cl, clientAddr, gwAddr)
	if ev := cl.hasEvent(EventSwitchRefused); ev == nil || !strings.Contains(ev.Reason, "only announced") {
		t.Errorf("client events %v", cl.events)
	}
	if countExchanges(cl, wire.INFORMATIONAL, false) != before+1 {
		t.Error("no liveness check after refusing")
	}
	if gw.hasEvent(EventSwitched) != nil {
		t.Error("gateway thinks the switch happened")
	}
}

func TestSwitchAcceptPolicies(t *testing.T) {
	cases := []struct {
		name   string
		accept mobike.SwitchPolicy
		moves  bool
	}{
		{"prefix", mobike.SwitchPolicy{Prefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}}, true},
		{"other prefix", mobike.SwitchPolicy{Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}, false},
		{"any", mobike.SwitchPolicy{Any: true}, true},
		{"none", mobike.SwitchPolicy{}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, gw, cl := mobikePair(t, func(g, cc *Config) {
				g.Connections[0].Announce = mobike.Announce{Mode: mobike.None}
				cc.Connections[0].SwitchAccept = c.accept
			})
			_, acts, err := gw.e.Switch(n.now, SwitchSelector{All: true}, gwAddr2)
			if err != nil {
				t.Fatal(err)
			}
			n.apply(gw, acts)
			n.run(10*time.Second, nil)
			want := gwAddr
			if c.moves {
				want = gwAddr2
			}
			flowsAt(t, gw, cl, clientAddr, want)
		})
	}
	// switch_accept: [] refuses every target, even an announced one (issue 10: it used
	// to follow announced addresses whatever the policy said).
	n, gw, cl := mobikePair(t, func(g, c *Config) { c.Connections[0].SwitchAccept = mobike.SwitchPolicy{} })
	if got := cl.e.Status(n.now)[0].PeerAdditional; !slices.Contains(got, gwAddr2) {
		t.Fatalf("the gateway did not announce %v: %v", gwAddr2, got)
	}
	_, acts, _ := gw.e.Switch(n.now, SwitchSelector{All: true}, gwAddr2)
	n.apply(gw, acts)
	n.run(10*time.Second, nil)
	flowsAt(t, gw, cl, clientAddr, gwAddr)
	if ev := cl.hasEvent(EventSwitchRefused); ev == nil || !strings.Contains(ev.Reason, "switch_accept is empty") {
		t.Errorf("client events %v", cl.events)
	}
}

func TestSwitchMalformedIsUnacceptable(t *testing.T) {
	n, gw, cl := mobikePair(t, func(g, c *Config) { c.Connections[0].SwitchAccept = mobike.SwitchPolicy{Any: true} })
	sa := gw.e.store.byID[gw.e.Status(n.now)[0].ID]
	for _, data := range [][]byte{{203, 0, 113}, {203, 0, 113, 1, 0}, make([]byte, 17)} {
		before := countExchanges(cl, wire.INFORMATIONAL, false)
		gw.e.queueRequest(n.now, sa, &request{exchange: wire.INFORMATIONAL, kind: reqNotify,
			payloads: []wire.Payload{&wire.Notify{NotifyType: wire.SWITCH_TO_IP_ADDRESS, Data: data}}})
		n.apply(gw, gw.e.take())
		n.run(5*time.Second, nil)
		flowsAt(t, gw, cl, clientAddr, gwAddr)
		if countExchanges(cl, wire.INFORMATIONAL, false) != before+1 {
			t.Errorf("%x: no liveness check after a malformed switch", data)
		}
	}
	// An IPv6 target with no IPv6 on the client: unacceptable too.
	gw.e.queueRequest(n.now, sa, &request{exchange: wire.INFORMATIONAL, kind: reqNotify,
		payloads: []wire.Payload{wire.NewAddressNotify(wire.SWITCH_TO_IP_ADDRESS, gw6)}})
	n.apply(gw, gw.e.take())
	n.run(5*time.Second, nil)
	flowsAt(t, gw, cl, clientAddr, gwAddr)
	refused := 0
	for _, ev := range cl.events {
		if ev.Kind == EventSwitchRefused {
			refused++
		}
	}
	if last := cl.events[len(cl.events)-1]; refused != 4 || last.Kind != EventSwitchRefused || !strings.Contains(last.Reason, "address family") {
		t.Errorf("events %v", cl.events)
	}
}

func TestSwitchFromInitiatorIgnored(t *testing.T) {
	n, gw, cl := mobikePair(t, nil)
	sa := cl.e.store.byID[cl.e.Status(n.now)[0].ID]
	cl.e.queueRequest(n.now, sa, &request{exchange: wire.INFORMATIONAL, kind: reqNotify,
		payloads: []wire.Payload{wire.NewAddressNotify(wire.SWITCH_TO_IP_ADDRESS, clientAddr2)}})
	n.apply(cl, cl.e.take())
	before := len(gw.sent)
	n.run(5*time.Second, nil)
	// The gateway answered (one empty response) and did nothing else.
	if len(gw.sent) != before+1 {
		t.Errorf("gateway sent %d datagrams, want its one response", len(gw.sent)-before)
	}
	if m := decryptFor(t, gw.sent[len(gw.sent)-1], cl); m == nil || !m.Header.IsResponse() || len(m.Payloads) != 0 {
		t.Errorf("response %+v", m)
	}
	flowsAt(t, gw, cl, clientAddr, gwAddr)
}

func TestSwitchAfterGatewayInitiatedIKERekey(t *testing.T) {
	n, gw, cl := mobikePair(t, nil)
	n.apply(gw, gw.e.RekeyIKE(n.now, gw.e.Status(n.now)[0].ID))
	n.run(10*time.Second, nil)
	gs := gw.e.Status(n.now)
	if len(gs) != 1 || gw.e.store.byID[gs[0].ID].initiator != true || gs[0].Role != "responder" {
		t.Fatalf("after the gateway's rekey: %+v", gs)
	}
	// The gateway is now the RFC 7296 initiator of the IKE SA, but still the MOBIKE
	// responder: it may ask, and the client (the original initiator) obeys.
	_, acts, err := gw.e.Switch(n.now, SwitchSelector{All: true}, gwAddr2)
	if err != nil {
		t.Fatal(err)
	}
	n.apply(gw, acts)
	n.run(10*time.Second, nil)
	flowsAt(t, gw, cl, clientAddr, gwAddr2)
}

func TestSwitchEdgeCases(t *testing.T) {
	n, gw, cl := mobikePair(t, func(g, c *Config) {
		g.Connections[0].LocalAddrs = append(g.Connections[0].LocalAddrs, gw6)
		g.Connections[0].Announce.List = append(g.Connections[0].Announce.List, gw6)
	})
	gw.addrs = append(gw.addrs, gw6)
	cl6 := netip.MustParseAddr("2001:db8:1::10")
	cl.addrs = append(cl.addrs, cl6)
	n.apply(cl, cl.e.SetLocalAddrs(n.now, cl.addrs))
	n.run(time.Second, nil)
	// Already there: nothing to do, nothing sent.
	targets, acts, err := gw.e.Switch(n.now, SwitchSelector{All: true}, gwAddr)
	if err != nil || !targets[0].Already || len(acts) != 0 {
		t.Errorf("switch to the current address: %v %+v %d actions", err, targets, len(acts))
	}
	// Not our address.
	if _, _, err := gw.e.Switch(n.now, SwitchSelector{All: true}, netip.MustParseAddr("203.0.113.99")); err == nil {
		t.Error("switch to a foreign address accepted")
	}
	// Nothing selected.
	if _, _, err := gw.e.Switch(n.now, SwitchSelector{SA: 999}, gwAddr2); err == nil {
		t.Error("empty selection accepted")
	}
	// A second switch before the first went out supersedes it.
	_, a1, _ := gw.e.Switch(n.now, SwitchSelector{All: true}, gwAddr2)
	n.apply(gw, a1)
	_, a2, _ := gw.e.Switch(n.now, SwitchSelector{From: gwAddr}, gw6)
	n.apply(gw, a2)
	n.run(10*time.Second, nil)
	// IPv4 SA, IPv6 target: the client moves its end to IPv6 as well.
	flowsAt(t, gw, cl, cl6, gw6)
	if ev := gw.hasEvent(EventSwitched); ev == nil || ev.Reason != gw6.String() {
		t.Errorf("gateway events %v", gw.events)
	}
}

func TestSwitchBehindNAT(t *testing.T) {
	public := netip.MustParseAddr("198.51.100.77")
	n, gw, cl := mobikePair(t, nil)
	// Start over with the client behind an address-and-port-dependent NAT: a reply
	// from an address the client never sent to is dropped.
	n.inflight = nil
	gw.e = mustNew(t, gw.e.cfg)
	cl.e = mustNew(t, cl.e.cfg)
	gw.events, cl.events = nil, nil
	gw.inbound, gw.outbound = map[uint32]InstallInbound{}, map[uint64]InstallOutbound{}
	cl.inbound, cl.outbound = map[uint32]InstallInbound{}, map[uint64]InstallOutbound{}
	type flowKey struct{ in, out netip.AddrPort }
	mappings := map[flowKey]uint16{}
	next := uint16(30000)
	n.nat = func(d *datagram) {
		switch {
		case d.from.Addr() == clientAddr:
			k := flowKey{d.from, d.to}
			p, ok := mappings[k]
			if !ok {
				next++
				p = next
				mappings[k] = p
			}
			d.from = netip.AddrPortFrom(public, p)
		case d.to.Addr() == public:
			for k, p := range mappings {
				if p == d.to.Port() && k.out == d.from {
					d.to = k.in
					return
				}
			}
			d.to = netip.AddrPortFrom(public, 1) // filtered
		}
	}
	n.apply(cl, cl.e.StartAll(n.now))
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established behind the NAT")
	}
	_, acts, err := gw.e.Switch(n.now, SwitchSelector{All: true}, gwAddr2)
	if err != nil {
		t.Fatal(err)
	}
	n.apply(gw, acts)
	n.runChecked(10*time.Second, makeBeforeBreak(t, n, gw, cl))
	g, c := checkChildPair(t, gw, cl)
	if c.Remote.Addr() != gwAddr2 || g.Local.Addr() != gwAddr2 || g.Remote.Addr() != public {
		t.Errorf("after the switch behind NAT: client -> %v, gateway %v -> %v", c.Remote, g.Local, g.Remote)
	}
	if gw.hasEvent(EventSwitched) == nil {
		t.Error("switch not completed")
	}
}

func TestAutomaticFailover(t *testing.T) {
	// Two clients: one with R, one without.
	n, gw, cl := mobikePair(t, nil)
	cc := clientConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
	cc.Connections[0].LocalID = "bob@example.org"
	cc.Connections[0].RMobike = false
	bob := n.add("bob", clientAddr2, cc)
	n.apply(bob, bob.e.StartAll(n.now))
	if !n.run(time.Minute, established(bob)) {
		t.Fatal("bob not established")
	}
	// The gateway's address goes away.
	gw.addrs = []netip.Addr{gwAddr2}
	start := n.now
	n.apply(gw, gw.e.SetLocalAddrs(n.now, []netip.Addr{gwAddr2}))
	n.run(10*time.Second, nil)
	for _, c := range []*endpoint{cl, bob} {
		st := c.e.Status(n.now)
		if len(st) != 1 || st[0].Remote.Addr() != gwAddr2 {
			t.Errorf("%s did not follow the gateway: %+v", c.name, st)
		}
		for _, o := range c.outbound {
			if o.Remote.Addr() != gwAddr2 {
				t.Errorf("%s's flow goes to %v", c.name, o.Remote)
			}
		}
	}
	for _, o := range gw.outbound {
		if o.Local.Addr() != gwAddr2 {
			t.Errorf("gateway flow from %v", o.Local)
		}
	}
	if len(cl.moves) == 0 || len(bob.moves) == 0 {
		t.Error("no moves")
	}
	t.Logf("both clients moved within %v", n.now.Sub(start))
}
