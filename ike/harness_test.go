package ike

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/wire"
)

// The test harness runs IKE engines against each other in one process: a fake network
// of datagrams with optional loss, reordering and NAT, and a fake clock that jumps to
// the next timer when nothing is in flight.

var (
	gwAddr     = netip.MustParseAddr("198.51.100.1")
	clientAddr = netip.MustParseAddr("192.0.2.10")
	t0         = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
)

type datagram struct {
	from, to netip.AddrPort
	data     []byte
}

type endpoint struct {
	name       string
	e          *Engine
	addr       netip.Addr   // the first address
	addrs      []netip.Addr // every address datagrams are delivered to
	src        netip.Addr   // what the routing table picks as source
	moves      []UpdateEndpoints
	outbound   map[uint64]InstallOutbound // by policy
	inbound    map[uint32]InstallInbound  // by SPI
	removedIn  []RemoveInbound
	removedOut []RemoveOutbound
	events     []Event
	vips       []netip.Addr
	keylogs    []IKEKeysLog
	sent       []datagram
	// espTo is every destination an outbound flow was installed or moved to, in order.
	espTo []netip.AddrPort
	// aaa answers the engine's AAARequests (EAP-RADIUS), delivered at the next step;
	// nil: they stay unanswered. aaaReqs are the requests seen.
	aaa     func(AAARequest) AAAAnswer
	aaaReqs []AAARequest
}

type testNet struct {
	t        *testing.T
	now      time.Time
	eps      []*endpoint
	inflight []datagram
	rng      *rand.Rand
	// drop decides whether a datagram is lost; nil: nothing is.
	drop func(d datagram) bool
	// reorder delivers a random in-flight datagram instead of the oldest.
	reorder bool
	// nat rewrites datagrams on the way (outbound from a NATed host and back).
	nat func(d *datagram)
	// delivered counts datagrams handed to an engine.
	delivered int
	// lost holds datagrams sent to addresses nobody in the test has (third parties).
	lost []datagram
	// later are answers (AAAAnswered) delivered before the next datagram.
	later []func()
}

func newTestNet(t *testing.T) *testNet {
	return &testNet{t: t, now: t0, rng: rand.New(rand.NewPCG(1, 2))}
}

func (n *testNet) add(name string, addr netip.Addr, cfg Config) *endpoint {
	n.t.Helper()
	if cfg.Rand == nil {
		cfg.Rand = rand.NewChaCha8([32]byte{byte(len(n.eps) + 1)})
	}
	ep := &endpoint{name: name, addr: addr, addrs: []netip.Addr{addr}, src: addr,
		outbound: make(map[uint64]InstallOutbound), inbound: make(map[uint32]InstallInbound)}
	cfg.SourceAddr = func(netip.Addr) (netip.Addr, error) { return ep.src, nil }
	e, err := New(cfg)
	if err != nil {
		n.t.Fatalf("New(%s): %v", name, err)
	}
	ep.e = e
	n.eps = append(n.eps, ep)
	return ep
}

func (n *testNet) endpointFor(a netip.Addr) *endpoint {
	for _, ep := range n.eps {
		if slices.Contains(ep.addrs, a) {
			return ep
		}
	}
	return nil
}

// apply carries out an endpoint's actions.
func (n *testNet) apply(ep *endpoint, actions []Action) {
	for _, a := range actions {
		switch a := a.(type) {
		case Send:
			if !a.Local.Addr().IsValid() {
				n.t.Fatalf("%s: send without a source address", ep.name)
			}
			if !slices.Contains(ep.addrs, a.Local.Addr()) {
				continue // the host does not have that address (any more): the send fails
			}
			d := datagram{from: a.Local, to: a.Remote, data: bytes.Clone(a.Data)}
			ep.sent = append(ep.sent, d)
			if n.nat != nil {
				n.nat(&d)
			}
			if n.drop != nil && n.drop(d) {
				continue
			}
			n.inflight = append(n.inflight, d)
		case InstallInbound:
			if _, dup := ep.inbound[a.SPI]; dup {
				n.t.Fatalf("%s: inbound SPI %08x installed twice", ep.name, a.SPI)
			}
			ep.inbound[a.SPI] = a
		case InstallOutbound:
			ep.outbound[a.Policy] = a
			ep.espTo = append(ep.espTo, a.Remote)
		case RemoveInbound:
			if _, ok := ep.inbound[a.SPI]; !ok {
				n.t.Fatalf("%s: removing inbound SPI %08x that is not installed", ep.name, a.SPI)
			}
			ep.removedIn = append(ep.removedIn, a)
			delete(ep.inbound, a.SPI)
		case RemoveOutbound:
			if _, ok := ep.outbound[a.Policy]; !ok {
				n.t.Fatalf("%s: removing outbound policy %d that is not installed", ep.name, a.Policy)
			}
			ep.removedOut = append(ep.removedOut, a)
			delete(ep.outbound, a.Policy)
		case Event:
			ep.events = append(ep.events, a)
		case VirtualIPs:
			if a.Local {
				if a.Remove {
					ep.vips = nil
				} else {
					ep.vips = a.Addrs
				}
			}
		case IKEKeysLog:
			ep.keylogs = append(ep.keylogs, a)
		case AAARequest:
			ep.aaaReqs = append(ep.aaaReqs, a)
			if ep.aaa != nil {
				ans := ep.aaa(a)
				n.later = append(n.later, func() { n.apply(ep, ep.e.AAAAnswered(n.now, a.IKESA, a.Seq, ans)) })
			}
		case UpdateEndpoints:
			o, ok := ep.outbound[a.Policy]
			if !ok {
				n.t.Fatalf("%s: moving policy %d that is not installed", ep.name, a.Policy)
			}
			o.Local, o.Remote, o.Keepalive = a.Local, a.Remote, a.Keepalive
			ep.outbound[a.Policy] = o
			ep.moves = append(ep.moves, a)
			ep.espTo = append(ep.espTo, a.Remote)
		}
	}
}

// driver runs ep's engine (the one it has now: a test may replace it) synchronously on
// the fake clock: HandleDatagram and Tick, no Clock, no Run.
func (n *testNet) driver(ep *endpoint) *Driver {
	return &Driver{Engine: ep.e, Exec: func(acts []Action) { n.apply(ep, acts) }}
}

// step delivers one datagram or fires the next timer; it reports false when nothing is
// left to do before limit.
func (n *testNet) step(limit time.Time) bool {
	if len(n.later) > 0 {
		f := n.later[0]
		n.later = n.later[1:]
		f()
		return true
	}
	if len(n.inflight) > 0 {
		i := 0
		if n.reorder {
			i = n.rng.IntN(len(n.inflight))
		}
		d := n.inflight[i]
		n.inflight = append(n.inflight[:i], n.inflight[i+1:]...)
		ep := n.endpointFor(d.to.Addr())
		if ep == nil {
			n.lost = append(n.lost, d)
			return true // lost: nobody there
		}
		n.delivered++
		n.driver(ep).HandleDatagram(n.now, Datagram{Local: d.to, Remote: d.from, Data: d.data})
		return true
	}
	var next time.Time
	for _, ep := range n.eps {
		if at, ok := ep.e.NextDeadline(); ok && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	if next.IsZero() || next.After(limit) {
		return false
	}
	if next.After(n.now) {
		n.now = next
	}
	for _, ep := range n.eps {
		n.driver(ep).Tick(n.now)
	}
	return true
}

// run steps until cond holds or nothing is left to do within d of fake time.
func (n *testNet) run(d time.Duration, cond func() bool) bool {
	limit := n.now.Add(d)
	for i := 0; i < 100000; i++ {
		if cond != nil && cond() {
			return true
		}
		if !n.step(limit) {
			return cond != nil && cond()
		}
	}
	n.t.Fatal("test network did not settle")
	return false
}

func (ep *endpoint) hasEvent(k EventKind) *Event {
	for i := range ep.events {
		if ep.events[i].Kind == k {
			return &ep.events[i]
		}
	}
	return nil
}

func mustIKE(t testing.TB, s ...string) []wire.Proposal {
	t.Helper()
	var out []wire.Proposal
	for _, p := range s {
		ps, err := ikecrypto.ParseIKEProposal(p)
		if err != nil {
			t.Fatalf("ParseIKEProposal(%q): %v", p, err)
		}
		out = append(out, ps...)
	}
	return out
}

func mustESP(t testing.TB, s ...string) []wire.Proposal {
	t.Helper()
	var out []wire.Proposal
	for _, p := range s {
		ps, err := ikecrypto.ParseESPProposal(p)
		if err != nil {
			t.Fatalf("ParseESPProposal(%q): %v", p, err)
		}
		out = append(out, ps...)
	}
	return out
}

func prefixTS(s string) TSConfig {
	return TSConfig{Selector: wire.TSFromPrefix(netip.MustParsePrefix(s))}
}

var dynamicTS = TSConfig{Dynamic: true}

const testPSK = "a long random secret, for tests only"

func pskFunc(secret string) func(string, string) ([]byte, bool) {
	return func(string, string) ([]byte, bool) { return []byte(secret), true }
}

// gatewayConfig is a responder with a pool, like the README's example.
func gatewayConfig(t testing.TB, ike, esp string) Config {
	return Config{
		CookieThreshold: DefaultCookieThreshold,
		Connections: []*Conn{{
			Name:        "rw",
			LocalAddrs:  []netip.Addr{gwAddr},
			Proposals:   mustIKE(t, ike),
			Mobike:      true,
			RMobike:     true,
			Encap:       true,
			DPDDelay:    30 * time.Second,
			DPDAction:   "clear",
			LocalID:     "gw.example.org",
			RemoteID:    "%any",
			LocalAuth:   "psk",
			RemoteAuth:  "psk",
			Pools:       []string{"rw"},
			StartAction: "none",
			Children: []*ChildConfig{{
				Name:         "net",
				LocalTS:      []TSConfig{prefixTS("198.18.0.0/24")},
				RemoteTS:     []TSConfig{dynamicTS},
				ESPProposals: mustESP(t, esp),
			}},
		}},
		Pools: []*PoolConfig{{Name: "rw", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.100.0/24")},
			DNS: []netip.Addr{netip.MustParseAddr("198.18.0.53")}}},
		PSK: pskFunc(testPSK),
	}
}

// clientConfig is an initiator asking for a virtual IP.
func clientConfig(t testing.TB, ike, esp string) Config {
	return Config{
		Connections: []*Conn{{
			Name:        "home",
			RemoteAddrs: []netip.Addr{gwAddr},
			RemotePort:  500,
			Proposals:   mustIKE(t, ike),
			Mobike:      true,
			RMobike:     true,
			Encap:       true,
			DPDDelay:    30 * time.Second,
			DPDAction:   "restart",
			LocalID:     "alice@example.org",
			RemoteID:    "gw.example.org",
			LocalAuth:   "psk",
			RemoteAuth:  "psk",
			VIPs:        []netip.Addr{netip.IPv4Unspecified()},
			StartAction: "start",
			Children: []*ChildConfig{{
				Name:         "net",
				LocalTS:      []TSConfig{dynamicTS},
				RemoteTS:     []TSConfig{prefixTS("198.18.0.0/16")},
				ESPProposals: mustESP(t, esp),
			}},
		}},
		PSK: pskFunc(testPSK),
	}
}

// pair builds a gateway and a client, lets mutate adjust their configs, and starts the
// client's connection.
func pair(t *testing.T, ike, esp string, mutate func(gw, cl *Config)) (*testNet, *endpoint, *endpoint) {
	t.Helper()
	n := newTestNet(t)
	gc, cc := gatewayConfig(t, ike, esp), clientConfig(t, ike, esp)
	if mutate != nil {
		mutate(&gc, &cc)
	}
	gw := n.add("gateway", gwAddr, gc)
	cl := n.add("client", clientAddr, cc)
	n.apply(cl, cl.e.StartAll(n.now))
	return n, gw, cl
}

func established(eps ...*endpoint) func() bool {
	return func() bool {
		for _, ep := range eps {
			if ep.hasEvent(EventEstablished) == nil {
				return false
			}
		}
		return true
	}
}

// initRequest builds a raw IKE_SA_INIT request as some other initiator would.
func initRequest(t testing.TB, spi uint64, extra ...wire.Payload) []byte {
	t.Helper()
	kex, err := ikecrypto.NewKeyExchange(wire.DH_X25519, rand.NewChaCha8([32]byte{9}))
	if err != nil {
		t.Fatal(err)
	}
	props := mustIKE(t, "aes128gcm16-prfsha256-x25519")
	props[0].Num = 1
	ps := append([]wire.Payload{
		&wire.SA{Proposals: props},
		&wire.KE{Group: wire.DH_X25519, Data: kex.PublicKey()},
		&wire.Nonce{Data: bytes.Repeat([]byte{7}, 32)},
	}, extra...)
	m := wire.Message{Header: wire.Header{SPIi: spi, Version: wire.Version, Exchange: wire.IKE_SA_INIT, Flags: wire.FlagInitiator}, Payloads: ps}
	return m.Append(nil)
}

func mustNew(t testing.TB, cfg Config) *Engine {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func seededRand(b byte) *rand.ChaCha8 { return rand.NewChaCha8([32]byte{b, 0x5a}) }
