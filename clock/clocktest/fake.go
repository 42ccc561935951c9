// Package clocktest is a clock.Clock for tests that moves only when the test advances
// it: days of timers (rekeys, liveness checks, retransmissions) run in milliseconds and
// the same way every time.
package clocktest

import (
	"sync"
	"time"

	"github.com/mobikevpn/mobikevpn/clock"
)

// Fake is a clock.Clock that stands still until Advance. It is safe for concurrent use.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	timers []*timer
}

// New returns a Fake clock at start.
func New(start time.Time) *Fake { return &Fake{now: start} }

type timer struct {
	clock  *Fake
	c      chan time.Time
	at     time.Time
	active bool
}

// Now implements clock.Clock.
func (c *Fake) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer implements clock.Clock.
func (c *Fake) NewTimer(d time.Duration) clock.Timer {
	t := &timer{clock: c, c: make(chan time.Time, 1)}
	c.mu.Lock()
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	t.Reset(d)
	return t
}

// Advance moves the time on by d and fires the timers that are due (each delivers the
// new time once, as a time.Timer that fired late).
func (c *Fake) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.fire()
	c.mu.Unlock()
}

func (c *Fake) fire() {
	for _, t := range c.timers {
		if t.active && !t.at.After(c.now) {
			t.active = false
			select {
			case t.c <- c.now:
			default:
			}
		}
	}
}

func (t *timer) C() <-chan time.Time { return t.c }

func (t *timer) Reset(d time.Duration) {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	t.drain()
	t.at, t.active = t.clock.now.Add(d), true
	t.clock.fire()
}

func (t *timer) Stop() {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	t.active = false
	t.drain()
}

// drain takes a time that was delivered but not received: none is stale after Reset
// or Stop, as with time.Timer.
func (t *timer) drain() {
	select {
	case <-t.c:
	default:
	}
}
