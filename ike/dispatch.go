package ike

import (
	"errors"
	"net/netip"
	"time"

	"github.com/mobikevpn/mobikevpn/mobike"
	"github.com/mobikevpn/mobikevpn/wire"
)

// Messages of established and half-open SAs past IKE_SA_INIT: responses matched to our
// outstanding request, requests checked against the window and dispatched by exchange,
// answers cached, our requests queued and retransmitted. The window (window.go) says
// what a message ID means; this file seals, opens and sends.

// handleResponse matches a response to our outstanding request.
func (e *Engine) handleResponse(now time.Time, sa *IKESA, local, remote netip.AddrPort, data []byte, h *wire.Header) {
	req := sa.win.response(h.MessageID, h.Exchange)
	if req == nil {
		e.drop(&e.drops.BadMessageID, "unexpected response", remote, nil)
		return
	}
	m, err := wire.ParseMessage(data)
	if err != nil {
		e.drop(&e.drops.Malformed, "malformed response", remote, err)
		return
	}
	payloads, complete, _, err := e.openMessage(sa, data, m, true)
	peerSyntaxError := false
	if e.reassemblyRefused(err, remote) {
		return
	}
	if err != nil {
		var we *wire.Error
		if !errors.As(err, &we) {
			e.drop(&e.drops.Decrypt, "response failed to decrypt", remote, err)
			return
		}
		// Authenticated but with unparseable content: the exchange failed.
		e.log.Info("malformed content in response", "sa", sa.id, "err", err)
		payloads, complete = []wire.Payload{&wire.Notify{NotifyType: we.Notify}}, true
	} else if complete {
		peerSyntaxError = wire.FindNotify(payloads, wire.INVALID_SYNTAX) != nil
	}
	if !complete {
		return // more fragments to come
	}
	m.Payloads = payloads
	e.logMessage("received", sa, *h, local, remote, payloads)
	sa.lastRecv = now
	sa.win.pending = nil
	e.armDPD(sa, now)
	at := mobike.Path{Local: local, Remote: remote}
	if peerSyntaxError && sa.state == stateEstablished {
		// RFC 7296 2.21.3: INVALID_SYNTAX is fatal in both peers, no Delete needed.
		e.log.Info("the peer found our request malformed (INVALID_SYNTAX): the IKE SA is gone", "sa", sa.id)
		e.removeSA(now, sa, "INVALID_SYNTAX from the peer")
		return
	}
	if sa.pm != nil && sa.state == stateEstablished {
		e.applyPath(now, sa, sa.pm.Authenticated(now, at, sa.natLocal, sa.natRemote), nil)
	}
	switch {
	case req.check != nil:
		e.checkReplied(now, sa, req.check, at, m)
	case req.onReply != nil:
		req.onReply(e, now, sa, m)
	}
	if req.check == nil && sa.pm != nil && e.store.live(sa) && sa.state == stateEstablished {
		// While probing, a reply on another pair is a hint (RFC 4555 3.10).
		e.applyPath(now, sa, sa.pm.Reply(now, e.host(), nil, at, mobike.Reply{}), nil)
	}
	if e.store.owns(sa) {
		e.startNext(now, sa)
		e.schedule(sa)
	}
}

// handleRequest processes a request from the peer on an SA past IKE_SA_INIT.
func (e *Engine) handleRequest(now time.Time, sa *IKESA, local, remote netip.AddrPort, data []byte, h *wire.Header) {
	m, err := wire.ParseMessage(data)
	if err != nil {
		e.drop(&e.drops.Malformed, "malformed request", remote, err)
		return
	}
	var fragNum uint16
	if len(m.Payloads) > 0 {
		if skf, ok := m.Payloads[len(m.Payloads)-1].(*wire.SKF); ok {
			fragNum = skf.Number
		}
	}
	switch sa.win.classify(h.MessageID) {
	case reqIsAnswered:
		e.answerAgain(now, sa, local, remote, data, fragNum)
		return
	case reqIsOutside:
		e.drop(&e.drops.BadMessageID, "request outside the window", remote, nil)
		return
	}
	payloads, complete, _, err := e.openMessage(sa, data, m, false)
	if e.reassemblyRefused(err, remote) {
		return
	}
	if err == nil && fragNum == 1 {
		sa.win.firstFragment(data)
	}
	if err == nil && !complete {
		return // more fragments to come
	}
	if err != nil {
		var we *wire.Error
		if errors.As(err, &we) {
			// Authentic but malformed content: answer with the error (RFC 7296 2.21.4);
			// INVALID_SYNTAX ends the SA (2.21.3).
			n := &wire.Notify{NotifyType: we.Notify, Data: we.Data}
			e.respond(now, sa, local, remote, h, []wire.Payload{n})
			e.endIfInvalidSyntax(now, sa)
			return
		}
		e.drop(&e.drops.Decrypt, "request failed to decrypt", remote, err)
		return
	}
	m.Payloads = payloads
	e.logMessage("received", sa, *h, local, remote, payloads)
	sa.lastRecv = now
	sa.win.accepted(data, fragNum != 0)
	e.armDPD(sa, now)
	if sa.pm != nil && sa.state == stateEstablished {
		// A new authenticated request: RFC 7296 2.23's dynamic update (without MOBIKE);
		// with MOBIKE, an initiator addressed at an address it left says where it is.
		at := mobike.Path{Local: local, Remote: remote}
		ds := sa.pm.Authenticated(now, at, sa.natLocal, sa.natRemote)
		e.applyPath(now, sa, append(ds, sa.pm.PeerRequest(now, at)...), nil)
	}
	switch h.Exchange {
	case wire.IKE_AUTH:
		if sa.state != stateInitDone || sa.initiator || sa.addKEPending() {
			e.drop(&e.drops.Unexpected, "IKE_AUTH in wrong state", remote, nil)
			return
		}
		sa.im.closed = true
		e.handleAuthRequest(now, sa, local, remote, h, m)
	case wire.IKE_INTERMEDIATE:
		e.handleIntermediateRequest(now, sa, local, remote, h, m)
	case wire.INFORMATIONAL:
		if sa.state == stateInitDone && !sa.initiator && wire.FindNotify(m.Payloads, wire.AUTHENTICATION_FAILED) != nil {
			// The initiator gave up authenticating (RFC 7296 2.21.2: our AUTH, or its
			// EAP method, failed at its end): the half-open SA goes now.
			e.log.Info("the peer gave up IKE_AUTH (AUTHENTICATION_FAILED)", "sa", sa.id, "peer", remote)
			e.respond(now, sa, local, remote, h, nil)
			e.removeSA(now, sa, "AUTHENTICATION_FAILED from the peer")
			return
		}
		if sa.state != stateEstablished && sa.state != stateDeleting {
			e.drop(&e.drops.Unexpected, "INFORMATIONAL before establishment", remote, nil)
			return
		}
		e.handleInformational(now, sa, local, remote, h, m)
	case wire.CREATE_CHILD_SA:
		if sa.state != stateEstablished && sa.state != stateDeleting {
			e.drop(&e.drops.Unexpected, "CREATE_CHILD_SA in wrong state", remote, nil)
			return
		}
		e.handleCreateChildSA(now, sa, local, remote, h, m)
	case wire.IKE_FOLLOWUP_KE:
		if sa.state != stateEstablished && sa.state != stateDeleting {
			e.drop(&e.drops.Unexpected, "IKE_FOLLOWUP_KE in wrong state", remote, nil)
			return
		}
		e.handleFollowupRequest(now, sa, local, remote, h, m)
	default:
		e.drop(&e.drops.Unexpected, "unknown exchange type", remote, nil)
	}
	e.endIfInvalidSyntax(now, sa)
	if e.store.owns(sa) {
		e.schedule(sa)
	}
}

// reassemblyRefused counts fragments dropped because the message would grow too large
// or pre-authentication memory is exhausted.
func (e *Engine) reassemblyRefused(err error, remote netip.AddrPort) bool {
	switch {
	case errors.Is(err, errTooLarge):
		e.drop(&e.drops.TooLarge, "reassembled message too large", remote, err)
	case errors.Is(err, errPreauthMemory):
		e.drop(&e.drops.PreauthMemory, "fragment beyond the pre-authentication memory", remote, err)
	default:
		return false
	}
	return true
}

// endIfInvalidSyntax removes an established SA whose request we answered with
// INVALID_SYNTAX: that error is fatal in both peers, without a Delete (RFC 7296 2.21.3).
func (e *Engine) endIfInvalidSyntax(now time.Time, sa *IKESA) {
	if !sa.sentInvalidSyntax || !e.store.live(sa) {
		return
	}
	e.log.Info("we answered a malformed request with INVALID_SYNTAX: the IKE SA is gone", "sa", sa.id)
	e.removeSA(now, sa, "INVALID_SYNTAX: the peer's request was malformed")
}

// answerAgain answers a retransmitted request with the cached response, byte for
// byte, to where this copy came from; for a fragmented request, only its first fragment
// triggers that (RFC 7383 2.6.1). Only an identical copy of the request counts, so that
// forged or corrupted datagrams cannot make us send, and within the replay rate.
func (e *Engine) answerAgain(now time.Time, sa *IKESA, local, remote netip.AddrPort, data []byte, fragNum uint16) {
	if fragNum > 1 {
		return
	}
	if !sa.win.isCopy(data) {
		e.drop(&e.drops.Decrypt, "altered copy of an answered request", remote, nil)
		return
	}
	e.replay(now, sa, local, remote, sa.win.lastResp, "copy of an answered request")
}

// replay sends resp, the answer to a request, again to remote, where a copy of that
// request came from, within the replay rate (window.replayAllowed).
func (e *Engine) replay(now time.Time, sa *IKESA, local, remote netip.AddrPort, resp [][]byte, what string) {
	if !sa.win.replayAllowed(now, remote, sa.remote) {
		e.drop(&e.drops.ReplayLimited, what+" beyond the replay rate", remote, nil)
		return
	}
	e.drops.Retransmits.Add(1)
	for _, d := range resp {
		e.emit(Send{Local: local, Remote: remote, Data: d})
	}
}

// respond sends (and caches) the response to the request with header h.
func (e *Engine) respond(now time.Time, sa *IKESA, local, remote netip.AddrPort, h *wire.Header, payloads []wire.Payload) {
	rh := sa.header(h.Exchange, h.MessageID, true)
	datas, err := e.sealMessage(sa, rh, payloads)
	if err != nil {
		e.log.Error("cannot encrypt response", "sa", sa.id, "err", err)
		return
	}
	e.logMessage("sending", sa, rh, local, remote, payloads)
	sa.win.answered(h.MessageID, datas)
	if (sa.state == stateEstablished || sa.state == stateDeleting) && wire.FindNotify(payloads, wire.INVALID_SYNTAX) != nil {
		sa.sentInvalidSyntax = true
	}
	persist := uint64(0)
	if !sa.origInitiator {
		persist = sa.id
	}
	for _, d := range datas {
		e.emit(Send{Local: local, Remote: remote, Data: d, Persist: persist})
	}
}

// queueRequest adds an exchange we want to start; it goes out when the window is free.
func (e *Engine) queueRequest(now time.Time, sa *IKESA, r *request) {
	sa.win.queue = append(sa.win.queue, r)
	e.startNext(now, sa)
	e.schedule(sa)
}

func (e *Engine) startNext(now time.Time, sa *IKESA) {
	r := sa.win.next()
	if r == nil {
		return
	}
	datas, err := e.sealMessage(sa, sa.header(r.exchange, r.msgID, false), r.payloads)
	if err != nil {
		e.log.Error("cannot encrypt request", "sa", sa.id, "err", err)
		return
	}
	r.data = datas
	p := e.reqPath(sa, r)
	e.logMessage("sending", sa, sa.header(r.exchange, r.msgID, false), p.Local, p.Remote, r.payloads)
	e.transmit(now, sa, r)
}

// transmit sends r for the first time and arms its retransmission.
func (e *Engine) transmit(now time.Time, sa *IKESA, r *request) {
	sa.win.pending = r
	r.sentAt = now
	r.tries = 0
	r.nextAt = now.Add(e.retransmitDelay(0))
	persist := uint64(0)
	if !sa.origInitiator {
		persist = sa.id
	}
	e.sendOn(e.reqPath(sa, r), r.data, persist)
}

// sendReq sends request r (or its fragments) where it goes now.
func (e *Engine) sendReq(sa *IKESA, r *request) {
	e.sendOn(e.reqPath(sa, r), r.data, 0)
}

// sendOn sends datas on p; persist: see Send.Persist.
func (e *Engine) sendOn(p mobike.Path, datas [][]byte, persist uint64) {
	for _, d := range datas {
		e.emit(Send{Local: p.Local, Remote: p.Remote, Data: d, Persist: persist})
	}
}

func (e *Engine) retransmitDelay(n int) time.Duration {
	d := float64(e.cfg.Retransmit.Timeout)
	for i := 0; i < n; i++ {
		d *= e.cfg.Retransmit.Base
	}
	return time.Duration(d)
}
