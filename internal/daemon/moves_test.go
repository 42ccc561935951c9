package daemon

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/internal/control"
	"github.com/mobikevpn/mobikevpn/udp/memnet"
)

// One SA moved 100 times back and forth between nodes A and B, with traffic both ways
// all along: AES-GCM nonces never repeat (every (SPI, sequence number) either node
// sends to the client is sent once), and every packet of the client reaches the
// protected side once, however the moves fall.
func TestClusterHundredMoves(t *testing.T) {
	if testing.Short() {
		t.Skip("100 moves: not in -short")
	}
	l := newClusterLab(t, "/hundred/")
	aAddr, bAddr, clAddr := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("192.0.2.10")
	a, b := l.node("gw-a", aAddr), l.node("gw-b", bAddr)
	// The client would refuse to go back to an address it left within switch_hold
	// (30 s by default): the moves come faster.
	cl := l.client(strings.Replace(clusterClientConfig, "    start_action: start\n", "    start_action: start\n    switch_hold: 0s\n", 1), "alice@example.org", clAddr)
	waitFor(t, "established with A, B announced", func() bool {
		st := cl.status(t)
		return len(st) == 1 && len(st[0].ChildSAs) == 1 && len(st[0].PeerAdditionalAddrs) == 1
	})
	type spiSeq struct{ spi, seq uint32 }
	var mu sync.Mutex
	sent := make(map[spiSeq]int)
	dups := 0
	l.net.SetFilter(func(p *memnet.Packet) []memnet.Packet {
		if (p.Src.Addr() == aAddr || p.Src.Addr() == bAddr) && p.Dst.Addr() == clAddr && len(p.Data) >= 8 && binary.BigEndian.Uint32(p.Data) != 0 {
			k := spiSeq{binary.BigEndian.Uint32(p.Data), binary.BigEndian.Uint32(p.Data[4:])}
			mu.Lock()
			if sent[k]++; sent[k] > 1 {
				dups++
			}
			mu.Unlock()
		}
		return []memnet.Packet{*p}
	})
	server := netip.MustParseAddr("198.18.0.1")
	// Traffic: the client to the server, and the server to the client into both nodes
	// (the one without the SA drops it), every millisecond.
	var got sync.Map // sequence numbers of the client's packets that came out of a node
	var twice atomic.Int64
	quit := make(chan struct{}) // the readers of the TUN devices end with the test
	defer close(quit)
	for _, n := range []*node{a, b, cl} {
		go func() {
			for {
				select {
				case p := <-n.dev.Written():
					if n == cl || len(p) < 32 {
						continue
					}
					if _, dup := got.LoadOrStore(binary.BigEndian.Uint32(p[28:]), true); dup {
						twice.Add(1)
					}
				case <-quit:
					return
				}
			}
		}()
	}
	stop := make(chan struct{})
	var clientSent atomic.Uint32
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := uint32(1); ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			cl.dev.Inject(udpPacket(clAddr, server, i))
			clientSent.Store(i)
			a.dev.Inject(udpPacket(server, clAddr, i))
			b.dev.Inject(udpPacket(server, clAddr, i))
		}
	})
	from, to := a, b
	names := map[*node]string{a: "gw-a", b: "gw-b"}
	start := time.Now()
	for i := range 100 {
		// switch_limit (5 a minute by default) holds on both sides: 13 s of the fake
		// clock between moves.
		l.clk.Advance(13 * time.Second)
		_, err := l.command("a move", 50*time.Millisecond, func() (string, error) {
			return from.d.Move(l.ctx, control.Move{ToNode: names[to], All: true, Wait: 30 * time.Second})
		})
		if err != nil {
			t.Fatalf("move %d from %s to %s: %v", i+1, names[from], names[to], err)
		}
		// The move is done once the client's UPDATE_SA_ADDRESSES reached the new node;
		// the client itself moves on its answer, which waits for the new node's
		// snapshot: the next clock step, which ends the old node's grace, comes after.
		addr := map[*node]string{a: aAddr.String(), b: bAddr.String()}[to] + ":4500"
		waitFor(t, "the client to see its SA moved", func() bool { return cl.status(t)[0].Remote == addr })
		from, to = to, from
		time.Sleep(10 * time.Millisecond) // traffic through each hand-over (a move takes a few ms)
	}
	took := time.Since(start)
	close(stop)
	wg.Wait()
	last := clientSent.Load()
	waitFor(t, "the client's last packets", func() bool {
		_, ok := got.Load(last)
		return ok
	})
	mu.Lock()
	defer mu.Unlock()
	if dups != 0 {
		t.Errorf("%d (SPI, sequence number) pairs sent twice to the client by the nodes", dups)
	}
	if len(sent) < 1000 {
		t.Errorf("only %d ESP packets from the nodes to the client: too little traffic to tell", len(sent))
	}
	if twice.Load() != 0 {
		t.Errorf("%d of the client's packets came out twice", twice.Load())
	}
	lost := 0
	for i := uint32(1); i <= last; i++ {
		if _, ok := got.Load(i); !ok {
			lost++
		}
	}
	if lost != 0 {
		t.Errorf("%d of the client's %d packets did not come out of either node", lost, last)
	}
	if st := cl.status(t); len(st) != 1 || st[0].Remote != "198.51.100.1:4500" {
		t.Errorf("the client after 100 moves: %+v", st)
	}
	t.Logf("100 moves in %v: %d ESP packets from the nodes to the client, none with a repeated (SPI, sequence number); %d packets of the client, each delivered once",
		took.Round(time.Millisecond), len(sent), last)
}
