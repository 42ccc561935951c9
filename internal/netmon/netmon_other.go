//go:build !linux

package netmon

import (
	"context"
	"time"
)

// subscribe polls: without netlink, every few seconds counts as a possible change.
func subscribe(ctx context.Context, events chan<- bool) error {
	go func() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				select {
				case events <- true:
				default:
				}
			}
		}
	}()
	return nil
}
