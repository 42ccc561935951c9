package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestMembership(t *testing.T) {
	needEtcd(t)
	a := join(t, "gw-a", 5*time.Second)
	b := join(t, "gw-b", 5*time.Second)
	if err := a.SetLoad(ctx(t), 12); err != nil {
		t.Fatal(err)
	}
	nodes, err := b.Nodes(ctx(t))
	if err != nil || len(nodes) != 2 || nodes[0].Name != "gw-a" || nodes[0].IKESAs != 12 || nodes[1].Name != "gw-b" {
		t.Fatalf("nodes: %+v %v", nodes, err)
	}
	// A second live node of the same name is refused.
	_, err = Join(ctx(t), Config{Endpoints: []string{etcdEndpoint}, Prefix: a.prefix, LeaseTTL: 5 * time.Second}, Node{Name: "gw-a"}, testKey)
	if !errors.Is(err, ErrNameInUse) {
		t.Errorf("a second gw-a: %v", err)
	}
	// Leaving revokes the lease: gone at once.
	if err := b.Close(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if nodes, _ := a.Nodes(ctx(t)); len(nodes) != 1 {
		t.Errorf("after gw-b left: %+v", nodes)
	}
	select {
	case <-b.Lost():
	case <-time.After(5 * time.Second):
		t.Error("Lost not closed after Close")
	}
}

// A node that dies (stops renewing its lease without revoking it) is gone after the
// lease's TTL, and its own view says it is lost.
func TestDeadNodeExpires(t *testing.T) {
	needEtcd(t)
	a := join(t, "gw-a", 5*time.Second)
	ttl := 2 * time.Second
	dead := join(t, "gw-dead", ttl)
	dead.stop() // no more renewals: as if the process was killed
	<-dead.done
	start := time.Now()
	for {
		nodes, err := a.Nodes(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(nodes) == 1 {
			break
		}
		if time.Since(start) > ttl+20*time.Second {
			t.Fatalf("the dead node is still listed after %v: %+v", time.Since(start), nodes)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("a node that stopped renewing a %v lease was gone after %v", ttl, time.Since(start).Round(100*time.Millisecond))
	select {
	case <-dead.Lost():
	default:
		t.Error("the dead node's Lost is not closed")
	}
}

func TestOwnership(t *testing.T) {
	needEtcd(t)
	a := join(t, "gw-a", 5*time.Second)
	b := join(t, "gw-b", 5*time.Second)
	sa := SAKey{0x1122334455667788, 0x99aabbccddeeff00}
	if ok, err := a.Claim(ctx(t), sa); !ok || err != nil {
		t.Fatalf("A's claim: %v %v", ok, err)
	}
	if ok, _ := b.Claim(ctx(t), sa); ok {
		t.Error("B claimed an SA A owns")
	}
	state := []byte(`{"keys":{"sk_d":"c2VjcmV0IGtleSBieXRlcw=="}}`)
	if ok, _ := b.Transfer(ctx(t), sa, "gw-b", state); ok {
		t.Error("B transferred an SA it does not own")
	}
	if ok, _ := b.PutState(ctx(t), sa, state); ok {
		t.Error("B wrote the state of an SA it does not own")
	}
	if ok, err := a.Transfer(ctx(t), sa, "gw-b", state); !ok || err != nil {
		t.Fatalf("A's transfer: %v %v", ok, err)
	}
	if owner, _ := a.Owner(ctx(t), sa); owner != "gw-b" {
		t.Errorf("owner after the transfer: %q", owner)
	}
	if got, err := b.State(ctx(t), sa); err != nil || !bytes.Equal(got, state) {
		t.Errorf("B reads the state: %q %v", got, err)
	}
	if owned, _ := b.Owned(ctx(t)); len(owned) != 1 || owned[0] != sa {
		t.Errorf("B owns %v", owned)
	}
	if owned, _ := a.Owned(ctx(t)); len(owned) != 0 {
		t.Errorf("A still owns %v", owned)
	}
	if ok, _ := a.Release(ctx(t), sa); ok {
		t.Error("A released an SA it gave away")
	}
	if ok, _ := b.Release(ctx(t), sa); !ok {
		t.Error("B could not release its SA")
	}
	if got, _ := a.State(ctx(t), sa); got != nil {
		t.Error("the state outlived the release")
	}
}

// Two nodes racing to claim the same 1000 SAs: each SA gets exactly one owner.
func TestClaimRace(t *testing.T) {
	needEtcd(t)
	nodes := []*Coordinator{join(t, "gw-a", 5*time.Second), join(t, "gw-b", 5*time.Second)}
	const n = 1000
	won := make([][]bool, len(nodes))
	var wg sync.WaitGroup
	for i, c := range nodes {
		won[i] = make([]bool, n)
		for part := range 4 {
			wg.Go(func() {
				for j := part; j < n; j += 4 {
					ok, err := c.Claim(context.Background(), SAKey{uint64(j + 1), 1})
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
	counts := tally(t, won, "claimed")
	for i, c := range nodes {
		owned, err := c.Owned(ctx(t))
		if err != nil || len(owned) != counts[i] {
			t.Errorf("%s owns %d by etcd, won %d claims (%v)", c.self.Name, len(owned), counts[i], err)
		}
	}
	t.Logf("1000 SAs claimed by two racing nodes: %d and %d, none twice", counts[0], counts[1])
}

// Nothing of an SA's secret state is in etcd in the clear: every value under the
// cluster's prefix is searched for the key bytes.
func TestNoSecretsInEtcd(t *testing.T) {
	needEtcd(t)
	a := join(t, "gw-a", 5*time.Second)
	secret := []byte("THE-SK_d-KEY-BYTES-0123456789abcdef")
	for i := range 10 {
		sa := SAKey{uint64(i + 1), 7}
		a.Claim(ctx(t), sa)
		if ok, err := a.PutState(ctx(t), sa, fmt.Appendf(nil, `{"sk_d":%q,"n":%d}`, secret, i)); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	a.SetLoad(ctx(t), 10)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdEndpoint}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx(t), a.prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 21 { // 10 owners, 10 states, the node
		t.Errorf("%d values under the prefix", len(resp.Kvs))
	}
	for _, kv := range resp.Kvs {
		if bytes.Contains(kv.Value, secret) || bytes.Contains(kv.Value, secret[:8]) {
			t.Errorf("%s holds the secret in the clear", kv.Key)
		}
	}
	// A value moved to another SA's key does not open.
	v, _ := cli.Get(ctx(t), a.stateKey(SAKey{1, 7}))
	cli.Put(ctx(t), a.stateKey(SAKey{2, 7}), string(v.Kvs[0].Value))
	if _, err := a.State(ctx(t), SAKey{2, 7}); !errors.Is(err, ErrSealed) {
		t.Errorf("another SA's state opened: %v", err)
	}
}

func TestSAKeyRoundTrip(t *testing.T) {
	k := SAKey{0x0102030405060708, 0xfffefdfcfbfaf9f8}
	if got, err := ParseSAKey(k.String()); err != nil || got != k {
		t.Errorf("%v -> %v %v", k, got, err)
	}
	for _, bad := range []string{"", "x", "0102030405060708", "0102030405060708-", "0000000000000000-0000000000000001", "010203040506070g-0102030405060708"} {
		if _, err := ParseSAKey(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// The marks of a move as each side's watch sees them, and taking back a move that the
// other side did not take.
func TestMoveMarks(t *testing.T) {
	needEtcd(t)
	a := join(t, "gw-a", 5*time.Second)
	b := join(t, "gw-b", 5*time.Second)
	wctx, stop := context.WithCancel(context.Background())
	defer stop()
	wa, wb := a.Watch(wctx), b.Watch(wctx)
	next := func(w <-chan Event, kind EventKind) Event {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case e := <-w:
				if e.Kind == kind {
					return e
				}
			case <-timeout:
				t.Fatalf("no event %d", kind)
			}
		}
	}
	c := join(t, "gw-c", 5*time.Second)
	next(wa, NodesChanged)
	sa := SAKey{5, 6}
	a.Claim(ctx(t), sa)
	if ok, _ := a.Transfer(ctx(t), sa, "gw-b", []byte("state")); !ok {
		t.Fatal("transfer")
	}
	if e := next(wb, SAGiven); e.SA != sa || e.Node != "gw-a" {
		t.Errorf("B was given %v by %q", e.SA, e.Node)
	}
	if ok, _ := c.MarkReady(ctx(t), sa); ok {
		t.Error("C marked an SA it does not own")
	}
	if ok, _ := b.MarkReady(ctx(t), sa); !ok {
		t.Fatal("B could not mark its SA ready")
	}
	if e := next(wa, SAReady); e.SA != sa || e.Node != "gw-b" {
		t.Errorf("A saw %+v", e)
	}
	if ok, _ := a.TakeBack(ctx(t), sa, "gw-b"); ok {
		t.Error("A took back an SA B imported")
	}
	b.MarkArrived(ctx(t), sa)
	if e := next(wa, SAArrived); e.SA != sa {
		t.Errorf("A saw %+v", e)
	}
	// A peer that stayed with A: only while B owns the SA may A say so; B gives it back
	// (a transfer clears the marks of the move before: the hand-back can be taken back
	// like any move).
	if ok, _ := a.MarkStayed(ctx(t), sa, "gw-c"); ok {
		t.Error("A marked a peer stayed for an owner that does not own the SA")
	}
	b.MarkReady(ctx(t), sa)
	if ok, err := a.MarkStayed(ctx(t), sa, "gw-b"); !ok || err != nil {
		t.Fatalf("mark stayed: %v %v", ok, err)
	}
	if e := next(wb, SAStayed); e.SA != sa || e.Node != "gw-a" {
		t.Errorf("B saw %+v", e)
	}
	if ok, _ := b.Transfer(ctx(t), sa, "gw-a", []byte("state back")); !ok {
		t.Fatal("transfer back")
	}
	if e := next(wa, SAGiven); e.SA != sa || e.Node != "gw-b" {
		t.Errorf("A was given %v by %q", e.SA, e.Node)
	}
	if ok, err := b.TakeBack(ctx(t), sa, "gw-a"); !ok || err != nil {
		t.Errorf("B could not take back the hand-back (the marks of the move before were not cleared): %v %v", ok, err)
	}
	// A move B never took: A takes it back, and its state is gone.
	sa2 := SAKey{7, 8}
	a.Claim(ctx(t), sa2)
	a.Transfer(ctx(t), sa2, "gw-b", []byte("state"))
	if ok, err := a.TakeBack(ctx(t), sa2, "gw-b"); !ok || err != nil {
		t.Fatalf("take back: %v %v", ok, err)
	}
	if owner, _ := a.Owner(ctx(t), sa2); owner != "gw-a" {
		t.Errorf("owner %q", owner)
	}
	if st, _ := b.State(ctx(t), sa2); st != nil {
		t.Error("the state of a move taken back is still there")
	}
}

// A node is a move's target as soon as it joined: an SA given to it before it watches
// is reported when it does.
func TestWatchFromJoin(t *testing.T) {
	needEtcd(t)
	a := join(t, "gw-a", 5*time.Second)
	b := join(t, "gw-b", 5*time.Second)
	sa := SAKey{9, 10}
	a.Claim(ctx(t), sa)
	if ok, _ := a.Transfer(ctx(t), sa, "gw-b", []byte("state")); !ok {
		t.Fatal("transfer")
	}
	wctx, stop := context.WithCancel(context.Background())
	defer stop()
	w := b.Watch(wctx)
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-w:
			if e.Kind == SAGiven && e.SA == sa && e.Node == "gw-a" {
				return
			}
		case <-timeout:
			t.Fatal("the SA given before the watch was not reported")
		}
	}
}

// tally counts the SAs each of two racing nodes won, failing the test for one won by
// both or by neither.
func tally(t *testing.T, won [][]bool, what string) [2]int {
	t.Helper()
	counts := [2]int{}
	for j := range won[0] {
		switch {
		case won[0][j] && won[1][j]:
			t.Fatalf("SA %d %s by both", j, what)
		case !won[0][j] && !won[1][j]:
			t.Fatalf("SA %d %s by neither", j, what)
		case won[0][j]:
			counts[0]++
		default:
			counts[1]++
		}
	}
	return counts
}
