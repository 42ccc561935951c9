package ike

import (
	"crypto/sha256"
	"net/netip"
	"time"

	"github.com/mobikevpn/mobikevpn/wire"
)

// An IKE SA the peer deleted is gone as soon as we answer its Delete; should that
// answer be lost, the peer's retransmissions would find nothing, and the peer would
// learn that the SA is gone only when its retransmissions ran out (RFC 7296 2.4), long
// after it was. So the answer is kept, sealed as sent, for deletedSALife after the SA
// went (RFC 7296 2.1: the responder answers a retransmitted request with the response
// it sent): a byte-identical copy of the Delete from the address it came from gets
// it again, at most maxDeletedAnswers times. Nothing else is kept of the SA.

// deletedSALife bounds how long the answer to a peer's Delete is kept: longer than a
// peer retransmits (strongSwan's defaults give up after 165 s).
const deletedSALife = 3 * time.Minute

// maxDeletedAnswers bounds how often a kept answer is sent again.
const maxDeletedAnswers = 8

// maxDeletedSAs bounds how many answers are kept; beyond it the oldest go first.
const maxDeletedSAs = 1 << 16

// deletedSA is what is kept of an IKE SA the peer deleted.
type deletedSA struct {
	spiI, spiR uint64
	msgID      uint32
	reqHash    [32]byte // SHA-256 of the Delete request (its first fragment)
	resp       [][]byte // our answer, as sent
	from       netip.AddrPort
	until      time.Time
	answers    int
}

// keepDeleted keeps the answer sa just sent to the peer's Delete (request msgID, from
// remote), before sa is removed.
func (e *Engine) keepDeleted(now time.Time, sa *IKESA, msgID uint32, remote netip.AddrPort) {
	if sa.win.lastResp == nil {
		return
	}
	e.expireDeleted(now)
	for len(e.deletedOrder) >= maxDeletedSAs {
		e.dropOldestDeleted()
	}
	if e.deleted == nil {
		e.deleted = make(map[uint64]*deletedSA)
	}
	d := &deletedSA{spiI: sa.spiI, spiR: sa.spiR, msgID: msgID, reqHash: sa.win.lastReqHash, resp: sa.win.lastResp,
		from: remote, until: now.Add(deletedSALife)}
	spi := sa.localSPI()
	e.deleted[spi] = d
	e.deletedOrder = append(e.deletedOrder, deletedRef{spi: spi, d: d})
}

// deletedRef is an entry of Engine.deletedOrder: oldest first.
type deletedRef struct {
	spi uint64
	d   *deletedSA
}

func (e *Engine) dropOldestDeleted() {
	r := e.deletedOrder[0]
	e.deletedOrder[0] = deletedRef{}
	e.deletedOrder = e.deletedOrder[1:]
	if e.deleted[r.spi] == r.d {
		delete(e.deleted, r.spi)
	}
	if len(e.deletedOrder) == 0 {
		e.deletedOrder = nil // let the backing array go
	}
}

// expireDeleted forgets the answers kept longer than deletedSALife.
func (e *Engine) expireDeleted(now time.Time) {
	for len(e.deletedOrder) > 0 && !e.deletedOrder[0].d.until.After(now) {
		e.dropOldestDeleted()
	}
}

// answerDeleted answers a retransmitted Delete of an IKE SA that is gone (request h
// for our SPI ourSPI) with the answer kept for it; it reports whether it did.
func (e *Engine) answerDeleted(now time.Time, local, remote netip.AddrPort, data []byte, h *wire.Header, ourSPI uint64) bool {
	e.expireDeleted(now)
	d := e.deleted[ourSPI]
	if d == nil || h.IsResponse() || h.Exchange != wire.INFORMATIONAL || d.spiI != h.SPIi || d.spiR != h.SPIr ||
		h.MessageID != d.msgID || remote != d.from || d.answers >= maxDeletedAnswers {
		return false
	}
	if sha256.Sum256(data) != d.reqHash {
		return false
	}
	d.answers++
	e.drops.Retransmits.Add(1)
	for _, b := range d.resp {
		e.emit(Send{Local: local, Remote: remote, Data: b})
	}
	return true
}
