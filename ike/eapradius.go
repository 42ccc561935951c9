package ike

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mobikevpn/mobikevpn/eap"
	"github.com/mobikevpn/mobikevpn/wire"
)

// EAP-RADIUS: the gateway passes the peer's EAP packets to RADIUS servers (RFC 3579)
// and theirs back. The engine asks its driver with AAARequest and answers the
// IKE_AUTH request that carried the packet when AAAAnswered brings the answer;
// retransmissions of that request meanwhile are dropped (the RADIUS client retries on
// its own). The EAP-Identity exchange comes first and is the gateway's own, so that
// RADIUS gets the identity as User-Name.

// AAARequest asks the driver to send EAP, an EAP packet of the peer whose EAP
// identity is Identity, to the RADIUS servers in an Access-Request (with State, that
// of the last Access-Challenge), and to hand the answer to Engine.AAAAnswered with
// IKESA and Seq.
type AAARequest struct {
	IKESA    uint64
	Seq      uint64
	Identity string
	EAP      []byte
	State    []byte
	Peer     netip.AddrPort // the client (Calling-Station-Id)
	Local    netip.AddrPort // the address it reached (Called-Station-Id)
}

func (AAARequest) action() {}

// AAACode is the kind of a RADIUS answer.
type AAACode int

// RADIUS answers (RFC 2865).
const (
	AAAAccept AAACode = iota + 1
	AAAReject
	AAAChallenge
)

// AAAAnswer is the RADIUS servers' answer to an AAARequest: Err when none answered.
type AAAAnswer struct {
	Code  AAACode
	EAP   []byte // the EAP packet for the peer
	State []byte
	MSK   []byte // on Accept: from MS-MPPE-Recv-Key and -Send-Key
	Err   error
}

// radiusForward passes the peer's EAP packet pkt to the RADIUS servers, answering the
// IKE_AUTH request with header h when they answer.
func (e *Engine) radiusForward(sa *IKESA, local, remote netip.AddrPort, h *wire.Header, pkt []byte) {
	st := sa.eap
	if st.aaaWaiting {
		e.drop(&e.drops.Unexpected, "IKE_AUTH request while its EAP packet is with the RADIUS servers", remote, nil)
		return
	}
	if st.identity == "" {
		p, err := eap.Parse(pkt)
		if err != nil || p.Code != eap.CodeResponse || p.ID != st.eapID || p.Type != eap.TypeIdentity || len(p.Data) == 0 || len(p.Data) > 253 {
			e.drop(&e.drops.Malformed, "EAP packet is not the answer to our EAP-Identity request", remote, err)
			return
		}
		st.identity = string(p.Data)
	}
	st.aaaSeq++
	st.aaaWaiting = true
	st.aaaHeader, st.aaaLocal, st.aaaRemote = *h, local, remote
	e.emit(AAARequest{IKESA: sa.id, Seq: st.aaaSeq, Identity: st.identity, EAP: append([]byte(nil), pkt...),
		State: st.radiusState, Peer: remote, Local: local})
}

// AAAAnswered hands the engine the RADIUS servers' answer to AAARequest seq of IKE SA
// id: the peer gets the EAP packet in its IKE_AUTH response; an Access-Accept ends EAP
// (the peer's AUTH comes next), an Access-Reject or no answer at all refuses the peer.
func (e *Engine) AAAAnswered(now time.Time, id, seq uint64, ans AAAAnswer) []Action {
	sa := e.store.get(id)
	if sa == nil || sa.eap == nil || !sa.eap.aaaWaiting || sa.eap.aaaSeq != seq || sa.state != stateInitDone {
		return e.take()
	}
	st := sa.eap
	st.aaaWaiting = false
	st.now = now
	h, local, remote := st.aaaHeader, st.aaaLocal, st.aaaRemote
	if ans.Err != nil {
		e.log.Warn("EAP-RADIUS: no RADIUS server answered; the client is refused", "sa", sa.id, "peer", remote, "eap_id", st.identity, "err", ans.Err)
		e.eapFailed(now, sa, local, remote, &h, eap.Packet{Code: eap.CodeFailure, ID: e.eapFailureID()}.Marshal())
		return e.take()
	}
	if err := checkRadiusEAP(ans); err != nil {
		e.log.Warn("EAP-RADIUS: unusable answer; the client is refused", "sa", sa.id, "peer", remote, "eap_id", st.identity, "err", err)
		e.eapFailed(now, sa, local, remote, &h, nil)
		return e.take()
	}
	switch ans.Code {
	case AAAChallenge:
		st.radiusState = append([]byte(nil), ans.State...)
		e.respond(now, sa, local, remote, &h, []wire.Payload{&wire.EAP{Data: ans.EAP}})
	case AAAAccept:
		st.succeeded = true
		st.msk = append([]byte(nil), ans.MSK...)
		if len(st.msk) == 0 {
			e.log.Warn("EAP-RADIUS: Access-Accept without MS-MPPE keys: AUTH uses SK_pi/SK_pr", "sa", sa.id, "eap_id", st.identity)
		}
		e.log.Info("EAP-RADIUS: accepted", "sa", sa.id, "peer", remote, "eap_id", st.identity)
		e.respond(now, sa, local, remote, &h, []wire.Payload{&wire.EAP{Data: ans.EAP}})
	default:
		e.log.Info("EAP-RADIUS: rejected", "sa", sa.id, "peer", remote, "eap_id", st.identity)
		e.eapFailed(now, sa, local, remote, &h, ans.EAP)
	}
	e.schedule(sa)
	return e.take()
}

// eapFailureID is the identifier of an EAP-Failure we make up ourselves.
func (e *Engine) eapFailureID() uint8 {
	var b [1]byte
	_, _ = e.rand.Read(b[:])
	return b[0]
}

// checkRadiusEAP checks that an answer carries the EAP packet its code needs: a
// Request with a Challenge, a Success with an Accept, a Failure (or nothing) with a
// Reject.
func checkRadiusEAP(ans AAAAnswer) error {
	if ans.Code == AAAReject && len(ans.EAP) == 0 {
		return nil
	}
	p, err := eap.Parse(ans.EAP)
	if err != nil {
		return fmt.Errorf("its EAP-Message: %w", err)
	}
	want := map[AAACode]eap.Code{AAAChallenge: eap.CodeRequest, AAAAccept: eap.CodeSuccess, AAAReject: eap.CodeFailure}[ans.Code]
	if want == 0 {
		return errors.New("unknown RADIUS answer")
	}
	if p.Code != want {
		return fmt.Errorf("EAP %s in a RADIUS answer that needs EAP %s", p.Code, want)
	}
	return nil
}
