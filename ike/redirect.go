package ike

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mobikevpn/mobikevpn/mobike"
	"github.com/mobikevpn/mobikevpn/wire"
)

// Redirects of established IKE SAs (RFC 5685 6): a gateway asks a client that follows
// redirects to build a new IKE SA with another gateway; the client answers, starts the
// new IKE SA there (REDIRECTED_FROM naming the gateway that sent it) and deletes the
// old one once the new one is up. A gateway cluster uses it for clients that cannot be
// asked to switch (no R-MOBIKE).

// Redirect limits: a client follows at most maxRedirects redirects of a connection in
// redirectWindow (RFC 5685 10: redirect loops).
const (
	maxRedirects   = 5
	redirectWindow = 5 * time.Minute
)

// CanRedirect reports whether IKE SA id is ours as gateway and its peer follows
// redirects.
func (e *Engine) CanRedirect(id uint64) bool {
	sa := e.store.get(id)
	return sa != nil && sa.state == stateEstablished && !sa.origInitiator && sa.peerRedirect && !sa.redirectedAway
}

// Redirect asks the peer of IKE SA id (ours as gateway) to build a new IKE SA with the
// gateway at to (RFC 5685 6). The SA stays until the peer deletes it.
func (e *Engine) Redirect(now time.Time, id uint64, to netip.Addr) ([]Action, error) {
	sa := e.store.get(id)
	switch {
	case sa == nil:
		return nil, fmt.Errorf("no IKE SA #%d", id)
	case sa.state != stateEstablished || sa.origInitiator || sa.redirectedAway:
		return nil, fmt.Errorf("IKE SA #%d is not an established SA of ours as gateway", id)
	case !sa.peerRedirect:
		return nil, fmt.Errorf("the peer of IKE SA #%d did not say it follows redirects (REDIRECT_SUPPORTED)", id)
	case !mobike.Usable(to.Unmap()):
		return nil, fmt.Errorf("%s is not an address a peer can be redirected to", to)
	}
	e.queueRequest(now, sa, &request{exchange: wire.INFORMATIONAL, kind: reqNotify,
		payloads: []wire.Payload{wire.NewRedirect(to.Unmap(), nil)}})
	e.log.Info("redirecting the peer", "sa", sa.id, "peer", sa.remote, "to", to)
	return e.take(), nil
}

// followRedirect handles a REDIRECT in an INFORMATIONAL request of established SA sa,
// already answered: as its original initiator we start the connection again at the
// gateway named, and delete sa once that is up.
func (e *Engine) followRedirect(now time.Time, sa *IKESA, n *wire.Notify) {
	id, err := e.redirectConn(now, sa, n)
	if err != nil {
		e.log.Warn("not following a REDIRECT", "sa", sa.id, "err", err)
		return
	}
	if ns := e.store.get(id); ns != nil {
		ns.replaces = sa
	}
}

// redirectConn starts sa's connection again at the gateway a REDIRECT notify n names,
// saying that sa's gateway sent us (REDIRECTED_FROM), and returns the new SA's id. It
// refuses host names, unusable addresses and more than maxRedirects redirects of one
// connection in redirectWindow (RFC 5685 10: redirect loops).
func (e *Engine) redirectConn(now time.Time, sa *IKESA, n *wire.Notify) (uint64, error) {
	gw, fqdn, _, err := n.Redirect()
	switch {
	case err != nil:
		return 0, fmt.Errorf("malformed REDIRECT: %w", err)
	case fqdn != "":
		return 0, fmt.Errorf("REDIRECT to the host name %q: not supported", fqdn)
	case !mobike.Usable(gw.Unmap()):
		return 0, fmt.Errorf("REDIRECT to the unusable address %s", gw)
	}
	conn := e.currentConn(sa.conn)
	if conn == nil {
		return 0, errors.New("a reload removed the connection")
	}
	if e.redirects == nil {
		e.redirects = make(map[string][]time.Time)
	}
	recent := e.redirects[conn.Name][:0]
	for _, t := range e.redirects[conn.Name] {
		if now.Sub(t) < redirectWindow {
			recent = append(recent, t)
		}
	}
	e.redirects[conn.Name] = recent
	if len(recent) >= maxRedirects {
		return 0, fmt.Errorf("REDIRECT to %s: %d redirects of connection %q in %v already (a loop?)", gw, len(recent), conn.Name, redirectWindow)
	}
	e.redirects[conn.Name] = append(recent, now)
	id, err := e.initiateTo(now, conn, gw.Unmap(), sa.remote.Addr())
	if err != nil {
		return 0, fmt.Errorf("REDIRECT to %s: %w", gw, err)
	}
	if ns := e.store.get(id); ns != nil {
		ns.restarting = sa.restarting
	}
	e.log.Info("redirected: starting the connection at the gateway named", "sa", sa.id, "conn", conn.Name, "gateway", gw, "new_sa", id)
	return id, nil
}

// redirectDone deletes the SA a redirect replaced, once its successor sa is up.
func (e *Engine) redirectDone(now time.Time, sa *IKESA) {
	old := sa.replaces
	sa.replaces = nil
	if old != nil && e.store.live(old) {
		e.deleteIKESA(now, old, "redirected to "+sa.remote.Addr().String())
	}
}

// Drain stops the engine accepting new IKE SAs, for a gateway being emptied (RFC 5685 4
// and 5): an IKE_SA_INIT request of a peer that follows redirects is answered with a
// REDIRECT to the first address of to of the peer's family, and so is the IKE_AUTH
// request of such a peer whose IKE_SA_INIT came before; an IKE_SA_INIT request of any
// other peer is dropped (counted as ike_draining). Calling it again replaces to.
func (e *Engine) Drain(to []netip.Addr) {
	e.draining = true
	e.drainTo = append([]netip.Addr(nil), to...)
}

// drainTarget is where a draining engine redirects a new peer at peer.
func (e *Engine) drainTarget(peer netip.Addr) (netip.Addr, bool) {
	for _, a := range e.drainTo {
		if a.Unmap().Is4() == peer.Unmap().Is4() && mobike.Usable(a.Unmap()) {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// redirectInit answers an IKE_SA_INIT request while draining: a REDIRECT carrying the
// peer's nonce (RFC 5685 4), keeping no state, or nothing.
func (e *Engine) redirectInit(in *initRequestIn) {
	to, ok := e.drainTarget(in.remote.Addr())
	follows := wire.FindNotify(in.m.Payloads, wire.REDIRECT_SUPPORTED) != nil ||
		wire.FindNotify(in.m.Payloads, wire.REDIRECTED_FROM) != nil
	if !ok || !follows {
		e.drop(&e.drops.Draining, "IKE_SA_INIT while draining from a peer that cannot be redirected", in.remote, nil)
		return
	}
	e.sendInitError(in.local, in.remote, in.h, wire.NewRedirect(to, in.ni.Data))
	e.log.Debug("draining: new peer redirected in IKE_SA_INIT", "peer", in.remote, "to", to)
}

// followInitRedirect handles a REDIRECT answering our IKE_SA_INIT request (RFC 5685 4):
// believed only with our nonce in it (else an off-path forgery: ignored, we keep
// waiting), it ends sa and starts the connection at the gateway named.
func (e *Engine) followInitRedirect(now time.Time, sa *IKESA, n *wire.Notify) {
	if _, _, nonce, err := n.Redirect(); err != nil || subtle.ConstantTimeCompare(nonce, sa.ni) != 1 {
		e.drop(&e.drops.Unexpected, "REDIRECT in IKE_SA_INIT without our nonce", sa.remote, err)
		return
	}
	if _, err := e.redirectConn(now, sa, n); err != nil {
		e.failInit(now, sa, "redirected in IKE_SA_INIT, not followed: "+err.Error())
		return
	}
	e.removeSA(now, sa, "")
}

// redirectAuth answers the IKE_AUTH request of an authenticated peer while draining
// (RFC 5685 5): our identity and AUTH and a REDIRECT, no Child SA. The IKE SA is up
// for the peer to delete; if it does not, it is forgotten after the half-open timeout
// (as strongSwan does).
func (e *Engine) redirectAuth(now time.Time, sa *IKESA, to netip.Addr, local, remote netip.AddrPort, h *wire.Header, authPs []wire.Payload) {
	sa.local, sa.remote = local, remote
	sa.state = stateEstablished
	sa.estab = now
	sa.halfOpenExpire = time.Time{}
	sa.expireAt = now.Add(e.cfg.HalfOpenTimeout)
	sa.redirectedAway = true
	e.gate.closed(sa.srcBlock, sa.provedCookie)
	out := []wire.Payload{&wire.ID{Initiator: false, IDType: sa.localID.IDType, Data: sa.localID.Data}}
	out = append(out, authPs...)
	out = append(out, wire.NewRedirect(to, nil))
	e.respond(now, sa, local, remote, h, out)
	sa.initReq, sa.initResp = nil, nil
	e.keylogIKE(sa)
	e.log.Info("draining: new peer redirected in IKE_AUTH", "sa", sa.id, "peer", remote, "id", sa.remoteID.String(), "to", to)
	e.schedule(sa)
}

// followAuthRedirect handles a REDIRECT in the IKE_AUTH response of an authenticated
// gateway (RFC 5685 5): the SA, which has no Child SA, is deleted and the connection
// starts at the gateway named.
func (e *Engine) followAuthRedirect(now time.Time, sa *IKESA, n *wire.Notify) {
	sa.state = stateEstablished
	sa.estab = now
	sa.initReq, sa.initResp, sa.initCopies = nil, nil, nil
	reason := ""
	if _, err := e.redirectConn(now, sa, n); err != nil {
		reason = "redirected in IKE_AUTH, not followed: " + err.Error()
		e.log.Warn("connection failed", "conn", sa.conn.Name, "sa", sa.id, "reason", reason)
	}
	e.deleteIKESA(now, sa, reason)
}
