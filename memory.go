package mobikevpn

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"

	"github.com/mobikevpn/mobikevpn/internal/config"
	"github.com/mobikevpn/mobikevpn/internal/daemon"
	"github.com/mobikevpn/mobikevpn/internal/netmon"
	"github.com/mobikevpn/mobikevpn/tun"
	"github.com/mobikevpn/mobikevpn/udp/memnet"
)

// MemNetwork is an in-memory network of hosts: datagrams between their addresses are
// delivered in memory, nothing touches the system. VPNs run on its hosts with
// Options.Host, each with its own TUN device (tun/memtun).
type MemNetwork struct{ n *memnet.Network }

// NewMemNetwork returns an empty network.
func NewMemNetwork() *MemNetwork { return &MemNetwork{memnet.New()} }

// Host adds a host with these addresses.
func (n *MemNetwork) Host(addrs ...netip.Addr) *MemHost {
	return &MemHost{h: n.n.Host(addrs...)}
}

// MemHost is a host of a MemNetwork. A VPN on it sees its addresses come and go
// (MOBIKE follows them).
type MemHost struct {
	h    *memnet.Host
	mu   sync.Mutex
	subs []chan struct{} // the running VPNs' address watchers
}

// AddAddr gives the host another address.
func (h *MemHost) AddAddr(a netip.Addr) error {
	if err := h.h.AddAddr(a); err != nil {
		return err
	}
	h.changed()
	return nil
}

// RemoveAddr takes an address of the host away.
func (h *MemHost) RemoveAddr(a netip.Addr) error {
	if err := h.h.RemoveAddr(a); err != nil {
		return err
	}
	h.changed()
	return nil
}

// Addrs are the host's addresses.
func (h *MemHost) Addrs() []netip.Addr { return h.h.Addrs() }

func (h *MemHost) changed() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.subs {
		select {
		case c <- struct{}{}:
		default: // one pending report covers this change too
		}
	}
}

func (h *MemHost) subscribe() (<-chan struct{}, func()) {
	c := make(chan struct{}, 1)
	h.mu.Lock()
	h.subs = append(h.subs, c)
	h.mu.Unlock()
	return c, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		for i, s := range h.subs {
			if s == c {
				h.subs = append(h.subs[:i], h.subs[i+1:]...)
				break
			}
		}
	}
}

// deps are the parts a VPN runs on in memory: the host's sockets on the configured
// ports, dev, and routing answers from the host's addresses.
func (h *MemHost) deps(cfg *config.Config, dev tun.Device) (daemon.Deps, error) {
	var deps daemon.Deps
	var err error
	if deps.IKEConns, err = h.h.Listen(cfg.Ports.IKE); err != nil {
		return daemon.Deps{}, err
	}
	if deps.NATTConns, err = h.h.Listen(cfg.Ports.NATT); err != nil {
		closeConns(deps)
		return daemon.Deps{}, err
	}
	deps.TUN = dev
	deps.Net = &memConfigurator{}
	deps.SourceAddr = func(remote netip.Addr) (netip.Addr, error) {
		for _, a := range h.Addrs() {
			if a.Is4() == remote.Is4() {
				return a, nil
			}
		}
		return netip.Addr{}, errors.New("no address of the family")
	}
	deps.Reachable = func(remote netip.Addr) []netip.Addr {
		var out []netip.Addr
		for _, a := range h.Addrs() {
			if a.Is4() == remote.Is4() {
				out = append(out, a)
			}
		}
		return out
	}
	deps.Watch = func(ctx context.Context, report func(netmon.Change)) error {
		changes, unsubscribe := h.subscribe()
		defer unsubscribe()
		report(netmon.Change{Addrs: h.Addrs()})
		for {
			select {
			case <-changes:
				report(netmon.Change{Addrs: h.Addrs()})
			case <-ctx.Done():
				return nil
			}
		}
	}
	return deps, nil
}

// closeConns closes the sockets of deps.
func closeConns(deps daemon.Deps) {
	for _, c := range slices.Concat(deps.IKEConns, deps.NATTConns) {
		c.Close()
	}
}

// memConfigurator is the address and route configurator of an in-memory device:
// there is no system to tell, the device takes whatever is written to it.
type memConfigurator struct{}

func (memConfigurator) Up(string) error                       { return nil }
func (memConfigurator) AddAddress(string, netip.Prefix) error { return nil }
func (memConfigurator) AddRoute(string, netip.Prefix) error   { return nil }
func (memConfigurator) DelAddress(string, netip.Prefix) error { return nil }
func (memConfigurator) DelRoute(string, netip.Prefix) error   { return nil }
func (memConfigurator) Close() error                          { return nil }
