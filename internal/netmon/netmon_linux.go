package netmon

import (
	"errors"
	"sync"

	"github.com/vishvananda/netlink"
)

// rcvBuf is the receive buffer asked for each netlink socket (the kernel caps it at
// net.core.rmem_max): room for the burst of notifications that a change of many
// addresses brings, so that the kernel rarely has to drop any.
var rcvBuf = 1 << 20

// subscribe subscribes to netlink's address and route notifications. Should either
// socket fail (ENOBUFS: we read too slowly and the kernel dropped notifications), both
// are closed and the subscription ends with that error.
func subscribe(done <-chan struct{}, note func(routes bool)) (<-chan error, error) {
	stop := make(chan struct{}) // closes both sockets
	var stopOnce sync.Once
	closeStop := func() { stopOnce.Do(func() { close(stop) }) }
	var mu sync.Mutex
	var lastErr error
	onErr := func(err error) {
		mu.Lock()
		lastErr = err
		mu.Unlock()
	}
	addrs := make(chan netlink.AddrUpdate, 64)
	if err := netlink.AddrSubscribeWithOptions(addrs, stop, netlink.AddrSubscribeOptions{
		ErrorCallback: onErr, ReceiveBufferSize: rcvBuf,
	}); err != nil {
		closeStop()
		return nil, err
	}
	routes := make(chan netlink.RouteUpdate, 64)
	if err := netlink.RouteSubscribeWithOptions(routes, stop, netlink.RouteSubscribeOptions{
		ErrorCallback: onErr, ReceiveBufferSize: rcvBuf,
	}); err != nil {
		closeStop()
		go func() {
			for range addrs { // until its goroutine has ended
			}
		}()
		return nil, err
	}
	ended := make(chan error, 1)
	go func() {
		defer close(ended)
		// Read both channels until netlink closes them, so that its goroutines end.
		a, r := addrs, routes
		stopped := false // by done
		failed := false  // a socket failed first
		for a != nil || r != nil {
			select {
			case _, ok := <-a:
				if !ok {
					a = nil
					failed = failed || !stopped
					closeStop()
					continue
				}
				note(false)
			case _, ok := <-r:
				if !ok {
					r = nil
					failed = failed || !stopped
					closeStop()
					continue
				}
				note(true)
			case <-done:
				done = nil
				stopped = !failed
				closeStop()
			}
		}
		if failed {
			mu.Lock()
			err := lastErr
			mu.Unlock()
			if err == nil {
				err = errors.New("netlink closed the subscription")
			}
			ended <- err
		}
	}()
	return ended, nil
}
