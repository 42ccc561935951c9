package ike

import (
	"container/heap"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	ikecrypto "github.com/mobikevpn/mobikevpn/ike/crypto"
	"github.com/mobikevpn/mobikevpn/ike/wire"
	"github.com/mobikevpn/mobikevpn/mobike"
)

var errNotProtected = errors.New("message has no SK payload")

// Engine owns every IKE SA of the host. It is not safe for concurrent use: one
// goroutine feeds it datagrams, commands and the time, and carries out the actions it
// returns.
type Engine struct {
	cfg   Config
	log   *slog.Logger
	rand  io.Reader
	conns map[string]*Conn
	pools map[string]*pool

	sas  map[uint64]*IKESA // by our SPI
	byID map[uint64]*IKESA
	// initIndex finds responder SAs by the IKE_SA_INIT request's (SPIi, peer address),
	// so that retransmitted requests get the cached response and late duplicates do
	// not create new SAs.
	initIndex map[halfOpenKey]*IKESA
	spisIn    map[uint32]*ChildSA // inbound ESP SPIs in use
	// byPeer finds the authenticated IKE SAs of a peer identity (by peerKey), so that
	// INITIAL_CONTACT does not scan every SA.
	byPeer map[uint64][]*IKESA
	nHalf  int
	// Half-open SAs per source block (an IPv4 address, an IPv6 /64): those whose
	// initiator returned a COOKIE, and the others.
	proved, unproved map[netip.Prefix]int
	// preauth is what SAs that are not authenticated hold (IKE_SA_INIT messages,
	// fragments being reassembled), in bytes.
	preauth int

	// localAddrs are the host's usable addresses (nil: not known).
	localAddrs []netip.Addr

	nextSAID       uint64
	nextChildID    uint64
	livenessChecks uint64 // DPD requests sent

	timers timerHeap
	out    []Action

	cookieSecret     [2][32]byte
	cookieVersion    uint8
	cookieRotatedAt  time.Time
	cookieRotateEach time.Duration

	drops Drops
}

type halfOpenKey struct {
	spiI   uint64
	remote netip.Addr
}

// Drops counts IKE datagrams dropped, by reason.
type Drops struct {
	Malformed     atomic.Uint64 // unparseable header or payloads
	UnknownSPI    atomic.Uint64 // no IKE SA for the SPIs
	BadMessageID  atomic.Uint64 // outside the window, or an unsolicited response
	Decrypt       atomic.Uint64 // ICV or decryption failure
	Unexpected    atomic.Uint64 // valid message that does not fit the SA's state
	InvalidCookie atomic.Uint64 // IKE_SA_INIT without the COOKIE we demanded
	Blocked       atomic.Uint64 // IKE_SA_INIT from a peer address with too many half-open SAs
	HalfOpenLimit atomic.Uint64 // IKE_SA_INIT beyond the limit of half-open SAs
	Retransmits   atomic.Uint64 // retransmitted requests answered from the cache
	ReplayLimited atomic.Uint64 // copies of answered requests beyond the replay rate (not answered)
	TooLarge      atomic.Uint64 // messages before authentication beyond maxPreauthMessage
	PreauthMemory atomic.Uint64 // IKE_SA_INITs and fragments beyond Config.PreauthMemory
}

// Map returns the counters by name.
func (d *Drops) Map() map[string]uint64 {
	return map[string]uint64{
		"ike_malformed":       d.Malformed.Load(),
		"ike_unknown_spi":     d.UnknownSPI.Load(),
		"ike_bad_message_id":  d.BadMessageID.Load(),
		"ike_decrypt":         d.Decrypt.Load(),
		"ike_unexpected":      d.Unexpected.Load(),
		"ike_invalid_cookie":  d.InvalidCookie.Load(),
		"ike_blocked":         d.Blocked.Load(),
		"ike_half_open_limit": d.HalfOpenLimit.Load(),
		"ike_retransmits":     d.Retransmits.Load(),
		"ike_replay_limited":  d.ReplayLimited.Load(),
		"ike_too_large":       d.TooLarge.Load(),
		"ike_preauth_memory":  d.PreauthMemory.Load(),
	}
}

// New returns an engine for cfg.
func New(cfg Config) (*Engine, error) {
	cfg.setDefaults()
	e := &Engine{
		cfg:              cfg,
		log:              cfg.Logger,
		rand:             cfg.Rand,
		conns:            make(map[string]*Conn),
		pools:            make(map[string]*pool),
		sas:              make(map[uint64]*IKESA),
		byID:             make(map[uint64]*IKESA),
		initIndex:        make(map[halfOpenKey]*IKESA),
		proved:           make(map[netip.Prefix]int),
		unproved:         make(map[netip.Prefix]int),
		spisIn:           make(map[uint32]*ChildSA),
		byPeer:           make(map[uint64][]*IKESA),
		cookieRotateEach: 2 * time.Minute,
	}
	if e.rand == nil {
		e.rand = rand.Reader
	}
	for _, c := range cfg.Connections {
		if _, dup := e.conns[c.Name]; dup {
			return nil, fmt.Errorf("ike: connection %q defined twice", c.Name)
		}
		if len(c.Proposals) == 0 {
			return nil, fmt.Errorf("ike: connection %q has no IKE proposals", c.Name)
		}
		e.conns[c.Name] = c
	}
	for _, p := range cfg.Pools {
		pl, err := newPool(p)
		if err != nil {
			return nil, err
		}
		e.pools[p.Name] = pl
	}
	for _, c := range cfg.Connections {
		for _, name := range c.Pools {
			if e.pools[name] == nil {
				return nil, fmt.Errorf("ike: connection %q: unknown pool %q", c.Name, name)
			}
		}
	}
	if _, err := io.ReadFull(e.rand, e.cookieSecret[0][:]); err != nil {
		return nil, err
	}
	return e, nil
}

// Drops returns the engine's drop counters (safe to read from any goroutine).
func (e *Engine) Drops() *Drops { return &e.drops }

func (e *Engine) emit(a Action) { e.out = append(e.out, a) }

func (e *Engine) take() []Action {
	out := e.out
	e.out = nil
	return out
}

// HandleDatagram processes one IKE datagram (without a non-ESP marker) that arrived at
// local from remote.
func (e *Engine) HandleDatagram(now time.Time, local, remote netip.AddrPort, data []byte) []Action {
	e.handleDatagram(now, local, remote, data)
	return e.take()
}

func (e *Engine) handleDatagram(now time.Time, local, remote netip.AddrPort, data []byte) {
	h, err := wire.ParseHeader(data)
	if err != nil {
		e.drop(&e.drops.Malformed, "malformed IKE header", remote, err)
		return
	}
	if int(h.Length) != len(data) {
		e.drop(&e.drops.Malformed, "IKE length mismatch", remote, nil)
		return
	}
	if h.Exchange == wire.IKE_SA_INIT {
		if h.IsResponse() {
			e.handleInitResponse(now, local, remote, data, &h)
			if sa := e.sas[h.SPIi]; sa != nil {
				e.charge(sa)
			}
		} else {
			e.handleInitRequest(now, local, remote, data, &h)
		}
		return
	}
	// The sender's I flag says which SPI is ours.
	ourSPI := h.SPIr
	if !h.IsInitiator() {
		ourSPI = h.SPIi
	}
	sa := e.sas[ourSPI]
	if sa == nil || sa.spiI != h.SPIi || (sa.spiR != h.SPIr) || sa.initiator == h.IsInitiator() {
		e.drop(&e.drops.UnknownSPI, "IKE message for unknown SA", remote, nil)
		return
	}
	if len(data) > maxPreauthMessage && !sa.authenticated() {
		e.drop(&e.drops.TooLarge, "message before authentication larger than the limit", remote, nil)
		return
	}
	if h.IsResponse() {
		e.handleResponse(now, sa, local, remote, data, &h)
	} else {
		e.handleRequest(now, sa, local, remote, data, &h)
	}
	e.charge(sa)
}

// maxPreauthMessage caps a message, whole or reassembled from fragments, before the
// peer is authenticated (strongSwan's max_packet).
const maxPreauthMessage = 10000

// authenticated reports whether sa's peer is authenticated (IKE_AUTH completed).
func (sa *IKESA) authenticated() bool {
	return sa.state == stateEstablished || sa.state == stateDeleting
}

// preauthHeld is what sa holds while its peer is not authenticated: the IKE_SA_INIT
// messages and fragments being reassembled.
func (sa *IKESA) preauthHeld() int {
	if sa.authenticated() || sa.state == stateDead {
		return 0
	}
	n := len(sa.initReq) + len(sa.initResp)
	for _, c := range sa.initCopies {
		n += len(c.data)
	}
	for _, f := range sa.frags {
		if f != nil {
			n += f.size
		}
	}
	return n
}

// charge brings Engine.preauth up to date with what sa holds now.
func (e *Engine) charge(sa *IKESA) {
	held := 0
	if e.byID[sa.id] == sa {
		held = sa.preauthHeld()
	}
	e.preauth += held - sa.charged
	sa.charged = held
}

// PreauthBytes is what SAs that are not authenticated hold, in bytes.
func (e *Engine) PreauthBytes() int { return e.preauth }

// replayAllowed rate-limits answers to copies of an answered request (cached
// responses): at most one per source every replayInterval, and replayBurst per SA per
// second from all sources, so that the cache cannot be used as a reflector.
func (e *Engine) replayAllowed(now time.Time, sa *IKESA, to netip.AddrPort) bool {
	recent := 0
	oldest := -1
	for i, r := range sa.replays {
		if now.Sub(r.at) < time.Second {
			recent++
		}
		if r.to == to && now.Sub(r.at) < replayInterval {
			return false
		}
		if oldest < 0 || r.at.Before(sa.replays[oldest].at) {
			oldest = i
		}
	}
	if recent >= replayBurst {
		return false
	}
	for i := range sa.replays {
		if sa.replays[i].to == to {
			sa.replays[i].at = now
			return true
		}
	}
	if len(sa.replays) < maxReplaySources {
		sa.replays = append(sa.replays, replayStamp{to: to, at: now})
	} else {
		sa.replays[oldest] = replayStamp{to: to, at: now}
	}
	return true
}

const (
	replayInterval   = 250 * time.Millisecond
	replayBurst      = 10
	maxReplaySources = 16
)

type replayStamp struct {
	to netip.AddrPort
	at time.Time
}

// drop counts a dropped datagram and logs it at debug level.
func (e *Engine) drop(ctr *atomic.Uint64, what string, from netip.AddrPort, err error) {
	n := ctr.Add(1)
	// Log the first few of each reason and then every 1000th, so a flood cannot fill
	// the log.
	if n <= 3 || n%1000 == 0 {
		if err != nil {
			e.log.Debug("drop: "+what, "from", from, "count", n, "err", err)
		} else {
			e.log.Debug("drop: "+what, "from", from, "count", n)
		}
	}
}

// handleResponse matches a response to our outstanding request.
func (e *Engine) handleResponse(now time.Time, sa *IKESA, local, remote netip.AddrPort, data []byte, h *wire.Header) {
	req := sa.pending
	if req == nil || h.MessageID != req.msgID || h.Exchange != req.exchange {
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
	sa.pending = nil
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
	if req.check == nil && sa.pm != nil && e.byID[sa.id] == sa && sa.state == stateEstablished {
		// While probing, a reply on another pair is a hint (RFC 4555 3.10).
		e.applyPath(now, sa, sa.pm.Reply(now, e.host(), nil, at, mobike.Reply{}), nil)
	}
	if e.sas[sa.localSPI()] == sa {
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
	switch {
	case h.MessageID+1 == sa.peerReqID && sa.lastResp != nil:
		// A retransmission: answer with the cached response, byte for byte, to where
		// this copy came from; for a fragmented request, only its first fragment
		// triggers that (RFC 7383 2.6.1). Only an identical copy of the request counts,
		// so that forged or corrupted datagrams cannot make us send.
		if fragNum > 1 {
			return
		}
		if sha256.Sum256(data) != sa.lastReqHash {
			e.drop(&e.drops.Decrypt, "altered copy of an answered request", remote, nil)
			return
		}
		if !e.replayAllowed(now, sa, remote) {
			e.drop(&e.drops.ReplayLimited, "copy of an answered request beyond the replay rate", remote, nil)
			return
		}
		e.drops.Retransmits.Add(1)
		for _, d := range sa.lastResp {
			e.emit(Send{Local: local, Remote: remote, Data: d})
		}
		return
	case h.MessageID != sa.peerReqID:
		e.drop(&e.drops.BadMessageID, "request outside the window", remote, nil)
		return
	}
	payloads, complete, _, err := e.openMessage(sa, data, m, false)
	if e.reassemblyRefused(err, remote) {
		return
	}
	if err == nil && fragNum == 1 {
		sa.reqFrag1Hash = sha256.Sum256(data)
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
	if fragNum != 0 {
		sa.lastReqHash = sa.reqFrag1Hash
	} else {
		sa.lastReqHash = sha256.Sum256(data)
	}
	e.armDPD(sa, now)
	if sa.pm != nil && sa.state == stateEstablished {
		// A new authenticated request: RFC 7296 2.23's dynamic update (without MOBIKE).
		e.applyPath(now, sa, sa.pm.Authenticated(now, mobike.Path{Local: local, Remote: remote}, sa.natLocal, sa.natRemote), nil)
	}
	switch h.Exchange {
	case wire.IKE_AUTH:
		if sa.state != stateInitDone || sa.initiator {
			e.drop(&e.drops.Unexpected, "IKE_AUTH in wrong state", remote, nil)
			return
		}
		e.handleAuthRequest(now, sa, local, remote, h, m)
	case wire.INFORMATIONAL:
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
	default:
		e.drop(&e.drops.Unexpected, "unknown exchange type", remote, nil)
	}
	e.endIfInvalidSyntax(now, sa)
	if e.sas[sa.localSPI()] == sa {
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
	if !sa.sentInvalidSyntax || e.byID[sa.id] != sa {
		return
	}
	e.log.Info("we answered a malformed request with INVALID_SYNTAX: the IKE SA is gone", "sa", sa.id)
	e.removeSA(now, sa, "INVALID_SYNTAX: the peer's request was malformed")
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
	sa.peerReqID = h.MessageID + 1
	sa.lastResp = datas
	if (sa.state == stateEstablished || sa.state == stateDeleting) && wire.FindNotify(payloads, wire.INVALID_SYNTAX) != nil {
		sa.sentInvalidSyntax = true
	}
	for _, d := range datas {
		e.emit(Send{Local: local, Remote: remote, Data: d})
	}
}

// queueRequest adds an exchange we want to start; it goes out when the window is free.
func (e *Engine) queueRequest(now time.Time, sa *IKESA, r *request) {
	sa.queue = append(sa.queue, r)
	e.startNext(now, sa)
	e.schedule(sa)
}

func (e *Engine) startNext(now time.Time, sa *IKESA) {
	if sa.pending != nil || len(sa.queue) == 0 {
		return
	}
	r := sa.queue[0]
	sa.queue = sa.queue[1:]
	r.msgID = sa.nextReqID
	sa.nextReqID++
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
	sa.pending = r
	r.sentAt = now
	r.tries = 0
	r.nextAt = now.Add(e.retransmitDelay(0))
	e.sendReq(sa, r)
}

// sendReq sends request r (or its fragments) where it goes now.
func (e *Engine) sendReq(sa *IKESA, r *request) {
	e.sendOn(e.reqPath(sa, r), r.data)
}

func (e *Engine) sendOn(p mobike.Path, datas [][]byte) {
	for _, d := range datas {
		e.emit(Send{Local: p.Local, Remote: p.Remote, Data: d})
	}
}

func (e *Engine) retransmitDelay(n int) time.Duration {
	d := float64(e.cfg.Retransmit.Timeout)
	for i := 0; i < n; i++ {
		d *= e.cfg.Retransmit.Base
	}
	return time.Duration(d)
}

// Tick runs the timers that are due at now.
func (e *Engine) Tick(now time.Time) []Action {
	for len(e.timers) > 0 && !e.timers[0].at.After(now) {
		t := heap.Pop(&e.timers).(timerEntry)
		sa := t.sa
		if !sa.wakeAt.Equal(t.at) || e.byID[sa.id] != sa {
			continue // stale entry
		}
		sa.wakeAt = time.Time{}
		e.onTimer(now, sa)
		e.charge(sa)
		if e.byID[sa.id] == sa {
			e.schedule(sa)
		}
	}
	return e.take()
}

// NextDeadline returns when Tick should be called next, if any timer is armed.
func (e *Engine) NextDeadline() (time.Time, bool) {
	for len(e.timers) > 0 {
		t := e.timers[0]
		if t.sa.wakeAt.Equal(t.at) && e.byID[t.sa.id] == t.sa {
			return t.at, true
		}
		heap.Pop(&e.timers)
	}
	return time.Time{}, false
}

func (e *Engine) onTimer(now time.Time, sa *IKESA) {
	if r := sa.pending; r != nil && !r.nextAt.After(now) {
		if r.tries >= e.cfg.Retransmit.Tries {
			e.log.Info("peer not responding", "sa", sa.id, "conn", sa.conn.Name, "peer", sa.remote, "exchange", r.exchange.String())
			e.peerDead(now, sa)
			return
		}
		r.tries++
		r.nextAt = now.Add(e.retransmitDelay(r.tries))
		var probes []mobike.Path
		var ds []mobike.Decision
		if sa.pm != nil && sa.state == stateEstablished {
			// The path manager may give a tentative path up, or probe others.
			probes, ds = sa.pm.Retransmit(now, e.host(), r.check, r.tries)
		}
		if r.kind == reqInit {
			e.rotateInit(sa, r)
		}
		e.sendReq(sa, r)
		for _, p := range probes {
			e.sendOn(p, r.data)
		}
		e.applyPath(now, sa, ds, nil)
		if e.byID[sa.id] != sa {
			return
		}
	}
	if !sa.halfOpenExpire.IsZero() && !sa.halfOpenExpire.After(now) {
		e.log.Debug("half-open SA expired", "sa", sa.id, "peer", sa.remote)
		e.removeSA(now, sa, "")
		return
	}
	if !sa.expireAt.IsZero() && !sa.expireAt.After(now) {
		e.log.Debug("forgetting a rekeyed IKE SA the peer did not delete", "sa", sa.id)
		e.removeSA(now, sa, "")
		return
	}
	if !sa.dpdAt.IsZero() && !sa.dpdAt.After(now) {
		sa.dpdAt = time.Time{}
		switch {
		case sa.state != stateEstablished || sa.pending != nil || len(sa.queue) > 0:
			e.armDPD(sa, now)
		case e.espAlive(sa, now):
			// ESP from the peer arrived meanwhile: it is alive, no check needed yet.
		default:
			e.livenessChecks++
			e.queueRequest(now, sa, e.dpdRequest(sa))
		}
	}
	if len(sa.lingering) > 0 {
		e.expireLingering(now, sa, false)
	}
	if sa.state != stateEstablished || sa.rekeyedTo != nil {
		return
	}
	for _, c := range slices.Clone(sa.children) {
		if !c.activateAt.IsZero() && !c.activateAt.After(now) {
			// The rekey initiator did not delete the old SA in time: switch anyway.
			e.activateOutbound(sa, c)
		}
		if !c.rekeyAt.IsZero() && !c.rekeyAt.After(now) && c.state == childInstalled {
			c.rekeyAt = time.Time{}
			e.rekeyChild(now, sa, c, 0)
			if c.state == childInstalled && c.rekeyAt.IsZero() {
				// Not now (an IKE SA rekey is under way): soon.
				c.rekeyAt = now.Add(time.Second)
			}
		}
	}
	if !sa.rekeyAt.IsZero() && !sa.rekeyAt.After(now) {
		sa.rekeyAt = time.Time{}
		e.rekeyIKE(now, sa, 0)
	}
}

// armDPD schedules the next liveness check dpd_delay after the last sign of life.
func (e *Engine) armDPD(sa *IKESA, now time.Time) {
	if sa.state != stateEstablished || sa.conn == nil || sa.conn.DPDDelay <= 0 {
		sa.dpdAt = time.Time{}
		return
	}
	sa.dpdAt = now.Add(sa.conn.DPDDelay)
}

// espAlive reports whether an inbound Child SA of sa accepted ESP within dpd_delay
// before now; if so, it arms the liveness check dpd_delay after that packet.
func (e *Engine) espAlive(sa *IKESA, now time.Time) bool {
	if e.cfg.InboundActivity == nil || sa.conn == nil || sa.conn.DPDDelay <= 0 {
		return false
	}
	var last time.Time
	consider := func(spi uint32) {
		if t := e.cfg.InboundActivity(spi); t.After(last) {
			last = t
		}
	}
	for _, c := range sa.children {
		consider(c.spiIn)
	}
	for _, l := range sa.lingering {
		consider(l.spi)
	}
	if last.IsZero() || !last.Add(sa.conn.DPDDelay).After(now) {
		return false
	}
	sa.dpdAt = last.Add(sa.conn.DPDDelay)
	return true
}

// armIKERekey schedules the IKE SA's rekey (rekey_time, jittered).
func (e *Engine) armIKERekey(sa *IKESA, now time.Time) {
	if sa.conn != nil && sa.conn.RekeyTime > 0 {
		sa.rekeyAt = now.Add(e.jitter(sa.conn.RekeyTime))
	}
}

// schedule (re)arms the SA's wake-up at its earliest deadline.
func (e *Engine) schedule(sa *IKESA) {
	var at time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	if sa.pending != nil {
		consider(sa.pending.nextAt)
	}
	consider(sa.halfOpenExpire)
	consider(sa.dpdAt)
	consider(sa.expireAt)
	for _, l := range sa.lingering {
		consider(l.at)
	}
	// Rekeys and deferred activations only run on an established SA (see onTimer).
	if sa.state == stateEstablished && sa.rekeyedTo == nil {
		consider(sa.rekeyAt)
		for _, c := range sa.children {
			if c.state == childInstalled {
				consider(c.rekeyAt)
			}
			consider(c.activateAt)
		}
	}
	if at.IsZero() || at.Equal(sa.wakeAt) {
		return
	}
	sa.wakeAt = at
	heap.Push(&e.timers, timerEntry{at: at, sa: sa})
}

// peerDead handles an exhausted retransmission.
func (e *Engine) peerDead(now time.Time, sa *IKESA) {
	conn := sa.conn
	wasUp := sa.state == stateEstablished
	deleting := sa.state == stateDeleting
	reason := "timeout: no response from peer"
	e.removeSA(now, sa, reason)
	if deleting {
		return
	}
	switch {
	case !sa.origInitiator || conn == nil:
	case wasUp && conn.DPDAction == "restart":
		e.log.Info("restarting connection after DPD failure", "conn", conn.Name)
		e.restart(now, conn)
	case !wasUp && sa.restarting:
		// A restart attempt found the peer still away: keep trying, paced by the
		// retransmission schedule.
		e.log.Info("peer still unreachable; trying again", "conn", conn.Name)
		e.restart(now, conn)
	}
}

// restart initiates conn again after its SA was lost; the attempt keeps retrying
// while the peer does not answer.
func (e *Engine) restart(now time.Time, conn *Conn) {
	id, err := e.initiate(now, conn)
	if err != nil {
		e.log.Warn("restart failed", "conn", conn.Name, "err", err)
		return
	}
	if sa := e.byID[id]; sa != nil {
		sa.restarting = true
	}
}

func (e *Engine) newSPI() (uint64, error) {
	var b [8]byte
	for {
		if _, err := io.ReadFull(e.rand, b[:]); err != nil {
			return 0, err
		}
		spi := binary.BigEndian.Uint64(b[:])
		if spi != 0 && e.sas[spi] == nil {
			return spi, nil
		}
	}
}

func (e *Engine) newChildSPI() (uint32, error) {
	var b [4]byte
	for {
		if _, err := io.ReadFull(e.rand, b[:]); err != nil {
			return 0, err
		}
		spi := binary.BigEndian.Uint32(b[:])
		// SPIs 0-255 are reserved (RFC 4303 2.1).
		if spi > 255 && e.spisIn[spi] == nil {
			return spi, nil
		}
	}
}

func (e *Engine) nonce() ([]byte, error) {
	n := make([]byte, 32)
	_, err := io.ReadFull(e.rand, n)
	return n, err
}

func (e *Engine) addSA(sa *IKESA) {
	e.nextSAID++
	sa.id = e.nextSAID
	e.byID[sa.id] = sa
	e.sas[sa.localSPI()] = sa
}

// removeSA forgets an SA, removes its Child SAs from the datapath and releases its
// virtual IPs. A non-empty reason is reported as an event.
func (e *Engine) removeSA(now time.Time, sa *IKESA, reason string) {
	if e.byID[sa.id] != sa {
		return
	}
	for len(sa.children) > 0 {
		e.retireChild(now, sa, sa.children[0], false)
	}
	e.expireLingering(now, sa, true)
	for spi := range sa.reserved {
		e.releaseSPI(sa, spi)
	}
	if sa.rekeySPI != 0 && e.sas[sa.rekeySPI] == sa {
		delete(e.sas, sa.rekeySPI)
	}
	if sa.firstChildIn != 0 {
		delete(e.spisIn, sa.firstChildIn)
	}
	if len(sa.vips) > 0 {
		// Ours (we are the original initiator) or the peer's, whatever a rekey made of
		// the RFC 7296 roles.
		e.emit(VirtualIPs{IKESA: sa.id, Local: sa.origInitiator, Addrs: sa.vips, Remove: true})
		if sa.origInitiator {
			sa.vips = nil
		} else {
			e.releaseVIPs(sa)
		}
	}
	if sa.state == stateInitDone {
		e.halfOpenDone(sa)
	}
	if !sa.initiator {
		delete(e.initIndex, sa.halfKey)
	}
	e.unindexPeer(sa)
	wasUp := sa.state == stateEstablished || sa.state == stateDeleting
	sa.state = stateDead
	delete(e.sas, sa.localSPI())
	delete(e.byID, sa.id)
	e.charge(sa)
	// Its keys are of no use any more: overwrite what we hold of them.
	sa.keys.Zero()
	if sa.skIn != nil {
		ikecrypto.ZeroSK(sa.skIn)
		ikecrypto.ZeroSK(sa.skOut)
	}
	name := ""
	if sa.conn != nil {
		name = sa.conn.Name
	}
	if reason != "" {
		kind := EventFailed
		if wasUp {
			kind = EventDeleted
		}
		e.emit(Event{IKESA: sa.id, Conn: name, Kind: kind, Reason: reason})
	}
}

// peerKey hashes an identity (FNV-1a over its type and data) for Engine.byPeer; it is
// never 0.
func peerKey(id *wire.ID) uint64 {
	h := uint64(14695981039346656037)
	mix := func(b byte) {
		h ^= uint64(b)
		h *= 1099511628211
	}
	mix(byte(id.IDType))
	for _, b := range id.Data {
		mix(b)
	}
	return h | 1
}

// indexPeer records sa, whose peer is authenticated, under its peer's identity.
func (e *Engine) indexPeer(sa *IKESA) {
	if sa.peerKey != 0 {
		return
	}
	sa.peerKey = peerKey(&sa.remoteID)
	e.byPeer[sa.peerKey] = append(e.byPeer[sa.peerKey], sa)
}

func (e *Engine) unindexPeer(sa *IKESA) {
	if sa.peerKey == 0 {
		return
	}
	l := e.byPeer[sa.peerKey]
	for i, x := range l {
		if x == sa {
			l = slices.Delete(l, i, i+1)
			break
		}
	}
	if len(l) == 0 {
		delete(e.byPeer, sa.peerKey)
	} else {
		e.byPeer[sa.peerKey] = l
	}
	sa.peerKey = 0
}

// halfOpenDone takes a half-open SA off the counts.
func (e *Engine) halfOpenDone(sa *IKESA) {
	e.nHalf--
	counts := e.unproved
	if sa.provedCookie {
		counts = e.proved
	}
	if counts[sa.srcBlock] <= 1 {
		delete(counts, sa.srcBlock)
	} else {
		counts[sa.srcBlock]--
	}
}

// sourceBlock is the source a peer address counts as for the half-open limits: an
// IPv4 address, or the IPv6 prefix it is in.
func (e *Engine) sourceBlock(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(e.cfg.IPv6SourcePrefix)
	return p
}

// timerHeap orders SA wake-ups; stale entries are skipped when popped.
type timerEntry struct {
	at time.Time
	sa *IKESA
}

type timerHeap []timerEntry

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timerEntry)) }
func (h *timerHeap) Pop() any {
	old := *h
	n := len(old)
	x := old[n-1]
	old[n-1] = timerEntry{}
	*h = old[:n-1]
	return x
}

// cryptoRandReader is the default randomness source (crypto/rand); for tests.
func cryptoRandReader() io.Reader { return rand.Reader }
