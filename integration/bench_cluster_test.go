package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
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
	r.PingsSent, r.PingsLost = ping.sent, ping.sent-len(replies)
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
