package udp

import (
	"context"
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
