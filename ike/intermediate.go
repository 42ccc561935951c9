package ike

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"

	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/wire"
)

// IKE_INTERMEDIATE (RFC 9242) carrying the additional key exchanges of RFC 9370
// between IKE_SA_INIT and IKE_AUTH: one exchange per negotiated ADDKEn, in order, each
// protected with the keys of the previous step and followed by a key update
// (RFC 9370 2.2.2); IntAuth (RFC 9242 3.3.2) binds the exchanges into AUTH.

// intermediate is an IKE SA's state of its IKE_INTERMEDIATE exchanges.
type intermediate struct {
	// supported: both ends sent INTERMEDIATE_EXCHANGE_SUPPORTED in IKE_SA_INIT.
	supported bool
	// closed: IKE_AUTH has begun, no IKE_INTERMEDIATE may follow.
	closed bool
	// next is the index (0 for ADDKE1) from which the next additional key exchange is
	// looked for in the suite.
	next int
	// kex and req are the initiator's pending key exchange and request payloads.
	kex ikecrypto.KeyExchange
	req []wire.Payload
	// authI and authR are IntAuth_i and IntAuth_r so far; intAuth is IntAuth_i |
	// IntAuth_r | IKE_AUTH message ID, what AUTH covers after them (empty without).
	authI, authR, intAuth []byte
	// inner and innerNext are the plaintext inner payloads of the last protected
	// message opened before IKE_AUTH (the reassembled one when fragmented).
	inner     []byte
	innerNext wire.PayloadType
}

// noteInner keeps the plaintext of a message being opened while IKE_INTERMEDIATE
// exchanges may run: IntAuth covers it as received.
func (im *intermediate) noteInner(sa *IKESA, plain []byte, next wire.PayloadType) {
	if !im.supported || im.closed || sa.state == stateEstablished {
		return
	}
	im.inner, im.innerNext = plain, next
}

// pending reports whether an additional key exchange remains before IKE_AUTH.
func (sa *IKESA) addKEPending() bool {
	i, _ := sa.suite.NextAddKE(sa.im.next)
	return i >= 0
}

// intAuthStep returns prf(SK_p, prev | IntAuth_A | IntAuth_P) (RFC 9242 3.3.2): A is
// the IKE header and the Encrypted payload's header as if the message were sent
// whole (Next Payload SK, not SKF) with lengths that count the plaintext P only.
func (sa *IKESA) intAuthStep(prev, skp []byte, h wire.Header, inner []byte, innerNext wire.PayloadType) []byte {
	a := wire.AppendSKHeader(nil, h, innerNext, len(inner))
	return sa.prf.Compute(skp, prev, a, inner)
}

// stepDone records IntAuth_i and IntAuth_r of the exchange with message ID msgID:
// IKE_AUTH comes next, with msgID+1.
func (im *intermediate) stepDone(authI, authR []byte, msgID uint32) {
	im.authI, im.authR = authI, authR
	im.intAuth = binary.BigEndian.AppendUint32(append(append([]byte(nil), authI...), authR...), msgID+1)
}

// updateKeys derives the IKE SA's keys anew after an additional key exchange with
// shared secret shared (RFC 9370 2.2.2): SKEYSEED(n) = prf(SK_d(n-1), SK(n) | Ni | Nr),
// and the SK_* from prf+(SKEYSEED(n), Ni | Nr | SPIi | SPIr).
func (e *Engine) updateKeys(sa *IKESA, shared []byte) error {
	defer clear(shared)
	if e.testSkipKeyUpdate {
		return nil
	}
	old := sa.keys
	if err := sa.installKeys(sa.prf.RekeySKEYSEED(old.SKd, shared, sa.ni, sa.nr)); err != nil {
		return err
	}
	old.Zero()
	return nil
}

// afterInit follows a completed IKE_SA_INIT as the initiator: the additional key
// exchanges, or IKE_AUTH. It reports false when the SA failed.
func (e *Engine) afterInit(now time.Time, sa *IKESA, m *wire.Message) bool {
	sa.im.supported = sa.im.supported && wire.FindNotify(m.Payloads, wire.INTERMEDIATE_EXCHANGE_SUPPORTED) != nil
	if sa.addKEPending() && !sa.im.supported {
		// RFC 9370 2.2.1: a responder choosing ADDKE transforms supports IKE_INTERMEDIATE.
		e.failInit(now, sa, "peer chose additional key exchanges without INTERMEDIATE_EXCHANGE_SUPPORTED")
		return false
	}
	if err := e.nextAfterInit(now, sa); err != nil {
		e.failInit(now, sa, err.Error())
		return false
	}
	return true
}

// nextAfterInit starts the next IKE_INTERMEDIATE exchange with the initiator's KE
// payload of the next additional key exchange, or IKE_AUTH when none is left.
func (e *Engine) nextAfterInit(now time.Time, sa *IKESA) error {
	idx, group := sa.suite.NextAddKE(sa.im.next)
	if idx < 0 {
		sa.im.closed = true
		return e.sendAuth(now, sa)
	}
	kex, err := ikecrypto.NewKeyExchange(group, e.rand)
	if err != nil {
		return err
	}
	sa.im.kex = kex
	sa.im.req = []wire.Payload{&wire.KE{Group: group, Data: kex.PublicKey()}}
	sa.state = stateAuthSent
	e.queueRequest(now, sa, &request{
		exchange: wire.IKE_INTERMEDIATE,
		payloads: sa.im.req,
		kind:     reqAuth,
		onReply:  (*Engine).handleIntermediateResponse,
	})
	return nil
}

// handleIntermediateResponse is the initiator's processing of the IKE_INTERMEDIATE
// response: the responder's KE (an ML-KEM ciphertext, or its DH value), IntAuth with
// the keys that protected the exchange, then the key update.
func (e *Engine) handleIntermediateResponse(now time.Time, sa *IKESA, m *wire.Message) {
	im := &sa.im
	for _, p := range m.Payloads {
		if n, ok := p.(*wire.Notify); ok && n.NotifyType.IsError() {
			e.failInit(now, sa, "IKE_INTERMEDIATE: "+n.NotifyType.String())
			return
		}
	}
	idx, group := sa.suite.NextAddKE(im.next)
	ke := wire.Find[*wire.KE](m.Payloads)
	if idx < 0 || im.kex == nil || ke == nil || ke.Group != group {
		e.failInit(now, sa, "IKE_INTERMEDIATE response without the KE payload of the additional key exchange")
		return
	}
	shared, err := im.kex.SharedSecret(ke.Data)
	if err != nil {
		e.failInit(now, sa, "invalid KE payload in IKE_INTERMEDIATE: "+err.Error())
		return
	}
	inner, next := encodeInner(im.req)
	authI := sa.intAuthStep(im.authI, sa.keys.SKpi, sa.header(wire.IKE_INTERMEDIATE, m.Header.MessageID, false), inner, next)
	authR := sa.intAuthStep(im.authR, sa.keys.SKpr, m.Header, im.inner, im.innerNext)
	im.stepDone(authI, authR, m.Header.MessageID)
	im.kex, im.req, im.next = nil, nil, idx+1
	if err := e.updateKeys(sa, shared); err != nil {
		e.failInit(now, sa, err.Error())
		return
	}
	e.log.Debug("additional key exchange done", "sa", sa.id, "method", ikecrypto.MethodName(group))
	if err := e.nextAfterInit(now, sa); err != nil {
		e.failInit(now, sa, err.Error())
	}
}

// handleIntermediateRequest is the responder's IKE_INTERMEDIATE: the initiator's KE
// payload of the next additional key exchange answered with ours (an ML-KEM
// ciphertext), IntAuth, then the key update. A KE payload that is missing, of another
// method or invalid is answered with INVALID_SYNTAX, which ends the SA (RFC 9370
// 2.2.2, draft-ietf-ipsecme-ikev2-mlkem 2.2). Without a pending additional key
// exchange the answer is empty (RFC 9242 allows IKE_INTERMEDIATE for other uses).
func (e *Engine) handleIntermediateRequest(now time.Time, sa *IKESA, local, remote netip.AddrPort, h *wire.Header, m *wire.Message) {
	im := &sa.im
	if sa.initiator || sa.state != stateInitDone || !im.supported || im.closed {
		e.drop(&e.drops.Unexpected, "IKE_INTERMEDIATE in wrong state", remote, nil)
		return
	}
	authI := sa.intAuthStep(im.authI, sa.keys.SKpi, *h, im.inner, im.innerNext)
	var out []wire.Payload
	var shared []byte
	idx, group := sa.suite.NextAddKE(im.next)
	if idx >= 0 {
		ke := wire.Find[*wire.KE](m.Payloads)
		var ct []byte
		var err error
		if ke == nil || ke.Group != group {
			err = errors.New("no KE payload of the negotiated method")
		} else {
			ct, shared, err = ikecrypto.RespondKeyExchange(group, ke.Data, e.rand)
		}
		if err != nil {
			e.log.Info("invalid IKE_INTERMEDIATE from peer", "sa", sa.id, "peer", remote, "err", err)
			e.respond(now, sa, local, remote, h, []wire.Payload{&wire.Notify{NotifyType: wire.INVALID_SYNTAX}})
			e.removeSA(now, sa, "INVALID_SYNTAX: invalid additional key exchange")
			return
		}
		out = []wire.Payload{&wire.KE{Group: group, Data: ct}}
	}
	e.respond(now, sa, local, remote, h, out)
	inner, next := encodeInner(out)
	authR := sa.intAuthStep(im.authR, sa.keys.SKpr, sa.header(h.Exchange, h.MessageID, true), inner, next)
	im.stepDone(authI, authR, h.MessageID)
	if idx < 0 {
		return
	}
	im.next = idx + 1
	if err := e.updateKeys(sa, shared); err != nil {
		e.log.Error("key derivation", "err", err)
		e.removeSA(now, sa, err.Error())
	}
}
