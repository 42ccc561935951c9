package esp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"

	"github.com/mobikevpn/mobikevpn/udp"
)

// inWorker is the state of one socket's receiving goroutines (socket reader and TUN
// writer), allocated once.
type inWorker struct {
	d       *Datapath
	ci      *connInfo
	batches []*inBatch
	cur     *inBatch // the batch being opened
	pipe    *pipe[*inBatch]
	tunBufs [][]byte // the writer's
	heads   groHeads // the writer's
	scs     []scratch
	fl      flow // the writer's
	parts   []part
	open0   func(lo, hi int)
	werr    atomic.Pointer[error] // the TUN closed under the writer
}

// inBatch is one socket read and the ESP packets found in it.
type inBatch struct {
	msgs []udp.Message
	pk   []inPkt // at most cap(pk): a fuller batch is written in parts
	now  int64
}

// inPkt is an ESP packet of the batch between SA lookup and the TUN write.
type inPkt struct {
	b   []byte // the ESP packet; its capacity ends with it
	sa  *inSA
	seq uint64
	pt  []byte // the plaintext (payload, padding, trailer), aliasing b
	r   dropReason
}

// groBatch is the number of datagrams read at once with UDP GRO: each may carry up to
// 64 ESP packets in a buffer of udp.MaxGROSize.
const groBatch = 4

func (d *Datapath) newInWorker(ci *connInfo) *inWorker {
	n, size := min(max(ci.c.BatchSize(), 1), maxBatch), d.inBufLen
	pkts, depth := n, pipeDepth
	if ci.gro {
		n, size, pkts, depth = min(n, groBatch), udp.MaxGROSize, 2*maxBatch, 2
	}
	w := &inWorker{d: d, ci: ci, batches: make([]*inBatch, depth), tunBufs: make([][]byte, 0, pkts)}
	slab := make([]byte, depth*n*size)
	for k := range w.batches {
		b := &inBatch{msgs: make([]udp.Message, n), pk: make([]inPkt, 0, pkts)}
		for i := range b.msgs {
			// Full slice expressions: the TUN writer may append within a buffer's
			// capacity (GRO), never into the next one.
			o := (k*n + i) * size
			b.msgs[i].Buffer = slab[o : o+size : o+size]
		}
		w.batches[k] = b
	}
	w.pipe = newPipe(w.batches)
	w.heads.init(d.groArena, pkts)
	w.scs = make([]scratch, d.workers)
	fns := make([]func(lo, hi int), d.workers)
	for k := range fns {
		sc := &w.scs[k]
		fns[k] = func(lo, hi int) { w.openRange(sc, lo, hi) }
	}
	w.open0, w.parts = fns[0], newParts(fns[1:])
	return w
}

// receive reads the socket in batches until it is closed; a second goroutine writes
// the decrypted batches to the TUN device (see pipe).
func (d *Datapath) receive(ctx context.Context, ci *connInfo) error {
	w := d.newInWorker(ci)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.pipe.run(w.writeOut)
	}()
	defer func() {
		w.pipe.close()
		<-done
	}()
	var errs udp.ReadErrors
	for {
		b := w.pipe.get()
		if e := w.werr.Load(); e != nil {
			if ctx.Err() != nil {
				return nil
			}
			return *e
		}
		for i := range b.msgs {
			m := &b.msgs[i]
			m.Buffer = m.Buffer[:cap(m.Buffer)]
			m.N, m.Truncated, m.Segment = 0, false, 0
		}
		n, err := ci.c.ReadBatch(b.msgs)
		if n > 0 {
			w.process(b, min(n, len(b.msgs)))
		}
		switch {
		case len(b.pk) == 0:
			w.pipe.put(b)
		case len(b.pk) <= inlineMax && w.pipe.idle():
			w.writeOut(b)
			w.pipe.put(b)
		default:
			w.pipe.push(b)
		}
		again, fatal := errs.After(ctx, err, func(err error) { d.drop(dropRead, err) })
		if !again {
			if fatal != nil {
				return fmt.Errorf("esp: socket %s closed: %w", ci.local, fatal)
			}
			return nil
		}
	}
}

// process handles the first n datagrams of b.msgs (each possibly a GRO train of
// datagrams): IKE messages and keepalives at once; ESP packets are looked up,
// pre-checked against their replay windows and opened (forked over the helpers), in
// b.pk for writeOut.
func (w *inWorker) process(b *inBatch, n int) {
	d := w.d
	in := d.in.Load()
	b.now = d.mono()
	for i := range n {
		m := &b.msgs[i]
		if m.Truncated {
			d.drop(dropTruncated, nil)
			continue
		}
		if m.N <= 0 || m.N > len(m.Buffer) {
			d.drop(dropMalformed, nil)
			continue
		}
		buf := m.Buffer[:m.N]
		seg := m.Segment
		if seg <= 0 || seg > len(buf) {
			seg = len(buf)
		}
		for off := 0; off < len(buf); off += seg {
			end := min(off+seg, len(buf))
			w.datagram(in, b, buf[off:end:end], m)
		}
	}
	w.open(b)
}

// datagram handles one datagram: IKE and keepalives at once, ESP into the batch.
func (w *inWorker) datagram(in *inTable, b *inBatch, p []byte, m *udp.Message) {
	d := w.d
	switch kind, ike := SplitNATT(p); kind {
	case NATTKeepalive:
		d.drops.keepalives.Add(1)
		return
	case NATTIKE:
		w.ike(ike, m)
		return
	case NATTESP:
	}
	if len(p) < espHeaderLen {
		d.drop(dropMalformed, nil)
		return
	}
	sa := in.get(binary.BigEndian.Uint32(p[0:4]))
	if sa == nil {
		d.drop(dropUnknownSPI, nil)
		return
	}
	sa.mu.Lock()
	if h := sa.hand; h != nil {
		ep := h.ep
		if ep == nil {
			h.hold(d, sa, p)
		}
		sa.mu.Unlock()
		if ep != nil {
			d.forward(sa, ep, p)
		}
		return
	}
	seq, ok := sa.win.check(binary.BigEndian.Uint32(p[4:8]))
	if ok {
		sa.pending++
	}
	sa.mu.Unlock()
	if !ok {
		sa.ctr.dropped.Add(1)
		d.drop(dropReplay, nil)
		return
	}
	if len(b.pk) == cap(b.pk) {
		// More packets than a batch holds (a train of tiny datagrams): open and write
		// what there is first, in order.
		w.open(b)
		w.pipe.drain()
		w.writeOut(b)
	}
	b.pk = append(b.pk, inPkt{b: p, sa: sa, seq: seq})
}

// ike hands an IKE message to the caller in a fresh slice.
func (w *inWorker) ike(b []byte, m *udp.Message) {
	d := w.d
	if len(b) == 0 {
		d.drop(dropMalformed, nil)
		return
	}
	if d.onIKE == nil {
		d.drop(dropNoIKEHandler, nil)
		return
	}
	local := m.Local
	if !local.IsValid() {
		local = w.ci.local
	}
	d.onIKE(append([]byte(nil), b...), local, m.Remote)
}

// openRange authenticates and decrypts packets [lo, hi) of the current batch in place.
func (w *inWorker) openRange(sc *scratch, lo, hi int) {
	pk := w.cur.pk
	for i := lo; i < hi; i++ {
		p := &pk[i]
		if p.pt == nil && p.r == dropNone {
			p.pt, p.r = p.sa.suite.openRaw(sc, p.b, p.seq, p.sa.esn)
		}
	}
}

// open opens the packets of b not opened yet, forked over the helpers.
func (w *inWorker) open(b *inBatch) {
	bytes := 0
	for i := range b.pk {
		if b.pk[i].pt == nil {
			bytes += len(b.pk[i].b)
		}
	}
	if bytes == 0 {
		return
	}
	w.cur = b
	w.d.fork(w.parts, w.open0, len(b.pk), bytes)
	w.cur = nil
}

// writeOut, in arrival order, commits b's opened packets to their replay windows,
// checks trailers and selectors, writes the inner packets to the TUN device in one
// call, and empties b.
func (w *inWorker) writeOut(b *inBatch) {
	d := w.d
	if len(b.pk) == 0 {
		return
	}
	w.tunBufs = w.tunBufs[:0]
	var run ctrRun
	for i := range b.pk {
		p := &b.pk[i]
		if buf := w.finish(p); buf != nil {
			if run.c != &p.sa.ctr {
				run.flush(d, b.now)
				run.c = &p.sa.ctr
			}
			run.bytes += uint64(len(buf) - tunWriteOffset)
			run.pkts++
			w.tunBufs = append(w.tunBufs, buf)
		}
	}
	run.flush(d, b.now)
	clear(b.pk)
	b.pk = b.pk[:0]
	if len(w.tunBufs) == 0 {
		return
	}
	w.heads.prepare(w.tunBufs)
	_, err := d.tun.Write(w.tunBufs, tunWriteOffset)
	clear(w.tunBufs)
	if err != nil {
		if errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) {
			e := fmt.Errorf("esp: TUN closed: %w", err)
			w.werr.Store(&e)
			return
		}
		d.drop(dropTUNWrite, err)
	}
}

// finish runs the sequential checks on an opened packet. It returns the inner packet
// with tunWriteOffset bytes in front of it, or nil if it was dropped.
func (w *inWorker) finish(p *inPkt) []byte {
	d, sa := w.d, p.sa
	r := p.r
	sa.mu.Lock()
	sa.pending--
	if r == dropNone && !sa.win.commit(p.seq) {
		r = dropReplay
	}
	sa.mu.Unlock()
	var payload []byte
	if r == dropNone {
		var nh byte
		var ok bool
		payload, nh, ok = stripTrailer(p.pt)
		switch {
		case !ok:
			r = dropTrailer
		case nh == protoNoNxt:
			r = dropDummy
		case nh != protoIPv4 && nh != protoIPv6:
			r = dropTrailer
		default:
			n, ok := w.fl.parseIP(payload, sa.l4)
			switch {
			case !ok || w.fl.is4 != (nh == protoIPv4):
				r = dropMalformed
			case !matchSrc(sa.remote, &w.fl, sa.l4) || !matchDst(sa.local, &w.fl, sa.l4):
				r = dropSelector
			default:
				payload = payload[:n]
			}
		}
	}
	if r != dropNone {
		sa.ctr.dropped.Add(1)
		d.drop(r, nil)
		return nil
	}
	hl := sa.suite.headLen()
	end := hl + len(payload)
	return p.b[hl-tunWriteOffset : end : len(p.b)]
}
