package ike

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/mobikevpn/mobikevpn/mobike"
	"github.com/mobikevpn/mobikevpn/wire"
)

func spiHex(spi uint32) string { return fmt.Sprintf("%08x", spi) }

// handleInformational answers an INFORMATIONAL request: deletes, error notifies and
// liveness checks.
func (e *Engine) handleInformational(now time.Time, sa *IKESA, local, remote netip.AddrPort, h *wire.Header, m *wire.Message) {
	var out []wire.Payload
	deleteIKE := false
	var gone []*ChildSA
	for _, p := range m.Payloads {
		switch p := p.(type) {
		case *wire.Delete:
			switch p.Protocol {
			case wire.ProtoIKE:
				deleteIKE = true
			case wire.ProtoESP:
				var ours []uint32
				for _, spi := range p.SPIs {
					if c := sa.childByOutSPI(spi); c != nil {
						// A Child SA we are closing ourselves is not named in the
						// reply (RFC 7296 2.25.1).
						if c.state != childDeleting {
							ours = append(ours, c.spiIn)
						}
						gone = append(gone, c)
					}
				}
				if len(ours) > 0 {
					out = append(out, &wire.Delete{Protocol: wire.ProtoESP, SPIs: ours})
				}
			}
		case *wire.Notify:
			if p.NotifyType == wire.AUTHENTICATION_FAILED {
				deleteIKE = true
			}
		}
	}
	if deleteIKE {
		e.respond(now, sa, local, remote, h, nil)
		e.keepDeleted(now, sa, h.MessageID, remote)
		if sa.rekeyedTo != nil {
			// The end of a rekey: the Child SAs live on in the new IKE SA.
			e.removeSA(now, sa, "")
			return
		}
		if ns := sa.collision; ns != nil && e.store.live(ns) {
			// The peer finished its rekey without seeing ours (2.8.2): its new SA
			// inherits everything, our own attempt is forgotten.
			sa.collision = nil
			e.inherit(now, sa, ns)
			e.removeSA(now, sa, "")
			return
		}
		e.log.Info("IKE SA deleted by peer", "sa", sa.id, "conn", sa.conn.Name, "peer", sa.remote)
		conn := e.currentConn(sa.conn) // as reloaded; nil once removed
		restart := sa.origInitiator && conn != nil && conn.CloseAction == "restart"
		e.removeSA(now, sa, "deleted by peer")
		if restart {
			e.restart(now, conn)
		}
		return
	}
	for _, c := range gone {
		e.log.Info("Child SA deleted by peer", "sa", sa.id, "child", c.cfg.Name, "spi_in", spiHex(c.spiIn))
		e.retireChild(now, sa, c, true)
	}
	// MOBIKE (RFC 4555) and the switch (draft-smyslov-ipsecme-ikev2-r-mobike).
	at := mobike.Path{Local: local, Remote: remote}
	var ds []mobike.Decision
	var switchReq *wire.Notify
	if sa.mobike && sa.pm != nil {
		ps, more := e.mobikeRequest(now, sa, at, m)
		out = append(out, ps...)
		ds = more
		if sa.pm.Role() == mobike.Initiator {
			switchReq = wire.FindNotify(m.Payloads, switchNotify(sa.conn))
		}
	}
	// COOKIE2 is copied to the response of any INFORMATIONAL request (RFC 4555 3.7).
	if c := wire.FindNotify(m.Payloads, wire.COOKIE2); c != nil {
		out = append(out, &wire.Notify{NotifyType: wire.COOKIE2, Data: c.Data})
	}
	e.respond(now, sa, local, remote, h, out)
	e.applyPath(now, sa, ds, nil)
	// SWITCH_TO_IP_ADDRESS: answered (empty) first, decided after (draft 4.2). From the
	// original initiator it is ignored: only responders ask.
	if switchReq != nil && e.store.live(sa) {
		target, err := switchReq.SwitchAddress()
		e.applyPath(now, sa, sa.pm.SwitchRequest(now, e.host(), target, err), nil)
	}
	// REDIRECT (RFC 5685 6): answered, then followed; only gateways send it.
	if r := wire.FindNotify(m.Payloads, wire.REDIRECT); r != nil && sa.origInitiator && e.store.live(sa) && sa.state == stateEstablished {
		e.followRedirect(now, sa, r)
	}
}

// Delete deletes IKE SA id and its Child SAs, telling the peer; for an SA the peer
// rekeyed, the one that replaced it.
func (e *Engine) Delete(now time.Time, id uint64) ([]Action, error) {
	sa := e.store.get(id)
	if sa == nil {
		return nil, fmt.Errorf("no IKE SA with id %d", id)
	}
	// An SA the peer rekeyed (we answered; EventRekeyed named it as Replaces) lives on
	// in its successor: the peer deletes the old one, or it is forgotten after
	// rekeyedSALife. A Delete of it on the wire would end only the old SA at the peer,
	// or, should it overtake our answer to the rekey, make the peer give its rekey up
	// (RFC 7296 2.25.2) while we keep the new SA: the successor is what goes.
	for sa.state == stateEstablished && sa.rekeyedTo != nil && e.store.live(sa.rekeyedTo) {
		sa = sa.rekeyedTo
	}
	e.stopKeepingUp(sa)
	e.deleteIKESA(now, sa, "deleted")
	return e.take(), nil
}

// DeleteConn deletes every IKE SA of connection name; it reports how many there were.
func (e *Engine) DeleteConn(now time.Time, name string) (int, []Action) {
	n := 0
	for _, sa := range e.sorted() {
		if sa.conn != nil && sa.conn.Name == name {
			e.stopKeepingUp(sa)
			e.deleteIKESA(now, sa, "deleted")
			n++
		}
	}
	return n, e.take()
}

// DeleteAll deletes every IKE SA (shutdown).
func (e *Engine) DeleteAll(now time.Time) []Action {
	e.retries = nil
	for _, sa := range e.sorted() {
		sa.restarting = false
		e.deleteIKESA(now, sa, "shutdown")
	}
	return e.take()
}

// Deleting reports whether Delete exchanges are still waiting for their responses.
func (e *Engine) Deleting() bool {
	for sa := range e.store.all() {
		if sa.state == stateDeleting {
			return true
		}
	}
	return false
}

// deleteIKESA starts the INFORMATIONAL Delete of an established SA; SAs that are not
// established yet are just forgotten.
func (e *Engine) deleteIKESA(now time.Time, sa *IKESA, reason string) {
	if sa.handedOver {
		// Exported: the peer's SA lives on where it was imported; here it is only
		// forgotten.
		e.log.Info("forgetting an IKE SA exported to another engine", "sa", sa.id, "reason", reason)
		e.removeSA(now, sa, "")
		return
	}
	switch sa.state {
	case stateEstablished:
	case stateDeleting, stateDead:
		return
	default:
		e.removeSA(now, sa, reason)
		return
	}
	sa.state = stateDeleting
	// Nothing else goes out on this SA any more.
	sa.win.queue = nil
	if sa.win.pending != nil {
		// The window is busy; the Delete waits for it, but with no retransmissions of
		// the old request beyond the usual.
		sa.win.queue = append(sa.win.queue, e.deleteRequest(reason))
		return
	}
	e.queueRequest(now, sa, e.deleteRequest(reason))
}

func (e *Engine) deleteRequest(reason string) *request {
	return &request{
		exchange: wire.INFORMATIONAL,
		payloads: []wire.Payload{&wire.Delete{Protocol: wire.ProtoIKE}},
		kind:     reqDelete,
		onReply: func(e *Engine, now time.Time, sa *IKESA, _ *wire.Message) {
			e.log.Info("IKE SA deleted", "sa", sa.id, "conn", sa.conn.Name)
			e.removeSA(now, sa, reason)
		},
	}
}

func spiBytes(spi uint32) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], spi)
	return b[:]
}
