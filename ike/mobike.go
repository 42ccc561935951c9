package ike

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	ikecrypto "github.com/mobikevpn/mobikevpn/ike/crypto"
	"github.com/mobikevpn/mobikevpn/ike/wire"
	"github.com/mobikevpn/mobikevpn/mobike"
)

// MOBIKE (RFC 4555) and the responder-initiated switch
// (draft-smyslov-ipsecme-ikev2-r-mobike). "Initiator" here means the original initiator
// of the first IKE SA of a chain of rekeyed ones (sa.origInitiator), as both documents
// define it.

// probeAfter is the retransmission from which an initiator also tries the request on
// every other address pair (path probing, RFC 4555 3.6).
const probeAfter = 1

// maxProbePairs bounds the pairs probed at once.
const maxProbePairs = 8

// UpdateEndpoints asks for the flow Policy to be sent from Local to Remote from now on:
// a MOBIKE move, atomic in the datapath.
type UpdateEndpoints struct {
	IKESA     uint64
	Policy    uint64
	Local     netip.AddrPort
	Remote    netip.AddrPort
	Keepalive bool
}

func (UpdateEndpoints) action() {}

// mobikeState is the MOBIKE part of an IKE SA.
type mobikeState struct {
	peerAddrs     []netip.Addr // the peer's additional addresses, as last announced
	announced     []netip.Addr // what we announced last
	announcedOnce bool

	updateGen int    // bumps with every move; older UPDATE responses are ignored
	cookie2   []byte // of our pending UPDATE_SA_ADDRESSES
	probing   bool   // the current request is also sent on other pairs
	lastNATD  []byte // initiator: the peer's last NAT_DETECTION_DESTINATION_IP (rebinding)

	verified map[netip.Addr]bool // responder: initiator addresses known to be reachable

	switchTo    netip.Addr // responder: the address we asked the initiator to move to
	switchSince time.Time
}

// SetLocalAddrs tells the engine which addresses the host has now (nil: unknown). MOBIKE
// initiators move away from addresses that went; everyone re-announces its additional
// addresses when they changed; a responder whose address went moves its SAs itself.
func (e *Engine) SetLocalAddrs(now time.Time, addrs []netip.Addr) []Action {
	e.localAddrs = make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if mobike.Usable(a) {
			e.localAddrs = append(e.localAddrs, a.Unmap())
		}
	}
	e.reevaluateAll(now, "address change")
	return e.take()
}

// RoutesChanged makes MOBIKE initiators check that their SAs still use the source
// address the routing table picks for their peer.
func (e *Engine) RoutesChanged(now time.Time) []Action {
	e.reevaluateAll(now, "route change")
	return e.take()
}

func (e *Engine) hasLocal(a netip.Addr) bool {
	return e.localAddrs == nil || slices.Contains(e.localAddrs, a.Unmap())
}

func (e *Engine) reevaluateAll(now time.Time, why string) {
	for _, sa := range e.sorted() {
		if sa.state != stateEstablished || !sa.mobike || sa.rekeyedTo != nil {
			continue
		}
		if sa.origInitiator {
			e.reevaluatePath(now, sa, why)
		} else if !e.hasLocal(sa.local.Addr()) {
			e.responderAddressGone(now, sa)
		}
		e.announceIfChanged(now, sa)
		e.schedule(sa)
	}
}

// reevaluatePath is the initiator's choice of path: the source address the routing
// table picks for the peer, else any usable one of the peer's family.
func (e *Engine) reevaluatePath(now time.Time, sa *IKESA, why string) {
	cur := sa.local.Addr()
	want := cur
	if e.cfg.SourceAddr != nil {
		if a, err := e.cfg.SourceAddr(sa.remote.Addr()); err == nil && mobike.Usable(a) && e.hasLocal(a) && addrAllowed(sa.conn.LocalAddrs, a) {
			want = a.Unmap()
		}
	}
	if want == cur && !e.hasLocal(cur) {
		want = netip.Addr{}
		for _, a := range e.localAddrs {
			if a.Is4() == sa.remote.Addr().Is4() && addrAllowed(sa.conn.LocalAddrs, a) {
				want = a
				break
			}
		}
	}
	switch {
	case !want.IsValid():
		e.log.Info("no usable local address to reach the peer; waiting for one", "sa", sa.id, "peer", sa.remote.Addr())
	case want != cur:
		e.moveSA(now, sa, netip.AddrPortFrom(want, sa.local.Port()), sa.remote, why)
	}
}

// moveSA is the initiator's move to a new address pair (RFC 4555 3.5): the IKE SA and
// its Child SAs take the new addresses at once, outstanding requests go there, and an
// UPDATE_SA_ADDRESSES tells the responder.
func (e *Engine) moveSA(now time.Time, sa *IKESA, local, remote netip.AddrPort, why string) {
	if local == sa.local && remote == sa.remote && why != "NAT mapping change" {
		return
	}
	e.log.Info("moving IKE SA", "sa", sa.id, "from", sa.local, "to", local, "peer_from", sa.remote, "peer_to", remote, "why", why)
	sa.local, sa.remote = local, remote
	sa.mob.probing = false
	e.updateChildEndpoints(sa)
	e.emit(Event{IKESA: sa.id, Conn: sa.conn.Name, Kind: EventMoved, Reason: why})
	// Outstanding requests continue on the new path, now.
	if r := sa.pending; r != nil {
		r.tries = 0
		r.nextAt = now.Add(e.retransmitDelay(0))
		e.sendAll(sa, r.data)
	}
	e.queueUpdate(now, sa)
}

// updateChildEndpoints re-points every flow of sa to the IKE SA's addresses.
func (e *Engine) updateChildEndpoints(sa *IKESA) {
	for _, c := range sa.children {
		if c.outActive {
			e.emit(UpdateEndpoints{IKESA: sa.id, Policy: c.policy, Local: sa.local, Remote: sa.remote, Keepalive: sa.natLocal})
		}
	}
}

// queueUpdate (re)queues our UPDATE_SA_ADDRESSES for the current addresses, replacing
// one that has not gone out yet.
func (e *Engine) queueUpdate(now time.Time, sa *IKESA) {
	kept := sa.queue[:0]
	for _, r := range sa.queue {
		if r.kind != reqUpdate {
			kept = append(kept, r)
		}
	}
	sa.queue = kept
	sa.mob.updateGen++
	gen := sa.mob.updateGen
	cookie2, err := mobike.NewCookie2(e.rand)
	if err != nil {
		return
	}
	sa.mob.cookie2 = cookie2
	payloads := []wire.Payload{&wire.Notify{NotifyType: wire.UPDATE_SA_ADDRESSES}}
	payloads = append(payloads, e.natDetection(sa, sa.local, sa.remote)...)
	payloads = append(payloads, &wire.Notify{NotifyType: wire.COOKIE2, Data: cookie2})
	e.queueRequest(now, sa, &request{
		exchange: wire.INFORMATIONAL,
		payloads: payloads,
		kind:     reqUpdate,
		onReply: func(e *Engine, now time.Time, sa *IKESA, m *wire.Message) {
			if gen != sa.mob.updateGen {
				return // moved again since: a newer update is on its way
			}
			c2 := wire.FindNotify(m.Payloads, wire.COOKIE2)
			if c2 == nil || mobike.CheckCookie2(cookie2, c2.Data) != nil {
				e.log.Warn("UPDATE_SA_ADDRESSES response with a wrong COOKIE2: closing the IKE SA", "sa", sa.id)
				e.deleteIKESA(now, sa, "COOKIE2 mismatch in UPDATE_SA_ADDRESSES response")
				return
			}
			if n := errorNotify(m.Payloads); n != nil {
				e.log.Warn("the peer refused our new addresses", "sa", sa.id, "reason", n.NotifyType.String(), "local", sa.local, "remote", sa.remote)
				return
			}
			e.noteNAT(sa, m.Payloads)
			readAdditional(sa, m.Payloads)
			e.log.Info("IKE SA moved", "sa", sa.id, "local", sa.local, "remote", sa.remote)
		},
	})
}

// noteNAT evaluates the NAT detection notifies of a response from the responder.
func (e *Engine) noteNAT(sa *IKESA, ps []wire.Payload) {
	natL, natR, ok := checkNAT(ps, sa.spiI, sa.spiR, sa.local, sa.remote)
	if !ok {
		return
	}
	if dst := wire.FindNotify(ps, wire.NAT_DETECTION_DESTINATION_IP); dst != nil {
		sa.mob.lastNATD = append([]byte(nil), dst.Data...)
	}
	changed := natL != sa.natLocal
	sa.natLocal, sa.natRemote = natL, natR
	if changed {
		e.updateChildEndpoints(sa)
	}
}

// announcement is what sa announces now.
func (e *Engine) announcement(sa *IKESA) []netip.Addr {
	return sa.conn.Announce.Addresses(sa.local.Addr(), e.localAddrs)
}

// additionalNotifies encodes an announcement: the addresses, or NO_ADDITIONAL_ADDRESSES.
func additionalNotifies(addrs []netip.Addr) []wire.Payload {
	if len(addrs) == 0 {
		return []wire.Payload{&wire.Notify{NotifyType: wire.NO_ADDITIONAL_ADDRESSES}}
	}
	var out []wire.Payload
	for _, a := range addrs {
		t := wire.ADDITIONAL_IP4_ADDRESS
		if a.Is6() {
			t = wire.ADDITIONAL_IP6_ADDRESS
		}
		out = append(out, wire.NewAddressNotify(t, a))
	}
	return out
}

// announceIfChanged sends an INFORMATIONAL with our additional addresses when they
// differ from what the peer last heard.
func (e *Engine) announceIfChanged(now time.Time, sa *IKESA) {
	addrs := e.announcement(sa)
	if sa.mob.announcedOnce && slices.Equal(addrs, sa.mob.announced) {
		return
	}
	sa.mob.announced, sa.mob.announcedOnce = addrs, true
	e.queueRequest(now, sa, &request{exchange: wire.INFORMATIONAL, payloads: additionalNotifies(addrs), kind: reqNotify})
}

// readAdditional updates the peer's address list from a message's notifies; it reports
// whether the message carried any.
func readAdditional(sa *IKESA, ps []wire.Payload) bool {
	var list []netip.Addr
	seen := false
	for _, p := range ps {
		n, ok := p.(*wire.Notify)
		if !ok {
			continue
		}
		switch n.NotifyType {
		case wire.ADDITIONAL_IP4_ADDRESS, wire.ADDITIONAL_IP6_ADDRESS:
			seen = true
			if a, err := n.Address(); err == nil && mobike.Usable(a) && !slices.Contains(list, a) && len(list) < 32 {
				list = append(list, a)
			}
		case wire.NO_ADDITIONAL_ADDRESSES:
			seen = true
		}
	}
	if seen {
		sa.mob.peerAddrs = list
	}
	return seen
}

// handleUpdate is the responder's processing of UPDATE_SA_ADDRESSES (RFC 4555 3.5). It
// returns the response payloads.
func (e *Engine) handleUpdate(now time.Time, sa *IKESA, local, remote netip.AddrPort, m *wire.Message) []wire.Payload {
	var out []wire.Payload
	echo := func() {
		if c := wire.FindNotify(m.Payloads, wire.COOKIE2); c != nil {
			out = append(out, &wire.Notify{NotifyType: wire.COOKIE2, Data: c.Data})
		}
	}
	if !sa.mobike || sa.origInitiator {
		echo() // only the initiator moves SAs: answer, do nothing
		return out
	}
	natL, natR, _ := checkNAT(m.Payloads, sa.spiI, sa.spiR, local, remote)
	if wire.FindNotify(m.Payloads, wire.NO_NATS_ALLOWED) != nil && (natL || natR) {
		out = append(out, &wire.Notify{NotifyType: wire.UNEXPECTED_NAT_DETECTED})
		echo()
		return out
	}
	if !addrAllowed(sa.conn.LocalAddrs, local.Addr()) || !e.hasLocal(local.Addr()) || !mobike.Usable(remote.Addr()) {
		out = append(out, &wire.Notify{NotifyType: wire.UNACCEPTABLE_ADDRESSES})
		echo()
		return out
	}
	moved := local != sa.local || remote != sa.remote
	sa.local, sa.remote = local, remote
	sa.natLocal, sa.natRemote = natL, natR
	out = append(out, e.natDetection(sa, local, remote)...)
	echo()
	// Our additional addresses are relative to the one in use: if that changed, so did
	// they (the address we left becomes one the initiator may be asked back to).
	if ann := e.announcement(sa); !slices.Equal(ann, sa.mob.announced) {
		sa.mob.announced, sa.mob.announcedOnce = ann, true
		out = append(out, additionalNotifies(ann)...)
	}
	if moved {
		e.log.Info("IKE SA moved by the peer", "sa", sa.id, "local", local, "remote", remote)
		e.emit(Event{IKESA: sa.id, Conn: sa.conn.Name, Kind: EventMoved, Reason: "UPDATE_SA_ADDRESSES"})
	}
	if sa.mob.switchTo.IsValid() && local.Addr() == sa.mob.switchTo {
		e.log.Info("switch completed", "sa", sa.id, "to", local, "after", now.Sub(sa.mob.switchSince))
		e.emit(Event{IKESA: sa.id, Conn: sa.conn.Name, Kind: EventSwitched, Reason: local.Addr().String()})
		sa.mob.switchTo = netip.Addr{}
	}
	if sa.mob.verified[remote.Addr()] {
		e.updateChildEndpoints(sa)
	} else {
		e.returnRoutability(now, sa, remote)
	}
	return out
}

// returnRoutability checks that the initiator really is at its new address before
// ESP goes there (RFC 4555 3.7, 5.2): an INFORMATIONAL with COOKIE2, answered from there.
func (e *Engine) returnRoutability(now time.Time, sa *IKESA, remote netip.AddrPort) {
	cookie2, err := mobike.NewCookie2(e.rand)
	if err != nil {
		return
	}
	gen := sa.mob.updateGen + 1
	sa.mob.updateGen = gen
	e.queueRequest(now, sa, &request{
		exchange: wire.INFORMATIONAL,
		payloads: []wire.Payload{&wire.Notify{NotifyType: wire.COOKIE2, Data: cookie2}},
		kind:     reqNotify,
		onReply: func(e *Engine, now time.Time, sa *IKESA, m *wire.Message) {
			c2 := wire.FindNotify(m.Payloads, wire.COOKIE2)
			if c2 == nil || mobike.CheckCookie2(cookie2, c2.Data) != nil {
				e.log.Warn("return routability check failed: wrong COOKIE2; closing the IKE SA", "sa", sa.id)
				e.deleteIKESA(now, sa, "COOKIE2 mismatch in return routability check")
				return
			}
			if sa.mob.verified == nil {
				sa.mob.verified = make(map[netip.Addr]bool)
			}
			sa.mob.verified[remote.Addr()] = true
			if gen == sa.mob.updateGen && sa.remote == remote {
				e.updateChildEndpoints(sa)
			}
		},
	})
}

// responderAddressGone moves a responder's SAs off a local address that disappeared
// (RFC 4555 3.5 allows the responder that much): peers that speak R-MOBIKE are asked
// to switch, the others learn the new address from an address update sent from it.
func (e *Engine) responderAddressGone(now time.Time, sa *IKESA) {
	to := e.pickLocal4Responder(sa)
	if !to.IsValid() {
		e.log.Warn("the SA's local address is gone and no other is usable", "sa", sa.id, "addr", sa.local.Addr())
		return
	}
	e.log.Info("local address gone: moving the SA", "sa", sa.id, "from", sa.local.Addr(), "to", to, "rmobike", sa.peerRMobike)
	sa.local = netip.AddrPortFrom(to, sa.local.Port())
	e.updateChildEndpoints(sa)
	if sa.peerRMobike {
		e.sendSwitch(now, sa, to)
	}
	// The announcement goes out from the new address either way.
	sa.mob.announcedOnce = false
}

// pickLocal4Responder picks another usable local address for a responder's SA: one of
// the connection's local addresses the host still has, the SA's family first.
func (e *Engine) pickLocal4Responder(sa *IKESA) netip.Addr {
	cands := sa.conn.LocalAddrs
	if len(cands) == 0 {
		cands = e.localAddrs
	}
	var other netip.Addr
	for _, a := range cands {
		if a == sa.local.Addr() || !e.hasLocal(a) || !mobike.Usable(a) {
			continue
		}
		if a.Is4() == sa.remote.Addr().Is4() {
			return a
		}
		if !other.IsValid() {
			other = a
		}
	}
	return other
}

// sendSwitch asks the initiator to move to local address to
// (draft-smyslov-ipsecme-ikev2-r-mobike 4.2). Nothing changes until its
// UPDATE_SA_ADDRESSES arrives there.
func (e *Engine) sendSwitch(now time.Time, sa *IKESA, to netip.Addr) {
	// A newer switch supersedes one that has not gone out yet.
	kept := sa.queue[:0]
	for _, r := range sa.queue {
		if r.kind != reqSwitch {
			kept = append(kept, r)
		}
	}
	sa.queue = kept
	sa.mob.switchTo = to
	sa.mob.switchSince = now
	e.queueRequest(now, sa, &request{
		exchange: wire.INFORMATIONAL,
		payloads: []wire.Payload{wire.NewAddressNotify(wire.SWITCH_TO_IP_ADDRESS, to)},
		kind:     reqSwitch,
	})
}

// handleSwitch is the initiator's processing of SWITCH_TO_IP_ADDRESS after it has
// answered the request (draft 4.2).
func (e *Engine) handleSwitch(now time.Time, sa *IKESA, n *wire.Notify) {
	target, err := n.Address()
	if err != nil {
		e.log.Info("malformed SWITCH_TO_IP_ADDRESS: staying", "sa", sa.id, "err", err)
		e.livenessCheck(now, sa)
		return
	}
	if target == sa.remote.Addr() {
		return // already there
	}
	ok, why := sa.conn.SwitchAccept.Decide(target, sa.mob.peerAddrs, func(is4 bool) bool {
		return e.localOfFamily(sa, is4).IsValid()
	})
	if !ok {
		e.log.Info("refusing to switch", "sa", sa.id, "to", target, "why", why)
		e.emit(Event{IKESA: sa.id, Conn: sa.conn.Name, Kind: EventSwitchRefused, Reason: why})
		e.livenessCheck(now, sa)
		return
	}
	local := sa.local.Addr()
	if local.Is4() != target.Is4() {
		local = e.localOfFamily(sa, target.Is4())
	}
	e.log.Info("switching as the responder asks", "sa", sa.id, "to", target, "why", why)
	e.moveSA(now, sa, netip.AddrPortFrom(local, sa.local.Port()), netip.AddrPortFrom(target, sa.remote.Port()), "SWITCH_TO_IP_ADDRESS")
}

// localOfFamily is a usable local address of a family for sa: the current one if it
// fits, else the routing table's choice, else any.
func (e *Engine) localOfFamily(sa *IKESA, is4 bool) netip.Addr {
	if sa.local.Addr().Is4() == is4 && e.hasLocal(sa.local.Addr()) {
		return sa.local.Addr()
	}
	for _, a := range e.localAddrs {
		if a.Is4() == is4 && addrAllowed(sa.conn.LocalAddrs, a) {
			return a
		}
	}
	if e.localAddrs == nil {
		for _, a := range sa.conn.LocalAddrs {
			if a.Is4() == is4 {
				return a
			}
		}
	}
	return netip.Addr{}
}

// livenessCheck queues an empty INFORMATIONAL (DPD) unless one is on its way.
func (e *Engine) livenessCheck(now time.Time, sa *IKESA) {
	if sa.pending != nil && sa.pending.kind == reqDPD {
		return
	}
	for _, r := range sa.queue {
		if r.kind == reqDPD {
			return
		}
	}
	e.queueRequest(now, sa, e.dpdRequest(sa))
}

// dpdRequest is a liveness check; a MOBIKE initiator behind a NAT adds NAT detection
// so that a new NAT mapping shows (RFC 4555 3.8).
func (e *Engine) dpdRequest(sa *IKESA) *request {
	r := &request{exchange: wire.INFORMATIONAL, kind: reqDPD}
	if sa.mobike && sa.origInitiator && sa.natLocal {
		r.payloads = e.natDetection(sa, sa.local, sa.remote)
		r.onReply = func(e *Engine, now time.Time, sa *IKESA, m *wire.Message) {
			dst := wire.FindNotify(m.Payloads, wire.NAT_DETECTION_DESTINATION_IP)
			if dst == nil {
				return
			}
			if prev := sa.mob.lastNATD; prev != nil && string(prev) != string(dst.Data) {
				e.log.Info("our NAT mapping changed: updating the SA", "sa", sa.id)
				sa.mob.lastNATD = append([]byte(nil), dst.Data...)
				e.moveSA(now, sa, sa.local, sa.remote, "NAT mapping change")
				return
			}
			sa.mob.lastNATD = append([]byte(nil), dst.Data...)
		}
	}
	return r
}

// probePaths sends the pending request on every other candidate pair as well: the
// responder answers each copy as a retransmission, from where it arrived, and the
// first answer shows a working path (RFC 4555 3.6).
func (e *Engine) probePaths(sa *IKESA, r *request) {
	remotes := append([]netip.Addr{sa.remote.Addr()}, sa.mob.peerAddrs...)
	locals := e.localAddrs
	if locals == nil {
		locals = sa.conn.LocalAddrs
	}
	var allowed []netip.Addr
	for _, l := range locals {
		if addrAllowed(sa.conn.LocalAddrs, l) {
			allowed = append(allowed, l)
		}
	}
	cur := mobike.Pair{Local: sa.local.Addr(), Remote: sa.remote.Addr()}
	pairs := mobike.Pairs(cur, allowed, remotes, maxProbePairs)
	if len(pairs) > 1 && !sa.mob.probing {
		e.log.Info("path probing", "sa", sa.id, "pairs", len(pairs))
	}
	sa.mob.probing = true
	for _, p := range pairs[1:] {
		for _, d := range r.data {
			e.emit(Send{Local: netip.AddrPortFrom(p.Local, sa.local.Port()), Remote: netip.AddrPortFrom(p.Remote, sa.remote.Port()), Data: d})
		}
	}
}

// natDetectionFor is the NAT detection pair for a message from local to remote.
var _ = ikecrypto.NATDetectionHash

// SwitchSelector picks the IKE SAs a switch applies to; exactly one field is set.
type SwitchSelector struct {
	SA   uint64     // one IKE SA by id (0: not this selector)
	Peer string     // every SA whose peer identity is this
	From netip.Addr // every SA that uses this local address
	All  bool       // every SA
}

func (s SwitchSelector) matches(sa *IKESA) bool {
	switch {
	case s.SA != 0:
		return sa.id == s.SA
	case s.Peer != "":
		return idMatches(s.Peer, &sa.remoteID)
	case s.From.IsValid():
		return sa.local.Addr() == s.From.Unmap()
	}
	return s.All
}

// SwitchTarget is one IKE SA a switch selected.
type SwitchTarget struct {
	ID      uint64
	Peer    string
	Remote  netip.AddrPort
	RMobike bool // the peer advertised 'R': it was asked
	Already bool // it already uses the target address: nothing to do
}

// SwitchError is a switch refused before anything was sent.
type SwitchError struct{ Msg string }

func (e *SwitchError) Error() string { return e.Msg }

// Switch asks the initiators of the selected IKE SAs to move to our local address to
// (draft-smyslov-ipsecme-ikev2-r-mobike). Only peers that advertised 'R' are asked; the
// others are returned with RMobike false. It refuses (SwitchError) a target that is not
// one of our addresses, a selection that matches nothing, and one where no peer can be
// asked.
func (e *Engine) Switch(now time.Time, sel SwitchSelector, to netip.Addr) ([]SwitchTarget, []Action, error) {
	to = to.Unmap()
	if !mobike.Usable(to) || !e.isOurAddress(to) {
		return nil, nil, &SwitchError{Msg: to.String() + " is not one of this daemon's local addresses"}
	}
	var targets []SwitchTarget
	for _, sa := range e.sorted() {
		if sa.state != stateEstablished || sa.rekeyedTo != nil || sa.origInitiator || !sel.matches(sa) {
			continue
		}
		t := SwitchTarget{ID: sa.id, Peer: sa.remoteID.String(), Remote: sa.remote, RMobike: sa.mobike && sa.peerRMobike}
		t.Already = t.RMobike && sa.local.Addr() == to
		targets = append(targets, t)
	}
	if len(targets) == 0 {
		return nil, nil, &SwitchError{Msg: "no established IKE SA of ours as responder matches the selection"}
	}
	ready := 0
	for _, t := range targets {
		if t.RMobike {
			ready++
		}
	}
	if ready == 0 {
		var names []string
		for _, t := range targets {
			names = append(names, t.Peer+" (SA #"+strconv.FormatUint(t.ID, 10)+")")
		}
		return targets, nil, &SwitchError{Msg: "no peer in the selection advertised R-MOBIKE support ('R'): " + strings.Join(names, ", ")}
	}
	for _, t := range targets {
		if !t.RMobike || t.Already {
			continue
		}
		sa := e.byID[t.ID]
		if !addrAllowed(sa.conn.LocalAddrs, to) {
			e.log.Warn("switch target is not among the connection's local_addrs; asking anyway", "sa", sa.id, "to", to)
		}
		e.sendSwitch(now, sa, to)
		e.schedule(sa)
	}
	return targets, e.take(), nil
}

// isOurAddress reports whether a is one of the host's addresses (or, when those are not
// known, one of some connection's local_addrs).
func (e *Engine) isOurAddress(a netip.Addr) bool {
	if e.localAddrs != nil {
		return slices.Contains(e.localAddrs, a)
	}
	for _, c := range e.cfg.Connections {
		if slices.Contains(c.LocalAddrs, a) {
			return true
		}
	}
	return false
}
