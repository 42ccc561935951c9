package ike

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"

	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/wire"
)

// The responder's CREATE_CHILD_SA for Child SAs (rekey.go has the initiator's): a new
// or rekeyed Child SA installed at once, or, with additional key exchanges (RFC 9370),
// once the peer's IKE_FOLLOWUP_KE exchanges are done (followup.go).

// handleCreateChildSA answers the peer's CREATE_CHILD_SA.
func (e *Engine) handleCreateChildSA(now time.Time, sa *IKESA, local, remote netip.AddrPort, h *wire.Header, m *wire.Message) {
	reply := func(ps ...wire.Payload) { e.respond(now, sa, local, remote, h, ps) }
	saP := wire.Find[*wire.SA](m.Payloads)
	if saP == nil || len(saP.Proposals) == 0 || wire.Find[*wire.Nonce](m.Payloads) == nil {
		reply(&wire.Notify{NotifyType: wire.INVALID_SYNTAX})
		return
	}
	if sa.state != stateEstablished || sa.rekeyedTo != nil {
		// Closing or already rekeyed: try again later, on the new SA (2.25).
		reply(&wire.Notify{NotifyType: wire.TEMPORARY_FAILURE})
		return
	}
	if saP.Proposals[0].Protocol == wire.ProtoIKE {
		e.respondRekeyIKE(now, sa, reply, m)
		return
	}
	old, refuse := e.childToRekey(sa, m)
	if refuse != nil {
		reply(refuse)
		return
	}
	if limit := sa.conn.maxChildren(); old == nil && sa.liveChildren()+len(sa.followups) >= limit {
		// RFC 7296 3.10.1: no more Child SAs on this IKE SA; the IKE SA stays.
		e.log.Info("Child SA refused: max_children reached", "sa", sa.id, "max_children", limit)
		reply(&wire.Notify{NotifyType: wire.NO_ADDITIONAL_SAS})
		return
	} else if old != nil && len(sa.children) >= 2*limit {
		// A rekey replaces a Child SA, but only once the old one is deleted: a peer
		// that rekeys without deleting must not pile them up.
		e.log.Info("Child SA rekey refused for now: too many replaced Child SAs not deleted yet", "sa", sa.id, "child_sas", len(sa.children))
		reply(&wire.Notify{NotifyType: wire.TEMPORARY_FAILURE})
		return
	}
	ps, c := e.respondChildCreate(now, sa, old, m)
	reply(ps...)
	if c != nil && old != nil {
		e.rekeyedByPeer(old, c)
	}
}

// childToRekey returns the Child SA the peer's CREATE_CHILD_SA rekeys (REKEY_SA; nil:
// an additional one), or the notify that refuses the request.
func (e *Engine) childToRekey(sa *IKESA, m *wire.Message) (*ChildSA, *wire.Notify) {
	n := wire.FindNotify(m.Payloads, wire.REKEY_SA)
	if n == nil {
		return nil, nil
	}
	if n.Protocol != wire.ProtoESP || len(n.SPI) != 4 {
		return nil, &wire.Notify{NotifyType: wire.INVALID_SYNTAX}
	}
	old := sa.childByOutSPI(binary.BigEndian.Uint32(n.SPI))
	switch {
	case old == nil || old.state == childRekeyed:
		return nil, &wire.Notify{Protocol: wire.ProtoESP, SPI: n.SPI, NotifyType: wire.CHILD_SA_NOT_FOUND}
	case old.state == childDeleting:
		return nil, &wire.Notify{NotifyType: wire.TEMPORARY_FAILURE}
	case sa.addKE != nil && sa.addKE.child == old, sa.followupFor(old) != nil:
		// We rekey it already and our additional key exchanges run (RFC 9370 2.2.4), or
		// the peer's do.
		return nil, &wire.Notify{NotifyType: wire.TEMPORARY_FAILURE}
	}
	return old, nil
}

// rekeyedByPeer notes that c, which the peer's rekey created, replaces old.
func (e *Engine) rekeyedByPeer(old, c *ChildSA) {
	if old.state == childRekeying {
		// We are rekeying it too: decide when our response arrives (2.8.1).
		// Should the peer win and delete old before that response comes, c
		// takes over the flow meanwhile.
		old.collision = c
		old.successor = c
		return
	}
	old.state = childRekeyed
	old.successor = c
}

// respondChildCreate negotiates a Child SA the peer asks for in CREATE_CHILD_SA,
// replacing old when it is a rekey. It returns the response payloads and the new SA (nil
// when refused, or while its additional key exchanges run).
func (e *Engine) respondChildCreate(now time.Time, sa *IKESA, old *ChildSA, m *wire.Message) ([]wire.Payload, *ChildSA) {
	saP := wire.Find[*wire.SA](m.Payloads)
	keP := wire.Find[*wire.KE](m.Payloads)
	tsi, tsr := wire.FindTS(m.Payloads, true), wire.FindTS(m.Payloads, false)
	if tsi == nil || tsr == nil {
		return []wire.Payload{&wire.Notify{NotifyType: wire.INVALID_SYNTAX}}, nil
	}
	cfgs := sa.conn.Children
	if old != nil {
		cfgs = []*ChildConfig{old.cfg}
	}
	fail := wire.NO_PROPOSAL_CHOSEN
	for _, cc := range cfgs {
		props := cc.ESPProposals
		if keP != nil {
			props = ikecrypto.PreferGroup(props, keP.Group)
		}
		chosen, ok := ikecrypto.SelectProposal(props, saP.Proposals)
		if !ok || chosen.Protocol != wire.ProtoESP || len(chosen.SPI) != 4 {
			continue
		}
		suite, err := ikecrypto.ESPSuiteFromProposal(chosen)
		if err != nil {
			continue
		}
		if suite.DH != 0 && (keP == nil || keP.Group != suite.DH) {
			var g [2]byte
			binary.BigEndian.PutUint16(g[:], suite.DH)
			return []wire.Payload{&wire.Notify{NotifyType: wire.INVALID_KE_PAYLOAD, Data: g[:]}}, nil
		}
		ntsi := narrow(tsi.Selectors, resolveTS(cc.RemoteTS, sa.dynamicRemote()))
		ntsr := narrow(tsr.Selectors, resolveTS(cc.LocalTS, sa.dynamicLocal()))
		if len(ntsi) == 0 || len(ntsr) == 0 {
			fail = wire.TS_UNACCEPTABLE
			continue
		}
		c := &ChildSA{cfg: cc, spiOut: binary.BigEndian.Uint32(chosen.SPI), suite: suite, localTS: ntsr, remoteTS: ntsi,
			ni: append([]byte(nil), wire.Find[*wire.Nonce](m.Payloads).Data...)}
		return e.acceptChild(now, sa, old, c, chosen, keP)
	}
	e.log.Info("Child SA refused", "sa", sa.id, "reason", fail.String())
	return []wire.Payload{&wire.Notify{NotifyType: fail}}, nil
}

// acceptChild completes c, the Child SA chosen (proposal chosen) for the peer's
// CREATE_CHILD_SA with KE payload keP: our KE, SPI and nonce, its keys and
// installation, or, with additional key exchanges, the series that ends with them.
func (e *Engine) acceptChild(now time.Time, sa *IKESA, old, c *ChildSA, chosen wire.Proposal, keP *wire.KE) ([]wire.Payload, *ChildSA) {
	refuse := func(t wire.NotifyType) ([]wire.Payload, *ChildSA) {
		return []wire.Payload{&wire.Notify{NotifyType: t}}, nil
	}
	addKE := hasAddKE(c.suite.AddKE)
	if addKE && (c.suite.DH == 0 || sa.rekeying != nil || sa.ikeFollowup() != nil) {
		// Additional key exchanges follow a KE; and not while the IKE SA is being
		// rekeyed, by us or the peer, which they would outlive (RFC 7296 2.25.1).
		return refuse(wire.TEMPORARY_FAILURE)
	}
	var gir, kePub []byte
	if c.suite.DH != 0 {
		var err error
		if kePub, gir, err = ikecrypto.RespondKeyExchange(c.suite.DH, keP.Data, e.rand); err != nil {
			if errors.Is(err, ikecrypto.ErrInvalidKEData) {
				return refuse(wire.INVALID_SYNTAX)
			}
			return refuse(wire.NO_PROPOSAL_CHOSEN)
		}
	}
	var err error
	if c.spiIn, err = e.store.newChildSPI(e.rand); err != nil {
		clear(gir)
		return refuse(wire.TEMPORARY_FAILURE)
	}
	if c.nr, err = e.nonce(); err != nil {
		clear(gir)
		return refuse(wire.TEMPORARY_FAILURE)
	}
	chosen.SPI = spiBytes(c.spiIn)
	out := []wire.Payload{&wire.SA{Proposals: []wire.Proposal{chosen}}, &wire.Nonce{Data: c.nr}}
	if kePub != nil {
		out = append(out, &wire.KE{Group: c.suite.DH, Data: kePub})
	}
	ts := []wire.Payload{&wire.TS{Initiator: true, Selectors: c.remoteTS}, &wire.TS{Initiator: false, Selectors: c.localTS}}
	if addKE {
		f := &followup{methods: c.suite.AddKE, gir: gir, ni: c.ni, nr: c.nr, child: c, old: old}
		link, err := e.openFollowup(now, sa, f)
		if err != nil {
			clear(gir)
			e.log.Info("Child SA refused for now", "sa", sa.id, "reason", err.Error())
			return refuse(wire.TEMPORARY_FAILURE)
		}
		e.holdSPI(sa, c.cfg, c.spiIn)
		out = append(out, &wire.Notify{NotifyType: wire.ADDITIONAL_KEY_EXCHANGE, Data: link})
		return append(out, ts...), nil
	}
	keys, err := e.childKeymat(sa, c, gir, nil)
	if err != nil {
		return refuse(wire.NO_PROPOSAL_CHOSEN)
	}
	e.installResponderChild(now, sa, old, c, keys)
	return append(out, ts...), c
}

// installResponderChild installs c, which the peer's CREATE_CHILD_SA created,
// replacing old when a rekey.
func (e *Engine) installResponderChild(now time.Time, sa *IKESA, old, c *ChildSA, keys ikecrypto.ChildKeys) {
	if old != nil {
		c.policy = old.policy
	}
	// A rekey responder keeps sending on the old SA until the initiator deletes it
	// (or activateGrace passes): the initiator switches first.
	e.installChild(now, sa, c, keys, false, old != nil)
	if old != nil {
		e.stats.childRekeys++
	}
}

// followupChildDone creates the Child SA of the peer's series f, whose additional key
// exchanges are done: its keys from SK(0) | Ni | Nr | SK(1) | ... | SK(n).
func (e *Engine) followupChildDone(now time.Time, sa *IKESA, f *followup) {
	c, old := f.child, f.old
	keys, err := e.childKeymat(sa, c, f.gir, f.shared)
	f.gir, f.shared = nil, nil
	if err != nil {
		e.log.Error("key derivation", "sa", sa.id, "err", err)
		return
	}
	if old != nil && (sa.childBySPIIn(old.spiIn) != old || old.state == childDeleting || old.state == childRekeyed) {
		old = nil // gone or replaced meanwhile: c is a flow of its own
	}
	e.installResponderChild(now, sa, old, c, keys)
	if old != nil {
		e.rekeyedByPeer(old, c)
	}
	e.log.Info("Child SA created after additional key exchanges", "sa", sa.id, "child", c.cfg.Name, "rekey", old != nil)
}
