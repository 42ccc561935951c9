package netmon

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if os.Getenv("NETMON_CHILD") != "" {
		childWatch()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fakeSystem stands for the kernel: the addresses, and the subscriptions made.
type fakeSystem struct {
	mu    sync.Mutex
	addrs []netip.Addr
	subs  chan *fakeSub // each subscription made
	fail  int           // how many subscriptions to refuse next
}

type fakeSub struct {
	done  <-chan struct{}
	note  func(routes bool)
	ended chan error
}

func (s *fakeSystem) subscribe(done <-chan struct{}, note func(bool)) (<-chan error, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail > 0 {
		s.fail--
		return nil, errors.New("too many open files")
	}
	sub := &fakeSub{done: done, note: note, ended: make(chan error, 1)}
	s.subs <- sub
	return sub.ended, nil
}

func (s *fakeSystem) list(skip string) ([]netip.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.addrs), nil
}

func (s *fakeSystem) set(addrs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addrs = nil
	for _, a := range addrs {
		s.addrs = append(s.addrs, netip.MustParseAddr(a))
	}
}

// syncBuffer is a log destination for a test.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestWatchResubscribes: when the subscription ends (as netlink's does on ENOBUFS),
// the watcher subscribes again, with a warning, and reports the full current list,
// even an unchanged one, with Routes set; a subscription that cannot be made again is
// retried.
func TestWatchResubscribes(t *testing.T) {
	sys := &fakeSystem{subs: make(chan *fakeSub, 16)}
	sys.set("192.0.2.10")
	var logs syncBuffer
	w := &watcher{skip: "mvpn0", log: slog.New(slog.NewTextHandler(&logs, nil)), subscribe: sys.subscribe, addrs: sys.list,
		retryMin: time.Millisecond, retryMax: time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	reports := make(chan Change, 16)
	ran := make(chan error, 1)
	go func() { ran <- w.run(ctx, func(c Change) { reports <- c }) }()
	defer func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	next := func(what string) Change {
		t.Helper()
		select {
		case c := <-reports:
			return c
		case <-time.After(time.Minute):
			t.Fatalf("no report: %s", what)
		}
		return Change{}
	}
	want := func(c Change, routes bool, addrs ...string) {
		t.Helper()
		var got []string
		for _, a := range c.Addrs {
			got = append(got, a.String())
		}
		if !slices.Equal(got, addrs) || c.Routes != routes {
			t.Fatalf("report %v routes=%v, want %v routes=%v", got, c.Routes, addrs, routes)
		}
	}
	newSub := func(what string) *fakeSub {
		t.Helper()
		select {
		case s := <-sys.subs:
			return s
		case <-time.After(time.Minute):
			t.Fatalf("no subscription: %s", what)
		}
		return nil
	}

	sub := newSub("the first")
	want(next("the first"), false, "192.0.2.10")
	sys.set("192.0.2.10", "198.51.100.7")
	sub.note(false)
	want(next("a notified change"), false, "192.0.2.10", "198.51.100.7")

	// A change whose notification is lost, then the subscription fails.
	sys.set("198.51.100.7", "203.0.113.5")
	sub.ended <- errors.New("Receive failed: no buffer space available")
	close(sub.ended)
	sub = newSub("after the first failure")
	want(next("after the first failure"), true, "198.51.100.7", "203.0.113.5")
	if !strings.Contains(logs.String(), "subscribing again") || !strings.Contains(logs.String(), "no buffer space") {
		t.Errorf("the failure was not logged: %s", logs.String())
	}

	// Fails again, nothing changed: the list is reported all the same.
	sys.mu.Lock()
	sys.fail = 2 // and the next two tries to subscribe fail
	sys.mu.Unlock()
	sub.ended <- errors.New("Receive failed: no buffer space available")
	close(sub.ended)
	sub = newSub("after the retries")
	want(next("after the retries"), true, "198.51.100.7", "203.0.113.5")
	if !strings.Contains(logs.String(), "too many open files") {
		t.Errorf("the failed tries were not logged: %s", logs.String())
	}

	// The new subscription works.
	sys.set("203.0.113.5")
	sub.note(false)
	want(next("a change after the new subscription"), false, "203.0.113.5")
	sub.note(true)
	want(next("a route change"), true, "203.0.113.5")
}

// TestWatchEndsWithContext: no new subscription once ctx is done, even if the
// subscription ends at the same time.
func TestWatchEndsWithContext(t *testing.T) {
	sys := &fakeSystem{subs: make(chan *fakeSub, 16)}
	sys.set("192.0.2.10")
	w := &watcher{log: slog.New(slog.DiscardHandler), subscribe: sys.subscribe, addrs: sys.list, retryMin: time.Millisecond, retryMax: time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- w.run(ctx, func(Change) {}) }()
	sub := <-sys.subs
	cancel()
	<-sub.done
	close(sub.ended)
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	if len(sys.subs) != 0 {
		t.Error("subscribed again after ctx was done")
	}
}
