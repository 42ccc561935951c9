package esp

import (
	"encoding/binary"
	"math"
	"net/netip"
	"testing"

	"github.com/mobikevpn/mobikevpn/udp"
)

// Issue 11, finding 2: the datapath reports volume limits and the end of the sequence
// numbers to the IKE layer before they are reached, and never wraps the counter.

// seqConn is a socket double that records the ESP sequence number (low 32 bits) of
// every datagram sent.
type seqConn struct {
	local netip.AddrPort
	seqs  []uint32
}

func (s *seqConn) LocalAddr() netip.AddrPort            { return s.local }
func (s *seqConn) BatchSize() int                       { return 8 }
func (s *seqConn) Close() error                         { return nil }
func (s *seqConn) ReadBatch([]udp.Message) (int, error) { return 0, nil }

func (s *seqConn) WriteBatch(msgs []udp.Message) (int, error) {
	for _, m := range msgs {
		s.seqs = append(s.seqs, binary.BigEndian.Uint32(m.Buffer[4:8]))
	}
	return len(msgs), nil
}

// limitDatapath is a datapath over the non-allocating doubles with outbound SA 1
// (SPI 0x1001) configured by out and inbound SA 0x2001 configured by in; every TUN read
// returns batch packets of size bytes.
func limitDatapath(t *testing.T, batch, size int, out, in SAConfig) (*Datapath, *outWorker, *seqConn, *loopTUN) {
	t.Helper()
	k := testSuites[0].keys
	pkts := make([][]byte, batch)
	for i := range pkts {
		pkts[i] = ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, seqBytes(size-28))
	}
	lt := &loopTUN{pkts: pkts}
	sc := &seqConn{local: ap(netip.IPv4Unspecified(), nattPort)}
	d, err := New(Config{TUN: lt, Conns: []udp.Conn{sc}, MTU: testMTU})
	must(t, err)
	out.SPI, out.Keys, out.LocalTS, out.RemoteTS = 0x1001, k, clientTS, netTS
	must(t, d.InstallOutbound(1, out, ap(aV4, nattPort), ap(bV4, nattPort)))
	in.SPI, in.Keys, in.LocalTS, in.RemoteTS = 0x2001, k, netTS, clientTS
	must(t, d.AddInbound(in))
	return d, d.newOutWorker(), sc, lt
}

func (w *outWorker) sendBatch(lt *loopTUN) {
	w.step(func(bufs [][]byte, sizes []int) int {
		n, _ := lt.Read(bufs, sizes, outHeadroom)
		return n
	})
}

// signalled reports whether the datapath's signal is pending, and consumes it.
func signalled(d *Datapath) bool {
	select {
	case <-d.LimitsCrossed():
		return true
	default:
		return false
	}
}

func wantEvents(t *testing.T, d *Datapath, want ...LimitEvent) {
	t.Helper()
	if len(want) > 0 && !signalled(d) {
		t.Errorf("no signal for %+v", want)
	}
	got := d.TakeLimits()
	if len(got) != len(want) {
		t.Fatalf("events %+v, want %+v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("events %+v, want %+v", got, want)
		}
	}
}

func TestSenderSignalsBeforeSequenceNumbersRunOut(t *testing.T) {
	soft := LimitEvent{SPI: 0x1001, Child: 1}
	hard := LimitEvent{SPI: 0x1001, Child: 1, Hard: true}
	d, w, sc, lt := limitDatapath(t, 4, 100, SAConfig{}, SAConfig{})
	sa := d.out.Load().child(1)
	// Far from the end: nothing.
	w.sendBatch(lt)
	wantEvents(t, d)
	// Crossing 2^32 - 2^24: a rekey is asked for, once.
	sa.seq.Store(softSeq32 - 2)
	w.sendBatch(lt)
	wantEvents(t, d, soft)
	w.sendBatch(lt)
	wantEvents(t, d)
	// The last two sequence numbers go out, then nothing: no wrap to 0, drops counted,
	// and the SA reported as used up, once.
	sa.seq.Store(math.MaxUint32 - 2)
	sc.seqs = sc.seqs[:0]
	w.sendBatch(lt)
	w.sendBatch(lt)
	if len(sc.seqs) != 2 || sc.seqs[0] != math.MaxUint32-1 || sc.seqs[1] != math.MaxUint32 {
		t.Fatalf("sent sequence numbers %v, want the last two only", sc.seqs)
	}
	if dr := d.Drops().SeqExhausted; dr != 6 {
		t.Errorf("%d packets counted as dropped for exhaustion, want 6", dr)
	}
	if c, _ := d.OutboundCounters(1); c.Seq != math.MaxUint32 || c.Dropped != 6 {
		t.Errorf("outbound counters %+v", c)
	}
	wantEvents(t, d, hard)
	w.sendBatch(lt)
	wantEvents(t, d)
	if len(sc.seqs) != 2 {
		t.Errorf("sent after exhaustion: %v", sc.seqs)
	}
}

func TestSenderSignalsBeforeESNRunsOut(t *testing.T) {
	d, w, sc, lt := limitDatapath(t, 4, 100, SAConfig{ESN: true}, SAConfig{ESN: true})
	sa := d.out.Load().child(1)
	sa.seq.Store(1<<32 - 2) // crossing 2^32 is nothing special with ESN
	w.sendBatch(lt)
	wantEvents(t, d)
	sa.seq.Store(softSeq64 - 1)
	w.sendBatch(lt)
	wantEvents(t, d, LimitEvent{SPI: 0x1001, Child: 1})
	sa.seq.Store(math.MaxUint64 - 1)
	sc.seqs = sc.seqs[:0]
	w.sendBatch(lt)
	if len(sc.seqs) != 1 || sc.seqs[0] != math.MaxUint32 || sa.seq.Load() != math.MaxUint64 {
		t.Fatalf("sent %v, counter %d", sc.seqs, sa.seq.Load())
	}
	wantEvents(t, d, LimitEvent{SPI: 0x1001, Child: 1, Hard: true})
}

func TestOutboundVolumeLimits(t *testing.T) {
	t.Run("packets", func(t *testing.T) {
		d, w, sc, lt := limitDatapath(t, 4, 100, SAConfig{Limits: Limits{SoftPackets: 10, HardPackets: 18}}, SAConfig{})
		w.sendBatch(lt) // 4
		w.sendBatch(lt) // 8
		wantEvents(t, d)
		w.sendBatch(lt) // 12: past the soft limit
		wantEvents(t, d, LimitEvent{SPI: 0x1001, Child: 1})
		w.sendBatch(lt) // 16
		w.sendBatch(lt) // 18 sent, then the SA is done
		w.sendBatch(lt)
		wantEvents(t, d, LimitEvent{SPI: 0x1001, Child: 1, Hard: true})
		if len(sc.seqs) != 18 || sc.seqs[17] != 18 {
			t.Errorf("%d packets sent, want exactly the hard limit of 18", len(sc.seqs))
		}
	})
	t.Run("bytes", func(t *testing.T) {
		// 100-byte packets: soft past 1000 bytes, hard at 2000.
		d, w, sc, lt := limitDatapath(t, 4, 100, SAConfig{Limits: Limits{SoftBytes: 1000, HardBytes: 2000}}, SAConfig{})
		w.sendBatch(lt)
		w.sendBatch(lt)
		wantEvents(t, d)
		w.sendBatch(lt) // 1200 bytes
		wantEvents(t, d, LimitEvent{SPI: 0x1001, Child: 1})
		w.sendBatch(lt) // 1600
		w.sendBatch(lt) // 2000: the hard limit is reached, counted after the batch
		wantEvents(t, d, LimitEvent{SPI: 0x1001, Child: 1, Hard: true})
		w.sendBatch(lt)
		w.sendBatch(lt)
		if len(sc.seqs) != 20 {
			t.Errorf("sent %d packets, want 20 (2000 bytes) and none past the hard byte limit", len(sc.seqs))
		}
		if dr := d.Drops().SeqExhausted; dr != 8 {
			t.Errorf("%d drops counted past the hard limit, want 8", dr)
		}
	})
}

func TestInboundVolumeLimits(t *testing.T) {
	k := testSuites[0].keys
	d, _, sc := benchDatapath(t, k, 4, 100)
	d.RemoveInbound(0x1001)
	must(t, d.AddInbound(SAConfig{SPI: 0x1001, Keys: k, LocalTS: netTS, RemoteTS: clientTS, Limits: Limits{SoftPackets: 6, HardBytes: 1000}}))
	sc.in = espStream(t, k, 16, 100)
	iw := d.newInWorker(d.conns[0])
	must(t, iw.step(readAll(sc))) // 4 packets, 400 bytes
	wantEvents(t, d)
	must(t, iw.step(readAll(sc))) // 8, 800
	wantEvents(t, d, LimitEvent{Inbound: true, SPI: 0x1001})
	must(t, iw.step(readAll(sc))) // 12, 1200
	wantEvents(t, d, LimitEvent{Inbound: true, SPI: 0x1001, Hard: true})
	must(t, iw.step(readAll(sc)))
	wantEvents(t, d)
	// Without ESN an inbound SA asks for a rekey before the peer runs out, too.
	d.RemoveInbound(0x1001)
	must(t, d.AddInbound(SAConfig{SPI: 0x1001, Keys: k, LocalTS: netTS, RemoteTS: clientTS}))
	d.in.Load().get(0x1001).ctr.packets.Store(softSeq32 - 2)
	sc.in, sc.next = espStream(t, k, 4, 100), 0
	must(t, iw.step(readAll(sc)))
	wantEvents(t, d, LimitEvent{Inbound: true, SPI: 0x1001})
}

// A replacement SA starts with fresh counters and may signal again.
func TestLimitsPerSA(t *testing.T) {
	out := SAConfig{Limits: Limits{SoftPackets: 4}}
	d, w, _, lt := limitDatapath(t, 4, 100, out, SAConfig{})
	w.sendBatch(lt)
	wantEvents(t, d, LimitEvent{SPI: 0x1001, Child: 1})
	out.SPI, out.Keys, out.LocalTS, out.RemoteTS = 0x1002, testSuites[0].keys, clientTS, netTS
	must(t, d.InstallOutbound(1, out, ap(aV4, nattPort), ap(bV4, nattPort)))
	w.sendBatch(lt)
	wantEvents(t, d, LimitEvent{SPI: 0x1002, Child: 1})
}

// Limits that are not reached cost no allocation on either path.
func TestLimitsAllocs(t *testing.T) {
	k := testSuites[0].keys
	lim := Limits{SoftBytes: 1 << 40, SoftPackets: 1 << 30, HardBytes: 1 << 41, HardPackets: 1 << 31}
	d, lt, sc := benchDatapath(t, k, 64, 1400)
	d.RemoveInbound(0x1001)
	must(t, d.AddInbound(SAConfig{SPI: 0x1001, Keys: k, LocalTS: netTS, RemoteTS: clientTS, Limits: lim}))
	must(t, d.InstallOutbound(1, SAConfig{SPI: 0x1001, Keys: k, LocalTS: clientTS, RemoteTS: netTS, Limits: lim}, ap(aV4, nattPort), ap(bV4, nattPort)))
	w := d.newOutWorker()
	if a := testing.AllocsPerRun(50, func() { w.sendBatch(lt) }); a != 0 {
		t.Errorf("outbound: %v allocations per batch", a)
	}
	sc.in = espStream(t, k, 51*64, 1400)
	iw := d.newInWorker(d.conns[0])
	if a := testing.AllocsPerRun(50, func() { must(t, iw.step(readAll(sc))) }); a != 0 {
		t.Errorf("inbound: %v allocations per batch", a)
	}
	wantEvents(t, d)
}
