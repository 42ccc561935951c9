package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The cluster benchmark (scripts/bench.sh cluster; a test only so that it can use the
// lab): node A of a three-node cluster serves N clients and is drained, every SA moving
// to B and C: by switch hand-over (our load generator, one IKE SA and Child SA each,
// advertising R-MOBIKE), by RFC 5685 redirect (the same without R-MOBIKE), and by
// redirect of strongSwan clients (one charon with N connections, each with a virtual
// IP). Measured for each: the drain's wall time (`drain --wait` until every peer is at
// its new node: switched there, or its new IKE SA up there and the old one deleted),
// the CPU time of the three gateways and etcd's writes (raft entries committed) until
// the work it set off is done (the old node forgetting the SAs, loads, releases); and
// on a sample flow, one of our clients among them (with R-MOBIKE for the switch, without
// for the redirects) pinging the server 50 times a second: pings lost.
// MOBIKEVPN_BENCH_CLUSTER=1 runs it; MOBIKEVPN_BENCH_SAS sets N (default 1000),
// MOBIKEVPN_BENCH_OUT the JSON file written, MOBIKEVPN_BENCH_METHODS a part of the
// methods (e.g. "switch").

type clusterBenchResult struct {
	Method      string  `json:"method"` // switch | redirect | redirect-strongswan
	Client      string  `json:"client"` // the clients: mobikevpn load generator or strongSwan
	SAs         int     `json:"sas"`
	Moved       int     `json:"moved"`
	Seconds     float64 `json:"seconds"`
	CPUSeconds  float64 `json:"gateway_cpu_seconds"`
	EtcdWrites  uint64  `json:"etcd_writes"`
	Established int     `json:"established_after"` // IKE SAs on B and C after the drain
	PingsSent   int     `json:"sample_pings_sent"` // the sample flow
	PingsLost   int     `json:"sample_pings_lost"`
	VIPKept     bool    `json:"sample_virtual_ip_kept"` // its connections survive
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
	methods := []string{"switch", "redirect", "redirect-strongswan"}
	if v := os.Getenv("MOBIKEVPN_BENCH_METHODS"); v != "" {
		methods = strings.Fields(v) // a part of the run, e.g. while working on one
	}
	for _, method := range methods {
		t.Run(method, func(t *testing.T) {
			results = append(results, benchClusterDrain(t, method, n))
		})
	}
	if len(results) != len(methods) {
		return
	}
	sw := results[0]
	if sw.Method != "switch" {
		return
	}
	t.Logf("draining %d SAs (and the sample client) from one node to two others:", n)
	ratios := map[string]map[string]float64{}
	for _, r := range results {
		t.Logf("  %-19s %4d moved in %6.2f s, gateways' CPU %6.2f s, etcd writes %6d, sample flow: %d of %d pings lost, virtual IP kept %v",
			r.Method, r.Moved, r.Seconds, r.CPUSeconds, r.EtcdWrites, r.PingsLost, r.PingsSent, r.VIPKept)
		if r.Method != sw.Method {
			ratios[r.Method] = map[string]float64{"seconds": r.Seconds / sw.Seconds, "cpu": r.CPUSeconds / sw.CPUSeconds, "etcd_writes": float64(r.EtcdWrites) / float64(sw.EtcdWrites)}
			t.Logf("%s/switch: wall time x%.1f, CPU x%.1f, etcd writes x%.2f", r.Method, r.Seconds/sw.Seconds, r.CPUSeconds/sw.CPUSeconds, float64(r.EtcdWrites)/float64(sw.EtcdWrites))
		}
	}
	if out := os.Getenv("MOBIKEVPN_BENCH_OUT"); out != "" {
		b, _ := json.MarshalIndent(map[string]any{"sas": n, "results": results, "ratios": ratios}, "", "  ")
		if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// benchClusterDrain runs one measurement on a fresh cluster.
func benchClusterDrain(t *testing.T, method string, n int) clusterBenchResult {
	// A pool for N clients with virtual IPs (strongSwan's), beyond the inner segment:
	// the server reaches it on the segment (the nodes answer ARP for what they serve).
	c := newClusterNetPool(t, "198.18.16.0/20")
	c.exec(c.srv, "ip", "route", "add", "198.18.16.0/20", "dev", "br0")
	a := c.nodes["gw-a"]
	extra := ""
	if method != "switch" {
		extra = "    rmobike: false\n"
	}
	cl, clSock, _ := c.clientWith("cl", "192.0.2.130", "192.0.2.129", "eth5", "alice@example.org", a.addr, extra)
	vip := status(t, clSock).IKESAs[0].VirtualIPs[0]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := "mobikevpn load generator"
	if method == "redirect-strongswan" {
		client = "strongSwan " + strongSwanVersion(t)
		benchStrongSwanClients(c, n, a.addr)
	} else {
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
		gen := exec.CommandContext(ctx, "ip", args...)
		var genOut strings.Builder
		gen.Stdout, gen.Stderr = &genOut, &genOut
		if err := gen.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); gen.Wait() }()
	}
	if !waitFor(10*time.Minute, func() bool {
		st := status(t, a.sock)
		return st != nil && len(st.IKESAs) == n+1
	}) {
		t.Fatalf("node A does not have the %d SAs: %d", n+1, len(status(t, a.sock).IKESAs))
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
	// The sample flow, from a second before the drain to a second after it.
	ping := c.startFlow(cl, "198.18.1.100", 20*time.Millisecond)
	time.Sleep(time.Second)
	cpu0, raft0 := cpu(), c.etcdRaftIndex()
	start := time.Now()
	out, err := c.mobikevpn("drain", "--wait", "10m", "--control", a.sock)
	took := time.Since(start)
	replies := ping.stop()
	// The work a drain sets off goes on after it returned (A forgets the SAs after a
	// grace, the nodes write their loads and releases): counted once it is done.
	onBC := func() int {
		m := 0
		for _, name := range []string{"gw-b", "gw-c"} {
			m += len(status(t, c.nodes[name].sock).IKESAs)
		}
		return m
	}
	waitFor(time.Minute, func() bool { return onBC() == n+1 && len(status(t, a.sock).IKESAs) == 0 })
	time.Sleep(3 * time.Second)
	r := clusterBenchResult{Method: method, Client: client, SAs: n, Seconds: took.Seconds(), CPUSeconds: cpu() - cpu0, EtcdWrites: c.etcdRaftIndex() - raft0}
	r.Moved = strings.Count(out, "moved: ") + strings.Count(out, "redirected: ") - 1 // the sample client is not counted
	r.Established = onBC() - 1
	if st := status(t, clSock); st != nil && len(st.IKESAs) == 1 && len(st.IKESAs[0].VirtualIPs) == 1 {
		r.VIPKept = st.IKESAs[0].VirtualIPs[0] == vip
	}
	r.PingsSent, r.PingsLost = ping.sent, len(ping.missing(replies))
	if ping.sent == 0 {
		t.Error("the sample flow's ping sent nothing")
	}
	if err != nil {
		var notMoved []string
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "not moved") {
				notMoved = append(notMoved, l)
			}
		}
		t.Errorf("drain: %v\n%s", err, lastLines(strings.Join(notMoved, "\n"), 20))
	}
	if r.Moved != n || r.Established != n {
		t.Errorf("%s: %d of %d moved, %d SAs on B and C", method, r.Moved, n, r.Established)
	}
	if os.Getenv("MOBIKEVPN_PROFILE_DIR") != "" {
		// The nodes write their CPU profiles when they stop.
		for _, name := range []string{"gw-a", "gw-b", "gw-c"} {
			p := c.nodes[name].p
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(20 * time.Second):
				t.Errorf("%s did not stop", name)
			}
		}
	}
	t.Logf("%s (%s): %d SAs drained in %v; gateways' CPU %.2f s; etcd writes %d; sample flow: %d of %d pings lost, virtual IP kept %v",
		method, client, r.Moved, took.Round(time.Millisecond), r.CPUSeconds, r.EtcdWrites, r.PingsLost, r.PingsSent, r.VIPKept)
	return r
}

// benchStrongSwanClients starts one charon with n connections to the node at gw, each
// its own identity from its own address (198.18.64.0/20, as the load generator's: a
// node allows only a few half-open SAs per peer address) asking for a virtual IP (as
// road warriors do); the caller waits until they are up.
func benchStrongSwanClients(c *clusterNet, n int, gw string) {
	sw := c.ns("sw")
	c.link(sw, "eth0", []string{"192.0.2.10/25"}, c.rt, "eth4", []string{"192.0.2.1/25"})
	c.exec(sw, "ip", "route", "add", "default", "via", "192.0.2.1")
	c.exec(c.rt, "ip", "route", "add", "198.18.64.0/20", "via", "192.0.2.10")
	var batch strings.Builder
	var conns []swConn
	ids := []string{"gw.example.org"}
	for i := range n {
		addr := netip.MustParseAddr("198.18.64.1")
		for range i {
			addr = addr.Next()
		}
		fmt.Fprintf(&batch, "addr add %s/32 dev lo\n", addr)
		id := fmt.Sprintf("sw%d@example.org", i)
		ids = append(ids, id)
		conns = append(conns, swConn{Name: fmt.Sprintf("c%d", i), LocalAddrs: []string{addr.String()}, RemoteAddrs: []string{gw}, VIPs: []string{"0.0.0.0"},
			Proposals: []string{"aes128gcm16-prfsha256-x25519"}, Local: swAuth{Auth: "psk", ID: id}, Remote: swAuth{Auth: "psk", ID: "gw.example.org"},
			Children: []swChild{{Name: "net", RemoteTS: []string{"198.18.1.0/24"}, ESPProposals: []string{"aes128gcm16"}, StartAction: "start"}}})
	}
	cmd := exec.Command("ip", "-n", sw, "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("adding the clients' addresses: %v\n%s", err, out)
	}
	// strongSwan's own retransmission defaults (the lab's are short, for quick tests):
	// a node answering a thousand redirected handshakes at once takes seconds.
	startStrongSwan(c.lab, sw, "clients", swOpts{Conns: conns, Secrets: []swSecret{{IDs: ids, PSK: labPSK}},
		Charon: []string{"retransmit_timeout = 4.0", "retransmit_base = 1.8", "retransmit_tries = 5"}})
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

// strongSwanVersion is the installed strongSwan's version, as its package says.
func strongSwanVersion(t *testing.T) string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "strongswan-charon").Output()
	if err != nil {
		t.Logf("dpkg-query strongswan-charon: %v", err)
		return "(version unknown)"
	}
	return strings.TrimSpace(string(out))
}

// The failover benchmark (scripts/bench.sh cluster, MOBIKEVPN_BENCH_FAILOVER=1): node A
// of three with N load-generator clients is killed (SIGKILL, its links down), and its
// clients are served by the survivors again: by take-over from etcd (method
// "failover": the survivors continue the SAs and ask the clients to switch), or by the
// clients themselves (method "reconnect", the nodes with failover off, as a cluster
// without shared state: each client's liveness check finds A dead and it builds a new
// SA with B or C). Measured: the time from the kill until each client's SA is served by
// a survivor (taken over; or up again there), its median, p99 and last; the
// survivors' CPU and etcd's writes until then; and, for the take-over, a sample client
// of ours pinging 50 times a second: pings lost.
type failoverBenchResult struct {
	Method     string  `json:"method"` // failover | reconnect
	SAs        int     `json:"sas"`
	Served     int     `json:"served"`
	Median     float64 `json:"median_s"`
	P99        float64 `json:"p99_s"`
	Last       float64 `json:"last_s"`
	CPUSeconds float64 `json:"survivors_cpu_seconds"`
	EtcdWrites uint64  `json:"etcd_writes"`
	NewSAs     bool    `json:"new_handshakes"`
	PingsSent  int     `json:"sample_pings_sent,omitempty"`
	PingsLost  int     `json:"sample_pings_lost,omitempty"`
	Note       string  `json:"note"`
}

func TestBenchClusterFailover(t *testing.T) {
	if os.Getenv("MOBIKEVPN_BENCH_FAILOVER") == "" {
		t.Skip("a benchmark: MOBIKEVPN_BENCH_FAILOVER=1 (scripts/bench.sh cluster) runs it")
	}
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("MOBIKEVPN_BENCH_SAS")); err == nil && v > 0 {
		n = v
	}
	var results []failoverBenchResult
	for _, method := range []string{"failover", "reconnect"} {
		t.Run(method, func(t *testing.T) { results = append(results, benchClusterFailover(t, method, n)) })
	}
	for _, r := range results {
		t.Logf("  %-9s %4d of %d served again: median %6.2f s, p99 %6.2f s, last %6.2f s; survivors' CPU %6.2f s, etcd writes %6d; sample flow: %d of %d pings lost (%s)",
			r.Method, r.Served, r.SAs, r.Median, r.P99, r.Last, r.CPUSeconds, r.EtcdWrites, r.PingsLost, r.PingsSent, r.Note)
	}
	if out := os.Getenv("MOBIKEVPN_BENCH_FAILOVER_OUT"); out != "" && len(results) == 2 {
		b, _ := json.MarshalIndent(map[string]any{"sas": n, "results": results,
			"ratios": map[string]float64{"median": results[1].Median / results[0].Median, "p99": results[1].P99 / results[0].P99,
				"cpu": results[1].CPUSeconds / results[0].CPUSeconds, "etcd_writes": float64(results[1].EtcdWrites) / float64(results[0].EtcdWrites)}}, "", "  ")
		if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// benchClusterFailover runs one failover measurement on a fresh cluster.
func benchClusterFailover(t *testing.T, method string, n int) failoverBenchResult {
	const dpd = 10 * time.Second
	extra := ""
	if method == "reconnect" {
		extra = "  failover: false\n"
	}
	c := newClusterNetWith(t, "198.18.16.0/20", extra)
	c.exec(c.srv, "ip", "route", "add", "198.18.16.0/20", "dev", "br0")
	a, b, cc := c.nodes["gw-a"], c.nodes["gw-b"], c.nodes["gw-c"]
	var ping *flow
	if method == "failover" {
		cl, _, _ := c.client("cl", "192.0.2.130", "192.0.2.129", "eth5", "alice@example.org", a.addr)
		ping = c.startFlow(cl, "198.18.1.100", 20*time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lg := c.ns("lg")
	c.link(lg, "eth0", []string{"192.0.2.10/25"}, c.rt, "eth4", []string{"192.0.2.1/25"})
	c.exec(lg, "ip", "route", "add", "default", "via", "192.0.2.1")
	c.exec(lg, "ip", "route", "add", "local", "198.18.64.0/20", "dev", "lo")
	c.exec(c.rt, "ip", "route", "add", "198.18.64.0/20", "via", "192.0.2.10")
	args := []string{"netns", "exec", lg, binary(t), "bench", "handshake", "--target", a.addr, "--sources", "198.18.64.0/20",
		"--count", strconv.Itoa(n), "--concurrency", "100", "--psk", labPSK, "--remote-id", "gw.example.org", "--hold", "30m", "--id-prefix", "a-"}
	if method == "failover" {
		args = append(args, "--rmobike")
	} else {
		args = append(args, "--dpd", dpd.String(), "--reconnect", b.addr+","+cc.addr)
	}
	gen := exec.CommandContext(ctx, "ip", args...)
	var genOut strings.Builder
	gen.Stdout, gen.Stderr = &genOut, &genOut
	if err := gen.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); gen.Wait() }()
	want := n
	if method == "failover" {
		want = n + 1
	}
	if !waitFor(10*time.Minute, func() bool { st := status(t, a.sock); return st != nil && len(st.IKESAs) == want }) {
		t.Fatalf("node A does not have the %d SAs: %d\n%s", want, len(status(t, a.sock).IKESAs), genOut.String())
	}
	time.Sleep(3 * time.Second) // the snapshots and loads are in etcd
	// A's SAs, by SPIs and by the client's identity.
	bySPI, byID := map[string]string{}, map[string]bool{}
	for _, sa := range status(t, a.sock).IKESAs {
		bySPI[sa.SPIi+"-"+sa.SPIr] = sa.RemoteID
		byID[sa.RemoteID] = true
	}
	pids := []int{b.p.cmd.Process.Pid, cc.p.cmd.Process.Pid}
	cpu := func() float64 { return cpuSeconds(pids[0]) + cpuSeconds(pids[1]) }
	cpu0, raft0 := cpu(), c.etcdRaftIndex()
	a.p.cmd.Process.Kill()
	killed := time.Now()
	c.exec(a.ns, "ip", "link", "set", "eth0", "down")
	c.exec(a.ns, "ip", "link", "set", "eth1", "down")
	served := map[string]time.Duration{}
	waitFor(5*time.Minute, func() bool {
		at := time.Since(killed)
		for _, node := range []*clusterNode{b, cc} {
			st := status(t, node.sock)
			if st == nil {
				continue
			}
			for _, sa := range st.IKESAs {
				id := sa.RemoteID
				if method == "failover" {
					id = bySPI[sa.SPIi+"-"+sa.SPIr] // the same SA, taken over
				} else if sa.State != "established" || !byID[id] {
					id = ""
				}
				if _, seen := served[id]; id != "" && !seen {
					served[id] = at
				}
			}
		}
		return len(served) == want
	})
	took := time.Since(killed)
	time.Sleep(3 * time.Second) // what the failover set off settles
	r := failoverBenchResult{Method: method, SAs: want, Served: len(served), CPUSeconds: cpu() - cpu0, EtcdWrites: c.etcdRaftIndex() - raft0,
		NewSAs: method == "reconnect"}
	var times []time.Duration
	for _, d := range served {
		times = append(times, d)
	}
	slices.Sort(times)
	if len(times) > 0 {
		r.Median, r.P99, r.Last = times[len(times)/2].Seconds(), times[len(times)*99/100].Seconds(), times[len(times)-1].Seconds()
	}
	if method == "failover" {
		r.Note = "taken over from etcd (3 s lease TTL), the clients asked to switch: same SAs"
		rs := ping.stop()
		r.PingsSent, r.PingsLost = ping.sent, len(ping.missing(rs))
	} else {
		r.Note = fmt.Sprintf("the clients' liveness checks (%v, retransmitted 4 times from 2 s) find A dead, new handshakes with B or C", dpd)
	}
	if r.Served != want {
		t.Errorf("%s: %d of %d SAs served again within %v", method, r.Served, want, took.Round(time.Second))
	}
	t.Logf("%s: %d of %d served again, median %.2f s, p99 %.2f s, last %.2f s; survivors' CPU %.2f s, etcd writes %d; sample pings lost %d of %d",
		method, r.Served, want, r.Median, r.P99, r.Last, r.CPUSeconds, r.EtcdWrites, r.PingsLost, r.PingsSent)
	return r
}
