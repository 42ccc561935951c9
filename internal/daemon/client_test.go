package daemon

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/clock/clocktest"
	"github.com/mobikevpn/mobikevpn/internal/config"
	"github.com/mobikevpn/mobikevpn/udp/memnet"
)

// fakeHost records what the daemon asks of the host's DNS and kill switch.
type fakeHost struct {
	mu      sync.Mutex
	log     []string
	servers []netip.Addr
	blocked []netip.Prefix
	link    bool
}

func (f *fakeHost) note(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, s)
}

func (f *fakeHost) Apply(dev string, servers, vips []netip.Addr, routeAll bool) error {
	f.mu.Lock()
	f.servers = servers
	f.mu.Unlock()
	f.note("dns " + dev + " " + fmtAddrs(servers) + " vips " + fmtAddrs(vips) + " all=" + boolStr(routeAll))
	return nil
}

func (f *fakeHost) Revert() error { f.note("dns revert"); return nil }

func (f *fakeHost) Block(dev string, prefixes []netip.Prefix, linkSetup bool) error {
	f.mu.Lock()
	f.blocked, f.link = prefixes, linkSetup
	f.mu.Unlock()
	f.note("block " + dev)
	return nil
}

func (f *fakeHost) Remove() error { f.note("unblock"); return nil }

func (f *fakeHost) events() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log)
}

func fmtAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

func boolStr(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// TestClientHostInProcess: a full-tunnel client with kill_switch and dns: apply, named
// by host name: the kill switch is on before the first IKE message and blocks both
// whole families with DHCP/ND allowed, the host name is resolved, the gateway's DNS
// server is applied with the virtual IP and route-all, and on exit the DNS is
// reverted and the kill switch removed, in that order, after the SA is gone.
func TestClientHostInProcess(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := clocktest.New(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC))
	net := memnet.New()
	gwAddr := netip.MustParseAddr("198.51.100.1")
	gwYAML := strings.Replace(inprocessGateway, "    addrs: 198.18.100.0/24\n", "    addrs: 198.18.100.0/24\n    dns: [198.18.0.53]\n", 1)
	gwYAML = strings.Replace(gwYAML, "local_ts: [198.18.0.0/24]", "local_ts: [0.0.0.0/0]", 1)
	startNode(t, ctx, gwYAML, net.Host(gwAddr), clk)
	clYAML := strings.Replace(inprocessClient, "remote_addrs: [198.51.100.1]", "remote_addrs: [vpn.example.test]\n    kill_switch: true", 1)
	clYAML = strings.Replace(clYAML, "remote_ts: [198.18.0.0/24]", "remote_ts: [0.0.0.0/0]", 1)
	cfg, err := config.Parse([]byte(clYAML), "in-process.yaml")
	if err != nil {
		t.Fatal(err)
	}
	host := &fakeHost{}
	var lookups []string
	var mu sync.Mutex
	clCtx, stopClient := context.WithCancel(ctx)
	cl := startNodeWith(t, clCtx, cfg, net.Host(netip.MustParseAddr("192.0.2.10")), clk, Options{}, func(d *Deps) {
		d.DNS, d.KillSwitch = host, host
		d.LookupHost = func(_ context.Context, h string) ([]netip.Addr, error) {
			mu.Lock()
			lookups = append(lookups, h)
			mu.Unlock()
			return []netip.Addr{gwAddr}, nil
		}
	})
	waitFor(t, "established with the DNS server applied", func() bool {
		st := cl.status(t)
		return len(st) == 1 && len(st[0].ChildSAs) == 1 && slices.Contains(host.events(), "dns mvpn0 198.18.0.53 vips 198.18.100.1 all=yes")
	})
	mu.Lock()
	if !slices.Equal(lookups, []string{"vpn.example.test"}) {
		t.Errorf("lookups %v", lookups)
	}
	mu.Unlock()
	if ev := host.events(); ev[0] != "block mvpn0" {
		t.Errorf("the kill switch was not the first thing: %v", ev)
	}
	if want := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}; !slices.Equal(host.blocked, want) || !host.link {
		t.Errorf("kill switch blocks %v (link setup %v), want %v with link setup", host.blocked, host.link, want)
	}
	stopClient()
	select {
	case <-cl.done:
	case <-time.After(10 * time.Second):
		t.Fatal("client did not stop")
	}
	ev := host.events()
	if n := len(ev); n < 2 || ev[n-2] != "dns revert" || ev[n-1] != "unblock" {
		t.Errorf("on exit: %v, want the DNS reverted, then the kill switch removed", ev)
	}
}

// TestKillSwitchPrefixes: a split tunnel blocks its selectors only; a full tunnel in
// one family blocks both whole families.
func TestKillSwitchPrefixes(t *testing.T) {
	for _, tc := range []struct {
		ts   string
		want string
		link bool
	}{
		{"[198.18.0.0/16, 10.1.0.0/16]", "[198.18.0.0/16 10.1.0.0/16]", false},
		{"[0.0.0.0/0]", "[0.0.0.0/0 ::/0]", true},
		{`["::/0"]`, "[0.0.0.0/0 ::/0]", true},
	} {
		cfg, err := config.Parse([]byte(strings.Replace(strings.Replace(inprocessClient, "remote_ts: [198.18.0.0/24]", "remote_ts: "+tc.ts, 1),
			"    start_action: start\n", "    start_action: start\n    kill_switch: true\n", 1)), "x.yaml")
		if err != nil {
			t.Fatal(err)
		}
		got, link := killSwitchPrefixes(cfg)
		if s := fmtPrefixes(got); s != tc.want || link != tc.link {
			t.Errorf("remote_ts %s: blocks %s link %v, want %s link %v", tc.ts, s, link, tc.want, tc.link)
		}
	}
}

func fmtPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return "[" + strings.Join(s, " ") + "]"
}

// TestUpResolvesHostName: `up` of a connection named by host name resolves it first;
// a name that does not resolve fails the up with the resolver's error.
func TestUpResolvesHostName(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := clocktest.New(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC))
	net := memnet.New()
	gwAddr := netip.MustParseAddr("198.51.100.1")
	startNode(t, ctx, inprocessGateway, net.Host(gwAddr), clk)
	clYAML := strings.Replace(inprocessClient, "remote_addrs: [198.51.100.1]", "remote_addrs: [vpn.example.test]", 1)
	clYAML = strings.Replace(clYAML, "start_action: start", "start_action: none", 1)
	cfg, err := config.Parse([]byte(clYAML), "in-process.yaml")
	if err != nil {
		t.Fatal(err)
	}
	known := false
	cl := startNodeWith(t, ctx, cfg, net.Host(netip.MustParseAddr("192.0.2.10")), clk, Options{}, func(d *Deps) {
		d.LookupHost = func(_ context.Context, h string) ([]netip.Addr, error) {
			if !known {
				return nil, errors.New("no such host " + h)
			}
			return []netip.Addr{gwAddr}, nil
		}
	})
	upCtx, upCancel := context.WithTimeout(ctx, 10*time.Second)
	defer upCancel()
	if err := cl.d.Up(upCtx, "home"); err == nil || !strings.Contains(err.Error(), "no such host vpn.example.test") {
		t.Fatalf("up with an unknown name: %v", err)
	}
	known = true
	if err := cl.d.Up(upCtx, "home"); err != nil {
		t.Fatalf("up: %v", err)
	}
	if st := cl.status(t); len(st) != 1 || st[0].Remote != "198.51.100.1:4500" {
		t.Fatalf("status after up: %+v", st)
	}
}

// TestNotifyStates: the daemon tells its service manager READY=1 once it serves,
// RELOADING=1 and READY=1 around a reload, WATCHDOG=1 while its engine answers, and
// STOPPING=1 when it shuts down.
func TestNotifyStates(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := clocktest.New(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC))
	cfg, err := config.Parse([]byte(inprocessGateway), "in-process.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var states []string
	seen := func(s string) bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(states, s)
	}
	reload := make(chan struct{}, 1)
	nctx, stop := context.WithCancel(ctx)
	n := startNodeWith(t, nctx, cfg, memnet.New().Host(netip.MustParseAddr("198.51.100.1")), clk, Options{
		Reload:   reload,
		Watchdog: 50 * time.Millisecond,
		Notify: func(s string) {
			mu.Lock()
			states = append(states, s)
			mu.Unlock()
		},
	})
	waitFor(t, "READY=1 and WATCHDOG=1", func() bool { return seen("READY=1") && seen("WATCHDOG=1") })
	reload <- struct{}{}
	waitFor(t, "RELOADING=1", func() bool { return seen("RELOADING=1") })
	stop()
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		t.Fatal("daemon did not stop")
	}
	mu.Lock()
	defer mu.Unlock()
	if states[0] != "READY=1" || states[len(states)-1] != "STOPPING=1" {
		t.Errorf("states %v: want READY=1 first, STOPPING=1 last", states)
	}
	i := slices.Index(states, "RELOADING=1")
	if i < 0 || i+1 >= len(states) || !slices.Contains(states[i+1:], "READY=1") {
		t.Errorf("states %v: want READY=1 after RELOADING=1", states)
	}
}
