//go:build !linux

package netmon

import "time"

// subscribe polls: without netlink, every few seconds counts as a possible change. It
// only ends with done.
func subscribe(done <-chan struct{}, note func(routes bool)) (<-chan error, error) {
	ended := make(chan error)
	go func() {
		defer close(ended)
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				note(true)
			}
		}
	}()
	return ended, nil
}
