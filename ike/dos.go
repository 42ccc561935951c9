package ike

import (
	"net/netip"
	"time"
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
			n += f.size
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
// responses): at most one per source every replayInterval, and replayBurst per SA per
// second from all sources, so that the cache cannot be used as a reflector.
func (e *Engine) replayAllowed(now time.Time, sa *IKESA, to netip.AddrPort) bool {
	recent := 0
	oldest := -1
	for i, r := range sa.replays {
		if now.Sub(r.at) < time.Second {
			recent++
		}
		if r.to == to && now.Sub(r.at) < replayInterval {
			return false
		}
		if oldest < 0 || r.at.Before(sa.replays[oldest].at) {
			oldest = i
		}
	}
	if recent >= replayBurst {
		return false
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
