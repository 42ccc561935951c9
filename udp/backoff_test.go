package udp

import (
	"context"
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
