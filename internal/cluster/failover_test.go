package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// The survivors' shares of a dead node's SAs even out their loads and cover every SA
// once.
func TestDivide(t *testing.T) {
	var orphans []SAKey
	for i := range 300 {
		orphans = append(orphans, SAKey{uint64(i + 1), 7})
	}
	for _, tc := range []struct {
		name  string
		live  []Node
		loads map[string]int // after the take-over
	}{
		{"even", []Node{{Name: "gw-b", IKESAs: 100}, {Name: "gw-c", IKESAs: 100}}, map[string]int{"gw-b": 250, "gw-c": 250}},
		{"uneven", []Node{{Name: "gw-b", IKESAs: 300}, {Name: "gw-c", IKESAs: 0}}, map[string]int{"gw-b": 300, "gw-c": 300}},
		{"one far above the mean", []Node{{Name: "gw-b", IKESAs: 900}, {Name: "gw-c", IKESAs: 0}}, map[string]int{"gw-b": 900, "gw-c": 300}},
		{"draining", []Node{{Name: "gw-b", IKESAs: 10, Draining: true}, {Name: "gw-c", IKESAs: 10}, {Name: "gw-d"}},
			map[string]int{"gw-b": 10, "gw-c": 155, "gw-d": 155}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := map[SAKey]string{}
			for _, n := range tc.live {
				share := Divide(orphans, tc.live, n.Name)
				for _, sa := range share {
					if other, ok := seen[sa]; ok {
						t.Fatalf("%v given to %s and %s", sa, other, n.Name)
					}
					seen[sa] = n.Name
				}
				if got := n.IKESAs + len(share); got != tc.loads[n.Name] {
					t.Errorf("%s: load %d after the take-over, want %d", n.Name, got, tc.loads[n.Name])
				}
			}
			if len(seen) != len(orphans) {
				t.Errorf("%d of %d SAs given out", len(seen), len(orphans))
			}
		})
	}
	if got := Divide(orphans, []Node{{Name: "gw-b", Draining: true}}, "gw-b"); got != nil {
		t.Errorf("a draining node's share: %d SAs", len(got))
	}
}

// Two survivors race for all 1000 SAs of a dead node (each tries every one, the worst
// case): none is taken twice, none left, and the state each winner wrote is there.
func TestTakeOverRace(t *testing.T) {
	needEtcd(t)
	dead := join(t, "gw-a", 5*time.Second)
	const n = 1000
	var sas []SAKey
	for i := range n {
		sa := SAKey{uint64(i + 1), 9}
		sas = append(sas, sa)
		if ok, err := dead.Claim(ctx(t), sa); err != nil || !ok {
			t.Fatalf("claim: %v %v", ok, err)
		}
		if ok, err := dead.PutState(ctx(t), sa, []byte("state of gw-a")); err != nil || !ok {
			t.Fatalf("state: %v %v", ok, err)
		}
	}
	dead.Close(ctx(t)) // its lease goes: the node is gone, its SAs orphaned
	nodes := []*Coordinator{join(t, "gw-b", 5*time.Second), join(t, "gw-c", 5*time.Second)}
	owners, err := nodes[0].Owners(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	live, err := nodes[0].Nodes(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if o := Orphans(owners, live); len(o) != 1 || len(o["gw-a"]) != n {
		t.Fatalf("orphans: %d owners, %d of gw-a's", len(o), len(o["gw-a"]))
	}
	won := make([][]bool, len(nodes))
	var wg sync.WaitGroup
	for i, c := range nodes {
		won[i] = make([]bool, n)
		for part := range 4 {
			wg.Go(func() {
				for j := part; j < n; j += 4 {
					_, rev, err := c.StateRev(context.Background(), sas[j])
					if err != nil {
						t.Error(err)
						return
					}
					ok, err := c.TakeOver(context.Background(), sas[j], "gw-a", rev, []byte("state of "+c.self.Name), nil)
					if err != nil {
						t.Error(err)
						return
					}
					won[i][j] = ok
				}
			})
		}
	}
	wg.Wait()
	counts := tally(t, won, "taken")
	for i, c := range nodes {
		owned, err := c.Owned(ctx(t))
		if err != nil || len(owned) != counts[i] {
			t.Errorf("%s owns %d by etcd, won %d take-overs (%v)", c.self.Name, len(owned), counts[i], err)
		}
		for _, sa := range owned[:min(len(owned), 20)] {
			if st, err := c.State(ctx(t), sa); err != nil || string(st) != fmt.Sprintf("state of %s", c.self.Name) {
				t.Errorf("%v: state %q (%v)", sa, st, err)
			}
		}
	}
	t.Logf("1000 SAs of a dead node taken over by two racing survivors: %d and %d, none twice, none left", counts[0], counts[1])
}

// A node whose lease was lost joins again: under the same lease while etcd still has
// it (etcd was away), under a new one once it expired (the node was cut off).
func TestReattach(t *testing.T) {
	needEtcd(t)
	c := join(t, "gw-a", time.Second)
	first := c.lease()
	fresh, err := c.Reattach(ctx(t))
	if err != nil || fresh || c.lease() != first {
		t.Fatalf("reattach with the lease alive: fresh %v, lease %x (was %x), %v", fresh, c.lease(), first, err)
	}
	time.Sleep(2500 * time.Millisecond) // beyond the TTL: the lease is kept alive again
	select {
	case <-c.Lost():
		t.Fatal("the lease was lost after reattaching to it")
	default:
	}
	// The lease expires at etcd (as for a node cut off longer than its TTL).
	if _, err := c.cli.Revoke(ctx(t), first); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("the lease's loss was not noticed")
	}
	if nodes, err := c.Nodes(ctx(t)); err != nil || len(nodes) != 0 {
		t.Fatalf("nodes with the lease gone: %v %v", nodes, err)
	}
	if err := c.SetLoad(ctx(t), 7); err == nil {
		t.Error("the node's key written under a lease that is gone")
	}
	fresh, err = c.Reattach(ctx(t))
	if err != nil || !fresh || c.lease() == first {
		t.Fatalf("reattach with the lease gone: fresh %v, lease %x (was %x), %v", fresh, c.lease(), first, err)
	}
	nodes, err := c.Nodes(ctx(t))
	if err != nil || len(nodes) != 1 || nodes[0].Name != "gw-a" {
		t.Fatalf("nodes after joining again: %v %v", nodes, err)
	}
	if err := c.SetLoad(ctx(t), 7); err != nil {
		t.Errorf("the node's key under its new lease: %v", err)
	}
}

// A node that takes over an SA takes its virtual IPs with it, whoever held them: a node
// that had claimed one as spare meanwhile is told (VIPTaken).
func TestVIPTaken(t *testing.T) {
	needEtcd(t)
	a := join(t, "gw-a", 5*time.Second)
	b := join(t, "gw-b", 5*time.Second)
	addr := netip.MustParseAddr("198.18.5.7")
	if ok, err := a.ClaimVIP(ctx(t), addr); err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	wctx, stop := context.WithCancel(context.Background())
	defer stop()
	w := a.Watch(wctx)
	sa := SAKey{11, 12}
	if ok, err := b.Claim(ctx(t), sa); err != nil || !ok {
		t.Fatal(err)
	}
	_, rev, _ := b.StateRev(ctx(t), sa)
	if ok, err := b.TakeOver(ctx(t), sa, "gw-b", rev, []byte("state"), []netip.Addr{addr}); err != nil || !ok {
		t.Fatalf("take over: %v %v", ok, err)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-w:
			if e.Kind == VIPTaken {
				if e.Addr != addr || e.Node != "gw-b" {
					t.Fatalf("VIPTaken %v by %s", e.Addr, e.Node)
				}
				if vips, err := b.VIPs(ctx(t)); err != nil || vips[addr] != "gw-b" {
					t.Errorf("the address's holder: %v %v", vips, err)
				}
				return
			}
		case <-timeout:
			t.Fatal("the node that held the address was not told")
		}
	}
}
