package esp

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// naiveWindow is the reference: a set of every accepted number, the top, and after a
// jump of more than the window the top before it (oldTop), which takes the numbers
// below oldLimit within the window below it, for oldKeep numbers past the jump.
type naiveWindow struct {
	top  uint64
	seen map[uint64]bool
	size uint64

	hasOld           bool
	oldTop, oldLimit uint64
}

func (n *naiveWindow) accept(seq uint64) bool {
	if seq == 0 || n.seen[seq] {
		return false
	}
	if n.hasOld && seq < n.oldLimit {
		if seq <= n.oldTop && n.oldTop-seq >= n.size {
			return false
		}
		n.oldTop = max(n.oldTop, seq)
	} else {
		if seq <= n.top && n.top-seq >= n.size {
			return false
		}
		switch {
		case n.top != 0 && seq > n.top && seq-n.top > n.size:
			n.hasOld, n.oldTop, n.oldLimit = true, n.top, seq-n.size+1
		case n.hasOld && seq > n.top && seq-n.oldLimit > oldKeep:
			n.hasOld = false
		}
		n.top = max(n.top, seq)
	}
	n.seen[seq] = true
	return true
}

func TestReplayWindowSizes(t *testing.T) {
	for _, tc := range []struct{ req, want int }{
		{0, 4032}, {1, 1984}, {1024, 1984}, {1984, 1984}, {1985, 4032}, {4096, 8128}, {1 << 30, (1<<20/64*2 - 1) * 64},
	} {
		w := newReplayWindow(tc.req, false)
		if int(w.size) != tc.want || int(w.size) < min(max(tc.req, MinReplayWindow), MaxReplayWindow) {
			t.Errorf("newReplayWindow(%d): size %d, want %d", tc.req, w.size, tc.want)
		}
		if len(w.blocks)&(len(w.blocks)-1) != 0 {
			t.Errorf("blocks %d not a power of two", len(w.blocks))
		}
	}
}

// TestReplayVectors is a numbered table of check-then-commit steps without ESN.
func TestReplayVectors(t *testing.T) {
	w := newReplayWindow(1024, false)
	W := w.size // 1984
	steps := []struct {
		seq  uint64
		want bool
	}{
		{0, false},                      // 1: zero is never valid
		{1, true},                       // 2
		{1, false},                      // 3: duplicate
		{9, true},                       // 4: ahead, leaves a gap
		{8, true},                       // 5: in window, in the gap
		{7, true},                       // 6
		{7, false},                      // 7: duplicate in the gap
		{W + 9, true},                   // 8: jump; top-W+1 = 10 is now the bottom
		{10, true},                      // 9: exactly the bottom
		{9, false},                      // 10: just below the bottom (too old)
		{2, false},                      // 11: long gone
		{W + 8, true},                   // 12: just below top
		{W + 8, false},                  // 13
		{W + 9, false},                  // 14: top itself
		{W + 10, true},                  // 15: top+1
		{W + 10 + 64*40, true},          // 16: jump of 40 blocks: every block in between cleared
		{W + 10 + 64*40 - 64*20, true},  // 17: inside, in a cleared block
		{W + 10 + 64*40 - 64*20, false}, // 18
		{math.MaxUint32, true},          // 19: far ahead: the window before it kept (top W+10+64*40)
		{W + 10 + 64*40, false},         // 20: that window's top
		{W + 9 + 64*40, true},           // 21: below it, never seen: the sender's tail before the jump
		{W + 9 + 64*40, false},          // 22
		{W + 10 + 64*40 - 64*20, false}, // 23: taken in 17, before the jump
		{math.MaxUint32 - W + 1, true},  // 24: the bottom
		{math.MaxUint32 - W, true},      // 25: just below it: never seen, the old window's (it moves up)
		{math.MaxUint32 - W, false},     // 26
		{math.MaxUint32 - 1, true},      // 27
		{math.MaxUint32 - 1, false},     // 28
		{W + 9 + 64*40, false},          // 29: the old window moved past it
	}
	for i, s := range steps {
		seq, ok := w.check(uint32(s.seq))
		if ok && seq != s.seq {
			t.Fatalf("%d: check(%d) inferred %d", i+1, s.seq, seq)
		}
		if ok {
			ok = w.commit(seq)
		}
		if ok != s.want {
			t.Fatalf("%d: seq %d: accepted %v, want %v", i+1, s.seq, ok, s.want)
		}
	}
}

// TestReplayVectorsESN walks across the 2^32 boundary with ESN.
func TestReplayVectorsESN(t *testing.T) {
	w := newReplayWindow(1024, true)
	W := w.size
	const E = 1 << 32
	steps := []struct {
		lo     uint32
		seq    uint64 // inferred; 0 when inference fails
		fresh  bool
		commit bool
	}{
		{0, 0, false, false},                            // 1: zero
		{1, 1, true, true},                              // 2
		{math.MaxUint32 - 3, 0, false, false},           // 3: would be before the first subspace
		{uint32(W + 10), W + 10, true, true},            // 4: case B still, same subspace
		{0x80000000, 0x80000000, true, true},            // 5: case A
		{math.MaxUint32 - 15, E - 16, true, true},       // 6: end of subspace 0
		{5, E + 5, true, true},                          // 7: below the bottom: next subspace
		{math.MaxUint32 - 7, E - 8, true, true},         // 8: case B: the older subspace, in window
		{math.MaxUint32 - 15, E - 16, false, false},     // 9: duplicate across the boundary
		{5, E + 5, false, false},                        // 10: duplicate
		{6, E + 6, true, true},                          // 11
		{uint32(E + 6 - W), E - W + 6 + E, true, false}, // 12: one below bottom: inferred far ahead in subspace 1 (would fail the ICV)
		{uint32(E + 7 - W), E + 7 - W, true, true},      // 13: exactly the bottom, in subspace 0
		{uint32(E + 6 - W), 2*E + 6 - W, true, false},   // 14: still inferred ahead
		{uint32(W + 6), E + W + 6, true, true},          // 15: leave case B
		{math.MaxUint32 - 7, 2*E - 8, true, false},      // 16: case A: the old subspace-0 number now reads as subspace 1
		{7, E + 7, true, true},                          // 17: inside the window
		{3, 2*E + 3, true, false},                       // 18: below the bottom (E+7): read as the next subspace
		{8, E + 8, true, true},                          // 19
	}
	for i, s := range steps {
		seq, fresh := w.check(s.lo)
		if seq != s.seq || fresh != s.fresh {
			t.Fatalf("%d: check(%#x) = %#x %v, want %#x %v (top %#x)", i+1, s.lo, seq, fresh, s.seq, s.fresh, w.top)
		}
		if s.commit && !w.commit(seq) {
			t.Fatalf("%d: commit(%#x) refused", i+1, seq)
		}
	}
	if w.top != E+W+6 {
		t.Fatalf("top %#x", w.top)
	}
}

// TestReplayInference checks RFC 4303 A2.2 as a property: from any top, the 32 low
// bits recover every sequence number in [top-W+1, top-W+2^32].
func TestReplayInference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	w := newReplayWindow(4096, true)
	W := w.size
	for range 200000 {
		var top uint64
		switch r.IntN(4) {
		case 0:
			top = r.Uint64N(3 * W) // near the start
		case 1:
			top = uint64(r.Uint32N(1<<20))<<32 + uint64(r.Uint32N(uint32(2*W))) // just after a boundary
		case 2:
			top = uint64(r.Uint32N(1<<20))<<32 - r.Uint64N(2*W) // just before one
		default:
			top = r.Uint64N(1 << 52)
		}
		w.top = top
		lo := int64(top) - int64(W) + 1
		seq := uint64(lo + r.Int64N(1<<32))
		if r.IntN(8) == 0 {
			seq = uint64(lo + int64(r.IntN(int(2*W)))) // near the window
		}
		got, ok := w.infer(uint32(seq))
		if int64(seq) < 1 {
			// Before the first subspace: not a valid number; inference refuses it or
			// maps it to a number that is not seq.
			if ok && got == seq {
				t.Fatalf("top %#x: inferred impossible %#x", top, seq)
			}
			continue
		}
		if !ok || got != seq {
			t.Fatalf("top %#x seq %#x: inferred %#x %v", top, seq, got, ok)
		}
	}
}

// TestReplayDifferential compares the window with the naive reference on random
// sequences: in order, reordered, duplicated, jumps.
func TestReplayDifferential(t *testing.T) {
	for _, size := range []int{1024, 4096, 10000} {
		r := rand.New(rand.NewPCG(uint64(size), 7))
		w := newReplayWindow(size, false)
		n := naiveWindow{seen: map[uint64]bool{}, size: w.size}
		var base uint64
		for i := range 300000 {
			var seq uint64
			switch x := r.IntN(100); {
			case x < 60:
				base++
				seq = base
			case x < 85:
				seq = base - min(base, r.Uint64N(w.size+200)) // reorder, often past the window
			case x < 95:
				seq = base + r.Uint64N(300)
			case x < 99:
				seq = base + r.Uint64N(20*w.size) // jump
				base = seq
			default:
				seq = r.Uint64N(base + 1)
			}
			_, fresh := w.check(uint32(seq))
			want := n.accept(seq)
			got := fresh && w.commit(seq)
			if got != want {
				t.Fatalf("size %d step %d seq %d: got %v want %v (top %d)", size, i, seq, got, want, w.top)
			}
			if base > math.MaxUint32-1<<24 {
				break
			}
		}
	}
}

// TestReplayDifferentialESN does the same with 64-bit numbers (fresh and commit
// directly, inference having its own test).
func TestReplayDifferentialESN(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	w := newReplayWindow(2048, true)
	n := naiveWindow{seen: map[uint64]bool{}, size: w.size}
	base := uint64(1)<<32 - 5000
	for i := range 300000 {
		seq := base + r.Uint64N(100)
		if r.IntN(3) == 0 {
			seq = base - min(base-1, r.Uint64N(w.size+100))
		}
		base += uint64(r.IntN(3))
		fresh := w.fresh(seq)
		if fresh != (!n.seen[seq] && (seq > n.top || n.top-seq < n.size)) {
			t.Fatalf("step %d: fresh(%d) = %v", i, seq, fresh)
		}
		got := w.commit(seq)
		if want := n.accept(seq); got != want {
			t.Fatalf("step %d seq %#x: got %v want %v", i, seq, got, want)
		}
	}
}

// FuzzReplay drives a window (ESN or not) with arbitrary 32-bit wire numbers and
// compares every decision with the reference fed the inferred 64-bit number.
func FuzzReplay(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 1}, false)
	f.Add([]byte{0, 0, 0, 1, 0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xf8}, true)
	f.Add([]byte{0, 0, 8, 0, 0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 3, 0, 0, 0, 3}, true)
	f.Fuzz(func(t *testing.T, data []byte, esn bool) {
		w := newReplayWindow(1024, esn)
		n := naiveWindow{seen: map[uint64]bool{}, size: w.size}
		for len(data) >= 4 {
			lo := binary.BigEndian.Uint32(data)
			data = data[4:]
			seq, fresh := w.check(lo)
			if !fresh {
				if seq != 0 && n.accept(seq) {
					t.Fatalf("window refused %#x which the reference accepts", seq)
				}
				continue
			}
			if uint32(seq) != lo {
				t.Fatalf("inferred %#x from %#x", seq, lo)
			}
			if got, want := w.commit(seq), n.accept(seq); got != want {
				t.Fatalf("commit %#x: got %v want %v", seq, got, want)
			}
		}
	})
}

// A window that continues another's (an SA moved between datapaths): nothing up to the
// top is accepted again, everything above it is, in any order.
func TestReplayStartAt(t *testing.T) {
	for _, esn := range []bool{false, true} {
		for _, top := range []uint64{1, 63, 64, 100, 5000, 1<<32 - 3, 1<<32 + 70} {
			if !esn && top+64 > 1<<32-1 {
				continue // no room above the top without ESN
			}
			w := newReplayWindow(0, esn)
			w.startAt(top)
			for _, seq := range []uint64{top, top - 1, top - w.size + 1, top - w.size, top - w.size - 1000} {
				if seq == 0 || seq > top {
					continue
				}
				// (With ESN, 32 bits below the window stand for the next subspace: another
				// sequence number, whose ICV check would fail.)
				if got, ok := w.check(uint32(seq)); ok && got == seq {
					t.Errorf("esn %v, top %d: %d (at or below the top) accepted", esn, top, seq)
				}
			}
			// Above the top, out of order: each once.
			ahead := []uint64{top + 5, top + 1, top + 3, top + 64, top + 2, top + 4}
			for _, seq := range ahead {
				got, ok := w.check(uint32(seq))
				if !ok || got != seq || !w.commit(got) {
					t.Fatalf("esn %v, top %d: %d (above the top) refused", esn, top, seq)
				}
			}
			for _, seq := range ahead {
				if _, ok := w.check(uint32(seq)); ok {
					t.Errorf("esn %v, top %d: %d accepted twice", esn, top, seq)
				}
			}
		}
	}
}

// TestReplayMovedSender is a gateway cluster moving an SA: node A sends up to some
// number, node B continues far above (above the whole range A may still use), and A's
// last packets reach the receiver after B's first. Each packet is taken once, in any
// of these orders, and no replay of any of them is taken afterwards, nor a number of
// A's that its window had passed before the move.
func TestReplayMovedSender(t *testing.T) {
	for _, esn := range []bool{false, true} {
		for _, a0 := range []uint64{1, 5000, 1<<32 - 3000} {
			if !esn && a0 > 1<<31 {
				continue
			}
			w := newReplayWindow(0, esn)
			if a0 > 1 {
				w.startAt(a0 - 1) // an SA with a past
			}
			const b0 = 1 << 20 // B's numbers start this far above A's first
			var a, b []uint64
			for i := range uint64(3000) {
				a = append(a, a0+i)
			}
			for i := range uint64(2000) {
				b = append(b, a0+b0+i)
			}
			order := append(append(append(append([]uint64{}, a[:2500]...), b[:300]...), a[2500:]...), b[300:]...)
			take := func(seq uint64) bool {
				got, ok := w.check(uint32(seq))
				return ok && got == seq && w.commit(got)
			}
			for _, seq := range order {
				if !take(seq) {
					t.Fatalf("esn %v a0 %d: %d refused the first time (top %d)", esn, a0, seq, w.top)
				}
			}
			for _, seq := range order {
				if take(seq) {
					t.Fatalf("esn %v a0 %d: %d taken twice", esn, a0, seq)
				}
			}
			// Below A's window before the move: too old, as without a move.
			if take(a0 + 2999 - w.size - 10) {
				t.Fatalf("esn %v a0 %d: a number below the old window taken", esn, a0)
			}
		}
	}
}

// TestReplayOnceOnly: whatever arrives, in whatever order, with jumps, each number is
// taken at most once (the property the window exists for; the second window must not
// weaken it).
func TestReplayOnceOnly(t *testing.T) {
	for _, esn := range []bool{false, true} {
		r := rand.New(rand.NewPCG(11, 12))
		w := newReplayWindow(1024, esn)
		taken := map[uint64]bool{}
		base := uint64(1)
		if esn {
			base = 1<<32 - 1<<20
		}
		var sent []uint64
		for i := range 400000 {
			var seq uint64
			switch x := r.IntN(100); {
			case x < 70:
				base++
				seq = base
			case x < 97 && len(sent) > 0:
				seq = sent[len(sent)-1-r.IntN(min(len(sent), 3*int(w.size)))] // late or replayed
			default:
				base += r.Uint64N(oldKeep + w.size)
				seq = base
			}
			sent = append(sent, seq)
			if len(sent) > 1<<16 {
				sent = sent[1<<15:]
			}
			got, ok := w.check(uint32(seq))
			if !ok || got != seq || !w.commit(got) {
				continue
			}
			if taken[seq] {
				t.Fatalf("esn %v step %d: %d taken twice", esn, i, seq)
			}
			taken[seq] = true
		}
	}
}
