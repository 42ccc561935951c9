package ike

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Failover in a gateway cluster: a node that dies leaves its SAs' last snapshots, from
// which a survivor continues them without a new handshake.
//
//  1. The owner writes Snapshot of an SA before the peer can see anything newer: every
//     message the engine sends for the first time carries the SA in Send.Persist, and
//     the caller writes the snapshot before it sends the message (retransmissions
//     carry nothing new). So the successor knows each message ID the peer saw, the
//     request of ours it may be answering (Pending, byte for byte), and our last
//     answer to it (LastResponse).
//  2. The survivor that takes the SA over (TakeOver) rehomes its paths on its own
//     address, resends the dead node's outstanding request, if any, as it was sealed
//     (the peer answers it, or answers again what it answered before: either way the
//     window moves past it and nothing is processed twice), and asks a peer that
//     advertised 'R' to switch to it (SWITCH_TO_IP_ADDRESS with the next message ID).
//     A peer that cannot be asked, or that the request does not reach (a NAT that
//     admits only the dead node's packets), finds the survivor by its own liveness
//     checks and path probing over the addresses it was told of (the cluster's
//     ADDITIONAL_IP*_ADDRESS), and its UPDATE_SA_ADDRESSES is taken here.
//
// ESP sequence numbers are not in the engine (ChildSAState.OutSeq, OutLease, InSeq):
// the caller fills them in from its datapath and its reservations.
//
// What a snapshot cannot carry: an exchange whose answer the successor could not
// process (the dead node's nonces and key exchange of a Child SA rekey in flight): the
// successor resends the request and takes the answer only as the end of the exchange;
// the Child SA the peer made for it, which nobody holds, expires at the peer. An IKE
// SA rekey in flight is refused (Snapshot): the last snapshot before it stands.

// Snapshot returns the state of the established IKE SA id as it is now, for whoever
// continues it should this node die (TakeOver): unlike Export, the SA stays this
// engine's, and an exchange in flight is no obstacle: a request of ours that awaits
// its answer is in Pending (Opaque), the Child SAs being negotiated are left out
// (their exchange's answer ends it at the successor), and the path manager's checks in
// flight are not kept. It refuses while the IKE SA itself is being rekeyed, its
// additional key exchanges included (an error wrapping ErrExchangeInFlight). Our
// pending IKE_FOLLOWUP_KE of a Child SA is Pending like any request; the peer's
// series, and the Child SAs they make, are left out (the successor answers their next
// IKE_FOLLOWUP_KE with STATE_NOT_FOUND, and the peer tries again). The engine must have been created with
// Config.Exportable if the SA has Child SAs.
func (e *Engine) Snapshot(now time.Time, id uint64) (SAState, error) {
	sa := e.store.get(id)
	switch {
	case sa == nil:
		return SAState{}, fmt.Errorf("ike: snapshot: no IKE SA #%d", id)
	case sa.state != stateEstablished || sa.handedOver || sa.rekeyedTo != nil:
		return SAState{}, fmt.Errorf("ike: snapshot: IKE SA #%d is not an established SA of this engine", id)
	case sa.rekeying != nil || sa.collision != nil || sa.ikeFollowup() != nil:
		return SAState{}, fmt.Errorf("ike: snapshot: IKE SA #%d: %w: an IKE SA rekey is under way", id, ErrExchangeInFlight)
	case sa.pm == nil:
		return SAState{}, fmt.Errorf("ike: snapshot: IKE SA #%d has no path manager", id)
	case len(sa.children) > 0 && !e.cfg.Exportable:
		return SAState{}, fmt.Errorf("ike: snapshot: IKE SA #%d: this engine does not keep Child SA keys (Config.Exportable is off)", id)
	}
	st := sa.exportState(now, sa.pm.Durable())
	if r := sa.win.pending; r != nil && r.data != nil {
		st.Pending = &PendingState{MessageID: r.msgID, Exchange: uint8(r.exchange), Data: cloneAll(r.data), Opaque: true}
	}
	for _, c := range sa.children {
		if c.state == childInstalled {
			st.Children = append(st.Children, c.exportState())
		}
	}
	return st, nil
}

// ErrNotGateway is wrapped by TakeOver's error for the state of an SA that was not
// its exporter's as gateway (MOBIKE responder).
var ErrNotGateway = errors.New("not a gateway's SA")

// TakeOver continues the IKE SA of st, the last Snapshot of a node that died, on this
// engine, from home (its own address and NAT-T port): as Import (with its refusals),
// but with the paths rehomed on home, the dead node's outstanding request resent from
// here as it was sealed, and the peer, if it advertised 'R', asked to switch to home.
// It returns the new SA's id and the actions that install it and send those requests.
func (e *Engine) TakeOver(now time.Time, st SAState, home netip.AddrPort) (uint64, []Action, error) {
	if st.OrigInitiator {
		return 0, nil, fmt.Errorf("ike: take over: %w", ErrNotGateway)
	}
	if !home.IsValid() || home.Addr().Unmap().Is4() != st.Remote.Addr().Unmap().Is4() {
		return 0, nil, fmt.Errorf("ike: take over: %v is no address of the peer's family (%v)", home, st.Remote)
	}
	home = netip.AddrPortFrom(home.Addr().Unmap(), home.Port())
	st.Local = home
	st.Path.Rehome(home, utc(now))
	if st.Pending != nil {
		p := *st.Pending
		p.Opaque = true
		st.Pending = &p
	}
	sa, pl, err := e.importState(now, &st)
	if err != nil {
		return 0, nil, err
	}
	if r := sa.win.pending; r != nil {
		e.sendReq(sa, r) // the dead node's request, resent from here at once
	}
	e.log.Info("IKE SA taken over", "conn", pl.conn.Name, "sa", sa.id, "peer", sa.remote, "id", sa.remoteID.String(),
		"children", len(sa.children), "home", home)
	if ds, err := sa.pm.HandOff(now, home.Addr()); err == nil {
		e.applyPath(now, sa, ds, nil)
	} else {
		e.log.Info("IKE SA taken over: no switch request; the peer finds this gateway itself", "sa", sa.id, "why", err)
	}
	e.schedule(sa)
	return sa.id, e.take(), nil
}
