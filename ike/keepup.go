package ike

import (
	"time"
)

// Keeping a client's connection up without a person touching it.
//
//   - A connection started by start_action: start, or restarted after its SA was lost
//     (dpd_action or close_action restart), is kept up: an attempt that fails, at once
//     (no local address to reach the gateway, no address for its host name) or before
//     its SA is established (no answer, authentication or proposals refused), is tried
//     again after a backoff (retryFirst, doubling up to retryMax) until an SA of the
//     connection is established or someone deletes it.
//   - While the host has no route to the peer at all (a laptop's lid closed, its only
//     link down), the requests of the initiator's SAs are held: their retransmissions
//     neither go out nor count, so being offline for minutes does not cost the SA.
//   - When the host's addresses or routes change, held SAs resume at once: their
//     outstanding request goes out with a fresh retransmission schedule and a MOBIKE SA
//     tells the gateway where it is (UPDATE_SA_ADDRESSES, its NAT mapping may be new).
//     If the gateway forgot the SA meanwhile, the exchange fails and dpd_action
//     restart creates a new one. Pending retries run at once too.

const (
	retryFirst = 2 * time.Second
	retryMax   = 30 * time.Second
)

// connRetry is a kept-up connection that is not up: its next attempt is at at (zero
// while an attempt is under way), after waiting delay.
type connRetry struct {
	at    time.Time
	delay time.Duration
}

// keepUp initiates conn and keeps it up (see above); a connection with host names
// has them resolved first (hosts.go).
func (e *Engine) keepUp(now time.Time, conn *Conn, why string) {
	if e.resolveFirst(conn) {
		return
	}
	e.keepUpResolved(now, conn, why)
}

// keepUpResolved is keepUp once conn's host names are resolved.
func (e *Engine) keepUpResolved(now time.Time, conn *Conn, why string) {
	id, err := e.initiate(now, conn)
	if err != nil {
		e.log.Warn("cannot start connection", "conn", conn.Name, "err", err)
		e.scheduleRetry(now, conn.Name, why)
		return
	}
	if sa := e.store.get(id); sa != nil {
		sa.restarting = true
	}
}

// scheduleRetry arms the next attempt of the kept-up connection name.
func (e *Engine) scheduleRetry(now time.Time, name, why string) {
	if e.retries == nil {
		e.retries = make(map[string]*connRetry)
	}
	r := e.retries[name]
	if r == nil {
		r = &connRetry{delay: retryFirst}
		e.retries[name] = r
	} else if !r.at.IsZero() {
		return // already armed
	} else {
		r.delay = min(2*r.delay, retryMax)
	}
	r.at = now.Add(r.delay)
	e.log.Info("will try the connection again", "conn", name, "in", r.delay, "after", why)
}

// connActive reports whether an SA of connection name that we initiated is
// established or on its way.
func (e *Engine) connActive(name string) bool {
	for sa := range e.store.all() {
		if sa.origInitiator && sa.conn != nil && sa.conn.Name == name && sa.state != stateDeleting && sa.state != stateDead {
			return true
		}
	}
	return false
}

// runRetries starts the kept-up connections whose retry is due.
func (e *Engine) runRetries(now time.Time) {
	for name, r := range e.retries {
		if r.at.IsZero() || r.at.After(now) {
			continue
		}
		r.at = time.Time{}
		conn := e.conns[name]
		if conn == nil {
			delete(e.retries, name) // a reload removed it
			continue
		}
		if e.connActive(name) {
			continue
		}
		e.keepUp(now, conn, "retry")
	}
}

// retryDeadline is the earliest armed retry.
func (e *Engine) retryDeadline() (time.Time, bool) {
	var at time.Time
	for _, r := range e.retries {
		if !r.at.IsZero() && (at.IsZero() || r.at.Before(at)) {
			at = r.at
		}
	}
	return at, !at.IsZero()
}

// connUp ends the retries of sa's connection: it is established.
func (e *Engine) connUp(sa *IKESA) {
	if sa.origInitiator && sa.conn != nil {
		delete(e.retries, sa.conn.Name)
	}
}

// attemptFailed: sa, removed before it was established, was an attempt to keep its
// connection up: try again after the backoff.
func (e *Engine) attemptFailed(now time.Time, sa *IKESA, reason string) {
	if !sa.restarting || !sa.origInitiator || sa.conn == nil || e.conns[sa.conn.Name] == nil {
		return
	}
	e.scheduleRetry(now, sa.conn.Name, reason)
}

// stopKeepingUp: a person deleted the connection's SA; it stays down.
func (e *Engine) stopKeepingUp(sa *IKESA) {
	sa.restarting = false
	if sa.conn != nil {
		delete(e.retries, sa.conn.Name)
	}
}

// offline reports whether the host has no route to sa's peer (an initiator's SA only:
// a gateway does not wait for its clients' networks).
func (e *Engine) offline(sa *IKESA) bool {
	if !sa.origInitiator || e.cfg.SourceAddr == nil {
		return false
	}
	_, err := e.cfg.SourceAddr(sa.remote.Addr())
	return err != nil
}

// holdOffline holds the outstanding request r of sa while the host is offline, and
// resumes sa once it is not (without waiting for the host to report the change): it
// reports whether it did either, which took the place of the retransmission.
func (e *Engine) holdOffline(now time.Time, sa *IKESA, r *request) bool {
	if !e.offline(sa) {
		if sa.held {
			e.resume(now, sa)
			return true
		}
		return false
	}
	if !sa.held {
		sa.held = true
		e.log.Info("no route to the peer: holding the SA until the network is back", "sa", sa.id, "peer", sa.remote)
	}
	r.nextAt = now.Add(e.retransmitDelay(0))
	return true
}

// resumeHeld resumes the SAs held while offline that have a route again, and runs the
// pending retries: the network changed.
func (e *Engine) resumeHeld(now time.Time) {
	for _, sa := range e.sorted() {
		if sa.held && !e.offline(sa) {
			e.resume(now, sa)
			if e.store.live(sa) {
				e.schedule(sa)
			}
		}
	}
	for _, r := range e.retries {
		if !r.at.IsZero() {
			r.at = now
		}
	}
	e.runRetries(now)
}

// resume sends the request sa held while offline again, with a fresh retransmission
// schedule, and has a MOBIKE SA tell the gateway where it is now (its NAT mapping may
// be new): the update follows the request in flight.
func (e *Engine) resume(now time.Time, sa *IKESA) {
	sa.held = false
	e.log.Info("network back: resuming the SA", "sa", sa.id, "peer", sa.remote)
	r := sa.win.pending
	if r != nil {
		r.tries = 0
		r.nextAt = now.Add(e.retransmitDelay(0))
	}
	if sa.pm != nil && sa.mobike && sa.state == stateEstablished {
		if ds := sa.pm.Resume(now, "network back"); len(ds) > 0 {
			e.applyPath(now, sa, ds, nil) // a copy of r goes out with the move
			return
		}
	}
	if r != nil && r.data != nil {
		e.sendReq(sa, r)
	}
}

// StartConns initiates the named connections and keeps them up (a reload that added
// connections with start_action: start).
func (e *Engine) StartConns(now time.Time, names []string) []Action {
	for _, name := range names {
		if c := e.conns[name]; c != nil && !e.connActive(name) {
			e.keepUp(now, c, "start")
		}
	}
	return e.take()
}
