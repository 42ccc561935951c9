package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/mobikevpn/mobikevpn/internal/config"
	"github.com/mobikevpn/mobikevpn/internal/control"
	"github.com/mobikevpn/mobikevpn/internal/daemon"
	"github.com/mobikevpn/mobikevpn/internal/netmon"
	"github.com/mobikevpn/mobikevpn/internal/udp"
	"github.com/mobikevpn/mobikevpn/tun"
)

// runSystem is `mobikevpn run`: it opens the system's parts the daemon runs on (the
// composition root: nothing below opens a device or a socket by itself) and runs it.
func runSystem(ctx context.Context, cfg *config.Config, log *slog.Logger, opts daemon.Options) error {
	deps, closeAll, err := openSystem(cfg, log)
	if err != nil {
		return err
	}
	d, err := daemon.New(cfg, log, deps)
	if err != nil {
		closeAll()
		return err
	}
	return d.Run(ctx, opts) // it owns the parts from now on
}

// openSystem opens the TUN device, its address and route configurator and the IKE and
// NAT-T sockets, and says how to watch addresses and serve the control socket; closeAll
// closes what it opened, for when the daemon is not built.
func openSystem(cfg *config.Config, log *slog.Logger) (daemon.Deps, func(), error) {
	var deps daemon.Deps
	dev, err := tun.Create(cfg.TUN.Name, cfg.TUN.MTU)
	if err != nil {
		return deps, nil, fmt.Errorf("tun: creating %q: %w", cfg.TUN.Name, err)
	}
	name, err := dev.Name()
	if err != nil {
		dev.Close()
		return deps, nil, fmt.Errorf("tun: %w", err)
	}
	netcfg, err := tun.NewConfigurator(cfg.Updown)
	if err != nil {
		dev.Close()
		return deps, nil, err
	}
	var conns []udp.Conn
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
		netcfg.Close()
		dev.Close()
	}
	for _, port := range []uint16{cfg.Ports.IKE, cfg.Ports.NATT} {
		cs, err := udp.Listen(port)
		if err != nil {
			closeAll()
			return deps, nil, fmt.Errorf("listening on UDP port %d: %w", port, err)
		}
		conns = append(conns, cs...)
	}
	ctl := cfg.Control
	if ctl == "" {
		ctl = config.DefaultControl
	}
	deps = daemon.Deps{
		TUN:        dev,
		Net:        netcfg,
		Conns:      conns,
		SourceAddr: sourceAddr,
		Reachable:  reachableAddrs,
		Watch: func(ctx context.Context, report func(netmon.Change)) error {
			// The TUN device's own addresses (virtual IPs) must not carry IKE.
			return netmon.WatchLog(ctx, name, log.With("part", "netmon"), report)
		},
		Serve: func(ctx context.Context, h control.Handler, ready chan<- struct{}) error {
			if err := control.Serve(ctx, ctl, h, log.With("part", "control"), ready); err != nil {
				return fmt.Errorf("%s: %w", ctl, err)
			}
			return nil
		},
	}
	return deps, closeAll, nil
}

// sourceAddr asks the kernel which source address it would use for remote: a connected
// UDP socket sends nothing but has its local address chosen by the routing table.
func sourceAddr(remote netip.Addr) (netip.Addr, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(remote, 9)))
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}

// reachableAddrs lists the host's addresses that can reach remote (none when the
// system cannot be asked: announcing fewer addresses is harmless, a wrong one is not).
func reachableAddrs(remote netip.Addr) []netip.Addr {
	addrs, err := netmon.Reachable(remote)
	if err != nil {
		return nil
	}
	return addrs
}
