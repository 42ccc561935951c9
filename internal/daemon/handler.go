package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mobikevpn/mobikevpn/ike"
	"github.com/mobikevpn/mobikevpn/internal/control"
)

// The control socket's requests run on the engine goroutine through d.cmds.

func (d *daemon) run(ctx context.Context, f func(now time.Time)) error {
	done := make(chan struct{})
	select {
	case d.cmds <- func(now time.Time) { f(now); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Status implements control.Handler.
func (d *daemon) Status(ctx context.Context) (*control.Status, error) {
	var sas []ike.SAStatus
	var half, preauth int
	if err := d.run(ctx, func(now time.Time) {
		sas, half, preauth = d.engine.Status(now), d.engine.HalfOpen(), d.engine.PreauthBytes()
	}); err != nil {
		return nil, err
	}
	rt := memStats()
	st := &control.Status{IKESAs: []control.IKESA{}, HalfOpen: half, PreauthBytes: preauth, Drops: map[string]uint64{}, Runtime: &rt}
	for _, s := range sas {
		is := control.IKESA{
			ID:                  s.ID,
			Name:                s.Name,
			Role:                s.Role,
			State:               s.State,
			Local:               s.Local.String(),
			Remote:              s.Remote.String(),
			LocalID:             s.LocalID,
			RemoteID:            s.RemoteID,
			SPIi:                s.SPIi,
			SPIr:                s.SPIr,
			Proposal:            s.Proposal,
			NATLocal:            s.NATLocal,
			NATRemote:           s.NATRemote,
			Encap:               s.Encap,
			UDPEncap:            control.EncapReason(s.NATLocal, s.NATRemote, s.Encap),
			Mobike:              s.Mobike,
			RMobike:             s.RMobike,
			PeerAdditionalAddrs: []string{},
			MobikeState:         s.MobikeState,
			VirtualIPs:          []string{},
			EstablishedS:        s.EstablishedS,
			ChildSAs:            []control.ChildSA{},
		}
		for _, a := range s.PeerAdditional {
			is.PeerAdditionalAddrs = append(is.PeerAdditionalAddrs, a.String())
		}
		for _, a := range s.VirtualIPs {
			is.VirtualIPs = append(is.VirtualIPs, a.String())
		}
		for _, a := range s.DNS {
			is.DNS = append(is.DNS, a.String())
		}
		for _, c := range s.Children {
			cs := control.ChildSA{
				Name:     c.Name,
				State:    c.State,
				SPIIn:    fmt.Sprintf("%08x", c.SPIIn),
				SPIOut:   fmt.Sprintf("%08x", c.SPIOut),
				Proposal: c.Proposal,
				LocalTS:  c.LocalTS,
				RemoteTS: c.RemoteTS,
			}
			if in, ok := d.dp.InboundCounters(c.SPIIn); ok {
				cs.BytesIn, cs.PacketsIn = in.Bytes, in.Packets
			}
			if c.OutActive {
				if out, ok := d.dp.OutboundCounters(c.Policy); ok {
					cs.BytesOut, cs.PacketsOut = out.Bytes, out.Packets
				}
			}
			is.ChildSAs = append(is.ChildSAs, cs)
		}
		st.IKESAs = append(st.IKESAs, is)
	}
	d.drops(st.Drops)
	return st, nil
}

// BriefStatus implements control.BriefStatuser: the counts, drops and runtime only.
func (d *daemon) BriefStatus(ctx context.Context, gc bool) (*control.Status, error) {
	var c ike.Counts
	var half, preauth int
	if err := d.run(ctx, func(time.Time) { c, half, preauth = d.engine.Count(), d.engine.HalfOpen(), d.engine.PreauthBytes() }); err != nil {
		return nil, err
	}
	if gc {
		runtime.GC()
	}
	rt := memStats()
	st := &control.Status{
		IKESAs: []control.IKESA{},
		Counts: &control.Counts{IKESAs: c.IKESAs, Established: c.Established, ChildSAs: c.ChildSAs,
			IKESAsCreated: c.IKESAsCreated, ChildSAsCreated: c.ChildSAsCreated, LivenessChecks: c.LivenessChecks},
		HalfOpen:     half,
		PreauthBytes: preauth,
		Drops:        map[string]uint64{},
		Runtime:      &rt,
	}
	d.drops(st.Drops)
	return st, nil
}

// drops fills m with the IKE and datapath drop counters.
func (d *daemon) drops(m map[string]uint64) {
	maps.Copy(m, d.engine.Drops().Map())
	maps.Copy(m, d.dp.Drops().Map())
	if d.socks != nil {
		d.socks.drops(m)
	}
	if r, ok := d.deps.AAA.(interface{ Drops() uint64 }); ok {
		// RADIUS answers that did not verify (authenticators, source, identifier).
		m["radius_dropped"] = r.Drops()
	}
	d.mu.Lock()
	m["ike_queue_full"] = d.ikeDrops
	d.mu.Unlock()
}

// Up implements control.Handler: it returns once the IKE SA and its first Child SA are
// established, or with the reason they are not.
func (d *daemon) Up(ctx context.Context, name string) error {
	if err := d.resolveForUp(ctx, name); err != nil { // client.go
		return err
	}
	events := make(chan ike.Event, 1)
	var initErr error
	up := false
	err := d.run(ctx, func(now time.Time) {
		if d.cfg.Connection(name) == nil {
			initErr = control.UsageError("no connection named %q in %s", name, d.cfg.Path)
			return
		}
		// Idempotent: an established connection is up; one being established is
		// waited for.
		if id, est, ok := d.engine.ConnSA(name); ok {
			if est {
				up = true
			} else {
				d.waiters[id] = append(d.waiters[id], events)
			}
			return
		}
		id, acts, err := d.engine.Initiate(now, name)
		if err != nil {
			initErr = err
			return
		}
		d.waiters[id] = append(d.waiters[id], events)
		d.apply(acts)
	})
	if err != nil {
		return err
	}
	if initErr != nil {
		return initErr
	}
	if up {
		return nil
	}
	select {
	case ev := <-events:
		switch ev.Kind {
		case ike.EventEstablished:
			return nil
		default:
			return fmt.Errorf("connection %q: %s", name, ev.Reason)
		}
	case <-ctx.Done():
		return fmt.Errorf("connection %q: timeout waiting for the peer", name)
	}
}

// Down implements control.Handler: it deletes every IKE SA of the connection and waits
// for the peer to confirm (or for the retransmissions to give up).
func (d *daemon) Down(ctx context.Context, name string) error {
	var n int
	if err := d.run(ctx, func(now time.Time) {
		var acts []ike.Action
		n, acts = d.engine.DeleteConn(now, name)
		d.apply(acts)
	}); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("no IKE SA of connection %q", name)
	}
	for {
		var left bool
		if err := d.run(ctx, func(time.Time) { left = d.engine.HasConn(name) }); err != nil {
			return err
		}
		if !left {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New("timeout waiting for the peer to confirm the delete")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// switchWait is one `switch --wait` request waiting for an IKE SA to complete its
// switch: its channel, and the SA's id as the request knows it.
type switchWait struct {
	ch chan ike.Event
	id uint64
}

// Switch implements control.Switcher: `mobikevpn switch`.
// (control.SwitchRequest.Parse validated req.)
func (d *daemon) Switch(ctx context.Context, req control.Switch) (string, error) {
	sel := ike.SwitchSelector{SA: req.SA, Peer: req.Peer, From: req.From, All: req.All}
	w := &switchWaits{d: d, ctx: ctx}
	start := time.Now()
	var targets []ike.SwitchTarget
	var swErr error
	if err := d.run(ctx, func(now time.Time) {
		var acts []ike.Action
		targets, acts, swErr = d.engine.Switch(now, sel, req.To)
		if swErr != nil {
			return
		}
		if req.Wait > 0 {
			w.register(targets)
		}
		d.apply(acts)
	}); err != nil {
		// The function may still run: its waits are taken back after it.
		w.end()
		return "", err
	}
	if swErr != nil {
		var se *ike.SwitchError
		if errors.As(swErr, &se) && !se.Usage {
			// switch_limit or switch_hold said no for now: the operation failed.
			return "", swErr
		}
		return "", control.UsageError("%v", swErr)
	}
	var b strings.Builder
	pending := summarizeSwitch(&b, targets, req.To)
	if req.Wait <= 0 || len(pending) == 0 {
		return strings.TrimSpace(b.String()), nil
	}
	if err := w.wait(&b, pending, req.Wait, start); err != nil {
		return "", err
	}
	return strings.TrimSpace(b.String()), nil
}

// switchWaits is one `switch --wait` request's hold on the SAs it asked to move.
type switchWaits struct {
	d   *daemon
	ctx context.Context
	// events gets the EventSwitched of each SA asked to move. Its buffer holds one
	// per such SA (the engine goroutine hands each SA's completion to a waiter once,
	// then forgets the waiter), so that no completion is lost however many SAs move
	// at once, and delivering one never blocks the engine goroutine, even after this
	// request has ended. Set on the engine goroutine, by register.
	events chan ike.Event
	waited []uint64
}

// register waits for every target that was asked to move. Engine goroutine.
func (w *switchWaits) register(targets []ike.SwitchTarget) {
	for _, t := range targets {
		if t.RMobike && !t.Already && t.Refused == "" {
			w.waited = append(w.waited, t.ID)
		}
	}
	w.events = make(chan ike.Event, len(w.waited))
	for _, id := range w.waited {
		w.d.switchWaiters[id] = append(w.d.switchWaiters[id], switchWait{ch: w.events, id: id})
	}
}

// unregister takes this request's waits back. It runs on the engine goroutine, after
// register if that ran at all (d.cmds is in order).
func (w *switchWaits) unregister(time.Time) {
	if len(w.waited) == 0 {
		return
	}
	// A rekey may have moved the waits to another id: look at every SA's.
	for id, ws := range w.d.switchWaiters {
		ws = slices.DeleteFunc(ws, func(sw switchWait) bool { return sw.ch == w.events })
		if len(ws) == 0 {
			delete(w.d.switchWaiters, id)
		} else {
			w.d.switchWaiters[id] = ws
		}
	}
}

// end queues unregister and returns without waiting for it: neither the engine
// goroutine nor this request waits for the other. When ctx is done (the client left,
// the daemon stops) it only tries; waits it cannot take back stay until their SA
// moves, into a buffer that has room for them.
func (w *switchWaits) end() {
	select {
	case w.d.cmds <- w.unregister:
	case <-w.ctx.Done():
		select {
		case w.d.cmds <- w.unregister:
		default:
		}
	}
}

// wait writes a line to b for each pending SA as it moves, until all have or the
// wait runs out (an error naming those that did not move).
func (w *switchWaits) wait(b *strings.Builder, pending map[uint64]ike.SwitchTarget, limit time.Duration, start time.Time) error {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for len(pending) > 0 {
		select {
		case ev := <-w.events:
			if t, ok := pending[ev.IKESA]; ok {
				fmt.Fprintf(b, "moved: %s after %v\n", switchName(t), time.Since(start).Round(time.Millisecond))
				delete(pending, ev.IKESA)
			}
		case <-deadline.C:
			var left []string
			for _, t := range pending {
				left = append(left, switchName(t))
			}
			sort.Strings(left)
			// Only this request's waits: another request may wait for the same SAs.
			w.end()
			return fmt.Errorf("%sthe wait of %v ran out; not moved: %s", b.String(), limit, strings.Join(left, ", "))
		case <-w.ctx.Done():
			w.end()
			return w.ctx.Err()
		}
	}
	return nil
}

func switchName(t ike.SwitchTarget) string { return fmt.Sprintf("%s (SA #%d)", t.Peer, t.ID) }

// summarizeSwitch writes what the switch did to each target, a line per outcome, and
// returns the targets that were asked to move, by IKE SA id.
func summarizeSwitch(b *strings.Builder, targets []ike.SwitchTarget, to netip.Addr) map[uint64]ike.SwitchTarget {
	var asked, already, skipped, refused []string
	pending := map[uint64]ike.SwitchTarget{}
	for _, t := range targets {
		switch {
		case !t.RMobike:
			skipped = append(skipped, switchName(t))
		case t.Already:
			already = append(already, switchName(t))
		case t.Refused != "":
			refused = append(refused, switchName(t)+": "+t.Refused)
		default:
			asked = append(asked, switchName(t))
			pending[t.ID] = t
		}
	}
	if len(asked) > 0 {
		fmt.Fprintf(b, "asked to move to %s: %s\n", to, strings.Join(asked, ", "))
	}
	if len(already) > 0 {
		fmt.Fprintf(b, "already at %s: %s\n", to, strings.Join(already, ", "))
	}
	if len(skipped) > 0 {
		fmt.Fprintf(b, "skipped, no R-MOBIKE support: %s\n", strings.Join(skipped, ", "))
	}
	if len(refused) > 0 {
		fmt.Fprintf(b, "not asked: %s\n", strings.Join(refused, "; "))
	}
	return pending
}
