package daemon

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/ike"
	"github.com/mobikevpn/mobikevpn/internal/cluster"
	"github.com/mobikevpn/mobikevpn/udp/memnet"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Failover in process: node A dies (nothing reaches it or leaves it any more, its
// lease is gone), node B takes its SA over from the snapshot in etcd and asks the
// client to switch; the client keeps its SA (same SPIs, no new handshake) and its
// traffic goes through B, whose sequence numbers start above A's lease.

// kill makes node n dead to the cluster: its datagrams vanish both ways and its etcd
// lease is revoked (as when it expires).
func (l *clusterLab) kill(n *node, addr netip.Addr) {
	l.t.Helper()
	l.net.SetFilter(func(p *memnet.Packet) []Packet {
		if p.Src.Addr() == addr || p.Dst.Addr() == addr {
			return nil
		}
		return []Packet{*p}
	})
	if err := n.d.cl.co.Close(l.ctx); err != nil {
		l.t.Fatal(err)
	}
}

// Packet is memnet's, for kill's filter.
type Packet = memnet.Packet

// stateOf reads and decodes the snapshot of the client's SA in etcd, through co.
func (l *clusterLab) stateOf(co *cluster.Coordinator, key cluster.SAKey) ike.SAState {
	l.t.Helper()
	raw, err := co.State(l.ctx, key)
	if err != nil || raw == nil {
		l.t.Fatalf("the SA's state in etcd: %v (%d octets)", err, len(raw))
	}
	st, err := ike.DecodeSAState(raw)
	if err != nil {
		l.t.Fatal(err)
	}
	return st
}

func TestClusterFailoverInProcess(t *testing.T) {
	l := newClusterLab(t, "/failover/")
	aAddr, bAddr, clAddr := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("192.0.2.10")
	a := l.node("gw-a", aAddr)
	b := l.node("gw-b", bAddr)
	cl := l.client(clusterClientConfig, "alice@example.org", clAddr)
	server := netip.MustParseAddr("198.18.0.1")
	waitFor(t, "established with A", func() bool {
		st := cl.status(t)
		return len(st) == 1 && len(st[0].ChildSAs) == 1
	})
	before := cl.status(t)[0]
	key := cluster.SAKey{SPIi: parseSPI(t, before.SPIi), SPIr: parseSPI(t, before.SPIr)}
	// The IKE_AUTH answer waited for the SA's snapshot: it is in etcd, with its Child
	// SA and a lease, as soon as the client is up.
	st := l.stateOf(b.d.cl.co, key)
	if len(st.Children) != 1 || st.Children[0].OutLease == 0 {
		t.Fatalf("A's snapshot when the client came up: %d Child SAs, lease %v", len(st.Children), st.Children)
	}
	lease := st.Children[0].OutLease
	waitFor(t, "B told of A", func() bool {
		s := cl.status(t)
		return len(s[0].PeerAdditionalAddrs) == 1 && s[0].PeerAdditionalAddrs[0] == bAddr.String()
	})
	for i := range uint32(5) {
		through(t, cl, a, clAddr, server, 10+i)
		through(t, a, cl, server, clAddr, 20+i)
	}
	// A rekeys the IKE SA: the new SA's snapshot is in etcd before the client knows it
	// (the rekey's last message waits for it), so it is the new SA that B takes over.
	old := cl.status(t)[0].SPIi
	saA := a.status(t)[0].ID
	if err := a.d.run(l.ctx, func(now time.Time) { a.d.apply(a.d.engine.RekeyIKE(now, saA)) }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the IKE SA rekeyed", func() bool { s := cl.status(t); return len(s) == 1 && s[0].SPIi != old && len(a.status(t)) == 1 })
	before = cl.status(t)[0]
	key = cluster.SAKey{SPIi: parseSPI(t, before.SPIi), SPIr: parseSPI(t, before.SPIr)}
	if st := l.stateOf(b.d.cl.co, key); len(st.Children) != 1 {
		t.Fatalf("the rekeyed SA's snapshot: %d Child SAs", len(st.Children))
	}

	l.kill(a, aAddr)
	// B finds A gone (its key expired), takes the SA over and asks the client over.
	// (B may also take over the IKE SA the rekey replaced, should A have died before its
	// release reached etcd: a copy whose peer no longer has it, which dies with its
	// liveness check. The client's SA is the one that counts.)
	holds := func(n *node) bool {
		for _, s := range n.status(t) {
			if s.SPIi == before.SPIi && s.SPIr == before.SPIr {
				return true
			}
		}
		return false
	}
	_, err := l.command("the take-over", 50*time.Millisecond, func() (string, error) {
		for {
			if s := cl.status(t); len(s) == 1 && s[0].Remote == bAddr.String()+":4500" && holds(b) {
				return "", nil
			}
			time.Sleep(time.Millisecond)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	after := cl.status(t)[0]
	if after.SPIi != before.SPIi || after.SPIr != before.SPIr || after.ChildSAs[0].SPIIn != before.ChildSAs[0].SPIIn {
		t.Errorf("the client's SA after the take-over: SPIs %s/%s, Child SA %s (were %s/%s, %s)",
			after.SPIi, after.SPIr, after.ChildSAs[0].SPIIn, before.SPIi, before.SPIr, before.ChildSAs[0].SPIIn)
	}
	if owner, err := b.d.cl.co.Owner(l.ctx, key); err != nil || owner != "gw-b" {
		t.Errorf("the SA's owner in etcd: %q (%v)", owner, err)
	}
	through(t, cl, b, clAddr, server, 30)
	through(t, b, cl, server, clAddr, 31)
	// B's first packets are numbered above A's lease: no (SA, sequence number) pair of
	// A's is used again.
	ctr, ok := cl.d.dp.InboundCounters(parseSPI32(t, after.ChildSAs[0].SPIIn))
	if !ok || ctr.Seq <= lease {
		t.Errorf("the client's inbound top after B's packet: %d, A's lease %d", ctr.Seq, lease)
	}
	st = l.stateOf(b.d.cl.co, key)
	if st.Children[0].OutLease <= lease {
		t.Errorf("B's lease %d, not above A's %d", st.Children[0].OutLease, lease)
	}
	t.Logf("node A killed: B took the SA over, the client switched to B with its SPIs; A's lease ended at %d, B sends from %d", lease, ctr.Seq)
}

func parseSPI32(t *testing.T, s string) uint32 {
	t.Helper()
	return uint32(parseSPI(t, s))
}

// Fencing: node A's lease expires while A runs (it was cut off from etcd): B takes the
// SA over and the client follows B; A, joining again under a new lease, finds the SA
// owned by B and drops it, without a word to the client.
func TestClusterFencingInProcess(t *testing.T) {
	l := newClusterLab(t, "/fencing/")
	aAddr, bAddr, clAddr := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("192.0.2.10")
	a := l.node("gw-a", aAddr)
	b := l.node("gw-b", bAddr)
	cl := l.client(clusterClientConfig, "alice@example.org", clAddr)
	server := netip.MustParseAddr("198.18.0.1")
	waitFor(t, "established with A, B announced", func() bool {
		st := cl.status(t)
		return len(st) == 1 && len(st[0].ChildSAs) == 1 && len(st[0].PeerAdditionalAddrs) == 1
	})
	before := cl.status(t)[0]
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{l.srv.Endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	old := a.d.cl.co.LeaseID()
	if _, err := cli.Revoke(l.ctx, clientv3.LeaseID(old)); err != nil {
		t.Fatal(err)
	}
	_, err = l.command("B's take-over and A's fencing", 50*time.Millisecond, func() (string, error) {
		for {
			if s := cl.status(t); len(s) == 1 && s[0].Remote == bAddr.String()+":4500" && len(b.status(t)) == 1 && len(a.status(t)) == 0 &&
				a.d.cl.co.LeaseID() != old {
				return "", nil
			}
			time.Sleep(time.Millisecond)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if s := cl.status(t)[0]; s.SPIi != before.SPIi || s.SPIr != before.SPIr {
		t.Errorf("the client after the take-over: %+v (was %s/%s)", s, before.SPIi, before.SPIr)
	}
	through(t, cl, b, clAddr, server, 1)
	through(t, b, cl, server, clAddr, 2)
	waitFor(t, "A a member again, etcd ok", func() bool {
		cs, err := a.d.ClusterStatus(l.ctx)
		return err == nil && cs.Etcd == "ok" && len(cs.Nodes) == 2
	})
}

// Balancing: node A has all six clients; node B joins with balancing on and receives
// its share by planned moves (the clients keep their SAs), and then nothing moves any
// more.
func TestClusterBalanceInProcess(t *testing.T) {
	l := newClusterLab(t, "/balance/")
	aAddr, bAddr := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")
	balanced := strings.Replace(clusterNodeConfig, "cluster:\n", "cluster:\n  balance: { enabled: true, interval: 1s }\n", 1)
	a := l.nodeFrom(balanced, "gw-a", aAddr)
	var clients []*node
	for i := range 6 {
		clients = append(clients, l.client(noSwitchHold(clusterClientConfig), fmt.Sprintf("c%d@example.org", i), netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)})))
	}
	waitFor(t, "six clients with A", func() bool {
		for _, cl := range clients {
			if st := cl.status(t); len(st) != 1 || len(st[0].ChildSAs) != 1 {
				return false
			}
		}
		return true
	})
	b := l.nodeFrom(balanced, "gw-b", bAddr)
	_, err := l.command("B to receive its share", 200*time.Millisecond, func() (string, error) {
		for len(b.status(t)) != 3 || len(a.status(t)) != 3 {
			time.Sleep(5 * time.Millisecond)
		}
		return "", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	onB := 0
	for _, cl := range clients {
		if st := cl.status(t); len(st) == 1 && st[0].Remote == bAddr.String()+":4500" {
			onB++
		}
	}
	if onB != 3 {
		t.Errorf("%d clients see their SA with B", onB)
	}
	// Balanced: rounds go by and nothing moves.
	for range 20 {
		l.clk.Advance(time.Second)
		time.Sleep(20 * time.Millisecond)
	}
	if len(a.status(t)) != 3 || len(b.status(t)) != 3 {
		t.Errorf("after more rounds: A %d SAs, B %d", len(a.status(t)), len(b.status(t)))
	}
}

// noSwitchHold is client config text that follows switches back at once.
func noSwitchHold(cfg string) string {
	return strings.Replace(cfg, "    start_action: start\n", "    start_action: start\n    switch_hold: 0s\n", 1)
}
