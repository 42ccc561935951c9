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

// A gateway cluster of two nodes in their own namespaces, each with its own address,
// coordinated through a real etcd server in a namespace of its own; a client connected
// to node A is moved to node B with `mobikevpn move` (SWITCH_TO_IP_ADDRESS) under a
// 50/s ping: no new handshake, no ping lost.

func TestClusterMove(t *testing.T) {
	if _, err := exec.LookPath("etcd"); err != nil {
		t.Skip("etcd is not installed (scripts/test.sh installs Debian's etcd-server)")
	}
	l := newLab(t)
	cl, rt, gwa, gwb, et := l.ns("cl"), l.ns("rt"), l.ns("gwa"), l.ns("gwb"), l.ns("et")
	l.link(cl, "eth0", []string{"192.0.2.10/24"}, rt, "eth0", []string{"192.0.2.1/24"})
	l.link(gwa, "eth0", []string{"198.51.100.1/24"}, rt, "eth1", []string{"198.51.100.254/24"})
	l.link(gwb, "eth0", []string{"203.0.113.1/24"}, rt, "eth2", []string{"203.0.113.254/24"})
	l.link(et, "eth0", []string{"198.18.9.1/24"}, rt, "eth3", []string{"198.18.9.254/24"})
	l.exec(rt, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	for ns, gw := range map[string]string{cl: "192.0.2.1", gwa: "198.51.100.254", gwb: "203.0.113.254", et: "198.18.9.254"} {
		l.exec(ns, "ip", "route", "add", "default", "via", gw)
	}
	etcd := l.start("etcd", et, "etcd", "--name", "e1", "--data-dir", filepath.Join(l.dir, "etcd"),
		"--listen-client-urls", "http://198.18.9.1:2379", "--advertise-client-urls", "http://198.18.9.1:2379",
		"--listen-peer-urls", "http://198.18.9.1:2380", "--initial-advertise-peer-urls", "http://198.18.9.1:2380",
		"--initial-cluster", "e1=http://198.18.9.1:2380")
	keyFile := filepath.Join(l.dir, "cluster.key")
	writeFile(t, keyFile, strings.Repeat("c3", 32)+"\n")
	node := func(name, addr string) (*proc, string) {
		sock := filepath.Join(l.dir, name+".sock")
		cfg := filepath.Join(l.dir, name+".yaml")
		writeFile(t, cfg, fmt.Sprintf(`control: %s
log_level: debug
tun: { name: mvpn0, mtu: 1400, addrs: [198.18.0.1/24] }
secrets:
  - ids: [gw.example.org, alice@example.org]
    psk: %q
connections:
  rw:
    local_addrs: [%s]
    remote_addrs: ["%%any"]
    proposals: [aes128gcm16-prfsha256-x25519]
    local: { auth: psk, id: gw.example.org }
    remote: { auth: psk, id: "%%any" }
    children:
      net:
        local_ts: [198.18.0.0/24]
        remote_ts: [dynamic]
        esp_proposals: [aes128gcm16]
cluster:
  node: %s
  etcd: { endpoints: [http://198.18.9.1:2379] }
  state_key_file: %s
  lease_ttl: 3s
`, sock, labPSK, addr, name, keyFile))
		return l.start(name, map[string]string{"gw-a": gwa, "gw-b": gwb}[name], binary(t), "run", "-c", cfg), sock
	}
	// etcd answers before the nodes join.
	if !waitFor(30*time.Second, func() bool {
		return exec.Command("ip", "netns", "exec", gwa, "etcdctl", "--endpoints", "http://198.18.9.1:2379", "endpoint", "health").Run() == nil
	}) {
		t.Fatalf("etcd did not come up:\n%s", etcd.output())
	}
	a, aSock := node("gw-a", "198.51.100.1")
	b, bSock := node("gw-b", "203.0.113.1")
	clSock := filepath.Join(l.dir, "cl.sock")
	clCfg := filepath.Join(l.dir, "cl.yaml")
	writeFile(t, clCfg, fmt.Sprintf(`control: %s
log_level: debug
tun: { name: mvpn0, mtu: 1400 }
secrets:
  - ids: [gw.example.org, alice@example.org]
    psk: %q
connections:
  home:
    remote_addrs: [198.51.100.1]
    proposals: [aes128gcm16-prfsha256-x25519]
    local: { auth: psk, id: alice@example.org }
    remote: { auth: psk, id: gw.example.org }
    start_action: none
    children:
      net:
        local_ts: [dynamic]
        remote_ts: [198.18.0.0/24]
        esp_proposals: [aes128gcm16]
`, clSock, labPSK))
	c := l.start("client", cl, binary(t), "run", "-c", clCfg)
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []*proc{a, b, c, etcd} {
				t.Logf("%s log, last lines without control requests:\n%s", p.name, lastLines(withoutControl(p.output()), 80))
			}
		}
	})
	for _, s := range []string{aSock, bSock, clSock} {
		if !waitFor(15*time.Second, func() bool { return status(t, s) != nil }) {
			t.Fatalf("a daemon did not open its control socket %s", s)
		}
	}
	if out, err := exec.Command(binary(t), "up", "home", "--control", clSock).CombinedOutput(); err != nil {
		t.Fatalf("up: %v\n%s", err, out)
	}
	// Both nodes are members, and the client heard of B's address.
	if !waitFor(10*time.Second, func() bool {
		st := status(t, clSock)
		return st != nil && len(st.IKESAs) == 1 && strings.Contains(strings.Join(st.IKESAs[0].PeerAdditionalAddrs, ","), "203.0.113.1")
	}) {
		t.Fatalf("the client was not told of node B: %+v", status(t, clSock))
	}
	before := status(t, clSock).IKESAs[0]
	out, err := exec.Command(binary(t), "cluster", "status", "--json", "--control", aSock).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"name": "gw-b"`) || !strings.Contains(string(out), `"self": "gw-a"`) {
		t.Fatalf("cluster status: %v\n%s", err, out)
	}

	// A 50/s ping through the tunnel (answered by whichever node holds the SA) across
	// the move.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pingOut := make(chan string, 1)
	go func() {
		o, _ := exec.CommandContext(ctx, "ip", "netns", "exec", cl, "ping", "-i", "0.02", "-c", "200", "-W", "1", "198.18.0.1").CombinedOutput()
		pingOut <- string(o)
	}()
	time.Sleep(time.Second)
	start := time.Now()
	out, err = exec.Command(binary(t), "move", "--to-node", "gw-b", "--all", "--wait", "10s", "--control", aSock).CombinedOutput()
	took := time.Since(start)
	if err != nil {
		t.Fatalf("move: %v\n%s", err, out)
	}
	po := <-pingOut
	after := status(t, clSock).IKESAs[0]
	if after.Remote != "203.0.113.1:4500" || after.SPIi != before.SPIi || after.SPIr != before.SPIr {
		t.Errorf("the client after the move: remote %s, SPIs %s/%s (were %s/%s)", after.Remote, after.SPIi, after.SPIr, before.SPIi, before.SPIr)
	}
	if st := status(t, aSock); len(st.IKESAs) != 0 {
		t.Errorf("node A still has %d SAs", len(st.IKESAs))
	}
	if st := status(t, bSock); len(st.IKESAs) != 1 || st.IKESAs[0].SPIi != before.SPIi {
		t.Errorf("node B's SAs: %+v", st.IKESAs)
	}
	if n := strings.Count(c.output(), "sending IKE_SA_INIT request"); n != 1 {
		t.Errorf("the client sent %d IKE_SA_INIT requests (one handshake expected)", n)
	}
	m := countsRe.FindStringSubmatch(po)
	if m == nil || m[1] != m[2] {
		t.Fatalf("pings lost across the move:\n%s", po)
	}
	t.Logf("move of one SA from node A to node B: `move --wait` returned after %v; %s; pings: %s sent, %s answered",
		took.Round(time.Millisecond), strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "; "), m[1], m[2])
}
