package ike

import (
	"encoding/binary"
	"errors"
	"time"

	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/wire"
)

// IKE SA rekeying (RFC 7296 2.18): a new IKE SA takes over the Child SAs, the path
// manager and the virtual IPs of the old one; collisions as 2.8.2 says.

// rekeyedSALife bounds how long an IKE SA that the peer rekeyed waits for the peer's
// Delete before it is forgotten.
const rekeyedSALife = 30 * time.Second

// RekeyIKE starts rekeying IKE SA id now.
func (e *Engine) RekeyIKE(now time.Time, id uint64) []Action {
	if sa := e.store.get(id); sa != nil {
		e.rekeyIKE(now, sa, 0)
		e.schedule(sa)
	}
	return e.take()
}

// rekeyIKE asks the peer to replace IKE SA sa (group 0: the current one).
func (e *Engine) rekeyIKE(now time.Time, sa *IKESA, group uint16) {
	if sa.state != stateEstablished || sa.rekeying != nil || sa.rekeyedTo != nil {
		return
	}
	// RFC 7296 2.25.1: not while a Child SA of ours is being created, rekeyed or closed,
	// nor while the peer's additional key exchanges run (RFC 9370).
	if sa.win.pending != nil && sa.win.pending.kind != reqDPD || len(sa.win.queue) > 0 || len(sa.followups) > 0 {
		sa.rekeyAt = now.Add(time.Second)
		return
	}
	if group == 0 {
		group = sa.suite.DH
	}
	spi, err := e.store.newSPI(e.rand)
	if err != nil {
		return
	}
	ni, err := e.nonce()
	if err != nil {
		return
	}
	kex, err := ikecrypto.NewKeyExchange(group, e.rand)
	if err != nil {
		e.log.Error("key exchange", "err", err)
		return
	}
	var spiB [8]byte
	binary.BigEndian.PutUint64(spiB[:], spi)
	// The proposals as configured, additional key exchanges included (RFC 9370 2.2.4:
	// they run in IKE_FOLLOWUP_KE exchanges on this SA).
	offered := numberProposals(ikecrypto.PreferGroup(sa.conn.Proposals, group), spiB[:])
	// Reserve the SPI so that nobody else takes it meanwhile.
	e.store.reserveSPI(spi, sa)
	sa.rekeySPI = spi
	r := &request{
		exchange: wire.CREATE_CHILD_SA,
		payloads: []wire.Payload{&wire.SA{Proposals: offered}, &wire.Nonce{Data: ni}, &wire.KE{Group: group, Data: kex.PublicKey()}},
		kind:     reqRekeyIKE,
	}
	r.onReply = func(e *Engine, now time.Time, sa *IKESA, m *wire.Message) {
		e.store.releaseSPI(spi, sa)
		sa.rekeying, sa.rekeySPI = nil, 0
		e.rekeyIKEDone(now, sa, spi, ni, kex, offered, m)
	}
	sa.rekeying = r
	sa.rekeyNi = ni
	e.log.Info("rekeying IKE SA", "sa", sa.id)
	e.queueRequest(now, sa, r)
}

// rekeyIKEDone handles the response to our IKE SA rekey.
func (e *Engine) rekeyIKEDone(now time.Time, sa *IKESA, spi uint64, ni []byte, kex ikecrypto.KeyExchange, offered []wire.Proposal, m *wire.Message) {
	collision := sa.collision
	sa.collision = nil
	giveUp := func(reason string) { e.rekeyIKEFailed(now, sa, collision, reason) }
	if n := errorNotify(m.Payloads); n != nil {
		if g, err := n.Group(); n.NotifyType == wire.INVALID_KE_PAYLOAD && err == nil && g != kex.Group() && offersGroup(sa.conn.Proposals, g) && collision == nil {
			e.rekeyIKE(now, sa, g)
			return
		}
		giveUp(n.NotifyType.String())
		return
	}
	saP := wire.Find[*wire.SA](m.Payloads)
	nrP := wire.Find[*wire.Nonce](m.Payloads)
	keP := wire.Find[*wire.KE](m.Payloads)
	if saP == nil || nrP == nil || keP == nil || len(saP.Proposals) != 1 || len(saP.Proposals[0].SPI) != 8 {
		giveUp("incomplete response")
		return
	}
	got := saP.Proposals[0]
	if err := ikecrypto.CheckResponseProposal(offered, got); err != nil {
		giveUp("peer chose a proposal we did not offer")
		return
	}
	suite, err := ikecrypto.IKESuiteFromProposal(got)
	if err != nil || suite.DH != kex.Group() || keP.Group != suite.DH {
		giveUp("key exchange does not match")
		return
	}
	gir, err := kex.SharedSecret(keP.Data)
	if err != nil {
		giveUp("invalid KE payload")
		return
	}
	nr := append([]byte(nil), nrP.Data...)
	rk := &ikeRekey{spiI: spi, spiR: binary.BigEndian.Uint64(got.SPI), suite: suite, ni: ni, nr: nr, gir: gir, collision: collision}
	if e.ikeRekeyCollided(now, sa, rk) {
		return
	}
	if !hasAddKE(suite.AddKE) {
		e.rekeyIKEInstall(now, sa, rk, nil)
		return
	}
	// The new SA's SPI stays ours until the additional key exchanges end.
	e.store.reserveSPI(spi, sa)
	sa.rekeySPI = spi
	e.startAddKE(now, sa, &addKEInit{kind: reqRekeyIKE, methods: suite.AddKE,
		done: func(e *Engine, now time.Time, sa *IKESA, shared [][]byte) {
			e.store.releaseSPI(spi, sa)
			sa.rekeySPI = 0
			e.rekeyIKEInstall(now, sa, rk, shared)
		},
		fail: func(e *Engine, now time.Time, sa *IKESA, reason string, _ wire.NotifyType) {
			clear(gir)
			e.store.releaseSPI(spi, sa)
			sa.rekeySPI = 0
			e.rekeyIKEFailed(now, sa, collision, reason)
		},
	}, m)
}

// ikeRekey is what our CREATE_CHILD_SA that rekeys the IKE SA negotiated: the new
// SA's SPIs, suite, nonces and SK(0); collision is the SA the peer's rekey created
// meanwhile (RFC 7296 2.8.2), if any.
type ikeRekey struct {
	spiI, spiR uint64
	suite      ikecrypto.IKESuite
	ni, nr     []byte
	gir        []byte
	collision  *IKESA
}

// rekeyIKEFailed handles our IKE SA rekey that failed: tried again later, or, after a
// collision, the peer's new SA takes over.
func (e *Engine) rekeyIKEFailed(now time.Time, sa *IKESA, collision *IKESA, reason string) {
	e.log.Info("IKE SA rekey failed", "sa", sa.id, "reason", reason)
	if collision != nil {
		// The peer's rekey stands: its new SA inherits everything.
		e.inherit(now, sa, collision)
		return
	}
	sa.rekeyAt = now.Add(retryDelay)
}

// ikeRekeyCollided decides a collision of our IKE SA rekey rk with the peer's when
// either runs additional key exchanges (RFC 9370 2.2.4): the initiator of the exchange
// with the lowest nonce stops (no IKE_FOLLOWUP_KE; an SA it has already, it closes).
// It reports whether ours ended here.
func (e *Engine) ikeRekeyCollided(now time.Time, sa *IKESA, rk *ikeRekey) bool {
	f := sa.ikeFollowup()
	installed := rk.collision != nil && e.store.live(rk.collision)
	if f == nil && (!installed || !hasAddKE(rk.suite.AddKE)) {
		return false // rekeyIKEInstall decides
	}
	var theirs [2][]byte
	if f != nil {
		theirs = [2][]byte{f.ni, f.nr}
	} else {
		theirs = rk.collision.createdNonces
	}
	if !lowestNonce([2][]byte{rk.ni, rk.nr}, theirs) {
		if f != nil {
			e.log.Info("IKE rekey collision: the peer's has the lowest nonce, it stops its additional key exchanges", "sa", sa.id)
			e.dropFollowup(sa, f)
		}
		return false
	}
	e.log.Info("IKE rekey collision: ours has the lowest nonce, the peer's rekey carries on", "sa", sa.id)
	if !hasAddKE(rk.suite.AddKE) {
		// The peer made our SA already: create it to close it.
		if ns, err := e.newRekeyedSA(sa, rk.suite, true, rk.spiI, rk.spiR, rk.ni, rk.nr, rk.gir); err == nil {
			ns.createdNonces = [2][]byte{rk.ni, rk.nr}
			e.deleteIKESA(now, ns, "")
		}
	}
	clear(rk.gir)
	if installed {
		e.inherit(now, sa, rk.collision)
	}
	return true
}

// rekeyIKEInstall creates the IKE SA our rekey negotiated (addKE: the shared secrets
// of its additional key exchanges), which takes over from sa, unless a collision gives
// that to the peer's.
func (e *Engine) rekeyIKEInstall(now time.Time, sa *IKESA, rk *ikeRekey, addKE [][]byte) {
	ns, err := e.newRekeyedSA(sa, rk.suite, true, rk.spiI, rk.spiR, rk.ni, rk.nr, rk.gir, addKE...)
	if err != nil {
		e.rekeyIKEFailed(now, sa, rk.collision, err.Error())
		return
	}
	ns.createdNonces = [2][]byte{rk.ni, rk.nr}
	collision := rk.collision
	if collision != nil && e.store.live(collision) {
		// Both rekeyed (2.8.2): the new SA with the lowest nonce is closed by its
		// creator, the other inherits the Child SAs; its creator deletes the old SA.
		if lowestNonce(ns.createdNonces, collision.createdNonces) {
			e.log.Info("IKE rekey collision: ours has the lowest nonce, closing it", "old", sa.id, "ours", ns.id, "theirs", collision.id)
			e.inherit(now, sa, collision)
			e.deleteIKESA(now, ns, "")
			return
		}
		e.log.Info("IKE rekey collision: the peer's has the lowest nonce, the peer closes it", "old", sa.id, "ours", ns.id, "theirs", collision.id)
		collision.state = stateDeleting // the peer deletes it; we send nothing on it
	}
	e.inherit(now, sa, ns)
	e.deleteIKESA(now, sa, "")
}

// respondRekeyIKE answers the peer's request to rekey sa.
func (e *Engine) respondRekeyIKE(now time.Time, sa *IKESA, reply func(...wire.Payload), m *wire.Message) {
	// 2.25.1: not while we create, rekey or close a Child SA of it; RFC 9370 2.2.4: not
	// while additional key exchanges run, ours (our rekey of it among them) or the
	// peer's.
	if p := sa.win.pending; p != nil && (p.kind == reqRekeyChild || p.kind == reqCreateChild || p.kind == reqDeleteChild) ||
		sa.addKE != nil || len(sa.followups) > 0 {
		reply(&wire.Notify{NotifyType: wire.TEMPORARY_FAILURE})
		return
	}
	saP := wire.Find[*wire.SA](m.Payloads)
	niP := wire.Find[*wire.Nonce](m.Payloads)
	keP := wire.Find[*wire.KE](m.Payloads)
	if keP == nil {
		reply(&wire.Notify{NotifyType: wire.INVALID_SYNTAX})
		return
	}
	chosen, ok := ikecrypto.SelectProposal(ikecrypto.PreferGroup(sa.conn.Proposals, keP.Group), saP.Proposals)
	if !ok || chosen.Protocol != wire.ProtoIKE || len(chosen.SPI) != 8 {
		reply(&wire.Notify{NotifyType: wire.NO_PROPOSAL_CHOSEN})
		return
	}
	suite, err := ikecrypto.IKESuiteFromProposal(chosen)
	if err != nil {
		reply(&wire.Notify{NotifyType: wire.NO_PROPOSAL_CHOSEN})
		return
	}
	if keP.Group != suite.DH {
		var g [2]byte
		binary.BigEndian.PutUint16(g[:], suite.DH)
		reply(&wire.Notify{NotifyType: wire.INVALID_KE_PAYLOAD, Data: g[:]})
		return
	}
	kePub, gir, err := ikecrypto.RespondKeyExchange(suite.DH, keP.Data, e.rand)
	if err != nil {
		if errors.Is(err, ikecrypto.ErrInvalidKEData) {
			reply(&wire.Notify{NotifyType: wire.INVALID_SYNTAX})
		} else {
			reply(&wire.Notify{NotifyType: wire.NO_PROPOSAL_CHOSEN})
		}
		return
	}
	spi, err := e.store.newSPI(e.rand)
	if err != nil {
		reply(&wire.Notify{NotifyType: wire.TEMPORARY_FAILURE})
		return
	}
	nr, err := e.nonce()
	if err != nil {
		reply(&wire.Notify{NotifyType: wire.TEMPORARY_FAILURE})
		return
	}
	ni := append([]byte(nil), niP.Data...)
	f := &followup{ike: true, suite: suite, spiI: binary.BigEndian.Uint64(chosen.SPI), spiR: spi, ni: ni, nr: nr, gir: gir}
	var spiB [8]byte
	binary.BigEndian.PutUint64(spiB[:], spi)
	chosen.SPI = spiB[:]
	out := []wire.Payload{&wire.SA{Proposals: []wire.Proposal{chosen}}, &wire.Nonce{Data: nr}, &wire.KE{Group: suite.DH, Data: kePub}}
	if hasAddKE(suite.AddKE) {
		// The new SA exists once the peer's IKE_FOLLOWUP_KE exchanges (on this SA) are
		// done; its SPI is reserved meanwhile.
		f.methods = suite.AddKE
		link, err := e.openFollowup(now, sa, f)
		if err != nil {
			clear(gir)
			reply(&wire.Notify{NotifyType: wire.TEMPORARY_FAILURE})
			return
		}
		e.store.reserveSPI(spi, sa)
		reply(append(out, &wire.Notify{NotifyType: wire.ADDITIONAL_KEY_EXCHANGE, Data: link})...)
		return
	}
	ns, err := e.newRekeyedSA(sa, suite, false, f.spiI, spi, ni, nr, gir)
	if err != nil {
		reply(&wire.Notify{NotifyType: wire.NO_PROPOSAL_CHOSEN})
		return
	}
	ns.createdNonces = [2][]byte{ni, nr}
	reply(out...)
	e.rekeyedIKEByPeer(now, sa, ns)
}

// followupIKEDone creates the IKE SA that the peer's rekey f negotiated, its
// additional key exchanges done: SKEYSEED = prf(SK_d, SK(0) | Ni | Nr | SK(1) | ... |
// SK(n)).
func (e *Engine) followupIKEDone(now time.Time, sa *IKESA, f *followup) {
	ns, err := e.newRekeyedSA(sa, f.suite, false, f.spiI, f.spiR, f.ni, f.nr, f.gir, f.shared...)
	f.gir, f.shared = nil, nil
	if err != nil {
		e.log.Error("key derivation", "sa", sa.id, "err", err)
		return
	}
	ns.createdNonces = [2][]byte{f.ni, f.nr}
	e.rekeyedIKEByPeer(now, sa, ns)
}

// rekeyedIKEByPeer hands sa over to ns, which the peer's rekey created.
func (e *Engine) rekeyedIKEByPeer(now time.Time, sa, ns *IKESA) {
	if sa.rekeying != nil {
		// We are rekeying it too: decide when our response arrives (2.8.2).
		sa.collision = ns
		return
	}
	e.inherit(now, sa, ns)
	// The peer deletes the old SA; if it never does, it goes anyway.
	sa.expireAt = now.Add(rekeyedSALife)
}

// newRekeyedSA derives and registers the IKE SA that replaces sa (RFC 7296 2.18: the
// old SA's PRF and SK_d make SKEYSEED). weInitiated says whether we initiated the rekey,
// which makes us this IKE SA's (RFC 7296) initiator.
//
// gir is the shared secret of the CREATE_CHILD_SA's KE (SK(0)) and addKE those of the
// additional key exchanges that followed it (RFC 9370 2.2.4); both are cleared.
func (e *Engine) newRekeyedSA(sa *IKESA, suite ikecrypto.IKESuite, weInitiated bool, spiI, spiR uint64, ni, nr, gir []byte, addKE ...[]byte) (*IKESA, error) {
	ns := &IKESA{
		conn:          sa.conn,
		state:         stateEstablished,
		initiator:     weInitiated,
		origInitiator: sa.origInitiator,
		spiI:          spiI,
		spiR:          spiR,
		local:         sa.local,
		remote:        sa.remote,
		suite:         suite,
		ni:            ni,
		nr:            nr,
		natLocal:      sa.natLocal,
		natRemote:     sa.natRemote,
		localID:       sa.localID,
		remoteID:      sa.remoteID,
		mobike:        sa.mobike,
		authLocal:     sa.authLocal,
		authRemote:    sa.authRemote,
		fragment:      sa.fragment,
		peerRMobike:   sa.peerRMobike,
		peerRedirect:  sa.peerRedirect,
		created:       sa.created,
		estab:         sa.estab,
		lastRecv:      sa.lastRecv,
		// A new IKE SA starts its message IDs at 0 both ways (the zero window).
	}
	if e.testKeyInputs != nil {
		e.testKeyInputs(gir, addKE)
	}
	skeyseed := sa.prf.RekeySKEYSEED(sa.keys.SKd, gir, ni, nr, addKE...)
	clear(gir)
	wipeShared(addKE)
	prf, err := ikecrypto.NewPRF(suite.PRF)
	if err != nil {
		return nil, err
	}
	ns.prf = prf
	keys, err := ikecrypto.DeriveIKEKeys(prf, suite, skeyseed, ni, nr, spiI, spiR)
	clear(skeyseed)
	if err != nil {
		return nil, err
	}
	ns.keys = keys
	encI, err := ikecrypto.NewSKCipher(suite.Encr, int(suite.EncrKeyBits), suite.Integ, keys.SKei, keys.SKai)
	if err != nil {
		return nil, err
	}
	encR, err := ikecrypto.NewSKCipher(suite.Encr, int(suite.EncrKeyBits), suite.Integ, keys.SKer, keys.SKar)
	if err != nil {
		return nil, err
	}
	ns.skOut, ns.skIn = encR, encI
	if weInitiated {
		ns.skOut, ns.skIn = encI, encR
	}
	e.store.add(ns)
	e.store.indexPeer(ns)
	e.keylogIKE(ns)
	return ns, nil
}

// inherit moves everything that lives on the IKE SA from old to its replacement ns.
func (e *Engine) inherit(now time.Time, old, ns *IKESA) {
	ns.children = append(ns.children, old.children...)
	old.children = nil
	ns.lingering = append(ns.lingering, old.lingering...)
	old.lingering = nil
	ns.vips, ns.vipDNS, ns.pool = old.vips, old.vipDNS, old.pool
	old.vips, old.vipDNS, old.pool = nil, nil, nil
	for len(old.followups) > 0 {
		// Not expected (no IKE SA rekey while they run): the peer's series on old end.
		e.dropFollowup(old, old.followups[0])
	}
	for spi := range old.reserved {
		if ns.reserved == nil {
			ns.reserved = make(map[uint32]bool)
		}
		ns.reserved[spi] = true
	}
	old.reserved = nil
	// The path manager carries on with the new SA; checks that waited on the old one
	// are asked for again there.
	if old.pm != nil {
		ns.pm, old.pm = old.pm, nil
		e.applyPath(now, ns, ns.pm.Rekeyed(now), nil)
	}
	e.moveQueue(now, old, ns)
	old.rekeyedTo = ns
	old.rekeyAt = time.Time{}
	old.dpdAt = time.Time{}
	e.armIKERekey(ns, now)
	e.armDPD(ns, now)
	e.log.Info("IKE SA rekeyed", "old", old.id, "new", ns.id, "proposal", ns.suite.String())
	e.emit(Event{IKESA: ns.id, Conn: ns.conn.Name, Kind: EventRekeyed, Reason: "replaces IKE SA", Replaces: old.id})
	if old.state == stateDeleting {
		// A Delete of old waited for our rekey of it to end (RFC 7296 2.25.2 lets that
		// complete): the SA that carries on goes too.
		e.deleteIKESA(now, ns, "deleted")
	}
	e.schedule(ns)
}

// moveQueue hands the requests still waiting for old's window to ns, which carries on
// for it: a Child SA rekey, create or delete, an address announcement and a switch
// request would otherwise be dropped with old (its Child SA left rekeying for good,
// the announcement counted as sent). Their reply handlers take the SA they arrive on,
// and the Child SAs and reserved SPIs they name moved to ns already. What belongs to
// old stays: its liveness check, Delete and rekey, and the path manager's checks,
// whose NAT detection hashes old's SPIs (Rekeyed asks for them again on ns).
func (e *Engine) moveQueue(now time.Time, old, ns *IKESA) {
	kept := old.win.queue[:0]
	for _, r := range old.win.queue {
		//exhaustive:enforce
		switch r.kind {
		case reqRekeyChild, reqCreateChild, reqDeleteChild, reqNotify, reqSwitch:
			ns.win.queue = append(ns.win.queue, r)
		case reqInit, reqAuth, reqDPD, reqDelete, reqRekeyIKE, reqUpdate, reqCheck, reqOpaque:
			kept = append(kept, r)
		}
	}
	clear(old.win.queue[len(kept):])
	old.win.queue = kept
	e.startNext(now, ns)
}
