package esp

import "math"

const (
	// DefaultReplayWindow is the anti-replay window used when SAConfig.ReplayWindow is 0:
	// the most a ring of 64 blocks (512 bytes per inbound SA) holds, four times
	// MinReplayWindow. (4096 would take a ring of 128 blocks, 1 KiB per SA.)
	DefaultReplayWindow = 63 * 64
	// MinReplayWindow is the smallest window accepted; smaller requests are raised to it.
	MinReplayWindow = 1024
	// MaxReplayWindow is the largest window accepted.
	MaxReplayWindow = 1 << 20
)

// replayWindow is an RFC 6479 anti-replay window: a ring of 64-bit blocks of which all
// but one are always valid, so advancing the window clears whole blocks instead of
// shifting bits. With ESN it also infers the high 32 bits of a received sequence
// number (RFC 4303 Appendix A2). The zero value is not usable; it is not safe for
// concurrent use.
type replayWindow struct {
	top    uint64   // highest authenticated sequence number; 0 before the first
	blocks []uint64 // ring; len is a power of two
	mask   uint64   // len(blocks)-1
	size   uint64   // the window: (len(blocks)-1)*64 sequence numbers below top+1
	esn    bool

	// old is the window as it was before the last jump of more than size (nil before
	// any, and again once top is oldKeep past oldLimit). It takes the numbers below
	// oldLimit, the lowest this window can ever take after the jump, so that the two
	// never both take one number: the tail of what the sender sent before the jump,
	// arriving after it, is still taken once. Such a jump is what a client sees when
	// a gateway cluster moves its SA to another node, which sends with numbers above
	// the whole range the old node may still use (and the old node's last packets
	// can arrive after the new node's first); or after a loss burst longer than the
	// window.
	old      *replayWindow
	oldLimit uint64
}

// oldKeep is how far past the jump the window keeps the one before it: 64Ki packets,
// a fraction of a second at full rate, minutes for a ping.
const oldKeep = 1 << 16

// newReplayWindow returns a window of at least size packets (0 means the default).
func newReplayWindow(size int, esn bool) replayWindow {
	if size <= 0 {
		size = DefaultReplayWindow
	}
	size = min(max(size, MinReplayWindow), MaxReplayWindow)
	n := 2
	for (n-1)*64 < size {
		n *= 2
	}
	return replayWindow{
		blocks: make([]uint64, n),
		mask:   uint64(n - 1),
		size:   uint64(n-1) * 64,
		esn:    esn,
	}
}

// startAt makes a new window continue one that another datapath kept: top is the
// highest sequence number it authenticated. Everything up to top counts as seen (which
// of those below top it did not see is not known here: refusing them is the safe side);
// everything above top is fresh.
func (w *replayWindow) startAt(top uint64) {
	for i := range w.blocks {
		w.blocks[i] = math.MaxUint64
	}
	// The bits above top in its own block stand for numbers not yet received.
	w.blocks[(top>>6)&w.mask] = math.MaxUint64 >> (63 - top&63)
	w.top = top
	w.old = nil
}

// infer returns the full sequence number for the 32 bits on the wire. Without ESN it
// is lo itself. With ESN it follows RFC 4303 Appendix A2.2: the high half is that of
// the window's top, one more if lo is below the window's bottom in the same subspace,
// one less if the window spans two subspaces and lo is in the older one. It reports
// false for 0 and for numbers that cannot exist (before the first subspace or past
// 2^64-1).
func (w *replayWindow) infer(lo uint32) (uint64, bool) {
	if !w.esn {
		return uint64(lo), lo != 0
	}
	tl, th := uint32(w.top), uint32(w.top>>32)
	bottom := tl - uint32(w.size) + 1 // modulo 2^32
	hi := th
	if tl >= uint32(w.size)-1 {
		// Case A: the window lies within one subspace.
		if lo < bottom {
			if th == math.MaxUint32 {
				return 0, false
			}
			hi = th + 1
		}
	} else if lo >= bottom {
		// Case B: the window spans two subspaces and lo is in the older one.
		if th == 0 {
			return 0, false
		}
		hi = th - 1
	}
	seq := uint64(hi)<<32 | uint64(lo)
	return seq, seq != 0
}

// check infers the sequence number and reports whether it is new: ahead of the window
// or inside it and not yet seen. It changes nothing (RFC 4303 section 3.4.3: the window
// moves only after the ICV is verified).
func (w *replayWindow) check(lo uint32) (uint64, bool) {
	if o := w.old; o != nil {
		// Below oldLimit, as the window before the jump reads it: its to take.
		if seq, ok := o.infer(lo); ok && seq < w.oldLimit {
			return seq, o.fresh(seq)
		}
	}
	seq, ok := w.infer(lo)
	if !ok {
		return 0, false
	}
	return seq, w.fresh(seq)
}

// fresh reports whether seq is ahead of the window or inside it and not yet seen.
func (w *replayWindow) fresh(seq uint64) bool {
	if seq == 0 {
		return false
	}
	if seq > w.top {
		return true
	}
	if w.top-seq >= w.size {
		return false
	}
	return w.blocks[(seq>>6)&w.mask]&(1<<(seq&63)) == 0
}

// commit records an authenticated seq. It reports false if seq is no longer fresh
// (another goroutine committed it, or the window moved past it since check).
func (w *replayWindow) commit(seq uint64) bool {
	if w.old != nil && seq < w.oldLimit {
		return w.old.commit(seq)
	}
	if !w.fresh(seq) {
		return false
	}
	if seq > w.top {
		switch {
		case w.top != 0 && seq-w.top > w.size:
			w.keepOld(seq)
		case w.old != nil && seq-w.oldLimit > oldKeep:
			w.old = nil
		}
		cur, idx := w.top>>6, seq>>6
		n := idx - cur
		if n > uint64(len(w.blocks)) {
			n = uint64(len(w.blocks))
		}
		for i := uint64(1); i <= n; i++ {
			w.blocks[(cur+i)&w.mask] = 0
		}
		w.top = seq
	}
	w.blocks[(seq>>6)&w.mask] |= 1 << (seq & 63)
	return true
}

// keepOld moves the window into w.old before a jump to seq of more than its size, and
// starts w empty (nothing between the old top and seq was seen).
func (w *replayWindow) keepOld(seq uint64) {
	o := w.old
	if o == nil {
		o = &replayWindow{blocks: make([]uint64, len(w.blocks))}
	}
	o.top, o.mask, o.size, o.esn = w.top, w.mask, w.size, w.esn
	o.blocks, w.blocks = w.blocks, o.blocks
	clear(w.blocks)
	w.old, w.oldLimit = o, seq-w.size+1
}
