package integration

import (
	"strings"
	"testing"
	"time"
)

// fenceFromEtcd drops everything between node n and etcd's namespace (on n's side), or
// lets it through again (heal).
func (c *clusterNet) fenceFromEtcd(n *clusterNode, heal bool) {
	if heal {
		c.exec(n.ns, "nft", "delete table inet fence")
		return
	}
	c.exec(n.ns, "nft", "add table inet fence; "+
		"add chain inet fence out { type filter hook output priority 0; }; add rule inet fence out ip daddr 198.18.9.0/24 drop; "+
		"add chain inet fence in { type filter hook input priority 0; }; add rule inet fence in ip saddr 198.18.9.0/24 drop")
}

// A node cut off from etcd (but not from its clients) while the other nodes are not:
// its lease expires, the others take its SA over and the client follows them; the
// node, which kept its copy (it cannot know), sends no further than its lease and,
// once it reaches etcd again, joins under a new lease and drops the SA, which its new
// owner serves. Nowhere is one SA served by two nodes afterwards; the client keeps
// its SA and its traffic.
func TestClusterPartition(t *testing.T) {
	const ttl = 3 * time.Second
	c := newClusterNet(t)
	a, b, cc := c.nodes["gw-a"], c.nodes["gw-b"], c.nodes["gw-c"]
	r1, r1Sock, _ := c.client("r1", "192.0.2.130", "192.0.2.129", "eth5", "r1@example.org", a.addr)
	r3, r3Sock, _ := c.client("r3", "198.19.2.10", "198.19.2.1", "eth7", "r3@example.org", b.addr)
	for _, sock := range []string{r1Sock, r3Sock} {
		if !waitFor(10*time.Second, func() bool { return len(status(t, sock).IKESAs[0].PeerAdditionalAddrs) == 2 }) {
			t.Fatalf("a client was not told of the other nodes: %+v", status(t, sock).IKESAs[0])
		}
	}
	time.Sleep(time.Second)
	sa3 := status(t, r3Sock).IKESAs[0]
	p1, p3 := c.startFlow(r1, "198.18.1.100", 50*time.Millisecond), c.startFlow(r3, "198.18.1.100", 50*time.Millisecond)
	time.Sleep(time.Second)

	c.fenceFromEtcd(b, false)
	cut := time.Now()
	var movedAfter time.Duration
	if !waitFor(30*time.Second, func() bool {
		st := status(t, r3Sock)
		return st != nil && len(st.IKESAs) == 1 && st.IKESAs[0].Remote != b.addr+":4500"
	}) {
		t.Fatalf("the client of the node cut off did not move: %+v", status(t, r3Sock))
	}
	movedAfter = time.Since(cut)
	if movedAfter > ttl+2*time.Second {
		t.Errorf("the client of the node cut off moved %v after the cut (lease TTL %v)", movedAfter, ttl)
	}
	successor := a
	if status(t, r3Sock).IKESAs[0].Remote == cc.addr+":4500" {
		successor = cc
	}
	var cutStatus string
	if !waitFor(10*time.Second, func() bool {
		cutStatus = c.clusterStatus(b).Etcd
		return cutStatus != "ok" && cutStatus != ""
	}) {
		t.Errorf("the node cut off says etcd is %q", cutStatus)
	}
	time.Sleep(2 * time.Second) // traffic through the successor while B is still cut off

	c.fenceFromEtcd(b, true)
	healed := time.Now()
	if !waitFor(20*time.Second, func() bool {
		st := c.clusterStatus(b)
		return st.Etcd == "ok" && len(st.Nodes) == 3 && len(status(t, b.sock).IKESAs) == 0
	}) {
		t.Fatalf("after the partition: B %+v, its SAs %d", c.clusterStatus(b), len(status(t, b.sock).IKESAs))
	}
	rejoined := time.Since(healed)
	holders := 0
	for _, n := range []*clusterNode{a, b, cc} {
		if saKeys(t, n.sock)[sa3.SPIi+"-"+sa3.SPIr] {
			holders++
		}
	}
	if holders != 1 || !saKeys(t, successor.sock)[sa3.SPIi+"-"+sa3.SPIr] {
		t.Errorf("the SA of the client of B is held by %d nodes after the partition", holders)
	}
	if st := status(t, r3Sock).IKESAs; len(st) != 1 || st[0].SPIi != sa3.SPIi || st[0].SPIr != sa3.SPIr {
		t.Errorf("the client of B after the partition: %+v (its SA was %s/%s)", st, sa3.SPIi, sa3.SPIr)
	}
	r1Replies, r3Replies := p1.stop(), p3.stop()
	_, lost1 := gapAndLoss(r1Replies, cut)
	gap3, lost3 := gapAndLoss(r3Replies, cut)
	if lost1 != 0 {
		t.Errorf("the client of A lost %d pings during B's partition", lost1)
	}
	if n := len(p3.missing(r3Replies)); n > int((ttl+3*time.Second)/(50*time.Millisecond)) {
		t.Errorf("the client of B lost %d of %d pings", n, p3.sent)
	}
	t.Logf("node B cut off from etcd: its client moved to %s after %v (lease TTL %v), B said etcd %q; healed: B joined again and dropped the SA after %v; the client of B lost %d of %d pings (longest gap %v, %d within its flow), the client of A none",
		successor.name, movedAfter.Round(time.Millisecond), ttl, cutStatus, rejoined.Round(time.Millisecond), len(p3.missing(r3Replies)), p3.sent, gap3.Round(time.Millisecond), lost3)
}

// etcd away for every node (all three members killed, started again on their data
// after twice the lease TTL): the nodes keep serving their SAs, nothing moves and
// nothing is taken over, `cluster status` says so, and each node is a member again
// once etcd is back, with its SAs.
func TestClusterEtcdOutage(t *testing.T) {
	const ttl = 3 * time.Second
	c := newClusterNet(t)
	a, b := c.nodes["gw-a"], c.nodes["gw-b"]
	r1, r1Sock, _ := c.client("r1", "192.0.2.130", "192.0.2.129", "eth5", "r1@example.org", a.addr)
	r3, r3Sock, _ := c.client("r3", "198.19.2.10", "198.19.2.1", "eth7", "r3@example.org", b.addr)
	time.Sleep(2 * time.Second)
	before := map[string]string{r1Sock: status(t, r1Sock).IKESAs[0].Remote, r3Sock: status(t, r3Sock).IKESAs[0].Remote}
	p1, p3 := c.startFlow(r1, "198.18.1.100", 50*time.Millisecond), c.startFlow(r3, "198.18.1.100", 50*time.Millisecond)
	time.Sleep(time.Second)

	for _, e := range c.etcd {
		e.cmd.Process.Kill()
		e.wait(5 * time.Second)
	}
	down := time.Now()
	var outage string
	if !waitFor(3*ttl, func() bool {
		outage = c.clusterStatus(a).Etcd
		return strings.HasPrefix(outage, "lease lost")
	}) {
		t.Errorf("node A with etcd away for %v says etcd %q", time.Since(down).Round(time.Millisecond), outage)
	}
	time.Sleep(time.Until(down.Add(2 * ttl)))
	for i := range c.etcd {
		c.restartEtcd(i)
	}
	back := time.Now()
	for _, n := range c.nodes {
		if !waitFor(30*time.Second, func() bool {
			st := c.clusterStatus(n)
			return st.Etcd == "ok" && len(st.Nodes) == 3
		}) {
			t.Fatalf("node %s after etcd came back: %+v", n.name, c.clusterStatus(n))
		}
	}
	recovered := time.Since(back)
	time.Sleep(2 * ttl) // nothing is taken over after the nodes are back either
	for sock, remote := range before {
		if st := status(t, sock).IKESAs; len(st) != 1 || st[0].Remote != remote {
			t.Errorf("a client after etcd's outage: %+v (was with %s)", st, remote)
		}
	}
	if n := len(saKeys(t, a.sock)); n != 1 {
		t.Errorf("node A holds %d SAs after the outage", n)
	}
	if n := len(saKeys(t, b.sock)); n != 1 {
		t.Errorf("node B holds %d SAs after the outage", n)
	}
	r1Replies, r3Replies := p1.stop(), p3.stop()
	for name, rs := range map[string][]reply{"r1": r1Replies, "r3": r3Replies} {
		if _, lost := gapAndLoss(rs, down); lost != 0 {
			t.Errorf("client %s lost %d pings while etcd was away", name, lost)
		}
	}
	t.Logf("etcd away %v: the nodes kept serving (status %q), no ping lost, nothing moved; all members again %v after etcd came back",
		back.Sub(down).Round(time.Millisecond), outage, recovered.Round(time.Millisecond))
}
