// Package daemon wires the configuration, the IKE engine and its sockets, the ESP
// datapath, the TUN device and the control socket into the running VPN.
package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/mobikevpn/mobikevpn/clock"
	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/esp"
	"github.com/mobikevpn/mobikevpn/ike"
	"github.com/mobikevpn/mobikevpn/internal/cluster"
	"github.com/mobikevpn/mobikevpn/internal/config"
	"github.com/mobikevpn/mobikevpn/internal/control"
	"github.com/mobikevpn/mobikevpn/internal/inner"
	"github.com/mobikevpn/mobikevpn/internal/metrics"
	"github.com/mobikevpn/mobikevpn/internal/netmon"
	"github.com/mobikevpn/mobikevpn/tun"
	"github.com/mobikevpn/mobikevpn/udp"
	"github.com/mobikevpn/mobikevpn/wire"
)

// Options are the daemon's inputs besides the configuration.
type Options struct {
	// Reload delivers SIGHUP: reload the configuration file.
	Reload <-chan struct{}
	// Notify tells the service manager how the daemon stands, in systemd's sd_notify
	// words: "READY=1" once it serves, "RELOADING=1" and "READY=1" around a reload,
	// "STOPPING=1" when it shuts down, "WATCHDOG=1" (see Watchdog). nil: nobody.
	Notify func(state string)
	// Watchdog, when set, has Notify("WATCHDOG=1") sent every Watchdog/2 as long as
	// the engine's goroutine answers (systemd's WATCHDOG_USEC).
	Watchdog time.Duration
}

// notify sends state to opts.Notify, if any.
func (o Options) notify(state string) {
	if o.Notify != nil {
		o.Notify(state)
	}
}

// Deps are the parts of the system the daemon runs on. The command line opens the real
// ones (the TUN device, the sockets, netlink, the control socket); a test builds them
// in memory (tun/memtun, udp/memnet) and runs several daemons in one process.
// Run owns them: it closes the device and the sockets when it ends, and Net takes back
// what it added.
type Deps struct {
	TUN tun.Device       // the daemon's TUN device
	Net tun.Configurator // addresses and routes on it
	// IKEConns are the sockets of the IKE port (cfg.Ports.IKE), IPv4 and IPv6: the
	// daemon reads them and sends IKE on them.
	IKEConns []udp.Conn
	// NATTConns are the sockets of the NAT-T port (cfg.Ports.NATT): the datapath reads
	// them (ESP, and IKE behind the non-ESP marker, which it hands to the daemon); the
	// daemon sends IKE on them too.
	NATTConns []udp.Conn
	// Watch reports the host's addresses and routes, at once and after every change,
	// until ctx ends; nil: never (MOBIKE then only sees what the peer tells it).
	Watch func(ctx context.Context, report func(netmon.Change)) error
	// Serve serves the control socket for h until ctx ends and closes ready once it
	// listens; nil: no control socket (a test calls the daemon's methods).
	Serve func(ctx context.Context, h control.Handler, ready chan<- struct{}) error
	// Clock gives the engine its time; nil: the system's.
	Clock clock.Clock
	// Cluster is this node's membership of its gateway cluster (config cluster:), joined
	// by the caller; nil without a cluster. Run leaves it when it ends.
	Cluster *cluster.Coordinator
	// Inner announces the virtual IPs this gateway serves to the protected side
	// (config cluster.inner); nil: nobody is told. Run closes it.
	Inner inner.Announcer
	// SourceAddr returns the local address the routing table picks to reach remote;
	// Reachable the local addresses that can reach it (see ike.Config). nil: unknown.
	SourceAddr func(remote netip.Addr) (netip.Addr, error)
	Reachable  func(remote netip.Addr) []netip.Addr
	// PolicyRouting: Net routes through its own table, which the daemon's marked IKE
	// and ESP sockets bypass, so a remote selector may cover the gateway's address (a
	// full tunnel). Without it such a selector is not routed.
	PolicyRouting bool
	// DNS configures the DNS servers the gateways assign (client.go); nil: they are
	// only logged. KillSwitch is the kill switch; nil: none (kill_switch refused by
	// the caller). LookupHost resolves a gateway's host name; nil: none.
	DNS        HostDNS
	KillSwitch KillSwitch
	LookupHost func(ctx context.Context, host string) ([]netip.Addr, error)
	// AAA passes EAP to the RADIUS servers of EAP-RADIUS; nil: none configured.
	AAA AAA
	// Metrics serves gather's snapshots (config metrics:) until ctx ends and closes
	// ready once it listens; nil: no metrics endpoint.
	Metrics func(ctx context.Context, gather func(context.Context) (*metrics.Snapshot, error), ready chan<- struct{}) error
}

// shutdownGrace bounds how long the daemon waits for the peers to answer its Deletes.
const shutdownGrace = 3 * time.Second

type daemon struct {
	cfg    *config.Config
	log    *slog.Logger
	engine *ike.Engine
	dp     *esp.Datapath
	socks  *ikeSockets // sends IKE on both ports, reads the IKE port
	dev    tun.Device
	devNm  string
	netcfg tun.Configurator
	keys   *keylog
	deps   Deps
	clock  clock.Clock

	ikeIn chan ike.Datagram
	cmds  chan func(now time.Time)

	// Owned by the engine goroutine.
	waiters map[uint64][]chan ike.Event
	// switchWaiters get EventSwitched of the IKE SAs a `switch --wait` waits for (by
	// the current id of the SA; a rekey moves them to the new one): each
	// channel has room for every SA it waits for, and gets each SA's at most once.
	switchWaiters map[uint64][]switchWait
	routes        *routeTable
	policies      map[uint64][]netip.Prefix // outbound flows and the routes they added
	ikeDrops      uint64
	mu            sync.Mutex // guards ikeDrops
	// cl is the daemon's part in its gateway cluster; nil without one.
	cl *clusterRole
	// inner announces the peers' virtual IPs to the protected side (nil: not).
	inner *innerWorker
	// client is the host's DNS and kill switch of a client (client.go).
	client clientHost
	// stats counts the engine's events for the metrics (metrics.go).
	stats eventStats
}

// Daemon is a running VPN: the engine, the datapath, the TUN device's addresses and
// routes, the control socket. Its methods (Status, Up, Down, Switch, ...) are what the
// control socket serves.
type Daemon struct{ *daemon }

// New builds the daemon for cfg on deps; Run starts it.
func New(cfg *config.Config, log *slog.Logger, deps Deps) (*Daemon, error) {
	icfg, err := ikeConfig(cfg)
	if err != nil {
		return nil, err
	}
	icfg.Logger = log.With("part", "ike")
	icfg.SourceAddr, icfg.Reachable = deps.SourceAddr, deps.Reachable
	// The datapath is created after the engine: the engine asks it through d.
	var d *daemon
	icfg.InboundActivity = func(spi uint32) time.Time { return d.inboundActivity(spi) }
	engine, err := ike.New(icfg)
	if err != nil {
		return nil, err
	}
	d = &daemon{
		cfg:           cfg,
		log:           log,
		engine:        engine,
		deps:          deps,
		clock:         deps.Clock,
		dev:           deps.TUN,
		netcfg:        deps.Net,
		ikeIn:         make(chan ike.Datagram, 1024),
		cmds:          make(chan func(time.Time), 64),
		waiters:       make(map[uint64][]chan ike.Event),
		switchWaiters: make(map[uint64][]switchWait),
		policies:      make(map[uint64][]netip.Prefix),
	}
	if d.clock == nil {
		d.clock = clock.System{}
	}
	if deps.Cluster != nil {
		d.cl = newClusterRole(d, deps.Cluster)
	}
	if cfg.Keylog != "" {
		if d.keys, err = openKeylog(cfg); err != nil {
			return nil, err
		}
		log.Warn("key log is on: IKE and ESP keys are written in the clear", "dir", cfg.Keylog)
	}
	if d.devNm, err = d.dev.Name(); err != nil {
		return nil, fmt.Errorf("tun: %w", err)
	}
	d.routes = newRouteTable(d.netcfg, d.devNm, log)
	d.socks, err = newIKESockets(cfg.Ports.IKE, deps.IKEConns, cfg.Ports.NATT, deps.NATTConns, log.With("part", "ike"))
	if err != nil {
		return nil, fmt.Errorf("sockets: %w", err)
	}
	d.dp, err = esp.New(esp.Config{
		TUN:       d.dev,
		Conns:     deps.NATTConns,
		OnIKE:     d.onIKE,
		Logger:    log.With("part", "esp"),
		MTU:       cfg.TUN.MTU,
		Workers:   cfg.Datapath.Workers,
		NoOffload: !cfg.Datapath.UDPOffload,
	})
	if err != nil {
		return nil, err
	}
	return &Daemon{d}, nil
}

// Run runs the VPN until ctx is cancelled, then deletes every SA at its peer and
// removes what it added to the system. It closes the TUN device and the sockets.
func (d *Daemon) Run(ctx context.Context, opts Options) error {
	log, cfg := d.log, d.cfg
	defer d.dev.Close()
	// Whatever happens, take back the addresses and routes we added.
	defer func() {
		if err := d.netcfg.Close(); err != nil {
			log.Warn("removing addresses and routes", "err", err)
		}
	}()
	for _, p := range cfg.TUN.Addrs {
		if err := d.netcfg.AddAddress(d.devNm, p); err != nil {
			return fmt.Errorf("tun: adding address %s to %s: %w", p, d.devNm, err)
		}
	}
	if err := d.netcfg.Up(d.devNm); err != nil {
		return fmt.Errorf("tun: bringing %s up: %w", d.devNm, err)
	}

	// The datapath reads the NAT-T port, the IKE readers the IKE port; both feed ikeIn.
	dp := startTask("datapath", d.dp.Run)
	ikeR := startTask("IKE port", func(ctx context.Context) error { return d.socks.run(ctx, d.onIKE) })
	defer func() {
		dp.stop()
		ikeR.stop()
		for _, c := range d.deps.IKEConns {
			c.Close()
		}
		for _, c := range d.deps.NATTConns {
			c.Close()
		}
		<-dp.done
		<-ikeR.done
	}()
	stopCtl, err := d.serveControl()
	if err != nil {
		return err
	}
	defer stopCtl()
	stopMetrics, err := d.serveMetrics() // metrics.go
	if err != nil {
		return err
	}
	defer stopMetrics()
	defer d.watch()()

	// The engine goroutine: every IKE datagram, command and timer goes through it, and
	// the end of the datapath or of the IKE port's readers, volume limits and SIGHUP.
	drv := &ike.Driver{Engine: d.engine, Clock: d.clock, Exec: d.apply, Datagrams: d.ikeIn, Commands: d.cmds,
		Wakes: []ike.Wake{dp.wake(), ikeR.wake(),
			{C: d.dp.LimitsCrossed(), Do: func(now time.Time) error {
				d.apply(d.volumeLimits(now))
				return nil
			}},
			{C: opts.Reload, Do: func(time.Time) error {
				opts.notify("RELOADING=1")
				d.reload()
				opts.notify("READY=1")
				return nil
			}},
		}}
	defer drv.Close()
	if deps := d.deps; deps.Inner != nil {
		d.inner = startInner(d.daemon, deps.Inner)
		defer d.inner.stop() // after Shutdown below: the SAs it deletes are released
	}
	if d.cl != nil {
		stopCluster := d.startCluster()
		defer stopCluster() // after Shutdown below: the SAs it deletes are released
	}
	stopClient, err := d.startClient() // client.go
	if err != nil {
		return err
	}
	defer stopClient() // after Shutdown below: the kill switch stays until the SAs are gone
	log.Info("mobikevpn running", "tun", d.devNm, "ike_port", cfg.Ports.IKE, "natt_port", cfg.Ports.NATT, "control", cfg.Control)
	d.apply(d.engine.StartAll(d.clock.Now()))
	opts.notify("READY=1")
	defer d.watchdog(opts)()
	err = drv.Run(ctx)
	opts.notify("STOPPING=1")
	// Delete every IKE SA at its peer and wait a little for the answers, in real time
	// whatever the engine's clock.
	if !drv.Shutdown(clock.System{}, shutdownGrace) {
		log.Warn("peers did not confirm every Delete in time")
	}
	d.routes.removeAll()
	return err
}

// task is a goroutine the daemon needs while it runs (the datapath, the IKE port's
// readers): stop ends it, done is closed once it has returned err.
type task struct {
	what string
	done chan struct{}
	err  error
	stop context.CancelFunc
}

func startTask(what string, run func(context.Context) error) *task {
	ctx, stop := context.WithCancel(context.Background())
	t := &task{what: what, done: make(chan struct{}), stop: stop}
	go func() {
		defer close(t.done)
		t.err = run(ctx)
	}()
	return t
}

// wake ends the engine's loop with the task's error when it returns by itself.
func (t *task) wake() ike.Wake {
	return ike.Wake{C: t.done, Do: func(time.Time) error {
		err := t.err
		if err == nil {
			err = fmt.Errorf("%s stopped", t.what)
		}
		return fmt.Errorf("%s: %w", t.what, err)
	}}
}

// serveControl starts the control socket's server, if there is one, and waits until
// it listens; the returned function stops it.
func (d *Daemon) serveControl() (func(), error) {
	if d.deps.Serve == nil {
		return func() {}, nil
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() { done <- d.deps.Serve(ctx, d, ready) }()
	select {
	case <-ready:
	case err := <-done:
		stop()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return func() {
		stop()
		<-done
	}, nil
}

// watch follows the host's address and route changes, which drive MOBIKE, if the
// daemon was given a watcher; the returned function stops it.
func (d *Daemon) watch() func() {
	if d.deps.Watch == nil {
		return func() {}
	}
	ctx, stop := context.WithCancel(context.Background())
	go func() {
		err := d.deps.Watch(ctx, func(c netmon.Change) {
			select {
			case d.cmds <- func(now time.Time) {
				d.apply(d.engine.SetLocalAddrs(now, c.Addrs))
				if c.Routes {
					d.apply(d.engine.RoutesChanged(now))
				}
			}:
			case <-ctx.Done():
			}
		})
		if err != nil {
			d.log.Warn("not watching addresses and routes: MOBIKE will not notice changes", "err", err)
		}
	}()
	return stop
}

// inboundActivity is when the inbound SA with our SPI spi last accepted a packet.
func (d *daemon) inboundActivity(spi uint32) time.Time {
	if d.dp == nil {
		return time.Time{}
	}
	c, _ := d.dp.InboundCounters(spi)
	return c.Last
}

// onIKE is called by the IKE port's readers and the datapath's receive goroutines.
func (d *daemon) onIKE(pkt []byte, local, remote netip.AddrPort) {
	select {
	case d.ikeIn <- ike.Datagram{Local: local, Remote: remote, Data: pkt}:
	default:
		// The engine is saturated: shed load rather than queue without bound.
		d.mu.Lock()
		d.ikeDrops++
		d.mu.Unlock()
	}
}

// apply carries out the engine's actions.
func (d *daemon) apply(actions []ike.Action) {
	var persist []ike.Send
	defer func() {
		if d.cl != nil {
			d.cl.persist(persist) // after the batch's events: an SA established in it is claimed
		}
	}()
	for _, a := range actions {
		switch a := a.(type) {
		case ike.Send:
			if a.Persist != 0 && d.cl != nil {
				persist = append(persist, a)
				continue
			}
			d.send(a)
		case ike.InstallInbound:
			d.installInbound(a)
		case ike.InstallOutbound:
			d.installOutbound(a)
		case ike.RemoveInbound:
			d.dp.RemoveInbound(a.SPI)
		case ike.RemoveOutbound:
			d.removeOutbound(a)
		case ike.VirtualIPs:
			d.virtualIPs(a)
		case ike.Resolve:
			d.resolveHosts(a) // client.go
		case ike.AAARequest:
			d.aaaRequest(a) // eap.go
		case ike.IKEKeysLog:
			if d.keys != nil {
				if err := d.keys.ikeSA(a); err != nil {
					d.log.Warn("key log", "err", err)
				}
			}
		case ike.UpdateEndpoints:
			if err := d.dp.SetEndpoints(a.Policy, a.Local, a.Remote); err != nil {
				d.log.Error("moving a flow", "local", a.Local, "remote", a.Remote, "err", err)
			}
			if d.cl != nil {
				d.cl.espMoved(a.IKESA)
			}
		case ike.Event:
			d.stats.count(a) // metrics.go
			d.logEvent(a)
			if d.cl != nil {
				d.cl.onEvent(a)
			}
			switch a.Kind {
			case ike.EventSwitched:
				for _, w := range d.switchWaiters[a.IKESA] {
					ev := a
					ev.IKESA = w.id // the SA as the waiter knows it, before any rekey
					select {
					case w.ch <- ev: // there is room: see switchWaiters
					default: // never blocks the engine goroutine, whatever a waiter does
					}
				}
				delete(d.switchWaiters, a.IKESA)
				continue
			case ike.EventRekeyed:
				// A switch under way continues on the new IKE SA: so do its waiters.
				if ws, ok := d.switchWaiters[a.Replaces]; ok {
					delete(d.switchWaiters, a.Replaces)
					d.switchWaiters[a.IKESA] = append(d.switchWaiters[a.IKESA], ws...)
				}
				continue
			case ike.EventMoved, ike.EventSwitchRefused, ike.EventMoveFailed, ike.EventPeerStayed, ike.EventVIPWanted:
				continue // logged by the engine (the cluster's were seen above); nobody waits for these
			}
			for _, w := range d.waiters[a.IKESA] {
				w <- a
			}
			delete(d.waiters, a.IKESA)
		}
	}
}

func espSelectors(ts []wire.TrafficSelector) []esp.Selector {
	out := make([]esp.Selector, 0, len(ts))
	for _, t := range ts {
		out = append(out, esp.Selector{Proto: t.IPProtocol, StartPort: t.StartPort, EndPort: t.EndPort, Start: t.Start, End: t.End})
	}
	return out
}

func espKeys(s ikecrypto.ESPSuite, k ike.ChildKeys) esp.Keys {
	return esp.Keys{Encr: s.Encr, EncrKeyBits: int(s.EncrKeyBits), Integ: s.Integ, EncrKey: k.Encr, IntegKey: k.Integ}
}

// espLimits maps a Child SA's volume limits to the datapath's.
func espLimits(l ike.ChildLimits) esp.Limits {
	return esp.Limits{SoftBytes: l.SoftBytes, SoftPackets: l.SoftPackets, HardBytes: l.HardBytes, HardPackets: l.HardPackets}
}

// volumeLimits hands the volume limits the datapath saw crossed to the engine, which
// rekeys or replaces the Child SAs (issue 11), and returns what it asks for.
func (d *daemon) volumeLimits(now time.Time) []ike.Action {
	var acts []ike.Action
	for _, ev := range d.dp.TakeLimits() {
		acts = append(acts, d.engine.ChildVolume(now, ike.VolumeLimit{Inbound: ev.Inbound, SPI: ev.SPI, Policy: ev.Child, Hard: ev.Hard})...)
	}
	return acts
}

func (d *daemon) installInbound(a ike.InstallInbound) {
	// Seq: an SA imported from another engine accepts nothing its previous owner did.
	in := esp.SAConfig{SPI: a.SPI, Keys: espKeys(a.Suite, a.Keys), ESN: a.Suite.ESN,
		LocalTS: espSelectors(a.LocalTS), RemoteTS: espSelectors(a.RemoteTS), Limits: espLimits(a.Limits), Seq: a.Seq}
	if err := d.dp.AddInbound(in); err != nil {
		d.log.Error("installing inbound SA", "spi", fmt.Sprintf("%08x", a.SPI), "err", err)
		wipeKeys(a.Keys)
		return
	}
	if d.keys != nil {
		if err := d.keys.espSA(a.Remote.Addr(), a.Local.Addr(), a.SPI, a.Suite, a.Keys); err != nil {
			d.log.Warn("key log", "err", err)
		}
	}
	wipeKeys(a.Keys)
}

// wipeKeys overwrites the raw keys of an install action once the datapath has taken
// them (it keeps its own cipher state, not these bytes).
func wipeKeys(k ike.ChildKeys) {
	clear(k.Encr)
	clear(k.Integ)
}

// send sends an IKE datagram.
func (d *daemon) send(a ike.Send) {
	if err := d.socks.send(a.Local, a.Remote, a.Data); err != nil {
		d.log.Debug("sending IKE datagram", "to", a.Remote, "err", err)
	}
}

func (d *daemon) installOutbound(a ike.InstallOutbound) {
	// Seq: an SA imported from another engine (ike.Engine.Import) goes on beyond the
	// sequence numbers its previous owner used or reserved.
	out := esp.SAConfig{SPI: a.SPI, Keys: espKeys(a.Suite, a.Keys), ESN: a.Suite.ESN,
		LocalTS: espSelectors(a.LocalTS), RemoteTS: espSelectors(a.RemoteTS), Limits: espLimits(a.Limits), Seq: a.Seq}
	if d.cl != nil {
		out.Lease = d.cl.installLease(a) // failover.go
	}
	if a.Keepalive {
		out.Keepalive = 20 * time.Second
	}
	if err := d.dp.InstallOutbound(a.Policy, out, a.Local, a.Remote); err != nil {
		d.log.Error("installing outbound SA", "spi", fmt.Sprintf("%08x", a.SPI), "err", err)
		wipeKeys(a.Keys)
		return
	}
	if d.keys != nil {
		if err := d.keys.espSA(a.Local.Addr(), a.Remote.Addr(), a.SPI, a.Suite, a.Keys); err != nil {
			d.log.Warn("key log", "err", err)
		}
	}
	wipeKeys(a.Keys)
	if _, ok := d.policies[a.Policy]; ok {
		return // a rekey: the routes stay
	}
	var routes []netip.Prefix
	for _, t := range a.RemoteTS {
		for _, p := range t.Prefixes() {
			if p.Contains(a.Remote.Addr()) && !d.deps.PolicyRouting {
				d.log.Warn("remote traffic selector covers the peer's own address: not routing it through the tunnel", "ts", p, "peer", a.Remote.Addr())
				continue
			}
			d.routes.add(p)
			routes = append(routes, p)
		}
	}
	d.policies[a.Policy] = routes
}

func (d *daemon) removeOutbound(a ike.RemoveOutbound) {
	d.dp.RemoveOutbound(a.Policy)
	if d.cl != nil {
		d.cl.dropLease(a.Policy)
	}
	for _, p := range d.policies[a.Policy] {
		d.routes.remove(p)
	}
	delete(d.policies, a.Policy)
}

func (d *daemon) virtualIPs(a ike.VirtualIPs) {
	if !a.Local {
		// A peer's address: routed through its Child SA's selectors; announced to the
		// protected side in a cluster.
		if d.inner != nil {
			d.inner.vips(a.IKESA, a.Addrs, !a.Remove, d.cl != nil && d.cl.isArriving(a.IKESA))
		}
		return
	}
	d.clientVIPs(a) // client.go
	for _, v := range a.Addrs {
		p := netip.PrefixFrom(v, v.BitLen())
		if a.Remove {
			d.routes.removeAddress(p)
		} else {
			d.routes.addAddress(p)
		}
	}
}

// watchdog sends WATCHDOG=1 every opts.Watchdog/2 while the engine's goroutine runs
// the daemon's commands; the returned function stops it.
func (d *daemon) watchdog(opts Options) func() {
	if opts.Watchdog <= 0 || opts.Notify == nil {
		return func() {}
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(opts.Watchdog / 2)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			rctx, cancel := context.WithTimeout(ctx, opts.Watchdog/2)
			err := d.run(rctx, func(time.Time) {}) // the engine goroutine answers
			cancel()
			if err == nil {
				opts.Notify("WATCHDOG=1")
			}
		}
	}()
	return func() {
		stop()
		<-done
	}
}
