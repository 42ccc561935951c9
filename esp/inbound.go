package esp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/mobikevpn/mobikevpn/internal/udp"
)

// maxBackoff caps the pause after repeated read errors.
const maxBackoff = time.Second

// inWorker is the state of one socket's receiving goroutine, allocated once.
type inWorker struct {
	d       *Datapath
	ci      *connInfo
	msgs    []udp.Message
	tunBufs [][]byte
	sc      scratch
	fl      flow
}

func (d *Datapath) newInWorker(ci *connInfo) *inWorker {
	n, size := min(max(ci.c.BatchSize(), 1), maxBatch), d.inBufLen
	if !ci.natt {
		n, size = min(n, ikeBatch), MaxIKEMessage
	}
	w := &inWorker{d: d, ci: ci, msgs: make([]udp.Message, n), tunBufs: make([][]byte, 0, n)}
	slab := make([]byte, n*size)
	for i := range w.msgs {
		// Full slice expressions: the TUN writer may append within a buffer's capacity
		// (GRO), never into the next one.
		w.msgs[i].Buffer = slab[i*size : (i+1)*size : (i+1)*size]
	}
	return w
}

// receive reads the socket in batches until it is closed.
func (d *Datapath) receive(ctx context.Context, ci *connInfo) error {
	w := d.newInWorker(ci)
	errs := 0
	for {
		for i := range w.msgs {
			m := &w.msgs[i]
			m.Buffer = m.Buffer[:cap(m.Buffer)]
			m.N, m.Truncated = 0, false
		}
		n, err := ci.c.ReadBatch(w.msgs)
		if n > 0 {
			if werr := w.process(min(n, len(w.msgs))); werr != nil {
				if ctx.Err() != nil {
					return nil
				}
				return werr
			}
		}
		if err == nil {
			errs = 0
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
			return fmt.Errorf("esp: socket %s closed: %w", ci.local, err)
		}
		d.drop(dropRead, err)
		errs++
		if !sleep(ctx, backoff(errs)) {
			return nil
		}
	}
}

// backoff is the pause after errs consecutive read errors: none for the first few
// (a single bad packet must not stall the path), then growing up to maxBackoff (a
// failing device or socket must not spin).
func backoff(errs int) time.Duration {
	const free = 3
	if errs <= free {
		return 0
	}
	return min(time.Duration(errs-free)*10*time.Millisecond, maxBackoff)
}

// sleep waits for d or until ctx is done, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// process handles the first n datagrams of w.msgs and writes the inner packets to the
// TUN device in one call. It returns an error only if the TUN device is closed.
func (w *inWorker) process(n int) error {
	d := w.d
	w.tunBufs = w.tunBufs[:0]
	in := d.in.Load()
	now := d.mono()
	for i := range n {
		m := &w.msgs[i]
		if m.Truncated {
			d.drop(dropTruncated, nil)
			continue
		}
		if m.N <= 0 || m.N > len(m.Buffer) {
			d.drop(dropMalformed, nil)
			continue
		}
		b := m.Buffer[:m.N]
		switch {
		case !w.ci.natt:
			w.ike(b, m)
		case len(b) == 1 && b[0] == 0xff:
			d.drops.keepalives.Add(1)
		case len(b) >= 4 && b[0]|b[1]|b[2]|b[3] == 0:
			w.ike(b[4:], m)
		default:
			if p := w.esp(in, b, now); p != nil {
				w.tunBufs = append(w.tunBufs, p)
			}
		}
	}
	if len(w.tunBufs) == 0 {
		return nil
	}
	_, err := d.tun.Write(w.tunBufs, tunWriteOffset)
	clear(w.tunBufs)
	if err != nil {
		if errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("esp: TUN closed: %w", err)
		}
		d.drop(dropTUNWrite, err)
	}
	return nil
}

// ike hands an IKE message to the caller in a fresh slice.
func (w *inWorker) ike(b []byte, m *udp.Message) {
	d := w.d
	if len(b) == 0 {
		d.drop(dropMalformed, nil)
		return
	}
	if d.onIKE == nil {
		d.drop(dropNoIKEHandler, nil)
		return
	}
	local := m.Local
	if !local.IsValid() {
		local = w.ci.local
	}
	d.onIKE(append([]byte(nil), b...), local, m.Remote)
}

// esp authenticates, decrypts and checks one ESP packet in place. It returns the
// inner packet with tunWriteOffset bytes in front of it, or nil if it was dropped.
func (w *inWorker) esp(in *inTable, b []byte, now int64) []byte {
	d := w.d
	if len(b) < espHeaderLen {
		d.drop(dropMalformed, nil)
		return nil
	}
	sa := in.m[binary.BigEndian.Uint32(b[0:4])]
	if sa == nil {
		d.drop(dropUnknownSPI, nil)
		return nil
	}
	sa.mu.Lock()
	seq, ok := sa.win.check(binary.BigEndian.Uint32(b[4:8]))
	sa.mu.Unlock()
	if !ok {
		sa.ctr.dropped.Add(1)
		d.drop(dropReplay, nil)
		return nil
	}
	pt, r := sa.suite.openRaw(&w.sc, b, seq, sa.esn)
	if r != dropNone {
		sa.ctr.dropped.Add(1)
		d.drop(r, nil)
		return nil
	}
	sa.mu.Lock()
	ok = sa.win.commit(seq)
	sa.mu.Unlock()
	if !ok {
		sa.ctr.dropped.Add(1)
		d.drop(dropReplay, nil)
		return nil
	}
	payload, nh, ok := stripTrailer(pt)
	r = dropNone
	switch {
	case !ok:
		r = dropTrailer
	case nh == protoNoNxt:
		r = dropDummy
	case nh != protoIPv4 && nh != protoIPv6:
		r = dropTrailer
	}
	if r != dropNone {
		sa.ctr.dropped.Add(1)
		d.drop(r, nil)
		return nil
	}
	n, ok := w.fl.parseIP(payload, sa.l4)
	if !ok || w.fl.is4 != (nh == protoIPv4) {
		sa.ctr.dropped.Add(1)
		d.drop(dropMalformed, nil)
		return nil
	}
	if !matchSrc(sa.remote, &w.fl, sa.l4) || !matchDst(sa.local, &w.fl, sa.l4) {
		sa.ctr.dropped.Add(1)
		d.drop(dropSelector, nil)
		return nil
	}
	sa.ctr.add(n, now)
	hl := sa.suite.headLen()
	return b[hl-tunWriteOffset : hl+n]
}
