package daemon

import (
	"log/slog"
	"net/netip"

	"github.com/mobikevpn/mobikevpn/tun"
)

// routeTable counts the users of each route and address the daemon put on its TUN
// device, so that one is added once and removed with its last user.
type routeTable struct {
	cfg    tun.Configurator
	dev    string
	log    *slog.Logger
	routes map[netip.Prefix]int
	addrs  map[netip.Prefix]int
}

func newRouteTable(cfg tun.Configurator, dev string, log *slog.Logger) *routeTable {
	return &routeTable{cfg: cfg, dev: dev, log: log, routes: make(map[netip.Prefix]int), addrs: make(map[netip.Prefix]int)}
}

func (r *routeTable) add(p netip.Prefix) {
	r.routes[p]++
	if r.routes[p] > 1 {
		return
	}
	if err := r.cfg.AddRoute(r.dev, p); err != nil {
		r.log.Warn("adding route", "prefix", p, "dev", r.dev, "err", err)
	}
}

func (r *routeTable) remove(p netip.Prefix) {
	if r.routes[p] == 0 {
		return
	}
	r.routes[p]--
	if r.routes[p] > 0 {
		return
	}
	delete(r.routes, p)
	if err := r.cfg.DelRoute(r.dev, p); err != nil {
		r.log.Warn("removing route", "prefix", p, "dev", r.dev, "err", err)
	}
}

func (r *routeTable) addAddress(p netip.Prefix) {
	r.addrs[p]++
	if r.addrs[p] > 1 {
		return
	}
	if err := r.cfg.AddAddress(r.dev, p); err != nil {
		r.log.Warn("adding address", "addr", p, "dev", r.dev, "err", err)
	}
}

func (r *routeTable) removeAddress(p netip.Prefix) {
	if r.addrs[p] == 0 {
		return
	}
	r.addrs[p]--
	if r.addrs[p] > 0 {
		return
	}
	delete(r.addrs, p)
	if err := r.cfg.DelAddress(r.dev, p); err != nil {
		r.log.Warn("removing address", "addr", p, "dev", r.dev, "err", err)
	}
}

// removeAll takes back every route and address still in the table.
func (r *routeTable) removeAll() {
	for p := range r.routes {
		r.routes[p] = 1
		r.remove(p)
	}
	for p := range r.addrs {
		r.addrs[p] = 1
		r.removeAddress(p)
	}
}
