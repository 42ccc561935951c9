package daemon

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/clock/clocktest"
	"github.com/mobikevpn/mobikevpn/internal/cluster"
	"github.com/mobikevpn/mobikevpn/internal/cluster/etcdtest"
	"github.com/mobikevpn/mobikevpn/internal/config"
	"github.com/mobikevpn/mobikevpn/internal/control"
	"github.com/mobikevpn/mobikevpn/udp"
	"github.com/mobikevpn/mobikevpn/udp/memnet"
)

// Two gateway daemons of a cluster (a real etcd server), a client daemon, in one
// process on an in-memory network: the client's SA moves from node A to node B with
// SWITCH_TO_IP_ADDRESS, its SPIs unchanged, traffic through B afterwards.

const clusterNodeConfig = `
tun: { name: mvpn0, mtu: 1400, addrs: [198.18.0.1/24] }
secrets:
  - ids: [gw.example.org, alice@example.org]
    psk: "in-process secret"
connections:
  rw:
    local_addrs: [%s]
    remote_addrs: ["%%any"]
    proposals: [aes128gcm16-prfsha256-x25519]
    switch_hold: 0s
    local: { auth: psk, id: gw.example.org }
    remote: { auth: psk, id: "%%any" }
    children:
      net:
        local_ts: [198.18.0.0/24]
        remote_ts: [dynamic]
        esp_proposals: [aes128gcm16]
cluster:
  node: %s
  etcd: { endpoints: [%s], prefix: %s }
  state_key_file: %s
`

const clusterClientConfig = `
tun: { name: mvpn0, mtu: 1400 }
secrets:
  - ids: [gw.example.org, alice@example.org]
    psk: "in-process secret"
connections:
  home:
    remote_addrs: [198.51.100.1]
    proposals: [aes128gcm16-prfsha256-x25519]
    local: { auth: psk, id: alice@example.org }
    remote: { auth: psk, id: gw.example.org }
    start_action: start
    children:
      net:
        local_ts: [dynamic]
        remote_ts: [198.18.0.0/24]
        esp_proposals: [aes128gcm16]
`

// clusterLab is what the in-process cluster tests share: a real etcd server, the
// cluster key, a fake clock and an in-memory network; they stop when the test ends.
type clusterLab struct {
	t       *testing.T
	ctx     context.Context
	srv     *etcdtest.Server
	keyFile string
	prefix  string
	clk     *clocktest.Fake
	net     *memnet.Network
	cancel  context.CancelFunc // stops the daemons (at the end of the test: started)
}

func newClusterLab(t *testing.T, prefix string) *clusterLab {
	t.Helper()
	srv, err := etcdtest.Start()
	if errors.Is(err, etcdtest.ErrNotInstalled) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	keyFile := filepath.Join(t.TempDir(), "cluster.key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("5a", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return &clusterLab{t: t, ctx: ctx, srv: srv, keyFile: keyFile, prefix: prefix, cancel: cancel,
		clk: clocktest.New(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)), net: memnet.New()}
}

// node starts gateway daemon name of the cluster at addr.
func (l *clusterLab) node(name string, addr netip.Addr) *node {
	return l.nodeFrom(clusterNodeConfig, name, addr)
}

// nodeFrom starts gateway daemon name at addr from cfgText, which has the verbs of
// clusterNodeConfig.
func (l *clusterLab) nodeFrom(cfgText, name string, addr netip.Addr) *node {
	t := l.t
	t.Helper()
	cfg, err := config.Parse(fmt.Appendf(nil, cfgText, addr, name, l.srv.Endpoint, l.prefix, l.keyFile), "in-process.yaml")
	if err != nil {
		t.Fatal(err)
	}
	key, err := cluster.LoadStateKey(l.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	jctx, cancel := context.WithTimeout(l.ctx, 10*time.Second)
	defer cancel()
	co, err := cluster.Join(jctx, cluster.Config{Endpoints: []string{l.srv.Endpoint}, Prefix: l.prefix, LeaseTTL: 5 * time.Second},
		cluster.Node{Name: name, Addrs: cfg.Cluster.Addrs}, key)
	if err != nil {
		t.Fatal(err)
	}
	return l.started(startNodeWith(t, l.ctx, cfg, l.net.Host(addr), l.clk, Options{}, func(d *Deps) { d.Cluster = co }))
}

// client starts a client daemon at addr with identity id, from cfgText (clusterClientConfig or a variant).
func (l *clusterLab) client(cfgText, id string, addr netip.Addr) *node {
	return l.started(startNode(l.t, l.ctx, strings.Replace(cfgText, "id: alice@example.org", "id: "+id, 1), l.net.Host(addr), l.clk))
}

// started notes daemon n: when the test ends, it is stopped and its Run must return
// nil, before the test returns (a later test measuring the heap must not see it).
func (l *clusterLab) started(n *node) *node {
	l.t.Cleanup(func() {
		l.cancel()
		select {
		case err := <-n.done:
			if err != nil {
				l.t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			l.t.Error("a daemon did not stop within 30 s")
		}
	})
	return n
}

// command runs op (a move or a drain by one of the lab's daemons) while the fake clock
// moves on by step every few milliseconds, so that the daemons' timers fire, and
// returns what op returned.
func (l *clusterLab) command(what string, step time.Duration, op func() (string, error)) (string, error) {
	type result struct {
		msg string
		err error
	}
	done := make(chan result, 1)
	go func() {
		msg, err := op()
		done <- result{msg, err}
	}()
	var r result
	polls := 0
	waitFor(l.t, what, func() bool {
		select {
		case r = <-done:
			return true
		default:
			// Every tenth poll (about 10 ms): the fake clock runs at most five times as
			// fast as real time with a step of 50 ms, so that a timeout of the
			// daemons' (10 s to import an SA) is two seconds of real time at least
			// (at ten times, a second, TestClusterMoveRefused once timed out an import
			// under the race detector).
			if polls++; polls%10 == 0 {
				l.clk.Advance(step)
			}
			return false
		}
	})
	return r.msg, r.err
}

func TestClusterMoveInProcess(t *testing.T) {
	l := newClusterLab(t, "/move/")
	ctx, clk := l.ctx, l.clk
	start := time.Now()
	aAddr, bAddr, clAddr := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("192.0.2.10")
	a := l.node("gw-a", aAddr)
	b := l.node("gw-b", bAddr)
	cl := l.client(clusterClientConfig, "alice@example.org", clAddr)
	server := netip.MustParseAddr("198.18.0.1")

	waitFor(t, "established with A, B announced", func() bool {
		st := cl.status(t)
		return len(st) == 1 && len(st[0].ChildSAs) == 1 && len(st[0].PeerAdditionalAddrs) == 1 && st[0].PeerAdditionalAddrs[0] == bAddr.String()
	})
	before := cl.status(t)[0]
	through(t, cl, a, clAddr, server, 1)
	through(t, a, cl, server, clAddr, 2)
	// A claimed the SA in etcd and counts it (written a moment after the handshake).
	waitFor(t, "A's load in the cluster status", func() bool {
		cs, err := a.d.ClusterStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return cs.Self == "gw-a" && len(cs.Nodes) == 2 && cs.Nodes[0].Name == "gw-a" && cs.Nodes[0].IKESAs == 1 && cs.Nodes[1].IKESAs == 0
	})

	// Every ESP datagram from the client to A, as an attacker on the path sees them.
	tap := l.tapESP(clAddr, aAddr)
	// Traffic from the client all along the move, one packet a millisecond: each must
	// come out of A or B, once.
	const flow = 300
	out := countOut(t, a, b)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := range uint32(flow) {
			cl.dev.Inject(udpPacket(clAddr, server, 1000+i))
			time.Sleep(time.Millisecond)
		}
	}()

	time.Sleep(100 * time.Millisecond) // a part of the flow goes to A before the move

	// The move, with the clock running (B resends the switch request; A forgets the SA
	// after its grace).
	msg, err := l.command("the move", 50*time.Millisecond, func() (string, error) {
		return a.d.Move(ctx, control.Move{ToNode: "gw-b", All: true, Wait: 30 * time.Second})
	})
	if err != nil {
		t.Fatalf("move: %v (%s)", err, msg)
	}
	// The move is done once the client's UPDATE_SA_ADDRESSES reached B; B's answer,
	// which moves the client's own view, goes once B's snapshot is written.
	waitFor(t, "the client to see its SA at B", func() bool { return cl.status(t)[0].Remote == "198.51.100.2:4500" })
	after := cl.status(t)[0]
	if after.Remote != "198.51.100.2:4500" || after.SPIi != before.SPIi || after.SPIr != before.SPIr {
		t.Errorf("the client's SA after the move: remote %s, SPIs %s/%s (were %s/%s)", after.Remote, after.SPIi, after.SPIr, before.SPIi, before.SPIr)
	}
	// A forgets the SA after a grace for what is still on its way to it.
	waitFor(t, "A to forget the SA", func() bool {
		if len(a.status(t)) == 0 {
			return true
		}
		clk.Advance(100 * time.Millisecond)
		return false
	})
	bs := b.status(t)
	if len(bs) != 1 || bs[0].SPIi != before.SPIi || bs[0].Local != "198.51.100.2:4500" {
		t.Fatalf("B's SAs: %+v", bs)
	}
	<-sent
	waitFor(t, "the flow through the move", func() bool { return len(out.counts()) == flow })
	for seq, n := range out.counts() {
		if n != 1 || seq < 1000 || seq >= 1000+flow {
			t.Errorf("packet %d came out %d times", seq, n)
		}
	}
	// Replayed to B, nothing the client ever sent to A is accepted again.
	replays := tap.datagrams()
	l.replayESP(t, b, bAddr, replays)
	if n := len(out.counts()); n != flow {
		t.Errorf("a replay came through B: %d packets seen", n)
	}
	t.Logf("%d ESP datagrams the client sent to A replayed to B: all refused", len(replays))
	// (The collectors now hold the TUN devices' output: traffic after this is counted
	// there.)
	if err := cl.dev.Inject(udpPacket(clAddr, server, 3)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "traffic through B after the move", func() bool { return out.counts()[3] == 1 })
	through(t, b, cl, server, clAddr, 4)
	waitFor(t, "the loads after the move", func() bool {
		cs, err := b.d.ClusterStatus(ctx)
		return err == nil && len(cs.Nodes) == 2 && cs.Nodes[0].IKESAs == 0 && cs.Nodes[1].IKESAs == 1
	})
	t.Logf("%s; SA moved from A to B in process in %v", msg, time.Since(start).Round(time.Millisecond))
}

// drops is the node's drop counters.
func (n *node) drops(t *testing.T) map[string]uint64 {
	t.Helper()
	st, err := n.d.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Drops
}

// A move the other node does not take (it has no such connection): after the ready
// timeout node A takes the SA back in etcd and carries on with it; the client never
// heard of the move.
func TestClusterMoveNotTaken(t *testing.T) {
	l := newClusterLab(t, "/notaken/")
	ctx := l.ctx
	aAddr, bAddr, clAddr := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("192.0.2.10")
	a := l.node("gw-a", aAddr)
	// Node B names its connection differently: it cannot import A's SAs.
	b := l.nodeFrom(strings.Replace(clusterNodeConfig, "  rw:\n", "  other:\n", 1), "gw-b", bAddr)
	cl := l.client(clusterClientConfig, "alice@example.org", clAddr)
	server := netip.MustParseAddr("198.18.0.1")
	waitFor(t, "established with A, B announced", func() bool {
		st := cl.status(t)
		return len(st) == 1 && len(st[0].ChildSAs) == 1 && len(st[0].PeerAdditionalAddrs) == 1
	})
	through(t, cl, a, clAddr, server, 1)
	msg, moveErr := l.command("the move to give up", 100*time.Millisecond, func() (string, error) {
		return a.d.Move(ctx, control.Move{ToNode: "gw-b", All: true, Wait: time.Minute})
	})
	var ce *control.Error
	if !errors.As(moveErr, &ce) || ce.Code != control.CodeFailed || !strings.Contains(ce.Msg, "did not import") {
		t.Fatalf("move: %v (%s)", moveErr, msg)
	}
	// The SA is A's again: in etcd, in A's engine, for the client.
	if owner, err := b.d.cl.co.Owner(ctx, cluster.SAKey{SPIi: parseSPI(t, cl.status(t)[0].SPIi), SPIr: parseSPI(t, cl.status(t)[0].SPIr)}); err != nil || owner != "gw-a" {
		t.Errorf("owner in etcd: %q %v", owner, err)
	}
	if st := cl.status(t); len(st) != 1 || st[0].Remote != "198.51.100.1:4500" {
		t.Errorf("the client: %+v", st)
	}
	if len(b.status(t)) != 0 {
		t.Error("B holds an SA")
	}
	through(t, cl, a, clAddr, server, 2)
	through(t, a, cl, server, clAddr, 3)
	t.Logf("a move node B could not take: %v; the SA stays with A and carries traffic", moveErr)
}

// noRMobike is client config text without R-MOBIKE.
func noRMobike(cfg string) string {
	return strings.Replace(cfg, "    start_action: start\n", "    start_action: start\n    rmobike: false\n", 1)
}

func parseSPI(t *testing.T, s string) uint64 {
	t.Helper()
	var v uint64
	if _, err := fmt.Sscanf(s, "%x", &v); err != nil {
		t.Fatalf("SPI %q: %v", s, err)
	}
	return v
}

// A client without R-MOBIKE cannot be asked to switch: `move` redirects it (RFC 5685)
// and it builds a new IKE SA with node B, deleting the one with A.
func TestClusterRedirectInProcess(t *testing.T) {
	l := newClusterLab(t, "/redirect/")
	ctx := l.ctx
	aAddr, bAddr, clAddr := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("192.0.2.10")
	a := l.node("gw-a", aAddr)
	b := l.node("gw-b", bAddr)
	cl := l.client(noRMobike(clusterClientConfig), "alice@example.org", clAddr)
	server := netip.MustParseAddr("198.18.0.1")
	waitFor(t, "established with A", func() bool {
		st := cl.status(t)
		return len(st) == 1 && len(st[0].ChildSAs) == 1 && !st[0].RMobike
	})
	// (Move reads the live nodes from etcd: B joined before the client connected.)
	before := cl.status(t)[0]
	msg, err := a.d.Move(ctx, control.Move{ToNode: "gw-b", All: true, Wait: 20 * time.Second})
	if err != nil {
		t.Fatalf("move: %v (%s)", err, msg)
	}
	if !strings.Contains(msg, "redirected: alice@example.org") {
		t.Errorf("move said %q", msg)
	}
	waitFor(t, "the client with node B only", func() bool {
		st := cl.status(t)
		return len(st) == 1 && st[0].Remote == "198.51.100.2:4500" && st[0].State == "established" && len(st[0].ChildSAs) == 1
	})
	if after := cl.status(t)[0]; after.SPIi == before.SPIi {
		t.Error("a redirect made no new IKE SA")
	}
	if len(a.status(t)) != 0 || len(b.status(t)) != 1 {
		t.Errorf("A has %d SAs, B %d", len(a.status(t)), len(b.status(t)))
	}
	through(t, cl, b, clAddr, server, 1)
	through(t, b, cl, server, clAddr, 2)
	waitFor(t, "B owns the new SA in etcd", func() bool {
		cs, err := b.d.ClusterStatus(ctx)
		return err == nil && len(cs.Nodes) == 2 && cs.Nodes[0].IKESAs == 0 && cs.Nodes[1].IKESAs == 1
	})
	t.Logf("%s", msg)
}

// espTap records every ESP datagram from src to dst's NAT-T port on the lab's network,
// as an attacker on the path sees them.
type espTap struct {
	mu  sync.Mutex
	got [][]byte
}

func (l *clusterLab) tapESP(src, dst netip.Addr) *espTap {
	tap := &espTap{}
	l.net.SetFilter(func(p *memnet.Packet) []memnet.Packet {
		if p.Src.Addr() == src && p.Dst == netip.AddrPortFrom(dst, 4500) && len(p.Data) > 8 && binary.BigEndian.Uint32(p.Data) != 0 {
			tap.mu.Lock()
			tap.got = append(tap.got, bytes.Clone(p.Data))
			tap.mu.Unlock()
		}
		return []memnet.Packet{*p}
	})
	return tap
}

func (tap *espTap) datagrams() [][]byte {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	return slices.Clone(tap.got)
}

// replayESP sends datagrams to n at addr (its NAT-T port) from an attacker's address,
// and waits until n dropped every one as a replay.
func (l *clusterLab) replayESP(t *testing.T, n *node, addr netip.Addr, datagrams [][]byte) {
	t.Helper()
	before := n.drops(t)["esp_replay"]
	ac, err := l.net.Host(netip.MustParseAddr("198.18.9.66")).Listen(4500)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range datagrams {
		ac[0].WriteBatch([]udp.Message{{Buffer: d, N: len(d), Remote: netip.AddrPortFrom(addr, 4500)}})
	}
	waitFor(t, "the replays refused", func() bool { return n.drops(t)["esp_replay"]-before == uint64(len(datagrams)) })
}

// tunCount counts the test datagrams (udpPacket's sequence numbers) that come out of
// nodes' TUN devices; it holds their output until the test ends.
type tunCount struct {
	mu  sync.Mutex
	got map[uint32]int
}

func countOut(t *testing.T, nodes ...*node) *tunCount {
	c := &tunCount{got: make(map[uint32]int)}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			for {
				select {
				case p := <-n.dev.Written():
					if len(p) >= 32 {
						c.mu.Lock()
						c.got[binary.BigEndian.Uint32(p[28:])]++
						c.mu.Unlock()
					}
				case <-quit:
					return
				}
			}
		})
	}
	t.Cleanup(func() {
		close(quit)
		wg.Wait()
	})
	return c
}

// counts is a copy of the counts by sequence number.
func (c *tunCount) counts() map[uint32]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.got)
}
