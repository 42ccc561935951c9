package cluster

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// Two nodes racing for the same addresses: each is held by one node; an address moves
// with TakeVIPs; a node gives up only what it holds; a node's addresses are free again
// once it is gone.
func TestVIPLeases(t *testing.T) {
	needEtcd(t)
	a, b := join(t, "gw-a", 5*time.Second), join(t, "gw-b", 5*time.Second)
	const n = 200
	addrs := make([]netip.Addr, n)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{198, 18, byte(100 + i/250), byte(1 + i%250)})
	}
	won := [2][]netip.Addr{}
	var wg sync.WaitGroup
	for i, c := range []*Coordinator{a, b} {
		wg.Go(func() {
			for _, x := range addrs {
				ok, err := c.ClaimVIP(context.Background(), x)
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					won[i] = append(won[i], x)
				}
			}
		})
	}
	wg.Wait()
	held, err := a.VIPs(ctx(t))
	if err != nil || len(held) != n || len(won[0])+len(won[1]) != n {
		t.Fatalf("%d held, won %d + %d of %d (%v)", len(held), len(won[0]), len(won[1]), n, err)
	}
	for i, name := range []string{"gw-a", "gw-b"} {
		for _, x := range won[i] {
			if held[x] != name {
				t.Fatalf("%s claimed %s, held by %q", name, x, held[x])
			}
		}
	}
	// B takes one of A's (an SA moved to B); A cannot release it any more, B can.
	x := won[0][0]
	if err := b.TakeVIPs(ctx(t), []netip.Addr{x}); err != nil {
		t.Fatal(err)
	}
	if err := a.ReleaseVIPs(ctx(t), []netip.Addr{x}); err != nil {
		t.Fatal(err)
	}
	if held, _ := a.VIPs(ctx(t)); held[x] != "gw-b" {
		t.Errorf("%s held by %q after A released it, want gw-b", x, held[x])
	}
	if err := b.ReleaseVIPs(ctx(t), []netip.Addr{x}); err != nil {
		t.Fatal(err)
	}
	if ok, err := a.ClaimVIP(ctx(t), x); !ok || err != nil {
		t.Errorf("claiming %s after B released it: %v %v", x, ok, err)
	}
	// B leaves: its addresses are free.
	if err := b.Close(ctx(t)); err != nil {
		t.Fatal(err)
	}
	held, _ = a.VIPs(ctx(t))
	for x, name := range held {
		if name != "gw-a" {
			t.Fatalf("%s still held by %s after it left", x, name)
		}
	}
	t.Logf("%d addresses claimed by two racing nodes: %d and %d, none twice", n, len(won[0]), len(won[1]))
}

// Two nodes claiming the same 300 addresses in batches (ClaimVIPs): every address goes
// to one of them, and a batch with an address taken meanwhile still gets the rest.
func TestClaimVIPsBatches(t *testing.T) {
	needEtcd(t)
	a, b := join(t, "gw-a", 5*time.Second), join(t, "gw-b", 5*time.Second)
	addrs := make([]netip.Addr, 300)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{198, 18, byte(110 + i/250), byte(1 + i%250)})
	}
	// B holds one address in the middle of A's first batch already.
	if ok, _ := b.ClaimVIP(ctx(t), addrs[10]); !ok {
		t.Fatal("B's claim")
	}
	var won [2][]netip.Addr
	var wg sync.WaitGroup
	for i, c := range []*Coordinator{a, b} {
		wg.Go(func() {
			got, err := c.ClaimVIPs(context.Background(), addrs)
			if err != nil {
				t.Error(err)
			}
			won[i] = got
		})
	}
	wg.Wait()
	held, err := a.VIPs(ctx(t))
	if err != nil || len(won[0])+len(won[1]) != len(addrs)-1 {
		t.Fatalf("won %d + %d of %d (%v)", len(won[0]), len(won[1]), len(addrs)-1, err)
	}
	for i, name := range []string{"gw-a", "gw-b"} {
		for _, x := range won[i] {
			if held[x] != name {
				t.Fatalf("%s claimed %s, held by %q", name, x, held[x])
			}
		}
	}
	if held[addrs[10]] != "gw-b" || len(held) != len(addrs) {
		t.Errorf("%d held; %s by %q", len(held), addrs[10], held[addrs[10]])
	}
}

// A draining node says so in its key, and the load written after keeps the mark.
func TestDrainingMark(t *testing.T) {
	needEtcd(t)
	a, b := join(t, "gw-a", 5*time.Second), join(t, "gw-b", 5*time.Second)
	if err := a.SetDraining(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := a.SetLoad(ctx(t), 7); err != nil {
		t.Fatal(err)
	}
	nodes, err := b.Nodes(ctx(t))
	if err != nil || len(nodes) != 2 || !nodes[0].Draining || nodes[0].IKESAs != 7 || nodes[1].Draining {
		t.Errorf("nodes: %+v %v", nodes, err)
	}
}
