package ike

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/mobikevpn/mobikevpn/wire"
)

var errNotProtected = errors.New("message has no SK payload")

// Engine owns every IKE SA of the host. It is not safe for concurrent use: one
// goroutine feeds it datagrams, commands and the time, and carries out the actions it
// returns.
type Engine struct {
	// testSkipKeyUpdate: tests only, no key update after an additional key exchange.
	testSkipKeyUpdate bool
	// testKeyInputs: tests only, shown the shared secrets a Child SA's KEYMAT or a
	// rekeyed IKE SA's SKEYSEED is derived from (SK(0), then SK(1)...), before they are
	// cleared.
	testKeyInputs func(gir []byte, addKE [][]byte)

	cfg   Config
	log   *slog.Logger
	rand  io.Reader
	conns map[string]*Conn
	pools map[string]*pool

	store store     // the IKE SAs and inbound ESP SPIs, indexed
	gate  admission // the limits before authentication, cookies

	// localAddrs are the host's usable addresses (nil: not known); clusterAddrs those
	// of the other nodes of the gateway's cluster.
	localAddrs, clusterAddrs []netip.Addr

	livenessChecks uint64 // DPD requests sent
	stats          struct{ childRekeys, cookiesSent, switchesSent uint64 }

	// redirects are the times a connection followed a REDIRECT lately, by name.
	redirects map[string][]time.Time
	// draining: new IKE SAs are not accepted; peers that follow redirects are sent to
	// the first address of drainTo of their family (Drain).
	draining bool
	drainTo  []netip.Addr

	timers timerHeap
	// retries are the kept-up connections that are not up (keepup.go).
	retries map[string]*connRetry
	// resolving are the kept-up connections waiting for their host names, hostAddrs
	// what those resolved to (hosts.go).
	resolving map[string]bool
	hostAddrs map[string]resolvedHosts
	out       []Action

	// deleted keeps our answers to the peers' Deletes of IKE SAs that are gone, for
	// their retransmissions.
	deleted deletedAnswers

	drops Drops
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
	Draining      atomic.Uint64 // IKE_SA_INITs while draining from peers that cannot be redirected
	VIPWait       atomic.Uint64 // IKE_AUTHs not answered yet: their virtual IP is not in hand (PoolConfig.Leased)
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
		"ike_draining":        d.Draining.Load(),
		"ike_vip_wait":        d.VIPWait.Load(),
	}
}

// New returns an engine for cfg.
func New(cfg Config) (*Engine, error) {
	cfg.setDefaults()
	e := &Engine{
		cfg:   cfg,
		log:   cfg.Logger,
		rand:  cfg.Rand,
		conns: make(map[string]*Conn),
		pools: make(map[string]*pool),
		store: newStore(),
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
	if err := poolsOverlap(cfg.Pools); err != nil {
		return nil, err
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
	var err error
	if e.gate, err = newAdmission(e.rand); err != nil {
		return nil, err
	}
	return e, nil
}

// Drops returns the engine's drop counters (safe to read from any goroutine).
func (e *Engine) Drops() *Drops { return &e.drops }

func (e *Engine) emit(a Action) {
	if ev, ok := a.(Event); ok && ev.PeerID == "" && !ev.Peer.IsValid() {
		if sa := e.store.get(ev.IKESA); sa != nil {
			ev.PeerID, ev.Peer = peerIDString(sa), sa.remote
			a = ev
		}
	}
	e.out = append(e.out, a)
}

// peerIDString is sa's peer identity as status shows it, "" before it is known.
func peerIDString(sa *IKESA) string {
	if len(sa.remoteID.Data) == 0 {
		return ""
	}
	return sa.remoteID.String()
}

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
			if sa := e.store.bySPI(h.SPIi); sa != nil {
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
	sa := e.store.bySPI(ourSPI)
	if sa == nil || sa.spiI != h.SPIi || (sa.spiR != h.SPIr) || sa.initiator == h.IsInitiator() {
		if sa == nil && e.answerDeleted(now, local, remote, data, &h, ourSPI) {
			return
		}
		e.drop(&e.drops.UnknownSPI, "IKE message for unknown SA", remote, nil)
		return
	}
	if sa.handedOver {
		e.drop(&e.drops.Unexpected, "IKE message for an SA exported to another engine", remote, nil)
		e.handedOverMessage(sa, data, &h)
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

// cryptoRandReader is the default randomness source (crypto/rand); for tests.
func cryptoRandReader() io.Reader { return rand.Reader }
