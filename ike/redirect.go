package ike

import (
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
	return sa != nil && sa.state == stateEstablished && !sa.origInitiator && sa.peerRedirect
}

// Redirect asks the peer of IKE SA id (ours as gateway) to build a new IKE SA with the
// gateway at to (RFC 5685 6). The SA stays until the peer deletes it.
func (e *Engine) Redirect(now time.Time, id uint64, to netip.Addr) ([]Action, error) {
	sa := e.store.get(id)
	switch {
	case sa == nil:
		return nil, fmt.Errorf("no IKE SA #%d", id)
	case sa.state != stateEstablished || sa.origInitiator:
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
	gw, fqdn, _, err := n.Redirect()
	switch {
	case err != nil:
		e.log.Info("ignoring a malformed REDIRECT", "sa", sa.id, "err", err)
		return
	case fqdn != "":
		e.log.Info("ignoring a REDIRECT to a host name: not supported", "sa", sa.id, "gateway", fqdn)
		return
	case !mobike.Usable(gw.Unmap()):
		e.log.Info("ignoring a REDIRECT to an unusable address", "sa", sa.id, "gateway", gw)
		return
	}
	conn := e.currentConn(sa.conn)
	if conn == nil {
		return
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
	if len(recent) >= maxRedirects {
		e.redirects[conn.Name] = recent
		e.log.Warn("ignoring a REDIRECT: too many of this connection lately (a loop?)", "sa", sa.id, "conn", conn.Name, "gateway", gw)
		return
	}
	e.redirects[conn.Name] = append(recent, now)
	id, err := e.initiateTo(now, conn, gw.Unmap(), sa.remote.Addr())
	if err != nil {
		e.log.Warn("cannot follow a REDIRECT", "sa", sa.id, "gateway", gw, "err", err)
		return
	}
	if ns := e.store.get(id); ns != nil {
		ns.replaces = sa
	}
	e.log.Info("redirected: starting the connection at the gateway named", "sa", sa.id, "conn", conn.Name, "gateway", gw, "new_sa", id)
}

// redirectDone deletes the SA a redirect replaced, once its successor sa is up.
func (e *Engine) redirectDone(now time.Time, sa *IKESA) {
	old := sa.replaces
	sa.replaces = nil
	if old != nil && e.store.live(old) {
		e.deleteIKESA(now, old, "redirected to "+sa.remote.Addr().String())
	}
}
