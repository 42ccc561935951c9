package clocktest

import (
	"testing"
	"time"
)

func TestFake(t *testing.T) {
	start := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	c := New(start)
	a, b := c.NewTimer(time.Second), c.NewTimer(3*time.Second)
	c.Advance(999 * time.Millisecond)
	select {
	case <-a.C():
		t.Fatal("a timer fired early")
	default:
	}
	c.Advance(time.Millisecond)
	if got := <-a.C(); !got.Equal(start.Add(time.Second)) {
		t.Errorf("a fired at %v", got)
	}
	c.Advance(5 * time.Second) // b fires late, once, with the time it was noticed
	if got := <-b.C(); !got.Equal(start.Add(6 * time.Second)) {
		t.Errorf("b fired at %v", got)
	}
	select {
	case <-b.C():
		t.Error("b fired twice")
	default:
	}
	// Fired but not received: Reset and Stop leave no stale time.
	a.Reset(time.Second)
	c.Advance(time.Second)
	a.Reset(time.Minute)
	c.Advance(time.Second)
	select {
	case <-a.C():
		t.Error("stale time after Reset")
	default:
	}
	b.Reset(0)
	b.Stop()
	select {
	case <-b.C():
		t.Error("stale time after Stop")
	default:
	}
	if !c.Now().Equal(start.Add(8 * time.Second)) {
		t.Errorf("now %v", c.Now())
	}
}
