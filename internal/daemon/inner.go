package daemon

import (
	"net/netip"

	"github.com/mobikevpn/mobikevpn/internal/inner"
)

// The protected side learns which node serves a client's virtual IP (config
// cluster.inner, package inner): each virtual IP this gateway starts serving (a new
// client, or one moved here) is claimed, each it stops serving released, in order, on
// a goroutine of its own (the announcer runs commands and system calls).

// innerQueue bounds the claims and releases waiting for the announcer.
const innerQueue = 4096

type innerOp struct {
	addr  netip.Addr
	claim bool
}

// innerWorker runs the announcer's operations until ops is closed, then closes it. Its
// maps are the engine goroutine's.
//
// In a move the protected side follows the peer: the node the SA moves to claims its
// virtual IPs once the peer arrived there (not at the import: until then the peer only
// takes the old node's traffic, behind a NAT the new node cannot even reach it), and
// the node it left releases them then too (not at the end of its grace: the two must
// not both answer for them).
type innerWorker struct {
	d    *daemon
	an   inner.Announcer
	ops  chan innerOp
	done chan struct{}

	claimed map[uint64][]netip.Addr // by IKE SA id: announced as served here
	waiting map[uint64][]netip.Addr // by IKE SA id: imported, claimed once the peer arrives
}

func startInner(d *daemon, an inner.Announcer) *innerWorker {
	w := &innerWorker{d: d, an: an, ops: make(chan innerOp, innerQueue), done: make(chan struct{}),
		claimed: make(map[uint64][]netip.Addr), waiting: make(map[uint64][]netip.Addr)}
	go func() {
		defer close(w.done)
		for op := range w.ops {
			var err error
			if op.claim {
				err = an.Claim(op.addr)
			} else {
				err = an.Release(op.addr)
			}
			if err != nil {
				d.log.Error("cluster: announcing a virtual IP on the inner side", "vip", op.addr, "claim", op.claim, "err", err)
			} else {
				d.log.Debug("cluster: virtual IP announced on the inner side", "vip", op.addr, "claim", op.claim)
			}
		}
		if err := an.Close(); err != nil {
			d.log.Warn("cluster: inner announcer", "err", err)
		}
	}()
	return w
}

// vips follows a peer's virtual IPs of IKE SA id that this gateway starts (add) or
// stops serving; arriving: the SA was imported here and its peer is yet to arrive.
func (w *innerWorker) vips(id uint64, addrs []netip.Addr, add, arriving bool) {
	switch {
	case add && arriving:
		w.waiting[id] = addrs
	case add:
		w.claimed[id] = addrs
		w.announce(addrs, true)
	default:
		delete(w.waiting, id)
		w.leave(id)
	}
}

// arrived: the peer of IKE SA id, imported here, arrived: its addresses are claimed.
func (w *innerWorker) arrived(id uint64) {
	if addrs, ok := w.waiting[id]; ok {
		delete(w.waiting, id)
		w.claimed[id] = addrs
		w.announce(addrs, true)
	}
}

// leave releases the addresses of IKE SA id: it ended, or its peer arrived at another
// node.
func (w *innerWorker) leave(id uint64) {
	if addrs, ok := w.claimed[id]; ok {
		delete(w.claimed, id)
		w.announce(addrs, false)
	}
}

// announce queues the claim or release of addrs (engine goroutine).
func (w *innerWorker) announce(addrs []netip.Addr, claim bool) {
	for _, a := range addrs {
		select {
		case w.ops <- innerOp{addr: a, claim: claim}:
		default:
			w.d.log.Error("cluster: too many virtual IP announcements queued; one is lost", "vip", a, "claim", claim)
		}
	}
}

// stop waits for the queued operations and closes the announcer.
func (w *innerWorker) stop() {
	close(w.ops)
	<-w.done
}
