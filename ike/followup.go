package ike

import (
	"crypto/subtle"
	"errors"
	"io"
	"net/netip"
	"slices"
	"time"

	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/wire"
)

// IKE_FOLLOWUP_KE (RFC 9370 2.2.4): the additional key exchanges of a CREATE_CHILD_SA
// that creates or rekeys a Child SA, or rekeys the IKE SA. The CREATE_CHILD_SA carries
// the KE of Transform Type 4, SK(0); then one IKE_FOLLOWUP_KE exchange per negotiated
// ADDKEn, in order, each with KEi/KEr and, in the request, the responder's link data
// (N(ADDITIONAL_KEY_EXCHANGE), copied from its last response). Every exchange runs on
// the IKE SA the CREATE_CHILD_SA ran on (for an IKE SA rekey: the old one). Only then
// is the SA created, its keys from
//
//	KEYMAT   = prf+(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n))   (Child SA)
//	SKEYSEED = prf(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n))    (IKE SA)
//
// with SK_d of the IKE SA the exchanges ran on and the nonces of the CREATE_CHILD_SA.
// A responder that no longer knows the link answers STATE_NOT_FOUND, which fails the
// series at the initiator (a rekey is retried as other failures are); a KE value that
// fails its check (a bad ML-KEM encapsulation key) is answered NO_PROPOSAL_CHOSEN, which
// fails the series only (as strongSwan 6 does); a request without the KE payload of
// the method is malformed: INVALID_SYNTAX, fatal (RFC 7296 2.21.3).

const (
	// followupTimeout is how long a responder waits for the next IKE_FOLLOWUP_KE of a
	// series before it forgets it (RFC 9370 2.2.4: 5 to 20 seconds).
	followupTimeout = 20 * time.Second
	// maxFollowups bounds the series the peer may have waiting on one IKE SA.
	maxFollowups = 4
	// maxStateNotFound is how many series in a row may end in STATE_NOT_FOUND before
	// the IKE SA is deleted (RFC 9370 2.2.4: "after several attempts").
	maxStateNotFound = 3
	// linkLen is the length of our link data (opaque to the peer).
	linkLen = 8
)

// addKEInit is our series of additional key exchanges as initiator, after the
// CREATE_CHILD_SA response (at most one per IKE SA: the next exchange is sent before
// anything else queued).
type addKEInit struct {
	kind    requestKind // the CREATE_CHILD_SA's
	methods [7]uint16   // the negotiated ADDKE1..7
	next    int         // the index from which the next one is looked for
	shared  [][]byte    // SK(1), SK(2), ... so far
	kex     ikecrypto.KeyExchange
	// child is the Child SA being rekeyed (nil: an additional one or the IKE SA).
	child *ChildSA
	// done gets SK(1)...SK(n) (it clears them); fail the reason and the error notify
	// of the peer, if any. Neither runs when the IKE SA goes meanwhile.
	done func(e *Engine, now time.Time, sa *IKESA, shared [][]byte)
	fail func(e *Engine, now time.Time, sa *IKESA, reason string, n wire.NotifyType)
}

// followup is a series of additional key exchanges the peer runs with us, waiting
// for its next IKE_FOLLOWUP_KE.
type followup struct {
	link    []byte
	methods [7]uint16
	next    int
	gir     []byte   // SK(0), of the CREATE_CHILD_SA
	shared  [][]byte // SK(1), ... so far
	ni, nr  []byte
	expires time.Time
	// A Child SA: child is it, negotiated and not installed (its inbound SPI reserved
	// on the IKE SA), old the one it rekeys (nil: an additional one).
	child, old *ChildSA
	// An IKE SA rekey: the new SA's suite and SPIs (ours reserved in the store).
	ike        bool
	suite      ikecrypto.IKESuite
	spiI, spiR uint64
}

func (f *followup) wipe() {
	clear(f.gir)
	for _, s := range f.shared {
		clear(s)
	}
	f.gir, f.shared = nil, nil
}

func wipeShared(shared [][]byte) {
	for _, s := range shared {
		clear(s)
	}
}

// hasAddKE reports whether a suite negotiated additional key exchanges.
func hasAddKE(methods [7]uint16) bool { return methods != [7]uint16{} }

func nextMethod(methods *[7]uint16, from int) (int, uint16) {
	return ikecrypto.ESPSuite{AddKE: *methods}.NextAddKE(from)
}

// queueFirst puts r before every request waiting for sa's window and sends it when the
// window is free: the next exchange of a series goes before anything queued meanwhile.
func (e *Engine) queueFirst(now time.Time, sa *IKESA, r *request) {
	sa.win.queue = append([]*request{r}, sa.win.queue...)
	e.startNext(now, sa)
	e.schedule(sa)
}

// startAddKE begins our series ai after the CREATE_CHILD_SA response m.
func (e *Engine) startAddKE(now time.Time, sa *IKESA, ai *addKEInit, m *wire.Message) {
	sa.addKE = ai
	e.nextAddKEExchange(now, sa, m)
}

// nextAddKEExchange sends the IKE_FOLLOWUP_KE request of the next additional key
// exchange of our series, with the link data of the response m, or ends the series
// when none is left.
func (e *Engine) nextAddKEExchange(now time.Time, sa *IKESA, m *wire.Message) {
	ai := sa.addKE
	idx, method := nextMethod(&ai.methods, ai.next)
	if idx < 0 {
		sa.addKE = nil
		sa.stateNotFound = 0
		if ai.kind == reqRekeyIKE {
			sa.rekeying = nil
		}
		ai.done(e, now, sa, ai.shared)
		return
	}
	if sa.state != stateEstablished {
		e.failAddKE(now, sa, "the IKE SA is being deleted", 0)
		return
	}
	n := wire.FindNotify(m.Payloads, wire.ADDITIONAL_KEY_EXCHANGE)
	if n == nil || len(n.Data) == 0 {
		e.failAddKE(now, sa, "the response has no ADDITIONAL_KEY_EXCHANGE link for the next key exchange", 0)
		return
	}
	kex, err := ikecrypto.NewKeyExchange(method, e.rand)
	if err != nil {
		e.failAddKE(now, sa, err.Error(), 0)
		return
	}
	ai.kex = kex
	r := &request{
		exchange: wire.IKE_FOLLOWUP_KE,
		payloads: []wire.Payload{
			&wire.KE{Group: method, Data: kex.PublicKey()},
			&wire.Notify{NotifyType: wire.ADDITIONAL_KEY_EXCHANGE, Data: slices.Clone(n.Data)},
		},
		kind:    ai.kind,
		onReply: (*Engine).handleAddKEResponse,
	}
	if ai.kind == reqRekeyIKE {
		sa.rekeying = r // the IKE SA rekey is under way until the series ends
	}
	e.queueFirst(now, sa, r)
}

// handleAddKEResponse takes the responder's KE of an IKE_FOLLOWUP_KE exchange.
func (e *Engine) handleAddKEResponse(now time.Time, sa *IKESA, m *wire.Message) {
	ai := sa.addKE
	if ai == nil {
		return
	}
	if n := errorNotify(m.Payloads); n != nil {
		if n.NotifyType == wire.STATE_NOT_FOUND {
			sa.stateNotFound++
		}
		e.failAddKE(now, sa, "IKE_FOLLOWUP_KE: "+n.NotifyType.String(), n.NotifyType)
		return
	}
	idx, method := nextMethod(&ai.methods, ai.next)
	ke := wire.Find[*wire.KE](m.Payloads)
	if idx < 0 || ai.kex == nil || ke == nil || ke.Group != method {
		e.failAddKE(now, sa, "IKE_FOLLOWUP_KE response without the KE payload of the additional key exchange", 0)
		return
	}
	shared, err := ai.kex.SharedSecret(ke.Data)
	if err != nil {
		e.failAddKE(now, sa, "invalid KE payload in IKE_FOLLOWUP_KE: "+err.Error(), 0)
		return
	}
	ai.shared = append(ai.shared, shared)
	ai.kex, ai.next = nil, idx+1
	e.log.Debug("additional key exchange done", "sa", sa.id, "method", ikecrypto.MethodName(method))
	e.nextAddKEExchange(now, sa, m)
}

// failAddKE ends our series unfinished; after maxStateNotFound series in a row that
// the peer no longer knew, the IKE SA goes (RFC 9370 2.2.4).
func (e *Engine) failAddKE(now time.Time, sa *IKESA, reason string, n wire.NotifyType) {
	ai := sa.addKE
	if ai == nil {
		return
	}
	sa.addKE = nil
	wipeShared(ai.shared)
	ai.shared, ai.kex = nil, nil
	if ai.kind == reqRekeyIKE {
		sa.rekeying = nil
	}
	ai.fail(e, now, sa, reason, n)
	if sa.stateNotFound >= maxStateNotFound && e.store.live(sa) {
		e.log.Warn("the peer lost our additional key exchanges again and again (STATE_NOT_FOUND): deleting the IKE SA", "sa", sa.id)
		sa.stateNotFound = 0
		e.deleteIKESA(now, sa, "STATE_NOT_FOUND: additional key exchanges keep failing")
	}
}

// openFollowup registers f, a series the peer starts with the CREATE_CHILD_SA we
// answer now, and returns its link data; it fails when the peer has too many.
func (e *Engine) openFollowup(now time.Time, sa *IKESA, f *followup) ([]byte, error) {
	if len(sa.followups) >= maxFollowups {
		return nil, errors.New("too many additional key exchanges waiting")
	}
	link, err := e.newLink(sa)
	if err != nil {
		return nil, err
	}
	f.link, f.expires = link, now.Add(followupTimeout)
	sa.followups = append(sa.followups, f)
	return link, nil
}

// newLink draws link data that no series of sa has.
func (e *Engine) newLink(sa *IKESA) ([]byte, error) {
	for {
		b := make([]byte, linkLen)
		if _, err := io.ReadFull(e.rand, b); err != nil {
			return nil, err
		}
		if sa.followupByLink(b) == nil {
			return b, nil
		}
	}
}

func (sa *IKESA) followupByLink(link []byte) *followup {
	for _, f := range sa.followups {
		if len(f.link) == len(link) && subtle.ConstantTimeCompare(f.link, link) == 1 {
			return f
		}
	}
	return nil
}

// followupFor returns the peer's series that rekeys Child SA c, if any.
func (sa *IKESA) followupFor(c *ChildSA) *followup {
	for _, f := range sa.followups {
		if f.old == c {
			return f
		}
	}
	return nil
}

// ikeFollowup returns the peer's series that rekeys the IKE SA, if any.
func (sa *IKESA) ikeFollowup() *followup {
	for _, f := range sa.followups {
		if f.ike {
			return f
		}
	}
	return nil
}

// dropFollowup forgets the peer's series f: its reserved SPI goes, its secrets are
// cleared.
func (e *Engine) dropFollowup(sa *IKESA, f *followup) {
	sa.followups = slices.DeleteFunc(sa.followups, func(x *followup) bool { return x == f })
	f.wipe()
	if f.ike {
		e.store.releaseSPI(f.spiR, sa)
	} else if f.child != nil {
		e.releaseSPI(sa, f.child.spiIn)
	}
}

// dropFollowups forgets every series the peer runs on sa, and ours.
func (e *Engine) dropFollowups(sa *IKESA) {
	for len(sa.followups) > 0 {
		e.dropFollowup(sa, sa.followups[0])
	}
	if ai := sa.addKE; ai != nil {
		sa.addKE = nil
		wipeShared(ai.shared)
	}
}

// expireFollowups forgets the series whose next IKE_FOLLOWUP_KE did not come in time.
func (e *Engine) expireFollowups(now time.Time, sa *IKESA) {
	for _, f := range slices.Clone(sa.followups) {
		if !f.expires.After(now) {
			e.log.Info("the peer's additional key exchanges did not go on in time: forgotten", "sa", sa.id)
			e.dropFollowup(sa, f)
		}
	}
}

// handleFollowupRequest answers the peer's IKE_FOLLOWUP_KE: the next additional key
// exchange of the series its link names, answered with our KE (an ML-KEM ciphertext, or
// a DH value) and the link for the next one; after the last the SA is created.
func (e *Engine) handleFollowupRequest(now time.Time, sa *IKESA, local, remote netip.AddrPort, h *wire.Header, m *wire.Message) {
	reply := func(ps ...wire.Payload) { e.respond(now, sa, local, remote, h, ps) }
	var f *followup
	if n := wire.FindNotify(m.Payloads, wire.ADDITIONAL_KEY_EXCHANGE); n != nil {
		f = sa.followupByLink(n.Data)
	}
	if f == nil || sa.state != stateEstablished || !f.expires.After(now) {
		// Unknown or stale link (RFC 9370 2.2.4): not fatal to the IKE SA.
		e.log.Info("IKE_FOLLOWUP_KE for no additional key exchange we know: STATE_NOT_FOUND", "sa", sa.id, "peer", remote)
		if f != nil {
			e.dropFollowup(sa, f)
		}
		reply(&wire.Notify{NotifyType: wire.STATE_NOT_FOUND})
		return
	}
	idx, method := nextMethod(&f.methods, f.next)
	ke := wire.Find[*wire.KE](m.Payloads)
	var ct, shared []byte
	err := errors.New("no KE payload of the negotiated method")
	if idx >= 0 && ke != nil && ke.Group == method {
		ct, shared, err = ikecrypto.RespondKeyExchange(method, ke.Data, e.rand)
	}
	if err != nil {
		e.dropFollowup(sa, f)
		e.log.Info("invalid IKE_FOLLOWUP_KE from peer", "sa", sa.id, "peer", remote, "err", err)
		if ke != nil && ke.Group == method {
			// Our failure, or a KE value that fails its check (an ML-KEM encapsulation
			// key that is not FIPS 203's): the series fails, the IKE SA and the Child SA
			// being rekeyed stay, as strongSwan 6 answers it (ml_kem set_public_key).
			reply(&wire.Notify{NotifyType: wire.NO_PROPOSAL_CHOSEN})
			return
		}
		reply(&wire.Notify{NotifyType: wire.INVALID_SYNTAX}) // malformed: fatal (RFC 7296 2.21.3)
		return
	}
	f.shared = append(f.shared, shared)
	f.next = idx + 1
	out := []wire.Payload{&wire.KE{Group: method, Data: ct}}
	if i, _ := nextMethod(&f.methods, f.next); i >= 0 {
		link, err := e.newLink(sa)
		if err != nil {
			e.dropFollowup(sa, f)
			reply(&wire.Notify{NotifyType: wire.TEMPORARY_FAILURE})
			return
		}
		f.link, f.expires = link, now.Add(followupTimeout)
		reply(append(out, &wire.Notify{NotifyType: wire.ADDITIONAL_KEY_EXCHANGE, Data: link})...)
		return
	}
	reply(out...)
	sa.followups = slices.DeleteFunc(sa.followups, func(x *followup) bool { return x == f })
	if f.ike {
		e.store.releaseSPI(f.spiR, sa)
		e.followupIKEDone(now, sa, f)
		return
	}
	e.releaseSPI(sa, f.child.spiIn)
	e.followupChildDone(now, sa, f)
}

// rekeyCollidedAddKE decides a collision of our rekey of c (n: what our CREATE_CHILD_SA
// negotiated, gir its SK(0)) with the peer's rekey of c when either runs additional key
// exchanges (RFC 9370 2.2.4): the SAs exist only once those are done, so the initiator
// of the exchange with the lowest nonce just stops, without IKE_FOLLOWUP_KE. It reports
// whether ours ended here (its SPI released, gir cleared); when the peer's series
// loses, it is forgotten (the peer sends no more of it).
func (e *Engine) rekeyCollidedAddKE(now time.Time, sa *IKESA, c, n *ChildSA, cr *childRequest, gir []byte) bool {
	f := sa.followupFor(c)
	b := c.collision
	installed := b != nil && sa.childBySPIIn(b.spiIn) == b
	if f == nil && (!installed || !hasAddKE(n.suite.AddKE)) {
		return false // none, or one without additional key exchanges (rekeyChildInstall)
	}
	var theirs [2][]byte
	if f != nil {
		theirs = [2][]byte{f.ni, f.nr}
	} else {
		theirs = [2][]byte{b.ni, b.nr}
	}
	if !lowestNonce([2][]byte{n.ni, n.nr}, theirs) {
		if f != nil {
			e.log.Info("rekey collision: the peer's has the lowest nonce, it stops its additional key exchanges", "sa", sa.id, "child", c.cfg.Name)
			e.dropFollowup(sa, f)
		}
		return false
	}
	e.log.Info("rekey collision: ours has the lowest nonce, the peer's rekey carries on", "sa", sa.id, "child", c.cfg.Name)
	stillOurs := sa.childBySPIIn(c.spiIn) == c && c.state == childRekeying
	e.releaseSPI(sa, cr.spi)
	if !hasAddKE(n.suite.AddKE) {
		// The peer made n already: install it to close it.
		keys, err := e.childKeymat(sa, n, gir, nil)
		if err == nil {
			e.installChild(now, sa, n, keys, true, true)
			n.activateAt = time.Time{}
			n.outKeys.wipe()
			e.deleteChild(now, sa, n)
		}
	}
	clear(gir)
	switch {
	case !stillOurs:
	case installed:
		c.state, c.successor = childRekeyed, b
	default:
		// The peer's series makes c's successor; should it never end, we try again.
		c.state = childInstalled
		c.rekeyAt = now.Add(retryDelay)
	}
	return true
}
