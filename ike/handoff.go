package ike

import (
	"bytes"
	"fmt"
	"net/netip"
	"time"

	"github.com/mobikevpn/mobikevpn/wire"
)

// Handing an IKE SA to another gateway that shares the work (a cluster node with its
// own address), without a new handshake (draft-smyslov-ipsecme-ikev2-r-mobike 1):
//
//  1. Handoff, on the gateway that has the SA (A): the SA must be quiet (Export's
//     rules). A seals a SWITCH_TO_IP_ADDRESS request naming the other gateway's
//     address (B) with its next message ID, the last message it seals for the SA, and
//     exports the state with that request outstanding and the paths starting from B
//     (mobike.Snapshot.Rehome). The request is returned, not sent.
//  2. B imports the state (Import): it holds the request as its own outstanding one,
//     and accepts the peer's UPDATE_SA_ADDRESSES to its address from now on.
//  3. Only then A sends the request (the returned actions). The peer answers A (A, handed
//     over, drops the answer) and moves to B with UPDATE_SA_ADDRESSES, which B answers.
//     B resends the request from its own address until an answer comes: the peer's
//     cached answer, or its first answer should A's copy have been lost.
//  4. Until the peer has moved, A's datapath still carries the SA's ESP (the caller
//     caps A's outbound sequence numbers below those it gives B: esp ReserveOutbound);
//     once B reports the move, A forgets the SA (Forget).
//
// Should B not take the state, A, which sent nothing yet, takes the SA back (Reclaim).
// Should the peer not follow (it refused the switch or cannot reach B), A notices its
// next request (EventPeerStayed) and B gives the SA back (HandBack, Import at A).

// Handoff hands IKE SA id (ours as responder, its peer advertised 'R') to the gateway
// at to, as above. It returns the state for that gateway, with the Child SAs'
// sequence numbers left for the caller (ChildSAState.OutSeq, InSeq), and the actions
// that send the switch request, to be carried out once the other gateway imported the
// state. From then on the SA is handed over here (Export).
func (e *Engine) Handoff(now time.Time, id uint64, to netip.Addr) (SAState, []Action, error) {
	sa, _, err := e.exportable(id)
	if err != nil {
		return SAState{}, nil, err
	}
	if len(e.out) > 0 {
		return SAState{}, nil, fmt.Errorf("ike: handoff: %d actions of the engine were not taken", len(e.out))
	}
	ds, err := sa.pm.HandOff(now, to)
	if err != nil {
		return SAState{}, nil, fmt.Errorf("ike: handoff: IKE SA #%d: %w", id, err)
	}
	e.applyPath(now, sa, ds, nil)
	r := sa.win.pending
	if r == nil || r.kind != reqSwitch || r.data == nil {
		// The switch request did not go out at once: nothing can be handed over.
		sa.pm.CancelSwitch()
		sa.win.unqueue(reqSwitch)
		e.take()
		return SAState{}, nil, fmt.Errorf("ike: handoff: IKE SA #%d: the switch request could not be sealed", id)
	}
	sends := e.take()
	path, err := sa.pm.Snapshot()
	if err != nil {
		return SAState{}, nil, fmt.Errorf("ike: handoff: IKE SA #%d: %w", id, err)
	}
	st := sa.exportState(now, path)
	home := netip.AddrPortFrom(to.Unmap(), sa.local.Port())
	st.Local = home
	st.Path.Rehome(home, utc(now))
	st.Pending = &PendingState{MessageID: r.msgID, Exchange: uint8(r.exchange), Data: cloneAll(r.data)}
	for _, c := range sa.children {
		st.Children = append(st.Children, c.exportState())
	}
	sa.handedOver = true
	e.log.Info("IKE SA handed over", "sa", sa.id, "peer", sa.remote, "to", home, "msgid", r.msgID)
	return st, sends, nil
}

// Reclaim takes back IKE SA id, which Handoff handed over, when the switch request was
// not sent (the other gateway did not import the state): the SA is ours again as it
// was, the switch forgotten and its message ID free again. Sending the request before
// or after Reclaim would give the peer two requests with one message ID.
func (e *Engine) Reclaim(now time.Time, id uint64) ([]Action, error) {
	sa := e.store.get(id)
	if sa == nil {
		return nil, fmt.Errorf("ike: reclaim: no IKE SA #%d", id)
	}
	if sa.handedOver && sa.handingBack {
		// A hand-back: nothing was sealed for it; a switch request it left outstanding
		// is ours to resend again.
		sa.handedOver, sa.handingBack = false, false
		e.log.Info("IKE SA taken back: the hand-back did not happen", "sa", sa.id, "peer", sa.remote)
		e.schedule(sa)
		return e.take(), nil
	}
	r := sa.win.pending
	if !sa.handedOver || r == nil || r.kind != reqSwitch {
		return nil, fmt.Errorf("ike: reclaim: IKE SA #%d is not being handed over", id)
	}
	sa.handedOver = false
	sa.win.pending = nil
	sa.win.nextReqID = r.msgID
	sa.pm.CancelSwitch()
	e.log.Info("IKE SA taken back: the hand-over did not happen", "sa", sa.id, "peer", sa.remote)
	e.schedule(sa)
	return e.take(), nil
}

// HandBack gives IKE SA id back to the gateway at to that handed it here (Handoff,
// Import) when its peer did not follow the switch request: it refused it (the draft's
// initiator then stays and checks liveness), or could not reach this gateway. The peer
// is still with that gateway, which resumes the SA from the returned state: its paths
// start from to again, the switch is no longer pending (this address counts as left:
// switch_hold), and the Child SAs' sequence numbers are left for the caller as in
// Handoff. If the switch request's answer never reached this gateway, the request goes
// back outstanding: the other gateway resends it, byte for byte, and gets the peer's
// cached answer (the peer never sees one message ID with two contents). Nothing is
// sent here; from then on the SA is handed over here, until Forget, or Reclaim should
// the other gateway not take it.
func (e *Engine) HandBack(now time.Time, id uint64, to netip.Addr) (SAState, error) {
	sa := e.store.get(id)
	if sa == nil {
		return SAState{}, fmt.Errorf("ike: hand back: no IKE SA #%d", id)
	}
	if sa.origInitiator {
		return SAState{}, fmt.Errorf("ike: hand back: IKE SA #%d is not ours as gateway", id)
	}
	r := sa.win.pending
	if r != nil && r.kind == reqSwitch {
		sa.win.pending = nil // the one request that may be outstanding
	}
	_, path, err := e.exportable(id)
	sa.win.pending = r
	if err != nil {
		return SAState{}, err
	}
	st := sa.exportState(now, path)
	home := netip.AddrPortFrom(to.Unmap(), sa.local.Port())
	st.Local = home
	st.Path.SwitchTo, st.Path.SwitchSince = netip.Addr{}, time.Time{}
	st.Path.Rehome(home, utc(now))
	if r != nil {
		st.Pending = &PendingState{MessageID: r.msgID, Exchange: uint8(r.exchange), Data: cloneAll(r.data)}
	}
	for _, c := range sa.children {
		st.Children = append(st.Children, c.exportState())
	}
	sa.handedOver, sa.handingBack = true, true
	e.log.Info("IKE SA handed back: its peer did not follow the switch", "sa", sa.id, "peer", sa.remote, "to", home)
	return st, nil
}

// handedOverMessage notes what the peer of an SA that Handoff handed over still sends
// here (all of it is dropped): its answer to our switch request, and after it, a new
// request of its own (authentic, unfragmented, with a message ID not seen here before
// the answer): then the peer stays here. It refused the switch (the draft's initiator
// then checks our liveness) or could not reach the other gateway; had it followed, its
// next request would have been its UPDATE_SA_ADDRESSES there. A request it sent before
// it saw the switch request, and its retransmissions, prove nothing (it follows the
// peer to wherever it moves). EventPeerStayed tells the caller, once, which has the
// other gateway hand the SA back (HandBack).
func (e *Engine) handedOverMessage(sa *IKESA, data []byte, h *wire.Header) {
	r := sa.win.pending
	if sa.handingBack || sa.peerStayed || r == nil || r.kind != reqSwitch {
		return
	}
	if h.IsResponse() && h.MessageID != r.msgID || !h.IsResponse() && h.MessageID < max(sa.win.peerReqID, sa.stayFrom) {
		return
	}
	m, err := wire.ParseMessage(data)
	if err != nil {
		return
	}
	if _, err := sa.open(data, m); err != nil {
		return
	}
	switch {
	case h.IsResponse():
		sa.switchAnswered = true
		return
	case !sa.switchAnswered:
		sa.stayFrom = h.MessageID + 1 // sent before the peer saw our request
		return
	}
	sa.peerStayed = true
	e.log.Info("the peer of an IKE SA handed over stays here: it did not follow the switch", "sa", sa.id, "peer", sa.remote)
	name := ""
	if sa.conn != nil {
		name = sa.conn.Name
	}
	e.emit(Event{IKESA: sa.id, Conn: name, Kind: EventPeerStayed, Reason: "the peer did not follow the switch request"})
}

// importPending makes the request st.Pending, sealed by the exporter, sa's own
// outstanding one: resent from here, byte for byte, until it is answered.
func (e *Engine) importPending(now time.Time, sa *IKESA, p *PendingState) {
	kind := reqSwitch
	if p.Opaque {
		kind = reqOpaque
	}
	r := &request{exchange: wire.ExchangeType(p.Exchange), msgID: p.MessageID, data: cloneAll(p.Data), kind: kind,
		sentAt: now, nextAt: now.Add(e.retransmitDelay(0))}
	sa.win.pending = r
}

func cloneAll(b [][]byte) [][]byte {
	out := make([][]byte, len(b))
	for i, d := range b {
		out[i] = bytes.Clone(d)
	}
	return out
}

// CanHandoff reports why Handoff of IKE SA id to the gateway at to would be refused
// for good (not R-MOBIKE, switch_hold, switch_limit), changing nothing; an exchange in
// flight, which passes, is not among the reasons.
func (e *Engine) CanHandoff(now time.Time, id uint64, to netip.Addr) error {
	sa := e.store.get(id)
	switch {
	case sa == nil:
		return fmt.Errorf("ike: no IKE SA #%d", id)
	case sa.origInitiator || sa.state != stateEstablished || sa.pm == nil:
		return fmt.Errorf("ike: IKE SA #%d is not an established SA of ours as gateway", id)
	}
	if err := sa.pm.CanHandOff(now, to); err != nil {
		return fmt.Errorf("ike: handoff: IKE SA #%d: %w", id, err)
	}
	return nil
}

// SAInfo is what the caller needs of an IKE SA to hand it over: its SPIs (its name in a
// cluster), its role, its addresses and, per Child SA, the datapath's handles (the
// outbound policy, the inbound SPI).
type SAInfo struct {
	SPIi, SPIr    uint64
	Gateway       bool // we are the MOBIKE responder: the SA can be handed over
	Established   bool
	RMobike       bool // the peer can be asked to switch (MOBIKE with 'R')
	Redirect      bool // the peer follows redirects (RFC 5685)
	Local, Remote netip.AddrPort
	// ESPRemote is where its ESP goes: Remote, unless the peer's new address is being
	// checked (RFC 4555 return routability) before ESP follows it there.
	ESPRemote netip.AddrPort
	Children  []ChildInfo
}

// ChildInfo names a Child SA's halves in the datapath.
type ChildInfo struct {
	Policy uint64 // InstallOutbound.Policy
	SPIIn  uint32 // InstallInbound.SPI
}

// SAInfo returns the SAInfo of IKE SA id, false when there is none.
func (e *Engine) SAInfo(id uint64) (SAInfo, bool) {
	sa := e.store.get(id)
	if sa == nil {
		return SAInfo{}, false
	}
	info := SAInfo{SPIi: sa.spiI, SPIr: sa.spiR, Gateway: !sa.origInitiator, Established: sa.state == stateEstablished && !sa.redirectedAway,
		RMobike: sa.mobike && sa.peerRMobike, Redirect: sa.peerRedirect, Local: sa.local, Remote: sa.remote,
		ESPRemote: e.espPath(sa).Remote}
	for _, c := range sa.children {
		info.Children = append(info.Children, ChildInfo{Policy: c.policy, SPIIn: c.spiIn})
	}
	return info, true
}
