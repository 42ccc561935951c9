// Package netmon watches the host's addresses and routes, so that MOBIKE can move SAs
// when they change (netlink events on Linux, polling elsewhere).
package netmon

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"time"
)

// Change is what the watcher reports: the host's usable addresses now (the TUN
// device's own excluded) and whether routes changed.
type Change struct {
	Addrs  []netip.Addr
	Routes bool
}

// settle coalesces bursts of events (an address change brings several).
const settle = 50 * time.Millisecond

// Addrs lists the host's addresses, without those of the interface named skip.
func Addrs(skip string) ([]netip.Addr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, ifc := range ifs {
		if ifc.Name == skip || ifc.Flags&net.FlagUp == 0 {
			continue
		}
		as, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range as {
			if pn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(pn.IP); ok {
					out = append(out, ip.Unmap())
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(out), nil
}

// Watch calls report with the current addresses at once, then after every change of
// addresses or routes, until ctx ends. skip names the interface whose addresses do not
// count (our TUN device: virtual IPs must not carry IKE).
func Watch(ctx context.Context, skip string, report func(Change)) error {
	events := make(chan bool, 64) // true: a route changed
	if err := subscribe(ctx, events); err != nil {
		return err
	}
	prev, err := Addrs(skip)
	if err != nil {
		return err
	}
	report(Change{Addrs: prev})
	for {
		var routes bool
		select {
		case <-ctx.Done():
			return nil
		case r := <-events:
			routes = r
		}
		// Coalesce the burst.
		t := time.NewTimer(settle)
	drain:
		for {
			select {
			case r := <-events:
				routes = routes || r
			case <-t.C:
				break drain
			case <-ctx.Done():
				t.Stop()
				return nil
			}
		}
		addrs, err := Addrs(skip)
		if err != nil {
			continue
		}
		if routes || !slices.Equal(addrs, prev) {
			prev = addrs
			report(Change{Addrs: addrs, Routes: routes})
		}
	}
}
