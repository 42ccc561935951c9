package esp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/tun/memtun"
	"github.com/mobikevpn/mobikevpn/udp"
	"github.com/mobikevpn/mobikevpn/udp/memnet"
)

const (
	nattPort = 4500
	testMTU  = 1400
	waitLong = 5 * time.Second
)

type ikeMsg struct {
	pkt           []byte
	local, remote netip.AddrPort
}

// connKey names a socket of a peer.
type connKey struct {
	is4  bool
	port uint16
}

// peer is one Datapath on a host of a memnet network, with its TUN and NAT-T sockets.
type peer struct {
	d     *Datapath
	tun   *memtun.Device
	host  *memnet.Host
	conns map[connKey]udp.Conn
	ike   chan ikeMsg
	stop  func() error // cancels Run and waits for it
	wait  func() error // waits for Run to return by itself
}

func newPeer(t testing.TB, n *memnet.Network, addrs ...netip.Addr) *peer {
	t.Helper()
	return newPeerCfg(t, n, nil, addrs...)
}

// newPeerCfg is newPeer with mod applied to the Config.
func newPeerCfg(t testing.TB, n *memnet.Network, mod func(*Config), addrs ...netip.Addr) *peer {
	t.Helper()
	p := &peer{host: n.Host(addrs...), tun: memtun.New("test", testMTU), conns: map[connKey]udp.Conn{}, ike: make(chan ikeMsg, 64)}
	conns, err := p.host.Listen(nattPort)
	must(t, err)
	p.conns[connKey{true, nattPort}], p.conns[connKey{false, nattPort}] = conns[0], conns[1]
	cfg := Config{
		TUN: p.tun, Conns: conns, MTU: testMTU,
		OnIKE: func(pkt []byte, local, remote netip.AddrPort) { p.ike <- ikeMsg{pkt, local, remote} },
	}
	if mod != nil {
		mod(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.d = d
	return p
}

// start runs the datapath until stop is called (or the test ends).
func (p *peer) start(t testing.TB) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.d.Run(ctx) }()
	var once sync.Once
	var err error
	wait := func() {
		select {
		case err = <-done:
		case <-time.After(waitLong):
			err = errors.New("Run did not return")
		}
	}
	p.stop = func() error {
		once.Do(func() { cancel(); wait() })
		return err
	}
	p.wait = func() error {
		once.Do(wait)
		return err
	}
	t.Cleanup(func() { p.stop() })
}

func (p *peer) recv(t testing.TB) []byte {
	t.Helper()
	select {
	case b := <-p.tun.Written():
		return b
	case <-time.After(waitLong):
		t.Fatalf("no packet out of the TUN device; drops %+v", p.d.Drops())
		return nil
	}
}

func (p *peer) expectNothing(t testing.TB) {
	t.Helper()
	select {
	case b := <-p.tun.Written():
		t.Fatalf("unexpected packet %x", b)
	case <-time.After(50 * time.Millisecond):
	}
}

func (p *peer) recvIKE(t testing.TB) ikeMsg {
	t.Helper()
	select {
	case m := <-p.ike:
		return m
	case <-time.After(waitLong):
		t.Fatal("no IKE message")
		return ikeMsg{}
	}
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

var (
	aV4, aV4b, aV6 = netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.9"), netip.MustParseAddr("2001:db8::1")
	bV4, bV4b, bV6 = netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("2001:db8:1::1")

	clientTS = []Selector{ts(0, "10.0.0.2", "10.0.0.2"), ts(0, "fd00::2", "fd00::2")}
	netTS    = []Selector{ts(0, "10.1.0.0", "10.1.255.255"), ts(0, "fd00:1::", "fd00:1::ffff:ffff:ffff:ffff")}
)

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

// testKeys returns distinct made-up keys for a suite.
func testKeys(k Keys, seed byte) Keys {
	k.EncrKey = append([]byte(nil), k.EncrKey...)
	k.IntegKey = append([]byte(nil), k.IntegKey...)
	for i := range k.EncrKey {
		k.EncrKey[i] ^= seed
	}
	for i := range k.IntegKey {
		k.IntegKey[i] ^= seed
	}
	return k
}

// pair is client a and gateway b with Child SA 1: a->b SPI 0x1001, b->a SPI 0x2001.
type pair struct {
	n    *memnet.Network
	a, b *peer
	kAB  Keys
	kBA  Keys
}

func newPair(t testing.TB, k Keys, esn bool, keepalive time.Duration) *pair {
	t.Helper()
	return newPairCfg(t, k, esn, keepalive, nil)
}

// newPairCfg is newPair with mod applied to both peers' Config.
func newPairCfg(t testing.TB, k Keys, esn bool, keepalive time.Duration, mod func(*Config)) *pair {
	t.Helper()
	n := memnet.New()
	n.SetQueueLen(8192)
	p := &pair{
		n:   n,
		a:   newPeerCfg(t, n, mod, aV4, aV4b, aV6),
		b:   newPeerCfg(t, n, mod, bV4, bV4b, bV6),
		kAB: testKeys(k, 1),
		kBA: testKeys(k, 2),
	}
	must(t, p.a.d.InstallOutbound(1, SAConfig{SPI: 0x1001, Keys: p.kAB, ESN: esn, LocalTS: clientTS, RemoteTS: netTS, Keepalive: keepalive}, ap(aV4, nattPort), ap(bV4, nattPort)))
	must(t, p.b.d.AddInbound(SAConfig{SPI: 0x1001, Keys: p.kAB, ESN: esn, LocalTS: netTS, RemoteTS: clientTS}))
	must(t, p.b.d.InstallOutbound(1, SAConfig{SPI: 0x2001, Keys: p.kBA, ESN: esn, LocalTS: netTS, RemoteTS: clientTS}, ap(bV4, nattPort), ap(aV4, nattPort)))
	must(t, p.a.d.AddInbound(SAConfig{SPI: 0x2001, Keys: p.kBA, ESN: esn, LocalTS: clientTS, RemoteTS: netTS}))
	return p
}

func (p *pair) start(t testing.TB) {
	p.a.start(t)
	p.b.start(t)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// through sends pkt into from's TUN and checks it comes out of to's TUN unchanged.
func through(t testing.TB, from, to *peer, pkt []byte) {
	t.Helper()
	must(t, from.tun.Inject(pkt))
	if got := to.recv(t); !bytes.Equal(got, pkt) {
		t.Fatalf("packet changed:\n got %x\nwant %x", got, pkt)
	}
}

func goroutines() int { return runtime.NumGoroutine() }

func checkNoLeak(t testing.TB, before int) {
	t.Helper()
	eventually(t, "goroutines to end", func() bool { return goroutines() <= before })
}

func TestTwoDatapaths(t *testing.T) {
	for _, s := range testSuites {
		t.Run(s.name, func(t *testing.T) {
			before := goroutines()
			p := newPair(t, s.keys, false, 0)
			p.start(t)
			var bytesAB, bytesBA uint64
			for _, size := range []int{0, 1, 3, 100, 1000, testMTU - 60} {
				payload := seqBytes(size)
				for _, pk := range [][]byte{
					ipv4Packet("10.0.0.2", "10.1.2.3", protoUDP, 1234, 80, payload),
					ipv6Packet("fd00::2", "fd00:1::3", protoUDP, 1234, 80, payload),
				} {
					through(t, p.a, p.b, pk)
					bytesAB += uint64(len(pk))
				}
				for _, pk := range [][]byte{
					ipv4Packet("10.1.2.3", "10.0.0.2", protoTCP, 80, 1234, payload),
					ipv6Packet("fd00:1::3", "fd00::2", protoTCP, 80, 1234, payload),
				} {
					through(t, p.b, p.a, pk)
					bytesBA += uint64(len(pk))
				}
			}
			check := func(name string, c Counters, ok bool, bytes uint64) {
				t.Helper()
				if !ok || c.Packets != 12 || c.Bytes != bytes || c.Seq != 12 || c.Dropped != 0 || c.Last.IsZero() {
					t.Errorf("%s: %+v %v, want 12 packets, %d bytes", name, c, ok, bytes)
				}
			}
			c, ok := p.a.d.OutboundCounters(1)
			check("a out", c, ok, bytesAB)
			c, ok = p.b.d.InboundCounters(0x1001)
			check("b in", c, ok, bytesAB)
			c, ok = p.b.d.OutboundCounters(1)
			check("b out", c, ok, bytesBA)
			c, ok = p.a.d.InboundCounters(0x2001)
			check("a in", c, ok, bytesBA)
			for _, x := range []*peer{p.a, p.b} {
				if d := x.d.Drops(); d != (DropCounters{}) {
					t.Errorf("drops: %+v", d)
				}
			}
			must(t, p.a.stop())
			must(t, p.b.stop())
			checkNoLeak(t, before)
		})
	}
}

// capture is a memnet filter that keeps the datagrams from src to dst and, while drop
// is set, does not deliver them.
type capture struct {
	mu       sync.Mutex
	src, dst netip.AddrPort
	got      [][]byte
	drop     atomic.Bool
}

func (c *capture) filter(p *memnet.Packet) []memnet.Packet {
	if p.Src != c.src || p.Dst != c.dst {
		return []memnet.Packet{*p}
	}
	c.mu.Lock()
	c.got = append(c.got, append([]byte(nil), p.Data...))
	c.mu.Unlock()
	if c.drop.Load() {
		return nil
	}
	return []memnet.Packet{*p}
}

func (c *capture) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

func (c *capture) last(t testing.TB) []byte {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.got) == 0 {
		t.Fatal("nothing captured")
	}
	return append([]byte(nil), c.got[len(c.got)-1]...)
}

// attacker returns a function that sends datagrams to b's NAT-T port from another
// host: ESP-in-UDP does not bind an SA to the outer source, so anyone on the path can.
func (p *pair) attacker(t testing.TB) func([]byte) {
	h := p.n.Host(netip.MustParseAddr("203.0.113.66"))
	cs, err := h.Listen(nattPort)
	must(t, err)
	return func(b []byte) {
		t.Helper()
		if _, err := cs[0].WriteBatch([]udp.Message{{Buffer: b, N: len(b), Remote: ap(bV4, nattPort)}}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestInboundDrops(t *testing.T) {
	p := newPair(t, testSuites[0].keys, false, 0)
	cp := &capture{src: ap(aV4, nattPort), dst: ap(bV4, nattPort)}
	p.n.SetFilter(cp.filter)
	send := p.attacker(t)
	p.start(t)
	pkt := ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, []byte("hello"))
	through(t, p.a, p.b, pkt)
	orig := cp.last(t)

	// Replayed: dropped.
	send(orig)
	eventually(t, "replay drop", func() bool { return p.b.d.Drops().Replay == 1 })

	// A fresh datagram, held back, corrupted: authentication fails and the window does
	// not move, so the genuine one is still accepted afterwards.
	cp.drop.Store(true)
	must(t, p.a.tun.Inject(pkt))
	eventually(t, "capture", func() bool { return cp.count() == 2 })
	cp.drop.Store(false)
	fresh := cp.last(t)
	bad := append([]byte(nil), fresh...)
	bad[len(bad)-20] ^= 1
	send(bad)
	eventually(t, "auth drop", func() bool { return p.b.d.Drops().AuthFailed == 1 })
	send(fresh)
	if got := p.b.recv(t); !bytes.Equal(got, pkt) {
		t.Fatalf("genuine packet after the corrupted one: %x", got)
	}

	// Unknown SPI.
	unk := append([]byte(nil), fresh...)
	unk[3] ^= 0x40
	send(unk)
	eventually(t, "unknown SPI", func() bool { return p.b.d.Drops().UnknownSPI == 1 })

	// Crafted with the right keys: dummy (next header 59), bad next header, inner
	// version not matching the next header, truncated inner packet; then garbage
	// that is not ESP.
	s := mustSuite(t, p.kAB)
	var sc scratch
	seq := uint64(1000)
	craft := func(inner []byte, nh byte) []byte {
		seq++
		b := make([]byte, 16+len(inner)+maxTailLen)
		copy(b[16:], inner)
		n := s.seal(&sc, b, 0x1001, seq, false, len(inner), nh)
		return b[:n]
	}
	send(craft(seqBytes(20), protoNoNxt))
	send(craft(pkt, protoTCP))
	send(craft(pkt, protoIPv6))
	send(craft(pkt[:19], protoIPv4))
	send([]byte{1, 2, 3})
	send([]byte{0, 0, 0})
	eventually(t, "crafted drops", func() bool {
		d := p.b.d.Drops()
		return d.Dummy == 1 && d.BadTrailer == 1 && d.Malformed == 4
	})

	// Inner source outside the selectors: a reinstalls its outbound SA with a wider
	// LocalTS than b's inbound RemoteTS (a misbehaving peer).
	wide := []Selector{ts(0, "10.0.0.0", "10.0.0.255")}
	must(t, p.a.d.InstallOutbound(1, SAConfig{SPI: 0x1001, Keys: p.kAB, LocalTS: wide, RemoteTS: netTS}, ap(aV4, nattPort), ap(bV4, nattPort)))
	// The new SA starts its sequence numbers afresh; b's window is past them, so skip.
	p.a.d.out.Load().child(1).seq.Store(5000)
	must(t, p.a.tun.Inject(ipv4Packet("10.0.0.3", "10.1.0.1", protoUDP, 1, 2, nil)))
	eventually(t, "selector drop", func() bool { return p.b.d.Drops().Selector == 1 })
	through(t, p.a, p.b, pkt) // an allowed source still passes
	p.b.expectNothing(t)

	c, _ := p.b.d.InboundCounters(0x1001)
	if c.Packets != 3 || c.Dropped != 7 {
		t.Errorf("b inbound counters %+v, want 3 packets, 7 dropped (replay, auth, dummy, trailer, 2 malformed inner, selector)", c)
	}
	// No policy on a's side.
	must(t, p.a.tun.Inject(ipv4Packet("10.0.0.2", "192.168.0.1", protoUDP, 1, 2, nil)))
	eventually(t, "no policy", func() bool { return p.a.d.Drops().NoPolicy == 1 })
}

// sendIKE sends the IKE message pkt behind the non-ESP marker on p's NAT-T socket of
// remote's family, as the caller of a Datapath does.
func (p *peer) sendIKE(t testing.TB, local, remote netip.AddrPort, pkt []byte) {
	t.Helper()
	b := FrameIKE(pkt)
	c := p.conns[connKey{remote.Addr().Is4(), nattPort}]
	n, err := c.WriteBatch([]udp.Message{{Buffer: b, N: len(b), Local: local, Remote: remote}})
	if err != nil || n != 1 {
		t.Fatalf("sending IKE to %s: %d, %v", remote, n, err)
	}
}

// TestIKEDemux: IKE behind the non-ESP marker on the NAT-T port is handed to OnIKE
// without the marker, with the addresses it came with; keepalives are counted.
func TestIKEDemux(t *testing.T) {
	p := newPair(t, testSuites[0].keys, false, 0)
	var raw sync.Map // the last datagram to b
	p.n.SetFilter(func(pk *memnet.Packet) []memnet.Packet {
		if pk.Dst.Addr() == bV4 {
			raw.Store(pk.Dst.Port(), append([]byte(nil), pk.Data...))
		}
		return []memnet.Packet{*pk}
	})
	p.start(t)
	for _, size := range []int{28, 1500, MaxIKEMessage} {
		msg := seqBytes(size)
		p.a.sendIKE(t, ap(aV4, nattPort), ap(bV4, nattPort), msg)
		m := p.b.recvIKE(t)
		if !bytes.Equal(m.pkt, msg) || m.local != ap(bV4, nattPort) || m.remote != ap(aV4, nattPort) {
			t.Fatalf("size %d: got %d bytes %s <- %s", size, len(m.pkt), m.local, m.remote)
		}
	}
	// One byte too many is truncated and dropped.
	p.a.sendIKE(t, ap(aV4, nattPort), ap(bV4, nattPort), seqBytes(MaxIKEMessage+1))
	eventually(t, "truncated", func() bool { return p.b.d.Drops().Truncated == 1 })

	// IPv6, kernel-chosen source.
	p.a.sendIKE(t, netip.AddrPortFrom(netip.IPv6Unspecified(), nattPort), ap(bV6, nattPort), []byte("v6"))
	if m := p.b.recvIKE(t); string(m.pkt) != "v6" || m.remote != ap(aV6, nattPort) || m.local != ap(bV6, nattPort) {
		t.Fatalf("v6: %+v", m)
	}

	// Keepalives are counted, not handed up; on the wire they are one 0xFF byte.
	must(t, p.a.d.SendKeepalive(ap(aV4, nattPort), ap(bV4, nattPort)))
	eventually(t, "keepalive", func() bool { return p.b.d.Drops().Keepalives == 1 })
	if r, _ := raw.Load(uint16(nattPort)); !bytes.Equal(r.([]byte), []byte{0xff}) {
		t.Fatalf("keepalive on the wire: %x", r)
	}
	must(t, p.a.d.SendKeepalive(netip.AddrPortFrom(netip.IPv6Unspecified(), nattPort), ap(bV6, nattPort)))
	eventually(t, "IPv6 keepalive", func() bool { return p.b.d.Drops().Keepalives == 2 })

	// Errors: no socket for the port (the IKE port is not the datapath's), family
	// mismatch, no destination.
	for _, tc := range [][2]netip.AddrPort{
		{ap(aV4, 500), ap(bV4, 500)},
		{ap(aV4, nattPort), ap(bV6, nattPort)},
		{ap(aV4, nattPort), {}},
	} {
		if err := p.a.d.SendKeepalive(tc[0], tc[1]); err == nil {
			t.Errorf("SendKeepalive(%s, %s) accepted", tc[0], tc[1])
		}
	}
	select {
	case m := <-p.b.ike:
		t.Errorf("unexpected IKE message %x", m.pkt)
	default:
	}
	if p.b.d.Drops().Malformed != 0 {
		t.Errorf("drops %+v", p.b.d.Drops())
	}
}

// TestRekeyMidStream replaces a's outbound SA while packets flow: nothing is lost.
func TestRekeyMidStream(t *testing.T) {
	p := newPair(t, testSuites[2].keys, false, 0)
	p.start(t)
	const total = 3000
	go func() {
		for i := range total {
			if p.a.tun.Inject(ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, binary.BigEndian.AppendUint32(nil, uint32(i)))) != nil {
				return
			}
			if i%50 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	newKeys := testKeys(testSuites[2].keys, 3)
	seen := make([]bool, total)
	for got := range total {
		if got == total/3 {
			// Make before break: the new inbound SA first, then the outbound switch.
			must(t, p.b.d.AddInbound(SAConfig{SPI: 0x1002, Keys: newKeys, LocalTS: netTS, RemoteTS: clientTS}))
			must(t, p.a.d.InstallOutbound(1, SAConfig{SPI: 0x1002, Keys: newKeys, LocalTS: clientTS, RemoteTS: netTS}, ap(aV4, nattPort), ap(bV4, nattPort)))
		}
		b := p.b.recv(t)
		i := binary.BigEndian.Uint32(b[len(b)-4:])
		if seen[i] {
			t.Fatalf("packet %d twice", i)
		}
		seen[i] = true
	}
	old, _ := p.b.d.InboundCounters(0x1001)
	cur, _ := p.b.d.InboundCounters(0x1002)
	out, _ := p.a.d.OutboundCounters(1)
	if old.Packets+cur.Packets != total || old.Packets < total/3 || cur.Packets == 0 || out.Packets != cur.Packets || out.Seq != cur.Packets {
		t.Fatalf("old %+v new %+v a out %+v", old, cur, out)
	}
	p.b.d.RemoveInbound(0x1001)
	if _, ok := p.b.d.InboundCounters(0x1001); ok {
		t.Fatal("old SA still there")
	}
	// The totals keep what the removed and the replaced SAs carried (metrics).
	if in, _ := p.b.d.Totals(); in.Packets != total || in.Bytes != old.Bytes+cur.Bytes {
		t.Fatalf("b's inbound totals %+v, want %d packets, %d bytes", in, total, old.Bytes+cur.Bytes)
	}
	if _, out := p.a.d.Totals(); out.Packets != total {
		t.Fatalf("a's outbound totals %+v, want %d packets", out, total)
	}
	through(t, p.a, p.b, ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, nil))
}

// TestSetEndpoints moves a's outbound SA to another address of b, then to IPv6.
func TestSetEndpoints(t *testing.T) {
	p := newPair(t, testSuites[0].keys, false, 0)
	var last atomic.Pointer[memnet.Packet]
	p.n.SetFilter(func(pk *memnet.Packet) []memnet.Packet {
		if len(pk.Data) > 8 && pk.Src.Addr() != bV4 && pk.Src.Addr() != bV6 {
			c := *pk
			last.Store(&c)
		}
		return []memnet.Packet{*pk}
	})
	p.start(t)
	pkt := ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, nil)
	through(t, p.a, p.b, pkt)
	for _, ep := range [][2]netip.AddrPort{
		{ap(aV4b, nattPort), ap(bV4b, nattPort)},
		{ap(aV6, nattPort), ap(bV6, nattPort)},
		{netip.AddrPortFrom(netip.IPv6Unspecified(), nattPort), ap(bV6, nattPort)},
	} {
		must(t, p.a.d.SetEndpoints(1, ep[0], ep[1]))
		through(t, p.a, p.b, pkt)
		d := last.Load()
		wantSrc := ep[0]
		if !wantSrc.Addr().IsValid() || wantSrc.Addr().IsUnspecified() {
			wantSrc = ap(aV6, nattPort)
		}
		if d.Src != wantSrc || d.Dst != ep[1] {
			t.Fatalf("sent %s -> %s, want %s -> %s", d.Src, d.Dst, wantSrc, ep[1])
		}
	}
	if err := p.a.d.SetEndpoints(2, ap(aV4, nattPort), ap(bV4, nattPort)); err == nil {
		t.Error("SetEndpoints for an unknown child accepted")
	}
	if err := p.a.d.SetEndpoints(1, ap(aV4, 4501), ap(bV4, nattPort)); err == nil {
		t.Error("SetEndpoints to a port without socket accepted")
	}
}

// TestSetEndpointsAtomic flips the endpoints while traffic flows: every datagram
// goes from one pair's source to the same pair's destination.
func TestSetEndpointsAtomic(t *testing.T) {
	p := newPair(t, testSuites[0].keys, false, 0)
	x := [2]netip.AddrPort{ap(aV4, nattPort), ap(bV4, nattPort)}
	y := [2]netip.AddrPort{ap(aV4b, nattPort), ap(bV4b, nattPort)}
	var mixed atomic.Int64
	p.n.SetFilter(func(pk *memnet.Packet) []memnet.Packet {
		if len(pk.Data) > 8 && (pk.Src.Addr() == aV4 || pk.Src.Addr() == aV4b) {
			if pr := [2]netip.AddrPort{pk.Src, pk.Dst}; pr != x && pr != y {
				mixed.Add(1)
			}
		}
		return []memnet.Packet{*pk}
	})
	p.start(t)
	const total = 2000
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			e := x
			if i%2 == 1 {
				e = y
			}
			if err := p.a.d.SetEndpoints(1, e[0], e[1]); err != nil {
				t.Error(err)
				return
			}
		}
	})
	go func() {
		for i := range total {
			if p.a.tun.Inject(ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, binary.BigEndian.AppendUint32(nil, uint32(i)))) != nil {
				return
			}
		}
	}()
	for range total {
		p.b.recv(t)
	}
	close(stop)
	wg.Wait()
	if n := mixed.Load(); n != 0 {
		t.Fatalf("%d datagrams with a half-updated endpoint", n)
	}
}

// TestESNAcrossBoundary sends across sequence number 2^32 with ESN, and runs out of
// sequence numbers without.
func TestESNAcrossBoundary(t *testing.T) {
	for _, s := range []int{0, 3} { // AEAD and CBC/HMAC
		p := newPair(t, testSuites[s].keys, true, 0)
		p.a.d.out.Load().child(1).seq.Store(1<<32 - 4)
		in := p.b.d.in.Load().get(0x1001)
		in.mu.Lock()
		in.win.commit(1<<32 - 4)
		in.mu.Unlock()
		p.start(t)
		for i := range 8 {
			through(t, p.a, p.b, ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, []byte{byte(i)}))
		}
		c, _ := p.b.d.InboundCounters(0x1001)
		if c.Seq != 1<<32+4 || c.Packets != 8 {
			t.Fatalf("%s: inbound %+v", testSuites[s].name, c)
		}
	}

	p := newPair(t, testSuites[0].keys, false, 0)
	p.a.d.out.Load().child(1).seq.Store(math.MaxUint32 - 2)
	p.start(t)
	for range 2 {
		through(t, p.a, p.b, ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, nil))
	}
	for range 3 {
		must(t, p.a.tun.Inject(ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, nil)))
	}
	eventually(t, "exhaustion", func() bool { return p.a.d.Drops().SeqExhausted == 3 })
	p.b.expectNothing(t)
	if c, _ := p.a.d.OutboundCounters(1); c.Seq != math.MaxUint32 || c.Dropped != 3 {
		t.Fatalf("outbound %+v", c)
	}
}

func TestRunEnds(t *testing.T) {
	before := goroutines()
	p := newPair(t, testSuites[0].keys, false, 0)
	p.start(t)
	through(t, p.a, p.b, ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, nil))
	// The TUN device closing ends Run with an error; the sockets are closed too.
	p.a.tun.Close()
	err := p.a.wait()
	if err == nil || !strings.Contains(err.Error(), "TUN closed") {
		t.Fatalf("Run after TUN close: %v", err)
	}
	for _, c := range p.a.conns {
		if _, err := c.WriteBatch([]udp.Message{{Buffer: []byte{1}, N: 1, Remote: ap(bV4, 9)}}); err == nil {
			t.Fatal("socket left open")
		}
	}
	if err := p.a.d.Run(context.Background()); err == nil {
		t.Fatal("second Run accepted")
	}
	must(t, p.b.stop())
	checkNoLeak(t, before)
}

func TestConfigErrors(t *testing.T) {
	h := memnet.New().Host(aV4)
	cs, err := h.Listen(nattPort)
	must(t, err)
	c4 := cs[0]
	cs, err = h.Listen(nattPort + 1) // another port: allowed, one socket per family and port
	must(t, err)
	c4b := cs[0]
	tn := memtun.New("test", testMTU)
	for i, cfg := range []Config{
		{Conns: []udp.Conn{c4}},
		{TUN: tn},
		{TUN: tn, Conns: []udp.Conn{c4, c4}},
		{TUN: tn, Conns: []udp.Conn{nil}},
		{TUN: tn, Conns: []udp.Conn{c4}, MTU: 100},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%d: New accepted %+v", i, cfg)
		}
	}
	d, err := New(Config{TUN: tn, Conns: []udp.Conn{c4, c4b}})
	if err != nil {
		t.Fatal(err)
	}
	if d.mtu != testMTU {
		t.Fatalf("New: %v (MTU from the TUN device: %d)", err, d.mtu)
	}
	good := SAConfig{SPI: 0x1000, Keys: testSuites[0].keys, LocalTS: clientTS, RemoteTS: netTS}
	must(t, d.AddInbound(good))
	if err := d.AddInbound(good); err == nil {
		t.Error("duplicate inbound SPI accepted")
	}
	bad := []SAConfig{
		{SPI: 255, Keys: good.Keys, LocalTS: clientTS, RemoteTS: netTS},
		{SPI: 0x1001, Keys: Keys{Encr: EncrAESGCM16}, LocalTS: clientTS, RemoteTS: netTS},
		{SPI: 0x1001, Keys: good.Keys, RemoteTS: netTS},
		{SPI: 0x1001, Keys: good.Keys, LocalTS: clientTS},
	}
	for i, c := range bad {
		if err := d.AddInbound(c); err == nil {
			t.Errorf("AddInbound %d accepted", i)
		}
		if err := d.InstallOutbound(1, c, ap(netip.MustParseAddr("192.0.2.1"), nattPort), ap(bV4, nattPort)); err == nil {
			t.Errorf("InstallOutbound %d accepted", i)
		}
	}
	if err := d.InstallOutbound(1, good, ap(netip.MustParseAddr("192.0.2.1"), nattPort), ap(bV6, nattPort)); err == nil {
		t.Error("InstallOutbound to IPv6 without an IPv6 socket accepted")
	}
	if err := d.InstallOutbound(1, SAConfig{SPI: 0x1001, Keys: good.Keys, LocalTS: clientTS, RemoteTS: netTS, Keepalive: -1}, ap(aV4, nattPort), ap(bV4, nattPort)); err == nil {
		t.Error("negative keepalive accepted")
	}
	must(t, d.InstallOutbound(7, good, ap(aV4, nattPort), ap(bV4, nattPort)))
	d.RemoveOutbound(7)
	d.RemoveOutbound(7)
	if _, ok := d.OutboundCounters(7); ok {
		t.Error("removed outbound SA still has counters")
	}
	d.RemoveInbound(0x1000)
	d.RemoveInbound(0x1000)
	if _, ok := d.InboundCounters(0x1000); ok {
		t.Error("removed inbound SA still has counters")
	}
}

func TestDropLogRateLimited(t *testing.T) {
	var buf syncBuffer
	cs, err := memnet.New().Host(aV4).Listen(nattPort)
	must(t, err)
	d, err := New(Config{TUN: memtun.New("test", testMTU), Conns: cs, Logger: newDebugLogger(&buf)})
	must(t, err)
	for range 100 {
		d.drop(dropUnknownSPI, nil)
		d.drop(dropAuth, nil)
	}
	if got := strings.Count(buf.String(), "\n"); got != 2 {
		t.Fatalf("%d log lines for 200 drops of 2 reasons:\n%s", got, buf.String())
	}
	if d.Drops().UnknownSPI != 100 || d.Drops().AuthFailed != 100 {
		t.Fatalf("%+v", d.Drops())
	}
}

func TestDropSnapshot(t *testing.T) {
	// Every drop reason has a name, and the snapshot maps each counted reason.
	var d drops
	for r := dropReason(1); r < numDropReasons; r++ {
		if r.String() == "" || r.String() == "unknown" {
			t.Errorf("reason %d has no name", r)
		}
		d.n[r].Add(uint64(r))
	}
	s := d.snapshot()
	total := s.Malformed + s.UnknownSPI + s.AuthFailed + s.Replay + s.BadTrailer + s.Dummy + s.Selector + s.NoPolicy +
		s.SeqExhausted + s.Truncated + s.TooBig + s.SendError + s.TUNWrite + s.TUNRead + s.ReadError + s.NoIKEHandler + s.HandQueue
	want := uint64(0)
	for r := dropReason(1); r < numDropReasons; r++ {
		want += uint64(r)
	}
	if total != want {
		t.Fatalf("snapshot sums to %d, want %d: %s", total, want, fmt.Sprintf("%+v", s))
	}
}

// TestReorderAndDuplicates runs traffic through a network that duplicates and
// reorders: every packet arrives once, every duplicate is dropped as a replay.
func TestReorderAndDuplicates(t *testing.T) {
	p := newPair(t, testSuites[2].keys, true, 0)
	p.n.SetImpairment(memnet.Impairment{Duplicate: 0.2, Reorder: 0.3, Seed: 42})
	p.start(t)
	const total = 2000
	go func() {
		for i := range total {
			if p.a.tun.Inject(ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, binary.BigEndian.AppendUint32(nil, uint32(i)))) != nil {
				return
			}
		}
	}()
	seen := make([]bool, total)
	reordered := 0
	prev := -1
	for got := 0; got < total; got++ {
		var b []byte
		select {
		case b = <-p.b.tun.Written():
		case <-time.After(50 * time.Millisecond):
			p.n.Flush() // the last datagram may be held back
			b = p.b.recv(t)
		}
		i := int(binary.BigEndian.Uint32(b[len(b)-4:]))
		if seen[i] {
			t.Fatalf("packet %d delivered twice", i)
		}
		seen[i] = true
		if i < prev {
			reordered++
		}
		prev = i
	}
	st := p.n.Stats()
	eventually(t, "replay drops", func() bool { return p.b.d.Drops().Replay == st.Duplicated })
	if reordered == 0 || st.Duplicated == 0 || st.Lost != 0 {
		t.Fatalf("impairment did not happen: %d reordered, %+v", reordered, st)
	}
	p.b.expectNothing(t)
}

// An SA continued from another datapath (moved between processes): the sender goes on
// after the sequence number it is given, the receiver accepts nothing at or below its
// own.
func TestContinuedSA(t *testing.T) {
	p := newPair(t, testSuites[0].keys, false, 0)
	const sent = 70_000 // the previous owner's last sequence number
	must(t, p.a.d.InstallOutbound(1, SAConfig{SPI: 0x1001, Keys: p.kAB, LocalTS: clientTS, RemoteTS: netTS, Seq: sent}, ap(aV4, nattPort), ap(bV4, nattPort)))
	p.b.d.RemoveInbound(0x1001)
	must(t, p.b.d.AddInbound(SAConfig{SPI: 0x1001, Keys: p.kAB, LocalTS: netTS, RemoteTS: clientTS, Seq: sent - 10}))
	p.start(t)
	through(t, p.a, p.b, ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, []byte{1}))
	if c, _ := p.a.d.OutboundCounters(1); c.Seq != sent+1 {
		t.Errorf("outbound: first packet carried %d, want %d", c.Seq, sent+1)
	}
	if c, _ := p.b.d.InboundCounters(0x1001); c.Seq != sent+1 || c.Packets != 1 {
		t.Errorf("inbound: %+v", c)
	}
	// A receiver that saw more than the sender now sends refuses what is not above it.
	p.b.d.RemoveInbound(0x1001)
	must(t, p.b.d.AddInbound(SAConfig{SPI: 0x1001, Keys: p.kAB, LocalTS: netTS, RemoteTS: clientTS, Seq: sent + 3}))
	for range 2 {
		must(t, p.a.tun.Inject(ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, nil))) // sent+2, sent+3
	}
	eventually(t, "replay drops", func() bool { return p.b.d.Drops().Replay == 2 })
	through(t, p.a, p.b, ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, []byte{4})) // sent+4
	p.b.expectNothing(t)

	// No sequence number left, or one past what the SA may carry: refused.
	if err := p.a.d.InstallOutbound(2, SAConfig{SPI: 0x1002, Keys: p.kAB, LocalTS: clientTS, RemoteTS: netTS, Seq: 1<<32 - 1}, ap(aV4, nattPort), ap(bV4, nattPort)); err == nil {
		t.Error("an outbound SA without sequence numbers left installed")
	}
	if err := p.b.d.AddInbound(SAConfig{SPI: 0x1003, Keys: p.kAB, LocalTS: netTS, RemoteTS: clientTS, Seq: 1 << 32}); err == nil {
		t.Error("an inbound SA without ESN at 2^32 installed")
	}
}

// Moving an SA's sending elsewhere: the old datapath keeps a reserve and stops at its
// bound; the new one starts above it. No (SA, sequence number) is sent twice.
func TestReserveOutbound(t *testing.T) {
	p := newPair(t, testSuites[0].keys, false, 0)
	p.start(t)
	for i := range 3 {
		through(t, p.a, p.b, ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, []byte{byte(i)}))
	}
	if _, err := p.a.d.ReserveOutbound(1, MinReserve-1); err == nil {
		t.Error("a reserve below MinReserve accepted")
	}
	if _, err := p.a.d.ReserveOutbound(7, MinReserve); err == nil {
		t.Error("a reserve for an unknown child accepted")
	}
	bound, err := p.a.d.ReserveOutbound(1, MinReserve)
	if err != nil || bound != 3+MinReserve {
		t.Fatalf("bound %d, %v; want %d", bound, err, 3+MinReserve)
	}
	// The old owner sends up to the bound and drops what is beyond.
	p.a.d.out.Load().child(1).seq.Store(bound - 1)
	through(t, p.a, p.b, ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, []byte{9}))
	must(t, p.a.tun.Inject(ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, nil)))
	eventually(t, "beyond the bound dropped", func() bool { return p.a.d.Drops().SeqExhausted == 1 })
	p.b.expectNothing(t)
	// The new owner (here: a replacement on the same datapath) continues above it.
	must(t, p.a.d.InstallOutbound(1, SAConfig{SPI: 0x1001, Keys: p.kAB, LocalTS: clientTS, RemoteTS: netTS, Seq: bound}, ap(aV4, nattPort), ap(bV4, nattPort)))
	through(t, p.a, p.b, ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, []byte{10}))
	if c, _ := p.b.d.InboundCounters(0x1001); c.Seq != bound+1 {
		t.Errorf("the continuation sent %d, want %d", c.Seq, bound+1)
	}
	// Too few numbers left for the reserve.
	p.a.d.out.Load().child(1).seq.Store(1<<32 - 1 - MinReserve)
	if _, err := p.a.d.ReserveOutbound(1, MinReserve); err == nil {
		t.Error("a reserve beyond the numbers left accepted")
	}
}

// Senders racing with ReserveOutbound never take a number beyond the bound it returns.
func TestReserveOutboundRacingSenders(t *testing.T) {
	p := newPair(t, testSuites[0].keys, false, 0)
	sa := p.a.d.out.Load().child(1)
	for round := range 50 {
		var wg sync.WaitGroup
		var highest atomic.Uint64
		stop := make(chan struct{})
		for range 8 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					s, ok := sa.nextSeq()
					if !ok {
						return
					}
					for h := highest.Load(); s > h && !highest.CompareAndSwap(h, s); h = highest.Load() {
					}
				}
			})
		}
		bound, err := p.a.d.ReserveOutbound(1, MinReserve)
		close(stop)
		wg.Wait()
		if err == nil && highest.Load() > bound {
			t.Fatalf("round %d: sequence number %d sent beyond the bound %d", round, highest.Load(), bound)
		}
		// Lift the cap for the next round, as a fresh SA would have it.
		sa.seqMax.Store(1<<32 - 1)
	}
}

// TestRetiredTrafficSettles: a retired SA's counters are read afresh until they
// settle (a packet in flight still counts), then folded into the sums; the list of
// recent ones stays bounded without any Totals call.
func TestRetiredTrafficSettles(t *testing.T) {
	var r retiredTraffic
	var c saCounters
	c.packets.Store(10)
	r.add(false, &c)
	c.packets.Add(1) // a packet in flight on the retired SA
	if got := r.settle(time.Now()); got.outPackets != 11 {
		t.Fatalf("recent: %d packets, want 11", got.outPackets)
	}
	if got := r.settle(time.Now().Add(3 * time.Second)); got.outPackets != 11 || len(r.recent) != 0 {
		t.Fatalf("settled: %d packets, %d recent", got.outPackets, len(r.recent))
	}
	for range 1000 {
		r.recent = append(r.recent, retiredSA{c: &saCounters{}, at: time.Now().Add(-time.Hour)})
	}
	r.add(true, &saCounters{})
	if len(r.recent) != 1 {
		t.Fatalf("%d retired SAs kept, want the one just added", len(r.recent))
	}
}
