package daemon

import (
	"fmt"
	"github.com/mobikevpn/mobikevpn/udp/memnet"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/internal/control"
)

// withPool gives node config text a pool the connection assigns from.
func withPool(cfg string) string {
	cfg = strings.Replace(cfg, "connections:\n", "pools:\n  - name: rw\n    addrs: 198.18.100.0/27\nconnections:\n", 1)
	return strings.Replace(cfg, "    remote: { auth: psk, id: \"%%any\" }\n", "    remote: { auth: psk, id: \"%%any\" }\n    pools: [rw]\n", 1)
}

// withVIP makes client config text ask for a virtual IPv4 address, from the gateway at gw.
func withVIP(cfg, gw string) string {
	cfg = strings.Replace(cfg, "    start_action: start\n", "    start_action: start\n    vips: [0.0.0.0]\n", 1)
	return strings.Replace(cfg, "remote_addrs: [198.51.100.1]", "remote_addrs: ["+gw+"]", 1)
}

// Two nodes serving the same pool: each hands out only addresses it holds in etcd, so
// their clients' addresses differ; an SA moved from A to B keeps its address, whose
// lease moves to B.
func TestClusterVIPLeasesInProcess(t *testing.T) {
	l := newClusterLab(t, "/vips/")
	ctx := l.ctx
	a := l.nodeFrom(withPool(clusterNodeConfig), "gw-a", netip.MustParseAddr("198.51.100.1"))
	b := l.nodeFrom(withPool(clusterNodeConfig), "gw-b", netip.MustParseAddr("198.51.100.2"))
	co := a.d.cl.co
	waitFor(t, "the spare addresses claimed", func() bool {
		held, err := co.VIPs(ctx)
		return err == nil && len(held) == 30
	})
	held, _ := co.VIPs(ctx)
	count := map[string]int{}
	for _, n := range held {
		count[n]++
	}
	if count["gw-a"] == 0 || count["gw-b"] == 0 || count["gw-a"] > vipSpare || count["gw-b"] > vipSpare {
		t.Fatalf("the 30 addresses of the pool are held %v", count)
	}
	alice := l.client(withVIP(clusterClientConfig, "198.51.100.1"), "alice@example.org", netip.MustParseAddr("192.0.2.10"))
	bob := l.client(withVIP(clusterClientConfig, "198.51.100.2"), "bob@example.org", netip.MustParseAddr("192.0.2.11"))
	vip := func(cl *node) string {
		st := cl.status(t)
		if len(st) != 1 || len(st[0].VirtualIPs) != 1 || len(st[0].ChildSAs) != 1 {
			return ""
		}
		return st[0].VirtualIPs[0]
	}
	waitFor(t, "both clients with a virtual IP, alice told of node B (else she refuses to switch there)", func() bool {
		st := alice.status(t)
		return vip(alice) != "" && vip(bob) != "" && len(st) == 1 && slices.Contains(st[0].PeerAdditionalAddrs, "198.51.100.2")
	})
	va, vb := netip.MustParseAddr(vip(alice)), netip.MustParseAddr(vip(bob))
	held, _ = co.VIPs(ctx)
	if va == vb || held[va] != "gw-a" || held[vb] != "gw-b" {
		t.Fatalf("alice has %s (held by %s), bob %s (held by %s)", va, held[va], vb, held[vb])
	}
	msg, err := l.command("the move", 50*time.Millisecond, func() (string, error) {
		return a.d.Move(ctx, control.Move{ToNode: "gw-b", All: true, Wait: 30 * time.Second})
	})
	if err != nil {
		t.Fatalf("move: %v (%s)", err, msg)
	}
	if got := vip(alice); got != va.String() {
		t.Errorf("alice's address after the move: %q, was %s", got, va)
	}
	waitFor(t, "alice's address held by B", func() bool {
		held, err := co.VIPs(ctx)
		return err == nil && held[va] == "gw-b"
	})
	if bs := b.status(t); len(bs) != 2 {
		t.Errorf("B has %d SAs", len(bs))
	}
	t.Logf("addresses held: %v; alice %s moved to B with her address", count, va)
}

// A burst of clients asking for virtual IPs, more than the spare addresses a node keeps
// (vipSpare): those beyond wait (their IKE_AUTH is answered on retransmission) while the
// node claims as many as they need; every one gets its own address, none is refused.
func TestClusterVIPBurst(t *testing.T) {
	const clients = 3 * vipSpare
	l := newClusterLab(t, "/vipburst/")
	a := l.nodeFrom(strings.Replace(withPool(clusterNodeConfig), "198.18.100.0/27", "198.18.100.0/24", 1), "gw-a", netip.MustParseAddr("198.51.100.1"))
	waitFor(t, "the spare addresses claimed", func() bool {
		held, err := a.d.cl.co.VIPs(l.ctx)
		return err == nil && len(held) == vipSpare
	})
	// The clients' first messages are held back until all are started, then go at once.
	var hold atomic.Bool
	hold.Store(true)
	l.net.SetFilter(func(p *memnet.Packet) []memnet.Packet {
		if hold.Load() && p.Dst.Addr() == netip.MustParseAddr("198.51.100.1") {
			return nil
		}
		return []memnet.Packet{*p}
	})
	var cls []*node
	for i := range clients {
		cls = append(cls, l.client(withVIP(clusterClientConfig, "198.51.100.1"), fmt.Sprintf("c%d@example.org", i),
			netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)})))
	}
	hold.Store(false)
	vips := map[string]bool{}
	for deadline := time.Now().Add(90 * time.Second); ; {
		clear(vips)
		for _, cl := range cls {
			if st := cl.status(t); len(st) == 1 && len(st[0].VirtualIPs) == 1 && len(st[0].ChildSAs) == 1 {
				vips[st[0].VirtualIPs[0]] = true
			}
		}
		if len(vips) == clients {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d clients up with their own virtual IP; A's drops %v", len(vips), clients, nonzero(a.drops(t)))
		}
		// The clients' retransmissions (the fake clock at five times real time: the
		// half-open SAs, 30 s, outlast the node's claims, even on a loaded machine,
		// where it once failed at ten times with 45 of 48 up).
		l.clk.Advance(500 * time.Millisecond)
		time.Sleep(100 * time.Millisecond)
	}
	// (How many waited depends on how fast the node claimed more meanwhile: the wait
	// itself is ike's TestLeasedPoolWait.)
	waited := a.drops(t)["ike_vip_wait"]
	t.Logf("%d clients at once, %d spare addresses: all up with their own address; %d IKE_AUTHs waited for one", clients, vipSpare, waited)
}
