package mobike

import (
	"net/netip"
	"time"

	"github.com/mobikevpn/mobikevpn/wire"
)

// The responder's side: it follows the initiator's UPDATE_SA_ADDRESSES (RFC 4555 3.5),
// checks a new peer address before ESP goes there (3.7), moves the SA itself only when
// its own address went away, and may ask the initiator to switch to another of its
// addresses (draft-smyslov-ipsecme-ikev2-r-mobike).

// NoNATs is the content of a NO_NATS_ALLOWED notify (RFC 4555 3.9): the addresses and
// ports the sender says it sent from and to, or Err when it is malformed.
type NoNATs struct {
	Src, Dst netip.AddrPort
	Err      error
}

// Match reports whether the notify is well formed and names the addresses and ports of
// path at (its source is at.Remote, its destination at.Local).
func (n *NoNATs) Match(at Path) bool {
	return n.Err == nil && unmapAP(n.Src) == unmapAP(at.Remote) && unmapAP(n.Dst) == unmapAP(at.Local)
}

// Update handles an UPDATE_SA_ADDRESSES request that arrived on path at (the IP header's
// addresses) with NO_NATS_ALLOWED content noNATs (nil: none). refuse is the error notify
// to answer with (UNEXPECTED_NAT_DETECTED, UNACCEPTABLE_ADDRESSES), 0 when accepted: the
// IKE SA takes the new addresses at once, ESP when the peer's address is verified.
// From the initiator's point of view (we are the MOBIKE initiator) nothing happens: only
// the initiator moves SAs.
func (m *Manager) Update(now time.Time, host Host, at Path, noNATs *NoNATs) (refuse wire.NotifyType, ds []Decision) {
	if m.role != Responder || !m.mobike {
		return 0, []Decision{Note{Kind: NoteInfo, Msg: "UPDATE_SA_ADDRESSES from the MOBIKE responder: answered, nothing changes", Path: at}}
	}
	if noNATs != nil && !noNATs.Match(at) {
		return wire.UNEXPECTED_NAT_DETECTED, []Decision{Note{Kind: NoteInfo, Msg: "UPDATE_SA_ADDRESSES: NO_NATS_ALLOWED does not match the addresses it came with", Path: at}}
	}
	if !m.pol.localAllowed(at.Local.Addr()) || !host.has(at.Local.Addr()) || !Usable(at.Remote.Addr()) {
		return wire.UNACCEPTABLE_ADDRESSES, []Decision{Note{Kind: NoteInfo, Msg: "UPDATE_SA_ADDRESSES to addresses we do not accept", Path: at}}
	}
	m.forgetVerified(now)
	m.expireSwitch(now)
	old := m.ike
	m.ike = at
	ds = append(ds, SetIKEPath{Path: at})
	if at != old {
		ds = append(ds, Note{Kind: NoteMoved, Msg: "IKE SA moved by the peer", Path: at, Reason: "UPDATE_SA_ADDRESSES"})
	}
	if m.switchTo.IsValid() && at.Local.Addr() == m.switchTo {
		ds = append(ds, Note{Kind: NoteSwitched, Msg: "switch completed", Path: at, Reason: now.Sub(m.switchSince).String()})
		if old.Local.Addr() != at.Local.Addr() { // (a handed-over SA noted the gateway it left: Rehome)
			m.noteLeft(now, old.Local.Addr())
		}
		m.switchTo = netip.Addr{}
	}
	if m.Verified(at.Remote) {
		if m.rr != nil {
			m.rr.stale = true
			m.rr = nil
		}
		if m.esp != at {
			m.setESP(now, at)
			ds = append(ds, SetESPPath{Path: at})
		}
	} else {
		ds = append(ds, m.startReachability(at)...)
	}
	// Our additional addresses are relative to the one in use: if that changed, so did
	// they (the address we left is one the initiator may be asked back to).
	return 0, append(ds, m.AnnounceIfChanged(host)...)
}

// startReachability asks for a return routability check of the peer at p.
func (m *Manager) startReachability(p Path) []Decision {
	if m.rr != nil {
		m.rr.stale = true
	}
	c := m.newCheck(Reachability, p, "the peer's new address")
	m.rr = c
	return []Decision{
		Note{Kind: NoteInfo, Msg: "checking the peer's new address before ESP goes there", Path: p},
		StartCheck{Check: c},
	}
}

func (m *Manager) reachabilityReply(now time.Time, c *Check, at Path) []Decision {
	if m.rr == c {
		m.rr = nil
	}
	if !c.Bound() || at != c.Path {
		// It proves nothing about c.Path: ask again while the SA is still there.
		if m.rr == nil && m.ike == c.Path && !m.Verified(c.Path.Remote) && c.retries < maxReissue {
			n := m.reissue(c)
			m.rr = n
			return []Decision{Note{Kind: NoteInfo, Msg: "return routability reply from another path than the check went: asking again", Path: at}, StartCheck{Check: n}}
		}
		return nil
	}
	m.verify(now, c.Path.Remote)
	ds := []Decision{Note{Kind: NoteVerified, Msg: "the peer's new address answered", Path: c.Path}}
	if m.Verified(m.ike.Remote) && m.esp != m.ike {
		m.setESP(now, m.ike)
		ds = append(ds, SetESPPath{Path: m.ike})
	}
	return ds
}

// Exhausted is told that the request carrying check c ran out of retransmissions. A
// responder's return routability check is given up, not the SA: the initiator is
// responsible for recovering from failures (RFC 4555 3.11), and the verified path
// stays usable until a new one answered (an on-path attacker who races a re-sourced
// copy of the initiator's UPDATE_SA_ADDRESSES gets the check sent to a victim that
// never answers). IKE goes back to the verified ESP path, and the request, whose
// message ID the peer still has to see, gets another round of retransmissions there
// (again): the initiator, receiving it at an address it left, tells us where it is
// (PeerRequest). Anything else, and a check given up before: the peer is dead.
func (m *Manager) Exhausted(now time.Time, c *Check) (ds []Decision, again bool) {
	if c == nil || m.role != Responder || !m.mobike || c.Kind != Reachability || c.gaveUp {
		return nil, false
	}
	c.gaveUp = true
	ds = append(ds, Note{Kind: NoteInfo, Msg: "no answer to the return routability check: giving it up, back on the verified path", Path: m.esp, Reason: c.Path.String()})
	if m.rr != c {
		return ds, true // a newer check is on its way
	}
	m.rr = nil
	if m.ike != m.esp {
		m.ike = m.esp
		ds = append(ds, SetIKEPath{Path: m.esp},
			Note{Kind: NoteMoved, Msg: "IKE SA back on the verified path", Path: m.esp, Reason: "return routability check unanswered"})
	}
	return ds, true
}

// expireSwitch forgets a switch request the initiator did not follow within
// SwitchExpiry (it refused, or the request was lost): a later arrival there is no
// switch.
func (m *Manager) expireSwitch(now time.Time) {
	if m.switchTo.IsValid() && now.Sub(m.switchSince) >= SwitchExpiry {
		m.switchTo = netip.Addr{}
	}
}

// Refusal is a switch the path manager will not ask for.
type Refusal struct{ Reason string }

func (r *Refusal) Error() string { return r.Reason }

// SwitchTo asks the initiator to move the SA to our address to (the responder's
// `switch` command). Nothing changes until the initiator's UPDATE_SA_ADDRESSES arrives
// there. It refuses (*Refusal) when the peer did not advertise 'R', the connection does
// not allow switches (rmobike: false) or to (local_addrs), or SwitchLimit or SwitchHold
// say no.
func (m *Manager) SwitchTo(now time.Time, to netip.Addr) ([]Decision, error) {
	return m.askSwitch(now, to.Unmap(), true)
}

// HandOff asks the initiator to move to to, the address of another gateway that the SA
// is being handed to (another node of a cluster): SwitchTo's rules, except that to is
// not one of ours (it is not among the connection's local_addrs).
func (m *Manager) HandOff(now time.Time, to netip.Addr) ([]Decision, error) {
	return m.askSwitch(now, to.Unmap(), false)
}

// CancelSwitch forgets a switch request that was never sent (a hand-over that did not
// happen), as if it had not been asked for.
func (m *Manager) CancelSwitch() {
	if !m.switchTo.IsValid() {
		return
	}
	if n := len(m.switches); n > 0 && m.switches[n-1].Equal(m.switchSince) {
		m.switches = m.switches[:n-1]
	}
	m.switchTo, m.switchSince = netip.Addr{}, time.Time{}
}

func (m *Manager) askSwitch(now time.Time, to netip.Addr, ours bool) ([]Decision, error) {
	if err := m.switchCheck(now, to, ours); err != nil {
		return nil, err
	}
	m.countSwitch(now)
	m.switchTo, m.switchSince = to, now
	return []Decision{SendSwitch{To: to}}, nil
}

// CanHandOff reports whether HandOff to to would be refused now, and why, changing
// nothing.
func (m *Manager) CanHandOff(now time.Time, to netip.Addr) error {
	return m.switchCheck(now, to.Unmap(), false)
}

// switchCheck is why a switch request to to may not be sent now (nil: it may).
func (m *Manager) switchCheck(now time.Time, to netip.Addr, ours bool) error {
	switch {
	case m.role != Responder:
		return &Refusal{"we are the MOBIKE initiator of this SA: only responders ask for switches"}
	case !m.mobike || !m.peerR:
		return &Refusal{"the peer did not advertise R-MOBIKE support ('R')"}
	case !m.pol.RMobike:
		return &Refusal{"the connection has rmobike: false"}
	case ours && !m.pol.localAllowed(to):
		return &Refusal{to.String() + " is not among the connection's local_addrs"}
	case !ours && !Usable(to):
		return &Refusal{to.String() + " is not an address a peer can move to"}
	}
	if why := m.switchRefusal(now, to); why != "" {
		return &Refusal{why}
	}
	return nil
}

// SwitchPending is the address we asked the initiator to move to, if any.
func (m *Manager) SwitchPending() netip.Addr { return m.switchTo }

// LocalGone handles the loss of the responder's local address: RFC 4555 3.5 lets the
// responder move the SA to another of its addresses itself. A peer that advertised 'R'
// is asked to switch there; every peer hears the new address set. A return
// routability check under way starts again from the new address. ESP, which may wait
// on another path for that check, moves only when its own local address went, to one
// of its peer address's family.
func (m *Manager) LocalGone(now time.Time, host Host) []Decision {
	if m.role != Responder || !m.mobike {
		return nil
	}
	if host.has(m.ike.Local.Addr()) {
		return m.espLocalGone(host)
	}
	same, other := m.pickLocal(host)
	var ds []Decision
	switch {
	case same.IsValid():
		np := Path{Local: netip.AddrPortFrom(same, m.ike.Local.Port()), Remote: m.ike.Remote}
		m.ike = np
		var check []Decision
		if m.rr != nil && !m.Verified(np.Remote) {
			// The check went from the address that is gone: it goes stale (the
			// outstanding request is resent on the new path) and starts again there.
			check = m.startReachability(np)
		}
		ds = append(ds, SetIKEPath{Path: np, Resend: true})
		ds = append(ds, m.espLocalGone(host)...)
		ds = append(ds, Note{Kind: NoteMoved, Msg: "local address gone: moving the SA", Path: np, Reason: "local address gone"})
		ds = append(ds, check...)
		if m.peerR && m.pol.RMobike {
			m.countSwitch(now)
			m.switchTo, m.switchSince = same, now
			ds = append(ds, SendSwitch{To: same})
		}
	case other.IsValid() && m.peerR && m.pol.RMobike:
		// ESP cannot change address family by itself; the initiator can.
		m.countSwitch(now)
		m.switchTo, m.switchSince = other, now
		ds = append(ds, Note{Kind: NoteInfo, Msg: "local address gone: asking the peer to switch to another family", Path: m.ike}, SendSwitch{To: other})
	default:
		return []Decision{Note{Kind: NoteInfo, Msg: "the SA's local address is gone and no other is usable", Path: m.ike}}
	}
	// The address update goes out from the new address (RFC 4555 3.6).
	m.announcedOnce = false
	return append(ds, m.AnnounceIfChanged(host)...)
}

// espLocalGone moves ESP off a local address that is gone, to the IKE SA's local
// address if it is of the family of ESP's peer address, else to another usable one of
// that family: never a path with one end IPv4 and the other IPv6.
func (m *Manager) espLocalGone(host Host) []Decision {
	if host.has(m.esp.Local.Addr()) {
		return nil
	}
	is4 := m.esp.Remote.Addr().Is4()
	a := m.ike.Local.Addr()
	if a.Is4() != is4 || !host.has(a) {
		a = m.localFor(host, is4)
	}
	if !a.IsValid() {
		return []Decision{Note{Kind: NoteInfo, Msg: "ESP's local address is gone and no other of its family is usable", Path: m.esp}}
	}
	m.esp.Local = netip.AddrPortFrom(a, m.esp.Local.Port())
	return []Decision{SetESPPath{Path: m.esp}}
}

// localFor is a usable local address of a family the connection allows and the host
// has, if any.
func (m *Manager) localFor(host Host, is4 bool) netip.Addr {
	cands := m.pol.LocalAddrs
	if len(cands) == 0 {
		cands = host.Addrs
	}
	for _, a := range cands {
		if a = a.Unmap(); a.Is4() == is4 && host.has(a) && Usable(a) {
			return a
		}
	}
	return netip.Addr{}
}

// pickLocal picks another usable local address for the SA: of the peer's family, and of
// the other one.
func (m *Manager) pickLocal(host Host) (same, other netip.Addr) {
	cands := m.pol.LocalAddrs
	if len(cands) == 0 {
		cands = host.Addrs
	}
	for _, a := range cands {
		a = a.Unmap()
		if a == m.ike.Local.Addr() || !host.has(a) || !Usable(a) {
			continue
		}
		if a.Is4() == m.ike.Remote.Addr().Is4() {
			if !same.IsValid() {
				same = a
			}
		} else if !other.IsValid() {
			other = a
		}
	}
	return same, other
}
