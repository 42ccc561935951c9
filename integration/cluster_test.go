package integration

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
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
	etcd        *proc
	nodes       map[string]*clusterNode
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

func newClusterNet(t *testing.T) *clusterNet {
	if _, err := exec.LookPath("etcd"); err != nil {
		t.Skip("etcd is not installed (scripts/test.sh installs Debian's etcd-server)")
	}
	c := &clusterNet{lab: newLab(t), nodes: make(map[string]*clusterNode)}
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
	c.etcd = c.start("etcd", c.et, "etcd", "--name", "e1", "--data-dir", filepath.Join(c.dir, "etcd"),
		"--listen-client-urls", "http://198.18.9.1:2379", "--advertise-client-urls", "http://198.18.9.1:2379",
		"--listen-peer-urls", "http://198.18.9.1:2380", "--initial-advertise-peer-urls", "http://198.18.9.1:2380",
		"--initial-cluster", "e1=http://198.18.9.1:2380")
	c.keyFile = filepath.Join(c.dir, "cluster.key")
	writeFile(t, c.keyFile, strings.Repeat("c3", 32)+"\n")
	if !waitFor(30*time.Second, func() bool {
		return exec.Command("ip", "netns", "exec", c.et, "etcdctl", "--endpoints", "http://198.18.9.1:2379", "endpoint", "health").Run() == nil
	}) {
		t.Fatalf("etcd did not come up:\n%s", c.etcd.output())
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
    addrs: 198.18.1.128/25
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
  etcd: { endpoints: [http://198.18.9.1:2379] }
  state_key_file: %s
  lease_ttl: 3s
  inner: { mode: arp, interface: eth1 }
`, n.sock, labPSK, n.addr, name, c.keyFile))
	n.p = c.start(name, n.ns, binary(c.t), "run", "-c", cfg)
	if !waitFor(15*time.Second, func() bool { return status(c.t, n.sock) != nil }) {
		c.t.Fatalf("node %s did not open its control socket:\n%s", name, n.p.output())
	}
}

// client starts a client daemon named name at addr/25 behind the router (at rtAddr on
// its interface eth) with identity id, connected to the node at gw, and waits for its
// SA.
func (c *clusterNet) client(name, addr, rtAddr, eth, id, gw string) (ns, sock string, p *proc) {
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
    children:
      net:
        local_ts: [dynamic]
        remote_ts: [198.18.1.0/24]
        esp_proposals: [aes128gcm16]
`, sock, labPSK, gw, id))
	p = c.start(name, ns, binary(c.t), "run", "-c", cfg)
	if !waitFor(20*time.Second, func() bool {
		st := status(c.t, sock)
		return st != nil && len(st.IKESAs) == 1 && len(st.IKESAs[0].ChildSAs) == 1 && len(st.IKESAs[0].VirtualIPs) == 1
	}) {
		c.t.Fatalf("client %s did not connect with a virtual IP: %+v\n%s", name, status(c.t, sock), p.output())
	}
	return ns, sock, p
}

func (c *clusterNet) mobikevpn(args ...string) (string, error) {
	out, err := exec.Command(binary(c.t), args...).CombinedOutput()
	return string(out), err
}

// A client connected to node A is moved to node B with `mobikevpn move`
// (SWITCH_TO_IP_ADDRESS) under a 50/s ping to the server and a TCP stream from the
// server to the client: no new handshake, no ping lost, the stream intact, the virtual
// IP kept and answered for by B on the inner segment. Then `drain` of B moves it on to
// another node, and a new client of B is redirected in IKE_SA_INIT.
func TestClusterMove(t *testing.T) {
	c := newClusterNet(t)
	a, b := c.nodes["gw-a"], c.nodes["gw-b"]
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
	go func() { tcpDone <- c.tcpTransfer(c.srv, cl, "0.0.0.0:5001", vip+":5001", 1<<30) }()
	time.Sleep(time.Second)
	start := time.Now()
	out, err := c.mobikevpn("move", "--to-node", "gw-b", "--all", "--wait", "10s", "--control", a.sock)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("move: %v\n%s", err, out)
	}
	po := <-pingOut
	mbps := <-tcpDone // fails the test itself if the stream broke or was corrupted
	after := status(t, clSock).IKESAs[0]
	if after.Remote != b.addr+":4500" || after.SPIi != before.SPIi || after.SPIr != before.SPIr || after.VirtualIPs[0] != vip {
		t.Errorf("the client after the move: remote %s, SPIs %s/%s (were %s/%s), virtual IP %v (was %s)",
			after.Remote, after.SPIi, after.SPIr, before.SPIi, before.SPIr, after.VirtualIPs, vip)
	}
	if st := status(t, a.sock); len(st.IKESAs) != 0 {
		t.Errorf("node A still has %d SAs", len(st.IKESAs))
	}
	if st := status(t, b.sock); len(st.IKESAs) != 1 || st.IKESAs[0].SPIi != before.SPIi {
		t.Errorf("node B's SAs: %+v", st.IKESAs)
	}
	if n := strings.Count(clp.output(), "sending IKE_SA_INIT request"); n != 1 {
		t.Errorf("the client sent %d IKE_SA_INIT requests (one handshake expected)", n)
	}
	m := countsRe.FindStringSubmatch(po)
	if m == nil || m[1] != m[2] {
		t.Fatalf("pings lost across the move:\n%s", po)
	}
	if n := c.exec(c.srv, "ip", "neigh", "show", vip); !strings.Contains(n, macB) {
		t.Errorf("the server does not reach %s through node B (%s) after the move: %s", vip, macB, n)
	}
	if !waitFor(10*time.Second, func() bool { return !strings.Contains(c.exec(a.ns, "ip", "neigh", "show", "proxy"), vip) }) {
		t.Errorf("node A still answers for %s", vip)
	}
	t.Logf("move of one SA from node A to node B: `move --wait` returned after %v; %s; pings: %s sent, %s answered; TCP from the server %.0f Mbit/s intact",
		took.Round(time.Millisecond), strings.ReplaceAll(strings.TrimSpace(out), "\n", "; "), m[1], m[2], mbps)

	// drain B: the SA moves on, B takes no new client.
	out, err = c.mobikevpn("drain", "--wait", "10s", "--control", b.sock)
	if err != nil || !strings.Contains(out, "moved: alice@example.org") {
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
	_, bobSock, bobp := c.client("cl2", "192.0.2.130", "192.0.2.129", "eth5", "bob@example.org", b.addr)
	bob := status(t, bobSock).IKESAs[0]
	if bob.Remote == b.addr+":4500" || bob.VirtualIPs[0] == vip || len(status(t, b.sock).IKESAs) != 0 {
		t.Errorf("the new client of the drained node: %+v; B has %d SAs", bob, len(status(t, b.sock).IKESAs))
	}
	if !strings.Contains(bobp.output(), "redirected") {
		t.Error("the new client's log does not say it was redirected")
	}
	t.Logf("drain of B: %s; a new client of B was redirected to %s and got %s",
		strings.ReplaceAll(strings.TrimSpace(out), "\n", "; "), bob.Remote, bob.VirtualIPs[0])
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
