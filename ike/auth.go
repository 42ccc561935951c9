package ike

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"
	"time"

	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/wire"
)

// localIdentity is the ID we present on sa: the configured one, else our address.
func localIdentity(conn *Conn, local netip.Addr) wire.ID {
	if conn.LocalID != "" {
		return wire.IDFromString(conn.LocalID)
	}
	if conn.LocalCred != nil {
		return conn.LocalCred.ID()
	}
	return addrID(local)
}

func addrID(a netip.Addr) wire.ID {
	a = a.Unmap()
	if a.Is4() {
		return wire.ID{IDType: wire.ID_IPV4_ADDR, Data: a.AsSlice()}
	}
	return wire.ID{IDType: wire.ID_IPV6_ADDR, Data: a.AsSlice()}
}

func anyID(s string) bool { return s == "" || s == "%any" }

// idMatches reports whether the peer's ID is the configured one.
func idMatches(configured string, id *wire.ID) bool {
	if anyID(configured) {
		return true
	}
	want := wire.IDFromString(configured)
	if want.IDType != id.IDType {
		return false
	}
	if want.IDType == wire.ID_FQDN || want.IDType == wire.ID_RFC822_ADDR {
		return strings.EqualFold(string(want.Data), string(id.Data))
	}
	return string(want.Data) == string(id.Data)
}

func idBody(id *wire.ID) []byte { return id.AppendBody(nil) }

// psk returns a copy of the pre-shared key for the identities, which the caller
// overwrites once it has used it.
func (e *Engine) psk(local, remote *wire.ID) ([]byte, bool) {
	if e.cfg.PSK == nil {
		return nil, false
	}
	k, ok := e.cfg.PSK(local.String(), remote.String())
	return bytes.Clone(k), ok
}

// sendAuth builds the initiator's IKE_AUTH request with the first Child SA.
func (e *Engine) sendAuth(now time.Time, sa *IKESA) error {
	conn := sa.conn
	child := sa.firstChild
	sa.localID = localIdentity(conn, sa.local.Addr())
	var err error
	payloads := []wire.Payload{&wire.ID{Initiator: true, IDType: sa.localID.IDType, Data: sa.localID.Data}}
	if !anyID(conn.RemoteID) {
		r := wire.IDFromString(conn.RemoteID)
		payloads = append(payloads, &wire.ID{Initiator: false, IDType: r.IDType, Data: r.Data})
	}
	var peerID wire.ID
	if anyID(conn.RemoteID) {
		peerID = addrID(sa.remote.Addr())
	} else {
		peerID = wire.IDFromString(conn.RemoteID)
	}
	var authPs []wire.Payload
	if IsEAP(conn.LocalAuth) {
		// No AUTH yet: EAP follows (eapauth.go).
		if err := e.startEAPPeer(sa); err != nil {
			return err
		}
	} else if authPs, err = e.ourAuth(sa, sa.initReq, sa.nr, sa.keys.SKpi, &peerID); err != nil {
		return err
	}
	if cr := certReq(conn.RemoteCAs); cr != nil {
		payloads = append(payloads, cr)
	}
	payloads = append(payloads, authPs...)
	if len(conn.VIPs) > 0 {
		payloads = append(payloads, cpRequest(conn.VIPs))
	}
	spi, err := e.store.newChildSPI(e.rand)
	if err != nil {
		return err
	}
	sa.firstChildIn = spi
	e.store.claimInbound(spi, &ChildSA{spiIn: spi, cfg: child})
	var spiB [4]byte
	binary.BigEndian.PutUint32(spiB[:], spi)
	payloads = append(payloads, &wire.SA{Proposals: numberProposals(stripDH(child.ESPProposals), spiB[:])})
	tsi := resolveTS(child.LocalTS, e.initiatorDynamicLocal(sa))
	tsr := resolveTS(child.RemoteTS, []netip.Addr{sa.remote.Addr()})
	payloads = append(payloads,
		&wire.TS{Initiator: true, Selectors: tsi},
		&wire.TS{Initiator: false, Selectors: tsr},
		&wire.Notify{NotifyType: wire.INITIAL_CONTACT},
	)
	if conn.EAPOnly && conn.LocalAuth == AuthEAPTLS {
		payloads = append(payloads, &wire.Notify{NotifyType: wire.EAP_ONLY_AUTHENTICATION})
	}
	if conn.Mobike {
		n := &wire.Notify{NotifyType: wire.MOBIKE_SUPPORTED}
		if conn.RMobike {
			n.Data = []byte{wire.RMOBIKEMarker}
		}
		payloads = append(payloads, n)
		sa.authAnnounced = conn.Announce.For(sa.local.Addr(), e.host(), []netip.Addr{sa.remote.Addr()})
		if len(sa.authAnnounced) > 0 {
			payloads = append(payloads, additionalNotifies(sa.authAnnounced)...)
		}
	}
	sa.state = stateAuthSent
	e.queueRequest(now, sa, &request{
		exchange: wire.IKE_AUTH,
		payloads: payloads,
		kind:     reqAuth,
		onReply:  (*Engine).handleAuthResponse,
	})
	return nil
}

// initiatorDynamicLocal is what "dynamic" means for our side in the request: the whole
// address family when we ask for a virtual IP (the responder narrows it), else our
// outer address.
func (e *Engine) initiatorDynamicLocal(sa *IKESA) []netip.Addr {
	if len(sa.conn.VIPs) == 0 {
		return []netip.Addr{sa.local.Addr()}
	}
	var out []netip.Addr
	for _, v := range sa.conn.VIPs {
		if v.Is4() {
			out = append(out, netip.IPv4Unspecified())
		} else {
			out = append(out, netip.IPv6Unspecified())
		}
	}
	return out
}

// stripDH returns ESP proposals without their key exchange transforms, KE and ADDKE
// (RFC 7296 1.2; its keys come from the IKE SA's): what the Child SA of IKE_AUTH offers and
// accepts.
func stripDH(props []wire.Proposal) []wire.Proposal {
	out := make([]wire.Proposal, 0, len(props))
	for _, p := range props {
		q := p
		q.Transforms = nil
		for _, t := range p.Transforms {
			if t.Type != wire.TransformDH && (t.Type < wire.TransformADDKE1 || t.Type > wire.TransformADDKE7) {
				q.Transforms = append(q.Transforms, t)
			}
		}
		out = append(out, q)
	}
	return out
}

// handleAuthRequest is the responder's IKE_AUTH.
func (e *Engine) handleAuthRequest(now time.Time, sa *IKESA, local, remote netip.AddrPort, h *wire.Header, m *wire.Message) {
	if sa.eap != nil {
		e.continueEAP(now, sa, local, remote, h, m) // eapauth.go
		return
	}
	idi := wire.FindID(m.Payloads, true)
	idr := wire.FindID(m.Payloads, false)
	auth := wire.Find[*wire.Auth](m.Payloads)
	if idi == nil {
		e.respond(now, sa, local, remote, h, []wire.Payload{&wire.Notify{NotifyType: wire.INVALID_SYNTAX}})
		e.removeSA(now, sa, "")
		return
	}
	if auth == nil {
		// No AUTH: the initiator wants to authenticate with EAP (RFC 7296 2.16).
		e.startEAP(now, sa, local, remote, h, m, idi, idr)
		return
	}
	conn := e.matchAuthConn(sa, local.Addr(), remote.Addr(), idi, idr, auth.Method)
	if conn == nil {
		e.log.Info("no connection matches the peer's identity and authentication method", "peer", remote, "id", idi.String(), "method", auth.Method.String())
		e.authFailed(now, sa, local, remote, h)
		return
	}
	sa.conn = conn
	sa.remoteID = *idi
	sa.localID = localIdentity(conn, local.Addr())
	if err := e.checkPeerAuth(sa, conn, m.Payloads, idi, sa.initReq, sa.nr, sa.keys.SKpi); err != nil {
		e.log.Info("AUTH payload does not verify", "peer", remote, "id", idi.String(), "err", err)
		e.authFailed(now, sa, local, remote, h)
		return
	}
	authPs, err := e.ourAuth(sa, sa.initResp, sa.ni, sa.keys.SKpr, idi)
	if err != nil {
		e.log.Error("cannot authenticate ourselves", "conn", conn.Name, "err", err)
		e.authFailed(now, sa, local, remote, h)
		return
	}
	e.completeAuth(now, sa, local, remote, h, m.Payloads, authPs)
}

// completeAuth answers the IKE_AUTH request of a peer now authenticated on sa.conn:
// reqPs are the payloads of its (first) IKE_AUTH request, authPs our AUTH (and
// certificates).
func (e *Engine) completeAuth(now time.Time, sa *IKESA, local, remote netip.AddrPort, h *wire.Header, reqPs []wire.Payload, authPs []wire.Payload) {
	conn := sa.conn
	if to, ok := e.drainTarget(remote.Addr()); ok && e.draining && sa.peerRedirect {
		e.redirectAuth(now, sa, to, local, remote, h, authPs)
		return
	}
	if e.vipWait(conn, reqPs) {
		// Nothing changed yet that the retransmission would not do again.
		e.drop(&e.drops.VIPWait, "IKE_AUTH waits for a virtual IP: not answered yet, its retransmission will find one", remote, nil)
		e.emit(Event{IKESA: sa.id, Conn: conn.Name, Kind: EventVIPWanted})
		return
	}
	// The peer is authenticated. It may have floated to the NAT-T port.
	sa.local, sa.remote = local, remote
	sa.state = stateEstablished
	sa.estab = now
	sa.halfOpenExpire = time.Time{}
	e.gate.closed(sa.srcBlock, sa.provedCookie)
	e.store.indexPeer(sa)
	if wire.FindNotify(reqPs, wire.INITIAL_CONTACT) != nil {
		e.initialContact(now, sa)
	}
	var out []wire.Payload
	if sa.eap == nil {
		// After EAP the IDr went in the first response; the last carries AUTH only
		// (RFC 7296 1.2).
		out = append(out, &wire.ID{Initiator: false, IDType: sa.localID.IDType, Data: sa.localID.Data})
	}
	out = append(out, authPs...)
	var announced, peerAddrs []netip.Addr
	if n := wire.FindNotify(reqPs, wire.MOBIKE_SUPPORTED); n != nil && conn.Mobike {
		sa.mobike = true
		sa.peerRMobike = n.RMOBIKE()
		announced = conn.Announce.For(local.Addr(), e.host(), []netip.Addr{remote.Addr()})
		peerAddrs, _ = readAdditional(reqPs)
	}
	// IKE and ESP start on the addresses of IKE_AUTH (RFC 4555 3.3); the peer's is
	// verified by the exchange itself.
	e.startPathManager(sa, peerAddrs, announced)
	childPayloads, childErr := e.respondChild(now, sa, reqPs)
	out = append(out, childPayloads...)
	if sa.mobike {
		out = append(out, &wire.Notify{NotifyType: wire.MOBIKE_SUPPORTED})
		if len(announced) > 0 {
			out = append(out, additionalNotifies(announced)...)
		}
	}
	e.respond(now, sa, local, remote, h, out)
	// The IKE_SA_INIT messages were only kept for AUTH, the EAP state until now.
	sa.initReq, sa.initResp = nil, nil
	sa.endEAP()
	e.keylogIKE(sa)
	e.log.Info("IKE SA established", "conn", conn.Name, "sa", sa.id, "peer", remote, "id", sa.remoteID.String(), "proposal", sa.suite.String())
	if childErr != "" {
		e.emit(Event{IKESA: sa.id, Conn: conn.Name, Kind: EventChildFailed, Reason: childErr})
	} else {
		e.emit(Event{IKESA: sa.id, Conn: conn.Name, Kind: EventEstablished})
	}
	e.armDPD(sa, now)
	e.armIKERekey(sa, now)
}

// authFailed answers IKE_AUTH with AUTHENTICATION_FAILED and forgets the SA.
func (e *Engine) authFailed(now time.Time, sa *IKESA, local, remote netip.AddrPort, h *wire.Header) {
	e.respond(now, sa, local, remote, h, []wire.Payload{&wire.Notify{NotifyType: wire.AUTHENTICATION_FAILED}})
	e.removeSA(now, sa, "AUTHENTICATION_FAILED")
}

// matchAuthConn picks the connection for an authenticated peer: addresses and the
// negotiated IKE proposal must fit, the peer's identity must match; an exact identity
// beats %any.
func (e *Engine) matchAuthConn(sa *IKESA, local, remote netip.Addr, idi, idr *wire.ID, method wire.AuthMethod) *Conn {
	var best *Conn
	bestScore := -1
	for _, c := range e.cfg.Connections {
		if !addrAllowed(c.LocalAddrs, local) || !addrAllowed(c.RemoteAddrs, remote) {
			continue
		}
		if !suiteOffered(c.Proposals, sa.suite) || !idMatches(c.RemoteID, idi) || !authMethodFits(c, method) {
			continue
		}
		score := 0
		if !anyID(c.RemoteID) {
			score += 2
		}
		if idr != nil && c.LocalID != "" && idMatches(c.LocalID, idr) {
			score++
		}
		if score > bestScore {
			best, bestScore = c, score
		}
	}
	return best
}

// suiteOffered reports whether one of props contains every algorithm of s.
func suiteOffered(props []wire.Proposal, s ikecrypto.IKESuite) bool {
	for _, p := range props {
		if has(p, wire.TransformENCR, s.Encr, s.EncrKeyBits) && has(p, wire.TransformPRF, s.PRF, 0) &&
			has(p, wire.TransformDH, s.DH, 0) && (s.Integ == 0 || has(p, wire.TransformINTEG, s.Integ, 0)) {
			return true
		}
	}
	return false
}

func has(p wire.Proposal, t wire.TransformType, id uint16, keyBits uint16) bool {
	for i := range p.Transforms {
		tr := &p.Transforms[i]
		if tr.Type == t && tr.ID == id && (keyBits == 0 || tr.KeyLength() == keyBits) {
			return true
		}
	}
	return false
}

// initialContact deletes the other IKE SAs of the same peer identity on the same
// connection without telling the peer (RFC 7296 2.4): it has forgotten them.
func (e *Engine) initialContact(now time.Time, sa *IKESA) {
	for _, other := range slices.Clone(e.store.peerSAs(sa.peerKey)) {
		if other == sa || other.conn != sa.conn || other.state != stateEstablished {
			continue
		}
		if other.remoteID.IDType == sa.remoteID.IDType && string(other.remoteID.Data) == string(sa.remoteID.Data) {
			e.log.Info("INITIAL_CONTACT: replacing old IKE SA", "old", other.id, "new", sa.id)
			e.removeSA(now, other, "replaced by INITIAL_CONTACT")
		}
	}
}

// handleAuthResponse is the initiator's processing of the IKE_AUTH response.
func (e *Engine) handleAuthResponse(now time.Time, sa *IKESA, m *wire.Message) {
	for _, p := range m.Payloads {
		n, ok := p.(*wire.Notify)
		if !ok || !n.NotifyType.IsError() {
			continue
		}
		switch n.NotifyType {
		case wire.NO_PROPOSAL_CHOSEN, wire.TS_UNACCEPTABLE, wire.SINGLE_PAIR_REQUIRED,
			wire.INTERNAL_ADDRESS_FAILURE, wire.FAILED_CP_REQUIRED, wire.INVALID_SELECTORS:
			// Child SA errors: handled below once the IKE SA is authenticated.
		default:
			reason := n.NotifyType.String()
			if sa.eap != nil && n.NotifyType == wire.AUTHENTICATION_FAILED {
				reason += ": the gateway refused our EAP credentials (" + sa.conn.LocalAuth + ")"
			}
			e.failInit(now, sa, reason)
			return
		}
	}
	if sa.eap != nil {
		e.eapAuthResponse(now, sa, m) // eapauth.go
		return
	}
	idr := wire.FindID(m.Payloads, false)
	auth := wire.Find[*wire.Auth](m.Payloads)
	if idr == nil || auth == nil {
		e.failInit(now, sa, "IKE_AUTH response without IDr or AUTH")
		return
	}
	if sa.conn.RemoteAuth != AuthPubkey && !idMatches(sa.conn.RemoteID, idr) {
		e.log.Info("peer identity does not match", "want", sa.conn.RemoteID, "got", idr.String())
		e.initiatorAuthFailed(now, sa)
		return
	}
	if err := e.checkPeerAuth(sa, sa.conn, m.Payloads, idr, sa.initResp, sa.ni, sa.keys.SKpr); err != nil {
		e.log.Info("the peer's authentication failed", "sa", sa.id, "id", idr.String(), "err", err)
		e.initiatorAuthFailed(now, sa)
		return
	}
	sa.remoteID = *idr
	e.authEstablished(now, sa, m)
}

// authEstablished completes the initiator's IKE_AUTH once the responder is
// authenticated (as sa.remoteID): m is the last IKE_AUTH response.
func (e *Engine) authEstablished(now time.Time, sa *IKESA, m *wire.Message) {
	if r := wire.FindNotify(m.Payloads, wire.REDIRECT); r != nil {
		e.followAuthRedirect(now, sa, r)
		return
	}
	sa.state = stateEstablished
	sa.estab = now
	e.connUp(sa) // keepup.go
	e.store.indexPeer(sa)
	sa.initReq, sa.initResp, sa.initCopies = nil, nil, nil
	var peerAddrs, announced []netip.Addr
	if wire.FindNotify(m.Payloads, wire.MOBIKE_SUPPORTED) != nil && sa.conn.Mobike {
		sa.mobike = true
		peerAddrs, _ = readAdditional(m.Payloads)
		announced = sa.authAnnounced
		if announced == nil {
			announced = []netip.Addr{}
		}
	}
	sa.authAnnounced = nil
	sa.endEAP()
	e.startPathManager(sa, peerAddrs, announced)
	e.keylogIKE(sa)
	e.log.Info("IKE SA established", "conn", sa.conn.Name, "sa", sa.id, "peer", sa.remote, "id", sa.remoteID.String(), "proposal", sa.suite.String())
	if reason := e.initiatorChild(now, sa, m.Payloads); reason != "" {
		e.log.Info("first Child SA failed; deleting the IKE SA", "sa", sa.id, "reason", reason)
		e.emit(Event{IKESA: sa.id, Conn: sa.conn.Name, Kind: EventChildFailed, Reason: reason})
		e.deleteIKESA(now, sa, "")
		return
	}
	e.emit(Event{IKESA: sa.id, Conn: sa.conn.Name, Kind: EventEstablished})
	e.armDPD(sa, now)
	e.armIKERekey(sa, now)
	e.redirectDone(now, sa)
	// The connection's other Child SAs come in CREATE_CHILD_SA exchanges.
	for _, cc := range sa.conn.Children {
		if cc != sa.firstChild {
			e.createChild(now, sa, cc, 0, nil)
		}
	}
}

// initiatorAuthFailed tells the responder that its authentication failed and forgets
// the SA (RFC 7296 2.21.2).
func (e *Engine) initiatorAuthFailed(now time.Time, sa *IKESA) {
	e.initiatorGivesUp(now, sa, "AUTHENTICATION_FAILED: the peer's authentication did not verify")
}

// initiatorGivesUp sends AUTHENTICATION_FAILED, so that the responder frees its
// half-open SA at once, and fails the SA for reason.
func (e *Engine) initiatorGivesUp(now time.Time, sa *IKESA, reason string) {
	msgID := sa.win.allocID()
	data, err := sa.seal(sa.header(wire.INFORMATIONAL, msgID, false), []wire.Payload{&wire.Notify{NotifyType: wire.AUTHENTICATION_FAILED}})
	if err == nil {
		e.emit(Send{Local: sa.local, Remote: sa.remote, Data: data})
	}
	e.failInit(now, sa, reason)
}

func (e *Engine) keylogIKE(sa *IKESA) {
	e.emit(IKEKeysLog{
		IKESA: sa.id, SPIi: sa.spiI, SPIr: sa.spiR, Suite: sa.suite,
		SKei: sa.keys.SKei, SKer: sa.keys.SKer, SKai: sa.keys.SKai, SKar: sa.keys.SKar,
	})
}
