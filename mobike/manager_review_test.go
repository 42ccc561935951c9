package mobike

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// The path manager's side of the mobility review's findings (the in-process tests are
// in ike/mobility_review_test.go).

var (
	r6  = ap("[2001:db8::1]:4500")
	r6b = ap("[2001:db8::2]:4500")
	i6  = ap("[2001:db8:1::10]:4500")
	v6  = ap("[2001:db8:66::66]:4500")
)

// R1: a responder's check that runs out is given up, not the SA: IKE goes back to the
// verified ESP path, and the request gets one more round there.
func TestResponderGivesUpUnansweredCheck(t *testing.T) {
	m := newResponder(Policy{})
	_, ds := m.Update(t0, host(r1), Path{r1, vic}, nil)
	c := mustCheck(t, ds)
	ds, again := m.Exhausted(t0.Add(3*time.Minute), c)
	if !again {
		t.Fatal("the check's exhaustion ended the SA")
	}
	if p, ok := find[SetIKEPath](ds); !ok || p.Path != (Path{r1, i1}) || m.IKE() != (Path{r1, i1}) || m.ESP() != (Path{r1, i1}) {
		t.Fatalf("not back on the verified path: %v; ike %v esp %v", ds, m.IKE(), m.ESP())
	}
	if m.Dest(c) != (Path{r1, i1}) || c.Bound() || m.State() != "stable" {
		t.Fatalf("the request goes to %v (bound %v), state %q", m.Dest(c), c.Bound(), m.State())
	}
	// Its reply, from the verified path, proves nothing about the victim.
	if ds := m.Reply(t0.Add(3*time.Minute), host(r1), c, Path{r1, i1}, ok(c)); len(ds) != 0 || m.Verified(vic) {
		t.Fatalf("reply to the given-up check: %v", ds)
	}
	// Once only: a second exhaustion is a dead peer.
	if _, again := m.Exhausted(t0.Add(6*time.Minute), c); again {
		t.Error("a given-up check got yet another round")
	}
	// Nothing else is given up this way.
	if _, again := m.Exhausted(t0, nil); again {
		t.Error("an ordinary request got another round")
	}
	i := newInitiator(Policy{})
	if _, again := i.Exhausted(t0, mustCheck(t, i.Reevaluate(t0, host(i2), "x"))); again {
		t.Error("an initiator's UPDATE_SA_ADDRESSES got another round")
	}
}

// R1: a newer check on its way keeps IKE where it is; the old request goes to the
// verified path.
func TestResponderGivesUpStaleCheck(t *testing.T) {
	m := newResponder(Policy{})
	_, ds := m.Update(t0, host(r1), Path{r1, vic}, nil)
	c := mustCheck(t, ds)
	_, ds = m.Update(t0, host(r1), Path{r1, i2}, nil)
	c2 := mustCheck(t, ds)
	if _, again := m.Exhausted(t0.Add(3*time.Minute), c); !again {
		t.Fatal("no other round")
	}
	if m.IKE() != (Path{r1, i2}) || m.Dest(c) != (Path{r1, i1}) || m.Dest(c2) != (Path{r1, i2}) || m.State() != "verifying" {
		t.Errorf("ike %v, old request to %v, new check to %v, state %q", m.IKE(), m.Dest(c), m.Dest(c2), m.State())
	}
}

// R1: the initiator, addressed at a local address it left, tells the responder where
// it is; nothing moves.
func TestInitiatorTellsResponderWhereItIs(t *testing.T) {
	m := newInitiator(Policy{})
	h := host(i1, i2)
	c := mustCheck(t, m.Reevaluate(t0, Host{Addrs: h.Addrs, Route: func(netip.Addr) (netip.Addr, bool) { return i2.Addr(), true }}, "route change"))
	if ds := m.PeerRequest(t0, Path{i1, r1}); len(ds) != 0 {
		t.Fatalf("while its UPDATE is on its way: %v", ds)
	}
	m.Reply(t0, h, c, c.Path, ok(c))
	for _, at := range []Path{{i2, r1}, {i1, vic}, {netip.AddrPort{}, r1}, {ap("0.0.0.0:4500"), r1}} {
		if ds := m.PeerRequest(t0, at); len(ds) != 0 {
			t.Errorf("request on %v: %v", at, ds)
		}
	}
	ds := m.PeerRequest(t0, Path{i1, r1})
	c2 := mustCheck(t, ds)
	if c2.Kind != Update || c2.Tentative || c2.Path != (Path{i2, r1}) || m.IKE() != (Path{i2, r1}) || m.ESP() != (Path{i2, r1}) {
		t.Errorf("%+v; ike %v esp %v", c2, m.IKE(), m.ESP())
	}
	if ds := newResponder(Policy{}).PeerRequest(t0, Path{r2, i1}); len(ds) != 0 {
		t.Errorf("a responder: %v", ds)
	}
}

// R2: the NAT detection of IKE_SA_INIT seeds the comparison; without any, the first
// liveness check sends an UPDATE_SA_ADDRESSES; a rekey does not forget the last value.
func TestNATMappingComparedFromTheStart(t *testing.T) {
	x, y := []byte{1, 2, 3}, []byte{4, 5, 6}
	m := New(Config{Role: Initiator, Mobike: true, Path: Path{i1, r1}, NATD: x, Rand: rand.NewChaCha8([32]byte{1})})
	if ds := m.NATMapping(t0, x); len(ds) != 0 {
		t.Errorf("the IKE_SA_INIT mapping unchanged: %v", ds)
	}
	if c := mustCheck(t, m.NATMapping(t0, y)); c.Kind != Update || c.Path != (Path{i1, r1}) {
		t.Errorf("check %+v", c)
	}
	m = newInitiator(Policy{})
	if c := mustCheck(t, m.NATMapping(t0, x)); c.Kind != Update {
		t.Errorf("nothing to compare with: %+v", c)
	}
	m.Reply(t0, host(i1), m.update, Path{i1, r1}, ok(m.update))
	m.Rekeyed(t0)
	if ds := m.NATMapping(t0, x); len(ds) != 0 {
		t.Errorf("after a rekey the value was forgotten: %v", ds)
	}
	if ds := m.NATMapping(t0, y); len(ds) == 0 {
		t.Error("a change after a rekey was not noticed")
	}
}

// R4: the check under way starts again from the responder's new address.
func TestLocalGoneRestartsCheck(t *testing.T) {
	m := newResponder(Policy{Announce: Announce{Mode: Auto}})
	_, ds := m.Update(t0, host(r1, r2), Path{r1, i2}, nil)
	c := mustCheck(t, ds)
	ds = m.LocalGone(t0, host(r2))
	c2 := mustCheck(t, ds)
	if !c.Stale() || c2.Path != (Path{r2, i2}) || m.Dest(c) != (Path{r2, i2}) || m.Dest(c2) != c2.Path {
		t.Fatalf("old check stale %v to %v; new %+v", c.Stale(), m.Dest(c), c2)
	}
	if m.IKE() != (Path{r2, i2}) || m.ESP() != (Path{r2, i1}) {
		t.Fatalf("ike %v esp %v", m.IKE(), m.ESP())
	}
	if p, ok := find[SetIKEPath](ds); !ok || !p.Resend {
		t.Errorf("the outstanding request is not resent: %v", ds)
	}
	ds = m.Reply(t0, host(r2), c2, c2.Path, ok(c2))
	if p, ok := find[SetESPPath](ds); !ok || p.Path != (Path{r2, i2}) {
		t.Errorf("verified: %v", ds)
	}
}

// R4: ESP waiting on another path for a check moves when its own local address goes.
func TestESPLocalGoneDuringCheck(t *testing.T) {
	m := newResponder(Policy{})
	_, ds := m.Update(t0, host(r1, r2), Path{r2, i2}, nil)
	c := mustCheck(t, ds)
	ds = m.LocalGone(t0, host(r2))
	if p, ok := find[SetESPPath](ds); !ok || p.Path != (Path{r2, i1}) || m.ESP() != (Path{r2, i1}) {
		t.Fatalf("ESP not moved off the address that went: %v (esp %v)", ds, m.ESP())
	}
	if m.IKE() != (Path{r2, i2}) || !c.Bound() || c.Stale() {
		t.Errorf("IKE or its check changed: ike %v, check %+v", m.IKE(), c)
	}
	if ds := m.LocalGone(t0, host(r2)); len(ds) != 0 {
		t.Errorf("again: %v", ds)
	}
}

// R4: a path has both ends of one family.
func TestLocalGoneNeverMixesFamilies(t *testing.T) {
	m := newResponder(Policy{})
	// The peer updated from IPv6: IKE there, ESP still on IPv4 until the check.
	_, ds := m.Update(t0, host(r1, r6, r6b), Path{r6, i6}, nil)
	mustCheck(t, ds)
	// IKE's address goes: IKE moves to the other IPv6 address, ESP stays.
	ds = m.LocalGone(t0, host(r1, r6b))
	if m.IKE() != (Path{r6b, i6}) || m.ESP() != (Path{r1, i1}) {
		t.Fatalf("ike %v esp %v: %v", m.IKE(), m.ESP(), ds)
	}
	// Now IPv4's goes too, with another IPv4 address there.
	m.LocalGone(t0, host(r2, r6b))
	if m.ESP() != (Path{r2, i1}) {
		t.Fatalf("esp %v", m.ESP())
	}
	// No IPv4 address left: ESP stays (and says so) rather than mixing.
	ds = m.LocalGone(t0, host(r6b))
	if m.ESP() != (Path{r2, i1}) {
		t.Fatalf("esp %v", m.ESP())
	}
	if n, ok := find[Note](ds); !ok || n.Kind != NoteInfo {
		t.Errorf("%v", ds)
	}
	for _, p := range []Path{m.IKE(), m.ESP()} {
		if p.Local.Addr().Is4() != p.Remote.Addr().Is4() {
			t.Errorf("mixed path %v", p)
		}
	}
}

// R6: the sender of an address update is a probe candidate, never a committed move.
func TestCommittedMovesIgnoreSeenAddresses(t *testing.T) {
	m := newInitiator(Policy{})
	m.PeerAddresses(t0, nil, Path{i6, v6})
	h := host(i1, i6)
	if !slices.Contains(m.candidates(t0, h, m.IKE()), Path{i6, v6}) {
		t.Error("the sender is not a probe candidate")
	}
	if slices.Contains(m.committedCandidates(t0, h, m.IKE()), Path{i6, v6}) {
		t.Error("the sender is a committed candidate")
	}
	// IPv4 goes: nothing of the peer's family, and the only IPv6 peer address is the
	// sender's: no move.
	ds := m.Reevaluate(t0, host(i6), "address change")
	if _, moved := find[SetESPPath](ds); moved || m.ESP() != (Path{i1, r1}) {
		t.Fatalf("moved: %v", ds)
	}
	// An announced address is one.
	m2 := newInitiator(Policy{})
	m2.PeerAddresses(t0, []netip.Addr{r6.Addr()}, Path{i1, r1})
	ds = m2.Reevaluate(t0, host(i6), "address change")
	if p, ok := find[SetESPPath](ds); !ok || p.Path != (Path{i6, r6}) {
		t.Errorf("an announced address of the other family was not used: %v", ds)
	}
}

// R6: the routing table's answer of the other family is not a source for the peer.
func TestReevaluateIgnoresRouteOfOtherFamily(t *testing.T) {
	m := newInitiator(Policy{})
	h := Host{Addrs: []netip.Addr{i1.Addr(), i6.Addr()}, Route: func(netip.Addr) (netip.Addr, bool) { return i6.Addr(), true }}
	if ds := m.Reevaluate(t0, h, "route change"); len(ds) != 0 || m.IKE() != (Path{i1, r1}) {
		t.Errorf("%v; ike %v", ds, m.IKE())
	}
}

// R7: a tentative move given up because its replies keep coming from elsewhere tells
// the responder where the initiator stays.
func TestTentativeGivenUpTellsResponder(t *testing.T) {
	m := newInitiator(Policy{SwitchAccept: SwitchPolicy{Additional: true}, RMobike: true})
	h := host(i1, r1)
	c := mustCheck(t, m.SwitchRequest(t0, h, r2.Addr(), nil))
	var ds []Decision
	for i := 0; i <= maxReissue; i++ {
		ds = m.Reply(t0, h, c, Path{i1, r1}, ok(c))
		c = mustCheck(t, ds)
	}
	if n, ok := find[Note](ds); !ok || n.Kind != NoteFellBack {
		t.Fatalf("no fallback: %v", ds)
	}
	if c.Tentative || c.Path != (Path{i1, r1}) || m.IKE() != (Path{i1, r1}) || m.ESP() != (Path{i1, r1}) {
		t.Errorf("check %+v; ike %v", c, m.IKE())
	}
}

// R8: with no more tries than FallbackAfter, the first retransmission already goes to
// the old path.
func TestFallbackWithFewTries(t *testing.T) {
	for tries := 1; tries <= FallbackAfter+2; tries++ {
		m := New(Config{Role: Initiator, Policy: Policy{SwitchAccept: SwitchPolicy{Additional: true}, RMobike: true}, Mobike: true,
			Path: Path{i1, r1}, PeerAddrs: []netip.Addr{r2.Addr()}, Rand: rand.NewChaCha8([32]byte{1}), Tries: tries})
		h := host(i1, r1)
		c := mustCheck(t, m.SwitchRequest(t0, h, r2.Addr(), nil))
		fell := 0
		for n := 1; n <= tries && fell == 0; n++ {
			if _, ds := m.Retransmit(t0, h, c, n); len(ds) > 0 {
				fell = n
			}
		}
		want := FallbackAfter + 1
		if tries <= FallbackAfter {
			want = 1
		}
		if fell != want || (fell != 0 && m.Dest(c) != (Path{i1, r1})) {
			t.Errorf("tries %d: fell back at retransmission %d, want %d (request to %v)", tries, fell, want, m.Dest(c))
		}
	}
}

// 8b: the reply to a stale check ends probing.
func TestStaleReplyEndsProbing(t *testing.T) {
	m := newInitiator(Policy{SwitchAccept: SwitchPolicy{Additional: true}, RMobike: true})
	h := host(i1, i2)
	c := mustCheck(t, m.Reevaluate(t0, Host{Addrs: h.Addrs, Route: func(netip.Addr) (netip.Addr, bool) { return i2.Addr(), true }}, "route change"))
	m.Retransmit(t0, h, c, ProbeAfter)
	if m.State() != "probing" {
		t.Fatalf("state %q", m.State())
	}
	mustCheck(t, m.SwitchRequest(t0, h, r2.Addr(), nil)) // supersedes c
	m.Reply(t0, h, c, Path{i2, r1}, ok(c))
	if m.State() != "updating" {
		t.Errorf("state %q after the stale check's reply", m.State())
	}
}

// 8b: a switch the initiator did not follow expires: a later arrival there is no
// switch and leaves no switch_hold behind.
func TestSwitchRequestExpires(t *testing.T) {
	m := newResponder(Policy{SwitchHold: time.Hour, SwitchLimit: 100})
	if _, err := m.SwitchTo(t0, r2.Addr()); err != nil {
		t.Fatal(err)
	}
	_, ds := m.Update(t0.Add(SwitchExpiry), host(r1, r2), Path{r2, i1}, nil)
	if slices.ContainsFunc(ds, func(d Decision) bool { n, _ := d.(Note); return n.Kind == NoteSwitched }) {
		t.Errorf("a late arrival counts as the switch: %v", ds)
	}
	if m.SwitchPending().IsValid() {
		t.Error("the switch is still pending")
	}
	if _, err := m.SwitchTo(t0.Add(SwitchExpiry+time.Second), r1.Addr()); err != nil {
		t.Errorf("switch back refused: %v", err)
	}
}

// 8c: a verified address that ESP has not used for VerifiedHold is checked again.
func TestVerificationExpires(t *testing.T) {
	m := newResponder(Policy{})
	h := host(r1)
	_, ds := m.Update(t0, h, Path{r1, i2}, nil)
	c := mustCheck(t, ds)
	m.Reply(t0, h, c, c.Path, ok(c))
	if m.ESP() != (Path{r1, i2}) {
		t.Fatal("not verified")
	}
	// Back to the IKE_AUTH address a minute later: verified, ESP at once.
	if _, ds = m.Update(t0.Add(time.Minute), h, Path{r1, i1}, nil); m.ESP() != (Path{r1, i1}) {
		t.Fatalf("%v", ds)
	}
	// Within VerifiedHold of leaving it, i2 is still verified.
	if _, ds = m.Update(t0.Add(2*time.Minute), h, Path{r1, i2}, nil); m.ESP() != (Path{r1, i2}) {
		t.Fatalf("%v", ds)
	}
	m.Update(t0.Add(3*time.Minute), h, Path{r1, i1}, nil)
	// VerifiedHold after ESP left it, it is checked again.
	_, ds = m.Update(t0.Add(3*time.Minute+VerifiedHold), h, Path{r1, i2}, nil)
	if c := mustCheck(t, ds); c.Kind != Reachability || m.ESP() != (Path{r1, i1}) {
		t.Errorf("check %+v, esp %v", c, m.ESP())
	}
	// The address in use by ESP stays verified however long.
	if !m.Verified(i1) {
		t.Error("ESP's address was forgotten")
	}
}
