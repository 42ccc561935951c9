package integration

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The cluster benchmark (scripts/bench.sh cluster; a test only so that it can use the
// lab): node A of a three-node cluster serves N clients (our load generator, one IKE SA
// and Child SA each) and is drained, every SA moving to B and C, once by switch
// hand-over (the clients advertise R-MOBIKE) and once by RFC 5685 redirect (they do
// not). Measured for each: the drain's wall time (`drain --wait` until every peer is at
// its new node: switched there, or its new IKE SA up there and the old one deleted),
// the CPU time of the three gateways and etcd's writes (raft entries committed) until
// the work it set off is done (the old node forgetting the SAs, loads, releases).
// MOBIKEVPN_BENCH_CLUSTER=1 runs it; MOBIKEVPN_BENCH_SAS sets N (default 1000),
// MOBIKEVPN_BENCH_OUT the JSON file written.

type clusterBenchResult struct {
	Method      string  `json:"method"` // switch | redirect
	SAs         int     `json:"sas"`
	Moved       int     `json:"moved"`
	Seconds     float64 `json:"seconds"`
	CPUSeconds  float64 `json:"gateway_cpu_seconds"`
	EtcdWrites  uint64  `json:"etcd_writes"`
	Established int     `json:"established_after"` // IKE SAs on B and C after the drain
}

func TestBenchCluster(t *testing.T) {
	if os.Getenv("MOBIKEVPN_BENCH_CLUSTER") == "" {
		t.Skip("a benchmark: MOBIKEVPN_BENCH_CLUSTER=1 (scripts/bench.sh cluster) runs it")
	}
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("MOBIKEVPN_BENCH_SAS")); err == nil && v > 0 {
		n = v
	}
	var results []clusterBenchResult
	for _, method := range []string{"switch", "redirect"} {
		t.Run(method, func(t *testing.T) {
			results = append(results, benchClusterDrain(t, method, n))
		})
	}
	if len(results) != 2 {
		return
	}
	sw, rd := results[0], results[1]
	t.Logf("draining %d SAs from one node to two others:", n)
	for _, r := range results {
		t.Logf("  %-8s %4d moved in %6.2f s, gateways' CPU %6.2f s, etcd writes %6d", r.Method, r.Moved, r.Seconds, r.CPUSeconds, r.EtcdWrites)
	}
	t.Logf("redirect/switch: wall time x%.1f, CPU x%.1f, etcd writes x%.2f", rd.Seconds/sw.Seconds, rd.CPUSeconds/sw.CPUSeconds, float64(rd.EtcdWrites)/float64(sw.EtcdWrites))
	if out := os.Getenv("MOBIKEVPN_BENCH_OUT"); out != "" {
		b, _ := json.MarshalIndent(map[string]any{"sas": n, "results": results,
			"ratios": map[string]float64{"seconds": rd.Seconds / sw.Seconds, "cpu": rd.CPUSeconds / sw.CPUSeconds, "etcd_writes": float64(rd.EtcdWrites) / float64(sw.EtcdWrites)}}, "", "  ")
		if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// benchClusterDrain runs one measurement on a fresh cluster.
func benchClusterDrain(t *testing.T, method string, n int) clusterBenchResult {
	c := newClusterNet(t)
	a := c.nodes["gw-a"]
	lg := c.ns("lg")
	c.link(lg, "eth0", []string{"192.0.2.10/25"}, c.rt, "eth4", []string{"192.0.2.1/25"})
	c.exec(lg, "ip", "route", "add", "default", "via", "192.0.2.1")
	c.exec(lg, "ip", "route", "add", "local", "198.18.64.0/20", "dev", "lo")
	c.exec(c.rt, "ip", "route", "add", "198.18.64.0/20", "via", "192.0.2.10")
	args := []string{"netns", "exec", lg, binary(t), "bench", "handshake", "--target", a.addr, "--sources", "198.18.64.0/20",
		"--count", strconv.Itoa(n), "--concurrency", "100", "--psk", labPSK, "--remote-id", "gw.example.org", "--hold", "30m"}
	if method == "switch" {
		args = append(args, "--rmobike")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gen := exec.CommandContext(ctx, "ip", args...)
	var genOut strings.Builder
	gen.Stdout, gen.Stderr = &genOut, &genOut
	if err := gen.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); gen.Wait() }()
	if !waitFor(5*time.Minute, func() bool {
		st := status(t, a.sock)
		return st != nil && len(st.IKESAs) == n
	}) {
		t.Fatalf("node A does not have the %d SAs: %d\n%s", n, len(status(t, a.sock).IKESAs), genOut.String())
	}
	time.Sleep(2 * time.Second) // the claims and loads reach etcd
	var pids []int
	for _, name := range []string{"gw-a", "gw-b", "gw-c"} {
		pids = append(pids, c.nodes[name].p.cmd.Process.Pid)
	}
	cpu := func() float64 {
		var s float64
		for _, p := range pids {
			s += cpuSeconds(p)
		}
		return s
	}
	cpu0, raft0 := cpu(), c.etcdRaftIndex()
	start := time.Now()
	out, err := c.mobikevpn("drain", "--wait", "10m", "--control", a.sock)
	took := time.Since(start)
	// The work a drain sets off goes on after it returned (A forgets the SAs after a
	// grace, the nodes write their loads and releases): counted once it is done.
	onBC := func() int {
		m := 0
		for _, name := range []string{"gw-b", "gw-c"} {
			m += len(status(t, c.nodes[name].sock).IKESAs)
		}
		return m
	}
	waitFor(time.Minute, func() bool { return onBC() == n && len(status(t, a.sock).IKESAs) == 0 })
	time.Sleep(3 * time.Second)
	r := clusterBenchResult{Method: method, SAs: n, Seconds: took.Seconds(), CPUSeconds: cpu() - cpu0, EtcdWrites: c.etcdRaftIndex() - raft0}
	r.Moved = strings.Count(out, "moved: ") + strings.Count(out, "redirected: ")
	r.Established = onBC()
	if err != nil {
		t.Errorf("drain: %v\n%s", err, lastLines(out, 20))
	}
	if r.Moved != n || r.Established != n {
		t.Errorf("%s: %d of %d moved, %d SAs on B and C", method, r.Moved, n, r.Established)
	}
	t.Logf("%s: %d SAs drained in %v; gateways' CPU %.2f s; etcd writes %d", method, r.Moved, took.Round(time.Millisecond), r.CPUSeconds, r.EtcdWrites)
	return r
}

// etcdRaftIndex is the raft index of a live etcd member: every write commits an entry.
func (c *clusterNet) etcdRaftIndex() uint64 {
	out := c.exec(c.et, "etcdctl", "--endpoints", strings.Join(c.endpoints, ","), "endpoint", "status", "-w", "json")
	var sts []struct {
		Status struct {
			RaftIndex uint64 `json:"raftIndex"`
		}
	}
	if err := json.Unmarshal([]byte(out), &sts); err != nil || len(sts) == 0 {
		c.t.Fatalf("etcdctl endpoint status: %v\n%s", err, out)
	}
	var top uint64
	for _, s := range sts {
		top = max(top, s.Status.RaftIndex)
	}
	return top
}
