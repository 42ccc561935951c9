package esp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"

	"github.com/mobikevpn/mobikevpn/udp"
	"golang.zx2c4.com/wireguard/tun"
)

// outWorker is the state of the sending goroutines, allocated once: the TUN reader
// reads into a ring of buffers, seals, and hands spans of the ring to the socket
// writer, which sends every span queued at that moment in one WriteBatch per socket.
// Under load, spans queue up while the writer sends, so many small TUN reads (one
// packet each, as with UDP senders) leave as one segmented send; when the writer is
// idle, a small span is sent by the reader itself, without a hand-off.
type outWorker struct {
	d     *Datapath
	ring  [][]byte      // ring buffers, d.outBufLen each
	msgs  []udp.Message // the datagram made of each ring slot
	conn  []int         // its socket; -1 if the packet was dropped
	start int           // the reader's next slot
	avail int           // slots free for the reader

	view  [][]byte // the reader's window on the ring, d.outBatch slots
	sizes []int
	pk    []outPkt // the window's packets between lookup and send
	scs   []scratch
	fl    flow
	parts []part
	seal0 func(lo, hi int)

	ready   chan outSpan
	freed   chan int // slots the writer is done with, in order
	pending atomic.Int32
	spans   []outSpan       // the writer's
	perConn [][]udp.Message // the writer's datagrams, by socket
}

// outSpan is a run of ring slots read together.
type outSpan struct{ start, n int }

// outRingBatches is the ring's size in TUN batches.
const outRingBatches = 4

// outPkt is a packet of the window between lookup and send.
type outPkt struct {
	sa    *outSA // nil: dropped before sealing
	seq   uint64
	ipLen int
	nh    byte
	n     int // the ESP packet's length; 0 if it did not fit
}

func (d *Datapath) newOutWorker() *outWorker {
	n, size := d.outBatch, d.outBufLen
	r := outRingBatches * n
	w := &outWorker{d: d, ring: make([][]byte, r), msgs: make([]udp.Message, r), conn: make([]int, r), avail: r,
		view: make([][]byte, n), sizes: make([]int, n), pk: make([]outPkt, n),
		ready: make(chan outSpan, r), freed: make(chan int, r), spans: make([]outSpan, 0, r),
		perConn: make([][]udp.Message, len(d.conns))}
	slab := make([]byte, r*size)
	for i := range w.ring {
		w.ring[i] = slab[i*size : (i+1)*size : (i+1)*size]
	}
	for i := range w.perConn {
		w.perConn[i] = make([]udp.Message, 0, r)
	}
	w.scs = make([]scratch, d.workers)
	fns := make([]func(lo, hi int), d.workers)
	for k := range fns {
		sc := &w.scs[k]
		fns[k] = func(lo, hi int) { w.sealRange(sc, lo, hi) }
	}
	w.seal0, w.parts = fns[0], newParts(fns[1:])
	return w
}

// send reads the TUN device in batches until it is closed; a second goroutine sends
// what was sealed.
func (d *Datapath) send(ctx context.Context) error {
	w := d.newOutWorker()
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.writer()
	}()
	defer func() {
		close(w.ready)
		<-done
	}()
	var errs udp.ReadErrors
	for {
		n, err := w.read()
		if n > 0 {
			w.process(n)
			w.hand(n)
		}
		if errors.Is(err, tun.ErrTooManySegments) && ctx.Err() == nil {
			d.drop(dropTUNRead, err) // one oversized train: not a failing device
			continue
		}
		again, fatal := errs.After(ctx, err, func(err error) { d.drop(dropTUNRead, err) })
		if !again {
			if fatal != nil {
				return fmt.Errorf("esp: TUN closed: %w", fatal)
			}
			return nil
		}
	}
}

// read waits for a window of free slots and reads the TUN device into it.
func (w *outWorker) read() (int, error) {
	for w.avail < len(w.view) {
		w.avail += <-w.freed
	}
	for i := range w.view {
		w.view[i] = w.ring[(w.start+i)%len(w.ring)]
	}
	n, err := w.d.tun.Read(w.view, w.sizes, outHeadroom)
	return min(max(n, 0), len(w.view)), err
}

// hand passes the n slots just processed to the writer, or sends them at once when
// they are few and the writer is idle.
func (w *outWorker) hand(n int) {
	sp := outSpan{w.start, n}
	w.start = (w.start + n) % len(w.ring)
	w.avail -= n
	if n <= inlineMax && w.pending.Load() == 0 {
		w.spans = append(w.spans[:0], sp)
		w.transmit()
		w.avail += n
		return
	}
	w.pending.Add(1)
	w.ready <- sp // never blocks: there are fewer spans than slots
}

// writer sends the spans handed to it, all those queued at once, until ready closes.
func (w *outWorker) writer() {
	for sp := range w.ready {
		w.spans = append(w.spans[:0], sp)
	more:
		for {
			select {
			case sp, ok := <-w.ready:
				if !ok {
					break more
				}
				w.spans = append(w.spans, sp)
			default:
				break more
			}
		}
		w.transmit()
		n := 0
		for _, sp := range w.spans {
			n += sp.n
		}
		w.pending.Add(-int32(len(w.spans)))
		w.freed <- n // never blocks: one entry per span at most
	}
}

// process seals the n packets of the window into datagrams in the ring. Lookup and
// sequence numbers are taken here in TUN order, sealing is forked over the helpers.
func (w *outWorker) process(n int) {
	d := w.d
	t := d.out.Load()
	now := d.mono()
	bytes := 0
	for i := range n {
		p := &w.pk[i]
		*p = outPkt{}
		buf, size := w.view[i], w.sizes[i]
		if size <= 0 || size > len(buf)-outHeadroom {
			d.drop(dropMalformed, nil)
			continue
		}
		ipLen, ok := w.fl.parseIP(buf[outHeadroom:outHeadroom+size], t.l4)
		if !ok {
			d.drop(dropMalformed, nil)
			continue
		}
		sa := t.lookup(&w.fl)
		if sa == nil {
			d.drop(dropNoPolicy, nil)
			continue
		}
		seq, ok := sa.nextSeq()
		if !ok {
			sa.ctr.dropped.Add(1)
			d.drop(dropSeqExhausted, nil)
			d.seqLimit(sa, true)
			continue
		}
		if seq == sa.seqSoft {
			d.seqLimit(sa, false)
		}
		p.sa, p.seq, p.ipLen, p.nh = sa, seq, ipLen, protoIPv6
		if w.fl.is4 {
			p.nh = protoIPv4
		}
		bytes += ipLen
	}
	d.fork(w.parts, w.seal0, n, bytes)
	var run ctrRun
	for i := range n {
		p := &w.pk[i]
		slot := (w.start + i) % len(w.ring)
		w.conn[slot] = -1
		sa := p.sa
		if sa == nil {
			continue
		}
		if p.n == 0 {
			sa.ctr.dropped.Add(1)
			d.drop(dropTooBig, nil)
			continue
		}
		if run.c != &sa.ctr {
			run.flush(d, now)
			run.c, run.sent = &sa.ctr, &sa.lastSent
		}
		run.bytes += uint64(p.ipLen)
		run.pkts++
		ep := sa.ep.Load()
		buf := w.view[i][outHeadroom-sa.suite.headLen():]
		w.msgs[slot] = udp.Message{Buffer: buf[:p.n], N: p.n, Local: ep.src, Remote: ep.remote}
		w.conn[slot] = ep.conn
		p.sa = nil
	}
	run.flush(d, now)
}

// transmit sends the datagrams of w.spans, one WriteBatch per socket.
func (w *outWorker) transmit() {
	for _, sp := range w.spans {
		for i := range sp.n {
			slot := (sp.start + i) % len(w.ring)
			if c := w.conn[slot]; c >= 0 {
				w.perConn[c] = append(w.perConn[c], w.msgs[slot])
				w.msgs[slot] = udp.Message{}
			}
		}
	}
	for c, msgs := range w.perConn {
		if len(msgs) == 0 {
			continue
		}
		w.d.writeAll(w.d.conns[c], msgs)
		clear(msgs)
		w.perConn[c] = msgs[:0]
	}
}

// sealRange seals packets [lo, hi) of the window in place.
func (w *outWorker) sealRange(sc *scratch, lo, hi int) {
	for i := lo; i < hi; i++ {
		p := &w.pk[i]
		if p.sa == nil {
			continue
		}
		s := p.sa.suite
		buf := w.view[i][outHeadroom-s.headLen():]
		p.n = s.seal(sc, buf, p.sa.spi, p.seq, p.sa.esn, p.ipLen, p.nh)
	}
}

// ctrRun adds up the packets of consecutive packets of one SA, so that the counters
// are touched once per run rather than once per packet.
type ctrRun struct {
	c           *saCounters
	sent        *atomic.Int64 // outbound: lastSent
	bytes, pkts uint64
}

func (r *ctrRun) flush(d *Datapath, now int64) {
	if c := r.c; c != nil && r.pkts > 0 {
		b := c.bytes.Add(r.bytes)
		p := c.packets.Add(r.pkts)
		if p >= c.atPackets.Load() || b >= c.atBytes.Load() {
			d.crossed(c, p, b)
		}
		c.last.Store(now + 1)
		if r.sent != nil {
			r.sent.Store(now)
		}
	}
	*r = ctrRun{}
}

// writeAll sends msgs on ci, skipping (and counting) a datagram the socket refuses.
func (d *Datapath) writeAll(ci *connInfo, msgs []udp.Message) {
	for len(msgs) > 0 {
		n, err := ci.c.WriteBatch(msgs)
		if n < 0 || n > len(msgs) {
			n = 0
		}
		msgs = msgs[n:]
		if err == nil && n > 0 {
			continue
		}
		if err == nil {
			err = errors.New("no datagram sent")
		}
		var gsoOff *udp.GSODisabledError
		if errors.As(err, &gsoOff) {
			// Everything was sent again without GSO; say so once.
			d.log.Warn("esp: UDP GSO turned off for this socket", "local", ci.local, "err", gsoOff.Err)
			continue
		}
		if errors.Is(err, net.ErrClosed) {
			for range msgs {
				d.drop(dropSend, err)
			}
			return
		}
		if len(msgs) > 0 {
			d.drop(dropSend, err)
			msgs = msgs[1:]
		}
	}
}
