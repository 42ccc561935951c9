package ike

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/wire"
)

// makeBeforeBreak checks, after every step, that whatever either side sends is
// installed inbound at the other: no packet can go to an SA the peer does not have.
func makeBeforeBreak(t *testing.T, n *testNet, a, b *endpoint) func() {
	return func() {
		for _, pair := range [][2]*endpoint{{a, b}, {b, a}} {
			for _, out := range pair[0].outbound {
				in, ok := pair[1].inbound[out.SPI]
				if !ok {
					t.Fatalf("at %v %s sends on SPI %08x which %s has not installed inbound", n.now.Sub(t0), pair[0].name, out.SPI, pair[1].name)
				}
				if !bytes.Equal(in.Keys.Encr, out.Keys.Encr) {
					t.Fatalf("SPI %08x: keys differ between %s and %s", out.SPI, pair[0].name, pair[1].name)
				}
			}
		}
	}
}

// settle runs until nothing is in flight and no timer is due within d, checking inv.
func (n *testNet) runChecked(d time.Duration, inv func()) {
	limit := n.now.Add(d)
	for i := 0; i < 200000; i++ {
		if !n.step(limit) {
			return
		}
		inv()
	}
	n.t.Fatal("did not settle")
}

func countExchanges(ep *endpoint, ex wire.ExchangeType, response bool) int {
	c := 0
	for _, d := range ep.sent {
		if h, err := wire.ParseHeader(d.data); err == nil && h.Exchange == ex && h.IsResponse() == response {
			c++
		}
	}
	return c
}

// oneChildEach asserts the state after a rekey has settled: one flow, one inbound SA
// (lingering ones expired), one IKE SA each.
func oneChildEach(t *testing.T, n *testNet, gw, cl *endpoint) {
	t.Helper()
	checkChildPair(t, gw, cl)
	if len(gw.inbound) != 1 || len(cl.inbound) != 1 {
		t.Errorf("inbound SAs: gateway %d client %d, want 1 each after the old ones lingered out", len(gw.inbound), len(cl.inbound))
	}
	gs, cs := gw.e.Status(n.now), cl.e.Status(n.now)
	if len(gs) != 1 || len(cs) != 1 || len(gs[0].Children) != 1 || len(cs[0].Children) != 1 {
		t.Fatalf("status: gateway %+v client %+v", gs, cs)
	}
	if gs[0].SPIi != cs[0].SPIi || gs[0].SPIr != cs[0].SPIr {
		t.Errorf("IKE SPIs differ: gateway %s/%s client %s/%s", gs[0].SPIi, gs[0].SPIr, cs[0].SPIi, cs[0].SPIr)
	}
	if len(gw.e.store.spisIn) != 1 || len(cl.e.store.spisIn) != 1 {
		t.Errorf("SPI tables: gateway %d client %d", len(gw.e.store.spisIn), len(cl.e.store.spisIn))
	}
}

func TestChildRekeyMakeBeforeBreak(t *testing.T) {
	for _, tc := range []struct{ name, esp string }{
		{"no-pfs", "aes128gcm16"},
		{"pfs", "aes128gcm16-x25519"},
		{"cbc-pfs-modp", "aes256-sha256-modp2048"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", tc.esp, func(g, c *Config) {
				c.Connections[0].Children[0].RekeyTime = 20 * time.Second
			})
			if !n.run(time.Minute, established(gw, cl)) {
				t.Fatal("not established")
			}
			first, _ := checkChildPair(t, gw, cl)
			n.runChecked(70*time.Second, makeBeforeBreak(t, n, gw, cl))
			rekeys := countExchanges(cl, wire.CREATE_CHILD_SA, false)
			if rekeys < 3 {
				t.Fatalf("%d rekeys in 70 s with rekey_time 20s", rekeys)
			}
			g, c := checkChildPair(t, gw, cl)
			if g.SPI == first.SPI {
				t.Error("outbound SPI unchanged after rekeys")
			}
			if g.Policy != first.Policy {
				t.Errorf("policy changed across rekeys: %d -> %d", first.Policy, g.Policy)
			}
			if tc.esp != "aes128gcm16" && c.Suite.DH == 0 {
				t.Errorf("rekeyed without PFS: %v", c.Suite)
			}
			if len(gw.removedOut) != 0 || len(cl.removedOut) != 0 {
				t.Errorf("a flow was removed during rekeys")
			}
			// Let the replaced inbound SAs linger out.
			quiesce(n, nil)
			oneChildEach(t, n, gw, cl)
			if len(cl.removedIn) != rekeys || len(gw.removedIn) != rekeys {
				t.Errorf("removed inbound: client %d gateway %d, want %d each", len(cl.removedIn), len(gw.removedIn), rekeys)
			}
		})
	}
}

func TestChildRekeyInvalidKE(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16-ecp256", func(g, c *Config) {
		c.Connections[0].Children[0].ESPProposals = mustESP(t, "aes128gcm16-x25519-ecp256")
	})
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	var spi uint32
	for s := range cl.inbound {
		spi = s
	}
	n.apply(cl, cl.e.RekeyChild(n.now, spi))
	n.runChecked(20*time.Second, makeBeforeBreak(t, n, gw, cl))
	if got := countExchanges(cl, wire.CREATE_CHILD_SA, false); got != 2 {
		t.Errorf("%d CREATE_CHILD_SA requests, want 2 (x25519 refused, then ecp256)", got)
	}
	_, c := checkChildPair(t, gw, cl)
	if c.Suite.DH != wire.DH_ECP256 {
		t.Errorf("suite %v", c.Suite)
	}
	oneChildEach(t, n, gw, cl)
}

func TestChildRekeyByResponder(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		g.Connections[0].Children[0].RekeyTime = 15 * time.Second
	})
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	n.runChecked(50*time.Second, makeBeforeBreak(t, n, gw, cl))
	if countExchanges(gw, wire.CREATE_CHILD_SA, false) < 3 {
		t.Fatal("gateway did not rekey")
	}
	quiesce(n, makeBeforeBreak(t, n, gw, cl))
	oneChildEach(t, n, gw, cl)
}

func TestChildRekeyCollision(t *testing.T) {
	// Different seeds give different nonce orders: both outcomes are exercised.
	for seed := 0; seed < 6; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
				g.Rand = seededRand(byte(10 + seed))
				c.Rand = seededRand(byte(40 + seed))
				g.Connections[0].DPDDelay, c.Connections[0].DPDDelay = 0, 0
			})
			if !n.run(time.Minute, established(gw, cl)) {
				t.Fatal("not established")
			}
			g, c := checkChildPair(t, gw, cl)
			// Both start rekeying the same Child SA before either request arrives.
			n.apply(cl, cl.e.RekeyChild(n.now, c.In.SPI))
			n.apply(gw, gw.e.RekeyChild(n.now, g.In.SPI))
			if len(n.inflight) != 2 {
				t.Fatalf("%d requests in flight", len(n.inflight))
			}
			n.runChecked(30*time.Second, makeBeforeBreak(t, n, gw, cl))
			oneChildEach(t, n, gw, cl)
			ng, _ := checkChildPair(t, gw, cl)
			if ng.SPI == g.SPI {
				t.Error("the old SA survived the collision")
			}
			// Four Child SAs were created and three deleted: the old one and the
			// redundant new one, one Delete each way or two by one side.
			dels := countExchanges(gw, wire.INFORMATIONAL, false) + countExchanges(cl, wire.INFORMATIONAL, false)
			if dels != 2 {
				t.Errorf("%d Delete requests after the collision, want 2", dels)
			}
		})
	}
}

func TestIKERekey(t *testing.T) {
	for _, who := range []string{"client", "gateway"} {
		t.Run(who, func(t *testing.T) {
			n, gw, cl := pair(t, "aes256gcm16-prfsha384-ecp384", "aes128gcm16", func(g, c *Config) {
				if who == "client" {
					c.Connections[0].RekeyTime = 30 * time.Second
				} else {
					g.Connections[0].RekeyTime = 30 * time.Second
				}
				c.Connections[0].Children[0].RekeyTime = 25 * time.Second
			})
			if !n.run(time.Minute, established(gw, cl)) {
				t.Fatal("not established")
			}
			before := cl.e.Status(n.now)[0]
			n.runChecked(100*time.Second, makeBeforeBreak(t, n, gw, cl))
			quiesce(n, makeBeforeBreak(t, n, gw, cl))
			oneChildEach(t, n, gw, cl)
			after := cl.e.Status(n.now)[0]
			if after.SPIi == before.SPIi || after.ID == before.ID {
				t.Errorf("IKE SA not rekeyed: %s -> %s", before.SPIi, after.SPIi)
			}
			// The MOBIKE roles survive; the RFC 7296 role is the rekey's.
			gs := gw.e.Status(n.now)[0]
			if after.Role != "initiator" || gs.Role != "responder" || !after.Mobike || !gs.RMobike {
				t.Errorf("roles after rekey: client %s gateway %s", after.Role, gs.Role)
			}
			if after.Proposal != "aes256gcm16-prfsha384-ecp384" || len(after.VirtualIPs) != 1 {
				t.Errorf("after rekey: %+v", after)
			}
			if len(cl.keylogs) < 3 {
				t.Errorf("%d key log entries: rekeyed IKE SAs are not logged", len(cl.keylogs))
			}
			// The new SA still works: a liveness check is answered, a Delete removes all.
			n.apply(cl, cl.e.DeleteAll(n.now))
			n.run(time.Minute, func() bool { return len(gw.e.store.byID) == 0 && len(cl.e.store.byID) == 0 })
			if len(gw.e.store.byID) != 0 || len(cl.e.store.byID) != 0 || len(gw.outbound) != 0 || len(cl.inbound) != 0 {
				t.Errorf("Delete on the rekeyed SA left state: %d/%d SAs", len(gw.e.store.byID), len(cl.e.store.byID))
			}
			for _, p := range gw.e.pools {
				if len(p.inUse) != 0 {
					t.Error("virtual IP not released after rekey and delete")
				}
			}
		})
	}
}

func TestIKERekeyCollision(t *testing.T) {
	for seed := 0; seed < 6; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
				g.Rand = seededRand(byte(70 + seed))
				c.Rand = seededRand(byte(90 + seed))
			})
			if !n.run(time.Minute, established(gw, cl)) {
				t.Fatal("not established")
			}
			n.apply(cl, cl.e.RekeyIKE(n.now, cl.e.Status(n.now)[0].ID))
			n.apply(gw, gw.e.RekeyIKE(n.now, gw.e.Status(n.now)[0].ID))
			n.runChecked(40*time.Second, makeBeforeBreak(t, n, gw, cl))
			oneChildEach(t, n, gw, cl)
			if len(gw.e.store.byID) != 1 || len(cl.e.store.byID) != 1 {
				t.Fatalf("IKE SAs after collision: gateway %d client %d", len(gw.e.store.byID), len(cl.e.store.byID))
			}
		})
	}
}

func TestAdditionalChildSA(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		g.Connections[0].Children = append(g.Connections[0].Children, &ChildConfig{
			Name: "mgmt", LocalTS: []TSConfig{prefixTS("198.18.50.0/24")}, RemoteTS: []TSConfig{dynamicTS},
			ESPProposals: mustESP(t, "chacha20poly1305-x25519"),
		})
		c.Connections[0].Children = append(c.Connections[0].Children, &ChildConfig{
			Name: "mgmt", LocalTS: []TSConfig{dynamicTS}, RemoteTS: []TSConfig{prefixTS("198.18.50.0/24")},
			ESPProposals: mustESP(t, "chacha20poly1305-x25519"),
		})
	})
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	n.run(10*time.Second, nil)
	if len(gw.outbound) != 2 || len(cl.outbound) != 2 {
		t.Fatalf("flows: gateway %d client %d, want 2", len(gw.outbound), len(cl.outbound))
	}
	var mgmt InstallOutbound
	for _, o := range cl.outbound {
		if o.Name == "mgmt" {
			mgmt = o
		}
	}
	if mgmt.Suite.String() != "chacha20poly1305-x25519" || tsStrings(mgmt.RemoteTS)[0] != "198.18.50.0/24" || tsStrings(mgmt.LocalTS)[0] != "198.18.100.1/32" {
		t.Errorf("second Child SA: %+v", mgmt)
	}
	makeBeforeBreak(t, n, gw, cl)()
}

func TestRekeyUnderLoss(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16-x25519", func(g, c *Config) {
		c.Connections[0].Children[0].RekeyTime = 10 * time.Second
		c.Connections[0].RekeyTime = 45 * time.Second
		g.Connections[0].Children[0].RekeyTime = 12 * time.Second
		g.Retransmit = Retransmit{Timeout: time.Second, Tries: 8, Base: 1.5}
		c.Retransmit = Retransmit{Timeout: time.Second, Tries: 8, Base: 1.5}
	})
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	n.drop = func(datagram) bool { return n.rng.Float64() < 0.2 }
	n.reorder = true
	n.runChecked(5*time.Minute, makeBeforeBreak(t, n, gw, cl))
	n.drop = nil
	n.reorder = false
	quiesce(n, makeBeforeBreak(t, n, gw, cl))
	oneChildEach(t, n, gw, cl)
	if countExchanges(cl, wire.CREATE_CHILD_SA, false) < 10 {
		t.Error("too few rekeys")
	}
}

// quiesce stops every rekey timer and lets the network settle, so that the state
// after rekeys can be compared (replaced inbound SAs linger out).
func quiesce(n *testNet, inv func()) {
	for _, ep := range n.eps {
		for _, sa := range ep.e.store.byID {
			sa.rekeyAt = time.Time{}
			for _, c := range sa.children {
				c.rekeyAt = time.Time{}
			}
		}
		for _, c := range ep.e.cfg.Connections {
			c.RekeyTime = 0
			for _, ch := range c.Children {
				ch.RekeyTime = 0
			}
		}
	}
	if inv == nil {
		inv = func() {}
	}
	n.runChecked(time.Minute, inv)
}

// deliverAt hands in-flight datagram i to its endpoint.
func (n *testNet) deliverAt(i int) {
	d := n.inflight[i]
	n.inflight = append(n.inflight[:i], n.inflight[i+1:]...)
	if ep := n.endpointFor(d.to.Addr()); ep != nil {
		n.apply(ep, ep.e.HandleDatagram(n.now, d.to, d.from, d.data))
	}
}

// A collision in which the winner's Delete of the old Child SA overtakes the response
// to the loser's rekey (as strongSwan's can): the loser must still close its redundant
// SA (RFC 7296 2.8.1), not keep it as a second live one.
func TestChildRekeyCollisionDeleteFirst(t *testing.T) {
	for seed := 0; seed < 12; seed++ {
		n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
			g.Rand = seededRand(byte(110 + seed))
			c.Rand = seededRand(byte(130 + seed))
			g.Connections[0].DPDDelay, c.Connections[0].DPDDelay = 0, 0
		})
		if !n.run(time.Minute, established(gw, cl)) {
			t.Fatal("not established")
		}
		inv := makeBeforeBreak(t, n, gw, cl)
		g, c := checkChildPair(t, gw, cl)
		n.apply(cl, cl.e.RekeyChild(n.now, c.In.SPI))
		n.apply(gw, gw.e.RekeyChild(n.now, g.In.SPI))
		n.deliverAt(1) // gateway's request -> client answers
		inv()
		n.deliverAt(0) // client's request -> gateway answers
		inv()
		n.deliverAt(0) // client's answer -> the gateway completes its rekey
		inv()
		// The gateway's Delete (of the old SA if it won, of its new one if it lost)
		// overtakes its answer to the client.
		n.deliverAt(len(n.inflight) - 1)
		inv()
		n.runChecked(30*time.Second, inv)
		quiesce(n, inv)
		oneChildEach(t, n, gw, cl)
		if t.Failed() {
			t.Fatalf("seed %d", seed)
		}
	}
}
