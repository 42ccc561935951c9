package ike

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/mobikevpn/mobikevpn/clock"
)

// Datagram is an IKE datagram on its way to the engine: Local is the address it
// arrived on, Remote the one it came from. For the NAT-T port, without the non-ESP
// marker.
type Datagram struct {
	Local, Remote netip.AddrPort
	Data          []byte
}

// Wake is a channel a Driver waits on besides its datagrams, commands and the engine's
// timer. When C delivers (or is closed), Do runs on the driver's goroutine with the
// time; an error from Do ends Run with it.
type Wake struct {
	C  <-chan struct{}
	Do func(now time.Time) error
}

// MaxWakes is how many Wakes a Driver waits on: they are cases of one select.
const MaxWakes = 4

// drainTick is how often Shutdown ticks the engine while it waits for the Deletes'
// answers (retransmissions).
const drainTick = 50 * time.Millisecond

// noDeadline is how long the driver's timer is set for when the engine has no timer.
const noDeadline = time.Hour

// A Driver runs an Engine on one goroutine: it feeds it the datagrams, commands and
// the clock, and hands every batch of actions the engine returns to Exec, which
// carries them out. The engine is not safe for concurrent use: everything that touches
// it runs on the driver's goroutine, through Commands.
//
// Run (or Step, for a caller with its own loop) waits on the inputs; HandleDatagram
// and Tick are its synchronous parts, for a harness that steps the engine itself on a
// fake clock; Shutdown deletes every IKE SA and waits for the peers' answers.
type Driver struct {
	Engine *Engine
	Clock  clock.Clock // the engine's time and the driver's timer: Step, Run, Shutdown need it
	// Exec carries out a batch of the engine's actions, in order.
	Exec func([]Action)
	// Datagrams are the IKE datagrams received; nil: none.
	Datagrams <-chan Datagram
	// Commands run on the driver's goroutine with the time: the way to call the
	// engine's other methods (Initiate, Status, ...) from elsewhere. A command passes
	// what the engine returns to Exec itself. nil: none.
	Commands <-chan func(now time.Time)
	// Wakes are further channels to wait on, at most MaxWakes (more: Step panics); one
	// with a nil C never fires.
	Wakes []Wake

	timer clock.Timer // the engine's next deadline; made by the first Step
}

// HandleDatagram hands dg to the engine at now and carries out what it returns.
func (d *Driver) HandleDatagram(now time.Time, dg Datagram) {
	d.Exec(d.Engine.HandleDatagram(now, dg.Local, dg.Remote, dg.Data))
}

// Tick runs the engine's timers due at now and carries out what they return.
func (d *Driver) Tick(now time.Time) {
	d.Exec(d.Engine.Tick(now))
}

// wait is how long from now until the engine's next deadline (an hour when it has
// none, 0 when it has passed).
func (d *Driver) wait() time.Duration {
	next, ok := d.Engine.NextDeadline()
	if !ok {
		return noDeadline
	}
	return max(next.Sub(d.Clock.Now()), 0)
}

// Step sets the timer to the engine's next deadline, waits for one input (a
// datagram, a command, the timer, a wake) and handles it. It returns ctx.Err() if ctx
// ended first, or the error of the Wake that fired.
func (d *Driver) Step(ctx context.Context) error {
	_, err := d.step(ctx)
	return err
}

// step is Step, and whether the error is ctx's.
func (d *Driver) step(ctx context.Context) (ctxDone bool, err error) {
	if d.timer == nil {
		d.timer = d.Clock.NewTimer(d.wait())
	} else {
		d.timer.Reset(d.wait())
	}
	if len(d.Wakes) > MaxWakes {
		panic(fmt.Sprintf("ike: Driver with %d wakes (at most %d)", len(d.Wakes), MaxWakes))
	}
	var w [MaxWakes]Wake
	copy(w[:], d.Wakes)
	var fired *Wake
	select {
	case <-ctx.Done():
		return true, ctx.Err()
	case dg := <-d.Datagrams:
		d.HandleDatagram(d.Clock.Now(), dg)
		return false, nil
	case f := <-d.Commands:
		f(d.Clock.Now())
		return false, nil
	case <-d.timer.C():
		d.Tick(d.Clock.Now())
		return false, nil
	case <-w[0].C:
		fired = &w[0]
	case <-w[1].C:
		fired = &w[1]
	case <-w[2].C:
		fired = &w[2]
	case <-w[3].C:
		fired = &w[3]
	}
	return false, fired.Do(d.Clock.Now())
}

// Run steps until ctx ends (it then returns nil) or a Wake's Do returns an error (it
// returns that error).
func (d *Driver) Run(ctx context.Context) error {
	for {
		if ctxDone, err := d.step(ctx); err != nil {
			if ctxDone {
				return nil
			}
			return err
		}
	}
}

// Shutdown deletes every IKE SA at its peer and waits for the answers: it hands the
// engine the datagrams that arrive, and ticks it every 50 ms for retransmissions,
// until no Delete is outstanding or grace has passed. Commands and wakes wait. Both
// waits are on timers' clock, which may be another than the engine's (a daemon on a
// fake clock still stops in real time). It reports whether every Delete was
// confirmed in time.
func (d *Driver) Shutdown(timers clock.Clock, grace time.Duration) bool {
	d.Exec(d.Engine.DeleteAll(d.Clock.Now()))
	deadline := timers.NewTimer(grace)
	defer deadline.Stop()
	tick := timers.NewTimer(drainTick)
	defer tick.Stop()
	for d.Engine.Deleting() {
		select {
		case dg := <-d.Datagrams:
			d.HandleDatagram(d.Clock.Now(), dg)
		case <-tick.C():
			d.Tick(d.Clock.Now())
			tick.Reset(drainTick)
		case <-deadline.C():
			return false
		}
	}
	return true
}

// Close stops the driver's timer.
func (d *Driver) Close() {
	if d.timer != nil {
		d.timer.Stop()
	}
}
