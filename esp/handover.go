package esp

import (
	"fmt"
	"net/netip"
	"time"
)

// Handing an SA to another datapath (a cluster node that continues it, SAConfig.Seq
// there) without a packet lost or accepted twice:
//
//   - Outbound: ReserveOutbound caps this SA below a bound; the other side starts above
//     it. Both may send meanwhile (the peer may still be here); no sequence number, no
//     AEAD nonce, is used twice. UnreserveOutbound lifts the cap if the hand-over fails.
//   - Inbound: HandInbound stops this SA accepting packets and returns the highest
//     sequence number it accepted, which the other side's window starts from: from that
//     moment one window, the other side's, decides what is new. The SA's packets are
//     held here until ForwardInbound sends them, unchanged, to the other side, and
//     every later one after them; ResumeInbound takes the SA back instead.

// MinReserve is the least ReserveOutbound keeps for the SA it caps: more than the
// goroutines that may each take one sequence number past a bound they read just before
// it was lowered.
const MinReserve = 1024

// Bounds of what an SA being handed over holds until ForwardInbound, and of what all
// of them hold together. A hand-over holds for the time the other node takes to import
// the SA (tens of milliseconds, seconds while etcd elects a leader): 64k packets cover
// the acknowledgements of a fast TCP stream for a while.
const (
	maxHeldPackets  = 1 << 16
	maxHeldBytes    = 16 << 20
	maxHeldAllBytes = 64 << 20
)

// handWait bounds how long HandInbound waits for packets already being opened.
const handWait = 2 * time.Second

// handState is an inbound SA's hand-over: the packets held, then where they go.
type handState struct {
	held  [][]byte
	bytes int
	ep    *endpoint // nil: holding
}

// hold keeps a copy of p, within the bounds (sa.mu held).
func (h *handState) hold(d *Datapath, sa *inSA, p []byte) {
	if len(h.held) >= maxHeldPackets || h.bytes+len(p) > maxHeldBytes || !d.reserveHeld(len(p)) {
		sa.ctr.dropped.Add(1)
		d.drop(dropHandQueue, nil)
		return
	}
	h.held = append(h.held, append([]byte(nil), p...))
	h.bytes += len(p)
}

// reserveHeld counts n more bytes held by hand-overs, unless that would pass the bound
// for all of them.
func (d *Datapath) reserveHeld(n int) bool {
	if d.heldBytes.Add(int64(n)) > maxHeldAllBytes {
		d.heldBytes.Add(-int64(n))
		return false
	}
	return true
}

// release gives back what h held to the datapath's total (sa.mu held, or h detached).
func (h *handState) release(d *Datapath) {
	d.heldBytes.Add(-int64(h.bytes))
}

// forward sends the ESP packet p of handed SA sa on to ep, unchanged.
func (d *Datapath) forward(sa *inSA, ep *endpoint, p []byte) {
	if err := d.sendOne(d.conns[ep.conn], ep, p); err != nil {
		sa.ctr.dropped.Add(1)
		d.drop(dropSend, err)
		return
	}
	sa.ctr.packets.Add(1)
	sa.ctr.bytes.Add(uint64(len(p)))
}

// HandInbound stops the inbound SA spi accepting packets: it returns the highest
// sequence number the SA accepted, once the packets already being opened are done.
// From then on its packets are held (at most 64k, 16 MiB; 64 MiB for all such SAs
// together) for ForwardInbound.
func (d *Datapath) HandInbound(spi uint32) (uint64, error) {
	sa := d.in.Load().get(spi)
	if sa == nil {
		return 0, fmt.Errorf("esp: no inbound SA with SPI %#08x", spi)
	}
	sa.mu.Lock()
	if sa.hand != nil {
		sa.mu.Unlock()
		return 0, fmt.Errorf("esp: inbound SPI %#08x is being handed over already", spi)
	}
	sa.hand = &handState{}
	sa.mu.Unlock()
	deadline := time.Now().Add(handWait)
	for {
		sa.mu.Lock()
		n, top := sa.pending, sa.win.top
		sa.mu.Unlock()
		if n == 0 {
			return top, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("esp: inbound SPI %#08x: %d packets still being opened after %v", spi, n, handWait)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// ForwardInbound sends the packets held for the handed inbound SA spi, and every later
// one, unchanged (ESP in UDP) from local to to, where the SA continues.
func (d *Datapath) ForwardInbound(spi uint32, local, to netip.AddrPort) error {
	ep, err := d.newEndpoint(local, to)
	if err != nil {
		return err
	}
	sa, held, err := d.takeHeld(spi, func(sa *inSA) { sa.hand.ep = ep })
	if err != nil {
		return err
	}
	// Packets arriving meanwhile go straight on: the other side's window takes them in
	// any order.
	for _, p := range held {
		d.forward(sa, ep, p)
	}
	return nil
}

// ResumeInbound takes back the handed inbound SA spi (the hand-over did not happen): it
// accepts packets again, its window as it was. The packets held meanwhile are dropped
// (counted as HandQueue): they cannot go through the window again in order.
func (d *Datapath) ResumeInbound(spi uint32) error {
	sa, held, err := d.takeHeld(spi, func(sa *inSA) { sa.hand = nil })
	if err != nil {
		return err
	}
	for range held {
		sa.ctr.dropped.Add(1)
		d.drop(dropHandQueue, nil)
	}
	return nil
}

// takeHeld ends the holding of the handed inbound SA spi: it takes the packets held,
// and then, under the SA's lock, next says what becomes of the SA's packets.
func (d *Datapath) takeHeld(spi uint32, next func(sa *inSA)) (*inSA, [][]byte, error) {
	sa := d.in.Load().get(spi)
	if sa == nil {
		return nil, nil, fmt.Errorf("esp: no inbound SA with SPI %#08x", spi)
	}
	sa.mu.Lock()
	defer sa.mu.Unlock()
	h := sa.hand
	if h == nil || h.ep != nil {
		return nil, nil, fmt.Errorf("esp: inbound SPI %#08x is not held for a hand-over (or is forwarded already)", spi)
	}
	held := h.held
	h.release(d)
	h.held, h.bytes = nil, 0
	next(sa)
	return sa, held, nil
}

// ReserveOutbound caps the outbound SA of child so that the sequence numbers above a
// bound go to whoever continues the SA elsewhere (SAConfig.Seq there): this SA may
// still send reserve packets after the last one it sent, and no more. It returns the
// bound, the last sequence number this SA can use. The two never use the same number,
// so no AEAD nonce repeats under the SA's key.
func (d *Datapath) ReserveOutbound(child uint64, reserve uint64) (uint64, error) {
	if reserve < MinReserve {
		return 0, fmt.Errorf("esp: a reserve of %d sequence numbers, less than %d", reserve, MinReserve)
	}
	sa := d.out.Load().child(child)
	if sa == nil {
		return 0, fmt.Errorf("esp: no outbound SA for child %d", child)
	}
	for {
		s, limit := sa.seq.Load(), sa.seqMax.Load()
		if s >= limit || limit-s <= reserve {
			return 0, fmt.Errorf("esp: outbound SPI %#08x has %d sequence numbers left, not more than the reserve %d", sa.spi, limit-min(s, limit), reserve)
		}
		bound := s + reserve
		if !sa.seqMax.CompareAndSwap(limit, bound) {
			continue
		}
		// Senders that read the old limit just before it was lowered take at most one
		// number each beyond what they saw; while the SA is far from the bound now,
		// none of them can pass it.
		if now := sa.seq.Load(); now+MinReserve/2 > bound {
			return 0, fmt.Errorf("esp: outbound SPI %#08x sent %d packets while it was being capped: it is stopped at %d", sa.spi, now-s, bound)
		}
		return bound, nil
	}
}

// UnreserveOutbound lifts the cap ReserveOutbound put at bound on the outbound SA of
// child (the hand-over did not happen): it may use its sequence numbers to the end
// again. A cap lowered since (a hard limit) stays.
func (d *Datapath) UnreserveOutbound(child uint64, bound uint64) error {
	sa := d.out.Load().child(child)
	if sa == nil {
		return fmt.Errorf("esp: no outbound SA for child %d", child)
	}
	if !sa.seqMax.CompareAndSwap(bound, sa.limit()) {
		return fmt.Errorf("esp: outbound SPI %#08x is not capped at %d", sa.spi, bound)
	}
	return nil
}

// limit is the last sequence number sa may use when nothing else caps it: its installed
// limit, or its lease's cap.
func (sa *outSA) limit() uint64 {
	if c := sa.leaseCap.Load(); c != 0 {
		return c
	}
	return sa.seqLimit
}

// LeaseOutbound sets the lease of the outbound SA of child (SAConfig.Lease) to upTo,
// once the reservation up to it is in the shared store: the SA may use sequence numbers
// up to upTo from now on. A cap lowered meanwhile (ReserveOutbound, a hard limit) is
// not raised. It returns the sequence number last used.
func (d *Datapath) LeaseOutbound(child uint64, upTo uint64) (uint64, error) {
	sa := d.out.Load().child(child)
	if sa == nil {
		return 0, fmt.Errorf("esp: no outbound SA for child %d", child)
	}
	next := min(upTo, sa.seqLimit)
	for {
		prev := sa.leaseCap.Load()
		if next <= prev {
			return sa.seq.Load(), nil // never lowered: the store has it already
		}
		if !sa.leaseCap.CompareAndSwap(prev, next) {
			continue
		}
		// Raise the cap only from where the previous lease left it.
		if prev != 0 {
			sa.seqMax.CompareAndSwap(prev, next)
		}
		return sa.seq.Load(), nil
	}
}
