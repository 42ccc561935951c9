package ike

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/mobike"
	"github.com/mobikevpn/mobikevpn/wire"
)

var (
	clientAddr2 = netip.MustParseAddr("192.0.2.20")
	gwAddr2     = netip.MustParseAddr("203.0.113.1")
)

// mobikePair is a gateway with two addresses and a client that may gain a second one.
func mobikePair(t *testing.T, mutate func(g, c *Config)) (*testNet, *endpoint, *endpoint) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		g.Connections[0].LocalAddrs = []netip.Addr{gwAddr, gwAddr2}
		g.Connections[0].Announce = mobike.Announce{Mode: mobike.Auto, List: []netip.Addr{gwAddr, gwAddr2}}
		c.Connections[0].SwitchAccept = mobike.SwitchPolicy{Additional: true}
		if mutate != nil {
			mutate(g, c)
		}
	})
	gw.addrs = append(gw.addrs, gwAddr2)
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatalf("not established: %v %v", cl.events, gw.events)
	}
	return n, gw, cl
}

// flowsAt asserts where each side's flow goes.
func flowsAt(t *testing.T, gw, cl *endpoint, clientAt, gwAt netip.Addr) {
	t.Helper()
	g, c := checkChildPair(t, gw, cl)
	if c.Local.Addr() != clientAt || c.Remote.Addr() != gwAt || g.Local.Addr() != gwAt || g.Remote.Addr() != clientAt {
		t.Errorf("flows: client %v -> %v, gateway %v -> %v; want %v <-> %v", c.Local, c.Remote, g.Local, g.Remote, clientAt, gwAt)
	}
	cs, gs := cl.e.Status(time.Time{})[0], gw.e.Status(time.Time{})[0]
	if cs.Local.Addr() != clientAt || cs.Remote.Addr() != gwAt || gs.Local.Addr() != gwAt || gs.Remote.Addr() != clientAt {
		t.Errorf("IKE SA: client %v -> %v, gateway %v -> %v", cs.Local, cs.Remote, gs.Local, gs.Remote)
	}
}

func TestAdditionalAddressesInIKEAuth(t *testing.T) {
	n, gw, cl := mobikePair(t, nil)
	cs := cl.e.Status(n.now)[0]
	if !slices.Equal(cs.PeerAdditional, []netip.Addr{gwAddr2}) {
		t.Errorf("client knows the gateway's additional addresses as %v", cs.PeerAdditional)
	}
	// The gateway loses its second address: it tells the client.
	n.apply(gw, gw.e.SetLocalAddrs(n.now, []netip.Addr{gwAddr}))
	n.run(10*time.Second, nil)
	if got := cl.e.Status(n.now)[0].PeerAdditional; len(got) != 0 {
		t.Errorf("after NO_ADDITIONAL_ADDRESSES the client still lists %v", got)
	}
	// And gets it back.
	n.apply(gw, gw.e.SetLocalAddrs(n.now, []netip.Addr{gwAddr, gwAddr2}))
	n.run(10*time.Second, nil)
	if got := cl.e.Status(n.now)[0].PeerAdditional; !slices.Equal(got, []netip.Addr{gwAddr2}) {
		t.Errorf("after the update the client lists %v", got)
	}
	flowsAt(t, gw, cl, clientAddr, gwAddr)
}

func TestMobikeAddressRemoval(t *testing.T) {
	n, gw, cl := mobikePair(t, nil)
	inv := makeBeforeBreak(t, n, gw, cl)
	// The client gets a second address, then loses the first.
	cl.addrs = []netip.Addr{clientAddr2}
	cl.src = clientAddr2
	start := n.now
	n.apply(cl, cl.e.SetLocalAddrs(n.now, []netip.Addr{clientAddr2}))
	n.runChecked(30*time.Second, inv)
	flowsAt(t, gw, cl, clientAddr2, gwAddr)
	if got := countExchanges(cl, wire.INFORMATIONAL, false); got < 1 {
		t.Errorf("no UPDATE_SA_ADDRESSES sent")
	}
	if n.now.Sub(start) > 2*time.Second && len(cl.moves) == 0 {
		t.Error("the client did not move its flow")
	}
	// The gateway checked the new address (return routability) before using it.
	rr := false
	for _, d := range gw.sent {
		if h, _ := wire.ParseHeader(d.data); h.Exchange == wire.INFORMATIONAL && !h.IsResponse() && d.to.Addr() == clientAddr2 {
			rr = true
		}
	}
	if !rr {
		t.Error("no return routability check towards the new address")
	}
	if ev := cl.hasEvent(EventMoved); ev == nil {
		t.Error("no moved event")
	}
	// No rekey: the same Child SA, re-pointed.
	if len(cl.inbound) != 1 || len(gw.inbound) != 1 {
		t.Errorf("Child SAs were replaced during the move")
	}
}

func TestMobikeRouteChange(t *testing.T) {
	n, gw, cl := mobikePair(t, nil)
	cl.addrs = append(cl.addrs, clientAddr2)
	n.apply(cl, cl.e.SetLocalAddrs(n.now, cl.addrs))
	n.run(5*time.Second, nil)
	flowsAt(t, gw, cl, clientAddr, gwAddr)
	// The routing table now prefers the second address.
	cl.src = clientAddr2
	n.apply(cl, cl.e.RoutesChanged(n.now))
	n.runChecked(10*time.Second, makeBeforeBreak(t, n, gw, cl))
	flowsAt(t, gw, cl, clientAddr2, gwAddr)
}

func TestMobikePathProbing(t *testing.T) {
	n, gw, cl := mobikePair(t, func(g, c *Config) {
		c.Connections[0].DPDDelay = 2 * time.Second
		c.Retransmit = Retransmit{Timeout: 500 * time.Millisecond, Tries: 5, Base: 1.5}
	})
	cl.addrs = append(cl.addrs, clientAddr2)
	n.apply(cl, cl.e.SetLocalAddrs(n.now, cl.addrs))
	n.run(time.Second, nil)
	// The path between the first addresses breaks silently; nothing tells the client.
	n.drop = func(d datagram) bool {
		return (d.from.Addr() == clientAddr && d.to.Addr() == gwAddr) || (d.from.Addr() == gwAddr && d.to.Addr() == clientAddr)
	}
	start := n.now
	n.run(20*time.Second, func() bool { return len(cl.moves) > 0 })
	n.run(5*time.Second, nil)
	g, c := checkChildPair(t, gw, cl)
	if c.Local == netip.AddrPortFrom(clientAddr, 4500) && c.Remote == netip.AddrPortFrom(gwAddr, 4500) {
		t.Fatalf("still on the broken path after %v", n.now.Sub(start))
	}
	if g.Remote.Addr() != c.Local.Addr() || c.Remote.Addr() != g.Local.Addr() {
		t.Errorf("the sides disagree: client %v -> %v, gateway %v -> %v", c.Local, c.Remote, g.Local, g.Remote)
	}
	t.Logf("moved to %v <-> %v %v after the path broke", c.Local.Addr(), c.Remote.Addr(), cl.moves[0].Local.Addr())
	if len(cl.e.store.byID) != 1 || len(gw.e.store.byID) != 1 {
		t.Error("the SA did not survive")
	}
}

func TestMobikeNATRebinding(t *testing.T) {
	public := netip.MustParseAddr("198.51.100.77")
	port := uint16(20000)
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		c.Connections[0].DPDDelay = 2 * time.Second
		g.Connections[0].Encap, c.Connections[0].Encap = false, false
	})
	n.inflight = nil
	cl.e = mustNew(t, cl.e.cfg)
	mapping := map[uint16]uint16{} // inside port -> public port
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
			d.to = netip.AddrPortFrom(public, 1) // no mapping: lost
		}
	}
	n.apply(cl, cl.e.StartAll(n.now))
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	n.run(5*time.Second, nil) // a first DPD (and, with nothing to compare with yet, an update) records the NAT mapping
	before := gw.e.Status(n.now)[0].Remote
	// The NAT forgets its mappings and hands out new ports.
	mapping = map[uint16]uint16{}
	n.run(10*time.Second, nil)
	after := gw.e.Status(n.now)[0].Remote
	if after == before || after.Addr() != public {
		t.Fatalf("gateway did not follow the rebinding: %v -> %v", before, after)
	}
	g, _ := checkChildPair(t, gw, cl)
	if g.Remote != after {
		t.Errorf("gateway's flow goes to %v, the client is at %v", g.Remote, after)
	}
}

func TestMobikeDisabledNoUpdate(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		c.Connections[0].Mobike = false
	})
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	if cl.e.Status(n.now)[0].Mobike || gw.e.Status(n.now)[0].Mobike {
		t.Error("MOBIKE negotiated although the client turned it off")
	}
	cl.addrs = []netip.Addr{clientAddr2}
	cl.src = clientAddr2
	n.apply(cl, cl.e.SetLocalAddrs(n.now, cl.addrs))
	n.run(5*time.Second, nil)
	if len(cl.moves) != 0 {
		t.Error("moved without MOBIKE")
	}
}

func TestCookie2MismatchClosesSA(t *testing.T) {
	n, gw, cl := mobikePair(t, nil)
	gsa := gw.e.store.byID[gw.e.Status(n.now)[0].ID]
	// Rewrite the gateway's answer to UPDATE_SA_ADDRESSES with another COOKIE2.
	tampered := false
	n.nat = func(d *datagram) {
		if d.from.Addr() != gwAddr && d.from.Addr() != gwAddr2 {
			return
		}
		m := decryptFor(t, *d, cl)
		if m == nil || !m.Header.IsResponse() {
			return
		}
		c2 := wire.FindNotify(m.Payloads, wire.COOKIE2)
		if c2 == nil {
			return
		}
		c2.Data = append([]byte(nil), c2.Data...)
		c2.Data[0] ^= 0xff
		data, err := gsa.seal(m.Header, m.Payloads)
		if err != nil {
			t.Fatal(err)
		}
		d.data = data
		tampered = true
	}
	cl.addrs = []netip.Addr{clientAddr2}
	cl.src = clientAddr2
	n.apply(cl, cl.e.SetLocalAddrs(n.now, cl.addrs))
	n.run(time.Minute, func() bool { return len(cl.e.store.byID) == 0 })
	if !tampered {
		t.Fatal("no UPDATE response seen")
	}
	if len(cl.e.store.byID) != 0 {
		t.Error("the client kept an SA whose UPDATE response had a wrong COOKIE2")
	}
	if ev := cl.hasEvent(EventDeleted); ev == nil || !strings.Contains(ev.Reason, "COOKIE2") {
		t.Errorf("client events %v", cl.events)
	}
}
