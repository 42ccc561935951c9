package ike

import (
	"encoding/binary"
	"io"
	"iter"
	"maps"
	"net/netip"
	"slices"
	"time"

	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/wire"
)

// store holds the IKE SAs of an engine and finds them: by our SPI (also the SPI an IKE
// SA rekey of ours reserved), by id, by the IKE_SA_INIT request that made a half-open
// one, by the peer's identity; and the inbound ESP SPIs in use. It draws SPIs that are
// free. It decides nothing: the engine adds, looks up and removes.
type store struct {
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

	nextSAID, nextChildID uint64
}

func newStore() store {
	return store{
		sas:       make(map[uint64]*IKESA),
		byID:      make(map[uint64]*IKESA),
		initIndex: make(map[halfOpenKey]*IKESA),
		spisIn:    make(map[uint32]*ChildSA),
		byPeer:    make(map[uint64][]*IKESA),
	}
}

type halfOpenKey struct {
	spiI   uint64
	remote netip.Addr
}

// newSPI draws an IKE SPI of ours that is not in use.
func (s *store) newSPI(rand io.Reader) (uint64, error) {
	var b [8]byte
	for {
		if _, err := io.ReadFull(rand, b[:]); err != nil {
			return 0, err
		}
		spi := binary.BigEndian.Uint64(b[:])
		if spi != 0 && s.sas[spi] == nil {
			return spi, nil
		}
	}
}

// newChildSPI draws an inbound ESP SPI that is not in use.
func (s *store) newChildSPI(rand io.Reader) (uint32, error) {
	var b [4]byte
	for {
		if _, err := io.ReadFull(rand, b[:]); err != nil {
			return 0, err
		}
		spi := binary.BigEndian.Uint32(b[:])
		// SPIs 0-255 are reserved (RFC 4303 2.1).
		if spi > 255 && s.spisIn[spi] == nil {
			return spi, nil
		}
	}
}

// add gives sa its id and files it under our SPI.
func (s *store) add(sa *IKESA) {
	s.nextSAID++
	sa.id = s.nextSAID
	s.byID[sa.id] = sa
	s.sas[sa.localSPI()] = sa
}

// all yields every IKE SA, in no particular order; count is how many there are.
func (s *store) all() iter.Seq[*IKESA] { return maps.Values(s.byID) }

func (s *store) count() int { return len(s.byID) }

// live reports whether sa is (still) in the store.
func (s *store) live(sa *IKESA) bool { return s.byID[sa.id] == sa }

// get returns the IKE SA with id, nil when there is none.
func (s *store) get(id uint64) *IKESA { return s.byID[id] }

// bySPI returns the IKE SA that our SPI spi belongs to, nil when none.
func (s *store) bySPI(spi uint64) *IKESA { return s.sas[spi] }

// owns reports whether sa is the IKE SA filed under its own SPI (not replaced).
func (s *store) owns(sa *IKESA) bool { return s.sas[sa.localSPI()] == sa }

// reserveSPI files sa under spi too (the SPI of the IKE SA its rekey creates), so that
// the response and stray copies find it; releaseSPI undoes that.
func (s *store) reserveSPI(spi uint64, sa *IKESA) { s.sas[spi] = sa }

func (s *store) releaseSPI(spi uint64, sa *IKESA) {
	if s.sas[spi] == sa {
		delete(s.sas, spi)
	}
}

// halfOpen returns the responder SA that the IKE_SA_INIT request key made.
func (s *store) halfOpen(key halfOpenKey) *IKESA { return s.initIndex[key] }

func (s *store) indexHalfOpen(key halfOpenKey, sa *IKESA) { s.initIndex[key] = sa }

// newChildID numbers a Child SA.
func (s *store) newChildID() uint64 {
	s.nextChildID++
	return s.nextChildID
}

// inbound returns the Child SA (or reservation) that holds inbound SPI spi.
func (s *store) inbound(spi uint32) *ChildSA { return s.spisIn[spi] }

// claimInbound files c under its inbound SPI spi; freeInbound releases the SPI.
func (s *store) claimInbound(spi uint32, c *ChildSA) { s.spisIn[spi] = c }

func (s *store) freeInbound(spi uint32) { delete(s.spisIn, spi) }

// remove takes sa out of every index.
func (s *store) remove(sa *IKESA) {
	if sa.rekeySPI != 0 {
		s.releaseSPI(sa.rekeySPI, sa)
	}
	if !sa.initiator && s.initIndex[sa.halfKey] == sa {
		delete(s.initIndex, sa.halfKey)
	}
	s.unindexPeer(sa)
	delete(s.sas, sa.localSPI())
	delete(s.byID, sa.id)
}

// nonce draws a nonce (RFC 7296 2.10: at least half the PRF's key size; 32 bytes).
func (e *Engine) nonce() ([]byte, error) {
	n := make([]byte, 32)
	_, err := io.ReadFull(e.rand, n)
	return n, err
}

// removeSA forgets an SA, removes its Child SAs from the datapath and releases its
// virtual IPs. A non-empty reason is reported as an event.
func (e *Engine) removeSA(now time.Time, sa *IKESA, reason string) {
	if !e.store.live(sa) {
		return
	}
	for len(sa.children) > 0 {
		e.retireChild(now, sa, sa.children[0], false)
	}
	e.expireLingering(now, sa, true)
	e.dropFollowups(sa)
	for spi := range sa.reserved {
		e.releaseSPI(sa, spi)
	}
	if sa.firstChildIn != 0 {
		e.store.freeInbound(sa.firstChildIn)
	}
	if len(sa.vips) > 0 {
		// Ours (we are the original initiator) or the peer's, whatever a rekey made of
		// the RFC 7296 roles.
		e.emit(VirtualIPs{IKESA: sa.id, Conn: connName(sa), Local: sa.origInitiator, Addrs: sa.vips, Remove: true})
		if sa.origInitiator {
			sa.vips = nil
		} else {
			e.releaseVIPs(sa)
		}
	}
	if sa.state == stateInitDone {
		e.gate.closed(sa.srcBlock, sa.provedCookie)
	}
	sa.endEAP()
	e.store.remove(sa)
	wasUp := sa.state == stateEstablished || sa.state == stateDeleting
	sa.state = stateDead
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
		e.emit(Event{IKESA: sa.id, Conn: name, Kind: kind, Reason: reason, PeerID: peerIDString(sa), Peer: sa.remote})
	}
	if !wasUp {
		e.attemptFailed(now, sa, reason) // keepup.go
	}
}

// peerKey hashes an identity (FNV-1a over its type and data) for store.byPeer; it is
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
func (s *store) indexPeer(sa *IKESA) {
	if sa.peerKey != 0 {
		return
	}
	sa.peerKey = peerKey(&sa.remoteID)
	s.byPeer[sa.peerKey] = append(s.byPeer[sa.peerKey], sa)
}

// peerSAs returns the IKE SAs of the peer identity with key (peerKey).
func (s *store) peerSAs(key uint64) []*IKESA { return s.byPeer[key] }

func (s *store) unindexPeer(sa *IKESA) {
	if sa.peerKey == 0 {
		return
	}
	l := s.byPeer[sa.peerKey]
	for i, x := range l {
		if x == sa {
			l = slices.Delete(l, i, i+1)
			break
		}
	}
	if len(l) == 0 {
		delete(s.byPeer, sa.peerKey)
	} else {
		s.byPeer[sa.peerKey] = l
	}
	sa.peerKey = 0
}
