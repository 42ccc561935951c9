package ike

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mobikevpn/mobikevpn/mobike"
	"github.com/mobikevpn/mobikevpn/wire"
)

// Mobility: the engine feeds each established IKE SA's path manager (package mobike:
// MOBIKE, RFC 4555, the responder-initiated switch of draft-smyslov-ipsecme-ikev2-r-mobike
// and RFC 7296 2.23's dynamic updates) and carries out its decisions. Nothing here
// decides where an SA goes.

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
	e.resumeHeld(now) // keepup.go
	return e.take()
}

// SetClusterAddrs sets the addresses of the other live nodes of the gateway's cluster
// (none: no cluster). They are announced to every peer along with ours, so that a peer
// accepts a switch to them; peers hear the new set at once.
func (e *Engine) SetClusterAddrs(now time.Time, addrs []netip.Addr) []Action {
	var set []netip.Addr
	for _, a := range addrs {
		if a = a.Unmap(); mobike.Usable(a) && !slices.Contains(set, a) {
			set = append(set, a)
		}
	}
	if slices.Equal(set, e.clusterAddrs) {
		return nil // nothing changed: no SA to look at again
	}
	e.clusterAddrs = set
	e.reevaluateAll(now, "cluster change")
	return e.take()
}

// RoutesChanged makes MOBIKE initiators check that their SAs still use the source
// address the routing table picks for their peer.
func (e *Engine) RoutesChanged(now time.Time) []Action {
	e.reevaluateAll(now, "route change")
	e.resumeHeld(now) // keepup.go
	return e.take()
}

// host is what the path managers know of the host.
func (e *Engine) host() mobike.Host {
	h := mobike.Host{Addrs: e.localAddrs, Reachable: e.cfg.Reachable, Cluster: e.clusterAddrs}
	if e.cfg.SourceAddr != nil {
		h.Route = func(remote netip.Addr) (netip.Addr, bool) {
			a, err := e.cfg.SourceAddr(remote)
			return a, err == nil
		}
	}
	return h
}

// mobilityPolicy is a connection's configuration for its SAs' path managers.
func (e *Engine) mobilityPolicy(c *Conn) mobike.Policy {
	return mobike.Policy{
		Announce:     c.Announce,
		SwitchAccept: c.SwitchAccept,
		RMobike:      c.RMobike,
		SwitchLimit:  c.SwitchLimit,
		SwitchHold:   c.SwitchHold,
		LocalAddrs:   c.LocalAddrs,
		RemoteAddrs:  e.peerAddrs(c), // hosts.go
	}
}

// switchNotify is the Notify Message Type of SWITCH_TO_IP_ADDRESS on conn.
func switchNotify(c *Conn) wire.NotifyType {
	if c != nil && c.RMobikeNotify != 0 {
		return c.RMobikeNotify
	}
	return wire.SWITCH_TO_IP_ADDRESS
}

// startPathManager gives sa, just established on local/remote, its path manager.
func (e *Engine) startPathManager(sa *IKESA, peerAddrs, announced []netip.Addr) {
	role := mobike.Responder
	if sa.origInitiator {
		role = mobike.Initiator
	}
	sa.authLocal, sa.authRemote = sa.local, sa.remote
	sa.pm = mobike.New(mobike.Config{
		Role:        role,
		Policy:      e.mobilityPolicy(sa.conn),
		Mobike:      sa.mobike,
		PeerRMobike: sa.peerRMobike,
		Path:        mobike.Path{Local: sa.local, Remote: sa.remote},
		PeerAddrs:   peerAddrs,
		Announced:   announced,
		Rand:        e.rand,
		NATD:        sa.initNATD,
		Tries:       e.cfg.Retransmit.Tries,
	})
	sa.initNATD = nil
}

// espPath is where sa's Child SAs send.
func (e *Engine) espPath(sa *IKESA) mobike.Path {
	if sa.pm != nil {
		return sa.pm.ESP()
	}
	return mobike.Path{Local: sa.local, Remote: sa.remote}
}

// reqPath is where request r of sa goes now.
func (e *Engine) reqPath(sa *IKESA, r *request) mobike.Path {
	if sa.pm != nil {
		return sa.pm.Dest(r.check)
	}
	return mobike.Path{Local: sa.local, Remote: sa.remote}
}

func (e *Engine) reevaluateAll(now time.Time, why string) {
	host := e.host()
	for _, sa := range e.sorted() {
		if sa.state != stateEstablished || sa.pm == nil || !sa.mobike || sa.rekeyedTo != nil {
			continue
		}
		ds := sa.pm.Reevaluate(now, host, why)
		ds = append(ds, sa.pm.LocalGone(now, host)...)
		ds = append(ds, sa.pm.AnnounceIfChanged(host)...)
		e.applyPath(now, sa, ds, nil)
		if e.store.live(sa) {
			e.schedule(sa)
		}
	}
}

// applyPath carries out the path manager's decisions for sa; reply holds the payloads of
// the reply that produced them, if any.
func (e *Engine) applyPath(now time.Time, sa *IKESA, ds []mobike.Decision, reply []wire.Payload) {
	for _, d := range ds {
		if !e.store.live(sa) || sa.state == stateDeleting {
			return
		}
		switch d := d.(type) {
		case mobike.SetIKEPath:
			sa.local, sa.remote = d.Path.Local, d.Path.Remote
			if r := sa.win.pending; d.Resend && r != nil && r.data != nil {
				// Outstanding requests continue retransmitting on the new path (RFC
				// 4555 3.5): a copy goes there now; the count and the schedule stay,
				// so that moves do not keep a dead peer alive.
				e.sendReq(sa, r)
			}
		case mobike.SetESPPath:
			e.updateChildEndpoints(sa)
		case mobike.StartCheck:
			e.queueCheck(now, sa, d.Check)
		case mobike.LivenessCheck:
			e.livenessCheck(now, sa)
		case mobike.SendSwitch:
			e.queueSwitch(now, sa, d.To)
		case mobike.AnnounceAddrs:
			e.queueRequest(now, sa, &request{exchange: wire.INFORMATIONAL, payloads: additionalNotifies(d.Addrs), kind: reqNotify})
		case mobike.CloseSA:
			e.log.Warn("closing the IKE SA", "sa", sa.id, "reason", d.Reason)
			e.deleteIKESA(now, sa, d.Reason)
			return
		case mobike.Confirmed:
			e.noteNAT(sa, reply, d.Path)
		case mobike.Note:
			e.pathNote(sa, d)
			if d.Kind == mobike.NoteSwitched {
				e.switchDone(now, sa)
			}
		}
	}
}

// switchDone: the peer moved where our switch request asked (its UPDATE_SA_ADDRESSES
// came), so it has the request and its answer is due. If the request is still
// outstanding here (a copy handed over from another node, which got the answer), it is
// sent again now rather than at its next retransmission: until it is answered nothing
// else goes out on the SA, not even the check of the peer's new address that ESP
// waits for.
func (e *Engine) switchDone(now time.Time, sa *IKESA) {
	if r := sa.win.pending; r != nil && r.kind == reqSwitch && r.nextAt.After(now) {
		r.nextAt = now
		e.schedule(sa)
	}
}

// pathNote logs a note of the path manager and turns it into an event.
func (e *Engine) pathNote(sa *IKESA, n mobike.Note) {
	attrs := []any{"sa", sa.id, "local", n.Path.Local, "remote", n.Path.Remote}
	if n.Reason != "" {
		attrs = append(attrs, "why", n.Reason)
	}
	e.log.Info(n.Msg, attrs...)
	name := ""
	if sa.conn != nil {
		name = sa.conn.Name
	}
	//exhaustive:enforce
	switch n.Kind {
	case mobike.NoteInfo, mobike.NoteVerified:
		// logged only
	case mobike.NoteMoved:
		e.emit(Event{IKESA: sa.id, Conn: name, Kind: EventMoved, Reason: n.Reason})
	case mobike.NoteSwitched:
		e.emit(Event{IKESA: sa.id, Conn: name, Kind: EventSwitched, Reason: n.Path.Local.Addr().String()})
	case mobike.NoteSwitchRefused:
		e.emit(Event{IKESA: sa.id, Conn: name, Kind: EventSwitchRefused, Reason: n.Reason})
	case mobike.NoteFellBack:
		e.emit(Event{IKESA: sa.id, Conn: name, Kind: EventMoveFailed, Reason: n.Reason})
	}
}

// updateChildEndpoints re-points every flow of sa to its ESP path.
func (e *Engine) updateChildEndpoints(sa *IKESA) {
	p := e.espPath(sa)
	for _, c := range sa.children {
		if c.outActive {
			e.emit(UpdateEndpoints{IKESA: sa.id, Policy: c.policy, Local: p.Local, Remote: p.Remote, Keepalive: sa.natLocal})
		}
	}
}

// queueCheck queues the exchange a path manager asked for, replacing a queued check of
// the same kind that has not gone out yet: an UPDATE_SA_ADDRESSES (RFC 4555 3.5) or a
// return routability check (3.7). It goes where the check is bound to, and its reply
// goes back to the path manager.
func (e *Engine) queueCheck(now time.Time, sa *IKESA, c *mobike.Check) {
	kind := reqCheck
	payloads := []wire.Payload{&wire.Notify{NotifyType: wire.COOKIE2, Data: c.Cookie2}}
	if c.Kind == mobike.Update {
		kind = reqUpdate
		payloads = append([]wire.Payload{&wire.Notify{NotifyType: wire.UPDATE_SA_ADDRESSES}}, e.natDetection(sa, c.Path.Local, c.Path.Remote)...)
		payloads = append(payloads, &wire.Notify{NotifyType: wire.COOKIE2, Data: c.Cookie2})
	}
	sa.win.unqueue(kind)
	e.queueRequest(now, sa, &request{exchange: wire.INFORMATIONAL, payloads: payloads, kind: kind, check: c})
}

// checkReplied hands the reply to a check, which arrived on path at, to the path
// manager.
func (e *Engine) checkReplied(now time.Time, sa *IKESA, c *mobike.Check, at mobike.Path, m *wire.Message) {
	if sa.pm == nil {
		return // a rekey moved the path manager on; it asked again there
	}
	r := mobike.Reply{}
	if n := wire.FindNotify(m.Payloads, wire.COOKIE2); n != nil {
		r.Cookie2 = n.Data
	}
	if n := errorNotify(m.Payloads); n != nil {
		r.Error = n.NotifyType
	}
	e.applyPath(now, sa, sa.pm.Reply(now, e.host(), c, at, r), m.Payloads)
}

// noteNAT evaluates the NAT detection notifies of a reply that came on path p.
func (e *Engine) noteNAT(sa *IKESA, ps []wire.Payload, p mobike.Path) {
	natL, natR, ok := checkNAT(ps, sa.spiI, sa.spiR, p.Local, p.Remote)
	if !ok {
		return
	}
	if dst := wire.FindNotify(ps, wire.NAT_DETECTION_DESTINATION_IP); dst != nil && sa.pm != nil {
		sa.pm.NoteNATD(dst.Data)
	}
	changed := natL != sa.natLocal
	sa.natLocal, sa.natRemote = natL, natR
	if changed {
		e.updateChildEndpoints(sa)
	}
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

// readAdditional returns the address list of a message's notifies and whether it
// carried one.
func readAdditional(ps []wire.Payload) ([]netip.Addr, bool) {
	list := []netip.Addr{}
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
	return list, seen
}

// mobikeRequest handles the MOBIKE parts of an INFORMATIONAL request that arrived on
// path at (RFC 4555 3.5, 3.6, 3.7, 3.8, 3.9) and returns the response payloads and the
// decisions to carry out once the response is out. The response carries, as the RFC's
// figures show: UNEXPECTED_NAT_DETECTED when NO_NATS_ALLOWED does not match the IP
// header, UNACCEPTABLE_ADDRESSES when an UPDATE_SA_ADDRESSES is refused, our NAT
// detection whenever the request carried NAT detection, and the request's COOKIE2,
// always.
func (e *Engine) mobikeRequest(now time.Time, sa *IKESA, at mobike.Path, m *wire.Message) ([]wire.Payload, []mobike.Decision) {
	var out []wire.Payload
	var ds []mobike.Decision
	update := wire.FindNotify(m.Payloads, wire.UPDATE_SA_ADDRESSES) != nil
	list, listed := readAdditional(m.Payloads)
	natd := wire.FindNotify(m.Payloads, wire.NAT_DETECTION_SOURCE_IP) != nil
	var noNATs *mobike.NoNATs
	if n := wire.FindNotify(m.Payloads, wire.NO_NATS_ALLOWED); n != nil {
		src, dst, err := n.NoNATsAllowed()
		noNATs = &mobike.NoNATs{Src: src, Dst: dst, Err: err}
	}
	unexpectedNAT, refused := false, false
	if listed {
		if noNATs != nil && !noNATs.Match(at) {
			unexpectedNAT = true
		} else {
			ds = append(ds, sa.pm.PeerAddresses(now, list, at)...)
		}
	}
	if update && !unexpectedNAT {
		natL, natR, natPresent := checkNAT(m.Payloads, sa.spiI, sa.spiR, at.Local, at.Remote)
		refuse, uds := sa.pm.Update(now, e.host(), at, noNATs)
		ds = append(ds, uds...)
		switch refuse {
		case 0:
			if sa.pm.Role() == mobike.Responder && natPresent {
				// RFC 4555 3.5: NAT traversal changes only when NAT detection
				// notifies were included.
				changed := natL != sa.natLocal
				sa.natLocal, sa.natRemote = natL, natR
				if changed {
					ds = append(ds, mobike.SetESPPath{Path: sa.pm.ESP()})
				}
			}
		case wire.UNEXPECTED_NAT_DETECTED:
			unexpectedNAT = true
		default:
			// RFC 4555 3.5: UNACCEPTABLE_ADDRESSES (and COOKIE2), nothing else.
			out = append(out, &wire.Notify{NotifyType: refuse})
			refused = true
		}
	}
	if unexpectedNAT {
		// RFC 4555 3.9: nothing else is done with such a request.
		out = append(out, &wire.Notify{NotifyType: wire.UNEXPECTED_NAT_DETECTED})
	} else if natd && !refused {
		// RFC 4555 3.8: NAT detection in a request is answered with ours, for the
		// addresses this request used.
		out = append(out, e.natDetection(sa, at.Local, at.Remote)...)
	}
	return out, ds
}

// Switching.

// queueSwitch asks the initiator to move to our address to
// (draft-smyslov-ipsecme-ikev2-r-mobike 4.2), replacing a switch request that has not
// gone out yet. Nothing changes until its UPDATE_SA_ADDRESSES arrives there.
func (e *Engine) queueSwitch(now time.Time, sa *IKESA, to netip.Addr) {
	e.stats.switchesSent++
	sa.win.unqueue(reqSwitch)
	e.queueRequest(now, sa, &request{
		exchange: wire.INFORMATIONAL,
		payloads: []wire.Payload{wire.NewAddressNotify(switchNotify(sa.conn), to)},
		kind:     reqSwitch,
	})
}

// livenessCheck queues an empty INFORMATIONAL (DPD) unless one is on its way.
func (e *Engine) livenessCheck(now time.Time, sa *IKESA) {
	if sa.win.has(reqDPD) {
		return
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
			if dst := wire.FindNotify(m.Payloads, wire.NAT_DETECTION_DESTINATION_IP); dst != nil && sa.pm != nil {
				e.applyPath(now, sa, sa.pm.NATMapping(now, dst.Data), nil)
			}
		}
	}
	return r
}

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
	RMobike bool   // the peer advertised 'R'
	Already bool   // it already uses the target address: nothing to do
	Refused string // why it was not asked (its connection, switch_limit, switch_hold), if it was not
}

// Asked reports whether the peer was asked to switch.
func (t SwitchTarget) Asked() bool { return t.RMobike && !t.Already && t.Refused == "" }

// SwitchError is a switch refused before anything was sent. Usage marks a request that
// cannot work as given (exit code 2); otherwise the limits said no for now.
type SwitchError struct {
	Msg   string
	Usage bool
}

func (e *SwitchError) Error() string { return e.Msg }

// Switch asks the initiators of the selected IKE SAs to move to our local address to
// (draft-smyslov-ipsecme-ikev2-r-mobike). Only peers that advertised 'R' on connections
// with rmobike are asked, within switch_limit and switch_hold; the others are returned
// with the reason. It refuses (SwitchError, nothing sent) a target that is not one of
// our addresses or not served by a selected SA's connection (local_addrs), a selection
// that matches nothing, and one where no peer can be asked.
func (e *Engine) Switch(now time.Time, sel SwitchSelector, to netip.Addr) ([]SwitchTarget, []Action, error) {
	to = to.Unmap()
	if !mobike.Usable(to) || !e.isOurAddress(to) {
		return nil, nil, &SwitchError{Msg: to.String() + " is not one of this daemon's local addresses", Usage: true}
	}
	var targets []SwitchTarget
	var sas []*IKESA
	var notServed []string
	for _, sa := range e.sorted() {
		if sa.state != stateEstablished || sa.rekeyedTo != nil || sa.origInitiator || sa.pm == nil || !sel.matches(sa) {
			continue
		}
		if !addrAllowed(sa.conn.LocalAddrs, to) && !slices.Contains(notServed, sa.conn.Name) {
			notServed = append(notServed, sa.conn.Name)
		}
		t := SwitchTarget{ID: sa.id, Peer: sa.remoteID.String(), Remote: sa.remote, RMobike: sa.mobike && sa.peerRMobike}
		t.Already = t.RMobike && sa.local.Addr() == to
		targets = append(targets, t)
		sas = append(sas, sa)
	}
	if len(targets) == 0 {
		return nil, nil, &SwitchError{Msg: "no established IKE SA of ours as responder matches the selection", Usage: true}
	}
	if len(notServed) > 0 {
		return targets, nil, &SwitchError{Msg: to.String() + " is not among the local_addrs of connection " + strings.Join(notServed, ", "), Usage: true}
	}
	var withR, noConn []string
	for i, t := range targets {
		if !t.RMobike {
			continue
		}
		if !sas[i].conn.RMobike {
			targets[i].Refused = "connection " + sas[i].conn.Name + " has rmobike: false"
			noConn = append(noConn, sas[i].conn.Name)
			continue
		}
		withR = append(withR, t.Peer)
	}
	if len(withR) == 0 {
		if len(noConn) > 0 {
			slices.Sort(noConn)
			return targets, nil, &SwitchError{Msg: "rmobike: false on connection " + strings.Join(slices.Compact(noConn), ", ") + ": it does not send SWITCH_TO_IP_ADDRESS", Usage: true}
		}
		var names []string
		for _, t := range targets {
			names = append(names, t.Peer+" (SA #"+strconv.FormatUint(t.ID, 10)+")")
		}
		return targets, nil, &SwitchError{Msg: "no peer in the selection advertised R-MOBIKE support ('R'): " + strings.Join(names, ", "), Usage: true}
	}
	asked, already := 0, 0
	var refused []string
	for i := range targets {
		t := &targets[i]
		if !t.RMobike || t.Refused != "" {
			continue
		}
		if t.Already {
			already++
			continue
		}
		sa := sas[i]
		ds, err := sa.pm.SwitchTo(now, to)
		if err != nil {
			t.Refused = err.Error()
			refused = append(refused, t.Peer+" (SA #"+strconv.FormatUint(t.ID, 10)+"): "+t.Refused)
			continue
		}
		asked++
		e.applyPath(now, sa, ds, nil)
		e.schedule(sa)
	}
	if asked == 0 && already == 0 {
		return targets, nil, &SwitchError{Msg: "nothing sent: " + strings.Join(refused, "; ")}
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
