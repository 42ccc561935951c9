package daemon

import (
	"context"
	"strings"
	"time"

	"github.com/mobikevpn/mobikevpn/ike"
	"github.com/mobikevpn/mobikevpn/internal/metrics"
)

// The daemon's side of the Prometheus endpoint (internal/metrics): event counters it
// keeps as the engine's events pass (engine goroutine), and a snapshot at each scrape.

// maxFailureReasons caps the distinct reasons of failed handshakes: beyond it they
// count as "other", so a peer cannot grow the label set.
const maxFailureReasons = 32

// eventStats counts the engine's events (engine goroutine only).
type eventStats struct {
	events   map[string]uint64
	failures map[string]uint64
}

// count notes event a.
func (s *eventStats) count(a ike.Event) {
	if s.events == nil {
		s.events, s.failures = make(map[string]uint64), make(map[string]uint64)
	}
	switch a.Kind {
	case ike.EventEstablished:
		s.events["handshakes_established"]++
	case ike.EventFailed:
		s.events["handshakes_failed"]++
		r := failureReason(a.Reason)
		if _, ok := s.failures[r]; !ok && len(s.failures) >= maxFailureReasons {
			r = "other"
		}
		s.failures[r]++
	case ike.EventDeleted:
		s.events["ike_sas_deleted"]++
	case ike.EventRekeyed:
		s.events["ike_rekeys"]++
	case ike.EventMoved:
		s.events["mobike_moves"]++
	case ike.EventMoveFailed:
		s.events["mobike_moves_failed"]++
	case ike.EventSwitched:
		s.events["switches_completed"]++
	case ike.EventSwitchRefused:
		s.events["switches_refused"]++
	case ike.EventChildFailed, ike.EventPeerStayed, ike.EventVIPWanted:
	}
}

// failureReason is the label of a failure: its first words, up to a colon or an
// opening parenthesis (e.g. "AUTHENTICATION_FAILED", "timeout"), lower-cased, letters,
// digits and underscores.
func failureReason(reason string) string {
	if i := strings.IndexAny(reason, ":("); i >= 0 {
		reason = reason[:i]
	}
	reason = strings.ToLower(strings.TrimSpace(reason))
	var b strings.Builder
	for _, r := range reason {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		case r == ' ' || r == '-':
			b.WriteByte('_')
		}
		if b.Len() >= 48 {
			break
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	return b.String()
}

// metricsSnapshot gathers what a scrape shows.
func (d *daemon) metricsSnapshot(ctx context.Context) (*metrics.Snapshot, error) {
	s := &metrics.Snapshot{IKESAs: map[metrics.ConnState]int{}, Drops: map[string]uint64{},
		Events: map[string]uint64{}, Failures: map[string]uint64{}}
	if err := d.run(ctx, func(time.Time) {
		c := d.engine.Count()
		for k, n := range c.ByState {
			s.IKESAs[metrics.ConnState{Conn: k[0], State: k[1]}] = n
		}
		s.HalfOpen, s.ChildSAs = d.engine.HalfOpen(), c.ChildSAs
		for k, v := range d.stats.events {
			s.Events[k] = v
		}
		for k, v := range d.stats.failures {
			s.Failures[k] = v
		}
		s.Events["child_rekeys"], s.Events["cookies_sent"] = c.ChildRekeys, c.CookiesSent
		s.Events["switches_sent"], s.Events["liveness_checks"] = c.SwitchesSent, c.LivenessChecks
	}); err != nil {
		return nil, err
	}
	in, out := d.dp.Totals()
	s.Bytes = map[string]uint64{"in": in.Bytes, "out": out.Bytes}
	s.Packets = map[string]uint64{"in": in.Packets, "out": out.Packets}
	d.drops(s.Drops)
	if c := d.cl; c != nil {
		s.Cluster = &metrics.Cluster{Node: c.co.Self().Name, NodesAlive: int(c.nodesAlive.Load()), Owned: int(c.load.Load()),
			Moves: map[string]uint64{"out": c.movesOut.Load(), "in": c.movesIn.Load(), "failover": c.failedOver.Load()}}
	}
	return s, nil
}

// serveMetrics serves the metrics endpoint, if the daemon was given one; the returned
// function stops it.
func (d *Daemon) serveMetrics() (func(), error) {
	if d.deps.Metrics == nil {
		return func() {}, nil
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() { done <- d.deps.Metrics(ctx, d.metricsSnapshot, ready) }()
	select {
	case <-ready:
	case err := <-done:
		stop()
		return nil, err
	}
	return func() {
		stop()
		<-done
	}, nil
}

// logEvent writes the one structured line per state change of an SA: msg "sa event"
// with the event, the SA's id, connection, peer identity and address, and why (with
// log_format: json, one object a program can follow).
func (d *daemon) logEvent(a ike.Event) {
	if a.Kind == ike.EventVIPWanted {
		return // a wait, not a change
	}
	attrs := []any{"event", a.Kind.String(), "sa", a.IKESA, "conn", a.Conn}
	if a.PeerID != "" {
		attrs = append(attrs, "peer_id", a.PeerID)
	}
	if a.Peer.IsValid() {
		attrs = append(attrs, "peer", a.Peer.String())
	}
	if a.Reason != "" {
		attrs = append(attrs, "reason", a.Reason)
	}
	if a.Replaces != 0 {
		attrs = append(attrs, "replaces", a.Replaces)
	}
	d.log.Info("sa event", attrs...)
}
