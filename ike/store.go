package ike

import (
	"encoding/binary"
	"io"
	"net/netip"
	"slices"
	"time"

	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/wire"
)

// The SA store: SPIs, nonces, the IKE SAs by SPI, id and peer identity, and their
// removal.

type halfOpenKey struct {
	spiI   uint64
	remote netip.Addr
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
