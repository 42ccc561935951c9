package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/mobikevpn/mobikevpn/ike"
	"github.com/mobikevpn/mobikevpn/internal/config"
)

// A client's parts of the host (issue 15): the DNS servers its gateways assign, the
// kill switch, and the host names of its gateways. The system's implementations are
// given in Deps; the daemon decides what they do.

// HostDNS configures DNS servers on the host while SAs that assigned them are up
// (internal/hostdns, or the updown hook).
type HostDNS interface {
	// Apply configures servers (all of them, replacing what was applied) for the TUN
	// device dev, whose virtual IPs are vips; routeAll: the tunnel is a full tunnel.
	Apply(dev string, servers, vips []netip.Addr, routeAll bool) error
	// Revert restores the host's own configuration.
	Revert() error
}

// KillSwitch keeps traffic toward the tunnel's destinations off the underlay
// (internal/killswitch).
type KillSwitch interface {
	// Block lets nothing toward prefixes leave but through dev (and the daemon's
	// own IKE/ESP); linkSetup also lets DHCP and neighbour discovery out.
	Block(dev string, prefixes []netip.Prefix, linkSetup bool) error
	// Remove takes the rules away.
	Remove() error
}

// resolveTimeout bounds one resolution of a gateway's host names.
const resolveTimeout = 10 * time.Second

// clientHost is the daemon's state of the host's DNS and kill switch.
type clientHost struct {
	dns     map[uint64][]netip.Addr // assigned DNS servers by IKE SA (dns: apply)
	vips    map[uint64][]netip.Addr // our virtual IPs by IKE SA
	applied []netip.Addr            // the servers applied now
	killOn  bool
	tasks   sync.WaitGroup // background work under way (background): resolutions, RADIUS exchanges
	stop    context.CancelFunc
	ctx     context.Context
}

// fullTunnel reports whether a client connection of cfg routes everything (a remote
// selector of /0).
func fullTunnel(cfg *config.Config, only func(*config.Connection) bool) (v4, v6 bool) {
	for _, c := range cfg.Connections {
		if !c.Initiator || (only != nil && !only(c)) {
			continue
		}
		for _, p := range remotePrefixes(c) {
			if p.Bits() == 0 {
				v4, v6 = v4 || p.Addr().Is4(), v6 || p.Addr().Is6()
			}
		}
	}
	return v4, v6
}

// remotePrefixes are the prefixes of c's children's remote selectors (dynamic ones,
// the gateway's own address, left out).
func remotePrefixes(c *config.Connection) []netip.Prefix {
	var out []netip.Prefix
	for _, ch := range c.Children {
		for _, ts := range ch.RemoteTS {
			if ts.Dynamic {
				continue
			}
			out = append(out, ts.Selector.Prefixes()...)
		}
	}
	return out
}

// killSwitchPrefixes is what the kill switch blocks for cfg: the remote selectors of
// its kill_switch connections, both whole families once one is a full tunnel (a full
// tunnel's traveller must not leak IPv6 either), and whether DHCP and neighbour
// discovery must pass (a full tunnel: the host has to get its network back).
func killSwitchPrefixes(cfg *config.Config) ([]netip.Prefix, bool) {
	ks := func(c *config.Connection) bool { return c.KillSwitch }
	if v4, v6 := fullTunnel(cfg, ks); v4 || v6 {
		return []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}, true
	}
	var out []netip.Prefix
	for _, c := range cfg.Connections {
		if c.Initiator && c.KillSwitch {
			for _, p := range remotePrefixes(c) {
				if !slices.Contains(out, p.Masked()) {
					out = append(out, p.Masked())
				}
			}
		}
	}
	return out, false
}

// startClient sets the kill switch up before any connection starts; the returned
// function undoes the host's changes (kill switch, DNS) once the SAs are gone.
func (d *daemon) startClient() (func(), error) {
	h := &d.client
	h.ctx, h.stop = context.WithCancel(context.Background())
	if ks := d.deps.KillSwitch; ks != nil {
		if prefixes, link := killSwitchPrefixes(d.cfg); len(prefixes) > 0 {
			if err := ks.Block(d.devNm, prefixes, link); err != nil {
				return nil, fmt.Errorf("kill switch: %w", err)
			}
			h.killOn = true
			d.log.Info("kill switch on: nothing toward the tunnel's destinations leaves but through the tunnel", "prefixes", prefixes)
		} else if err := ks.Remove(); err != nil { // a killed daemon's rules, if any
			d.log.Warn("removing an old kill switch", "err", err)
		}
	}
	return func() {
		h.stop()
		h.tasks.Wait()
		if dns := d.deps.DNS; dns != nil && len(h.applied) > 0 {
			if err := dns.Revert(); err != nil {
				d.log.Warn("restoring the host's DNS", "err", err)
			}
			h.applied = nil
		}
		if h.killOn {
			if err := d.deps.KillSwitch.Remove(); err != nil {
				d.log.Warn("removing the kill switch", "err", err)
			}
		}
	}, nil
}

// resolveHosts resolves the host names of a connection (the engine's Resolve) in the
// background and hands the answer to the engine.
func (d *daemon) resolveHosts(a ike.Resolve) {
	h := &d.client
	if d.deps.LookupHost == nil || h.ctx == nil {
		d.apply(d.engine.Resolved(d.clock.Now(), a.Conn, nil, errors.New("no resolver")))
		return
	}
	d.background(func(ctx context.Context) func(time.Time) {
		found, err := d.lookupAll(ctx, a.Conn, a.Hosts)
		d.log.Info("resolved the gateway's host names", "conn", a.Conn, "addrs", found, "err", err)
		return func(now time.Time) { d.apply(d.engine.Resolved(now, a.Conn, found, err)) }
	})
}

// background runs work on a goroutine of its own (counted until the client's host
// changes are undone) and hands the engine command it returns to the engine
// goroutine, unless the daemon stops first.
func (d *daemon) background(work func(ctx context.Context) func(now time.Time)) {
	h := &d.client
	h.tasks.Add(1)
	go func() {
		defer h.tasks.Done()
		cmd := work(h.ctx)
		select {
		case d.cmds <- cmd:
		case <-h.ctx.Done():
		}
	}()
}

// clientVIPs follows our virtual IPs and the DNS servers assigned with them.
func (d *daemon) clientVIPs(a ike.VirtualIPs) {
	h := &d.client
	if h.dns == nil {
		h.dns, h.vips = make(map[uint64][]netip.Addr), make(map[uint64][]netip.Addr)
	}
	if a.Remove {
		delete(h.dns, a.IKESA)
		delete(h.vips, a.IKESA)
	} else {
		h.vips[a.IKESA] = a.Addrs
		if c := d.cfg.Connection(a.Conn); len(a.DNS) > 0 && c != nil && c.DNS == "apply" {
			h.dns[a.IKESA] = a.DNS
		} else if len(a.DNS) > 0 {
			d.log.Info("the peer assigned DNS servers; not applied (dns: ignore)", "dns", a.DNS)
		}
	}
	d.applyDNS()
}

// applyDNS configures the union of the assigned DNS servers, or reverts when none is
// left.
func (d *daemon) applyDNS() {
	h, dns := &d.client, d.deps.DNS
	var servers, vips []netip.Addr
	for _, id := range slices.Sorted(maps.Keys(h.dns)) {
		for _, s := range h.dns[id] {
			if !slices.Contains(servers, s) {
				servers = append(servers, s)
			}
		}
		vips = append(vips, h.vips[id]...)
	}
	if slices.Equal(servers, h.applied) {
		return
	}
	if dns == nil {
		if len(servers) > 0 {
			d.log.Info("the peer assigned DNS servers; configure them with the updown hook or the system's resolver", "dns", servers)
		}
		h.applied = servers
		return
	}
	if len(servers) == 0 {
		if err := dns.Revert(); err != nil {
			d.log.Warn("restoring the host's DNS", "err", err)
		}
		d.log.Info("DNS servers of the tunnel removed")
		h.applied = nil
		return
	}
	v4, v6 := fullTunnel(d.cfg, nil)
	if err := dns.Apply(d.devNm, servers, vips, v4 || v6); err != nil {
		d.log.Warn("configuring the tunnel's DNS servers", "dns", servers, "err", err)
		return
	}
	d.log.Info("DNS servers of the tunnel configured", "dns", servers)
	h.applied = servers
}

// resolveForUp resolves the host names of connection name, if it has any, before a
// person's `up` initiates it: every `up` looks them up afresh.
func (d *daemon) resolveForUp(ctx context.Context, name string) error {
	var hosts []string
	if err := d.run(ctx, func(time.Time) {
		if c := d.cfg.Connection(name); c != nil {
			hosts = slices.Clone(c.RemoteHosts)
		}
	}); err != nil || len(hosts) == 0 {
		return err
	}
	if d.deps.LookupHost == nil {
		return fmt.Errorf("connection %q: no resolver for its host names %v", name, hosts)
	}
	found, err := d.lookupAll(ctx, name, hosts)
	if err != nil {
		return fmt.Errorf("connection %q: resolving %v: %w", name, hosts, err)
	}
	return d.run(ctx, func(now time.Time) { d.apply(d.engine.Resolved(now, name, found, nil)) })
}

// lookupAll resolves the host names of connection conn (at most resolveTimeout in
// all): every address found, by name; an error only when none resolved (those that
// did not are logged).
func (d *daemon) lookupAll(ctx context.Context, conn string, hosts []string) (map[string][]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	found := make(map[string][]netip.Addr)
	var errs []error
	for _, host := range hosts {
		addrs, err := d.deps.LookupHost(ctx, host)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		found[host] = addrs
	}
	if len(found) == 0 {
		return nil, errors.Join(errs...)
	}
	if len(errs) > 0 {
		d.log.Warn("some of the gateway's host names did not resolve", "conn", conn, "err", errors.Join(errs...))
	}
	return found, nil
}
