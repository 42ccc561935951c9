package ike

import (
	"bytes"
	"fmt"
	"net/netip"
	"time"

	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/eap"
	"github.com/mobikevpn/mobikevpn/wire"
)

// EAP in IKE_AUTH (RFC 7296 2.16), both roles. The initiator leaves AUTH out of its
// first IKE_AUTH request; the responder answers with its identity, certificate and
// AUTH (it proves itself first) and the first EAP request. EAP packets then go back
// and forth, one per IKE_AUTH exchange, until EAP-Success; each side then sends AUTH
// computed like a pre-shared key's with the method's MSK as the key (SK_pi/SK_pr
// for a method without one), over the same octets as its first AUTH would have covered.
// The responder keeps the first request's payloads (Child SA, CP, MOBIKE) for its
// last answer, which completes IKE_AUTH as without EAP.
//
// The responder runs the method itself (eap.Server: EAP-MSCHAPv2 with the users of
// the eap secrets, EAP-TLS against the connection's CAs), or passes every EAP packet
// to RADIUS servers (EAP-RADIUS): the engine does no I/O, so it asks the driver with
// the AAARequest action and goes on when Engine.AAAAnswered brings the answer. The
// SA stays half-open until the last AUTH: a conversation that stalls ends with the
// half-open timeout, which frees its state.

// eapState is an IKE SA's EAP conversation while IKE_AUTH is under way.
type eapState struct {
	// Initiator.
	peer             *eap.Peer
	responderChecked bool // the responder's IDr and AUTH verified (first response)
	authSent         bool // EAP succeeded, our AUTH sent

	// Responder.
	server    *eap.Server
	radius    bool // EAP-RADIUS: the packets go to RADIUS servers
	idi       wire.ID
	firstReq  []wire.Payload // the first IKE_AUTH request's payloads
	identity  string         // the peer's EAP identity
	succeeded bool           // EAP-Success sent: the peer's AUTH comes next
	// radiusState is the State of RADIUS's last Access-Challenge; aaaSeq numbers our
	// requests to RADIUS so that a stale answer is ignored; aaaWaiting says one is
	// out, for the IKE_AUTH request answered when it comes back (aaaHeader, aaaLocal,
	// aaaRemote).
	radiusState         []byte
	eapID               uint8 // the identifier of our EAP-Identity request (RADIUS)
	aaaSeq              uint64
	aaaWaiting          bool
	aaaHeader           wire.Header
	aaaLocal, aaaRemote netip.AddrPort

	msk []byte
	// now is the time of the packet being processed (EAP-TLS's clock).
	now time.Time
}

// endEAP frees the EAP conversation: methods closed, the MSK overwritten.
func (sa *IKESA) endEAP() {
	st := sa.eap
	if st == nil {
		return
	}
	if st.peer != nil {
		st.peer.Close()
	}
	if st.server != nil {
		st.server.Close()
	}
	clear(st.msk)
	sa.eap = nil
}

// eapKey is the key of the AUTH that ends EAP: the MSK, or SK_p of the side when the
// method derived none.
func eapKey(msk, skp []byte) []byte {
	if len(msk) > 0 {
		return msk
	}
	return skp
}

// startEAPPeer sets up the initiator's side of the conversation its IKE_AUTH request
// starts.
func (e *Engine) startEAPPeer(sa *IKESA) error {
	conn := sa.conn
	id := conn.EAPID
	if id == "" {
		id = sa.localID.String()
	}
	st := &eapState{}
	var m eap.PeerMethod
	switch conn.LocalAuth {
	case AuthEAPMSCHAPv2:
		var pw []byte
		var ok bool
		if e.cfg.EAPSecret != nil {
			pw, ok = e.cfg.EAPSecret(id)
		}
		if !ok {
			return fmt.Errorf("no EAP secret for %s", id)
		}
		m = eap.NewMSCHAPv2Peer(id, bytes.Clone(pw), e.rand)
	case AuthEAPTLS:
		m = eap.NewTLSPeer(e.eapTLSConfig(sa, false))
	default:
		return fmt.Errorf("local authentication %q is not an EAP method we run as a client", conn.LocalAuth)
	}
	st.peer = eap.NewPeer(id, m)
	sa.eap = st
	return nil
}

// eapAuthResponse is the initiator's processing of an IKE_AUTH response while EAP runs.
func (e *Engine) eapAuthResponse(now time.Time, sa *IKESA, m *wire.Message) {
	st := sa.eap
	st.now = now
	if st.authSent {
		auth := wire.Find[*wire.Auth](m.Payloads)
		if auth == nil {
			e.failInit(now, sa, "the last IKE_AUTH response after EAP has no AUTH")
			return
		}
		signed := sa.signedOctets(sa.initResp, sa.ni, sa.keys.SKpr, &sa.remoteID)
		if auth.Method != wire.AuthSharedKey || !ikecrypto.AuthEqual(ikecrypto.PSKAuth(sa.prf, eapKey(st.msk, sa.keys.SKpr), signed), auth.Data) {
			e.log.Info("the gateway's AUTH with the EAP key does not verify", "sa", sa.id, "id", sa.remoteID.String())
			e.initiatorAuthFailed(now, sa)
			return
		}
		e.authEstablished(now, sa, m)
		return
	}
	if !st.responderChecked {
		if !e.eapCheckResponder(now, sa, m) {
			return
		}
		if r := wire.FindNotify(m.Payloads, wire.REDIRECT); r != nil {
			sa.endEAP()
			e.followAuthRedirect(now, sa, r)
			return
		}
	}
	p := wire.Find[*wire.EAP](m.Payloads)
	if p == nil {
		e.failInit(now, sa, "IKE_AUTH response without an EAP payload while EAP runs")
		return
	}
	resp, status, err := st.peer.Handle(p.Data)
	if err != nil {
		// The gateway (or its TLS certificate, or its MSCHAPv2 answer) failed our
		// checks, or it broke the method: we give up, and say so.
		e.initiatorGivesUp(now, sa, "EAP: "+err.Error())
		return
	}
	var out []wire.Payload
	switch status {
	case eap.StatusContinue:
		out = []wire.Payload{&wire.EAP{Data: resp}}
	case eap.StatusSuccess:
		st.authSent = true
		st.msk = bytes.Clone(st.peer.MSK())
		signed := sa.signedOctets(sa.initReq, sa.nr, sa.keys.SKpi, &sa.localID)
		out = []wire.Payload{&wire.Auth{Method: wire.AuthSharedKey, Data: ikecrypto.PSKAuth(sa.prf, eapKey(st.msk, sa.keys.SKpi), signed)}}
		e.log.Info("EAP succeeded", "sa", sa.id, "method", st.peer.Method().String())
	default:
		e.failInit(now, sa, "EAP authentication failed: the gateway refused our credentials (EAP-Failure)")
		return
	}
	e.queueRequest(now, sa, &request{exchange: wire.IKE_AUTH, payloads: out, kind: reqAuth, onReply: (*Engine).handleAuthResponse})
}

// eapCheckResponder verifies the responder's identity and AUTH in the first IKE_AUTH
// response of an EAP conversation (it authenticates itself first, RFC 7296 2.16).
func (e *Engine) eapCheckResponder(now time.Time, sa *IKESA, m *wire.Message) bool {
	idr := wire.FindID(m.Payloads, false)
	if idr != nil && wire.Find[*wire.Auth](m.Payloads) == nil && sa.conn.EAPOnly && sa.conn.LocalAuth == AuthEAPTLS {
		// EAP-only (RFC 5998): EAP-TLS authenticates the gateway, whose TLS
		// certificate must hold the identity we expect (eapTLSConfig), and the AUTH
		// with the MSK at the end binds it to this IKE SA.
		if !anyID(sa.conn.RemoteID) && !idMatches(sa.conn.RemoteID, idr) {
			e.log.Info("peer identity does not match", "want", sa.conn.RemoteID, "got", idr.String())
			e.initiatorAuthFailed(now, sa)
			return false
		}
		sa.remoteID = *idr
		sa.eap.responderChecked = true
		e.log.Info("EAP-only authentication: the gateway proves itself in EAP-TLS", "sa", sa.id, "id", idr.String())
		return true
	}
	if idr == nil || wire.Find[*wire.Auth](m.Payloads) == nil {
		e.failInit(now, sa, "the first IKE_AUTH response has no IDr or AUTH: the gateway did not authenticate itself")
		return false
	}
	if sa.conn.RemoteAuth != AuthPubkey && !idMatches(sa.conn.RemoteID, idr) {
		e.log.Info("peer identity does not match", "want", sa.conn.RemoteID, "got", idr.String())
		e.initiatorAuthFailed(now, sa)
		return false
	}
	if err := e.checkPeerAuth(sa, sa.conn, m.Payloads, idr, sa.initResp, sa.ni, sa.keys.SKpr); err != nil {
		e.log.Info("the peer's authentication failed", "sa", sa.id, "id", idr.String(), "err", err)
		e.initiatorAuthFailed(now, sa)
		return false
	}
	sa.remoteID = *idr
	sa.eap.responderChecked = true
	return true
}

// startEAP answers the responder's first IKE_AUTH request without AUTH: we
// authenticate ourselves and start EAP with an EAP-Identity request.
func (e *Engine) startEAP(now time.Time, sa *IKESA, local, remote netip.AddrPort, h *wire.Header, m *wire.Message, idi, idr *wire.ID) {
	conn := e.matchAuthConn(sa, local.Addr(), remote.Addr(), idi, idr, 0)
	if conn == nil {
		e.log.Info("the peer asks for EAP and no connection with EAP matches its identity", "peer", remote, "id", idi.String())
		e.authFailed(now, sa, local, remote, h)
		return
	}
	sa.conn = conn
	sa.remoteID = *idi
	sa.localID = localIdentity(conn, local.Addr())
	var authPs []wire.Payload
	if conn.EAPOnly && conn.RemoteAuth == AuthEAPTLS && wire.FindNotify(m.Payloads, wire.EAP_ONLY_AUTHENTICATION) != nil {
		// EAP-only (RFC 5998): our TLS certificate in EAP-TLS proves us.
		e.log.Debug("EAP-only authentication: no AUTH before EAP-TLS", "sa", sa.id, "peer", remote)
	} else {
		var err error
		if authPs, err = e.ourAuth(sa, sa.initResp, sa.ni, sa.keys.SKpr, idi); err != nil {
			e.log.Error("cannot authenticate ourselves", "conn", conn.Name, "err", err)
			e.authFailed(now, sa, local, remote, h)
			return
		}
	}
	st := &eapState{idi: *idi, firstReq: m.Payloads, now: now, radius: conn.RemoteAuth == AuthEAPRadius}
	sa.eap = st
	var first []byte
	var err error
	if st.radius {
		var b [1]byte
		if _, err := e.rand.Read(b[:]); err != nil {
			e.authFailed(now, sa, local, remote, h)
			return
		}
		st.eapID = b[0]
		first = eap.Packet{Code: eap.CodeRequest, ID: st.eapID, Type: eap.TypeIdentity}.Marshal()
	} else {
		st.server = eap.NewServer(func(id string) (eap.ServerMethod, error) { return e.eapServerMethod(sa, id) }, e.rand)
		if first, err = st.server.Start(); err != nil {
			e.authFailed(now, sa, local, remote, h)
			return
		}
	}
	out := []wire.Payload{&wire.ID{Initiator: false, IDType: sa.localID.IDType, Data: sa.localID.Data}}
	out = append(out, authPs...)
	out = append(out, &wire.EAP{Data: first})
	e.respond(now, sa, local, remote, h, out)
}

// eapServerMethod is the method the gateway runs itself for the peer whose EAP
// identity is id.
func (e *Engine) eapServerMethod(sa *IKESA, id string) (eap.ServerMethod, error) {
	sa.eap.identity = id
	switch sa.conn.RemoteAuth {
	case AuthEAPMSCHAPv2:
		name := sa.localID.String()
		return eap.NewMSCHAPv2Server(name, func(user string) ([]byte, bool) {
			if e.cfg.EAPSecret == nil {
				return nil, false
			}
			pw, ok := e.cfg.EAPSecret(user)
			return bytes.Clone(pw), ok
		}, e.rand), nil
	case AuthEAPTLS:
		return eap.NewTLSServer(e.eapTLSConfig(sa, true)), nil
	}
	return nil, fmt.Errorf("remote authentication %q is not an EAP method run here", sa.conn.RemoteAuth)
}

// continueEAP is the responder's processing of the IKE_AUTH requests that carry the
// conversation, and of the last one, with the peer's AUTH.
func (e *Engine) continueEAP(now time.Time, sa *IKESA, local, remote netip.AddrPort, h *wire.Header, m *wire.Message) {
	st := sa.eap
	st.now = now
	if st.succeeded {
		e.finishEAP(now, sa, local, remote, h, m)
		return
	}
	p := wire.Find[*wire.EAP](m.Payloads)
	if p == nil {
		e.log.Info("IKE_AUTH request without an EAP payload while EAP runs", "sa", sa.id, "peer", remote)
		e.authFailed(now, sa, local, remote, h)
		return
	}
	if st.radius {
		e.radiusForward(sa, local, remote, h, p.Data)
		return
	}
	out, status, err := st.server.Handle(p.Data)
	switch status {
	case eap.StatusContinue:
		if err != nil {
			e.drop(&e.drops.Malformed, "EAP response does not fit the conversation", remote, err)
			return
		}
		e.respond(now, sa, local, remote, h, []wire.Payload{&wire.EAP{Data: out}})
	case eap.StatusSuccess:
		st.succeeded = true
		st.msk = bytes.Clone(st.server.MSK())
		st.identity = st.server.Identity()
		e.log.Info("EAP succeeded", "sa", sa.id, "peer", remote, "eap_id", st.identity, "method", st.server.Method().String())
		e.respond(now, sa, local, remote, h, []wire.Payload{&wire.EAP{Data: out}})
	default:
		e.log.Info("EAP authentication failed", "sa", sa.id, "peer", remote, "id", sa.remoteID.String(), "eap_id", st.server.Identity(), "err", err)
		e.eapFailed(now, sa, local, remote, h, out)
	}
}

// eapFailed answers with EAP-Failure (pkt) and AUTHENTICATION_FAILED and forgets the SA.
func (e *Engine) eapFailed(now time.Time, sa *IKESA, local, remote netip.AddrPort, h *wire.Header, pkt []byte) {
	var out []wire.Payload
	if len(pkt) > 0 {
		out = append(out, &wire.EAP{Data: pkt})
	}
	out = append(out, &wire.Notify{NotifyType: wire.AUTHENTICATION_FAILED})
	e.respond(now, sa, local, remote, h, out)
	e.removeSA(now, sa, "AUTHENTICATION_FAILED: EAP")
}

// finishEAP checks the peer's AUTH after EAP-Success and completes IKE_AUTH.
func (e *Engine) finishEAP(now time.Time, sa *IKESA, local, remote netip.AddrPort, h *wire.Header, m *wire.Message) {
	st := sa.eap
	auth := wire.Find[*wire.Auth](m.Payloads)
	if auth == nil {
		e.log.Info("IKE_AUTH request after EAP-Success without AUTH", "sa", sa.id, "peer", remote)
		e.authFailed(now, sa, local, remote, h)
		return
	}
	signed := sa.signedOctets(sa.initReq, sa.nr, sa.keys.SKpi, &st.idi)
	if auth.Method != wire.AuthSharedKey || !ikecrypto.AuthEqual(ikecrypto.PSKAuth(sa.prf, eapKey(st.msk, sa.keys.SKpi), signed), auth.Data) {
		e.log.Info("the peer's AUTH with the EAP key does not verify", "sa", sa.id, "peer", remote, "eap_id", st.identity)
		e.authFailed(now, sa, local, remote, h)
		return
	}
	ours := sa.signedOctets(sa.initResp, sa.ni, sa.keys.SKpr, &sa.localID)
	authPs := []wire.Payload{&wire.Auth{Method: wire.AuthSharedKey, Data: ikecrypto.PSKAuth(sa.prf, eapKey(st.msk, sa.keys.SKpr), ours)}}
	// From here on the peer is its EAP identity: leases, status, INITIAL_CONTACT.
	if st.identity != "" {
		sa.remoteID = wire.IDFromString(st.identity)
	}
	e.completeAuth(now, sa, local, remote, h, st.firstReq, authPs)
}
