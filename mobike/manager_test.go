package mobike

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/wire"
)

// The path manager on its own: events in, decisions out, a fake clock.

var (
	t0  = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	i1  = ap("192.0.2.10:4500")
	i2  = ap("192.0.2.20:4500")
	r1  = ap("198.51.100.1:4500")
	r2  = ap("203.0.113.1:4500")
	vic = ap("203.0.113.66:4500")
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func host(addrs ...netip.AddrPort) Host {
	h := Host{Addrs: []netip.Addr{}}
	for _, a := range addrs {
		h.Addrs = append(h.Addrs, a.Addr())
	}
	return h
}

func newInitiator(pol Policy) *Manager {
	return New(Config{Role: Initiator, Policy: pol, Mobike: true, Path: Path{i1, r1},
		PeerAddrs: []netip.Addr{r2.Addr()}, Announced: []netip.Addr{}, Rand: rand.NewChaCha8([32]byte{1})})
}

func newResponder(pol Policy) *Manager {
	pol.RMobike = true
	return New(Config{Role: Responder, Policy: pol, Mobike: true, PeerRMobike: true, Path: Path{r1, i1},
		Announced: []netip.Addr{}, Rand: rand.NewChaCha8([32]byte{2})})
}

func find[T Decision](ds []Decision) (T, bool) {
	for _, d := range ds {
		if x, ok := d.(T); ok {
			return x, true
		}
	}
	var zero T
	return zero, false
}

func mustCheck(t *testing.T, ds []Decision) *Check {
	t.Helper()
	sc, ok := find[StartCheck](ds)
	if !ok {
		t.Fatalf("no check asked for: %v", ds)
	}
	return sc.Check
}

func ok(c *Check) Reply { return Reply{Cookie2: c.Cookie2} }

func TestInitiatorCommittedMove(t *testing.T) {
	m := newInitiator(Policy{SwitchAccept: SwitchPolicy{Additional: true}})
	h := host(i2, r1) // i1 went
	ds := m.Reevaluate(t0, h, "address change")
	if p, ok := find[SetESPPath](ds); !ok || p.Path != (Path{i2, r1}) {
		t.Fatalf("ESP not moved at once: %v", ds)
	}
	c := mustCheck(t, ds)
	if c.Kind != Update || c.Tentative || c.Path != (Path{i2, r1}) || m.Dest(c) != c.Path {
		t.Fatalf("check %+v", c)
	}
	if m.State() != "updating" {
		t.Errorf("state %q", m.State())
	}
	ds = m.Reply(t0, h, c, Path{i2, r1}, ok(c))
	if _, ok := find[Confirmed](ds); !ok || m.State() != "stable" {
		t.Errorf("reply: %v, state %q", ds, m.State())
	}
}

func TestInitiatorSwitchIsTentative(t *testing.T) {
	m := newInitiator(Policy{SwitchAccept: SwitchPolicy{Additional: true}, RMobike: true})
	h := host(i1, r1)
	ds := m.SwitchRequest(t0, h, r2.Addr(), nil)
	c := mustCheck(t, ds)
	if !c.Tentative || c.Path != (Path{i1, r2}) || c.Fallback != (Path{i1, r1}) {
		t.Fatalf("check %+v", c)
	}
	if _, moved := find[SetESPPath](ds); moved || m.ESP() != (Path{i1, r1}) || m.IKE() != (Path{i1, r1}) {
		t.Fatal("moved before the new path answered")
	}
	// A reply from somewhere else proves nothing: asked again, still on the old path.
	ds = m.Reply(t0, h, c, Path{i1, vic}, ok(c))
	c2 := mustCheck(t, ds)
	if c2 == c || !c2.Tentative || m.ESP() != (Path{i1, r1}) {
		t.Fatalf("after a reply from elsewhere: %v", ds)
	}
	ds = m.Reply(t0, h, c2, Path{i1, r2}, ok(c2))
	if p, ok := find[SetESPPath](ds); !ok || p.Path != (Path{i1, r2}) || m.IKE() != (Path{i1, r2}) {
		t.Fatalf("not moved after the reply from the new path: %v", ds)
	}
	if n, _ := find[Note](ds[len(ds)-1:]); n.Kind != NoteMoved {
		t.Errorf("last decision %v", ds[len(ds)-1])
	}
}

func TestInitiatorFallsBack(t *testing.T) {
	m := newInitiator(Policy{SwitchAccept: SwitchPolicy{Additional: true}, RMobike: true})
	h := host(i1, r1)
	c := mustCheck(t, m.SwitchRequest(t0, h, r2.Addr(), nil))
	for tries := 1; tries <= FallbackAfter; tries++ {
		probes, ds := m.Retransmit(t0.Add(time.Duration(tries)*time.Second), h, c, tries)
		if len(probes) != 0 || len(ds) != 0 || m.Dest(c) != c.Path {
			t.Fatalf("try %d: %v %v dest %v", tries, probes, ds, m.Dest(c))
		}
	}
	_, ds := m.Retransmit(t0.Add(5*time.Second), h, c, FallbackAfter+1)
	if n, ok := find[Note](ds); !ok || n.Kind != NoteFellBack {
		t.Fatalf("no fallback: %v", ds)
	}
	if m.Dest(c) != (Path{i1, r1}) {
		t.Fatalf("after the fallback the request goes to %v", m.Dest(c))
	}
	// The reply (from anywhere) is followed by a new UPDATE on the old path.
	ds = m.Reply(t0.Add(6*time.Second), h, c, Path{i1, r1}, ok(c))
	c2 := mustCheck(t, ds)
	if c2.Tentative || c2.Path != (Path{i1, r1}) || m.ESP() != (Path{i1, r1}) {
		t.Fatalf("after the fallback: %+v %v", c2, ds)
	}
	// The failed pair is not probed for a while.
	for _, p := range m.candidates(t0.Add(10*time.Second), h, m.IKE()) {
		if p == (Path{i1, r2}) {
			t.Error("the pair that did not answer is probed again at once")
		}
	}
}

func TestInitiatorSwitchRefusals(t *testing.T) {
	h := host(i1, r1)
	cases := []struct {
		name   string
		pol    Policy
		target netip.Addr
		err    error
		why    string
	}{
		{"rmobike false", Policy{SwitchAccept: SwitchPolicy{Any: true}}, r2.Addr(), nil, ""},
		{"empty policy", Policy{RMobike: true}, r2.Addr(), nil, "switch_accept is empty"},
		{"malformed", Policy{RMobike: true, SwitchAccept: SwitchPolicy{Any: true}}, netip.Addr{}, errors.New("3 octets"), "malformed"},
		{"not announced", Policy{RMobike: true, SwitchAccept: SwitchPolicy{Additional: true}}, vic.Addr(), nil, "only announced"},
		{"family", Policy{RMobike: true, SwitchAccept: SwitchPolicy{Any: true}}, netip.MustParseAddr("2001:db8::1"), nil, "address family"},
	}
	for _, c := range cases {
		m := newInitiator(c.pol)
		ds := m.SwitchRequest(t0, h, c.target, c.err)
		if _, ok := find[StartCheck](ds); ok {
			t.Errorf("%s: followed: %v", c.name, ds)
		}
		n, _ := find[Note](ds)
		if c.why == "" {
			if n.Kind == NoteSwitchRefused {
				t.Errorf("%s: refused (with a liveness check) instead of ignored: %v", c.name, ds)
			}
			continue
		}
		if _, live := find[LivenessCheck](ds); n.Kind != NoteSwitchRefused || !strings.Contains(n.Reason, c.why) || !live {
			t.Errorf("%s: %v", c.name, ds)
		}
	}
}

func TestSwitchLimitAndHoldInitiator(t *testing.T) {
	m := newInitiator(Policy{RMobike: true, SwitchAccept: SwitchPolicy{Any: true}, SwitchLimit: 2, SwitchHold: 30 * time.Second})
	h := host(i1, r1)
	follow := func(now time.Time, to netip.AddrPort) []Decision {
		ds := m.SwitchRequest(now, h, to.Addr(), nil)
		if sc, ok := find[StartCheck](ds); ok {
			m.Reply(now, h, sc.Check, sc.Check.Path, ok2(sc.Check))
		}
		return ds
	}
	follow(t0, r2)
	if m.IKE().Remote != r2 {
		t.Fatal("first switch not followed")
	}
	// Straight back: the hold says no.
	ds := follow(t0.Add(time.Second), r1)
	if n, _ := find[Note](ds); n.Kind != NoteSwitchRefused || !strings.Contains(n.Reason, "switch_hold") {
		t.Fatalf("switch back: %v", ds)
	}
	// Elsewhere: allowed, then the limit of 2 per minute is reached.
	follow(t0.Add(2*time.Second), vic)
	if m.IKE().Remote != vic {
		t.Fatal("second switch not followed")
	}
	ds = follow(t0.Add(40*time.Second), r1)
	if n, _ := find[Note](ds); n.Kind != NoteSwitchRefused || !strings.Contains(n.Reason, "switch_limit") {
		t.Fatalf("third switch in a minute: %v", ds)
	}
	follow(t0.Add(61*time.Second), r1)
	if m.IKE().Remote != r1 {
		t.Fatal("a switch a minute later was not followed")
	}
}

func ok2(c *Check) Reply { return ok(c) }

func TestInitiatorAddressUpdateFromElsewhereIsAHint(t *testing.T) {
	m := newInitiator(Policy{})
	ds := m.PeerAddresses(t0, nil, Path{i1, vic})
	if _, live := find[LivenessCheck](ds); !live || m.IKE() != (Path{i1, r1}) || m.ESP() != (Path{i1, r1}) {
		t.Fatalf("%v; paths %v %v", ds, m.IKE(), m.ESP())
	}
	if len(m.PeerAddrs()) != 0 {
		t.Error("the (authenticated) list was not taken")
	}
	// The sender becomes a probe candidate, nothing more.
	if !slices.Contains(m.candidates(t0, host(i1), m.IKE()), Path{i1, vic}) {
		t.Error("the sender is not a probe candidate")
	}
}

func TestInitiatorProbing(t *testing.T) {
	m := newInitiator(Policy{})
	h := host(i1, i2)
	probes, _ := m.Retransmit(t0, h, nil, ProbeAfter)
	want := []Path{{i2, r1}, {i1, r2}, {i2, r2}}
	if !slices.Equal(probes, want) || m.State() != "probing" {
		t.Fatalf("probes %v, want %v (state %q)", probes, want, m.State())
	}
	// A reply from a pair that was not probed is no hint.
	if ds := m.Reply(t0, h, nil, Path{i1, vic}, Reply{}); len(ds) != 1 {
		t.Fatalf("%v", ds)
	}
	m.Retransmit(t0, h, nil, ProbeAfter+1)
	ds := m.Reply(t0, h, nil, Path{i1, r2}, Reply{})
	c := mustCheck(t, ds)
	if !c.Tentative || c.Path != (Path{i1, r2}) || m.ESP() != (Path{i1, r1}) {
		t.Fatalf("probe hint: %+v", c)
	}
}

func TestInitiatorUnacceptable(t *testing.T) {
	m := newInitiator(Policy{})
	h := host(i1, i2)
	c := mustCheck(t, m.Reevaluate(t0, Host{Addrs: h.Addrs, Route: func(netip.Addr) (netip.Addr, bool) { return i2.Addr(), true }}, "route change"))
	ds := m.Reply(t0, h, c, c.Path, Reply{Cookie2: c.Cookie2, Error: wire.UNACCEPTABLE_ADDRESSES})
	if p, ok := find[SetESPPath](ds); !ok || p.Path == (Path{i2, r1}) {
		t.Fatalf("no other pair tried: %v", ds)
	}
}

func TestCookie2MismatchCloses(t *testing.T) {
	m := newInitiator(Policy{})
	c := mustCheck(t, m.Reevaluate(t0, host(i2), "x"))
	bad := bytes.Clone(c.Cookie2)
	bad[0] ^= 1
	if _, ok := find[CloseSA](m.Reply(t0, host(i2), c, c.Path, Reply{Cookie2: bad})); !ok {
		t.Error("a wrong COOKIE2 did not close the SA")
	}
	r := newResponder(Policy{})
	_, ds := r.Update(t0, host(r1), Path{r1, i2}, nil)
	c = mustCheck(t, ds)
	if _, ok := find[CloseSA](r.Reply(t0, host(r1), c, c.Path, Reply{})); !ok {
		t.Error("a missing COOKIE2 did not close the SA")
	}
}

func TestResponderVerifiesBeforeESP(t *testing.T) {
	m := newResponder(Policy{})
	h := host(r1, r2)
	// From a new address: IKE follows, ESP waits for the check.
	refuse, ds := m.Update(t0, h, Path{r1, vic}, nil)
	c := mustCheck(t, ds)
	if refuse != 0 || m.IKE() != (Path{r1, vic}) || m.ESP() != (Path{r1, i1}) || c.Kind != Reachability || m.State() != "verifying" {
		t.Fatalf("%v %v; ike %v esp %v", refuse, ds, m.IKE(), m.ESP())
	}
	// Back at the verified address: ESP there, the pending check goes stale.
	if _, ds := m.Update(t0, h, Path{r1, i1}, nil); len(ds) == 0 {
		t.Fatal("no decisions")
	}
	if !c.Stale() || m.Dest(c) != (Path{r1, i1}) || m.ESP() != (Path{r1, i1}) {
		t.Fatalf("stale %v dest %v esp %v", c.Stale(), m.Dest(c), m.ESP())
	}
	// Its reply, wherever from, verifies nothing.
	m.Reply(t0, h, c, Path{r1, vic}, ok(c))
	if m.Verified(vic) {
		t.Fatal("a stale check verified the victim")
	}
	// Port matters.
	_, ds = m.Update(t0, h, Path{r1, ap("192.0.2.10:9999")}, nil)
	c = mustCheck(t, ds)
	if m.ESP().Remote != i1 {
		t.Fatal("ESP moved to another port of a verified address without a check")
	}
	// A reply from another path than the check went: asked again.
	ds = m.Reply(t0, h, c, Path{r1, i1}, ok(c))
	c2 := mustCheck(t, ds)
	ds = m.Reply(t0, h, c2, c2.Path, ok(c2))
	if p, ok := find[SetESPPath](ds); !ok || p.Path.Remote != ap("192.0.2.10:9999") {
		t.Fatalf("verified reply: %v", ds)
	}
}

func TestResponderRefusals(t *testing.T) {
	m := newResponder(Policy{LocalAddrs: []netip.Addr{r1.Addr()}})
	h := host(r1, r2)
	if refuse, _ := m.Update(t0, h, Path{r2, i1}, nil); refuse != wire.UNACCEPTABLE_ADDRESSES {
		t.Errorf("UPDATE to an address the connection does not serve: %v", refuse)
	}
	if refuse, _ := m.Update(t0, h, Path{r1, i2}, &NoNATs{Src: i1, Dst: r1}); refuse != wire.UNEXPECTED_NAT_DETECTED || m.IKE() != (Path{r1, i1}) {
		t.Errorf("NO_NATS_ALLOWED mismatch: %v, ike %v", refuse, m.IKE())
	}
	if refuse, _ := m.Update(t0, h, Path{r1, i2}, &NoNATs{Src: i2, Dst: r1}); refuse != 0 {
		t.Errorf("matching NO_NATS_ALLOWED: %v", refuse)
	}
	if _, err := m.SwitchTo(t0, r2.Addr()); err == nil || !strings.Contains(err.Error(), "local_addrs") {
		t.Errorf("switch to an address the connection does not serve: %v", err)
	}
	i := newInitiator(Policy{})
	if _, err := i.SwitchTo(t0, r2.Addr()); err == nil {
		t.Error("an initiator asked for a switch")
	}
	if refuse, ds := i.Update(t0, h, Path{i1, vic}, nil); refuse != 0 || i.IKE() != (Path{i1, r1}) || len(ds) != 1 {
		t.Errorf("an UPDATE from the responder moved the initiator: %v", ds)
	}
}

func TestResponderSwitchLimits(t *testing.T) {
	m := newResponder(Policy{SwitchLimit: 1, SwitchHold: 2 * time.Minute})
	if _, err := m.SwitchTo(t0, r2.Addr()); err != nil {
		t.Fatal(err)
	}
	if m.SwitchPending() != r2.Addr() {
		t.Error("no switch pending")
	}
	_, ds := m.Update(t0, host(r1, r2), Path{r2, i1}, nil)
	if n, _ := find[Note](ds[2:]); n.Kind != NoteSwitched {
		t.Errorf("switch completion: %v", ds)
	}
	if _, err := m.SwitchTo(t0.Add(time.Second), r1.Addr()); err == nil || !strings.Contains(err.Error(), "switch_limit") {
		t.Errorf("second switch: %v", err)
	}
	if _, err := m.SwitchTo(t0.Add(61*time.Second), r1.Addr()); err == nil || !strings.Contains(err.Error(), "switch_hold") {
		t.Errorf("back within the hold: %v", err)
	}
	if _, err := m.SwitchTo(t0.Add(2*time.Minute+time.Second), r1.Addr()); err != nil {
		t.Errorf("after the hold: %v", err)
	}
}

func TestDynamicUpdateOnlyWithoutMobike(t *testing.T) {
	pub := ap("198.51.100.77:20001")
	r := New(Config{Role: Responder, Path: Path{r1, ap("198.51.100.77:20000")}, Rand: rand.NewChaCha8([32]byte{})})
	if ds := r.Authenticated(t0, Path{r1, pub}, false, true); len(ds) == 0 || r.ESP().Remote != pub {
		t.Errorf("RFC 7296 2.23 update not done: %v", ds)
	}
	if ds := r.Authenticated(t0, Path{r1, vic}, true, true); len(ds) != 0 {
		t.Error("updated while behind a NAT itself")
	}
	if ds := newResponder(Policy{}).Authenticated(t0, Path{r1, vic}, false, true); len(ds) != 0 {
		t.Error("updated from an IKE packet with MOBIKE (RFC 4555 3.8)")
	}
	if ds := New(Config{Role: Initiator, Path: Path{i1, r1}}).Authenticated(t0, Path{i1, vic}, false, true); len(ds) != 0 {
		t.Error("an initiator followed its peer's source address")
	}
}

func TestRekeyedAsksAgain(t *testing.T) {
	m := newResponder(Policy{})
	_, ds := m.Update(t0, host(r1), Path{r1, i2}, nil)
	c := mustCheck(t, ds)
	c2 := mustCheck(t, m.Rekeyed(t0))
	if !c.Stale() || c2.Path != (Path{r1, i2}) || c2.Kind != Reachability {
		t.Errorf("after a rekey: %+v", c2)
	}
}

func TestLocalGone(t *testing.T) {
	m := newResponder(Policy{Announce: Announce{Mode: Auto}})
	ds := m.LocalGone(t0, host(r2))
	if m.IKE().Local != r2 || m.ESP() != (Path{r2, i1}) {
		t.Fatalf("not moved: %v", ds)
	}
	if sw, ok := find[SendSwitch](ds); !ok || sw.To != r2.Addr() {
		t.Errorf("no switch request: %v", ds)
	}
	if _, ok := find[AnnounceAddrs](ds); !ok {
		t.Errorf("no address update: %v", ds)
	}
}

// FuzzManager drives both roles with arbitrary events and checks what must always
// hold: a responder's ESP goes only to verified peer addresses; an initiator's ESP and
// IKE paths change only by its own decisions (host changes, confirmed replies); a
// path of one address family stays so when the host's addresses change; the manager's
// lists stay bounded.
func FuzzManager(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})
	f.Add(bytes.Repeat([]byte{3, 7, 1}, 20))
	f.Add([]byte{5, 0, 0, 6, 1, 1, 2, 2, 2, 9, 3, 3})
	pool := []netip.AddrPort{i1, i2, r1, r2, vic, ap("192.0.2.10:9999"), ap("[2001:db8::1]:4500")}
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 400 {
			ops = ops[:400]
		}
		for _, role := range []Role{Initiator, Responder} {
			pol := Policy{RMobike: true, SwitchAccept: SwitchPolicy{Additional: true, Prefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}},
				Announce: Announce{Mode: Auto}, SwitchLimit: 3, SwitchHold: 10 * time.Second}
			var m *Manager
			if role == Initiator {
				m = newInitiator(pol)
			} else {
				m = newResponder(pol)
			}
			var checks []*Check
			now := t0
			next := func() byte {
				if len(ops) == 0 {
					return 0
				}
				b := ops[0]
				ops = ops[1:]
				return b
			}
			addr := func() netip.AddrPort { return pool[int(next())%len(pool)] }
			h := host(i1, i2, r1, r2)
			for steps := 0; len(ops) > 0 && steps < 200; steps++ {
				ike, esp := m.IKE(), m.ESP()
				var ds []Decision
				own := false      // the initiator may move by this event
				hostMove := false // the host's addresses changed
				switch next() % 12 {
				case 0:
					now = now.Add(time.Duration(next()) * time.Second)
				case 1:
					h = host(addr(), addr())
					ds = m.Reevaluate(now, h, "fuzz")
					ds = append(ds, m.LocalGone(now, h)...)
					own, hostMove = true, true
				case 2:
					ds = m.PeerAddresses(now, []netip.Addr{addr().Addr()}, Path{addr(), addr()})
				case 3:
					ds = m.SwitchRequest(now, h, addr().Addr(), nil)
				case 4:
					_, ds = m.Update(now, h, Path{addr(), addr()}, nil)
				case 5:
					if len(checks) > 0 {
						c := checks[int(next())%len(checks)]
						at := c.Path
						if next()%3 == 0 {
							at = Path{addr(), addr()}
						}
						r := ok(c)
						if next()%7 == 0 {
							r.Error = wire.UNACCEPTABLE_ADDRESSES
						}
						ds = m.Reply(now, h, c, at, r)
						own = at == c.Path
					}
				case 6:
					if len(checks) > 0 {
						_, ds = m.Retransmit(now, h, checks[int(next())%len(checks)], int(next()%6))
					} else {
						_, ds = m.Retransmit(now, h, nil, int(next()%6))
					}
				case 7:
					ds = m.Reply(now, h, nil, Path{addr(), addr()}, Reply{})
				case 8:
					ds, _ = m.SwitchTo(now, addr().Addr())
				case 9:
					ds = m.Rekeyed(now)
				case 10:
					if len(checks) > 0 {
						ds, _ = m.Exhausted(now, checks[int(next())%len(checks)])
					}
				case 11:
					ds = m.PeerRequest(now, Path{addr(), addr()})
				}
				for _, d := range ds {
					if sc, ok := d.(StartCheck); ok {
						checks = append(checks, sc.Check)
					}
				}
				if len(checks) > 64 {
					checks = checks[len(checks)-64:]
				}
				checkInvariants(t, m, role, ike, esp, own, hostMove)
			}
		}
	})
}

// checkInvariants checks FuzzManager's invariants after an event that found m on paths
// ike and esp; own: the initiator may move by it; hostMove: the host's addresses
// changed.
func checkInvariants(t *testing.T, m *Manager, role Role, ike, esp Path, own, hostMove bool) {
	t.Helper()
	switch role {
	case Responder:
		if !m.Verified(m.ESP().Remote) {
			t.Fatalf("responder's ESP goes to unverified %v", m.ESP().Remote)
		}
	case Initiator:
		if m.IKE() != m.ESP() {
			t.Fatalf("initiator's IKE %v and ESP %v differ", m.IKE(), m.ESP())
		}
		if !own && (m.IKE() != ike || m.ESP() != esp) {
			t.Fatalf("initiator moved from %v to %v by an event that is not its own decision", ike, m.IKE())
		}
	}
	same := func(p Path) bool { return p.Local.Addr().Is4() == p.Remote.Addr().Is4() }
	for _, p := range [][2]Path{{ike, m.IKE()}, {esp, m.ESP()}} {
		if hostMove && same(p[0]) && !same(p[1]) {
			t.Fatalf("a path of one family became mixed: %v -> %v", p[0], p[1])
		}
	}
	if len(m.used) > maxUsed || len(m.seen) > maxSeen || len(m.verified) > maxVerified || len(m.failed) > maxFailed || len(m.left) > maxLeft || len(m.switches) > 100 {
		t.Fatal("unbounded lists")
	}
}

// A hand-over names another gateway's address, never one of ours; one that did not
// happen leaves no trace in the switch limits.
func TestResponderHandOff(t *testing.T) {
	other := netip.MustParseAddr("203.0.113.9")
	m := newResponder(Policy{LocalAddrs: []netip.Addr{r1.Addr()}, SwitchLimit: 1})
	if _, err := m.HandOff(t0, netip.IPv4Unspecified()); err == nil {
		t.Error("handed off to 0.0.0.0")
	}
	ds, err := m.HandOff(t0, other)
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := find[SendSwitch](ds); !ok || s.To != other || m.SwitchPending() != other {
		t.Fatalf("hand-over decisions %v, pending %v", ds, m.SwitchPending())
	}
	m.CancelSwitch()
	if m.SwitchPending().IsValid() {
		t.Error("the switch is still pending after CancelSwitch")
	}
	// switch_limit 1: the cancelled switch does not count, and neither do checks.
	for range 3 {
		if err := m.CanHandOff(t0.Add(time.Second), other); err != nil {
			t.Fatalf("CanHandOff after a cancelled hand-over: %v", err)
		}
	}
	if _, err := m.HandOff(t0.Add(time.Second), other); err != nil {
		t.Errorf("after a cancelled hand-over: %v", err)
	}
	if err := m.CanHandOff(t0.Add(2*time.Second), other); err == nil || !strings.Contains(err.Error(), "switch_limit") {
		t.Errorf("CanHandOff of a second hand-over within the minute: %v", err)
	}
	if _, err := m.HandOff(t0.Add(2*time.Second), other); err == nil || !strings.Contains(err.Error(), "switch_limit") {
		t.Errorf("a second hand-over within the minute: %v", err)
	}
	if _, err := newInitiator(Policy{}).HandOff(t0, other); err == nil {
		t.Error("an initiator handed off")
	}
}

// A snapshot rehomed to the node it is handed to starts its paths there and counts
// the address it left.
func TestSnapshotRehome(t *testing.T) {
	m := newResponder(Policy{})
	s, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	s.Rehome(r2, t0)
	if s.IKE != (Path{r2, i1}) || s.ESP != (Path{r2, i1}) || len(s.Left) != 1 || s.Left[0].Addr != r1.Addr() {
		t.Errorf("rehomed: %+v", s)
	}
	s.Rehome(r2, t0) // already home: nothing more left
	if len(s.Left) != 1 {
		t.Errorf("rehoming twice: %v", s.Left)
	}
}

// The cluster's other nodes are announced besides our own addresses, whatever the
// mode, never the address in use.
func TestAnnounceCluster(t *testing.T) {
	n1, n2 := netip.MustParseAddr("203.0.113.51"), netip.MustParseAddr("203.0.113.52")
	h := Host{Addrs: []netip.Addr{r1.Addr(), r2.Addr()}, Cluster: []netip.Addr{n1, n2, n1, netip.IPv4Unspecified()}}
	got := Announce{Mode: Auto}.For(r1.Addr(), h, []netip.Addr{i1.Addr()})
	if !slices.Equal(got, []netip.Addr{r2.Addr(), n1, n2}) {
		t.Errorf("auto: %v", got)
	}
	if got := (Announce{Mode: None}).For(n1, h, nil); !slices.Equal(got, []netip.Addr{n2}) {
		t.Errorf("none, on a node address: %v", got)
	}
}
