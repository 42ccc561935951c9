// Package clock is the time that the IKE engine's driver runs on: an interface, so
// that the daemon runs on the host's clock and a test on one it advances itself
// (clocktest.Fake). The engine itself never reads a clock: it is handed the time.
package clock

import "time"

// Clock is a source of the time and of timers.
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// Timer is a Clock's timer. Reset and Stop leave no stale time in C (as time.Timer
// since Go 1.23).
type Timer interface {
	C() <-chan time.Time
	Reset(d time.Duration)
	Stop()
}

// System is the host's clock and timers.
type System struct{}

// Now implements Clock.
func (System) Now() time.Time { return time.Now() }

// NewTimer implements Clock.
func (System) NewTimer(d time.Duration) Timer { return systemTimer{time.NewTimer(d)} }

type systemTimer struct{ t *time.Timer }

func (t systemTimer) C() <-chan time.Time   { return t.t.C }
func (t systemTimer) Reset(d time.Duration) { t.t.Reset(d) }
func (t systemTimer) Stop()                 { t.t.Stop() }
