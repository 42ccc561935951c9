package daemon

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/esp"
	"github.com/mobikevpn/mobikevpn/ike"
	"github.com/mobikevpn/mobikevpn/internal/control"
	"github.com/mobikevpn/mobikevpn/internal/loadgen"
	"github.com/mobikevpn/mobikevpn/mobike"
	"github.com/mobikevpn/mobikevpn/tun/memtun"
	"github.com/mobikevpn/mobikevpn/udp/memnet"
)

// `switch --wait` against many clients, in process: the gateway half of the daemon
// (engine, datapath on an in-memory network, Switch as the control socket calls it),
// the load generator's engine as the clients, and the test itself as the daemon's
// engine goroutine, so that it decides when commands run and when events arrive.

const switchGatewayYAML = `
tun: { name: mvpn0, mtu: 1400 }
secrets:
  - ids: [gw.example.org, "*@bench.example.org"]
    psk: "bench secret"
connections:
  rw:
    local_addrs: [198.51.100.1, 198.51.100.2]
    proposals: [aes128gcm16-prfsha256-x25519]
    rmobike: true
    local: { auth: psk, id: gw.example.org }
    remote: { auth: psk }
    children:
      net:
        local_ts: [198.18.0.0/24]
        remote_ts: [dynamic]
        esp_proposals: [aes128gcm16]
`

var switchGW2 = netip.MustParseAddr("198.51.100.2")

type switchLab struct {
	t   *testing.T
	g   *scaleGateway
	c   *scaleClients
	now time.Time

	mu  sync.Mutex
	out []memnet.Packet // what the gateway's datapath sent (the daemon's own apply)
}

// newSwitchLab establishes n IKE SAs of R-MOBIKE clients with the gateway.
func newSwitchLab(t *testing.T, n int) *switchLab {
	t.Helper()
	l := &switchLab{t: t, g: newScaleGateway(t, switchGatewayYAML), now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	// The gateway's datapath sends into a network that hands every datagram to the test.
	net := memnet.New()
	net.SetFilter(func(p *memnet.Packet) []memnet.Packet {
		l.mu.Lock()
		l.out = append(l.out, memnet.Packet{Src: p.Src, Dst: p.Dst, Data: bytes.Clone(p.Data)})
		l.mu.Unlock()
		return nil
	})
	host := net.Host(netip.MustParseAddr("198.51.100.1"), switchGW2)
	ikeConns, err := host.Listen(500)
	if err != nil {
		t.Fatal(err)
	}
	natt, err := host.Listen(4500)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if l.g.socks, err = newIKESockets(500, ikeConns, 4500, natt, log); err != nil {
		t.Fatal(err)
	}
	l.g.dp, err = esp.New(esp.Config{TUN: memtun.New("mvpn0", 1400), Conns: natt,
		MTU: 1400, Logger: log, OnIKE: func([]byte, netip.AddrPort, netip.AddrPort) {}})
	if err != nil {
		t.Fatal(err)
	}
	l.g.apply(l.g.engine.SetLocalAddrs(l.now, []netip.Addr{netip.MustParseAddr("198.51.100.1"), switchGW2}))

	cfg, err := loadgen.ClientConfig(loadgen.Options{
		Target:  netip.MustParseAddrPort("198.51.100.1:500"),
		Sources: netip.MustParsePrefix("198.19.0.0/16"),
		Count:   n,
		PSK:     []byte("bench secret"),
	}, 500, 4500)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg.Connections {
		c.Mobike, c.RMobike = true, true
		c.SwitchAccept = mobike.SwitchPolicy{Additional: true}
	}
	e, err := ike.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l.c = &scaleClients{e: e}
	l.now = establish(t, l.g, l.c, n, 50, l.now, time.Millisecond)
	return l
}

// switchAsync runs the daemon's Switch as the control socket would, in its own goroutine.
func (l *switchLab) switchAsync(req control.SwitchRequest) <-chan error {
	l.t.Helper()
	s, err := req.Parse()
	if err != nil {
		l.t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() {
		_, err := l.g.daemon.Switch(context.Background(), s)
		res <- err
	}()
	return res
}

// step runs one command of the daemon's engine goroutine.
func (l *switchLab) step() {
	l.t.Helper()
	select {
	case f := <-l.g.cmds:
		f(l.now)
	case <-time.After(time.Minute):
		l.t.Fatal("no command reached the engine goroutine")
	}
}

// result serves the engine goroutine's commands until res has the Switch's result.
func (l *switchLab) result(res <-chan error) error {
	l.t.Helper()
	deadline := time.After(5 * time.Minute)
	for {
		select {
		case err := <-res:
			return err
		case f := <-l.g.cmds:
			f(l.now)
		case <-deadline:
			l.t.Fatal("Switch did not return")
		}
	}
}

// exchange carries the switch requests the gateway sent to the clients and everything
// that follows until both sides are quiet, then hands the gateway's events to the
// daemon in one go, as its engine goroutine does with one batch of actions. It returns
// how many EventSwitched there were.
func (l *switchLab) exchange() (int, error) {
	var events []ike.Action
	for round := 0; ; round++ {
		if round > 100 {
			return 0, errors.New("the exchange does not end")
		}
		l.mu.Lock()
		out := l.out
		l.out = nil
		l.mu.Unlock()
		for _, p := range out {
			data := p.Data
			if p.Src.Port() == 4500 {
				data = data[4:] // the non-ESP marker
			}
			l.c.apply(l.c.e.HandleDatagram(l.now, p.Dst, p.Src, data))
		}
		toGW, toCl := l.c.sent, l.g.sent
		l.c.sent, l.g.sent = nil, nil
		if len(out)+len(toGW)+len(toCl) == 0 {
			break
		}
		for _, s := range toGW {
			for _, a := range l.g.engine.HandleDatagram(l.now, s.Remote, s.Local, bytes.Clone(s.Data)) {
				if _, ok := a.(ike.Event); ok {
					events = append(events, a)
					continue
				}
				l.g.apply([]ike.Action{a})
			}
		}
		for _, s := range toCl {
			l.c.apply(l.c.e.HandleDatagram(l.now, s.Remote, s.Local, bytes.Clone(s.Data)))
		}
	}
	switched := 0
	for _, a := range events {
		if a.(ike.Event).Kind == ike.EventSwitched {
			switched++
		}
	}
	// One processor: the waiting request's goroutine cannot run while the engine
	// goroutine delivers the batch, as on a busy gateway.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	l.g.daemon.apply(events)
	return switched, nil
}

// TestSwitchWaitCountsEveryCompletion: `switch --wait` for more SAs than any fixed
// buffer, all of which complete in one batch of the engine's actions, reports every
// one of them as moved (issue 11: with 64 completions buffered, the rest were lost and
// reported as not moved).
func TestSwitchWaitCountsEveryCompletion(t *testing.T) {
	const n = 200
	l := newSwitchLab(t, n)
	res := l.switchAsync(control.SwitchRequest{To: switchGW2.String(), All: true, Wait: time.Minute})
	l.step() // Switch: the engine sends n SWITCH_TO_IP_ADDRESS
	if got, err := l.exchange(); err != nil || got != n {
		t.Fatalf("%d IKE SAs switched, want %d (%v)", got, n, err)
	}
	if err := l.result(res); err != nil {
		_, notMoved, _ := strings.Cut(err.Error(), "not moved: ")
		t.Fatalf("switch --wait reports %d of %d IKE SAs as not moved: %.300s", strings.Count(notMoved, "(SA #"), n, notMoved)
	}
	for _, s := range l.g.engine.Status(l.now) {
		if s.Local.Addr() != switchGW2 {
			t.Fatalf("IKE SA %d at %v", s.ID, s.Local)
		}
	}
	if len(l.g.switchWaiters) != 0 {
		t.Errorf("%d IKE SAs still have switch waiters", len(l.g.switchWaiters))
	}
}

// TestSwitchWaitTimeoutKeepsOtherWaiters: a `switch --wait` that runs out removes its
// own wait only; another request waiting for the same SA still sees it move.
func TestSwitchWaitTimeoutKeepsOtherWaiters(t *testing.T) {
	l := newSwitchLab(t, 1)
	id := uint64(l.g.engine.Status(l.now)[0].ID)
	long := l.switchAsync(control.SwitchRequest{To: switchGW2.String(), SA: &id, Wait: time.Minute})
	l.step()
	short := l.switchAsync(control.SwitchRequest{To: switchGW2.String(), SA: &id, Wait: time.Millisecond})
	l.step()
	if err := l.result(short); err == nil || !strings.Contains(err.Error(), "not moved") {
		t.Fatalf("the short wait: %v", err)
	}
	if got, err := l.exchange(); err != nil || got != 1 {
		t.Fatalf("%d IKE SAs switched, want 1 (%v)", got, err)
	}
	if err := l.result(long); err != nil {
		t.Fatalf("the long wait: %v", err)
	}
	if len(l.g.switchWaiters) != 0 {
		t.Errorf("switch waiters left: %v", l.g.switchWaiters)
	}
}

// TestSwitchWaitAbandonedNeverBlocks: requests that ended (ran out, or their client
// left) leave nothing that could block the engine goroutine when their SAs move later.
func TestSwitchWaitAbandonedNeverBlocks(t *testing.T) {
	const n = 100
	l := newSwitchLab(t, n)
	ctx, cancel := context.WithCancel(context.Background())
	left := make(chan error, 1)
	go func() {
		_, err := l.g.daemon.Switch(ctx, control.Switch{To: switchGW2, All: true, Wait: time.Minute})
		left <- err
	}()
	l.step()
	cancel()
	if err := l.result(left); err == nil {
		t.Fatal("a request whose client left succeeded")
	}
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := l.exchange()
		done <- result{n, err}
	}()
	select {
	case r := <-done:
		if r.err != nil || r.n != n {
			t.Fatalf("%d IKE SAs switched, want %d (%v)", r.n, n, r.err)
		}
	case <-time.After(time.Minute):
		t.Fatal("delivering the switches blocked the engine goroutine")
	}
	// Whatever the ended request left is gone once its SAs moved (and its own
	// clean-up, if it queued one, has run).
	for len(l.g.cmds) > 0 {
		(<-l.g.cmds)(l.now)
	}
	if len(l.g.switchWaiters) != 0 {
		t.Errorf("%d IKE SAs still have switch waiters", len(l.g.switchWaiters))
	}
}

// TestSwitchWaitFollowsIKERekey: an IKE SA rekeyed while its switch is under way
// completes the switch as the new IKE SA; `switch --wait` still reports it moved, by the
// id it was asked for.
func TestSwitchWaitFollowsIKERekey(t *testing.T) {
	l := newSwitchLab(t, 1)
	id := uint64(l.g.engine.Status(l.now)[0].ID)
	res := l.switchAsync(control.SwitchRequest{To: switchGW2.String(), SA: &id, Wait: 5 * time.Second})
	l.step()
	l.g.daemon.apply([]ike.Action{
		ike.Event{IKESA: id + 100, Kind: ike.EventRekeyed, Reason: "replaces IKE SA", Replaces: id},
		ike.Event{IKESA: id + 100, Kind: ike.EventSwitched, Reason: switchGW2.String()},
	})
	if err := l.result(res); err != nil {
		t.Fatalf("switch --wait across an IKE SA rekey: %v", err)
	}
	if len(l.g.switchWaiters) != 0 {
		t.Errorf("switch waiters left: %v", l.g.switchWaiters)
	}
}
