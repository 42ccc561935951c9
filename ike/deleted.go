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

// deletedAnswers keeps the answers to the peers' Deletes of IKE SAs that are gone, by
// our SPI, oldest first in order; bounded by maxDeletedSAs and deletedSALife.
type deletedAnswers struct {
	bySPI map[uint64]*deletedSA
	order []deletedRef
}

// deletedRef is an entry of deletedAnswers.order: oldest first.
type deletedRef struct {
	spi uint64
	d   *deletedSA
}

// keep keeps d, the answer for our SPI spi.
func (k *deletedAnswers) keep(now time.Time, spi uint64, d *deletedSA) {
	k.expire(now)
	for len(k.order) >= maxDeletedSAs {
		k.dropOldest()
	}
	if k.bySPI == nil {
		k.bySPI = make(map[uint64]*deletedSA)
	}
	k.bySPI[spi] = d
	k.order = append(k.order, deletedRef{spi: spi, d: d})
}

func (k *deletedAnswers) dropOldest() {
	r := k.order[0]
	k.order[0] = deletedRef{}
	k.order = k.order[1:]
	if k.bySPI[r.spi] == r.d {
		delete(k.bySPI, r.spi)
	}
	if len(k.order) == 0 {
		k.order = nil // let the backing array go
	}
}

// expire forgets the answers kept longer than deletedSALife.
func (k *deletedAnswers) expire(now time.Time) {
	for len(k.order) > 0 && !k.order[0].d.until.After(now) {
		k.dropOldest()
	}
}

// answer returns the answer to send again for a copy (data, header h, from remote) of
// the Delete that ended the IKE SA of our SPI ourSPI, nil when there is none: only a
// byte-identical copy from where the Delete came, at most maxDeletedAnswers times.
func (k *deletedAnswers) answer(now time.Time, remote netip.AddrPort, data []byte, h *wire.Header, ourSPI uint64) [][]byte {
	k.expire(now)
	d := k.bySPI[ourSPI]
	if d == nil || h.IsResponse() || h.Exchange != wire.INFORMATIONAL || d.spiI != h.SPIi || d.spiR != h.SPIr ||
		h.MessageID != d.msgID || remote != d.from || d.answers >= maxDeletedAnswers {
		return nil
	}
	if sha256.Sum256(data) != d.reqHash {
		return nil
	}
	d.answers++
	return d.resp
}

// keepDeleted keeps the answer sa just sent to the peer's Delete (request msgID, from
// remote), before sa is removed.
func (e *Engine) keepDeleted(now time.Time, sa *IKESA, msgID uint32, remote netip.AddrPort) {
	if sa.win.lastResp == nil {
		return
	}
	e.deleted.keep(now, sa.localSPI(), &deletedSA{spiI: sa.spiI, spiR: sa.spiR, msgID: msgID, reqHash: sa.win.lastReqHash,
		resp: sa.win.lastResp, from: remote, until: now.Add(deletedSALife)})
}

// answerDeleted answers a retransmitted Delete of an IKE SA that is gone (request h
// for our SPI ourSPI) with the answer kept for it; it reports whether it did.
func (e *Engine) answerDeleted(now time.Time, local, remote netip.AddrPort, data []byte, h *wire.Header, ourSPI uint64) bool {
	resp := e.deleted.answer(now, remote, data, h, ourSPI)
	if resp == nil {
		return false
	}
	e.drops.Retransmits.Add(1)
	for _, b := range resp {
		e.emit(Send{Local: local, Remote: remote, Data: b})
	}
	return true
}
