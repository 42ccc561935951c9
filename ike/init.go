package ike

import (
	"bytes"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"

	"github.com/mobikevpn/mobikevpn/cert"
	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/wire"
)

const (
	maxCookieTries = 3
	maxKETries     = 3
)

// Initiate starts connection name and returns the new IKE SA's id.
func (e *Engine) Initiate(now time.Time, name string) (uint64, []Action, error) {
	conn := e.conns[name]
	if conn == nil {
		return 0, nil, fmt.Errorf("no connection named %q", name)
	}
	id, err := e.initiate(now, conn)
	return id, e.take(), err
}

// InitiateTo is Initiate toward remote, which must be one of the connection's
// remote_addrs: a client starting again with another gateway of its list.
func (e *Engine) InitiateTo(now time.Time, name string, remote netip.Addr) (uint64, []Action, error) {
	conn := e.conns[name]
	if conn == nil {
		return 0, nil, fmt.Errorf("no connection named %q", name)
	}
	if !slices.Contains(e.peerAddrs(conn), remote) {
		return 0, nil, fmt.Errorf("connection %q: %v is not among its remote addresses", name, remote)
	}
	id, err := e.initiateTo(now, conn, remote, netip.Addr{})
	return id, e.take(), err
}

// StartAll initiates every connection whose start_action is "start".
func (e *Engine) StartAll(now time.Time) []Action {
	for _, c := range e.cfg.Connections {
		if c.StartAction == "start" {
			e.keepUp(now, c, "start") // keepup.go
		}
	}
	return e.take()
}

func (e *Engine) initiate(now time.Time, conn *Conn) (uint64, error) {
	addrs := e.peerAddrs(conn)
	if len(addrs) == 0 {
		if len(conn.RemoteHosts) > 0 {
			return 0, fmt.Errorf("connection %q: its host names %v are not resolved", conn.Name, conn.RemoteHosts)
		}
		return 0, fmt.Errorf("connection %q has no remote address to initiate to", conn.Name)
	}
	return e.initiateTo(now, conn, addrs[0], netip.Addr{})
}

// initiateTo starts connection conn toward remoteAddr; redirectedFrom, if valid, is the
// gateway that redirected us there (RFC 5685).
func (e *Engine) initiateTo(now time.Time, conn *Conn, remoteAddr, redirectedFrom netip.Addr) (uint64, error) {
	if len(conn.Children) == 0 {
		return 0, fmt.Errorf("connection %q has no children", conn.Name)
	}
	localAddr, err := e.pickLocal(conn, remoteAddr)
	if err != nil {
		return 0, fmt.Errorf("connection %q: no local address to reach %s: %w", conn.Name, remoteAddr, err)
	}
	spi, err := e.store.newSPI(e.rand)
	if err != nil {
		return 0, err
	}
	sa := &IKESA{
		conn:           conn,
		state:          stateInitSent,
		initiator:      true,
		origInitiator:  true,
		spiI:           spi,
		created:        now,
		firstChild:     conn.Children[0],
		redirectedFrom: redirectedFrom,
		host:           e.hostOf(conn, remoteAddr),
	}
	// strongSwan's rule: a peer on port 500 starts there and floats to 4500 for
	// IKE_AUTH; a peer on any other port is spoken to from our NAT-T port from the start.
	if conn.RemotePort == 500 || conn.RemotePort == 0 {
		sa.local = netip.AddrPortFrom(localAddr, e.cfg.IKEPort)
		sa.remote = netip.AddrPortFrom(remoteAddr, 500)
	} else {
		sa.local = netip.AddrPortFrom(localAddr, e.cfg.NATTPort)
		sa.remote = netip.AddrPortFrom(remoteAddr, conn.RemotePort)
	}
	group := firstGroup(conn.Proposals)
	e.store.add(sa)
	if err := e.sendInit(now, sa, group); err != nil {
		e.removeSA(now, sa, "")
		return 0, err
	}
	e.log.Info("initiating", "conn", conn.Name, "sa", sa.id, "local", sa.local, "remote", sa.remote)
	e.charge(sa)
	e.schedule(sa)
	return sa.id, nil
}

func (e *Engine) pickLocal(conn *Conn, remote netip.Addr) (netip.Addr, error) {
	for _, a := range conn.LocalAddrs {
		if a.Is4() == remote.Is4() {
			return a, nil
		}
	}
	if len(conn.LocalAddrs) > 0 {
		return netip.Addr{}, errors.New("no local_addrs of the peer's address family")
	}
	if e.cfg.SourceAddr == nil {
		return netip.Addr{}, errors.New("no route lookup available")
	}
	return e.cfg.SourceAddr(remote)
}

func firstGroup(props []wire.Proposal) uint16 {
	for _, p := range props {
		for _, t := range p.Transforms {
			if t.Type == wire.TransformDH && t.ID != wire.DH_NONE {
				return t.ID
			}
		}
	}
	return wire.DH_NONE
}

func offersGroup(props []wire.Proposal, g uint16) bool {
	for _, p := range props {
		for _, t := range p.Transforms {
			if t.Type == wire.TransformDH && t.ID == g {
				return true
			}
		}
	}
	return false
}

// sendInit builds and sends our IKE_SA_INIT request with a fresh KE of group.
func (e *Engine) sendInit(now time.Time, sa *IKESA, group uint16) error {
	kex, err := ikecrypto.NewKeyExchange(group, e.rand)
	if err != nil {
		return err
	}
	sa.kex = kex
	if sa.ni == nil {
		if sa.ni, err = e.nonce(); err != nil {
			return err
		}
	}
	data := e.initMessage(sa, sa.local, sa.remote)
	sa.initCopies = []initCopy{{local: sa.local, remote: sa.remote, data: data}}
	sa.win.nextReqID = 1
	sa.initTried++
	e.transmit(now, sa, &request{exchange: wire.IKE_SA_INIT, msgID: 0, data: [][]byte{data}, kind: reqInit})
	return nil
}

// initMessage encodes sa's IKE_SA_INIT request as sent from local to remote (the NAT
// detection notifies depend on the addresses).
func (e *Engine) initMessage(sa *IKESA, local, remote netip.AddrPort) []byte {
	props := numberProposals(sa.conn.Proposals, nil)
	var payloads []wire.Payload
	if sa.cookie != nil {
		payloads = append(payloads, &wire.Notify{NotifyType: wire.COOKIE, Data: sa.cookie})
	}
	payloads = append(payloads,
		&wire.SA{Proposals: props},
		&wire.KE{Group: sa.kex.Group(), Data: sa.kex.PublicKey()},
		&wire.Nonce{Data: sa.ni},
	)
	payloads = append(payloads, e.natDetection(sa, local, remote)...)
	payloads = append(payloads, &wire.Notify{NotifyType: wire.IKEV2_FRAGMENTATION_SUPPORTED})
	payloads = append(payloads, wire.NewSignatureHashAlgorithms(cert.SupportedHashes()...))
	if sa.im.supported = ikecrypto.HasAddKE(sa.conn.Proposals); sa.im.supported {
		// RFC 9242 3.1, RFC 9370 2.2.1: needed for the additional key exchanges.
		payloads = append(payloads, &wire.Notify{NotifyType: wire.INTERMEDIATE_EXCHANGE_SUPPORTED})
	}
	// We follow redirects (RFC 5685 4): REDIRECTED_FROM tells the gateway we were sent.
	if sa.redirectedFrom.IsValid() {
		payloads = append(payloads, wire.NewRedirectedFrom(sa.redirectedFrom))
	} else {
		payloads = append(payloads, &wire.Notify{NotifyType: wire.REDIRECT_SUPPORTED})
	}
	h := wire.Header{SPIi: sa.spiI, Version: wire.Version, Exchange: wire.IKE_SA_INIT, Flags: wire.FlagInitiator}
	m := wire.Message{Header: h, Payloads: payloads}
	e.logMessage("sending", sa, h, local, remote, payloads)
	return m.Append(nil)
}

// initCopy is the IKE_SA_INIT request as sent on one address pair.
type initCopy struct {
	local, remote netip.AddrPort
	data          []byte
}

// maxInitCopies bounds the address pairs one IKE_SA_INIT is tried on.
const maxInitCopies = 8

// rotateInit points a retransmission of the IKE_SA_INIT request r at the connection's
// next remote address: RFC 4555 3.1 asks the initiator to try the combinations of
// addresses when retransmitting it, so that a gateway given several addresses is
// reachable through any of them.
func (e *Engine) rotateInit(sa *IKESA, r *request) {
	addrs := e.peerAddrs(sa.conn)
	if len(addrs) < 2 || len(sa.initCopies) >= maxInitCopies {
		return
	}
	cur := slices.Index(addrs, sa.remote.Addr())
	for i := 1; i < len(addrs); i++ {
		next := addrs[(cur+i)%len(addrs)]
		local, err := e.pickLocal(sa.conn, next)
		if err != nil {
			continue
		}
		sa.local = netip.AddrPortFrom(local, sa.local.Port())
		sa.remote = netip.AddrPortFrom(next, sa.remote.Port())
		sa.host = e.hostOf(sa.conn, next)
		data := e.initMessage(sa, sa.local, sa.remote)
		sa.initCopies = append(sa.initCopies, initCopy{local: sa.local, remote: sa.remote, data: data})
		r.data = [][]byte{data}
		e.log.Info("no answer yet: trying the peer's next address", "sa", sa.id, "remote", sa.remote)
		return
	}
}

// numberProposals copies props with proposal numbers 1..n and, when spi is set, that SPI.
func numberProposals(props []wire.Proposal, spi []byte) []wire.Proposal {
	out := make([]wire.Proposal, len(props))
	for i, p := range props {
		p.Num = uint8(i + 1)
		p.SPI = spi
		out[i] = p
	}
	return out
}

// natDetection returns the NAT_DETECTION_SOURCE_IP and _DESTINATION_IP notifies for a
// message from local to remote. With forced encapsulation the source hash is random,
// so that the peer sees a NAT and encapsulates ESP in UDP.
func (e *Engine) natDetection(sa *IKESA, local, remote netip.AddrPort) []wire.Payload {
	src := ikecrypto.NATDetectionHash(sa.spiI, sa.spiR, local)
	if sa.conn != nil && sa.conn.Encap {
		src = make([]byte, len(src))
		io.ReadFull(e.rand, src)
	}
	dst := ikecrypto.NATDetectionHash(sa.spiI, sa.spiR, remote)
	return []wire.Payload{
		&wire.Notify{NotifyType: wire.NAT_DETECTION_SOURCE_IP, Data: src},
		&wire.Notify{NotifyType: wire.NAT_DETECTION_DESTINATION_IP, Data: dst},
	}
}

// checkNAT evaluates the peer's NAT detection notifies in a message with SPIs spiI/spiR
// that arrived at local from remote. It reports whether each side is behind a NAT and
// whether the notifies were present at all.
func checkNAT(payloads []wire.Payload, spiI, spiR uint64, local, remote netip.AddrPort) (natLocal, natRemote, present bool) {
	srcs := wire.FindNotifies(payloads, wire.NAT_DETECTION_SOURCE_IP)
	dst := wire.FindNotify(payloads, wire.NAT_DETECTION_DESTINATION_IP)
	if len(srcs) == 0 || dst == nil {
		return false, false, false
	}
	want := ikecrypto.NATDetectionHash(spiI, spiR, remote)
	natRemote = true
	for _, n := range srcs {
		if subtle.ConstantTimeCompare(n.Data, want) == 1 {
			natRemote = false
		}
	}
	natLocal = subtle.ConstantTimeCompare(dst.Data, ikecrypto.NATDetectionHash(spiI, spiR, local)) != 1
	return natLocal, natRemote, true
}

// handleInitRequest is the responder's IKE_SA_INIT: a retransmission gets the same
// answer; a new request passes the limits before authentication (admitInit), gets a
// proposal and a key exchange (chooseInit), and makes a half-open SA (newHalfOpen).
func (e *Engine) handleInitRequest(now time.Time, local, remote netip.AddrPort, data []byte, h *wire.Header) {
	if h.SPIr != 0 || h.MessageID != 0 || !h.IsInitiator() {
		e.drop(&e.drops.Malformed, "IKE_SA_INIT request with bad SPI, message ID or flags", remote, nil)
		return
	}
	if len(data) > maxPreauthMessage {
		e.drop(&e.drops.TooLarge, "IKE_SA_INIT larger than the limit", remote, nil)
		return
	}
	key := halfOpenKey{h.SPIi, remote.Addr()}
	if sa := e.store.halfOpen(key); sa != nil {
		e.initRetransmission(now, sa, local, remote, data)
		return
	}
	m, err := wire.ParseMessage(data)
	if err != nil {
		var we *wire.Error
		if errors.As(err, &we) && we.Notify == wire.UNSUPPORTED_CRITICAL_PAYLOAD {
			e.sendInitError(local, remote, h, &wire.Notify{NotifyType: we.Notify, Data: we.Data})
			return
		}
		e.drop(&e.drops.Malformed, "malformed IKE_SA_INIT", remote, err)
		return
	}
	e.logMessage("received", nil, *h, local, remote, m.Payloads)
	in := initRequestIn{h: h, m: m, data: data, local: local, remote: remote, key: key,
		sa: wire.Find[*wire.SA](m.Payloads), ke: wire.Find[*wire.KE](m.Payloads), ni: wire.Find[*wire.Nonce](m.Payloads)}
	if in.sa == nil || in.ke == nil || in.ni == nil {
		e.drop(&e.drops.Malformed, "IKE_SA_INIT without SA, KE or Nonce", remote, nil)
		return
	}
	if !e.admitInit(now, &in) {
		return
	}
	if e.draining {
		e.redirectInit(&in)
		return
	}
	ch, ok := e.chooseInit(&in)
	if !ok {
		return
	}
	e.newHalfOpen(now, &in, ch)
}

// initRequestIn is an IKE_SA_INIT request being answered.
type initRequestIn struct {
	h             *wire.Header
	m             *wire.Message
	data          []byte
	local, remote netip.AddrPort
	key           halfOpenKey
	sa            *wire.SA
	ke            *wire.KE
	ni            *wire.Nonce
	blk           netip.Prefix // the source it counts for
	proved        bool         // it returned a valid COOKIE
}

// initRetransmission answers a copy of an IKE_SA_INIT request we answered: the same
// response again, while the initiator may still lack it (within the replay rate).
func (e *Engine) initRetransmission(now time.Time, sa *IKESA, local, remote netip.AddrPort, data []byte) {
	if sa.state != stateInitDone || !bytes.Equal(sa.initReq, data) {
		e.drop(&e.drops.Unexpected, "IKE_SA_INIT duplicate for an existing SA", remote, nil)
		return
	}
	e.replay(now, sa, local, remote, [][]byte{sa.initResp}, "IKE_SA_INIT copy")
}

// admitInit applies the limits before authentication (admission.decide): a COOKIE to
// return, a drop, or admitted.
func (e *Engine) admitInit(now time.Time, in *initRequestIn) bool {
	remote := in.remote
	in.blk = sourceBlock(remote.Addr(), e.cfg.IPv6SourcePrefix)
	if c := wire.FindNotify(in.m.Payloads, wire.COOKIE); c != nil {
		if in.proved = e.gate.cookies.valid(now, c.Data, in.ni.Data, remote.Addr(), in.h.SPIi); !in.proved {
			e.drops.InvalidCookie.Add(1)
		}
	}
	switch e.gate.decide(&e.cfg, in.blk, in.proved, len(in.data)) {
	case demandCookie:
		e.stats.cookiesSent++
		e.sendInitError(in.local, remote, in.h, &wire.Notify{NotifyType: wire.COOKIE,
			Data: e.gate.cookies.make(now, in.ni.Data, remote.Addr(), in.h.SPIi)})
	case blockedSource:
		e.drop(&e.drops.Blocked, "IKE_SA_INIT from a source with too many half-open SAs", remote, nil)
	case halfOpenFull:
		e.drop(&e.drops.HalfOpenLimit, "IKE_SA_INIT beyond the half-open limit", remote, nil)
	case preauthFull:
		e.drop(&e.drops.PreauthMemory, "IKE_SA_INIT beyond the pre-authentication memory", remote, nil)
	default:
		return true
	}
	return false
}

// initChoice is what a responder chose for an IKE_SA_INIT request.
type initChoice struct {
	conn   *Conn
	chosen wire.Proposal
	suite  ikecrypto.IKESuite
	kex    ikecrypto.KeyExchange
	gir    []byte
}

// chooseInit picks the connection, the proposal and the key exchange, or answers
// with the reason it cannot.
func (e *Engine) chooseInit(in *initRequestIn) (initChoice, bool) {
	var ch initChoice
	local, remote, h := in.local, in.remote, in.h
	theirs := in.sa.Proposals
	if wire.FindNotify(in.m.Payloads, wire.INTERMEDIATE_EXCHANGE_SUPPORTED) == nil {
		theirs = ikecrypto.WithoutAddKE(theirs) // no IKE_INTERMEDIATE: no additional key exchange
	}
	ch.conn = e.matchInitConn(local.Addr(), remote.Addr(), theirs)
	if ch.conn == nil {
		e.log.Info("no acceptable IKE proposal", "peer", remote, "offered", ikecrypto.ProposalsString(in.sa.Proposals))
		e.sendInitError(local, remote, h, &wire.Notify{NotifyType: wire.NO_PROPOSAL_CHOSEN})
		return ch, false
	}
	// Prefer the group of the peer's KE payload among the ones we accept: that saves an
	// INVALID_KE_PAYLOAD round trip (strongSwan does the same).
	ch.chosen, _ = ikecrypto.SelectProposal(ikecrypto.PreferGroup(ch.conn.Proposals, in.ke.Group), theirs)
	suite, err := ikecrypto.IKESuiteFromProposal(ch.chosen)
	if err != nil {
		e.sendInitError(local, remote, h, &wire.Notify{NotifyType: wire.NO_PROPOSAL_CHOSEN})
		return ch, false
	}
	ch.suite = suite
	if in.ke.Group != suite.DH {
		var g [2]byte
		binary.BigEndian.PutUint16(g[:], suite.DH)
		e.sendInitError(local, remote, h, &wire.Notify{NotifyType: wire.INVALID_KE_PAYLOAD, Data: g[:]})
		return ch, false
	}
	if ch.kex, err = ikecrypto.NewKeyExchange(suite.DH, e.rand); err != nil {
		e.log.Error("key exchange", "err", err)
		return ch, false
	}
	if ch.gir, err = ch.kex.SharedSecret(in.ke.Data); err != nil {
		e.log.Info("invalid KE payload from peer", "peer", remote, "err", err)
		e.sendInitError(local, remote, h, &wire.Notify{NotifyType: wire.INVALID_SYNTAX})
		return ch, false
	}
	return ch, true
}

// newHalfOpen makes the half-open SA of an admitted IKE_SA_INIT request, derives its
// keys and answers.
func (e *Engine) newHalfOpen(now time.Time, in *initRequestIn, ch initChoice) {
	local, remote := in.local, in.remote
	spiR, err := e.store.newSPI(e.rand)
	if err != nil {
		return
	}
	nr, err := e.nonce()
	if err != nil {
		return
	}
	sa := &IKESA{
		conn:     ch.conn,
		state:    stateInitDone,
		spiI:     in.h.SPIi,
		spiR:     spiR,
		local:    local,
		remote:   remote,
		suite:    ch.suite,
		ni:       append([]byte(nil), in.ni.Data...),
		nr:       nr,
		initReq:  in.data,
		created:  now,
		lastRecv: now,
		halfKey:  in.key,
		srcBlock: in.blk,

		provedCookie: in.proved,
		peerRedirect: wire.FindNotify(in.m.Payloads, wire.REDIRECT_SUPPORTED) != nil ||
			wire.FindNotify(in.m.Payloads, wire.REDIRECTED_FROM) != nil,
	}
	// NAT detection hashes of the request use SPIr = 0.
	sa.natLocal, sa.natRemote, _ = checkNAT(in.m.Payloads, in.h.SPIi, 0, local, remote)
	if err := e.deriveIKEKeys(sa, ch.gir); err != nil {
		e.log.Error("key derivation", "err", err)
		return
	}
	chosen := ch.chosen
	chosen.SPI = nil
	payloads := []wire.Payload{
		&wire.SA{Proposals: []wire.Proposal{chosen}},
		&wire.KE{Group: ch.suite.DH, Data: ch.kex.PublicKey()},
		&wire.Nonce{Data: nr},
	}
	payloads = append(payloads, e.natDetection(sa, local, remote)...)
	if wire.FindNotify(in.m.Payloads, wire.IKEV2_FRAGMENTATION_SUPPORTED) != nil {
		sa.fragment = true
		payloads = append(payloads, &wire.Notify{NotifyType: wire.IKEV2_FRAGMENTATION_SUPPORTED})
	}
	if n := wire.FindNotify(in.m.Payloads, wire.SIGNATURE_HASH_ALGORITHMS); n != nil {
		sa.peerHashes, _ = n.SignatureHashAlgorithms()
		if sa.peerHashes == nil {
			sa.peerHashes = []uint16{}
		}
		payloads = append(payloads, wire.NewSignatureHashAlgorithms(cert.SupportedHashes()...))
	}
	if cr := certReq(ch.conn.RemoteCAs); cr != nil {
		payloads = append(payloads, cr)
	}
	if wire.FindNotify(in.m.Payloads, wire.INTERMEDIATE_EXCHANGE_SUPPORTED) != nil {
		sa.im.supported = true
		payloads = append(payloads, &wire.Notify{NotifyType: wire.INTERMEDIATE_EXCHANGE_SUPPORTED})
	}
	rm := wire.Message{Header: sa.header(wire.IKE_SA_INIT, 0, true), Payloads: payloads}
	e.logMessage("sending", sa, rm.Header, local, remote, payloads)
	sa.initResp = rm.Append(nil)
	sa.win.peerReqID = 1
	sa.halfOpenExpire = now.Add(e.cfg.HalfOpenTimeout)
	e.store.add(sa)
	e.store.indexHalfOpen(in.key, sa)
	e.gate.opened(in.blk, in.proved)
	e.charge(sa)
	e.emit(Send{Local: local, Remote: remote, Data: sa.initResp})
	e.schedule(sa)
	e.log.Debug("IKE_SA_INIT answered", "sa", sa.id, "peer", remote, "proposal", ch.suite.String())
}

// sendInitError answers an IKE_SA_INIT request with a single notify and keeps no state.
func (e *Engine) sendInitError(local, remote netip.AddrPort, h *wire.Header, n *wire.Notify) {
	m := wire.Message{
		Header: wire.Header{
			SPIi: h.SPIi, Version: wire.Version, Exchange: wire.IKE_SA_INIT,
			Flags: wire.FlagResponse,
		},
		Payloads: []wire.Payload{n},
	}
	e.logMessage("sending", nil, m.Header, local, remote, m.Payloads)
	e.emit(Send{Local: local, Remote: remote, Data: m.Append(nil)})
}

// matchInitConn picks the first connection that accepts the addresses and one of the
// peer's proposals.
func (e *Engine) matchInitConn(local, remote netip.Addr, theirs []wire.Proposal) *Conn {
	for _, c := range e.cfg.Connections {
		if !addrAllowed(c.LocalAddrs, local) || !addrAllowed(c.RemoteAddrs, remote) {
			continue
		}
		if _, ok := ikecrypto.SelectProposal(c.Proposals, theirs); ok {
			return c
		}
	}
	return nil
}

func addrAllowed(list []netip.Addr, a netip.Addr) bool {
	if len(list) == 0 {
		return true
	}
	a = a.Unmap()
	for _, x := range list {
		if x == a || (x.IsUnspecified() && x.Is4() == a.Is4()) {
			return true
		}
	}
	return false
}

func (e *Engine) deriveIKEKeys(sa *IKESA, gir []byte) error {
	prf, err := ikecrypto.NewPRF(sa.suite.PRF)
	if err != nil {
		return err
	}
	sa.prf = prf
	return sa.installKeys(prf.SKEYSEED(sa.ni, sa.nr, gir))
}

// installKeys derives the IKE SA's keys from SKEYSEED (RFC 7296 2.14; RFC 9370
// 2.2.2 after each additional key exchange) and makes its ciphers.
func (sa *IKESA) installKeys(skeyseed []byte) error {
	keys, err := ikecrypto.DeriveIKEKeys(sa.prf, sa.suite, skeyseed, sa.ni, sa.nr, sa.spiI, sa.spiR)
	if err != nil {
		return err
	}
	sa.keys = keys
	encI, err := ikecrypto.NewSKCipher(sa.suite.Encr, int(sa.suite.EncrKeyBits), sa.suite.Integ, keys.SKei, keys.SKai)
	if err != nil {
		return err
	}
	encR, err := ikecrypto.NewSKCipher(sa.suite.Encr, int(sa.suite.EncrKeyBits), sa.suite.Integ, keys.SKer, keys.SKar)
	if err != nil {
		return err
	}
	if sa.initiator {
		sa.skOut, sa.skIn = encI, encR
	} else {
		sa.skOut, sa.skIn = encR, encI
	}
	return nil
}

// handleInitResponse is the initiator's processing of the IKE_SA_INIT response.
func (e *Engine) handleInitResponse(now time.Time, local, remote netip.AddrPort, data []byte, h *wire.Header) {
	sa := e.store.bySPI(h.SPIi)
	if sa == nil || !sa.initiator || sa.state != stateInitSent || h.MessageID != 0 || h.IsInitiator() {
		e.drop(&e.drops.UnknownSPI, "IKE_SA_INIT response for no pending SA", remote, nil)
		return
	}
	m, err := wire.ParseMessage(data)
	if err != nil {
		e.drop(&e.drops.Malformed, "malformed IKE_SA_INIT response", remote, err)
		return
	}
	// The response comes from an address the request went to; AUTH signs the request as
	// it went there.
	ci := slices.IndexFunc(sa.initCopies, func(c initCopy) bool { return c.remote == remote })
	if ci < 0 {
		ci = slices.IndexFunc(sa.initCopies, func(c initCopy) bool { return c.remote.Addr() == remote.Addr() })
	}
	if ci < 0 {
		e.drop(&e.drops.Unexpected, "IKE_SA_INIT response from an address the request did not go to", remote, nil)
		return
	}
	sa.local, sa.remote, sa.initReq = sa.initCopies[ci].local, sa.initCopies[ci].remote, sa.initCopies[ci].data
	e.logMessage("received", sa, *h, local, remote, m.Payloads)
	if e.initErrorNotify(now, sa, m) {
		return
	}
	e.initDone(now, sa, local, remote, data, h, m)
}

// initErrorNotify handles an IKE_SA_INIT response that is a lone error notify: COOKIE
// and INVALID_KE_PAYLOAD make us try again, REDIRECT elsewhere, anything else is fatal. All of them could
// be forged by an on-path attacker, so they are only believed while we wait for this
// response (RFC 7296 2.21.1). It reports whether the response was one.
func (e *Engine) initErrorNotify(now time.Time, sa *IKESA, m *wire.Message) bool {
	if r := wire.FindNotify(m.Payloads, wire.REDIRECT); r != nil && wire.Find[*wire.SA](m.Payloads) == nil {
		e.followInitRedirect(now, sa, r)
		return true
	}
	if c := wire.FindNotify(m.Payloads, wire.COOKIE); c != nil && wire.Find[*wire.SA](m.Payloads) == nil {
		if sa.cookieTries >= maxCookieTries || len(c.Data) == 0 || len(c.Data) > 64 {
			e.failInit(now, sa, "peer keeps demanding COOKIE")
			return true
		}
		sa.cookieTries++
		sa.cookie = append([]byte(nil), c.Data...)
		if err := e.sendInit(now, sa, sa.kex.Group()); err != nil {
			e.failInit(now, sa, err.Error())
		}
		e.schedule(sa)
		return true
	}
	if n := wire.FindNotify(m.Payloads, wire.INVALID_KE_PAYLOAD); n != nil {
		g, err := n.Group()
		if err != nil || !offersGroup(sa.conn.Proposals, g) || g == sa.kex.Group() || sa.keTries >= maxKETries {
			e.failInit(now, sa, "INVALID_KE_PAYLOAD")
			return true
		}
		sa.keTries++
		e.log.Info("peer asks for another key exchange group", "sa", sa.id, "group", g)
		if err := e.sendInit(now, sa, g); err != nil {
			e.failInit(now, sa, err.Error())
		}
		e.schedule(sa)
		return true
	}
	for _, p := range m.Payloads {
		if n, ok := p.(*wire.Notify); ok && n.NotifyType.IsError() {
			e.failInit(now, sa, n.NotifyType.String())
			return true
		}
	}
	return false
}

// initDone completes IKE_SA_INIT from the responder's answer: the proposal it chose,
// the keys, NAT detection, the float to the NAT-T port, and our IKE_AUTH.
func (e *Engine) initDone(now time.Time, sa *IKESA, local, remote netip.AddrPort, data []byte, h *wire.Header, m *wire.Message) {
	saP := wire.Find[*wire.SA](m.Payloads)
	keP := wire.Find[*wire.KE](m.Payloads)
	nrP := wire.Find[*wire.Nonce](m.Payloads)
	if saP == nil || keP == nil || nrP == nil || len(saP.Proposals) != 1 || h.SPIr == 0 {
		e.drop(&e.drops.Malformed, "IKE_SA_INIT response without SA, KE or Nonce", remote, nil)
		return
	}
	if err := ikecrypto.CheckResponseProposal(numberProposals(sa.conn.Proposals, nil), saP.Proposals[0]); err != nil {
		e.failInit(now, sa, "peer chose a proposal we did not offer: "+err.Error())
		return
	}
	suite, err := ikecrypto.IKESuiteFromProposal(saP.Proposals[0])
	if err != nil || suite.DH != sa.kex.Group() || keP.Group != suite.DH {
		e.failInit(now, sa, "peer's key exchange does not match the chosen proposal")
		return
	}
	gir, err := sa.kex.SharedSecret(keP.Data)
	if err != nil {
		e.failInit(now, sa, "invalid KE payload from peer: "+err.Error())
		return
	}
	sa.suite = suite
	sa.spiR = h.SPIr
	sa.nr = append([]byte(nil), nrP.Data...)
	sa.initResp = data
	sa.kex = nil
	if err := e.deriveIKEKeys(sa, gir); err != nil {
		e.failInit(now, sa, err.Error())
		return
	}
	// The response arrived at our real address: use it from now on.
	if local.Addr().IsValid() && !local.Addr().IsUnspecified() {
		sa.local = netip.AddrPortFrom(local.Addr(), sa.local.Port())
	}
	natL, natR, _ := checkNAT(m.Payloads, sa.spiI, sa.spiR, sa.local, remote)
	sa.natLocal, sa.natRemote = natL, natR
	sa.fragment = wire.FindNotify(m.Payloads, wire.IKEV2_FRAGMENTATION_SUPPORTED) != nil
	if n := wire.FindNotify(m.Payloads, wire.SIGNATURE_HASH_ALGORITHMS); n != nil {
		sa.peerHashes, _ = n.SignatureHashAlgorithms()
		if sa.peerHashes == nil {
			sa.peerHashes = []uint16{}
		}
	}
	sa.win.pending = nil
	sa.lastRecv = now
	// Float to the NAT-T port (RFC 7296 2.23): we always do, since ESP only ever runs
	// in UDP here and MOBIKE wants IKE and ESP on the same port.
	if sa.local.Port() == e.cfg.IKEPort && e.cfg.IKEPort != e.cfg.NATTPort {
		sa.local = netip.AddrPortFrom(sa.local.Addr(), e.cfg.NATTPort)
		if sa.remote.Port() == 500 {
			sa.remote = netip.AddrPortFrom(sa.remote.Addr(), 4500)
		}
	} else if dst := wire.FindNotify(m.Payloads, wire.NAT_DETECTION_DESTINATION_IP); dst != nil {
		// Without a float, the NAT mapping IKE_SA_INIT saw is the one the SA keeps
		// using: MOBIKE's liveness checks compare with it (RFC 4555 3.8). After a
		// float it describes port 500's mapping, which says nothing about ours.
		sa.initNATD = append([]byte(nil), dst.Data...)
	}
	if !e.afterInit(now, sa, m) {
		return
	}
	e.schedule(sa)
}

// failInit ends an IKE SA that never got established.
func (e *Engine) failInit(now time.Time, sa *IKESA, reason string) {
	e.log.Info("connection failed", "conn", sa.conn.Name, "sa", sa.id, "reason", reason)
	e.removeSA(now, sa, reason)
}
