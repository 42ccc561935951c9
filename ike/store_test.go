package ike

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/mobikevpn/mobikevpn/wire"
)

// The SA store on its own: what it files, finds and forgets, and the SPIs it draws.

func TestStoreIndexes(t *testing.T) {
	s := newStore()
	peer := wire.ID{IDType: wire.ID_RFC822_ADDR, Data: []byte("alice@example.org")}
	key := halfOpenKey{spiI: 0x1111, remote: netip.MustParseAddr("192.0.2.10")}
	a := &IKESA{spiI: 0x1111, spiR: 0x2222, halfKey: key, remoteID: peer}
	b := &IKESA{spiI: 0x3333, spiR: 0x4444, initiator: true, remoteID: peer}
	s.add(a)
	s.add(b)
	if a.id == b.id || s.get(a.id) != a || !s.live(b) || s.count() != 2 {
		t.Fatalf("ids %d %d, count %d", a.id, b.id, s.count())
	}
	// Our SPI is the responder's for a, the initiator's for b.
	if s.bySPI(0x2222) != a || s.bySPI(0x3333) != b || s.bySPI(0x1111) != nil || !s.owns(a) {
		t.Error("filed under the wrong SPI")
	}
	s.indexHalfOpen(key, a)
	s.indexPeer(a)
	s.indexPeer(b)
	s.indexPeer(b) // twice: once in the index
	if s.halfOpen(key) != a || len(s.peerSAs(a.peerKey)) != 2 {
		t.Fatalf("half-open %v, peer's SAs %d", s.halfOpen(key), len(s.peerSAs(a.peerKey)))
	}
	// A rekey of ours reserves its new SPI under the old SA until the answer.
	b.rekeySPI = 0x5555
	s.reserveSPI(0x5555, b)
	if s.bySPI(0x5555) != b {
		t.Error("reserved SPI not found")
	}
	s.releaseSPI(0x5555, a) // not a's: stays
	if s.bySPI(0x5555) != b {
		t.Error("another SA released b's reservation")
	}
	s.remove(b)
	if s.live(b) || s.bySPI(0x3333) != nil || s.bySPI(0x5555) != nil || len(s.peerSAs(a.peerKey)) != 1 || b.peerKey != 0 {
		t.Error("b left in an index")
	}
	s.remove(a)
	if s.count() != 0 || s.halfOpen(key) != nil || len(s.byPeer) != 0 || len(s.sas) != 0 {
		t.Errorf("left: %d SAs, %d SPIs, %d peers", s.count(), len(s.sas), len(s.byPeer))
	}
	var n int
	for range s.all() {
		n++
	}
	if n != 0 {
		t.Errorf("all yields %d SAs of an empty store", n)
	}
}

func TestStoreDrawsFreeSPIs(t *testing.T) {
	s := newStore()
	s.add(&IKESA{spiI: 7, initiator: true})
	// The random source first yields SPIs that are taken or invalid, then a free one.
	var r bytes.Buffer
	for _, v := range []uint64{0, 7, 9} {
		binary.Write(&r, binary.BigEndian, v)
	}
	if spi, err := s.newSPI(&r); err != nil || spi != 9 {
		t.Errorf("IKE SPI %d, %v: want 9", spi, err)
	}
	s.claimInbound(300, &ChildSA{spiIn: 300})
	r.Reset()
	for _, v := range []uint32{0, 255, 300, 256} {
		binary.Write(&r, binary.BigEndian, v)
	}
	if spi, err := s.newChildSPI(&r); err != nil || spi != 256 {
		t.Errorf("ESP SPI %d, %v: want 256 (0-255 reserved, 300 taken)", spi, err)
	}
	if _, err := s.newChildSPI(&r); err == nil {
		t.Error("an exhausted random source gave an SPI")
	}
	s.freeInbound(300)
	if s.inbound(300) != nil || s.newChildID() != 1 || s.newChildID() != 2 {
		t.Error("inbound SPI not freed, or Child SA ids not counted")
	}
}
