package mobike

import (
	"net/netip"
	"slices"
	"time"

	"github.com/mobikevpn/mobikevpn/wire"
)

// The initiator's side: it decides which addresses the SA uses (RFC 4555 3.5). It moves
// in two ways:
//
//   - committed: the old path cannot be used any more or is no longer the one the
//     routing table picks (an address went, the routes changed, the NAT mapping
//     changed). IKE and ESP go to the new path at once and an UPDATE_SA_ADDRESSES tells
//     the responder.
//   - tentative: a switch request, or a reply that arrived on another pair while
//     probing. The UPDATE_SA_ADDRESSES goes to the new path only; everything else stays
//     on the old one until its reply comes back from exactly that path. Without a reply
//     after FallbackAfter retransmissions the initiator gives the new path up, goes back
//     and tells the responder where it is with a new UPDATE_SA_ADDRESSES.

// Reevaluate is the initiator's choice of path after the host's addresses or routes
// changed: the source address the routing table picks for the peer (of the peer's
// family), else any usable one of the peer's family, else a pair of the other family
// with a peer address the SA may commit to (committedCandidates).
func (m *Manager) Reevaluate(now time.Time, host Host, why string) []Decision {
	if m.role != Initiator || !m.mobike {
		return nil
	}
	cur := m.ike
	want := cur.Local.Addr()
	if host.Route != nil {
		if a, ok := host.Route(cur.Remote.Addr()); ok && Usable(a) && a.Unmap().Is4() == cur.Remote.Addr().Is4() && host.has(a) && m.pol.localAllowed(a) {
			want = a.Unmap()
		}
	}
	if want == cur.Local.Addr() && !host.has(want) {
		want = m.localOfFamily(host, cur.Remote.Addr().Is4())
	}
	switch {
	case want == cur.Local.Addr():
		return nil
	case want.IsValid():
		return m.commit(now, Path{Local: netip.AddrPortFrom(want, cur.Local.Port()), Remote: cur.Remote}, why)
	}
	// Nothing of the peer's family: a pair of the other family, if the peer has one.
	for _, p := range m.committedCandidates(now, host, cur) {
		if host.has(p.Local.Addr()) {
			return m.commit(now, p, why)
		}
	}
	return []Decision{Note{Kind: NoteInfo, Msg: "no usable local address to reach the peer; waiting for one", Path: cur, Reason: why}}
}

// SwitchRequest handles a SWITCH_TO_IP_ADDRESS request after the engine answered it
// (draft-smyslov-ipsecme-ikev2-r-mobike 4.2). target is its address, or err why it is
// malformed. An acceptable target is tried tentatively; anything else leaves the SA
// where it is and is followed by a liveness check, as the draft recommends.
func (m *Manager) SwitchRequest(now time.Time, host Host, target netip.Addr, err error) []Decision {
	if m.role != Initiator || !m.mobike {
		return nil
	}
	if !m.pol.RMobike {
		return []Decision{Note{Kind: NoteInfo, Msg: "SWITCH_TO_IP_ADDRESS ignored: we did not advertise R-MOBIKE (rmobike: false)"}}
	}
	if err != nil {
		return m.refuseSwitch("malformed SWITCH_TO_IP_ADDRESS: " + err.Error())
	}
	target = target.Unmap()
	if u := m.update; u != nil && u.Tentative && u.Path.Remote.Addr() == target {
		return nil // on its way there already
	}
	if target == m.ike.Remote.Addr() {
		return []Decision{Note{Kind: NoteInfo, Msg: "switch request for the address in use: nothing to do", Path: m.ike}}
	}
	if why := m.switchRefusal(now, target); why != "" {
		return m.refuseSwitch(why)
	}
	ok, why := m.pol.SwitchAccept.Decide(target, m.peerAddrs, func(is4 bool) bool {
		return m.localOfFamily(host, is4).IsValid()
	})
	if !ok {
		return m.refuseSwitch(why)
	}
	local := m.ike.Local.Addr()
	if local.Is4() != target.Is4() || !host.has(local) {
		local = m.localOfFamily(host, target.Is4())
	}
	p := Path{Local: netip.AddrPortFrom(local, m.ike.Local.Port()), Remote: netip.AddrPortFrom(target, m.ike.Remote.Port())}
	m.countSwitch(now)
	ds := []Decision{Note{Kind: NoteInfo, Msg: "switching as the responder asks", Path: p, Reason: why}}
	return append(ds, m.tentative(p, "SWITCH_TO_IP_ADDRESS", m.ike.Remote.Addr())...)
}

func (m *Manager) refuseSwitch(why string) []Decision {
	return []Decision{Note{Kind: NoteSwitchRefused, Msg: "refusing to switch", Path: m.ike, Reason: why}, LivenessCheck{}}
}

// NATMapping handles the NAT_DETECTION_DESTINATION_IP of a liveness check's reply (an
// initiator behind a NAT sends NAT detection in them, RFC 4555 3.8): when it differs
// from the last one (of the IKE_SA_INIT response, an UPDATE_SA_ADDRESSES response or a
// liveness check), the NAT mapping changed and an UPDATE_SA_ADDRESSES tells the
// responder. With nothing to compare with, the mapping may have changed unseen: the
// UPDATE_SA_ADDRESSES goes anyway (RFC 4555 3.8 allows skipping the detection).
func (m *Manager) NATMapping(now time.Time, dst []byte) []Decision {
	if m.role != Initiator || !m.mobike || len(dst) == 0 {
		return nil
	}
	prev := m.lastNATD
	m.lastNATD = slices.Clone(dst)
	if prev != nil && sameBytes(prev, dst) {
		return nil
	}
	msg := "our NAT mapping changed: updating the SA"
	if prev == nil {
		msg = "no earlier NAT detection to compare with: updating the SA in case our NAT mapping changed"
	}
	ds := []Decision{Note{Kind: NoteInfo, Msg: msg, Path: m.ike}}
	return append(ds, m.reissueOn(m.ike, "NAT mapping change")...)
}

// NoteNATD records the NAT_DETECTION_DESTINATION_IP of a confirmed
// UPDATE_SA_ADDRESSES reply, which later liveness checks are compared with.
func (m *Manager) NoteNATD(dst []byte) {
	if len(dst) > 0 {
		m.lastNATD = slices.Clone(dst)
	}
}

// Retransmit is told of the tries-th retransmission of the request carrying check c
// (nil: an ordinary request). It returns the other paths to send a copy on (path
// probing, RFC 4555 3.10) and decisions. A tentative UPDATE_SA_ADDRESSES that
// FallbackAfter retransmissions did not get an answer for falls back to the old path;
// when a request gets no more than FallbackAfter retransmissions (Config.Tries), the
// first one already goes to the old path, so that a new path that does not answer
// never costs the SA.
func (m *Manager) Retransmit(now time.Time, host Host, c *Check, tries int) ([]Path, []Decision) {
	if m.role != Initiator || !m.mobike {
		return nil, nil
	}
	if c != nil && c.Bound() && c.Tentative {
		if tries-c.since <= m.fallbackAfter() {
			return nil, nil
		}
		c.unbound, c.since = true, tries
		m.fail(now, c.Path)
		return nil, []Decision{Note{Kind: NoteFellBack, Msg: "no answer on the new path: back on the old one", Path: c.Fallback,
			Reason: c.Why + " to " + c.Path.Remote.Addr().String()}}
	}
	since := 0
	if c != nil {
		since = c.since
	}
	if tries-since < ProbeAfter {
		return nil, nil
	}
	pairs := m.candidates(now, host, m.Dest(c))
	if len(pairs) == 0 {
		return nil, nil
	}
	var ds []Decision
	if !m.probing {
		ds = append(ds, Note{Kind: NoteInfo, Msg: "the path does not answer: probing other address pairs", Path: m.ike})
	}
	m.probing, m.probed = true, pairs
	if c != nil {
		c.unbound = true // it has gone to several paths now
	}
	return pairs, ds
}

// ordinaryReply handles the reply to a request that is not a check: while probing, a
// reply on one of the probed pairs is a hint that the pair works, which a tentative
// UPDATE_SA_ADDRESSES to exactly that pair then confirms (RFC 4555 3.7: a reply to a
// request sent to several addresses does not prove which one works).
func (m *Manager) ordinaryReply(now time.Time, at Path) []Decision {
	if m.role != Initiator || !m.probing {
		return nil
	}
	probed := m.probed
	m.probing, m.probed = false, nil
	if at == m.ike {
		return nil
	}
	if !slices.Contains(probed, at) {
		return []Decision{Note{Kind: NoteInfo, Msg: "reply from an address pair we did not probe: not a hint", Path: at}}
	}
	return m.tentative(at, "path probing", netip.Addr{})
}

func (m *Manager) updateReply(now time.Time, host Host, c *Check, at Path, r Reply) []Decision {
	if m.update == c {
		m.update = nil
	}
	probed := m.probed
	m.probing, m.probed = false, nil
	if !c.Bound() {
		// It went to several paths: its reply proves nothing, and the responder may
		// have taken it at any of them. A new UPDATE_SA_ADDRESSES settles where we are
		// (RFC 4555 3.6, 3.7).
		if !c.Tentative && at != m.ike && slices.Contains(probed, at) {
			return m.tentative(at, "path probing", netip.Addr{})
		}
		why := c.Why
		if c.Tentative {
			why = "back from " + c.Path.Remote.Addr().String() + " (" + c.Why + ")"
		}
		return m.reissueOn(m.ike, why)
	}
	if at != c.Path {
		if c.retries >= maxReissue {
			if c.Tentative {
				// The responder took those UPDATEs (it answered them): tell it where
				// we stay, as after the other fallbacks.
				m.fail(now, c.Path)
				ds := []Decision{Note{Kind: NoteFellBack, Msg: "the new path's replies keep coming from elsewhere: staying on the old one", Path: c.Fallback, Reason: c.Why}}
				return append(ds, m.reissueOn(m.ike, "back from "+c.Path.Remote.Addr().String()+" ("+c.Why+")")...)
			}
			return []Decision{Note{Kind: NoteInfo, Msg: "the replies to UPDATE_SA_ADDRESSES keep coming from another path", Path: at}}
		}
		n := m.reissue(c)
		m.update = n
		return []Decision{Note{Kind: NoteInfo, Msg: "reply to UPDATE_SA_ADDRESSES from another path than it went: asking again", Path: at}, StartCheck{Check: n}}
	}
	switch r.Error {
	case 0:
		ds := []Decision{Confirmed{Path: c.Path}}
		m.failed = slices.DeleteFunc(m.failed, func(f stamped[Path]) bool { return f.v == c.Path })
		if !c.Tentative {
			return append(ds, Note{Kind: NoteInfo, Msg: "the peer took our addresses", Path: c.Path, Reason: c.Why})
		}
		m.ike, m.esp = c.Path, c.Path
		m.remember(c.Path.Remote.Addr())
		if c.switchFrom.IsValid() {
			m.noteLeft(now, c.switchFrom)
		}
		return append(ds, SetIKEPath{Path: c.Path}, SetESPPath{Path: c.Path},
			Note{Kind: NoteMoved, Msg: "IKE SA moved", Path: c.Path, Reason: c.Why})
	case wire.UNEXPECTED_NAT_DETECTED:
		// RFC 4555 3.9: an attacker who changed one packet must not keep a path unused:
		// try again with new requests a few times.
		if c.retries < maxReissue {
			n := m.reissue(c)
			m.update = n
			return []Decision{Note{Kind: NoteInfo, Msg: "UNEXPECTED_NAT_DETECTED: trying again", Path: c.Path}, StartCheck{Check: n}}
		}
	}
	// UNACCEPTABLE_ADDRESSES (or another error): the responder did not take the path
	// (RFC 4555 3.5: select another pair, or keep the old one).
	m.fail(now, c.Path)
	reason := r.Error.String()
	if c.Tentative {
		return []Decision{Note{Kind: NoteFellBack, Msg: "the peer refused the new addresses: staying on the old ones", Path: c.Fallback, Reason: reason}}
	}
	for _, p := range m.committedCandidates(now, host, c.Path) {
		if host.has(p.Local.Addr()) {
			ds := []Decision{Note{Kind: NoteInfo, Msg: "the peer refused our addresses: trying another pair", Path: c.Path, Reason: reason}}
			return append(ds, m.commit(now, p, "the peer refused "+c.Path.String())...)
		}
	}
	return []Decision{Note{Kind: NoteInfo, Msg: "the peer refused our addresses and no other pair is left", Path: c.Path, Reason: reason}}
}

// commit moves IKE and ESP to p at once and tells the responder.
func (m *Manager) commit(now time.Time, p Path, why string) []Decision {
	m.ike, m.esp = p, p
	m.probing, m.probed = false, nil
	m.remember(p.Remote.Addr())
	ds := []Decision{
		SetIKEPath{Path: p, Resend: true},
		SetESPPath{Path: p},
		Note{Kind: NoteMoved, Msg: "moving IKE SA", Path: p, Reason: why},
	}
	return append(ds, m.reissueOn(p, why)...)
}

// reissueOn sends a new UPDATE_SA_ADDRESSES for the path the SA is on (p is m.ike),
// superseding any other.
func (m *Manager) reissueOn(p Path, why string) []Decision {
	if m.update != nil {
		m.update.stale = true
	}
	c := m.newCheck(Update, p, why)
	m.update = c
	return []Decision{StartCheck{Check: c}}
}

// tentative tries p with an UPDATE_SA_ADDRESSES that goes there only, while everything
// else stays where it is.
func (m *Manager) tentative(p Path, why string, from netip.Addr) []Decision {
	if m.update != nil {
		m.update.stale = true
	}
	c := m.newCheck(Update, p, why)
	c.Tentative, c.Fallback, c.switchFrom = true, m.ike, from
	m.update = c
	return []Decision{StartCheck{Check: c}}
}

// candidates lists the address pairs worth probing besides exclude: every usable local
// address with every peer address of the same family (the one in use, the announced
// ones, every one used or seen, the configured ones), without pairs that failed lately.
// A reply on one of them leads to a tentative move only.
func (m *Manager) candidates(now time.Time, host Host, exclude Path) []Path {
	return m.pairsWith(now, host, exclude, m.seen)
}

// committedCandidates lists the address pairs a committed move (IKE and ESP at once,
// without a reply from there first) may go to: like candidates, but only with the
// peer's current, announced and configured addresses and those the SA was confirmed on,
// never with one that merely sent us something (RFC 4555 3.8: anyone on the path can
// re-source a packet).
func (m *Manager) committedCandidates(now time.Time, host Host, exclude Path) []Path {
	return m.pairsWith(now, host, exclude, nil)
}

// pairsWith lists the address pairs besides exclude with the peer's current,
// announced, confirmed and configured addresses and extra.
func (m *Manager) pairsWith(now time.Time, host Host, exclude Path, extra []netip.Addr) []Path {
	var locals []netip.Addr
	if host.Addrs != nil {
		for _, a := range host.Addrs {
			if m.pol.localAllowed(a) {
				locals = append(locals, a)
			}
		}
	} else if len(m.pol.LocalAddrs) > 0 {
		locals = m.pol.LocalAddrs
	} else {
		locals = []netip.Addr{m.ike.Local.Addr()}
	}
	remotes := []netip.Addr{m.ike.Remote.Addr()}
	remotes = append(remotes, m.peerAddrs...)
	remotes = append(remotes, m.used...)
	remotes = append(remotes, m.pol.RemoteAddrs...)
	remotes = append(remotes, extra...)
	var out []Path
	for _, pr := range Pairs(exclude.pair(), locals, remotes, MaxProbePairs+1)[1:] {
		p := Path{Local: netip.AddrPortFrom(pr.Local, m.ike.Local.Port()), Remote: netip.AddrPortFrom(pr.Remote, m.ike.Remote.Port())}
		if p == exclude || m.failedRecently(now, p) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// localOfFamily is a usable local address of a family: the current one if it fits,
// else the routing table's choice, else any the connection allows.
func (m *Manager) localOfFamily(host Host, is4 bool) netip.Addr {
	cur := m.ike.Local.Addr()
	if cur.Is4() == is4 && host.has(cur) && Usable(cur) {
		return cur
	}
	if host.Addrs != nil {
		for _, a := range host.Addrs {
			if a.Is4() == is4 && Usable(a) && m.pol.localAllowed(a) {
				return a
			}
		}
		return netip.Addr{}
	}
	for _, a := range m.pol.LocalAddrs {
		if a.Is4() == is4 && Usable(a) {
			return a
		}
	}
	return netip.Addr{}
}

// fallbackAfter is how many retransmissions of a tentative UPDATE_SA_ADDRESSES go to the
// new path before the initiator falls back: FallbackAfter, or none when requests get
// no more retransmissions than that (the old path must get at least one).
func (m *Manager) fallbackAfter() int {
	if m.tries > 0 && m.tries <= FallbackAfter {
		return 0
	}
	return FallbackAfter
}

// PeerRequest handles a new authenticated request of the peer that arrived on path at.
// An initiator that gets one at a local address the SA left is not where the responder
// thinks (the responder gave up its check of our new address, or its view got
// redirected): RFC 4555 3.11 makes the initiator responsible for recovery, so a new
// UPDATE_SA_ADDRESSES on the path we use tells the responder where we are, unless one
// is on its way. Nothing moves.
func (m *Manager) PeerRequest(now time.Time, at Path) []Decision {
	if m.role != Initiator || !m.mobike || m.update != nil || !Usable(at.Local.Addr()) ||
		unmapAP(at.Remote) != unmapAP(m.ike.Remote) || unmapAP(at.Local) == unmapAP(m.ike.Local) {
		return nil // (a platform that does not tell the local address gives none)
	}
	ds := []Decision{Note{Kind: NoteInfo, Msg: "the peer sends to an address of ours the SA left: telling it where we are", Path: at}}
	return append(ds, m.reissueOn(m.ike, "the peer used an address we left")...)
}

// Resume is the initiator's return after the host was offline (no route to the peer):
// it tells the responder where the SA is now with an UPDATE_SA_ADDRESSES on the path
// the routing table picks (its NAT mapping, or our address, may be new), even when that
// is the path it had.
func (m *Manager) Resume(now time.Time, why string) []Decision {
	if m.role != Initiator || !m.mobike {
		return nil
	}
	return m.commit(now, m.ike, why)
}
