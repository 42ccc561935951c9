package daemon

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/clock/clocktest"
	"github.com/mobikevpn/mobikevpn/internal/config"
	"github.com/mobikevpn/mobikevpn/internal/control"
	"github.com/mobikevpn/mobikevpn/internal/netmon"
	"github.com/mobikevpn/mobikevpn/tun/memtun"
	"github.com/mobikevpn/mobikevpn/udp"
	"github.com/mobikevpn/mobikevpn/udp/memnet"
)

// Two complete daemons in one process, on an in-memory network and in-memory TUN
// devices, on one fake clock: a tunnel, a switch, a MOBIKE move and rekeys end to end,
// without root and in milliseconds (issue 12's composition root).

// fakeNet records what the daemon asks of the system's addresses and routes.
type fakeNet struct {
	mu     sync.Mutex
	addrs  []netip.Prefix
	routes []netip.Prefix
}

func (n *fakeNet) Up(string) error { return nil }
func (n *fakeNet) AddAddress(_ string, p netip.Prefix) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.addrs = append(n.addrs, p)
	return nil
}
func (n *fakeNet) AddRoute(_ string, p netip.Prefix) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.routes = append(n.routes, p)
	return nil
}
func (n *fakeNet) DelAddress(_ string, p netip.Prefix) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.addrs = slices.DeleteFunc(n.addrs, func(x netip.Prefix) bool { return x == p })
	return nil
}
func (n *fakeNet) DelRoute(_ string, p netip.Prefix) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.routes = slices.DeleteFunc(n.routes, func(x netip.Prefix) bool { return x == p })
	return nil
}
func (n *fakeNet) Close() error { return nil }

// node is one daemon of the test.
type node struct {
	d       *Daemon
	dev     *memtun.Device
	host    *memnet.Host
	conns   []udp.Conn
	changes chan netmon.Change
	done    chan error
}

func startNode(t *testing.T, ctx context.Context, yaml string, host *memnet.Host, clock *clocktest.Fake) *node {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), "in-process.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return startNodeWith(t, ctx, cfg, host, clock, Options{})
}

// startNodeWith runs a daemon on cfg with opts.
func startNodeWith(t *testing.T, ctx context.Context, cfg *config.Config, host *memnet.Host, clock *clocktest.Fake, opts Options, mods ...func(*Deps)) *node {
	t.Helper()
	ike, err := host.Listen(cfg.Ports.IKE)
	if err != nil {
		t.Fatal(err)
	}
	natt, err := host.Listen(cfg.Ports.NATT)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{dev: memtun.New("mvpn0", 1400), host: host, conns: append(ike, natt...), changes: make(chan netmon.Change, 4), done: make(chan error, 1)}
	deps := Deps{
		TUN:       n.dev,
		Net:       &fakeNet{},
		IKEConns:  ike,
		NATTConns: natt,
		Clock:     clock,
		SourceAddr: func(remote netip.Addr) (netip.Addr, error) {
			for _, a := range host.Addrs() {
				if a.Is4() == remote.Is4() {
					return a, nil
				}
			}
			return netip.Addr{}, errors.New("no address of the family")
		},
		Watch: func(ctx context.Context, report func(netmon.Change)) error {
			report(netmon.Change{Addrs: host.Addrs()})
			for {
				select {
				case c := <-n.changes:
					report(c)
				case <-ctx.Done():
					return nil
				}
			}
		},
	}
	for _, mod := range mods {
		mod(&deps)
	}
	var w io.Writer = io.Discard
	if testing.Verbose() {
		w = testLogWriter{t}
	}
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if n.d, err = New(cfg, log, deps); err != nil {
		t.Fatal(err)
	}
	go func() { n.done <- n.d.Run(ctx, opts) }()
	return n
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}

// status is the node's IKE SAs, as the control socket would report them.
func (n *node) status(t *testing.T) []control.IKESA {
	t.Helper()
	st, err := n.d.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.IKESAs
}

// waitFor polls cond (real time: the daemons react at once, only their timers wait for
// the fake clock).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within 10 s", what)
}

// udpPacket is an IPv4 UDP datagram from src to dst with a sequence number.
func udpPacket(src, dst netip.Addr, seq uint32) []byte {
	b := make([]byte, 20+8+4)
	b[0], b[8], b[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	copy(b[12:16], src.AsSlice())
	copy(b[16:20], dst.AsSlice())
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(b[20:], 5000)
	binary.BigEndian.PutUint16(b[22:], 5001)
	binary.BigEndian.PutUint16(b[24:], 12)
	binary.BigEndian.PutUint32(b[28:], seq)
	return b
}

// through sends a datagram into one node's TUN device and expects it out of the other's.
func through(t *testing.T, from, to *node, src, dst netip.Addr, seq uint32) {
	t.Helper()
	if err := from.dev.Inject(udpPacket(src, dst, seq)); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case p := <-to.dev.Written():
			if len(p) >= 32 && binary.BigEndian.Uint32(p[28:]) == seq {
				return
			}
		case <-timeout:
			t.Fatalf("datagram %d from %v to %v did not come through", seq, src, dst)
		}
	}
}

const inprocessGateway = `
tun: { name: mvpn0, mtu: 1400, addrs: [198.18.0.1/24] }
secrets:
  - ids: [gw.example.org, alice@example.org]
    psk: "in-process secret"
pools:
  - name: rw
    addrs: 198.18.100.0/24
connections:
  rw:
    local_addrs: [198.51.100.1, 203.0.113.1]
    remote_addrs: ["%any"]
    proposals: [aes128gcm16-prfsha256-x25519]
    pools: [rw]
    switch_hold: 0s
    local: { auth: psk, id: gw.example.org }
    remote: { auth: psk, id: "%any" }
    children:
      net:
        local_ts: [198.18.0.0/24]
        remote_ts: [dynamic]
        esp_proposals: [aes128gcm16]
`

const inprocessClient = `
tun: { name: mvpn0, mtu: 1400 }
secrets:
  - ids: [gw.example.org, alice@example.org]
    psk: "in-process secret"
connections:
  home:
    remote_addrs: [198.51.100.1]
    proposals: [aes128gcm16-prfsha256-x25519]
    vips: [0.0.0.0]
    rekey_time: 2h
    local: { auth: psk, id: alice@example.org }
    remote: { auth: psk, id: gw.example.org }
    start_action: start
    children:
      net:
        local_ts: [dynamic]
        remote_ts: [198.18.0.0/24]
        esp_proposals: [aes128gcm16]
        rekey_time: 1h
`

func TestTwoDaemonsInProcess(t *testing.T) {
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := clocktest.New(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC))
	net := memnet.New()
	gwAddr, gwAddr2 := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("203.0.113.1")
	clAddr, clAddr2 := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.20")
	gw := startNode(t, ctx, inprocessGateway, net.Host(gwAddr, gwAddr2), clock)
	cl := startNode(t, ctx, inprocessClient, net.Host(clAddr), clock)
	server := netip.MustParseAddr("198.18.0.1")

	// The tunnel.
	var vip netip.Addr
	waitFor(t, "established", func() bool {
		st := cl.status(t)
		if len(st) != 1 || len(st[0].ChildSAs) != 1 || len(st[0].VirtualIPs) != 1 {
			return false
		}
		vip = netip.MustParseAddr(st[0].VirtualIPs[0])
		return true
	})
	through(t, cl, gw, vip, server, 1)
	through(t, gw, cl, server, vip, 2)
	spis := cl.status(t)[0].SPIi + cl.status(t)[0].SPIr

	// The gateway asks the client to move to its second address.
	msg, err := gw.d.Switch(ctx, control.Switch{To: gwAddr2, All: true, Wait: 5 * time.Second})
	if err != nil {
		t.Fatalf("switch: %v (%s)", err, msg)
	}
	// The gateway saw the UPDATE_SA_ADDRESSES; the client moves once its reply is back.
	waitFor(t, "the client on the gateway's second address", func() bool {
		st := cl.status(t)
		return len(st) == 1 && st[0].Remote == "203.0.113.1:4500" && st[0].MobikeState == "stable"
	})
	through(t, cl, gw, vip, server, 3)
	through(t, gw, cl, server, vip, 4)

	// The client's address changes (MOBIKE).
	if err := cl.host.AddAddr(clAddr2); err != nil {
		t.Fatal(err)
	}
	if err := cl.host.RemoveAddr(clAddr); err != nil {
		t.Fatal(err)
	}
	cl.changes <- netmon.Change{Addrs: []netip.Addr{clAddr2}}
	waitFor(t, "the gateway follows the client's move", func() bool {
		st := gw.status(t)
		return len(st) == 1 && st[0].Remote == "192.0.2.20:4500" && st[0].MobikeState == "stable"
	})
	through(t, cl, gw, vip, server, 5)
	through(t, gw, cl, server, vip, 6)

	// An hour later the Child SA is rekeyed, two hours later the IKE SA too.
	childSPI := cl.status(t)[0].ChildSAs[0].SPIIn
	clock.Advance(61 * time.Minute)
	waitFor(t, "the Child SA rekey", func() bool {
		clock.Advance(100 * time.Millisecond)
		st := cl.status(t)
		return len(st) == 1 && len(st[0].ChildSAs) == 1 && st[0].ChildSAs[0].SPIIn != childSPI && st[0].ChildSAs[0].State == "installed"
	})
	through(t, cl, gw, vip, server, 7)
	clock.Advance(61 * time.Minute)
	// (A rekey waits for the exchanges in flight, such as the liveness checks that
	// were due meanwhile, and tries again a second later: let time run a little.)
	waitFor(t, "the IKE SA rekey", func() bool {
		clock.Advance(100 * time.Millisecond)
		st := cl.status(t)
		return len(st) == 1 && st[0].SPIi+st[0].SPIr != spis && st[0].State == "established"
	})
	through(t, cl, gw, vip, server, 8)
	through(t, gw, cl, server, vip, 9)

	cancel()
	for _, n := range []*node{gw, cl} {
		if err := <-n.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Logf("two daemons in process: handshake, traffic, a switch, a MOBIKE move, a Child SA and an IKE SA rekey in %v", time.Since(start).Round(time.Millisecond))
}

// TestDatapathStopEndsRun: when the datapath (the NAT-T socket's reader) or the IKE
// port's reader stops on its own (here a socket closed under it), Run returns its
// error instead of hanging.
func TestDatapathStopEndsRun(t *testing.T) {
	for _, c := range []struct {
		name string
		port uint16
		want string
	}{{"NAT-T socket", 4500, "datapath: "}, {"IKE socket", 500, "IKE port: "}} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			clock := clocktest.New(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC))
			gw := startNode(t, ctx, inprocessGateway, memnet.New().Host(netip.MustParseAddr("198.51.100.1")), clock)
			waitFor(t, "running", func() bool { gw.status(t); return true })
			closed := 0
			for _, conn := range gw.conns {
				if conn.LocalAddr().Port() == c.port {
					conn.Close()
					closed++
				}
			}
			if closed == 0 {
				t.Fatalf("no socket on port %d", c.port)
			}
			select {
			case err := <-gw.done:
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("Run: %v, want an error starting %q", err, c.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return after a socket reader stopped")
			}
		})
	}
}

// TestReloadThroughEngineLoop: Options.Reload (SIGHUP) reaches the engine goroutine,
// which loads the configuration file again.
func TestReloadThroughEngineLoop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	path := filepath.Join(t.TempDir(), "gw.yaml")
	if err := os.WriteFile(path, []byte(inprocessGateway), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	reload := make(chan struct{}, 1)
	clock := clocktest.New(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC))
	gw := startNodeWith(t, ctx, cfg, memnet.New().Host(netip.MustParseAddr("198.51.100.1")), clock, Options{Reload: reload})
	current := func() *config.Config {
		var c *config.Config
		if err := gw.d.run(ctx, func(time.Time) { c = gw.d.cfg }); err != nil {
			t.Fatal(err)
		}
		return c
	}
	if current() != cfg {
		t.Fatal("not running on the configuration it was given")
	}
	reload <- struct{}{}
	waitFor(t, "the configuration reloaded", func() bool { return current() != cfg })
	cancel()
	if err := <-gw.done; err != nil {
		t.Errorf("Run: %v", err)
	}
}
