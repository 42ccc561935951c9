package udp

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"time"
)

// maxBackoff caps the pause after repeated read errors.
const maxBackoff = time.Second

// Backoff is the pause a reader (of a socket or a device) takes after errs consecutive
// read errors: none for the first few (a single bad packet must not stall the path),
// then growing by 10 ms per error up to a second (a failing socket must not spin). It
// waits that long or until ctx is done, and reports whether ctx is still live.
func Backoff(ctx context.Context, errs int) bool {
	const free = 3
	if errs <= free {
		return ctx.Err() == nil
	}
	t := time.NewTimer(min(time.Duration(errs-free)*10*time.Millisecond, maxBackoff))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// ReadErrors is what a reader loop (of a socket or a device) does after each read:
// carry on after a success; stop quietly when its context ended; stop with the error
// when the file is closed for good; else report the error and read again, pausing as
// Backoff says when errors repeat. The zero value is ready.
type ReadErrors struct {
	n int // consecutive errors
}

// After takes the error of the last read (nil: it succeeded). It reports whether to
// read again; when not, fatal is the error to stop with (nil: ctx ended). report is
// called with each error that is neither.
func (r *ReadErrors) After(ctx context.Context, err error, report func(error)) (again bool, fatal error) {
	if err == nil {
		r.n = 0
		return true, nil
	}
	if ctx.Err() != nil {
		return false, nil
	}
	if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) || errors.Is(err, io.EOF) {
		return false, err
	}
	report(err)
	r.n++
	return Backoff(ctx, r.n), nil
}
