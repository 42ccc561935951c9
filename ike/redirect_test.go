package ike

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/wire"
)

// RFC 5685 6: a gateway redirects an established client to another gateway; the client
// builds a new IKE SA there, saying where it came from, and deletes the old one.
func TestRedirectEstablishedSA(t *testing.T) {
	n := newTestNet(t)
	a := n.add("gateway-a", gwAddr, gatewayConfig(t, stateIKE, stateESP))
	cl := n.add("client", clientAddr, clientConfig(t, stateIKE, stateESP))
	gb := gatewayConfig(t, stateIKE, stateESP)
	gb.Connections[0].LocalAddrs = []netip.Addr{gwAddr2}
	b := n.add("gateway-b", gwAddr2, gb)
	n.apply(cl, cl.e.StartAll(n.now))
	if !n.run(time.Minute, established(a, cl)) {
		t.Fatal("not established")
	}
	saA := onlySA(t, a)
	if !saA.peerRedirect || !a.e.CanRedirect(saA.id) {
		t.Fatal("the client did not say it follows redirects")
	}
	acts, err := a.e.Redirect(n.now, saA.id, gwAddr2)
	if err != nil {
		t.Fatal(err)
	}
	n.apply(a, acts)
	if !n.run(time.Minute, func() bool {
		return len(b.e.Status(n.now)) == 1 && b.hasEvent(EventEstablished) != nil && len(a.e.Status(n.now)) == 0 && len(cl.e.Status(n.now)) == 1
	}) {
		t.Fatalf("not redirected: A %d SAs, B %d, client %d; client events %v", len(a.e.Status(n.now)), len(b.e.Status(n.now)), len(cl.e.Status(n.now)), cl.events)
	}
	cs := cl.e.Status(n.now)[0]
	if cs.Remote.Addr() != gwAddr2 || cs.State != "established" {
		t.Errorf("the client's SA: %+v", cs)
	}
	// Its IKE_SA_INIT to B said where it was redirected from, not REDIRECT_SUPPORTED.
	found := false
	for _, d := range cl.sent {
		h, err := wire.ParseHeader(d.data)
		if err != nil || d.to.Addr() != gwAddr2 || h.Exchange != wire.IKE_SA_INIT || h.IsResponse() {
			continue
		}
		m, err := wire.ParseMessage(d.data)
		if err != nil {
			t.Fatal(err)
		}
		rf := wire.FindNotify(m.Payloads, wire.REDIRECTED_FROM)
		if rf == nil || wire.FindNotify(m.Payloads, wire.REDIRECT_SUPPORTED) != nil {
			t.Fatalf("IKE_SA_INIT to B: %v", m.Payloads)
		}
		if from, _, _, err := rf.Redirect(); err != nil || from != gwAddr {
			t.Errorf("REDIRECTED_FROM %v %v", from, err)
		}
		found = true
	}
	if !found {
		t.Error("no IKE_SA_INIT to B")
	}
	if a.hasEvent(EventDeleted) == nil {
		t.Error("A did not see its SA deleted by the client")
	}
}

func TestRedirectRefusals(t *testing.T) {
	n, gw, cl := pair(t, stateIKE, stateESP, nil)
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	sa, csa := onlySA(t, gw), onlySA(t, cl)
	if _, err := cl.e.Redirect(n.now, csa.id, gwAddr2); err == nil {
		t.Error("a client redirected its gateway")
	}
	if _, err := gw.e.Redirect(n.now, sa.id, netip.IPv4Unspecified()); err == nil {
		t.Error("redirected to 0.0.0.0")
	}
	if _, err := gw.e.Redirect(n.now, 999, gwAddr2); err == nil {
		t.Error("redirected an SA that does not exist")
	}
	sa.peerRedirect = false
	if _, err := gw.e.Redirect(n.now, sa.id, gwAddr2); err == nil || gw.e.CanRedirect(sa.id) {
		t.Error("redirected a peer that did not say it follows redirects")
	}
	// A client follows at most maxRedirects redirects of a connection in redirectWindow.
	before := len(cl.e.Status(n.now))
	for range maxRedirects + 2 {
		cl.e.followRedirect(n.now, csa, wire.NewRedirect(gwAddr2, nil))
	}
	cl.e.take()
	if got := len(cl.e.Status(n.now)) - before; got != maxRedirects {
		t.Errorf("%d redirects followed, at most %d", got, maxRedirects)
	}
	// A host name is not followed.
	cl.e.redirects = nil
	cl.e.followRedirect(n.now, csa, &wire.Notify{NotifyType: wire.REDIRECT, Data: append([]byte{3, 15}, "vpn.example.org"...)})
	if len(cl.e.Status(n.now)) != before+maxRedirects {
		t.Error("followed a redirect to a host name")
	}
}

// drainPair is a gateway A, a client of A, and a gateway B the client may be
// redirected to.
func drainPair(t *testing.T) (n *testNet, a, b, cl *endpoint) {
	n = newTestNet(t)
	a = n.add("gateway-a", gwAddr, gatewayConfig(t, stateIKE, stateESP))
	cl = n.add("client", clientAddr, clientConfig(t, stateIKE, stateESP))
	gb := gatewayConfig(t, stateIKE, stateESP)
	gb.Connections[0].LocalAddrs = []netip.Addr{gwAddr2}
	b = n.add("gateway-b", gwAddr2, gb)
	return n, a, b, cl
}

// sentInits returns the IKE_SA_INIT messages ep sent to addr (requests or responses).
func sentInits(t *testing.T, ep *endpoint, to netip.Addr, responses bool) []*wire.Message {
	var out []*wire.Message
	for _, d := range ep.sent {
		h, err := wire.ParseHeader(d.data)
		if err != nil || d.to.Addr() != to || h.Exchange != wire.IKE_SA_INIT || h.IsResponse() != responses {
			continue
		}
		m, err := wire.ParseMessage(d.data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// RFC 5685 4: a draining gateway answers IKE_SA_INIT with a REDIRECT carrying the
// client's nonce and keeps no state; the client starts again at the gateway named.
func TestRedirectInInit(t *testing.T) {
	n, a, b, cl := drainPair(t)
	a.e.Drain([]netip.Addr{netip.MustParseAddr("2001:db8::1"), gwAddr2})
	n.apply(cl, cl.e.StartAll(n.now))
	if !n.run(time.Minute, established(b, cl)) {
		t.Fatalf("not established at B; client events %v", cl.events)
	}
	if got := len(a.e.store.byID); got != 0 || a.hasEvent(EventEstablished) != nil {
		t.Errorf("the draining gateway has %d SAs", got)
	}
	if cs := cl.e.Status(n.now); len(cs) != 1 || cs[0].Remote.Addr() != gwAddr2 {
		t.Errorf("the client's SAs: %+v", cs)
	}
	reqs := sentInits(t, cl, gwAddr, false)
	resps := sentInits(t, a, clientAddr, true)
	if len(reqs) != 1 || len(resps) != 1 || len(resps[0].Payloads) != 1 || resps[0].Header.SPIr != 0 {
		t.Fatalf("%d requests to A, %d responses: %v", len(reqs), len(resps), resps)
	}
	r := wire.FindNotify(resps[0].Payloads, wire.REDIRECT)
	gw, _, nonce, err := r.Redirect()
	if err != nil || gw != gwAddr2 || !bytes.Equal(nonce, wire.Find[*wire.Nonce](reqs[0].Payloads).Data) {
		t.Errorf("REDIRECT to %v with nonce %x (%v)", gw, nonce, err)
	}
	toB := sentInits(t, cl, gwAddr2, false)
	if len(toB) == 0 {
		t.Fatal("no IKE_SA_INIT to B")
	}
	if rf := wire.FindNotify(toB[0].Payloads, wire.REDIRECTED_FROM); rf == nil {
		t.Error("the IKE_SA_INIT to B does not say where the client was redirected from")
	} else if from, _, _, _ := rf.Redirect(); from != gwAddr {
		t.Errorf("REDIRECTED_FROM %v", from)
	}
}

// A REDIRECT answering IKE_SA_INIT is believed only with the client's nonce in it: an
// off-path attacker sees neither.
func TestRedirectInInitForged(t *testing.T) {
	n, _, _, cl := drainPair(t)
	n.drop = func(d datagram) bool { return d.to.Addr() == gwAddr } // A never answers
	n.apply(cl, cl.e.StartAll(n.now))
	csa := onlySA(t, cl)
	forgeNotify := func(r *wire.Notify) {
		m := wire.Message{Header: wire.Header{SPIi: csa.spiI, Version: wire.Version, Exchange: wire.IKE_SA_INIT, Flags: wire.FlagResponse},
			Payloads: []wire.Payload{r}}
		n.driver(cl).HandleDatagram(n.now, Datagram{Local: netip.AddrPortFrom(clientAddr, 500), Remote: netip.AddrPortFrom(gwAddr, 500), Data: m.Append(nil)})
	}
	forge := func(nonce []byte) { forgeNotify(wire.NewRedirect(gwAddr2, nonce)) }
	before := cl.e.Drops().Map()["ike_unexpected"]
	forge(bytes.Repeat([]byte{1}, len(csa.ni)))
	forge(nil)
	forgeNotify(&wire.Notify{NotifyType: wire.REDIRECT, Data: []byte{1}}) // malformed
	if got := cl.e.Drops().Map()["ike_unexpected"] - before; got != 3 {
		t.Errorf("%d forged REDIRECTs counted, want 3", got)
	}
	if cs := cl.e.Status(n.now); len(cs) != 1 || cs[0].ID != csa.id || len(sentInits(t, cl, gwAddr2, false)) != 0 {
		t.Fatalf("a forged REDIRECT was followed: %+v", cs)
	}
	// With the nonce it is followed.
	forge(csa.ni)
	if cs := cl.e.Status(n.now); len(cs) != 1 || cs[0].ID == csa.id || cs[0].Remote.Addr() != gwAddr2 {
		t.Fatalf("the genuine REDIRECT was not followed: %+v", cs)
	}
}

// A draining gateway answers nothing to a peer that cannot be redirected: one that did
// not say it follows redirects, or one of a family it has no target of.
func TestDrainRefusesPeersThatCannotBeRedirected(t *testing.T) {
	n, a, _, cl := drainPair(t)
	a.e.Drain([]netip.Addr{gwAddr2})
	drive := n.driver(a)
	from := netip.AddrPortFrom(clientAddr, 500)
	to := netip.AddrPortFrom(gwAddr, 500)
	drive.HandleDatagram(n.now, Datagram{Local: to, Remote: from, Data: initRequest(t, 0x1111)})
	drive.HandleDatagram(n.now, Datagram{Local: to, Remote: from,
		Data: initRequest(t, 0x2222, &wire.Notify{NotifyType: wire.REDIRECT_SUPPORTED})})
	if got := a.e.Drops().Map()["ike_draining"]; got != 1 {
		t.Errorf("ike_draining %d, want 1", got)
	}
	if len(a.sent) != 1 || len(a.e.store.byID) != 0 {
		t.Fatalf("sent %d datagrams, %d SAs: want one REDIRECT and no state", len(a.sent), len(a.e.store.byID))
	}
	// No target of the client's family: not answered either.
	a.e.Drain([]netip.Addr{netip.MustParseAddr("2001:db8::1")})
	n.apply(cl, cl.e.StartAll(n.now))
	n.run(5*time.Second, nil)
	if got := a.e.Drops().Map()["ike_draining"]; got < 2 || len(a.sent) != 1 || len(a.e.store.byID) != 0 {
		t.Errorf("ike_draining %d, sent %d, SAs %d", got, len(a.sent), len(a.e.store.byID))
	}
}

// RFC 5685 5: a gateway that started draining after a client's IKE_SA_INIT redirects it
// in IKE_AUTH, authenticated and without a Child SA; the client deletes that SA and
// starts again at the gateway named.
func TestRedirectInAuth(t *testing.T) {
	n, a, b, cl := drainPair(t)
	n.apply(cl, cl.e.StartAll(n.now))
	if !n.run(time.Minute, func() bool { return len(a.e.store.byID) == 1 }) {
		t.Fatal("no IKE_SA_INIT at A")
	}
	a.e.Drain([]netip.Addr{gwAddr2})
	if !n.run(time.Minute, func() bool {
		return b.hasEvent(EventEstablished) != nil && cl.hasEvent(EventEstablished) != nil && len(a.e.store.byID) == 0
	}) {
		t.Fatalf("not redirected: A %d SAs, client events %v", len(a.e.Status(n.now)), cl.events)
	}
	if a.hasEvent(EventEstablished) != nil || len(a.outbound)+len(a.inbound) != 0 {
		t.Error("A established the SA it redirected, or installed a Child SA")
	}
	if cs := cl.e.Status(n.now); len(cs) != 1 || cs[0].Remote.Addr() != gwAddr2 || len(cl.inbound) != 1 {
		t.Errorf("the client's SAs: %+v, %d inbound Child SAs", cs, len(cl.inbound))
	}
	toB := sentInits(t, cl, gwAddr2, false)
	if len(toB) == 0 || wire.FindNotify(toB[0].Payloads, wire.REDIRECTED_FROM) == nil {
		t.Error("no IKE_SA_INIT to B saying where the client came from")
	}
}

// A gateway forgets an SA it redirected in IKE_AUTH when the peer never deletes it.
func TestRedirectInAuthForgotten(t *testing.T) {
	n, a, _, cl := drainPair(t)
	n.apply(cl, cl.e.StartAll(n.now))
	if !n.run(time.Minute, func() bool { return len(a.e.store.byID) == 1 }) {
		t.Fatal("no IKE_SA_INIT at A")
	}
	a.e.Drain([]netip.Addr{gwAddr2})
	// Nothing from the client reaches A after its IKE_AUTH request.
	authSeen := false
	n.drop = func(d datagram) bool {
		if d.to.Addr() != gwAddr {
			return false
		}
		h, err := wire.ParseHeader(d.data)
		if err == nil && h.Exchange == wire.IKE_AUTH && !authSeen {
			authSeen = true
			return false
		}
		return authSeen
	}
	if !n.run(time.Minute, func() bool { return authSeen && len(a.e.Status(n.now)) == 1 }) {
		t.Fatal("A did not answer IKE_AUTH")
	}
	sa := onlySA(t, a)
	if !sa.redirectedAway || a.e.CanRedirect(sa.id) {
		t.Fatal("the redirected SA is not marked")
	}
	if info, _ := a.e.SAInfo(sa.id); info.Established {
		t.Error("SAInfo offers the redirected SA for a move")
	}
	if !n.run(2*time.Minute, func() bool { return len(a.e.store.byID) == 0 }) {
		t.Error("A kept the SA the client never deleted")
	}
}
