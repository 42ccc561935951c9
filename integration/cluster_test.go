package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A gateway cluster of three nodes in their own namespaces, each with its own
// client-facing address, coordinated through a real etcd server in a namespace of its
// own, and all on an inner segment (a bridge in the server's namespace) with a server
// behind them. The nodes share one pool of virtual IPs on that segment's subnet and
// answer ARP for the addresses they serve (cluster.inner mode arp).

// clusterNet is that cluster.
type clusterNet struct {
	*lab
	rt, et, srv string
	keyFile     string
	etcd        []*proc    // the members
	etcdArgs    [][]string // how each was started (restartEtcd)
	endpoints   []string   // their client URLs
	nodes       map[string]*clusterNode
	pool        string // the nodes' pool of virtual IPs
	extra       string // more lines of the nodes' cluster: sections
}

type clusterNode struct {
	name, ns, addr, sock string
	p                    *proc
}

// The nodes: their client-facing addresses and the router's address on their link.
var clusterNodes = []struct{ name, addr, rt string }{
	{"gw-a", "198.51.100.1/25", "198.51.100.126/25"},
	{"gw-b", "203.0.113.1/24", "203.0.113.254/24"},
	{"gw-c", "198.51.100.129/25", "198.51.100.254/25"},
}

func newClusterNet(t *testing.T) *clusterNet { return newClusterNetPool(t, "198.18.1.128/25") }

// newClusterNetPool is newClusterNet with the nodes' pool of virtual IPs (within the
// inner segment 198.18.1.0/24, or beyond it for clients that send nothing).
func newClusterNetPool(t *testing.T, pool string) *clusterNet {
	return newClusterNetWith(t, pool, "")
}

// newClusterNetWith is newClusterNetPool with extra lines in the nodes' cluster:
// sections (indented by 2).
func newClusterNetWith(t *testing.T, pool, extra string) *clusterNet {
	if _, err := exec.LookPath("etcd"); err != nil {
		t.Skip("etcd is not installed (scripts/test.sh installs Debian's etcd-server)")
	}
	c := &clusterNet{lab: newLab(t), nodes: make(map[string]*clusterNode), pool: pool, extra: extra}
	c.rt, c.et, c.srv = c.ns("rt"), c.ns("et"), c.ns("srv")
	c.exec(c.rt, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	c.link(c.et, "eth0", []string{"198.18.9.1/24"}, c.rt, "eth9", []string{"198.18.9.254/24"})
	c.exec(c.et, "ip", "route", "add", "default", "via", "198.18.9.254")
	c.exec(c.srv, "ip", "link", "add", "br0", "type", "bridge")
	c.exec(c.srv, "ip", "addr", "add", "198.18.1.100/24", "dev", "br0")
	c.exec(c.srv, "ip", "link", "set", "br0", "up")
	for i, n := range clusterNodes {
		ns := c.ns(strings.TrimPrefix(n.name, "gw-"))
		c.link(ns, "eth0", []string{n.addr}, c.rt, fmt.Sprintf("eth%d", i+1), []string{n.rt})
		c.exec(ns, "ip", "route", "add", "default", "via", strings.Split(n.rt, "/")[0])
		c.link(ns, "eth1", []string{fmt.Sprintf("198.18.1.%d/24", i+1)}, c.srv, "in-"+n.name, nil)
		c.exec(c.srv, "ip", "link", "set", "in-"+n.name, "master", "br0")
		c.exec(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		c.nodes[n.name] = &clusterNode{name: n.name, ns: ns, addr: strings.Split(n.addr, "/")[0],
			sock: filepath.Join(c.dir, n.name+".sock")}
	}
	// etcd: three members in their own namespace.
	var peers []string
	for i := 1; i <= 3; i++ {
		if i > 1 {
			c.exec(c.et, "ip", "addr", "add", fmt.Sprintf("198.18.9.%d/24", i), "dev", "eth0")
		}
		peers = append(peers, fmt.Sprintf("e%d=http://198.18.9.%d:2380", i, i))
		c.endpoints = append(c.endpoints, fmt.Sprintf("http://198.18.9.%d:2379", i))
	}
	for i := 1; i <= 3; i++ {
		ip := fmt.Sprintf("198.18.9.%d", i)
		args := []string{"etcd", "--name", fmt.Sprintf("e%d", i),
			"--data-dir", filepath.Join(c.dir, fmt.Sprintf("etcd%d", i)),
			"--listen-client-urls", "http://" + ip + ":2379", "--advertise-client-urls", "http://" + ip + ":2379",
			"--listen-peer-urls", "http://" + ip + ":2380", "--initial-advertise-peer-urls", "http://" + ip + ":2380",
			"--initial-cluster", strings.Join(peers, ","), "--initial-cluster-state", "new"}
		c.etcdArgs = append(c.etcdArgs, args)
		c.etcd = append(c.etcd, c.start(fmt.Sprintf("etcd-e%d", i), c.et, args...))
	}
	c.keyFile = filepath.Join(c.dir, "cluster.key")
	writeFile(t, c.keyFile, strings.Repeat("c3", 32)+"\n")
	if !waitFor(30*time.Second, func() bool {
		return exec.Command("ip", "netns", "exec", c.et, "etcdctl", "--endpoints", strings.Join(c.endpoints, ","), "endpoint", "health").Run() == nil
	}) {
		t.Fatalf("etcd did not come up:\n%s", c.etcd[0].output())
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range c.procs {
				t.Logf("%s log, last lines without control requests:\n%s", p.name, lastLines(withoutControl(p.output()), 80))
			}
		}
	})
	for _, n := range clusterNodes {
		c.startNode(n.name)
	}
	return c
}

// startNode starts node name and waits for its control socket.
func (c *clusterNet) startNode(name string) {
	n := c.nodes[name]
	cfg := filepath.Join(c.dir, name+".yaml")
	writeFile(c.t, cfg, fmt.Sprintf(`control: %s
log_level: debug
tun: { name: mvpn0, mtu: 1400 }
secrets:
  - ids: [gw.example.org]
    psk: %q
pools:
  - name: rw
    addrs: %s
connections:
  rw:
    local_addrs: [%s]
    remote_addrs: ["%%any"]
    proposals: [aes128gcm16-prfsha256-x25519]
    local: { auth: psk, id: gw.example.org }
    remote: { auth: psk, id: "%%any" }
    pools: [rw]
    children:
      net:
        local_ts: [198.18.1.0/24]
        remote_ts: [dynamic]
        esp_proposals: [aes128gcm16]
cluster:
  node: %s
  etcd: { endpoints: [%s] }
  state_key_file: %s
  lease_ttl: 3s
  inner: { mode: arp, interface: eth1 }
%s`, n.sock, labPSK, c.pool, n.addr, name, strings.Join(c.endpoints, ", "), c.keyFile, c.extra))
	args := []string{binary(c.t), "run", "-c", cfg}
	if dir := os.Getenv("MOBIKEVPN_PROFILE_DIR"); dir != "" {
		// A CPU profile of each node (for developers), written when it stops.
		args = append([]string{"env", "MOBIKEVPN_CPUPROFILE=" + filepath.Join(dir, name+".prof")}, args...)
	}
	n.p = c.start(name, n.ns, args...)
	if !waitFor(15*time.Second, func() bool { return status(c.t, n.sock) != nil }) {
		c.t.Fatalf("node %s did not open its control socket:\n%s", name, n.p.output())
	}
}

// client starts a client daemon named name at addr/25 behind the router (at rtAddr on
// its interface eth) with identity id, connected to the node at gw, and waits for its
// SA.
func (c *clusterNet) client(name, addr, rtAddr, eth, id, gw string) (ns, sock string, p *proc) {
	return c.clientWith(name, addr, rtAddr, eth, id, gw, "")
}

// clientWith is client with extra lines in the client's connection (indented by 4).
func (c *clusterNet) clientWith(name, addr, rtAddr, eth, id, gw, extra string) (ns, sock string, p *proc) {
	ns = c.ns(name)
	c.link(ns, "eth0", []string{addr + "/25"}, c.rt, eth, []string{rtAddr + "/25"})
	c.exec(ns, "ip", "route", "add", "default", "via", rtAddr)
	sock = filepath.Join(c.dir, name+".sock")
	cfg := filepath.Join(c.dir, name+".yaml")
	writeFile(c.t, cfg, fmt.Sprintf(`control: %s
log_level: debug
tun: { name: mvpn0, mtu: 1400 }
secrets:
  - ids: [gw.example.org]
    psk: %q
connections:
  home:
    remote_addrs: [%s]
    proposals: [aes128gcm16-prfsha256-x25519]
    local: { auth: psk, id: %s }
    remote: { auth: psk, id: gw.example.org }
    vips: [0.0.0.0]
    start_action: start
%s    children:
      net:
        local_ts: [dynamic]
        remote_ts: [198.18.1.0/24]
        esp_proposals: [aes128gcm16]
`, sock, labPSK, gw, id, extra))
	p = c.start(name, ns, binary(c.t), "run", "-c", cfg)
	if !waitFor(20*time.Second, func() bool {
		st := status(c.t, sock)
		return st != nil && len(st.IKESAs) == 1 && len(st.IKESAs[0].ChildSAs) == 1 && len(st.IKESAs[0].VirtualIPs) == 1
	}) {
		c.t.Fatalf("client %s did not connect with a virtual IP: %+v\n%s", name, status(c.t, sock), p.output())
	}
	return ns, sock, p
}

// etcdLeader returns the index of etcd's leader among c.etcd.
func (c *clusterNet) etcdLeader() int {
	out := c.exec(c.et, "etcdctl", "--endpoints", strings.Join(c.endpoints, ","), "endpoint", "status", "-w", "json")
	var sts []struct {
		Endpoint string
		Status   struct {
			Header struct {
				MemberID uint64 `json:"member_id"`
			} `json:"header"`
			Leader uint64 `json:"leader"`
		}
	}
	if err := json.Unmarshal([]byte(out), &sts); err != nil {
		c.t.Fatalf("etcdctl endpoint status: %v\n%s", err, out)
	}
	for _, st := range sts {
		if st.Status.Leader != 0 && st.Status.Header.MemberID == st.Status.Leader {
			return slices.Index(c.endpoints, st.Endpoint)
		}
	}
	c.t.Fatalf("no etcd leader:\n%s", out)
	return -1
}

func (c *clusterNet) mobikevpn(args ...string) (string, error) {
	out, err := exec.Command(binary(c.t), args...).CombinedOutput()
	return string(out), err
}

// A client connected to node A is moved to node B with `mobikevpn move --peer`
// (SWITCH_TO_IP_ADDRESS) under a 50/s ping to the server and a TCP stream from the
// server to the client (behind a NAT): no new handshake, no ping lost, the stream
// intact, the virtual IP kept and answered for by B on the inner segment, an etcd member
// killed meanwhile; the other client of A stays. Then `move --all` moves the rest of A's
// SAs (that second client) to B, `drain` of B moves both on, and a new client of B is
// redirected in IKE_SA_INIT.
func TestClusterMove(t *testing.T) {
	c := newClusterNet(t)
	a, b := c.nodes["gw-a"], c.nodes["gw-b"]
	// The first client is behind a NAT: the router masquerades it towards the nodes, as
	// a different address towards each.
	c.exec(c.rt, "nft", "add table ip nat; add chain ip nat post { type nat hook postrouting priority 100; }; add rule ip nat post ip saddr 192.0.2.0/25 oifname { eth1, eth2, eth3 } masquerade")
	cl, clSock, clp := c.client("cl", "192.0.2.10", "192.0.2.1", "eth4", "alice@example.org", a.addr)
	// The client heard of the other nodes' addresses.
	if !waitFor(10*time.Second, func() bool {
		st := status(t, clSock)
		return st != nil && strings.Contains(strings.Join(st.IKESAs[0].PeerAdditionalAddrs, ","), b.addr)
	}) {
		t.Fatalf("the client was not told of node B: %+v", status(t, clSock))
	}
	before := status(t, clSock).IKESAs[0]
	vip := before.VirtualIPs[0]
	// A second client of A, moved afterwards with the rest of A's SAs (`move --all`).
	_, bobSock, _ := c.client("cl2", "192.0.2.130", "192.0.2.129", "eth5", "bob@example.org", a.addr)
	bobBefore := status(t, bobSock).IKESAs[0]
	if out, err := c.mobikevpn("cluster", "status", "--json", "--control", a.sock); err != nil || !strings.Contains(out, `"name": "gw-c"`) || !strings.Contains(out, `"self": "gw-a"`) {
		t.Fatalf("cluster status: %v\n%s", err, out)
	}
	macA := strings.Fields(c.exec(a.ns, "cat", "/sys/class/net/eth1/address"))[0]
	macB := strings.Fields(c.exec(b.ns, "cat", "/sys/class/net/eth1/address"))[0]
	c.exec(c.srv, "ping", "-c1", "-W2", vip)
	if n := c.exec(c.srv, "ip", "neigh", "show", vip); !strings.Contains(n, macA) {
		t.Fatalf("the server does not reach %s through node A (%s): %s", vip, macA, n)
	}

	// A 50/s ping to the server and a TCP stream from the server to the client, across
	// the move.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pingOut := make(chan string, 1)
	go func() {
		o, _ := exec.CommandContext(ctx, "ip", "netns", "exec", cl, "ping", "-i", "0.02", "-c", "200", "-W", "1", "198.18.1.100").CombinedOutput()
		pingOut <- string(o)
	}()
	tcpDone := make(chan float64, 1)
	// The stream is paced at 100 Mbit/s, a fraction of what the tunnel carries: at full
	// speed it fills the queues of the path, and on a slow machine a ping is then lost to
	// congestion now and then, which says nothing about the move.
	go func() { tcpDone <- c.tcpTransferPaced(c.srv, cl, "0.0.0.0:5001", vip+":5001", 64<<20, 100e6/8) }()
	time.Sleep(time.Second)
	// An etcd member (not the leader: an election would hold the SA's traffic for a
	// second or so) is killed while the move runs; the nodes' clients, which spread
	// their requests over all members, carry on with the two left.
	killed := (c.etcdLeader() + 1) % len(c.etcd)
	go func() {
		time.Sleep(20 * time.Millisecond)
		c.etcd[killed].cmd.Process.Kill()
	}()
	// IKE on the client's wire (not its ESP: UDP 4500 with the non-ESP marker).
	capt := c.startCapture("move", cl, "eth0", "udp port 500 or (udp port 4500 and udp[8:4] = 0)")
	start := time.Now()
	out, err := c.mobikevpn("move", "--to-node", "gw-b", "--peer", "alice@example.org", "--wait", "20s", "--control", a.sock)
	took := time.Since(start)
	if err != nil || !strings.Contains(out, "moved: alice@example.org") || strings.Contains(out, "bob@") {
		t.Fatalf("move of alice's SA: %v\n%s", err, out)
	}
	capt.stop()
	exchanges := map[string]int{}
	for _, ln := range strings.Split(strings.TrimSpace(capt.tshark("-T", "fields", "-e", "isakmp.exchangetype")), "\n") {
		exchanges[strings.TrimSpace(ln)]++
	}
	if exchanges["34"] != 0 || exchanges["37"] < 4 {
		t.Errorf("IKE on the client's wire during the move, by exchange type: %v (want no IKE_SA_INIT (34), and the switch and the update (37))", exchanges)
	}
	po := <-pingOut
	mbps := <-tcpDone // fails the test itself if the stream broke or was corrupted
	after := status(t, clSock).IKESAs[0]
	if after.Remote != b.addr+":4500" || after.SPIi != before.SPIi || after.SPIr != before.SPIr || after.VirtualIPs[0] != vip {
		t.Errorf("the client after the move: remote %s, SPIs %s/%s (were %s/%s), virtual IP %v (was %s)",
			after.Remote, after.SPIi, after.SPIr, before.SPIi, before.SPIr, after.VirtualIPs, vip)
	}
	// A forgets the SA after a grace (2 s) for what is still on its way to it, and keeps
	// bob's.
	if !waitFor(5*time.Second, func() bool {
		st := status(t, a.sock)
		return len(st.IKESAs) == 1 && st.IKESAs[0].SPIi == bobBefore.SPIi
	}) {
		t.Errorf("node A's SAs after alice's move: %+v", status(t, a.sock).IKESAs)
	}
	if st := status(t, b.sock); len(st.IKESAs) != 1 || st.IKESAs[0].SPIi != before.SPIi {
		t.Errorf("node B's SAs: %+v", st.IKESAs)
	}
	if n := strings.Count(clp.output(), "sending IKE_SA_INIT request"); n != 1 {
		t.Errorf("the client sent %d IKE_SA_INIT requests (one handshake expected)", n)
	}
	// No ping lost. When the server's traffic moves from A to B (B's gratuitous ARP), a
	// packet A encrypted just before can reach the client after B's first one, whose
	// sequence number is above A's whole range: the client's replay window keeps the
	// window from before such a jump for A's tail, so that nothing is dropped as a
	// replay (which once cost about one ping reply in ten moves).
	m := countsRe.FindStringSubmatch(po)
	if m == nil || m[1] != m[2] {
		// On one line: a summary of the output keeps only the lines a test writes.
		t.Fatalf("pings lost across the move (moved %v after the first ping, `move` took %v): %s; icmp_seq missing %v; drops: client %v, A %v, B %v; ping output:\n%s",
			time.Second, took.Round(time.Millisecond), strings.TrimSpace(m0(m)), missingSeqs(po, 200), nonZero(status(t, clSock).Drops),
			nonZero(status(t, a.sock).Drops), nonZero(status(t, b.sock).Drops), po)
	}
	if n := status(t, clSock).Drops["esp_replay"]; n != 0 {
		t.Errorf("the client dropped %d packets as replays across the move", n)
	}
	if n := c.exec(c.srv, "ip", "neigh", "show", vip); !strings.Contains(n, macB) {
		t.Errorf("the server does not reach %s through node B (%s) after the move: %s", vip, macB, n)
	}
	if !waitFor(10*time.Second, func() bool { return !strings.Contains(c.exec(a.ns, "ip", "neigh", "show", "proxy"), vip) }) {
		t.Errorf("node A still answers for %s", vip)
	}
	t.Logf("move of one SA from node A to node B, etcd member e%d killed 20 ms into it: `move --wait` returned after %v; %s; pings: %s sent, %s answered; TCP from the server %.0f Mbit/s intact; IKE messages on the client's wire by exchange type: %v",
		killed+1, took.Round(time.Millisecond), strings.ReplaceAll(strings.TrimSpace(out), "\n", "; "), m[1], m[2], mbps, exchanges)

	// Then all of A's SAs (bob's) to B: A ends with none, bob keeps his SPIs.
	out, err = c.mobikevpn("move", "--to-node", "gw-b", "--all", "--wait", "20s", "--control", a.sock)
	if err != nil || !strings.Contains(out, "moved: bob@example.org") {
		t.Fatalf("move --all: %v\n%s", err, out)
	}
	if bob := status(t, bobSock).IKESAs[0]; bob.Remote != b.addr+":4500" || bob.SPIi != bobBefore.SPIi || bob.VirtualIPs[0] != bobBefore.VirtualIPs[0] {
		t.Errorf("bob after move --all: %+v (before: %+v)", bob, bobBefore)
	}
	if !waitFor(5*time.Second, func() bool { return len(status(t, a.sock).IKESAs) == 0 && len(status(t, b.sock).IKESAs) == 2 }) {
		t.Errorf("after move --all: A %d SAs, B %d", len(status(t, a.sock).IKESAs), len(status(t, b.sock).IKESAs))
	}
	t.Logf("move --all: %s", strings.ReplaceAll(strings.TrimSpace(out), "\n", "; "))

	// drain B: the SA moves on, B takes no new client.
	out, err = c.mobikevpn("drain", "--wait", "10s", "--control", b.sock)
	if err != nil || !strings.Contains(out, "moved: alice@example.org") || !strings.Contains(out, "moved: bob@example.org") {
		t.Fatalf("drain: %v\n%s", err, out)
	}
	if st := status(t, clSock).IKESAs[0]; st.Remote == b.addr+":4500" || st.SPIi != before.SPIi {
		t.Errorf("the client after the drain: %+v", st)
	}
	if out, err := c.mobikevpn("cluster", "status", "--control", a.sock); err != nil || !strings.Contains(out, "gw-b") {
		t.Errorf("cluster status: %v\n%s", err, out)
	} else if !strings.Contains(strings.Join(strings.Fields(lineWith(out, "gw-b")), " "), "gw-b true true") {
		t.Errorf("cluster status does not show gw-b draining:\n%s", out)
	}
	_, carolSock, carolp := c.client("cl3", "198.18.20.10", "198.18.20.1", "eth6", "carol@example.org", b.addr)
	carol := status(t, carolSock).IKESAs[0]
	waitFor(5*time.Second, func() bool { return len(status(t, b.sock).IKESAs) == 0 }) // B forgets the SAs it moved after a grace
	if carol.Remote == b.addr+":4500" || carol.VirtualIPs[0] == vip || carol.VirtualIPs[0] == bobBefore.VirtualIPs[0] || len(status(t, b.sock).IKESAs) != 0 {
		t.Errorf("the new client of the drained node: %+v; B has %d SAs", carol, len(status(t, b.sock).IKESAs))
	}
	if !strings.Contains(carolp.output(), "redirected") {
		t.Error("the new client's log does not say it was redirected")
	}
	t.Logf("drain of B: %s; a new client of B was redirected to %s and got %s",
		strings.ReplaceAll(strings.TrimSpace(out), "\n", "; "), carol.Remote, carol.VirtualIPs[0])
}

// lineWith returns the first line of s containing sub.
func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}

// strongSwan's client (no R-MOBIKE; it follows redirects by default) connected to node
// A: `move` redirects it to B (RFC 5685 6) and it builds a new IKE SA there; `drain` of
// B redirects it again; a new connection of it to the draining B is redirected in
// IKE_SA_INIT (RFC 5685 4). Traffic to the server flows after each.
func TestClusterRedirectStrongSwan(t *testing.T) {
	c := newClusterNet(t)
	a, b := c.nodes["gw-a"], c.nodes["gw-b"]
	sw := c.ns("sw")
	c.link(sw, "eth0", []string{"192.0.2.10/25"}, c.rt, "eth4", []string{"192.0.2.1/25"})
	c.exec(sw, "ip", "route", "add", "default", "via", "192.0.2.1")
	conn := func(name, gw string) swConn {
		return swConn{Name: name, RemoteAddrs: []string{gw}, Proposals: []string{"aes128gcm16-prfsha256-x25519"},
			VIPs: []string{"0.0.0.0"}, Local: swAuth{Auth: "psk", ID: "alice@example.org"}, Remote: swAuth{Auth: "psk", ID: "gw.example.org"},
			Children: []swChild{{Name: "net", RemoteTS: []string{"198.18.1.0/24"}, ESPProposals: []string{"aes128gcm16"}}}}
	}
	s := startStrongSwan(c.lab, sw, "client", swOpts{Conns: []swConn{conn("home", a.addr), conn("late", b.addr)},
		Secrets: []swSecret{{IDs: []string{"gw.example.org", "alice@example.org"}, PSK: labPSK}}})
	s.mustInitiate("home", "net")
	// sas is strongSwan's established IKE SAs, by remote host.
	sas := func() map[string]int {
		out := map[string]int{}
		for _, sa := range s.listSAs() {
			if sa.KV["state"] == "ESTABLISHED" && len(sa.Children) == 1 {
				out[sa.KV["remote-host"]]++
			}
		}
		return out
	}
	if got := sas(); got[a.addr] != 1 {
		t.Fatalf("strongSwan's SAs: %v", got)
	}
	c.exec(sw, "ping", "-c1", "-W2", "198.18.1.100")

	out, err := c.mobikevpn("move", "--to-node", "gw-b", "--all", "--wait", "20s", "--control", a.sock)
	if err != nil || !strings.Contains(out, "redirected: alice@example.org") {
		t.Fatalf("move: %v\n%s", err, out)
	}
	if !waitFor(10*time.Second, func() bool { got := sas(); return len(got) == 1 && got[b.addr] == 1 }) {
		t.Fatalf("strongSwan did not follow the redirect to B: %v\n%s", sas(), lastLines(withoutVici(s.log()), 40))
	}
	c.exec(sw, "ping", "-c1", "-W2", "198.18.1.100")
	if len(status(t, a.sock).IKESAs) != 0 || len(status(t, b.sock).IKESAs) != 1 {
		t.Errorf("A has %d SAs, B %d", len(status(t, a.sock).IKESAs), len(status(t, b.sock).IKESAs))
	}
	t.Logf("strongSwan redirected from A to B by `move`: %s", strings.ReplaceAll(strings.TrimSpace(out), "\n", "; "))

	out, err = c.mobikevpn("drain", "--wait", "20s", "--control", b.sock)
	if err != nil || !strings.Contains(out, "redirected: alice@example.org") {
		t.Fatalf("drain: %v\n%s", err, out)
	}
	if !waitFor(10*time.Second, func() bool { got := sas(); return len(got) == 1 && got[b.addr] == 0 }) {
		t.Fatalf("strongSwan did not leave the drained B: %v", sas())
	}
	c.exec(sw, "ping", "-c1", "-W2", "198.18.1.100")
	// A new connection to the drained B: redirected in IKE_SA_INIT, up elsewhere.
	s.mustInitiate("late", "net")
	if got := sas(); got[b.addr] != 0 || got[a.addr]+got[c.nodes["gw-c"].addr] == 0 {
		t.Errorf("strongSwan's SAs after connecting to the drained B: %v", got)
	}
	if n := strings.Count(strings.ToLower(s.log()), "redirect"); n == 0 {
		t.Error("strongSwan's log says nothing of a redirect")
	}
	t.Logf("drain of B: %s; strongSwan's new connection to B went to %v", strings.ReplaceAll(strings.TrimSpace(out), "\n", "; "), sas())
}

// m0 is the whole match of a regexp's submatches ("" for none).
func m0(m []string) string {
	if len(m) == 0 {
		return "no ping summary"
	}
	return m[0]
}

// missingSeqs lists the icmp_seq numbers 1..n that ping's output has no reply for.
func missingSeqs(out string, n int) []int {
	got := map[int]bool{}
	for _, f := range strings.Fields(out) {
		if v, ok := strings.CutPrefix(f, "icmp_seq="); ok {
			if i, err := strconv.Atoi(v); err == nil {
				got[i] = true
			}
		}
	}
	var miss []int
	for i := 1; i <= n; i++ {
		if !got[i] {
			miss = append(miss, i)
		}
	}
	return miss
}

// nonZero keeps the counters that are not 0.
func nonZero(m map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// restartEtcd starts member i (0-based) again, on its data (after it was killed).
func (c *clusterNet) restartEtcd(i int) {
	c.etcd[i] = c.start(fmt.Sprintf("etcd-e%d-again", i+1), c.et, c.etcdArgs[i]...)
}

// clusterStatus is a node's `cluster status --json`.
func (c *clusterNet) clusterStatus(n *clusterNode) (st struct {
	Self  string `json:"self"`
	Etcd  string `json:"etcd"`
	Nodes []struct {
		Name   string `json:"name"`
		IKESAs int    `json:"ike_sas"`
	} `json:"nodes"`
}) {
	out, err := c.mobikevpn("cluster", "status", "--json", "--control", n.sock)
	if err != nil {
		c.t.Logf("cluster status of %s: %v\n%s", n.name, err, out)
		return st
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		c.t.Fatalf("cluster status of %s: %v\n%s", n.name, err, out)
	}
	return st
}
