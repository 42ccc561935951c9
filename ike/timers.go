package ike

import (
	"container/heap"
	"slices"
	"time"

	"github.com/mobikevpn/mobikevpn/mobike"
)

// Timers: one wake-up per IKE SA at its earliest deadline (retransmission, liveness
// check, rekeys, half-open expiry), in a heap.

// Tick runs the timers that are due at now.
func (e *Engine) Tick(now time.Time) []Action {
	e.deleted.expire(now)
	e.runRetries(now)
	for len(e.timers) > 0 && !e.timers[0].at.After(now) {
		t := heap.Pop(&e.timers).(timerEntry)
		sa := t.sa
		if !sa.wakeAt.Equal(t.at) || !e.store.live(sa) {
			continue // stale entry
		}
		sa.wakeAt = time.Time{}
		if sa.handedOver {
			continue // exported: its timers run on the engine that imported it
		}
		e.onTimer(now, sa)
		e.charge(sa)
		if e.store.live(sa) {
			e.schedule(sa)
		}
	}
	return e.take()
}

// NextDeadline returns when Tick should be called next, if any timer is armed.
func (e *Engine) NextDeadline() (time.Time, bool) {
	at, ok := e.retryDeadline()
	for len(e.timers) > 0 {
		t := e.timers[0]
		if t.sa.wakeAt.Equal(t.at) && e.store.live(t.sa) {
			if !ok || t.at.Before(at) {
				at, ok = t.at, true
			}
			break
		}
		heap.Pop(&e.timers)
	}
	return at, ok
}

func (e *Engine) onTimer(now time.Time, sa *IKESA) {
	if r := sa.win.pending; r != nil && !r.nextAt.After(now) {
		if !e.retransmit(now, sa, r) {
			return
		}
	}
	if !sa.halfOpenExpire.IsZero() && !sa.halfOpenExpire.After(now) {
		e.log.Debug("half-open SA expired", "sa", sa.id, "peer", sa.remote)
		e.removeSA(now, sa, "")
		return
	}
	if !sa.expireAt.IsZero() && !sa.expireAt.After(now) {
		e.log.Debug("forgetting an IKE SA the peer did not delete (rekeyed or redirected)", "sa", sa.id)
		e.removeSA(now, sa, "")
		return
	}
	if !sa.dpdAt.IsZero() && !sa.dpdAt.After(now) {
		sa.dpdAt = time.Time{}
		switch {
		case sa.state != stateEstablished || !sa.win.idle():
			e.armDPD(sa, now)
		case e.espAlive(sa, now):
			// ESP from the peer arrived meanwhile: it is alive, no check needed yet.
		default:
			e.livenessChecks++
			e.queueRequest(now, sa, e.dpdRequest(sa))
		}
	}
	if len(sa.lingering) > 0 {
		e.expireLingering(now, sa, false)
	}
	if len(sa.followups) > 0 {
		e.expireFollowups(now, sa)
	}
	if sa.state != stateEstablished || sa.rekeyedTo != nil {
		return
	}
	for _, c := range slices.Clone(sa.children) {
		if !c.activateAt.IsZero() && !c.activateAt.After(now) {
			// The rekey initiator did not delete the old SA in time: switch anyway.
			e.activateOutbound(sa, c)
		}
		if !c.rekeyAt.IsZero() && !c.rekeyAt.After(now) && c.state == childInstalled {
			c.rekeyAt = time.Time{}
			e.rekeyChild(now, sa, c, 0)
			if c.state == childInstalled && c.rekeyAt.IsZero() {
				// Not now (an IKE SA rekey is under way): soon.
				c.rekeyAt = now.Add(time.Second)
			}
		}
	}
	if !sa.rekeyAt.IsZero() && !sa.rekeyAt.After(now) {
		sa.rekeyAt = time.Time{}
		e.rekeyIKE(now, sa, 0)
	}
}

// retransmit sends the outstanding request r again, or, when its tries ran out, gives
// a responder's return routability check up (mobike.Manager.Exhausted) or the peer
// dead. It reports whether sa is still there.
func (e *Engine) retransmit(now time.Time, sa *IKESA, r *request) bool {
	if e.holdOffline(now, sa, r) { // keepup.go
		return true
	}
	if r.tries >= e.cfg.Retransmit.Tries {
		if sa.pm != nil && sa.state == stateEstablished {
			if ds, again := sa.pm.Exhausted(now, r.check); again {
				// Another round, on the path the path manager says.
				r.tries = 0
				r.nextAt = now.Add(e.retransmitDelay(0))
				e.applyPath(now, sa, ds, nil)
				if !e.store.live(sa) || sa.win.pending != r {
					return e.store.live(sa)
				}
				e.sendReq(sa, r)
				return true
			}
		}
		e.log.Info("peer not responding", "sa", sa.id, "conn", sa.conn.Name, "peer", sa.remote, "exchange", r.exchange.String(), "retransmissions", r.tries)
		e.peerDead(now, sa)
		return false
	}
	r.tries++
	r.nextAt = now.Add(e.retransmitDelay(r.tries))
	e.log.Debug("retransmitting", "sa", sa.id, "exchange", r.exchange.String(), "msgid", r.msgID, "try", r.tries)
	var probes []mobike.Path
	var ds []mobike.Decision
	if sa.pm != nil && sa.state == stateEstablished {
		// The path manager may give a tentative path up, or probe others.
		probes, ds = sa.pm.Retransmit(now, e.host(), r.check, r.tries)
	}
	if r.kind == reqInit {
		e.rotateInit(sa, r)
	}
	e.sendReq(sa, r)
	for _, p := range probes {
		e.sendOn(p, r.data, 0)
	}
	e.applyPath(now, sa, ds, nil)
	return e.store.live(sa)
}

// armDPD schedules the next liveness check dpd_delay after the last sign of life.
func (e *Engine) armDPD(sa *IKESA, now time.Time) {
	if sa.state != stateEstablished || sa.conn == nil || sa.conn.DPDDelay <= 0 {
		sa.dpdAt = time.Time{}
		return
	}
	sa.dpdAt = now.Add(sa.conn.DPDDelay)
}

// espAlive reports whether an inbound Child SA of sa accepted ESP within dpd_delay
// before now; if so, it arms the liveness check dpd_delay after that packet.
func (e *Engine) espAlive(sa *IKESA, now time.Time) bool {
	if e.cfg.InboundActivity == nil || sa.conn == nil || sa.conn.DPDDelay <= 0 {
		return false
	}
	var last time.Time
	consider := func(spi uint32) {
		if t := e.cfg.InboundActivity(spi); t.After(last) {
			last = t
		}
	}
	for _, c := range sa.children {
		consider(c.spiIn)
	}
	for _, l := range sa.lingering {
		consider(l.spi)
	}
	if last.IsZero() || !last.Add(sa.conn.DPDDelay).After(now) {
		return false
	}
	sa.dpdAt = last.Add(sa.conn.DPDDelay)
	return true
}

// armIKERekey schedules the IKE SA's rekey (rekey_time, jittered).
func (e *Engine) armIKERekey(sa *IKESA, now time.Time) {
	if sa.conn != nil && sa.conn.RekeyTime > 0 {
		sa.rekeyAt = now.Add(e.jitter(sa.conn.RekeyTime))
	}
}

// schedule (re)arms the SA's wake-up at its earliest deadline.
func (e *Engine) schedule(sa *IKESA) {
	var at time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	if sa.win.pending != nil {
		consider(sa.win.pending.nextAt)
	}
	consider(sa.halfOpenExpire)
	consider(sa.dpdAt)
	consider(sa.expireAt)
	for _, l := range sa.lingering {
		consider(l.at)
	}
	for _, f := range sa.followups {
		consider(f.expires)
	}
	// Rekeys and deferred activations only run on an established SA (see onTimer).
	if sa.state == stateEstablished && sa.rekeyedTo == nil {
		consider(sa.rekeyAt)
		for _, c := range sa.children {
			if c.state == childInstalled {
				consider(c.rekeyAt)
			}
			consider(c.activateAt)
		}
	}
	if at.IsZero() || at.Equal(sa.wakeAt) {
		return
	}
	sa.wakeAt = at
	heap.Push(&e.timers, timerEntry{at: at, sa: sa})
}

// peerDead handles an exhausted retransmission.
func (e *Engine) peerDead(now time.Time, sa *IKESA) {
	conn := e.currentConn(sa.conn) // a restart follows the configuration as reloaded
	wasUp := sa.state == stateEstablished
	deleting := sa.state == stateDeleting
	reason := "timeout: no response from peer"
	e.removeSA(now, sa, reason)
	if deleting {
		return
	}
	switch {
	case sa.origInitiator && sa.conn != nil && conn == nil:
		e.log.Info("not restarting: a reload removed the connection", "conn", sa.conn.Name)
	case !sa.origInitiator || conn == nil:
	case wasUp && conn.DPDAction == "restart":
		e.log.Info("restarting connection after DPD failure", "conn", conn.Name)
		e.restart(now, conn)
	}
	// An attempt to keep the connection up that found the peer away is tried again
	// after a backoff (removeSA, keepup.go).
}

// currentConn is the connection of c's name in the configuration as it is now (a
// reload replaces every Conn), or nil when the reload removed it.
func (e *Engine) currentConn(c *Conn) *Conn {
	if c == nil {
		return nil
	}
	return e.conns[c.Name]
}

// restart initiates conn again after its SA was lost; the attempt keeps retrying
// while the peer does not answer. conn is the current configuration's (currentConn):
// an SA established before a reload restarts with the reloaded identities, proposals
// and CRLs, or not at all once its connection is gone.
func (e *Engine) restart(now time.Time, conn *Conn) {
	e.keepUp(now, conn, "restart")
}

// timerHeap orders SA wake-ups; stale entries are skipped when popped.
type timerEntry struct {
	at time.Time
	sa *IKESA
}

type timerHeap []timerEntry

func (h timerHeap) Len() int { return len(h) }

func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }

func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }

func (h *timerHeap) Push(x any) { *h = append(*h, x.(timerEntry)) }

func (h *timerHeap) Pop() any {
	old := *h
	n := len(old)
	x := old[n-1]
	old[n-1] = timerEntry{}
	*h = old[:n-1]
	return x
}
