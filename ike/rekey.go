package ike

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"time"

	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/wire"
)

// CREATE_CHILD_SA (RFC 7296 1.3): Child SA rekeying (with or without PFS), additional
// Child SAs, IKE SA rekeying, and the collisions of 2.8.1, 2.8.2 and 2.25.

// retryDelay is how long we wait after a TEMPORARY_FAILURE or a refused rekey.
const retryDelay = 10 * time.Second

// lowestNonce reports whether exchange a holds the lowest of the four nonces of two
// exchanges, compared octet by octet, a prefix being lower (RFC 7296 2.8.1).
func lowestNonce(a, b [2][]byte) bool {
	low := func(p [2][]byte) []byte {
		if bytes.Compare(p[0], p[1]) <= 0 {
			return p[0]
		}
		return p[1]
	}
	return bytes.Compare(low(a), low(b)) <= 0
}

func errorNotify(ps []wire.Payload) *wire.Notify {
	for _, p := range ps {
		if n, ok := p.(*wire.Notify); ok && n.NotifyType.IsError() {
			return n
		}
	}
	return nil
}

// reserveSPI picks an inbound SPI for a Child SA being negotiated on sa.
func (e *Engine) reserveSPI(sa *IKESA, cfg *ChildConfig) (uint32, error) {
	spi, err := e.store.newChildSPI(e.rand)
	if err != nil {
		return 0, err
	}
	e.store.claimInbound(spi, &ChildSA{spiIn: spi, cfg: cfg})
	if sa.reserved == nil {
		sa.reserved = make(map[uint32]bool)
	}
	sa.reserved[spi] = true
	return spi, nil
}

func (e *Engine) releaseSPI(sa *IKESA, spi uint32) {
	if sa.reserved[spi] {
		delete(sa.reserved, spi)
		e.store.freeInbound(spi)
	}
}

// RekeyChild starts rekeying the Child SA with inbound SPI spi now; the timers do it on
// their own otherwise.
func (e *Engine) RekeyChild(now time.Time, spi uint32) []Action {
	for sa := range e.store.all() {
		if c := sa.childBySPIIn(spi); c != nil {
			e.rekeyChild(now, sa, c, 0)
			e.schedule(sa)
		}
	}
	return e.take()
}

// childRequest is a CREATE_CHILD_SA request for a Child SA we sent: what the response
// is checked against.
type childRequest struct {
	cfg      *ChildConfig
	spi      uint32
	ni       []byte
	kex      ikecrypto.KeyExchange
	offered  []wire.Proposal
	tsi, tsr []wire.TrafficSelector
}

// newChildRequest builds the payloads of a CREATE_CHILD_SA for a Child SA (rekeyed:
// the SA it replaces, or nil for an additional one).
func (e *Engine) newChildRequest(sa *IKESA, cfg *ChildConfig, group uint16, rekeyed *ChildSA, tsi, tsr []wire.TrafficSelector) (*childRequest, []wire.Payload, error) {
	spi, err := e.reserveSPI(sa, cfg)
	if err != nil {
		return nil, nil, err
	}
	cr := &childRequest{cfg: cfg, spi: spi, tsi: tsi, tsr: tsr}
	if cr.ni, err = e.nonce(); err != nil {
		return nil, nil, err
	}
	if group != wire.DH_NONE {
		if cr.kex, err = ikecrypto.NewKeyExchange(group, e.rand); err != nil {
			return nil, nil, err
		}
	}
	cr.offered = numberProposals(ikecrypto.PreferGroup(cfg.ESPProposals, group), spiBytes(spi))
	var ps []wire.Payload
	if rekeyed != nil {
		ps = append(ps, &wire.Notify{Protocol: wire.ProtoESP, SPI: spiBytes(rekeyed.spiIn), NotifyType: wire.REKEY_SA})
	}
	ps = append(ps, &wire.SA{Proposals: cr.offered}, &wire.Nonce{Data: cr.ni})
	if cr.kex != nil {
		ps = append(ps, &wire.KE{Group: group, Data: cr.kex.PublicKey()})
	}
	ps = append(ps, &wire.TS{Initiator: true, Selectors: tsi}, &wire.TS{Initiator: false, Selectors: tsr})
	return cr, ps, nil
}

// childFromResponse checks a CREATE_CHILD_SA response against our request and returns
// the new Child SA (not installed yet) with its KEYMAT, or why it is unacceptable.
func (e *Engine) childFromResponse(sa *IKESA, cr *childRequest, m *wire.Message) (*ChildSA, ikecrypto.ChildKeys, string) {
	var none ikecrypto.ChildKeys
	saP := wire.Find[*wire.SA](m.Payloads)
	nrP := wire.Find[*wire.Nonce](m.Payloads)
	tsi, tsr := wire.FindTS(m.Payloads, true), wire.FindTS(m.Payloads, false)
	if saP == nil || nrP == nil || tsi == nil || tsr == nil || len(saP.Proposals) != 1 {
		return nil, none, "incomplete CREATE_CHILD_SA response"
	}
	got := saP.Proposals[0]
	if err := ikecrypto.CheckResponseProposal(cr.offered, got); err != nil || len(got.SPI) != 4 {
		return nil, none, "NO_PROPOSAL_CHOSEN: the peer chose an ESP proposal we did not offer"
	}
	suite, err := ikecrypto.ESPSuiteFromProposal(got)
	if err != nil {
		return nil, none, err.Error()
	}
	var gir []byte
	keP := wire.Find[*wire.KE](m.Payloads)
	switch {
	case suite.DH != 0 && (cr.kex == nil || keP == nil || keP.Group != suite.DH || cr.kex.Group() != suite.DH):
		return nil, none, "the peer's key exchange does not match the chosen proposal"
	case suite.DH != 0:
		if gir, err = cr.kex.SharedSecret(keP.Data); err != nil {
			return nil, none, "invalid KE payload: " + err.Error()
		}
	}
	if !tsSubset(tsi.Selectors, cr.tsi) || !tsSubset(tsr.Selectors, cr.tsr) {
		return nil, none, "TS_UNACCEPTABLE: the peer's traffic selectors are not within ours"
	}
	nr := append([]byte(nil), nrP.Data...)
	keys, err := ikecrypto.ChildKeymat(sa.prf, sa.keys.SKd, gir, cr.ni, nr, suite)
	if err != nil {
		return nil, none, err.Error()
	}
	return negotiatedChild(cr.cfg, cr.spi, got, suite, tsi.Selectors, tsr.Selectors, cr.ni, nr), keys, ""
}

// rekeyChild asks the peer to replace c (group: the KE group to use, 0 = the usual).
func (e *Engine) rekeyChild(now time.Time, sa *IKESA, c *ChildSA, group uint16) {
	if sa.state != stateEstablished || sa.rekeying != nil || c.state != childInstalled || sa.childBySPIIn(c.spiIn) != c {
		return
	}
	if group == 0 {
		// The group negotiated before, else the first one configured (PFS), else none.
		group = c.suite.DH
		if group == 0 {
			group = firstGroup(c.cfg.ESPProposals)
		}
	}
	cr, ps, err := e.newChildRequest(sa, c.cfg, group, c, c.localTS, c.remoteTS)
	if err != nil {
		e.log.Error("cannot rekey Child SA", "sa", sa.id, "err", err)
		return
	}
	c.state = childRekeying
	e.log.Info("rekeying Child SA", "sa", sa.id, "child", c.cfg.Name, "spi_in", spiHex(c.spiIn), "pfs", group != 0)
	e.queueRequest(now, sa, &request{
		exchange: wire.CREATE_CHILD_SA,
		payloads: ps,
		kind:     reqRekeyChild,
		onReply: func(e *Engine, now time.Time, sa *IKESA, m *wire.Message) {
			e.rekeyChildDone(now, sa, c, cr, m)
		},
	})
}

// rekeyChildDone handles the response to our rekey of c.
func (e *Engine) rekeyChildDone(now time.Time, sa *IKESA, c *ChildSA, cr *childRequest, m *wire.Message) {
	e.releaseSPI(sa, cr.spi)
	stillOurs := sa.childBySPIIn(c.spiIn) == c
	retry := func(reason string) {
		if stillOurs && c.state == childRekeying && c.expired {
			e.log.Info("Child SA rekey failed", "sa", sa.id, "child", c.cfg.Name, "reason", reason)
			c.state = childInstalled
			e.replaceExpired(now, sa, c)
			return
		}
		e.log.Info("Child SA rekey failed, will retry", "sa", sa.id, "child", c.cfg.Name, "reason", reason)
		if stillOurs && c.state == childRekeying {
			c.state = childInstalled
			c.rekeyAt = now.Add(retryDelay)
		}
	}
	if n := errorNotify(m.Payloads); n != nil {
		switch n.NotifyType {
		case wire.INVALID_KE_PAYLOAD:
			g, err := n.Group()
			if err == nil && stillOurs && (cr.kex == nil || g != cr.kex.Group()) && offersGroup(c.cfg.ESPProposals, g) {
				c.state = childInstalled
				e.rekeyChild(now, sa, c, g)
				return
			}
			retry(n.NotifyType.String())
		case wire.CHILD_SA_NOT_FOUND:
			// After a collision the peer replaced c already and ignores us (2.8.1);
			// otherwise c is gone at the peer and goes here too (2.25).
			if !stillOurs || c.collision != nil {
				return
			}
			e.log.Info("peer has no such Child SA; removing it", "sa", sa.id, "child", c.cfg.Name)
			e.retireChild(now, sa, c, true)
		default:
			retry(n.NotifyType.String())
		}
		return
	}
	n, keys, reason := e.childFromResponse(sa, cr, m)
	if n == nil {
		retry(reason)
		return
	}
	n.policy = c.policy
	// Collision (2.8.1): the peer rekeyed c too, creating b. The new SA with the
	// lowest nonce is closed by whoever created it; the creator of the survivor deletes
	// the old one.
	// This holds also when the peer, the winner, deleted c before our response came.
	if b := c.collision; b != nil && sa.childBySPIIn(b.spiIn) == b {
		if stillOurs {
			c.state = childRekeyed
		}
		if lowestNonce([2][]byte{n.ni, n.nr}, [2][]byte{b.ni, b.nr}) {
			// We lose: n never carries traffic and we close it. We keep sending on c
			// until the peer, the winner, deletes it; then b takes over, as in a rekey
			// we answered (the peer installs b's inbound half only when our response
			// reaches it, so b must not be used before). If c is gone already, b
			// carries the flow by now.
			e.log.Info("rekey collision: ours has the lowest nonce, closing it", "sa", sa.id, "child", c.cfg.Name)
			e.installChild(now, sa, n, keys, true, true)
			n.activateAt = time.Time{}
			n.outKeys.wipe()
			c.successor = b
			e.deleteChild(now, sa, n)
			return
		}
		// We win: n carries the flow, we delete c, the peer closes b, which never
		// carries our traffic.
		e.log.Info("rekey collision: the peer's has the lowest nonce, the peer closes it", "sa", sa.id, "child", c.cfg.Name)
		b.activateAt = time.Time{}
		b.outKeys.wipe()
	}
	e.installChild(now, sa, n, keys, true, false)
	e.stats.childRekeys++
	e.log.Info("Child SA rekeyed", "sa", sa.id, "child", c.cfg.Name, "old_spi_in", spiHex(c.spiIn), "new_spi_in", spiHex(n.spiIn))
	if !stillOurs {
		// The peer deleted c meanwhile (2.25.1): n simply carries the flow on.
		return
	}
	c.state = childRekeyed
	c.successor = n
	e.deleteChild(now, sa, c)
}

// deleteChild sends an INFORMATIONAL Delete for c and retires it when answered.
func (e *Engine) deleteChild(now time.Time, sa *IKESA, c *ChildSA) {
	if c.state == childDeleting {
		return
	}
	prev := c.state
	c.state = childDeleting
	if prev == childInstalled {
		// Nothing new is sent on it from now on.
		c.rekeyAt = time.Time{}
	}
	e.queueRequest(now, sa, &request{
		exchange: wire.INFORMATIONAL,
		payloads: []wire.Payload{&wire.Delete{Protocol: wire.ProtoESP, SPIs: []uint32{c.spiIn}}},
		kind:     reqDeleteChild,
		onReply: func(e *Engine, now time.Time, sa *IKESA, _ *wire.Message) {
			if sa.childBySPIIn(c.spiIn) == c {
				e.log.Info("Child SA deleted", "sa", sa.id, "child", c.cfg.Name, "spi_in", spiHex(c.spiIn))
				e.retireChild(now, sa, c, true)
			}
		},
	})
}

// createChild asks for an additional Child SA of configuration cfg, or, with replaces
// set, for the one that takes over the flow of replaces (past its hard volume limit,
// its rekey refused: see replaceExpired).
// It reports whether the request was queued.
func (e *Engine) createChild(now time.Time, sa *IKESA, cfg *ChildConfig, group uint16, replaces *ChildSA) bool {
	if sa.state != stateEstablished {
		return false
	}
	if group == 0 {
		group = firstGroup(cfg.ESPProposals)
	}
	tsi := resolveTS(cfg.LocalTS, sa.dynamicLocal())
	tsr := resolveTS(cfg.RemoteTS, sa.dynamicRemote())
	cr, ps, err := e.newChildRequest(sa, cfg, group, nil, tsi, tsr)
	if err != nil {
		e.log.Error("cannot create Child SA", "sa", sa.id, "err", err)
		return false
	}
	e.queueRequest(now, sa, &request{
		exchange: wire.CREATE_CHILD_SA,
		payloads: ps,
		kind:     reqCreateChild,
		onReply: func(e *Engine, now time.Time, sa *IKESA, m *wire.Message) {
			e.releaseSPI(sa, cr.spi)
			if n := errorNotify(m.Payloads); n != nil {
				if g, err := n.Group(); n.NotifyType == wire.INVALID_KE_PAYLOAD && err == nil && g != group && offersGroup(cfg.ESPProposals, g) {
					e.createChild(now, sa, cfg, g, replaces)
					return
				}
				e.log.Info("Child SA refused", "sa", sa.id, "child", cfg.Name, "reason", n.NotifyType.String())
				e.replacementRefused(now, sa, replaces, n.NotifyType)
				return
			}
			c, keys, reason := e.childFromResponse(sa, cr, m)
			if c == nil {
				e.log.Info("Child SA refused", "sa", sa.id, "child", cfg.Name, "reason", reason)
				e.replacementRefused(now, sa, replaces, 0)
				return
			}
			old := replaces
			if old != nil && sa.childBySPIIn(old.spiIn) != old {
				old = nil // deleted meanwhile: c is a flow of its own
			}
			if old != nil {
				c.policy = old.policy // c carries the flow on
			}
			e.installChild(now, sa, c, keys, true, false)
			if old != nil {
				e.log.Info("Child SA replaced", "sa", sa.id, "child", cfg.Name, "old_spi_in", spiHex(old.spiIn), "new_spi_in", spiHex(c.spiIn))
				old.state = childRekeyed
				old.successor = c
				e.deleteChild(now, sa, old)
			}
		},
	})
	return true
}

// replacementRefused handles the refusal of old's replacement (nil: not a replacement).
// A TEMPORARY_FAILURE (RFC 7296 2.25: the peer is busy, rekeying the IKE SA say) is
// tried again later, by the rekey timer, the flow kept meanwhile; any other refusal is
// final: old goes, and its flow with it.
func (e *Engine) replacementRefused(now time.Time, sa *IKESA, old *ChildSA, why wire.NotifyType) {
	if old == nil || sa.childBySPIIn(old.spiIn) != old || old.state != childRekeying {
		return
	}
	old.state = childInstalled
	if why == wire.TEMPORARY_FAILURE {
		e.log.Info("replacement of the Child SA past its hard limit refused for now; trying again", "sa", sa.id, "child", old.cfg.Name, "spi_in", spiHex(old.spiIn))
		old.rekeyAt = now.Add(retryDelay)
		e.schedule(sa)
		return
	}
	e.log.Warn("Child SA past its hard limit could not be replaced; deleting it", "sa", sa.id, "child", old.cfg.Name, "spi_in", spiHex(old.spiIn))
	e.deleteChild(now, sa, old)
}

// dynamicLocal is what "dynamic" means for our side of a Child SA: our virtual IPs, else
// our outer address in IKE_AUTH (moves do not change it: a selector is never narrowed to
// an address that was not authenticated).
func (sa *IKESA) dynamicLocal() []netip.Addr {
	if sa.origInitiator && len(sa.vips) > 0 {
		return sa.vips
	}
	if sa.authLocal.IsValid() {
		return []netip.Addr{sa.authLocal.Addr()}
	}
	return []netip.Addr{sa.local.Addr()}
}

// dynamicRemote is what "dynamic" means for the peer's side: its virtual IPs, else its
// outer address in IKE_AUTH, never one it moved to since (which may not be verified).
func (sa *IKESA) dynamicRemote() []netip.Addr {
	if !sa.origInitiator && len(sa.vips) > 0 {
		return sa.vips
	}
	if sa.authRemote.IsValid() {
		return []netip.Addr{sa.authRemote.Addr()}
	}
	return []netip.Addr{sa.remote.Addr()}
}

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
	var old *ChildSA
	if n := wire.FindNotify(m.Payloads, wire.REKEY_SA); n != nil {
		if n.Protocol != wire.ProtoESP || len(n.SPI) != 4 {
			reply(&wire.Notify{NotifyType: wire.INVALID_SYNTAX})
			return
		}
		old = sa.childByOutSPI(binary.BigEndian.Uint32(n.SPI))
		if old == nil || old.state == childRekeyed {
			reply(&wire.Notify{Protocol: wire.ProtoESP, SPI: n.SPI, NotifyType: wire.CHILD_SA_NOT_FOUND})
			return
		}
		if old.state == childDeleting {
			reply(&wire.Notify{NotifyType: wire.TEMPORARY_FAILURE})
			return
		}
	}
	if limit := sa.conn.maxChildren(); old == nil && sa.liveChildren() >= limit {
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
	if c == nil {
		return
	}
	if old != nil {
		if old.state == childRekeying {
			// We are rekeying it too: decide when our response arrives (2.8.1).
			// Should the peer win and delete old before that response comes, c
			// takes over the flow meanwhile.
			old.collision = c
			old.successor = c
		} else {
			old.state = childRekeyed
			old.successor = c
		}
	}
}

// respondChildCreate negotiates a Child SA the peer asks for in CREATE_CHILD_SA,
// replacing old when it is a rekey. It returns the response payloads and the new SA (nil
// when refused).
func (e *Engine) respondChildCreate(now time.Time, sa *IKESA, old *ChildSA, m *wire.Message) ([]wire.Payload, *ChildSA) {
	saP := wire.Find[*wire.SA](m.Payloads)
	niP := wire.Find[*wire.Nonce](m.Payloads)
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
		var gir, kePub []byte
		if suite.DH != 0 {
			kex, err := ikecrypto.NewKeyExchange(suite.DH, e.rand)
			if err != nil {
				return []wire.Payload{&wire.Notify{NotifyType: wire.NO_PROPOSAL_CHOSEN}}, nil
			}
			if gir, err = kex.SharedSecret(keP.Data); err != nil {
				return []wire.Payload{&wire.Notify{NotifyType: wire.INVALID_SYNTAX}}, nil
			}
			kePub = kex.PublicKey()
		}
		spiIn, err := e.store.newChildSPI(e.rand)
		if err != nil {
			return []wire.Payload{&wire.Notify{NotifyType: wire.TEMPORARY_FAILURE}}, nil
		}
		nr, err := e.nonce()
		if err != nil {
			return []wire.Payload{&wire.Notify{NotifyType: wire.TEMPORARY_FAILURE}}, nil
		}
		ni := append([]byte(nil), niP.Data...)
		keys, err := ikecrypto.ChildKeymat(sa.prf, sa.keys.SKd, gir, ni, nr, suite)
		if err != nil {
			return []wire.Payload{&wire.Notify{NotifyType: wire.NO_PROPOSAL_CHOSEN}}, nil
		}
		c := negotiatedChild(cc, spiIn, chosen, suite, ntsr, ntsi, ni, nr)
		if old != nil {
			c.policy = old.policy
		}
		// A rekey responder keeps sending on the old SA until the initiator deletes it
		// (or activateGrace passes): the initiator switches first.
		e.installChild(now, sa, c, keys, false, old != nil)
		if old != nil {
			e.stats.childRekeys++
		}
		chosen.SPI = spiBytes(spiIn)
		out := []wire.Payload{&wire.SA{Proposals: []wire.Proposal{chosen}}, &wire.Nonce{Data: nr}}
		if kePub != nil {
			out = append(out, &wire.KE{Group: suite.DH, Data: kePub})
		}
		out = append(out, &wire.TS{Initiator: true, Selectors: ntsi}, &wire.TS{Initiator: false, Selectors: ntsr})
		return out, c
	}
	e.log.Info("Child SA refused", "sa", sa.id, "reason", fail.String())
	return []wire.Payload{&wire.Notify{NotifyType: fail}}, nil
}
