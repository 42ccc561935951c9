package ike

import (
	"net/netip"
	"time"
	"unsafe"
)

// Before authentication: what a peer can make us hold (messages, fragments) and
// answer (cached responses), and the sources the half-open limits count.

// maxPreauthMessage caps a message, whole or reassembled from fragments, before the
// peer is authenticated (strongSwan's max_packet).
const maxPreauthMessage = 10000

// authenticated reports whether sa's peer is authenticated (IKE_AUTH completed).
func (sa *IKESA) authenticated() bool {
	return sa.state == stateEstablished || sa.state == stateDeleting
}

// preauthHeld is what sa holds while its peer is not authenticated: the IKE_SA_INIT
// messages and fragments being reassembled.
func (sa *IKESA) preauthHeld() int {
	if sa.authenticated() || sa.state == stateDead {
		return 0
	}
	n := len(sa.initReq) + len(sa.initResp)
	for _, c := range sa.initCopies {
		n += len(c.data)
	}
	for _, f := range sa.frags {
		if f != nil {
			// The fragments, and the table of their slots (a slice header each).
			n += f.size + cap(f.parts)*int(unsafe.Sizeof([]byte(nil)))
		}
	}
	return n
}

// charge brings Engine.preauth up to date with what sa holds now.
func (e *Engine) charge(sa *IKESA) {
	held := 0
	if e.byID[sa.id] == sa {
		held = sa.preauthHeld()
	}
	e.preauth += held - sa.charged
	sa.charged = held
}

// PreauthBytes is what SAs that are not authenticated hold, in bytes.
func (e *Engine) PreauthBytes() int { return e.preauth }

// replayAllowed rate-limits answers to copies of an answered request (cached
// responses), so that the cache cannot be used as a reflector: at most one answer per
// source every replayInterval, and at most replayBurst answers per SA in any second to
// sources other than the SA's peer. The peer's own address is not in that budget, so
// that copies spoofed from elsewhere cannot keep its retransmissions unanswered (what
// goes to the peer is what it asked for, at most four times a second).
func (e *Engine) replayAllowed(now time.Time, sa *IKESA, to netip.AddrPort) bool {
	oldest := -1
	for i, r := range sa.replays {
		if r.to == to && now.Sub(r.at) < replayInterval {
			return false
		}
		if oldest < 0 || r.at.Before(sa.replays[oldest].at) {
			oldest = i
		}
	}
	peer := to == sa.remote
	if !peer {
		// The budget: replayBurst answers in any second, a ring of their times.
		if sa.replayTimes == nil {
			sa.replayTimes = new([replayBurst]time.Time) // only once copies come from elsewhere
		}
		last := sa.replayTimes[sa.replayNext]
		if !last.IsZero() && now.Sub(last) < time.Second {
			return false
		}
		sa.replayTimes[sa.replayNext] = now
		sa.replayNext = (sa.replayNext + 1) % replayBurst
	}
	for i := range sa.replays {
		if sa.replays[i].to == to {
			sa.replays[i].at = now
			return true
		}
	}
	if len(sa.replays) < maxReplaySources {
		sa.replays = append(sa.replays, replayStamp{to: to, at: now})
	} else {
		sa.replays[oldest] = replayStamp{to: to, at: now}
	}
	return true
}

const (
	replayInterval   = 250 * time.Millisecond
	replayBurst      = 10
	maxReplaySources = 16
)

type replayStamp struct {
	to netip.AddrPort
	at time.Time
}

// sourceBlock is the source a peer address counts as for the half-open limits: an
// IPv4 address, or the IPv6 prefix it is in.
func (e *Engine) sourceBlock(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(e.cfg.IPv6SourcePrefix)
	return p
}
