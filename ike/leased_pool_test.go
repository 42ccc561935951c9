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
	vip3 = netip.MustParseAddr("198.18.100.3")
	vip4 = netip.MustParseAddr("198.18.100.4")
)

// A leased pool hands out only what was granted to it; a released address stays
// granted, a dropped one does not.
func TestLeasedPool(t *testing.T) {
	p, err := newPool(&PoolConfig{Name: "rw", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.100.0/29")}, Leased: true})
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := p.allocate("alice", true, netip.Addr{}); ok {
		t.Fatalf("handed out %s, nothing granted", a)
	}
	p.grant([]netip.Addr{vip4, vip3, netip.MustParseAddr("198.18.100.0"), netip.MustParseAddr("198.18.100.7"), netip.MustParseAddr("192.0.2.1")})
	if len(p.spare) != 2 {
		t.Fatalf("spare %v: the network and broadcast addresses and one outside the pool were granted", p.spare)
	}
	if a, _ := p.allocate("alice", true, netip.Addr{}); a != vip3 {
		t.Errorf("alice got %s, want the lowest, %s", a, vip3)
	}
	if a, _ := p.allocate("bob", true, vip4); a != vip4 {
		t.Errorf("bob got %s, asked for %s", a, vip4)
	}
	if a, ok := p.allocate("carol", true, netip.Addr{}); ok {
		t.Errorf("carol got %s: none spare", a)
	}
	p.release(vip3)
	if a, _ := p.allocate("alice", true, netip.Addr{}); a != vip3 {
		t.Errorf("alice got %s back, want %s", a, vip3)
	}
	p.drop(vip4) // bob's SA moved to another node
	if a, ok := p.allocate("bob", true, vip4); ok || p.inUse[vip4] {
		t.Errorf("bob got %s here after his address left with his SA", a)
	}
	p.release(vip3)
	if back := p.takeBack(true, 5); !slices.Equal(back, []netip.Addr{vip3}) || len(p.spare) != 0 {
		t.Errorf("taken back %v, spare left %v", back, p.spare)
	}
}

// An SA moved between two nodes with leased pools keeps its virtual IP; the node it
// left does not hand that address out again.
func TestLeasedPoolHandoff(t *testing.T) {
	n := newTestNet(t)
	leased := func(own netip.Addr) Config {
		cfg := nodeConfig(t, own)
		cfg.Pools[0].Leased = true
		return cfg
	}
	a := n.add("node-a", gwAddr, leased(gwAddr))
	cc := clientConfig(t, stateIKE, stateESP)
	cc.Connections[0].SwitchAccept = mobike.SwitchPolicy{Additional: true}
	cl := n.add("client", clientAddr, cc)
	b := n.add("node-b", gwAddr2, leased(gwAddr2))
	if err := a.e.GrantVIPs("rw", []netip.Addr{vip3}); err != nil {
		t.Fatal(err)
	}
	if err := b.e.GrantVIPs("rw", []netip.Addr{vip4}); err != nil {
		t.Fatal(err)
	}
	n.apply(a, a.e.SetClusterAddrs(n.now, []netip.Addr{gwAddr2}))
	n.apply(cl, cl.e.StartAll(n.now))
	if !n.run(time.Minute, established(a, cl)) || !slices.Equal(cl.vips, []netip.Addr{vip3}) {
		t.Fatalf("not established with a granted address: %v", cl.vips)
	}
	saA := onlySA(t, a)
	_, sends := handOver(t, n, a, b, saA.id)
	n.apply(a, sends)
	if !n.run(time.Minute, func() bool { return b.hasEvent(EventSwitched) != nil }) {
		t.Fatal("the client did not move to B")
	}
	forget, err := a.e.Forget(n.now, saA.id)
	if err != nil {
		t.Fatal(err)
	}
	n.apply(a, forget)
	if v4, _ := a.e.SpareVIPs("rw"); v4 != 0 {
		t.Errorf("A has %d spare addresses after the SA left with its own", v4)
	}
	if v4, _ := b.e.SpareVIPs("rw"); v4 != 1 || !b.e.pools["rw"].inUse[vip3] {
		t.Errorf("B: %d spare, %s in use %v", v4, vip3, b.e.pools["rw"].inUse[vip3])
	}
	if !slices.Equal(cl.vips, []netip.Addr{vip3}) {
		t.Errorf("the client's virtual IPs after the move: %v", cl.vips)
	}
	if err := a.e.GrantVIPs("nope", nil); err == nil {
		t.Error("granted to a pool that does not exist")
	}
}

// A peer asking for a virtual IP when a leased pool has none spare: its IKE_AUTH is
// not answered (counted, EventVIPWanted, WantedVIPs) until addresses are granted, and
// its retransmission then finds one. Once the caller says the pool is dry, a peer is
// refused at once (INTERNAL_ADDRESS_FAILURE) instead.
func TestLeasedPoolWait(t *testing.T) {
	n := newTestNet(t)
	cfg := nodeConfig(t, gwAddr)
	cfg.Pools[0].Leased = true
	a := n.add("node-a", gwAddr, cfg)
	cl := n.add("client", clientAddr, clientConfig(t, stateIKE, stateESP))
	n.apply(cl, cl.e.StartAll(n.now))
	if !n.run(2*time.Second, func() bool { return a.hasEvent(EventVIPWanted) != nil }) {
		t.Fatalf("no EventVIPWanted: %v", a.events)
	}
	if v4 := a.e.WantedVIPs("rw", true); v4 != 1 || a.e.Drops().Map()["ike_vip_wait"] != 1 {
		t.Fatalf("wanted %d, ike_vip_wait %d", v4, a.e.Drops().Map()["ike_vip_wait"])
	}
	if v4, v6 := a.e.WantedVIPs("rw", true), a.e.WantedVIPs("rw", false); v4 != 0 || v6 != 0 {
		t.Fatalf("wanted %d, %d after they were taken", v4, v6)
	}
	if countExchanges(a, wire.IKE_AUTH, true) != 0 {
		t.Fatal("the IKE_AUTH that waits was answered")
	}
	if err := a.e.GrantVIPs("rw", []netip.Addr{vip3}); err != nil {
		t.Fatal(err)
	}
	if !n.run(time.Minute, established(a, cl)) || !slices.Equal(cl.vips, []netip.Addr{vip3}) {
		t.Fatalf("not established with the granted address after the retransmission: %v %v", cl.vips, cl.events)
	}
	// A second client, with the pool dry: refused at once.
	a.e.PoolDry("rw", true, true)
	cc := clientConfig(t, stateIKE, stateESP)
	cc.Connections[0].LocalID = "bob@example.org"
	bob := n.add("bob", netip.MustParseAddr("192.0.2.11"), cc)
	n.apply(bob, bob.e.StartAll(n.now))
	if !n.run(2*time.Second, func() bool { return bob.hasEvent(EventChildFailed) != nil }) ||
		!strings.Contains(bob.hasEvent(EventChildFailed).Reason, "INTERNAL_ADDRESS_FAILURE") {
		t.Fatalf("bob was not refused a virtual IP at once: %v", bob.events)
	}
	if got := a.e.Drops().Map()["ike_vip_wait"]; got != 1 {
		t.Errorf("ike_vip_wait %d after the dry pool's refusal", got)
	}
}

// An address another gateway took (it took over the SA that has it) is no longer spare
// here; one in use here is reported (handed out twice).
func TestRevokeVIP(t *testing.T) {
	n := newTestNet(t)
	cfg := nodeConfig(t, gwAddr)
	cfg.Pools[0].Leased = true
	gw := n.add("gw", gwAddr, cfg)
	if err := gw.e.GrantVIPs("rw", []netip.Addr{vip3, vip4}); err != nil {
		t.Fatal(err)
	}
	if spare, inUse := gw.e.RevokeVIP(vip3); !spare || inUse {
		t.Errorf("revoking a spare address: spare %v, in use %v", spare, inUse)
	}
	if v4, _ := gw.e.SpareVIPs("rw"); v4 != 1 {
		t.Errorf("%d spare addresses left, want 1", v4)
	}
	if spare, _ := gw.e.RevokeVIP(vip3); spare {
		t.Error("an address revoked twice")
	}
	gw.e.pools["rw"].take("alice", vip4)
	if spare, inUse := gw.e.RevokeVIP(vip4); spare || !inUse {
		t.Errorf("revoking an address in use: spare %v, in use %v", spare, inUse)
	}
}
