package esp

import (
	"bytes"
	"github.com/mobikevpn/mobikevpn/udp"
	"io"
	"log/slog"
	"sync"
)

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newDebugLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// step runs one socket read through the receive path on the calling goroutine:
// read fills the messages of a batch and returns how many it filled.
func (w *inWorker) step(read func([]udp.Message) int) error {
	b := w.batches[0]
	for i := range b.msgs {
		m := &b.msgs[i]
		m.Buffer = m.Buffer[:cap(m.Buffer)]
		m.N, m.Truncated, m.Segment = 0, false, 0
	}
	w.process(b, read(b.msgs))
	w.writeOut(b)
	if e := w.werr.Load(); e != nil {
		return *e
	}
	return nil
}

// step runs one TUN read through the send path on the calling goroutine.
func (w *outWorker) step(read func(bufs [][]byte, sizes []int) int) {
	for i := range w.view {
		w.view[i] = w.ring[(w.start+i)%len(w.ring)]
	}
	n := read(w.view, w.sizes)
	w.process(n)
	w.hand(n)
	for w.pending.Load() > 0 { // no writer goroutine in tests: write here
		w.spans = append(w.spans[:0], <-w.ready)
		w.transmit()
		w.pending.Add(-1)
		w.avail += w.spans[0].n
	}
}
