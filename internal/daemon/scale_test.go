package daemon

import (
	"bytes"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/esp"
	"github.com/mobikevpn/mobikevpn/ike"
	"github.com/mobikevpn/mobikevpn/internal/config"
	"github.com/mobikevpn/mobikevpn/internal/loadgen"
	"github.com/mobikevpn/mobikevpn/tun/memtun"
	"github.com/mobikevpn/mobikevpn/udp/memnet"
)

// The scale harness runs the daemon's gateway side (engine, datapath, route table) in
// process against the load generator's clients, with IKE datagrams handed over
// directly and a fake clock, so that the memory an established IKE SA + Child SA costs
// can be measured (and profiled) without root.

const scaleGatewayYAML = `
tun: { name: mvpn0, mtu: 1400 }
secrets:
  - ids: [gw.example.org, "*@bench.example.org"]
    psk: "bench secret"
connections:
  rw:
    local_addrs: [198.51.100.1]
    proposals: [aes128gcm16-prfsha256-x25519]
    dpd_delay: 30s
    local: { auth: psk, id: gw.example.org }
    remote: { auth: psk }
    children:
      net:
        local_ts: [198.18.0.0/24]
        remote_ts: [dynamic]
        esp_proposals: [aes128gcm16]
`

// nullNetcfg is a tun.Configurator that only counts.
type nullNetcfg struct{ routes, addrs int }

func (c *nullNetcfg) Up(string) error                       { return nil }
func (c *nullNetcfg) AddAddress(string, netip.Prefix) error { c.addrs++; return nil }
func (c *nullNetcfg) AddRoute(string, netip.Prefix) error   { c.routes++; return nil }
func (c *nullNetcfg) DelAddress(string, netip.Prefix) error { c.addrs--; return nil }
func (c *nullNetcfg) DelRoute(string, netip.Prefix) error   { c.routes--; return nil }
func (c *nullNetcfg) Close() error                          { return nil }

// scaleGateway is a daemon without its goroutines: the test calls the engine and
// applies its actions itself; IKE datagrams it sends are returned to the caller.
type scaleGateway struct {
	*daemon
	netcfg *nullNetcfg
	sent   []ike.Send
}

func newScaleGateway(t testing.TB, yaml string) *scaleGateway {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), "gw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	icfg, err := ikeConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Logs are formatted as the daemon's are, then thrown away.
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	icfg.Logger = log.With("part", "ike")
	var d *daemon
	icfg.InboundActivity = func(spi uint32) time.Time { return d.inboundActivity(spi) }
	engine, err := ike.New(icfg)
	if err != nil {
		t.Fatal(err)
	}
	host := memnet.New().Host(netip.MustParseAddr("198.51.100.1"))
	ikeConns, err := host.Listen(500)
	if err != nil {
		t.Fatal(err)
	}
	natt, err := host.Listen(4500)
	if err != nil {
		t.Fatal(err)
	}
	socks, err := newIKESockets(500, ikeConns, 4500, natt, log)
	if err != nil {
		t.Fatal(err)
	}
	dp, err := esp.New(esp.Config{TUN: memtun.New("mvpn0", 1400), Conns: natt,
		MTU: 1400, Logger: log.With("part", "esp"), OnIKE: func([]byte, netip.AddrPort, netip.AddrPort) {}})
	if err != nil {
		t.Fatal(err)
	}
	nc := &nullNetcfg{}
	d = &daemon{
		cfg:           cfg,
		log:           log,
		engine:        engine,
		dp:            dp,
		socks:         socks,
		devNm:         "mvpn0",
		ikeIn:         make(chan ike.Datagram, 1024),
		cmds:          make(chan func(time.Time), 64),
		waiters:       make(map[uint64][]chan ike.Event),
		switchWaiters: make(map[uint64][]switchWait),
		policies:      make(map[uint64][]netip.Prefix),
	}
	d.routes = newRouteTable(nc, "mvpn0", log)
	return &scaleGateway{daemon: d, netcfg: nc}
}

// apply carries out the gateway's actions, keeping back its IKE datagrams.
func (g *scaleGateway) apply(acts []ike.Action) {
	for _, a := range acts {
		if s, ok := a.(ike.Send); ok {
			g.sent = append(g.sent, s)
			continue
		}
		g.daemon.apply([]ike.Action{a})
	}
}

// scaleClients is the load generator's engine with n connections.
type scaleClients struct {
	e           *ike.Engine
	sent        []ike.Send
	established int
	failed      []string
}

func newScaleClients(t testing.TB, n int) *scaleClients {
	t.Helper()
	cfg, err := loadgen.ClientConfig(loadgen.Options{
		Target:  netip.MustParseAddrPort("198.51.100.1:500"),
		Sources: netip.MustParsePrefix("198.19.0.0/16"),
		Count:   n,
		PSK:     []byte("bench secret"),
	}, 500, 4500)
	if err != nil {
		t.Fatal(err)
	}
	e, err := ike.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &scaleClients{e: e}
}

func (c *scaleClients) apply(acts []ike.Action) {
	for _, a := range acts {
		switch a := a.(type) {
		case ike.Send:
			c.sent = append(c.sent, a)
		case ike.Event:
			switch a.Kind {
			case ike.EventEstablished:
				c.established++
			case ike.EventFailed, ike.EventChildFailed:
				c.failed = append(c.failed, a.Reason)
			}
		}
	}
}

// pump delivers datagrams both ways until none is left. Each arrives as a copy of its
// exact length, as the datapath hands them over.
func pump(now time.Time, g *scaleGateway, c *scaleClients) {
	for len(g.sent)+len(c.sent) > 0 {
		toGW, toCl := c.sent, g.sent
		c.sent, g.sent = nil, nil
		for _, s := range toGW {
			g.apply(g.engine.HandleDatagram(now, s.Remote, s.Local, bytes.Clone(s.Data)))
		}
		for _, s := range toCl {
			c.apply(c.e.HandleDatagram(now, s.Remote, s.Local, bytes.Clone(s.Data)))
		}
	}
}

// establish runs n handshakes against g, window at a time, on a fake clock that
// advances by step per round; it returns the time reached.
func establish(t testing.TB, g *scaleGateway, c *scaleClients, n, window int, now time.Time, step time.Duration) time.Time {
	t.Helper()
	for next := 0; next < n; {
		for k := 0; k < window && next < n; k++ {
			_, acts, err := c.e.Initiate(now, "c"+strconv.Itoa(next))
			if err != nil {
				t.Fatal(err)
			}
			c.apply(acts)
			next++
		}
		pump(now, g, c)
		now = now.Add(step)
	}
	if c.established != n || len(c.failed) > 0 {
		t.Fatalf("established %d of %d; failures: %v", c.established, n, c.failed[:min(len(c.failed), 5)])
	}
	return now
}

func heapInUse() uint64 {
	// The daemons of earlier tests in this process may still be winding down: their
	// goroutines and what they hold go first.
	for range 100 {
		n := runtime.NumGoroutine()
		time.Sleep(20 * time.Millisecond)
		if runtime.NumGoroutine() >= n {
			break
		}
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestGatewayMemoryPerSA measures the gateway's heap per established IKE SA with one
// Child SA (the engine's state, both directions of ESP state in the datapath and the
// daemon's route bookkeeping). MOBIKEVPN_SCALE_N sets how many (default 2000);
// MOBIKEVPN_HEAP_PROFILE names a file to write a heap profile to, taken while the SAs
// are in place.
func TestGatewayMemoryPerSA(t *testing.T) {
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("MOBIKEVPN_SCALE_N")); err == nil && v > 0 {
		n = v
	}
	profile := os.Getenv("MOBIKEVPN_HEAP_PROFILE")
	if profile != "" {
		old := runtime.MemProfileRate
		runtime.MemProfileRate = 1
		defer func() { runtime.MemProfileRate = old }()
	}
	g := newScaleGateway(t, scaleGatewayYAML)
	c := newScaleClients(t, n)
	before := heapInUse()
	start := time.Now()
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	establish(t, g, c, n, 50, now, time.Millisecond)
	took := time.Since(start)
	// The clients' own state must not count.
	c = nil
	after := heapInUse()
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	sas := g.engine.Status(now)
	if len(sas) != n {
		t.Fatalf("gateway has %d IKE SAs, want %d", len(sas), n)
	}
	for _, s := range sas {
		if len(s.Children) != 1 {
			t.Fatalf("IKE SA %d has %d Child SAs", s.ID, len(s.Children))
		}
		if _, ok := g.dp.InboundCounters(s.Children[0].SPIIn); !ok {
			t.Fatalf("inbound SA %08x of IKE SA %d not in the datapath", s.Children[0].SPIIn, s.ID)
		}
		if _, ok := g.dp.OutboundCounters(s.Children[0].Policy); !ok {
			t.Fatalf("outbound SA of IKE SA %d not in the datapath", s.ID)
		}
	}
	perSA := float64(after-before) / float64(n)
	t.Logf("%d IKE SAs + Child SAs in process in %v: gateway heap %.0f bytes (%.2f KiB) per SA", n, took.Round(time.Millisecond), perSA, perSA/1024)
	// The target is 8 KiB; the bound leaves room for the runtime's map growth steps.
	if perSA > 8*1024 {
		t.Errorf("gateway heap per IKE SA + Child SA is %.2f KiB, more than 8 KiB", perSA/1024)
	}
	runtime.KeepAlive(g)
}
