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

// innerWorker runs the announcer's operations until ops is closed, then closes it.
type innerWorker struct {
	d    *daemon
	an   inner.Announcer
	ops  chan innerOp
	done chan struct{}
}

func startInner(d *daemon, an inner.Announcer) *innerWorker {
	w := &innerWorker{d: d, an: an, ops: make(chan innerOp, innerQueue), done: make(chan struct{})}
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
