package udp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	// The first errors cost nothing: a single bad packet must not stall a reader.
	start := time.Now()
	for errs := 1; errs <= 3; errs++ {
		if !Backoff(ctx, errs) {
			t.Fatalf("Backoff(%d) with a live context reported it done", errs)
		}
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("three free errors took %v", d)
	}
	// Then a pause that grows (the fourth error: 10 ms).
	start = time.Now()
	if !Backoff(ctx, 4) {
		t.Fatal("Backoff(4) reported the context done")
	}
	if d := time.Since(start); d < 10*time.Millisecond {
		t.Errorf("Backoff(4) paused %v, want at least 10ms", d)
	}
	// A cancelled context ends any pause at once, even the longest.
	cancel()
	start = time.Now()
	if Backoff(ctx, 1000) {
		t.Error("Backoff with a cancelled context reported it live")
	}
	if Backoff(ctx, 1) {
		t.Error("Backoff(1) with a cancelled context reported it live")
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("cancelled Backoff took %v", d)
	}
}

func TestReadErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var r ReadErrors
	var reported []error
	report := func(err error) { reported = append(reported, err) }
	transient := errors.New("connection refused")
	if again, fatal := r.After(ctx, nil, report); !again || fatal != nil {
		t.Fatal("a successful read stops the reader")
	}
	for range 3 {
		if again, fatal := r.After(ctx, transient, report); !again || fatal != nil {
			t.Fatalf("a transient error stops the reader: %v", fatal)
		}
	}
	if len(reported) != 3 || r.n != 3 {
		t.Fatalf("%d errors reported, %d counted", len(reported), r.n)
	}
	r.After(ctx, nil, report)
	if r.n != 0 {
		t.Error("a success does not reset the count")
	}
	for _, err := range []error{net.ErrClosed, fmt.Errorf("read: %w", os.ErrClosed), io.EOF} {
		if again, fatal := r.After(ctx, err, report); again || !errors.Is(fatal, err) {
			t.Errorf("%v: again %v, fatal %v", err, again, fatal)
		}
	}
	cancel()
	if again, fatal := r.After(ctx, transient, report); again || fatal != nil || len(reported) != 3 {
		t.Errorf("after the context ended: again %v, fatal %v, %d reported", again, fatal, len(reported))
	}
}
