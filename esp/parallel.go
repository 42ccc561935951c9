package esp

import (
	"context"
	"sync/atomic"
)

// Crypto is spread over the cores by fork-join per batch: the goroutine that read a
// batch (from the TUN device or a socket) hands parts of it to idle helper goroutines,
// does the first part itself, and waits for the others before it sends or writes the
// batch in order. Sequence numbers are taken and the replay window is committed by that
// goroutine alone, before and after the parallel part, so each SA's packets leave in
// order and the window sees them in order. A part that no helper has taken by the time
// the reader gets to it is done by the reader: nothing waits on a busy pool, and a small
// batch is not split at all (no hand-off).

// minSplitBytes is the least payload per part worth a hand-off to another goroutine
// (a wake-up costs a few microseconds; AES-GCM does about 3 GB/s per core).
const minSplitBytes = 16 << 10

const (
	partIdle uint32 = iota
	partQueued
	partTaken
)

// part is one share of a batch for a helper. Its fn and scratch are fixed per reader.
type part struct {
	fn     func(lo, hi int)
	lo, hi int
	state  atomic.Uint32
	done   chan struct{}
}

func newParts(fns []func(lo, hi int)) []part {
	ps := make([]part, len(fns))
	for i := range ps {
		ps[i].fn = fns[i]
		ps[i].done = make(chan struct{}, 1)
	}
	return ps
}

// helper runs the parts it takes until ctx is done. A part can be in the queue more
// than once (a reader that did it itself does not take it back out); the state CAS
// makes sure it is run once.
func (d *Datapath) helper(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-d.jobs:
			if p.state.CompareAndSwap(partQueued, partTaken) {
				p.fn(p.lo, p.hi)
				p.done <- struct{}{}
			}
		}
	}
}

// fork runs self and the parts' functions over [0, n) in up to len(parts)+1 pieces,
// given the batch's payload bytes, and returns when all are done.
func (d *Datapath) fork(parts []part, self func(lo, hi int), n, bytes int) {
	pieces := 1
	if d.jobs != nil && len(parts) > 0 {
		pieces = min(len(parts)+1, bytes/d.splitBytes, n)
	}
	if pieces <= 1 {
		self(0, n)
		return
	}
	per := (n + pieces - 1) / pieces
	for k := 1; k < pieces; k++ {
		p := &parts[k-1]
		p.lo, p.hi = min(k*per, n), min((k+1)*per, n)
		p.state.Store(partQueued)
		select {
		case d.jobs <- p:
		default: // the queue is full of stale entries: do it here
		}
	}
	self(0, per)
	for k := 1; k < pieces; k++ {
		p := &parts[k-1]
		if p.state.CompareAndSwap(partQueued, partTaken) {
			p.fn(p.lo, p.hi)
			continue
		}
		<-p.done
	}
}

// A pipe overlaps a reader's I/O with a writer's: the goroutine that reads batches
// (and seals or opens them) pushes each to one writer goroutine that sends or writes
// them in the order pushed, and gets an empty batch back from a fixed set. When the
// writer is idle and a batch is small, the reader writes it itself: a lone packet
// costs no hand-off.
type pipe[B any] struct {
	free    chan B
	ready   chan B
	n       int
	pending atomic.Int32 // batches pushed and not yet written
}

// inlineMax is the largest batch (in packets) the reader writes itself when the writer
// is idle.
const inlineMax = 4

// pipeDepth is the number of batches per reader: one being read, the others queued
// for or being written.
const pipeDepth = 3

func newPipe[B any](bs []B) *pipe[B] {
	p := &pipe[B]{free: make(chan B, len(bs)), ready: make(chan B, len(bs)), n: len(bs)}
	for _, b := range bs {
		p.free <- b
	}
	return p
}

// get returns an empty batch, waiting for the writer if it holds all the others.
func (p *pipe[B]) get() B { return <-p.free }

// put returns a batch that was not pushed.
func (p *pipe[B]) put(b B) { p.free <- b }

// idle reports that the writer has nothing to do; the atomic makes its last write
// happen before what the caller does next.
func (p *pipe[B]) idle() bool { return p.pending.Load() == 0 }

// drain waits, in the reader holding one batch, until the writer has nothing to do.
func (p *pipe[B]) drain() {
	var held [pipeDepth]B
	k := 0
	for ; k < p.n-1 && k < len(held); k++ {
		held[k] = <-p.free
	}
	for i := range k {
		p.free <- held[i]
	}
}

// push hands a batch to the writer.
func (p *pipe[B]) push(b B) {
	p.pending.Add(1)
	p.ready <- b
}

// run is the writer: it writes the batches pushed, in order, until close.
func (p *pipe[B]) run(write func(B)) {
	for b := range p.ready {
		write(b)
		p.pending.Add(-1)
		p.free <- b
	}
}

// close ends run once the batches pushed are written.
func (p *pipe[B]) close() { close(p.ready) }
