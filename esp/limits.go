package esp

import (
	"math"
	"sync/atomic"
)

// Volume limits: each SA counts its traffic, and when it crosses a soft limit (rekey
// it) or a hard one (it must go) the datapath queues a LimitEvent for the IKE layer and
// signals LimitsCrossed. The packet paths only compare the counters they update anyway
// with thresholds computed in advance (saCounters.atPackets, atBytes); the rest runs at
// most twice per SA.
//
// Whatever the configuration, an SA asks for a rekey before its sequence numbers run
// out (softSeq32 without ESN, softSeq64 with it), and an outbound SA never sends a
// packet beyond the last sequence number (RFC 4303 3.3.3: the counter must not cycle)
// nor beyond its hard packet limit: such packets are dropped and counted
// (DropCounters.SeqExhausted), and the SA is reported as done.

const (
	// softSeq32 is the sequence number (or inbound packet count) from which an SA
	// without ESN asks for a rekey: 2^24 packets before the end.
	softSeq32 = 1<<32 - 1<<24
	// softSeq64 is the same with ESN: 2^32 packets before the end.
	softSeq64 = math.MaxUint64 - 1<<32 + 1
)

// Limits are the volume limits of one SA (one direction of a Child SA); 0 means none.
// Bytes are inner (plaintext) bytes. An outbound SA sends at most HardPackets packets;
// past HardBytes it stops after the batch that crossed it.
type Limits struct {
	SoftBytes, SoftPackets uint64 // a rekey should start
	HardBytes, HardPackets uint64 // the SA must go
}

// LimitEvent reports that an SA crossed a volume limit, or neared (Hard false) or
// reached (Hard true) the end of its sequence numbers. Each SA reports each kind once.
type LimitEvent struct {
	Inbound bool
	SPI     uint32 // inbound: our SPI; outbound: the SA's (the peer's) SPI
	Child   uint64 // outbound: the child passed to InstallOutbound
	Hard    bool
}

// Limit kinds, as bits of saLimits.fired.
const (
	limitSoft = 1 << iota
	limitHard
)

// saLimits is the volume limit state of one SA.
type saLimits struct {
	ev    LimitEvent    // what to report (Hard false)
	soft  [2]uint64     // packets, bytes; math.MaxUint64 for none
	hard  [2]uint64     // packets, bytes; math.MaxUint64 for none
	fired atomic.Uint32 // limitSoft | limitHard reported; changed under Datapath.limitMu
	out   *outSA        // outbound: stopped when a hard limit is crossed
}

func orNone(n uint64) uint64 {
	if n == 0 {
		return math.MaxUint64
	}
	return n
}

// seqBounds returns the sequence number from which an SA asks for a rekey, and the last
// one there is.
func seqBounds(esn bool) (soft, last uint64) {
	if esn {
		return softSeq64, math.MaxUint64
	}
	return softSeq32, math.MaxUint32
}

// initLimits sets up the limits of a new SA whose counters are c. The soft packet
// limit of every SA is at most the count at which its sequence numbers near their end
// (for an outbound SA that is also checked per sequence number, see outSA.seqSoft).
func initLimits(c *saCounters, lim Limits, esn bool, ev LimitEvent, out *outSA) {
	seqSoft, _ := seqBounds(esn)
	l := &saLimits{
		ev:   ev,
		soft: [2]uint64{min(orNone(lim.SoftPackets), seqSoft), orNone(lim.SoftBytes)},
		hard: [2]uint64{orNone(lim.HardPackets), orNone(lim.HardBytes)},
		out:  out,
	}
	c.lim = l
	c.atPackets.Store(min(l.soft[0], l.hard[0]))
	c.atBytes.Store(min(l.soft[1], l.hard[1]))
}

// crossed is called when an SA's counters reached one of its thresholds (packets p,
// bytes b): it reports the limits crossed and moves the thresholds to the next ones.
func (d *Datapath) crossed(c *saCounters, p, b uint64) {
	l := c.lim
	d.limitMu.Lock()
	n := len(d.limits)
	if p >= l.soft[0] || b >= l.soft[1] {
		d.fire(l, limitSoft)
	}
	if p >= l.hard[0] || b >= l.hard[1] {
		d.fire(l, limitHard)
	}
	atP, atB := uint64(math.MaxUint64), uint64(math.MaxUint64)
	f := l.fired.Load()
	if f&limitSoft == 0 {
		atP, atB = l.soft[0], l.soft[1]
	}
	if f&limitHard == 0 {
		atP, atB = min(atP, l.hard[0]), min(atB, l.hard[1])
	}
	c.atPackets.Store(atP)
	c.atBytes.Store(atB)
	added := len(d.limits) > n
	d.limitMu.Unlock()
	if added {
		d.wakeLimits()
	}
}

// seqLimit reports that the outbound SA sa used the sequence number from which it asks
// for a rekey (hard false), or has none left (hard true).
func (d *Datapath) seqLimit(sa *outSA, hard bool) {
	l := sa.ctr.lim
	kind := uint32(limitSoft)
	if hard {
		kind = limitHard
	}
	if l.fired.Load()&kind != 0 {
		return // the usual case for a used-up SA that is still offered packets
	}
	d.limitMu.Lock()
	n := len(d.limits)
	d.fire(l, kind)
	added := len(d.limits) > n
	d.limitMu.Unlock()
	if added {
		d.wakeLimits()
	}
}

// fire queues l's report of kind unless it was made already. d.limitMu is held.
func (d *Datapath) fire(l *saLimits, kind uint32) {
	f := l.fired.Load()
	if f&kind != 0 {
		return
	}
	l.fired.Store(f | kind)
	ev := l.ev
	ev.Hard = kind == limitHard
	d.limits = append(d.limits, ev)
	if ev.Hard && l.out != nil {
		// Nothing more is sent on it.
		sa := l.out
		for {
			m := sa.seqMax.Load()
			s := sa.seq.Load()
			if s >= m || sa.seqMax.CompareAndSwap(m, s) {
				break
			}
		}
	}
}

func (d *Datapath) wakeLimits() {
	select {
	case d.limitSig <- struct{}{}:
	default:
	}
}

// LimitsCrossed receives a value when SAs crossed volume limits since the last
// TakeLimits (one value for any number of them).
func (d *Datapath) LimitsCrossed() <-chan struct{} { return d.limitSig }

// TakeLimits returns the limits crossed since the last call, oldest first, and forgets
// them. The SAs they name may be gone by now.
func (d *Datapath) TakeLimits() []LimitEvent {
	d.limitMu.Lock()
	defer d.limitMu.Unlock()
	evs := d.limits
	d.limits = nil
	return evs
}
