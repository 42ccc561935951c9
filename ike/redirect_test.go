package ike

import (
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
