package esp

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mobikevpn/mobikevpn/udp"
)

// TestParallelKeepsOrder splits every batch over 4 workers (in both directions at
// once, sharing the helpers) and checks that each direction delivers every packet
// exactly once and in order, and that the counters add up.
func TestParallelKeepsOrder(t *testing.T) {
	for _, s := range []int{0, 2, 3} { // AES-GCM, ChaCha20-Poly1305, AES-CBC/HMAC
		t.Run(testSuites[s].name, func(t *testing.T) {
			before := goroutines()
			p := newPairCfg(t, testSuites[s].keys, false, 0, func(c *Config) { c.Workers = 4 })
			for _, x := range []*peer{p.a, p.b} {
				x.d.splitBytes = 1
				if x.d.workers != 4 || len(x.d.jobs) != 0 || cap(x.d.jobs) == 0 {
					t.Fatalf("workers %d, jobs %d/%d", x.d.workers, len(x.d.jobs), cap(x.d.jobs))
				}
			}
			p.start(t)
			const total = 3000
			inject := func(from *peer, src, dst string) {
				for i := range total {
					if from.tun.Inject(ipv4Packet(src, dst, protoUDP, 1, 2, binary.BigEndian.AppendUint32(seqBytes(i%300), uint32(i)))) != nil {
						return
					}
				}
			}
			check := func(to *peer) {
				for want := range total {
					b := to.recv(t)
					if got := int(binary.BigEndian.Uint32(b[len(b)-4:])); got != want {
						t.Errorf("packet %d arrived where %d was due", got, want)
						return
					}
				}
			}
			var wg sync.WaitGroup
			wg.Go(func() { inject(p.a, "10.0.0.2", "10.1.0.1") })
			wg.Go(func() { inject(p.b, "10.1.0.1", "10.0.0.2") })
			wg.Go(func() { check(p.b) })
			check(p.a)
			wg.Wait()
			out, _ := p.a.d.OutboundCounters(1)
			in, _ := p.b.d.InboundCounters(0x1001)
			if out.Packets != total || in.Packets != total || in.Seq != total || in.Dropped != 0 {
				t.Fatalf("a out %+v, b in %+v", out, in)
			}
			must(t, p.a.stop())
			must(t, p.b.stop())
			checkNoLeak(t, before)
		})
	}
}

// TestForkRunsEveryPartOnce forks many batches with and without helpers: each index is
// handled exactly once per batch.
func TestForkRunsEveryPartOnce(t *testing.T) {
	for _, helpers := range []int{0, 1, 3} {
		d := &Datapath{jobs: make(chan *part, 4), splitBytes: 1}
		var hits [97]atomic.Int32
		fns := make([]func(lo, hi int), 4)
		for k := range fns {
			fns[k] = func(lo, hi int) {
				for i := lo; i < hi; i++ {
					hits[i].Add(1)
				}
			}
		}
		parts := newParts(fns[1:])
		var wg sync.WaitGroup
		ctx, cancel := context.WithCancel(context.Background())
		for range helpers {
			wg.Go(func() { d.helper(ctx) })
		}
		for n := range len(hits) + 1 {
			for i := range hits {
				hits[i].Store(0)
			}
			d.fork(parts, fns[0], n, n)
			for i := range hits {
				want := int32(0)
				if i < n {
					want = 1
				}
				if got := hits[i].Load(); got != want {
					t.Fatalf("%d helpers, batch of %d: index %d run %d times", helpers, n, i, got)
				}
			}
		}
		cancel()
		wg.Wait()
	}
}

// trainConn is a socket double whose reads return prepared GRO trains.
type trainConn struct {
	sinkConn
	trains [][]byte
	seg    int
}

func (c *trainConn) ReadBatch(msgs []udp.Message) (int, error) {
	n := 0
	for ; n < len(msgs) && len(c.trains) > 0; n++ {
		m := &msgs[n]
		m.N = copy(m.Buffer, c.trains[0])
		m.Truncated = len(c.trains[0]) > len(m.Buffer)
		m.Segment = c.seg
		m.Remote, m.Local = ap(aV4, nattPort), ap(bV4, nattPort)
		c.trains = c.trains[1:]
	}
	return n, nil
}

// recordTUN keeps every packet written.
type recordTUN struct {
	loopTUN
	got [][]byte
}

func (r *recordTUN) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		r.got = append(r.got, append([]byte(nil), b[offset:]...))
	}
	return len(bufs), nil
}

// TestGROTrains feeds the receive path GRO trains (several ESP datagrams in one read,
// one of them more than a batch holds, and a keepalive and an IKE message of the same
// length in a train): every inner packet comes out once and in order.
func TestGROTrains(t *testing.T) {
	k := testSuites[0].keys
	s := mustSuite(t, k)
	var sc scratch
	inner := func(i int) []byte {
		return ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, binary.BigEndian.AppendUint32(seqBytes(28), uint32(i)))
	}
	stream := make([][]byte, 700)
	for i := range stream {
		in := inner(i)
		b := make([]byte, s.sealedLen(len(in)))
		copy(b[s.headLen():], in)
		s.seal(&sc, b, 0x1001, uint64(i+1), false, len(in), protoIPv4)
		stream[i] = b
	}
	seg := len(stream[0])
	var trains [][]byte
	train := func(dgrams ...[]byte) {
		var b []byte
		for _, d := range dgrams {
			b = append(b, d...)
		}
		trains = append(trains, b)
	}
	ike := append([]byte{0, 0, 0, 0}, seqBytes(seg-4)...)
	train(stream[:64]...)
	train(stream[64:500]...) // more than a batch's packets
	train(append(append([][]byte{}, stream[500:510]...), ike, stream[510])...)
	train(stream[511:700]...)
	lt := &recordTUN{}
	tc := &trainConn{sinkConn: sinkConn{local: ap(netip.IPv4Unspecified(), nattPort), batch: 128}, trains: trains, seg: seg}
	ikes := 0
	d, err := New(Config{TUN: lt, Conns: []udp.Conn{tc}, MTU: testMTU,
		OnIKE: func(pkt []byte, local, remote netip.AddrPort) { ikes++ }})
	must(t, err)
	must(t, d.AddInbound(SAConfig{SPI: 0x1001, Keys: k, LocalTS: netTS, RemoteTS: clientTS}))
	d.conns[0].gro = true // as udp.Offloader would report
	w := d.newInWorker(d.conns[0])
	if len(w.batches[0].msgs[0].Buffer) != udp.MaxGROSize {
		t.Fatalf("GRO read buffers of %d bytes", len(w.batches[0].msgs[0].Buffer))
	}
	for len(tc.trains) > 0 {
		must(t, w.step(func(msgs []udp.Message) int { n, _ := tc.ReadBatch(msgs[:1]); return n }))
	}
	if len(lt.got) != len(stream) || ikes != 1 {
		t.Fatalf("%d packets, %d IKE messages; drops %+v", len(lt.got), ikes, d.Drops())
	}
	for i, p := range lt.got {
		if !bytes.Equal(p, inner(i)) {
			t.Fatalf("packet %d: %x", i, p)
		}
	}
	c, _ := d.InboundCounters(0x1001)
	if c.Packets != uint64(len(stream)) || c.Seq != uint64(len(stream)) {
		t.Fatalf("counters %+v", c)
	}
}
