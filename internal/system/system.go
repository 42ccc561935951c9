// Package system opens the parts of the host a daemon runs on: the TUN device and its
// addresses and routes, the IKE and NAT-T sockets, the address and route monitor, the
// control socket and the routing table's answers. It is the composition root shared by
// the command line and the embeddable API: nothing below it opens a device or a socket.
package system

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/mobikevpn/mobikevpn/internal/cluster"
	"github.com/mobikevpn/mobikevpn/internal/config"
	"github.com/mobikevpn/mobikevpn/internal/control"
	"github.com/mobikevpn/mobikevpn/internal/daemon"
	"github.com/mobikevpn/mobikevpn/internal/inner"
	"github.com/mobikevpn/mobikevpn/internal/metrics"
	"github.com/mobikevpn/mobikevpn/internal/netmon"
	"github.com/mobikevpn/mobikevpn/internal/radius"
	"github.com/mobikevpn/mobikevpn/tun"
	"github.com/mobikevpn/mobikevpn/udp"
)

// Run opens the system's parts for cfg and runs a daemon on them until ctx ends
// (`mobikevpn run`).
func Run(ctx context.Context, cfg *config.Config, log *slog.Logger, opts daemon.Options) error {
	deps, closeAll, err := Open(cfg, log, true)
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

// Open opens the TUN device, its address and route configurator and the IKE and NAT-T
// sockets, and says how to watch addresses and, with control, serve the control
// socket; closeAll closes what it opened, for when the daemon is not built (a daemon
// that runs owns them).
func Open(cfg *config.Config, log *slog.Logger, serveControl bool) (daemon.Deps, func(), error) {
	dev, err := tun.Create(cfg.TUN.Name, cfg.TUN.MTU)
	if err != nil {
		return daemon.Deps{}, nil, fmt.Errorf("tun: creating %q: %w", cfg.TUN.Name, err)
	}
	name, err := dev.Name()
	if err != nil {
		dev.Close()
		return daemon.Deps{}, nil, fmt.Errorf("tun: %w", err)
	}
	netcfg, err := tun.NewConfigurator(cfg.Updown)
	if err != nil {
		dev.Close()
		return daemon.Deps{}, nil, err
	}
	// The IKE port's sockets are the daemon's to read, the NAT-T port's the datapath's.
	var ikeConns, nattConns []udp.Conn
	closeAll := func() {
		for _, c := range slices.Concat(ikeConns, nattConns) {
			c.Close()
		}
		netcfg.Close()
		dev.Close()
	}
	for _, l := range []struct {
		port  uint16
		conns *[]udp.Conn
	}{{cfg.Ports.IKE, &ikeConns}, {cfg.Ports.NATT, &nattConns}} {
		cs, err := udp.Listen(l.port)
		if err != nil {
			closeAll()
			return daemon.Deps{}, nil, fmt.Errorf("listening on UDP port %d: %w", l.port, err)
		}
		*l.conns = cs
	}
	deps := daemon.Deps{
		TUN:        dev,
		Net:        netcfg,
		IKEConns:   ikeConns,
		NATTConns:  nattConns,
		SourceAddr: sourceAddr,
		Reachable:  reachableAddrs,
		Watch: func(ctx context.Context, report func(netmon.Change)) error {
			// The TUN device's own addresses (virtual IPs) must not carry IKE.
			return netmon.WatchLog(ctx, name, log.With("part", "netmon"), report)
		},
	}
	if err := openClient(cfg, log, netcfg, slices.Concat(ikeConns, nattConns), &deps); err != nil { // client.go
		closeAll()
		return daemon.Deps{}, nil, err
	}
	if cfg.Metrics != "" {
		mlog := log.With("part", "metrics")
		deps.Metrics = func(ctx context.Context, gather func(context.Context) (*metrics.Snapshot, error), ready chan<- struct{}) error {
			return metrics.Serve(ctx, cfg.Metrics, gather, mlog, ready)
		}
	}
	if cfg.Radius != nil {
		rc, err := newRadius(cfg.Radius, log.With("part", "radius"))
		if err != nil {
			closeAll()
			return daemon.Deps{}, nil, err
		}
		deps.AAA = rc
		closeSockets := closeAll
		closeAll = func() { closeSockets(); rc.Close() }
	}
	if serveControl {
		ctl := cfg.Control
		if ctl == "" {
			ctl = config.DefaultControl
		}
		deps.Serve = func(ctx context.Context, h control.Handler, ready chan<- struct{}) error {
			if err := control.Serve(ctx, ctl, h, log.With("part", "control"), ready); err != nil {
				return fmt.Errorf("%s: %w", ctl, err)
			}
			return nil
		}
	}
	if cfg.Cluster != nil {
		co, err := joinCluster(cfg.Cluster)
		if err != nil {
			closeAll()
			return daemon.Deps{}, nil, err
		}
		deps.Cluster = co
		if in := cfg.Cluster.Inner; in != nil {
			if deps.Inner, err = newInner(in, cfg.Cluster.Node); err != nil {
				closeAll()
				co.Close(context.Background())
				return daemon.Deps{}, nil, err
			}
		}
	}
	return deps, closeAll, nil
}

// newRadius makes the RADIUS client of the radius section.
func newRadius(r *config.Radius, log *slog.Logger) (*radius.Client, error) {
	rc := radius.Config{Timeout: r.Timeout, Tries: r.Tries, Logger: log}
	for _, s := range r.Servers {
		rc.Servers = append(rc.Servers, radius.Server{Addr: s.Addr, Secret: s.Secret})
	}
	c, err := radius.New(rc)
	if err != nil {
		return nil, fmt.Errorf("radius: %w", err)
	}
	return c, nil
}

// newInner makes the announcer of cluster.inner.
func newInner(in *config.Inner, node string) (inner.Announcer, error) {
	if in.Mode == config.InnerHook {
		return &inner.Hook{Path: in.Hook, Node: node}, nil
	}
	an, err := inner.NewARP(in.Interface)
	if err != nil {
		return nil, fmt.Errorf("cluster.inner: %w", err)
	}
	return an, nil
}

// joinCluster joins the gateway cluster of the cluster section c through etcd.
func joinCluster(c *config.Cluster) (*cluster.Coordinator, error) {
	key, err := cluster.LoadStateKey(c.StateKeyFile)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	var tc *tls.Config
	if c.TLSCA != "" {
		pem, err := os.ReadFile(c.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("cluster: etcd tls: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("cluster: etcd tls: %s holds no PEM certificate", c.TLSCA)
		}
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("cluster: etcd tls: %w", err)
		}
		tc = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	co, err := cluster.Join(ctx, cluster.Config{Endpoints: c.Endpoints, TLS: tc, Prefix: c.Prefix, LeaseTTL: c.LeaseTTL},
		cluster.Node{Name: c.Node, Addrs: c.Addrs}, key)
	if err != nil {
		return nil, err
	}
	return co, nil
}

// sourceAddr asks the kernel which source address it would use for remote: a connected
// UDP socket sends nothing but has its local address chosen by the routing table.
func sourceAddr(remote netip.Addr) (netip.Addr, error) { return markedSourceAddr(remote, 0) }

// markedSourceAddr is sourceAddr for packets carrying mark (policy routing; 0: none).
func markedSourceAddr(remote netip.Addr, mark uint32) (netip.Addr, error) {
	var d net.Dialer
	if mark != 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) { serr = setMark(fd, mark) }); err != nil {
				return err
			}
			return serr
		}
	}
	c, err := d.Dial("udp", netip.AddrPortFrom(remote, 9).String())
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
