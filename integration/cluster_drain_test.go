package integration

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// `drain` of a node with 200 clients (our load generator, each an IKE SA and Child SA
// with R-MOBIKE) and one of our real clients pinging the server 50 times a second: every
// SA moves to the two other nodes, least loaded first (so they share them), the real
// client loses no ping, and the drained node ends with none.
func TestClusterDrainMany(t *testing.T) {
	const n = 200
	c := newClusterNet(t)
	a, b, cc := c.nodes["gw-a"], c.nodes["gw-b"], c.nodes["gw-c"]
	cl, clSock, _ := c.client("cl", "192.0.2.130", "192.0.2.129", "eth5", "alice@example.org", a.addr)
	lg := c.ns("lg")
	c.link(lg, "eth0", []string{"192.0.2.10/25"}, c.rt, "eth4", []string{"192.0.2.1/25"})
	c.exec(lg, "ip", "route", "add", "default", "via", "192.0.2.1")
	c.exec(lg, "ip", "route", "add", "local", "198.18.64.0/20", "dev", "lo")
	c.exec(c.rt, "ip", "route", "add", "198.18.64.0/20", "via", "192.0.2.10")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gen := exec.CommandContext(ctx, "ip", "netns", "exec", lg, binary(t), "bench", "handshake", "--target", a.addr,
		"--sources", "198.18.64.0/20", "--count", strconv.Itoa(n), "--concurrency", "20", "--psk", labPSK,
		"--remote-id", "gw.example.org", "--rmobike", "--hold", "30m")
	var genOut strings.Builder
	gen.Stdout, gen.Stderr = &genOut, &genOut
	if err := gen.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); gen.Wait() }()
	if !waitFor(2*time.Minute, func() bool { st := status(t, a.sock); return st != nil && len(st.IKESAs) == n+1 }) {
		t.Fatalf("node A does not have the %d SAs: %d\n%s", n+1, len(status(t, a.sock).IKESAs), genOut.String())
	}
	time.Sleep(2 * time.Second) // the claims and loads reach etcd

	ping := c.startFlow(cl, "198.18.1.100", 20*time.Millisecond)
	time.Sleep(time.Second)
	start := time.Now()
	out, err := c.mobikevpn("drain", "--wait", "2m", "--control", a.sock)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("drain: %v\n%s", err, lastLines(out, 20))
	}
	replies := ping.stop() // a second after the drain
	moved := strings.Count(out, "\nmoved: ")
	if moved != n+1 {
		t.Errorf("%d of %d SAs reported moved\n%s", moved, n+1, lastLines(out, 10))
	}
	onB, onC := 0, 0
	if !waitFor(30*time.Second, func() bool {
		onB, onC = len(status(t, b.sock).IKESAs), len(status(t, cc.sock).IKESAs)
		return onB+onC == n+1 && len(status(t, a.sock).IKESAs) == 0
	}) {
		t.Fatalf("after the drain: A %d SAs, B %d, C %d", len(status(t, a.sock).IKESAs), onB, onC)
	}
	// Least loaded first: the two share the SAs (the loads they read from etcd lag the
	// moves a little).
	if onB < (n+1)*2/5 || onC < (n+1)*2/5 {
		t.Errorf("the SAs went %d to B and %d to C", onB, onC)
	}
	// Not one ping lost. (Earlier, a ping was counted lost in about one run in five: the
	// last one sent, which ping's interrupt at the end of the flow leaves no time to be
	// answered; flow.missing leaves it out.)
	if lost := ping.missing(replies); ping.sent == 0 || len(lost) != 0 {
		t.Errorf("the real client's pings across the drain: %d sent, %d answered, icmp_seq missing %v; drops: A %v, B %v, C %v", ping.sent, len(replies), lost,
			nonZero(status(t, a.sock).Drops), nonZero(status(t, b.sock).Drops), nonZero(status(t, cc.sock).Drops))
	}
	if st := status(t, clSock); len(st.IKESAs) != 1 || st.IKESAs[0].Remote == a.addr+":4500" {
		t.Errorf("the real client after the drain: %+v", st.IKESAs)
	}
	t.Logf("drain of %d SAs (%d load-generator clients and one real client) in %v: %d to B, %d to C; the real client's pings: %d sent, %d answered",
		n+1, n, took.Round(time.Millisecond), onB, onC, ping.sent, len(replies))
}
