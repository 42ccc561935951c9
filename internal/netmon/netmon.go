// Package netmon watches the host's addresses and routes, so that MOBIKE can move SAs
// when they change (netlink events on Linux, polling elsewhere).
package netmon

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Change is what the watcher reports: the host's usable addresses now (the TUN
// device's own excluded) and whether routes changed (or may have: after notifications
// were lost).
type Change struct {
	Addrs  []netip.Addr
	Routes bool
}

// settle coalesces bursts of events (an address change brings several).
const settle = 50 * time.Millisecond

// Retrying a subscription that cannot be made again: from resubscribeMin, doubling up
// to resubscribeMax.
const (
	resubscribeMin = 100 * time.Millisecond
	resubscribeMax = 30 * time.Second
)

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

// subscribeFunc subscribes to the system's notifications of address and route
// changes: note(false) for an address, note(true) for a route. The subscription ends
// when done is closed, or when it fails (the kernel dropped notifications, ...); then
// ended gets the error (nil after done) and is closed, and note is not called again.
type subscribeFunc func(done <-chan struct{}, note func(routes bool)) (ended <-chan error, err error)

// Watch calls report with the current addresses at once, then after every change of
// addresses or routes, until ctx ends. skip names the interface whose addresses do not
// count (our TUN device: virtual IPs must not carry IKE). It logs to slog's default
// logger; WatchLog takes another.
func Watch(ctx context.Context, skip string, report func(Change)) error {
	return WatchLog(ctx, skip, slog.Default(), report)
}

// WatchLog is Watch with a logger. When the notifications stop (on Linux: the netlink
// socket overflowed, ENOBUFS, and the kernel dropped some) it subscribes again, with a
// warning, and then reports the full current list with Routes set, changed or not, so
// that nothing that changed meanwhile is missed. An error is returned only when the
// first subscription or the first list fails.
func WatchLog(ctx context.Context, skip string, log *slog.Logger, report func(Change)) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &watcher{skip: skip, log: log, subscribe: subscribe, addrs: Addrs, retryMin: resubscribeMin, retryMax: resubscribeMax}
	return w.run(ctx, report)
}

// watcher is Watch with what it depends on made replaceable for tests.
type watcher struct {
	skip      string
	log       *slog.Logger
	subscribe subscribeFunc
	addrs     func(skip string) ([]netip.Addr, error)
	// retryMin and retryMax bound the wait before another try to subscribe again.
	retryMin, retryMax time.Duration
}

// pending gathers what the subscription noticed until the watcher looks.
type pending struct {
	mu             sync.Mutex
	routes, resync bool
	wake           chan struct{} // capacity 1: something was noted
}

func (p *pending) mark(routes, resync bool) {
	p.mu.Lock()
	p.routes = p.routes || routes
	p.resync = p.resync || resync
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default: // a look is due anyway
	}
}

func (p *pending) note(routes bool) { p.mark(routes, false) }

func (p *pending) take() (routes, resync bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	routes, resync = p.routes, p.resync
	p.routes, p.resync = false, false
	return routes, resync
}

func (w *watcher) run(ctx context.Context, report func(Change)) error {
	p := &pending{wake: make(chan struct{}, 1)}
	ended, err := w.subscribe(ctx.Done(), p.note)
	if err != nil {
		return err
	}
	prev, err := w.addrs(w.skip)
	if err != nil {
		return err
	}
	report(Change{Addrs: prev})
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	var delay time.Duration
	// resubscribe subscribes again; once that worked, the next look reports the
	// full list. The list is read after the new subscription is in place, so a
	// change is either in that list or notified afterwards.
	resubscribe := func() {
		e, err := w.subscribe(ctx.Done(), p.note)
		if err != nil {
			delay = min(max(2*delay, w.retryMin), w.retryMax)
			w.log.Warn("netmon: cannot subscribe to address and route changes; MOBIKE does not notice them until this works", "err", err, "retry_in", delay)
			retry.Reset(delay)
			return
		}
		delay = 0
		ended = e
		w.log.Info("netmon: subscribed again to address and route changes; reporting the current addresses")
		p.mark(true, true)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-ended:
			ended = nil
			if ctx.Err() != nil {
				return nil
			}
			w.log.Warn("netmon: notifications of address and route changes stopped, some may be lost; subscribing again", "err", err)
			resubscribe()
			continue
		case <-retry.C:
			resubscribe()
			continue
		case <-p.wake:
		}
		// Coalesce the burst.
		t := time.NewTimer(settle)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		}
		routes, resync := p.take()
		addrs, err := w.addrs(w.skip)
		if err != nil {
			w.log.Debug("netmon: listing the addresses", "err", err)
			p.mark(routes, resync) // look again after the next settle
			continue
		}
		if routes || resync || !slices.Equal(addrs, prev) {
			prev = addrs
			report(Change{Addrs: addrs, Routes: routes || resync})
		}
	}
}
