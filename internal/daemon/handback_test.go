package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/ike"
	"github.com/mobikevpn/mobikevpn/internal/cluster"
	"github.com/mobikevpn/mobikevpn/internal/control"
)

// refusing makes client config text refuse every switch request (switch_accept: []).
func refusing(cfg string) string {
	return strings.Replace(cfg, "    start_action: start\n", "    start_action: start\n    switch_accept: []\n", 1)
}

// A client that refuses the switch request of a move (switch_accept: []) stays with
// node A: A hears its answer and then its liveness check, B hands the SA back, and
// `move --wait` reports it not moved. The SA carries on with A as it was (same SPIs,
// no new handshake, its virtual IP still served by A), etcd says A owns it, B forgets
// it, and nothing B accepted meanwhile (the client's packets A forwarded to it) is
// accepted again by A.
func TestClusterMoveRefused(t *testing.T) {
	l := newClusterLab(t, "/refused/")
	ctx := l.ctx
	aAddr, bAddr, clAddr := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("192.0.2.10")
	a := l.nodeFrom(withPool(clusterNodeConfig), "gw-a", aAddr)
	b := l.nodeFrom(withPool(clusterNodeConfig), "gw-b", bAddr)
	cl := l.client(refusing(withVIP(clusterClientConfig, aAddr.String())), "alice@example.org", clAddr)
	server := netip.MustParseAddr("198.18.0.1")
	waitFor(t, "established with A, B announced", func() bool {
		st := cl.status(t)
		return len(st) == 1 && len(st[0].ChildSAs) == 1 && len(st[0].VirtualIPs) == 1 && len(st[0].PeerAdditionalAddrs) == 1
	})
	before := cl.status(t)[0]
	vip := netip.MustParseAddr(before.VirtualIPs[0])
	through(t, cl, a, vip, server, 1)
	through(t, a, cl, server, vip, 2)

	// Every ESP datagram from the client to A, as an attacker on the path sees them.
	tap := l.tapESP(clAddr, aAddr)
	// The client's traffic all along, one packet a millisecond: A forwards it to B
	// while the SA is away, B takes it. Each must come out of A or B, once.
	out := countOut(t, a, b)
	stopFlow := make(chan struct{})
	var flow sync.WaitGroup
	var last uint32
	flow.Go(func() {
		for i := uint32(100); ; i++ {
			select {
			case <-stopFlow:
				return
			case <-time.After(time.Millisecond):
			}
			cl.dev.Inject(udpPacket(vip, server, i))
			last = i
		}
	})
	msg, moveErr := l.command("the move to be refused", 50*time.Millisecond, func() (string, error) {
		return a.d.Move(ctx, control.Move{ToNode: "gw-b", All: true, Wait: 30 * time.Second})
	})
	time.Sleep(20 * time.Millisecond) // some traffic after the hand-back
	close(stopFlow)
	flow.Wait()
	var ce *control.Error
	if !errors.As(moveErr, &ce) || ce.Code != control.CodeFailed || !strings.Contains(ce.Msg, "not moved: alice@example.org") ||
		!strings.Contains(ce.Msg, "did not follow the switch to gw-b") {
		t.Fatalf("move: %v (%s)", moveErr, msg)
	}
	// The SA is A's again: in etcd, in A's engine, for the client; B forgets its copy
	// after its grace.
	key := cluster.SAKey{SPIi: parseSPI(t, before.SPIi), SPIr: parseSPI(t, before.SPIr)}
	if owner, err := b.d.cl.co.Owner(ctx, key); err != nil || owner != "gw-a" {
		t.Errorf("owner in etcd: %q %v", owner, err)
	}
	waitFor(t, "B to forget the SA", func() bool {
		if len(b.status(t)) == 0 {
			return true
		}
		l.clk.Advance(100 * time.Millisecond)
		return false
	})
	after := cl.status(t)[0]
	as := a.status(t)
	if after.Remote != "198.51.100.1:4500" || after.SPIi != before.SPIi || after.SPIr != before.SPIr || after.VirtualIPs[0] != vip.String() ||
		len(as) != 1 || as[0].SPIi != before.SPIi || as[0].Local != "198.51.100.1:4500" {
		t.Fatalf("after the refused move: the client %+v; A %+v", after, as)
	}
	if held, err := a.d.cl.co.VIPs(ctx); err != nil || held[vip] != "gw-a" {
		t.Errorf("virtual IP %s held by %q in etcd (%v)", vip, held[vip], err)
	}
	waitFor(t, "the flow through the refused move", func() bool { return out.counts()[last] == 1 })
	got := out.counts()
	lost := 0
	for i := uint32(100); i <= last; i++ {
		switch got[i] {
		case 0:
			lost++
		case 1:
		default:
			t.Errorf("packet %d came out %d times", i, got[i])
		}
	}
	if lost != 0 {
		t.Errorf("%d of the client's %d packets lost in the refused move (drops: A %v, B %v)", lost, last-99, nonzero(a.drops(t)), nonzero(b.drops(t)))
	}
	// IKE carries on at A: the client's liveness check, which A dropped while the SA
	// was away, is answered on its retransmission; a later one too.
	l.clk.Advance(5 * time.Second)
	fromClient := func(seq uint32) {
		t.Helper()
		if err := cl.dev.Inject(udpPacket(vip, server, seq)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the client's packet through A", func() bool { return out.counts()[seq] == 1 })
	}
	fromClient(3)
	through(t, a, cl, server, vip, 4)
	// Replayed to A, nothing the client ever sent is accepted again (A's windows start
	// where B's ended).
	replays := tap.datagrams()
	seen := len(out.counts())
	l.replayESP(t, a, aAddr, replays)
	if n := len(out.counts()); n != seen {
		t.Errorf("a replay came through A: %d packets seen, %d before", n, seen)
	}
	if len(replays) < 10 {
		t.Errorf("only %d ESP datagrams captured", len(replays))
	}
	// Still the one handshake, and the client's SA alive after its retransmissions.
	l.clk.Advance(30 * time.Second)
	fromClient(5)
	if st := cl.status(t); len(st) != 1 || st[0].SPIi != before.SPIi {
		t.Errorf("the client after the refused move: %+v", st)
	}
	t.Logf("a move the client refused: %s; %d of its packets through the move, none lost; %d of its ESP datagrams replayed to A afterwards, all refused",
		strings.ReplaceAll(ce.Msg, "\n", "; "), last-99, len(replays))
}

// nonzero is the counters of m that are not 0.
func nonzero(m map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64)
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// An SA coming back to a node that still has its handed-over copy: no packet may find
// neither (the inbound SA replaced in place, the old outbound flow removed only after
// the new one is installed), and its virtual IPs are released before they are claimed
// again.
func TestComeBackOrder(t *testing.T) {
	vip := netip.MustParseAddr("198.18.100.5")
	forget := []ike.Action{ike.RemoveOutbound{Policy: 1}, ike.RemoveInbound{SPI: 0x1001}, ike.RemoveInbound{SPI: 0x2002},
		ike.VirtualIPs{IKESA: 1, Addrs: []netip.Addr{vip}, Remove: true}}
	imp := []ike.Action{ike.VirtualIPs{IKESA: 2, Addrs: []netip.Addr{vip}}, ike.InstallInbound{SPI: 0x1001}, ike.InstallOutbound{Policy: 7}}
	got := comeBack(forget, imp)
	want := []ike.Action{ike.RemoveInbound{SPI: 0x2002}, forget[3], imp[0], imp[1], imp[2], ike.RemoveOutbound{Policy: 1}}
	if len(got) != len(want) {
		t.Fatalf("got %d actions %v, want %v", len(got), got, want)
	}
	for i := range want {
		if fmt.Sprintf("%#v", got[i]) != fmt.Sprintf("%#v", want[i]) {
			t.Errorf("action %d: %#v, want %#v", i, got[i], want[i])
		}
	}
}
