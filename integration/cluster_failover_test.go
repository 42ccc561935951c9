package integration

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// failoverGen is a load generator's SAs with one node: count clients from sources.
type failoverGen struct {
	node, sources string
	count         int
}

// startGens starts the load generators of gens in namespace lg (linked to the router at
// 192.0.2.1, the sources routed to it) and waits until each node has its SAs.
func (c *clusterNet) startGens(ctx context.Context, gens []failoverGen) (lg string, outs []*strings.Builder) {
	t := c.t
	lg = c.ns("lg")
	c.link(lg, "eth0", []string{"192.0.2.10/25"}, c.rt, "eth4", []string{"192.0.2.1/25"})
	c.exec(lg, "ip", "route", "add", "default", "via", "192.0.2.1")
	for _, g := range gens {
		c.exec(lg, "ip", "route", "add", "local", g.sources, "dev", "lo")
		c.exec(c.rt, "ip", "route", "add", g.sources, "via", "192.0.2.10")
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", lg, binary(t), "bench", "handshake", "--target", c.nodes[g.node].addr,
			"--sources", g.sources, "--count", strconv.Itoa(g.count), "--concurrency", "20", "--psk", labPSK,
			"--remote-id", "gw.example.org", "--rmobike", "--hold", "30m",
			// Identities of their own: a new SA's INITIAL_CONTACT deletes the others of its identity.
			"--id-prefix", g.node+"-")
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		outs = append(outs, out)
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	return lg, outs
}

// saKeys are the SPI pairs of a node's SAs.
func saKeys(t *testing.T, sock string) map[string]bool {
	out := map[string]bool{}
	if st := status(t, sock); st != nil {
		for _, sa := range st.IKESAs {
			out[sa.SPIi+"-"+sa.SPIr] = true
		}
	}
	return out
}

// A node dies (SIGKILL, its links down) under traffic: 3 nodes, about 300 clients
// spread over them (load-generator clients with 'R' and three real clients: one with
// 'R' and no NAT, one behind a NAT, both on the dying node, one on another node). The
// survivors take its SAs over from etcd, each SA once, with the same SPIs and no new
// handshake: the 'R' clients within lease TTL + 2 s (asked to switch), the client
// behind the NAT once its liveness check finds the dead node silent and it probes the
// cluster addresses it was told of. A TCP stream from the server to the real client
// survives.
func TestClusterFailover(t *testing.T) {
	const ttl = 3 * time.Second // clusterNet's lease_ttl
	c := newClusterNetWith(t, "198.18.1.128/25", "  balance: { enabled: true, interval: 1s }\n")
	a, b, cc := c.nodes["gw-a"], c.nodes["gw-b"], c.nodes["gw-c"]
	// r1: 'R', no NAT, on A. r2: behind a NAT, on A (liveness checks every 5 s). r3: on B.
	c.exec(c.rt, "nft", "add table ip nat; add chain ip nat post { type nat hook postrouting priority 100; }; add rule ip nat post ip saddr 198.19.1.0/25 oifname { eth1, eth2, eth3 } masquerade")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const perNode = 99
	_, genOut := c.startGens(ctx, []failoverGen{{"gw-a", "198.18.64.0/22", perNode}, {"gw-b", "198.18.68.0/22", perNode}, {"gw-c", "198.18.72.0/22", perNode}})
	// (Balancing may move a few load-generator SAs while they come up unevenly.)
	loads := func() [3]int { return [3]int{len(saKeys(t, a.sock)), len(saKeys(t, b.sock)), len(saKeys(t, cc.sock))} }
	last, stable := loads(), time.Now()
	if !waitFor(3*time.Minute, func() bool {
		if l := loads(); l != last {
			last, stable = l, time.Now()
		}
		return last[0]+last[1]+last[2] == 3*perNode && time.Since(stable) > 3*time.Second
	}) {
		t.Fatalf("the nodes do not have their SAs: %v\n%s", loads(), genOut[0])
	}
	// The real clients come last: the loads are even, nothing moves for them.
	r1, r1Sock, _ := c.client("r1", "192.0.2.130", "192.0.2.129", "eth5", "r1@example.org", a.addr)
	r2, r2Sock, _ := c.clientWith("r2", "198.19.1.10", "198.19.1.1", "eth6", "r2@example.org", a.addr, "    dpd_delay: 5s\n")
	r3, r3Sock, _ := c.client("r3", "198.19.2.10", "198.19.2.1", "eth7", "r3@example.org", b.addr)

	for sock, at := range map[string]string{r1Sock: a.addr, r2Sock: a.addr, r3Sock: b.addr} {
		if !waitFor(10*time.Second, func() bool { return len(status(t, sock).IKESAs[0].PeerAdditionalAddrs) == 2 }) {
			t.Fatalf("a client was not told of the other nodes: %+v", status(t, sock).IKESAs[0])
		}
		if st := status(t, sock).IKESAs[0]; !strings.HasPrefix(st.Remote, at+":") {
			t.Fatalf("a real client is not with its node %s: %+v", at, st)
		}
	}
	time.Sleep(time.Second) // the snapshots and loads are in etcd
	onA := saKeys(t, a.sock)
	before := map[string]string{}
	for name, sock := range map[string]string{"r1": r1Sock, "r2": r2Sock, "r3": r3Sock} {
		sa := status(t, sock).IKESAs[0]
		before[name] = sa.SPIi + "-" + sa.SPIr
	}
	vip1 := status(t, r1Sock).IKESAs[0].VirtualIPs[0]

	pings := map[string]*flow{}
	for name, ns := range map[string]string{"r1": r1, "r2": r2, "r3": r3} {
		pings[name] = c.startFlow(ns, "198.18.1.100", 50*time.Millisecond)
	}
	tcpDone := make(chan float64, 1)
	go func() {
		tcpDone <- c.tcpTransferPaced(c.srv, r1, "0.0.0.0:5001", vip1+":5001", 24<<20, 10e6/8)
	}()
	time.Sleep(2 * time.Second)

	// Power cut: the process killed, its links down (its kernel answers ARP for nothing
	// any more).
	a.p.cmd.Process.Kill()
	killed := time.Now()
	c.exec(a.ns, "ip", "link", "set", "eth0", "down")
	c.exec(a.ns, "ip", "link", "set", "eth1", "down")

	// Every SA of A's served by B or C, once.
	served := map[string]time.Duration{}
	var twice []string
	waitFor(2*time.Minute, func() bool {
		onB, onC := saKeys(t, b.sock), saKeys(t, cc.sock)
		for k := range onA {
			if _, ok := served[k]; !ok && (onB[k] || onC[k]) {
				served[k] = time.Since(killed)
			}
		}
		twice = twice[:0]
		for k := range onB {
			if onC[k] {
				twice = append(twice, k)
			}
		}
		return len(served) == len(onA)
	})
	if len(twice) != 0 {
		t.Errorf("SAs held by both survivors: %v", twice)
	}
	if len(served) != len(onA) {
		t.Fatalf("%d of A's %d SAs taken over", len(served), len(onA))
	}
	var times []time.Duration
	for _, d := range served {
		times = append(times, d)
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	median, p99, worst := times[len(times)/2], times[len(times)*99/100], times[len(times)-1]
	if worst > ttl+2*time.Second {
		t.Errorf("the last of A's SAs was taken over %v after the kill (lease TTL %v + 2 s)", worst, ttl)
	}
	// The real clients: the same SA, now with a survivor.
	moved := map[string]time.Duration{}
	waitFor(time.Minute, func() bool {
		for name, sock := range map[string]string{"r1": r1Sock, "r2": r2Sock} {
			if _, ok := moved[name]; ok {
				continue
			}
			if st := status(t, sock); st != nil && len(st.IKESAs) == 1 && st.IKESAs[0].Remote != a.addr+":4500" {
				moved[name] = time.Since(killed)
			}
		}
		return len(moved) == 2
	})
	for name, sock := range map[string]string{"r1": r1Sock, "r2": r2Sock, "r3": r3Sock} {
		st := status(t, sock)
		if len(st.IKESAs) != 1 || st.IKESAs[0].SPIi+"-"+st.IKESAs[0].SPIr != before[name] || strings.HasPrefix(st.IKESAs[0].Remote, a.addr+":") {
			t.Errorf("client %s after the failover: %+v (SA was %s)", name, st.IKESAs, before[name])
		}
	}
	if d, ok := moved["r1"]; !ok || d > ttl+2*time.Second {
		t.Errorf("the 'R' client without NAT reached a survivor %v after the kill (%v)", d, ok)
	}
	if d, ok := moved["r2"]; !ok || d > 30*time.Second {
		t.Errorf("the client behind the NAT reached a survivor %v after the kill (%v)", d, ok)
	}
	mbps := <-tcpDone // fails the test itself if the stream broke
	time.Sleep(2 * time.Second)
	var lossNote []string
	for _, name := range []string{"r1", "r2", "r3"} {
		rs := pings[name].stop()
		gap, lost := gapAndLoss(rs, killed)
		lossNote = append(lossNote, fmt.Sprintf("%s: %d of %d pings lost, longest gap %v", name, len(pings[name].missing(rs)), pings[name].sent, gap.Round(time.Millisecond)))
		if name == "r3" && lost > 0 {
			t.Errorf("client r3, on a survivor, lost %d pings", lost)
		}
	}
	onB := saKeys(t, b.sock)
	fromA := 0
	for k := range onA {
		if onB[k] {
			fromA++
		}
	}
	if fromA < len(onA)*3/10 || len(onA)-fromA < len(onA)*3/10 {
		t.Errorf("A's %d SAs went %d to B and %d to C", len(onA), fromA, len(onA)-fromA)
	}
	// A comes back, empty (a node added later): the others give it its share by planned
	// moves. Not before the switch_hold of the gateways and the clients (30 s) since the
	// SAs left A's address: a client refuses to go back sooner (its SA is handed back).
	time.Sleep(time.Until(killed.Add(35 * time.Second)))
	c.exec(a.ns, "ip", "link", "set", "eth0", "up")
	c.exec(a.ns, "ip", "link", "set", "eth1", "up")
	c.exec(a.ns, "ip", "route", "replace", "default", "via", "198.51.100.126")
	c.startNode("gw-a")
	joined := time.Now()
	total := len(saKeys(t, b.sock)) + len(saKeys(t, cc.sock))
	balanced := func(l [3]int) bool {
		for _, v := range l {
			if float64(v) > float64(total)/3*1.2+1 || float64(v) < float64(total)/3*0.8-1 {
				return false
			}
		}
		return l[0]+l[1]+l[2] == total
	}
	after := loads()
	if !waitFor(time.Minute, func() bool { after = loads(); return balanced(after) }) {
		t.Errorf("node A, back, did not receive its share: loads %v (of %d)", after, total)
	}
	share := time.Since(joined)
	time.Sleep(3 * time.Second) // balanced: nothing more moves
	if l := loads(); l != after {
		t.Errorf("SAs still moving once balanced: %v, then %v", after, l)
	}
	t.Logf("node A back, empty: it had its share after %v, loads %v", share.Round(time.Millisecond), after)
	t.Logf("node A (%d SAs) killed: taken over in median %v, p99 %v, last %v (lease TTL %v), %d to B and %d to C, none twice; the 'R' client switched after %v, the one behind a NAT found a survivor after %v; %s; TCP from the server to r1 intact (%.1f Mbit/s)",
		len(onA), median.Round(time.Millisecond), p99.Round(time.Millisecond), worst.Round(time.Millisecond), ttl, fromA, len(onA)-fromA,
		moved["r1"].Round(time.Millisecond), moved["r2"].Round(time.Millisecond), strings.Join(lossNote, "; "), mbps)
}
