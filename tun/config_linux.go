package tun

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NetlinkConfigurator configures devices over rtnetlink. Its netlink sockets belong to
// the network namespace the constructor ran in, whichever thread calls it later.
type NetlinkConfigurator struct {
	mu      sync.Mutex
	h       *netlink.Handle
	changes []change
	// policy, when set, puts the routes in their own table (policy_linux.go); rules
	// are the address families whose rule is installed.
	policy *PolicyRouting
	rules  []int
}

func newNativeConfigurator() (Configurator, error) { return NewNetlinkConfigurator() }

// NewNetlinkConfigurator opens a netlink handle in the current network namespace.
func NewNetlinkConfigurator() (*NetlinkConfigurator, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("tun: netlink: %w", err)
	}
	return &NetlinkConfigurator{h: h}, nil
}

func (c *NetlinkConfigurator) link(dev string) (netlink.Link, error) {
	if c.h == nil {
		return nil, errClosed
	}
	l, err := c.h.LinkByName(dev)
	if err != nil {
		return nil, fmt.Errorf("tun: device %q: %w", dev, err)
	}
	return l, nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func checkPrefix(p netip.Prefix) error {
	if !p.IsValid() || p.Addr().Zone() != "" || p.Addr().Is4In6() {
		return fmt.Errorf("tun: invalid prefix %v", p)
	}
	return nil
}

// Up sets dev up.
func (c *NetlinkConfigurator) Up(dev string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, err := c.link(dev)
	if err != nil {
		return err
	}
	if err := c.h.LinkSetUp(l); err != nil {
		return fmt.Errorf("tun: set %s up: %w", dev, err)
	}
	return nil
}

func addrOf(p netip.Prefix) *netlink.Addr {
	// No duplicate address detection: the peer across a TUN is the tunnel itself.
	return &netlink.Addr{IPNet: ipNet(p), Flags: unix.IFA_F_NODAD}
}

func routeOf(l netlink.Link, p netip.Prefix, table int) *netlink.Route {
	return &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipNet(p), Scope: netlink.SCOPE_LINK, Table: table}
}

// AddAddress assigns p to dev.
func (c *NetlinkConfigurator) AddAddress(dev string, p netip.Prefix) error {
	if err := checkPrefix(p); err != nil {
		return err
	}
	return c.add(change{dev: dev, p: p}, func(l netlink.Link) error { return c.h.AddrAdd(l, addrOf(p)) })
}

// AddRoute routes p (masked to its prefix) through dev.
func (c *NetlinkConfigurator) AddRoute(dev string, p netip.Prefix) error {
	if err := checkPrefix(p); err != nil {
		return err
	}
	p = p.Masked()
	return c.add(change{route: true, dev: dev, p: p}, func(l netlink.Link) error {
		if err := c.h.RouteAdd(routeOf(l, p, c.table())); err != nil {
			return err
		}
		fam := unix.AF_INET6
		if p.Addr().Is4() {
			fam = unix.AF_INET
		}
		return c.ensureRule(fam)
	})
}

func (c *NetlinkConfigurator) add(ch change, do func(netlink.Link) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, err := c.link(ch.dev)
	if err != nil {
		return err
	}
	if slices.Contains(c.changes, ch) {
		return nil
	}
	switch err := do(l); {
	case errors.Is(err, unix.EEXIST):
		// Someone else's: fine, but not ours to remove.
		return nil
	case err != nil:
		return fmt.Errorf("tun: add %v: %w", ch, err)
	}
	c.changes = append(c.changes, ch)
	return nil
}

// DelAddress removes p from dev if this Configurator added it.
func (c *NetlinkConfigurator) DelAddress(dev string, p netip.Prefix) error {
	return c.del(change{dev: dev, p: p})
}

// DelRoute removes the route p through dev if this Configurator added it.
func (c *NetlinkConfigurator) DelRoute(dev string, p netip.Prefix) error {
	return c.del(change{route: true, dev: dev, p: p.Masked()})
}

func (c *NetlinkConfigurator) del(ch change) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.Index(c.changes, ch)
	if i < 0 {
		return nil
	}
	if err := c.undo(ch); err != nil {
		return err
	}
	c.changes = slices.Delete(c.changes, i, i+1)
	return nil
}

// undo removes ch. Something already gone (the device closed, the address removed by
// hand) is success.
func (c *NetlinkConfigurator) undo(ch change) error {
	if c.h == nil {
		return errClosed
	}
	l, err := c.h.LinkByName(ch.dev)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if errors.As(err, &notFound) || errors.Is(err, unix.ENODEV) {
			return nil
		}
		return fmt.Errorf("tun: remove %v: %w", ch, err)
	}
	if ch.route {
		err = c.h.RouteDel(routeOf(l, ch.p, c.table()))
	} else {
		err = c.h.AddrDel(l, addrOf(ch.p))
	}
	if err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("tun: remove %v: %w", ch, err)
	}
	return nil
}

// Close removes every address and route this Configurator added, newest first, and
// closes the netlink handle. It tries them all and joins the errors.
func (c *NetlinkConfigurator) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.h == nil {
		return nil
	}
	var errs []error
	for _, ch := range slices.Backward(c.changes) {
		errs = append(errs, c.undo(ch))
	}
	c.changes = nil
	if c.policy != nil {
		errs = append(errs, c.removeRules())
	}
	c.h.Close()
	c.h = nil
	return errors.Join(errs...)
}
