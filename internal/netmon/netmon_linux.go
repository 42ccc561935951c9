package netmon

import (
	"context"

	"github.com/vishvananda/netlink"
)

// subscribe feeds events with netlink address (false) and route (true) notifications.
func subscribe(ctx context.Context, events chan<- bool) error {
	done := make(chan struct{})
	go func() { <-ctx.Done(); close(done) }()
	addrs := make(chan netlink.AddrUpdate, 64)
	if err := netlink.AddrSubscribe(addrs, done); err != nil {
		return err
	}
	routes := make(chan netlink.RouteUpdate, 64)
	if err := netlink.RouteSubscribe(routes, done); err != nil {
		return err
	}
	send := func(r bool) {
		select {
		case events <- r:
		default: // a report is pending anyway
		}
	}
	go func() {
		for {
			select {
			case _, ok := <-addrs:
				if !ok {
					return
				}
				send(false)
			case _, ok := <-routes:
				if !ok {
					return
				}
				send(true)
			}
		}
	}()
	return nil
}
