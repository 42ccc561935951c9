package system

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/mobikevpn/mobikevpn/internal/config"
	"github.com/mobikevpn/mobikevpn/internal/daemon"
	"github.com/mobikevpn/mobikevpn/internal/hostdns"
	"github.com/mobikevpn/mobikevpn/internal/killswitch"
	"github.com/mobikevpn/mobikevpn/internal/netmon"
	"github.com/mobikevpn/mobikevpn/tun"
	"github.com/mobikevpn/mobikevpn/udp"
)

// A client's parts of the host: policy routing (its routes in their own table, its
// IKE/ESP sockets marked to bypass it), the DNS servers its gateways assign, the kill
// switch and the resolver for its gateways' host names.

// hasClient reports whether cfg has a connection that initiates (a client).
func hasClient(cfg *config.Config) bool {
	return slices.ContainsFunc(cfg.Connections, func(c *config.Connection) bool { return c.Initiator })
}

// policyRouter is a Configurator that routes by policy (tun.NetlinkConfigurator).
type policyRouter interface {
	UsePolicyRouting(tun.PolicyRouting) error
}

// openClient fills deps with a client's parts; conns are the daemon's IKE and NAT-T
// sockets. A gateway (no connection that initiates) gets none of them.
func openClient(cfg *config.Config, log *slog.Logger, netcfg tun.Configurator, conns []udp.Conn, deps *daemon.Deps) error {
	if !hasClient(cfg) {
		return nil
	}
	deps.LookupHost = lookupHost
	if pr, ok := netcfg.(policyRouter); ok {
		p := tun.DefaultPolicyRouting
		if err := pr.UsePolicyRouting(p); err != nil {
			return err
		}
		for _, c := range conns {
			if err := udp.SetMark(c, p.Mark); err != nil {
				return fmt.Errorf("marking the IKE and ESP sockets for policy routing (needs CAP_NET_ADMIN): %w", err)
			}
		}
		deps.PolicyRouting = true
		warnStrictRPFilter(log)
		deps.SourceAddr = func(remote netip.Addr) (netip.Addr, error) { return markedSourceAddr(remote, p.Mark) }
		deps.Reachable = func(remote netip.Addr) []netip.Addr {
			addrs, err := netmon.ReachableMarked(remote, p.Mark)
			if err != nil {
				return nil
			}
			return addrs
		}
	}
	if cfg.Updown != "" {
		deps.DNS = &hookDNS{path: cfg.Updown}
	} else {
		dns := hostdns.New(hostdns.Options{Log: log.With("part", "dns")})
		if ok, err := dns.RecoverStale(); err != nil {
			log.Warn("restoring the DNS configuration a previous run left", "err", err)
		} else if ok {
			log.Info("restored the DNS configuration a previous run left behind")
		}
		deps.DNS = dnsApplier{dns}
	}
	return openKillSwitch(cfg, log, deps)
}

// openKillSwitch gives deps the kill switch when a connection asks for it; without,
// a killed daemon's rules are removed if nft is there to ask.
func openKillSwitch(cfg *config.Config, log *slog.Logger, deps *daemon.Deps) error {
	want := slices.ContainsFunc(cfg.Connections, func(c *config.Connection) bool { return c.KillSwitch })
	fw, err := killswitch.New(killswitch.Options{})
	if err != nil {
		if want {
			return fmt.Errorf("kill_switch: %w", err)
		}
		return nil
	}
	if !want {
		if err := fw.Remove(); err != nil {
			log.Warn("removing the kill switch a previous run left", "err", err)
		}
		return nil
	}
	deps.KillSwitch = markedFirewall{fw: fw, mark: tun.DefaultPolicyRouting.Mark}
	return nil
}

// markedFirewall is the kill switch, letting the daemon's marked sockets through.
type markedFirewall struct {
	fw   *killswitch.Firewall
	mark uint32
}

func (m markedFirewall) Block(dev string, prefixes []netip.Prefix, linkSetup bool) error {
	return m.fw.Set(killswitch.Spec{Dev: dev, Mark: m.mark, Block: prefixes, LinkSetup: linkSetup})
}

func (m markedFirewall) Remove() error { return m.fw.Remove() }

// dnsApplier is hostdns for the daemon.
type dnsApplier struct{ m *hostdns.Manager }

func (a dnsApplier) Apply(dev string, servers, _ []netip.Addr, routeAll bool) error {
	return a.m.Apply(dev, servers, routeAll)
}

func (a dnsApplier) Revert() error { return a.m.Revert() }

// hookDNS hands the DNS servers and virtual IPs to the updown hook (ACTION=dns), which
// configures the host's resolver itself.
type hookDNS struct {
	path string
	dev  string
}

func (h *hookDNS) Apply(dev string, servers, vips []netip.Addr, routeAll bool) error {
	h.dev = dev
	full := "no"
	if routeAll {
		full = "yes"
	}
	return tun.RunHook(h.path, "updown hook dns", "ACTION=dns", "DEV="+dev, "DNS="+joinAddrs(servers), "VIPS="+joinAddrs(vips), "FULL_TUNNEL="+full)
}

func (h *hookDNS) Revert() error {
	return tun.RunHook(h.path, "updown hook dns", "ACTION=dns", "DEV="+h.dev, "DNS=", "VIPS=", "FULL_TUNNEL=no")
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, " ")
}

// lookupHost resolves a gateway's host name: every A and AAAA record.
func lookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	for i, a := range addrs {
		addrs[i] = a.Unmap()
	}
	return addrs, nil
}

// warnStrictRPFilter warns when strict reverse path filtering is on: the kernel then
// checks an arriving packet's source against the routes an unmarked packet would take,
// and drops the gateway's IKE and ESP once the tunnel's routes cover its address.
func warnStrictRPFilter(log *slog.Logger) {
	for _, key := range []string{"all", "default"} {
		b, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + key + "/rp_filter")
		if err == nil && strings.TrimSpace(string(b)) == "1" {
			log.Warn("strict reverse path filtering is on: a full tunnel (or selectors covering the gateway) will drop the gateway's packets; "+
				"set net.ipv4.conf.all.rp_filter and net.ipv4.conf.default.rp_filter to 2 (loose)", "sysctl", "net.ipv4.conf."+key+".rp_filter")
			return
		}
	}
}
