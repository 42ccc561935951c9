package ike

import (
	"bytes"
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
	e.holdSPI(sa, cfg, spi)
	return spi, nil
}

// holdSPI reserves inbound SPI spi for a Child SA of cfg being negotiated on sa.
func (e *Engine) holdSPI(sa *IKESA, cfg *ChildConfig, spi uint32) {
	e.store.claimInbound(spi, &ChildSA{spiIn: spi, cfg: cfg})
	if sa.reserved == nil {
		sa.reserved = make(map[uint32]bool)
	}
	sa.reserved[spi] = true
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
// the new Child SA (not installed yet) with the shared secret of its KE (SK(0); nil
// without PFS), or why it is unacceptable.
func (e *Engine) childFromResponse(cr *childRequest, m *wire.Message) (*ChildSA, []byte, string) {
	saP := wire.Find[*wire.SA](m.Payloads)
	nrP := wire.Find[*wire.Nonce](m.Payloads)
	tsi, tsr := wire.FindTS(m.Payloads, true), wire.FindTS(m.Payloads, false)
	if saP == nil || nrP == nil || tsi == nil || tsr == nil || len(saP.Proposals) != 1 {
		return nil, nil, "incomplete CREATE_CHILD_SA response"
	}
	got := saP.Proposals[0]
	if err := ikecrypto.CheckResponseProposal(cr.offered, got); err != nil || len(got.SPI) != 4 {
		return nil, nil, "NO_PROPOSAL_CHOSEN: the peer chose an ESP proposal we did not offer"
	}
	suite, err := ikecrypto.ESPSuiteFromProposal(got)
	if err != nil {
		return nil, nil, err.Error()
	}
	var gir []byte
	keP := wire.Find[*wire.KE](m.Payloads)
	switch {
	case suite.DH != 0 && (cr.kex == nil || keP == nil || keP.Group != suite.DH || cr.kex.Group() != suite.DH):
		return nil, nil, "the peer's key exchange does not match the chosen proposal"
	case suite.DH != 0:
		if gir, err = cr.kex.SharedSecret(keP.Data); err != nil {
			return nil, nil, "invalid KE payload: " + err.Error()
		}
	}
	if !tsSubset(tsi.Selectors, cr.tsi) || !tsSubset(tsr.Selectors, cr.tsr) {
		clear(gir)
		return nil, nil, "TS_UNACCEPTABLE: the peer's traffic selectors are not within ours"
	}
	nr := append([]byte(nil), nrP.Data...)
	return negotiatedChild(cr.cfg, cr.spi, got, suite, tsi.Selectors, tsr.Selectors, cr.ni, nr), gir, ""
}

// childKeymat derives the keys of Child SA c, negotiated on sa, from SK(0) gir (nil
// without PFS) and the shared secrets of its additional key exchanges, and clears
// those.
func (e *Engine) childKeymat(sa *IKESA, c *ChildSA, gir []byte, addKE [][]byte) (ikecrypto.ChildKeys, error) {
	if e.testKeyInputs != nil {
		e.testKeyInputs(gir, addKE)
	}
	keys, err := ikecrypto.ChildKeymat(sa.prf, sa.keys.SKd, gir, c.ni, c.nr, c.suite, addKE...)
	clear(gir)
	wipeShared(addKE)
	return keys, err
}

// rekeyChild asks the peer to replace c (group: the KE group to use, 0 = the usual).
func (e *Engine) rekeyChild(now time.Time, sa *IKESA, c *ChildSA, group uint16) {
	if sa.state != stateEstablished || sa.rekeying != nil || c.state != childInstalled || sa.childBySPIIn(c.spiIn) != c {
		return
	}
	if sa.followupFor(c) != nil || sa.ikeFollowup() != nil {
		// The peer is rekeying it, or the IKE SA, and its additional key exchanges run:
		// not now (the caller tries again soon).
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

// childRekeyFailed handles a rekey of c that failed (reason): tried again later, or,
// for a Child SA past its hard limit, replaced by a new one.
func (e *Engine) childRekeyFailed(now time.Time, sa *IKESA, c *ChildSA, reason string) {
	stillOurs := sa.childBySPIIn(c.spiIn) == c
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

// rekeyChildDone handles the response to our rekey of c.
func (e *Engine) rekeyChildDone(now time.Time, sa *IKESA, c *ChildSA, cr *childRequest, m *wire.Message) {
	stillOurs := sa.childBySPIIn(c.spiIn) == c
	if n := errorNotify(m.Payloads); n != nil {
		e.releaseSPI(sa, cr.spi)
		switch n.NotifyType {
		case wire.INVALID_KE_PAYLOAD:
			g, err := n.Group()
			if err == nil && stillOurs && (cr.kex == nil || g != cr.kex.Group()) && offersGroup(c.cfg.ESPProposals, g) {
				c.state = childInstalled
				e.rekeyChild(now, sa, c, g)
				return
			}
			e.childRekeyFailed(now, sa, c, n.NotifyType.String())
		case wire.CHILD_SA_NOT_FOUND:
			// After a collision the peer replaced c already and ignores us (2.8.1);
			// otherwise c is gone at the peer and goes here too (2.25).
			if !stillOurs || c.collision != nil {
				return
			}
			e.log.Info("peer has no such Child SA; removing it", "sa", sa.id, "child", c.cfg.Name)
			e.retireChild(now, sa, c, true)
		default:
			e.childRekeyFailed(now, sa, c, n.NotifyType.String())
		}
		return
	}
	n, gir, reason := e.childFromResponse(cr, m)
	if n == nil {
		e.releaseSPI(sa, cr.spi)
		e.childRekeyFailed(now, sa, c, reason)
		return
	}
	n.policy = c.policy
	if e.rekeyCollidedAddKE(now, sa, c, n, cr, gir) {
		return
	}
	// install derives n's keys (shared: the additional key exchanges' secrets) and puts
	// it in c's place.
	install := func(e *Engine, now time.Time, sa *IKESA, shared [][]byte) {
		e.releaseSPI(sa, cr.spi)
		keys, err := e.childKeymat(sa, n, gir, shared)
		if err != nil {
			e.childRekeyFailed(now, sa, c, err.Error())
			return
		}
		e.rekeyChildInstall(now, sa, c, n, keys)
	}
	if !hasAddKE(n.suite.AddKE) {
		install(e, now, sa, nil)
		return
	}
	e.startAddKE(now, sa, &addKEInit{kind: reqRekeyChild, methods: n.suite.AddKE, child: c, done: install,
		fail: func(e *Engine, now time.Time, sa *IKESA, reason string, _ wire.NotifyType) {
			clear(gir)
			e.releaseSPI(sa, cr.spi)
			e.childRekeyFailed(now, sa, c, reason)
		},
	}, m)
}

// rekeyChildInstall installs n, the successor of c that our rekey created, and
// deletes c, or, after a collision that ours lost, closes n.
func (e *Engine) rekeyChildInstall(now time.Time, sa *IKESA, c, n *ChildSA, keys ikecrypto.ChildKeys) {
	stillOurs := sa.childBySPIIn(c.spiIn) == c
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
	e.log.Info("Child SA rekeyed", "sa", sa.id, "child", c.cfg.Name, "old_spi_in", spiHex(c.spiIn), "new_spi_in", spiHex(n.spiIn), "proposal", n.suite.String())
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
			e.createChildDone(now, sa, cr, group, replaces, m)
		},
	})
	return true
}

// createChildDone handles the response to our CREATE_CHILD_SA for an additional Child
// SA (or the replacement of replaces).
func (e *Engine) createChildDone(now time.Time, sa *IKESA, cr *childRequest, group uint16, replaces *ChildSA, m *wire.Message) {
	cfg := cr.cfg
	if n := errorNotify(m.Payloads); n != nil {
		e.releaseSPI(sa, cr.spi)
		if g, err := n.Group(); n.NotifyType == wire.INVALID_KE_PAYLOAD && err == nil && g != group && offersGroup(cfg.ESPProposals, g) {
			e.createChild(now, sa, cfg, g, replaces)
			return
		}
		e.log.Info("Child SA refused", "sa", sa.id, "child", cfg.Name, "reason", n.NotifyType.String())
		e.replacementRefused(now, sa, replaces, n.NotifyType)
		return
	}
	c, gir, reason := e.childFromResponse(cr, m)
	if c == nil {
		e.releaseSPI(sa, cr.spi)
		e.log.Info("Child SA refused", "sa", sa.id, "child", cfg.Name, "reason", reason)
		e.replacementRefused(now, sa, replaces, 0)
		return
	}
	if !hasAddKE(c.suite.AddKE) {
		e.releaseSPI(sa, cr.spi)
		e.createdChild(now, sa, c, gir, nil, replaces)
		return
	}
	e.startAddKE(now, sa, &addKEInit{kind: reqCreateChild, methods: c.suite.AddKE,
		done: func(e *Engine, now time.Time, sa *IKESA, shared [][]byte) {
			e.releaseSPI(sa, cr.spi)
			e.createdChild(now, sa, c, gir, shared, replaces)
		},
		fail: func(e *Engine, now time.Time, sa *IKESA, reason string, n wire.NotifyType) {
			clear(gir)
			e.releaseSPI(sa, cr.spi)
			e.log.Info("Child SA refused", "sa", sa.id, "child", cfg.Name, "reason", reason)
			if n == wire.STATE_NOT_FOUND {
				n = wire.TEMPORARY_FAILURE // the peer forgot it: try again later
			}
			e.replacementRefused(now, sa, replaces, n)
		},
	}, m)
}

// createdChild derives the keys of c, an additional Child SA (or the replacement of
// replaces) now negotiated, and installs it.
func (e *Engine) createdChild(now time.Time, sa *IKESA, c *ChildSA, gir []byte, shared [][]byte, replaces *ChildSA) {
	keys, err := e.childKeymat(sa, c, gir, shared)
	if err != nil {
		e.log.Info("Child SA refused", "sa", sa.id, "child", c.cfg.Name, "reason", err.Error())
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
		e.log.Info("Child SA replaced", "sa", sa.id, "child", c.cfg.Name, "old_spi_in", spiHex(old.spiIn), "new_spi_in", spiHex(c.spiIn))
		old.state = childRekeyed
		old.successor = c
		e.deleteChild(now, sa, old)
	}
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
