package ike

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/wire"
)

// Issue 11: limits on what one authenticated peer can make us hold.

// addChildren has the client ask for k more Child SAs of its first configuration, one
// exchange after the other.
func addChildren(n *testNet, cl *endpoint, k int) {
	n.t.Helper()
	csa := onlySA(n.t, cl)
	cfg := csa.conn.Children[0]
	for range k {
		n.apply(cl, func() []Action { cl.e.createChild(n.now, csa, cfg, 0, nil); return cl.e.take() }())
		n.flush()
	}
}

// Finding 1: one client created 3000 Child SAs on one IKE SA. Beyond max_children
// (default 32) a CREATE_CHILD_SA for a new one is answered NO_ADDITIONAL_SAS, and the IKE
// SA lives on.
func TestMaxChildrenNoAdditionalSAs(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", nil)
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	const limit = 32 // the default
	addChildren(n, cl, limit-1)
	if got := len(onlySA(t, gw).children); got != limit {
		t.Fatalf("gateway has %d Child SAs, want %d", got, limit)
	}
	refusals := func() int {
		return len(messagesTo(t, gw, cl, netip.AddrPort{}, hasNotify(wire.NO_ADDITIONAL_SAS)))
	}
	if refusals() != 0 {
		t.Fatal("NO_ADDITIONAL_SAS below the limit")
	}
	addChildren(n, cl, 1)
	if got := refusals(); got != 1 {
		t.Fatalf("%d NO_ADDITIONAL_SAS responses for Child SA %d, want 1", got, limit+1)
	}
	if got, cgot := len(onlySA(t, gw).children), len(onlySA(t, cl).children); got != limit || cgot != limit {
		t.Fatalf("Child SAs: gateway %d, client %d; want %d each", got, cgot, limit)
	}
	if len(gw.inbound) != limit || len(gw.outbound) != limit {
		t.Errorf("gateway datapath: %d inbound, %d outbound SAs; want %d", len(gw.inbound), len(gw.outbound), limit)
	}
	// The IKE SA survives: established at both ends, liveness checks answered.
	n.run(2*time.Minute, nil)
	if !gw.e.Established(onlySA(t, gw).id) || !cl.e.Established(onlySA(t, cl).id) {
		t.Fatal("the IKE SA did not survive the refusal")
	}
	if ev := cl.hasEvent(EventDeleted); ev != nil {
		t.Fatalf("client saw its SA deleted: %v", ev)
	}
	// Once one goes, there is room for one more.
	csa := onlySA(t, cl)
	n.apply(cl, func() []Action { cl.e.deleteChild(n.now, csa, csa.children[5]); return cl.e.take() }())
	n.flush()
	addChildren(n, cl, 1)
	if got := len(onlySA(t, gw).children); got != limit || refusals() != 1 {
		t.Errorf("after a delete and a new request: %d Child SAs, %d refusals", got, refusals())
	}
}

// Rekeying replaces a Child SA: it must work at the limit, from either end.
func TestMaxChildrenRekeyAtLimit(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		g.Connections[0].DPDDelay, c.Connections[0].DPDDelay = 0, 0
	})
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	const limit = 32
	addChildren(n, cl, limit-1)
	for i, who := range []*endpoint{cl, gw, cl} {
		sa := onlySA(t, who)
		c := sa.children[i]
		old := c.spiIn
		n.apply(who, who.e.RekeyChild(n.now, old))
		n.runChecked(20*time.Second, func() {})
		if sa.childBySPIIn(old) != nil {
			t.Fatalf("rekey %d by %s at the limit: the old Child SA is still there", i, who.name)
		}
		if got, cgot := len(onlySA(t, gw).children), len(onlySA(t, cl).children); got != limit || cgot != limit {
			t.Fatalf("after rekey %d by %s: gateway %d, client %d Child SAs; want %d", i, who.name, got, cgot, limit)
		}
	}
	if got := len(messagesTo(t, gw, cl, netip.AddrPort{}, hasNotify(wire.NO_ADDITIONAL_SAS))) +
		len(messagesTo(t, cl, gw, netip.AddrPort{}, hasNotify(wire.NO_ADDITIONAL_SAS))); got != 0 {
		t.Errorf("%d rekeys refused with NO_ADDITIONAL_SAS", got)
	}
	if got := countExchanges(cl, wire.CREATE_CHILD_SA, false) + countExchanges(gw, wire.CREATE_CHILD_SA, false); got != limit-1+3 {
		t.Errorf("%d CREATE_CHILD_SA requests, want %d", got, limit-1+3)
	}
}

// A configured max_children applies, and only to the IKE SAs of that connection.
func TestMaxChildrenConfigured(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		g.Connections[0].MaxChildren = 3
	})
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	addChildren(n, cl, 5)
	if got := len(onlySA(t, gw).children); got != 3 {
		t.Errorf("gateway has %d Child SAs with max_children 3", got)
	}
	if got := len(messagesTo(t, gw, cl, netip.AddrPort{}, hasNotify(wire.NO_ADDITIONAL_SAS))); got != 3 {
		t.Errorf("%d NO_ADDITIONAL_SAS, want 3", got)
	}
}

// A peer that rekeys without ever deleting the old Child SA cannot pile them up
// either: the rekeyed ones count against twice the limit.
func TestRekeyWithoutDeleteBounded(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		g.Connections[0].MaxChildren = 4
		g.Connections[0].DPDDelay, c.Connections[0].DPDDelay = 0, 0
	})
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	// The client's Deletes of the replaced SAs arrive as empty INFORMATIONALs: the
	// client believes them deleted, the gateway never hears of it.
	n.nat = func(d *datagram) {
		if d.from.Addr() != clientAddr {
			return
		}
		reseal(t, d, cl, gw, func(m *wire.Message) bool {
			if m.Header.Exchange != wire.INFORMATIONAL || m.Header.IsResponse() || wire.Find[*wire.Delete](m.Payloads) == nil {
				return false
			}
			m.Payloads = nil
			return true
		})
	}
	csa := onlySA(t, cl)
	for range 20 {
		n.apply(cl, cl.e.RekeyChild(n.now, csa.children[0].spiIn))
		n.run(20*time.Second, nil)
	}
	if got := len(onlySA(t, gw).children); got > 2*4 {
		t.Errorf("gateway holds %d Child SAs of a peer that never deletes, max_children 4", got)
	}
}

// The leases remembered by identity (so that a returning client gets its address back)
// grew by one for every identity that ever connected.
func TestPoolLeasesBounded(t *testing.T) {
	n := newTestNet(t)
	gc := gatewayConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
	gw := n.add("gateway", gwAddr, gc)
	const clients = 300 // more than the 254 addresses of the /24
	var first netip.Addr
	for i := range clients {
		cc := clientConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
		cc.Connections[0].LocalID = fmt.Sprintf("user%d@example.org", i)
		cc.Connections[0].DPDDelay = 0
		cl := n.add("client", clientAddr, cc)
		n.eps = []*endpoint{gw, cl}
		n.apply(cl, cl.e.StartAll(n.now))
		if !n.run(time.Minute, established(cl)) {
			t.Fatalf("client %d not established", i)
		}
		if i == clients-1 && len(cl.vips) == 1 {
			first = cl.vips[0]
		}
		n.apply(cl, cl.e.DeleteAll(n.now))
		n.run(time.Minute, func() bool { return len(gw.e.store.byID) == 0 })
	}
	pl := gw.e.pools["rw"]
	if len(pl.inUse) != 0 {
		t.Errorf("%d addresses still in use", len(pl.inUse))
	}
	if len(pl.byID) > 254 {
		t.Errorf("%d leases remembered for a pool of 254 addresses", len(pl.byID))
	}
	// The last client still gets its address back.
	cc := clientConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
	cc.Connections[0].LocalID = fmt.Sprintf("user%d@example.org", clients-1)
	cl := n.add("client", clientAddr, cc)
	n.eps = []*endpoint{gw, cl}
	n.apply(cl, cl.e.StartAll(n.now))
	if !n.run(time.Minute, established(cl)) {
		t.Fatal("returning client not established")
	}
	if len(cl.vips) != 1 || cl.vips[0] != first {
		t.Errorf("returning client got %v, had %v", cl.vips, first)
	}
}

// In a large pool the remembered leases of released addresses are capped too, oldest
// forgotten first; addresses in use and recent leases are kept.
func TestPoolLeaseMemoryCapped(t *testing.T) {
	for _, pfx := range []string{"198.18.0.0/15", "2001:db8:100::/64"} {
		t.Run(pfx, func(t *testing.T) {
			pl, err := newPool(&PoolConfig{Name: "big", Addrs: []netip.Prefix{netip.MustParsePrefix(pfx)}})
			if err != nil {
				t.Fatal(err)
			}
			is4 := netip.MustParsePrefix(pfx).Addr().Is4()
			held, _ := pl.allocate("holder", is4, netip.Addr{})
			var last netip.Addr
			const ids = 3 * maxRememberedLeases
			for i := range ids {
				a, ok := pl.allocate(fmt.Sprintf("id%d", i), is4, netip.Addr{})
				if !ok {
					t.Fatalf("allocation %d failed", i)
				}
				pl.release(a)
				last = a
			}
			if got := len(pl.byID); got > maxRememberedLeases+1 {
				t.Errorf("%d leases remembered after %d identities came and went (cap %d)", got, ids, maxRememberedLeases)
			}
			if a, _ := pl.allocate(fmt.Sprintf("id%d", ids-1), is4, netip.Addr{}); a != last {
				t.Errorf("the most recent identity got %v, had %v", a, last)
			}
			if a, _ := pl.allocate("holder", is4, netip.Addr{}); a == held {
				t.Errorf("an address in use was handed out twice: %v", a)
			}
		})
	}
}

// Finding 2: ESP sequence numbers and volume limits. The datapath reports crossed
// limits through ChildVolume; the soft one starts a rekey, the hard one replaces the
// Child SA for good.

func TestChildVolumeLimitsInstalled(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		ch := c.Connections[0].Children[0]
		ch.RekeyBytes, ch.LifeBytes = 10000, 11000
		ch.RekeyPackets, ch.LifePackets = 100, 0
	})
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	g, c := checkChildPair(t, gw, cl)
	if g.Limits != (ChildLimits{}) || g.In.Limits != (ChildLimits{}) {
		t.Errorf("gateway without volume limits installed %+v / %+v", g.Limits, g.In.Limits)
	}
	l := c.Limits
	if c.In.Limits != l {
		t.Errorf("the two directions of one Child SA have different limits: %+v, %+v", c.In.Limits, l)
	}
	// The soft limits are jittered by up to 10% downwards, as rekey_time is.
	if l.HardBytes != 11000 || l.HardPackets != 0 || l.SoftBytes > 10000 || l.SoftBytes <= 9000 || l.SoftPackets > 100 || l.SoftPackets <= 90 {
		t.Errorf("client limits %+v", l)
	}
}

func TestChildVolumeSoftLimitRekeys(t *testing.T) {
	for _, dir := range []string{"inbound at the client", "outbound at the gateway"} {
		t.Run(dir, func(t *testing.T) {
			n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
				g.Connections[0].DPDDelay, c.Connections[0].DPDDelay = 0, 0
			})
			if !n.run(time.Minute, established(gw, cl)) {
				t.Fatal("not established")
			}
			g, c := checkChildPair(t, gw, cl)
			who, v := cl, VolumeLimit{Inbound: true, SPI: c.In.SPI}
			if dir != "inbound at the client" {
				who, v = gw, VolumeLimit{Policy: g.Policy, SPI: g.SPI}
			}
			n.apply(who, who.e.ChildVolume(n.now, v))
			if countExchanges(who, wire.CREATE_CHILD_SA, false) != 1 {
				t.Fatal("no rekey started at the soft limit")
			}
			n.runChecked(time.Minute, makeBeforeBreak(t, n, gw, cl))
			ng, nc := checkChildPair(t, gw, cl)
			if ng.SPI == g.SPI || nc.SPI == c.SPI || ng.Policy != g.Policy {
				t.Errorf("not rekeyed: gateway %08x -> %08x, client %08x -> %08x", g.SPI, ng.SPI, c.SPI, nc.SPI)
			}
			if len(gw.removedOut) != 0 || len(cl.removedOut) != 0 {
				t.Error("a flow was removed")
			}
			oneChildEach(t, n, gw, cl)
			// A late report about the replaced SA changes nothing.
			n.apply(who, who.e.ChildVolume(n.now, v))
			n.apply(who, who.e.ChildVolume(n.now, VolumeLimit{Inbound: v.Inbound, SPI: v.SPI, Policy: v.Policy, Hard: true}))
			n.flush()
			if got := countExchanges(who, wire.CREATE_CHILD_SA, false) + countExchanges(who, wire.INFORMATIONAL, false); got != 2 {
				t.Errorf("%d requests after a stale report, want the rekey and its Delete only", got)
			}
		})
	}
}

func TestChildVolumeHardLimitReplaces(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		g.Connections[0].DPDDelay, c.Connections[0].DPDDelay = 0, 0
	})
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	g, c := checkChildPair(t, gw, cl)
	n.apply(cl, cl.e.ChildVolume(n.now, VolumeLimit{Policy: c.Policy, SPI: c.SPI, Hard: true}))
	n.runChecked(time.Minute, makeBeforeBreak(t, n, gw, cl))
	ng, nc := checkChildPair(t, gw, cl)
	if ng.SPI == g.SPI || nc.SPI == c.SPI {
		t.Fatal("the Child SA past its hard limit is still there")
	}
	oneChildEach(t, n, gw, cl)
	if _, ok := gw.inbound[c.SPI]; ok {
		t.Error("the gateway still accepts the old SA")
	}
}

// When the peer refuses to rekey a Child SA past its hard limit, it is deleted all the
// same and a new one is created in its place.
func TestChildVolumeHardLimitRekeyRefused(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		g.Connections[0].DPDDelay, c.Connections[0].DPDDelay = 0, 0
	})
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	g, c := checkChildPair(t, gw, cl)
	// The gateway now insists on another algorithm for this Child SA only: it refuses
	// the rekey, not a new Child SA.
	gsa := onlySA(t, gw)
	cc := *gsa.children[0].cfg
	cc.ESPProposals = mustESP(t, "chacha20poly1305")
	gsa.children[0].cfg = &cc
	n.apply(cl, cl.e.ChildVolume(n.now, VolumeLimit{Inbound: true, SPI: c.In.SPI, Hard: true}))
	// (not make-before-break: the responder of a new Child SA sends on it at once)
	n.run(time.Minute, nil)
	refused := len(messagesTo(t, gw, cl, netip.AddrPort{}, hasNotify(wire.NO_PROPOSAL_CHOSEN)))
	if refused != 1 {
		t.Fatalf("%d rekeys refused", refused)
	}
	if _, ok := cl.inbound[c.In.SPI]; ok {
		t.Error("the client kept the Child SA past its hard limit")
	}
	if _, ok := gw.inbound[c.SPI]; ok {
		t.Error("the gateway kept the Child SA past its hard limit")
	}
	ng, nc := checkChildPair(t, gw, cl)
	if ng.SPI == g.SPI || nc.SPI == c.SPI {
		t.Error("no new Child SA")
	}
	if len(onlySA(t, gw).children) != 1 || len(onlySA(t, cl).children) != 1 {
		t.Errorf("Child SAs: gateway %d, client %d", len(onlySA(t, gw).children), len(onlySA(t, cl).children))
	}
}
