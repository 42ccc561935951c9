package esp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/mobikevpn/mobikevpn/internal/udp"
	"golang.zx2c4.com/wireguard/tun"
)

// outWorker is the state of the sending goroutine, allocated once.
type outWorker struct {
	d       *Datapath
	bufs    [][]byte
	sizes   []int
	perConn [][]udp.Message // datagrams of the current batch, by socket
	sc      scratch
	fl      flow
}

func (d *Datapath) newOutWorker() *outWorker {
	n, size := d.outBatch, d.outBufLen
	w := &outWorker{d: d, bufs: make([][]byte, n), sizes: make([]int, n), perConn: make([][]udp.Message, len(d.conns))}
	slab := make([]byte, n*size)
	for i := range w.bufs {
		w.bufs[i] = slab[i*size : (i+1)*size : (i+1)*size]
	}
	for i := range w.perConn {
		w.perConn[i] = make([]udp.Message, 0, n)
	}
	return w
}

// send reads the TUN device in batches until it is closed.
func (d *Datapath) send(ctx context.Context) error {
	w := d.newOutWorker()
	errs := 0
	for {
		n, err := d.tun.Read(w.bufs, w.sizes, outHeadroom)
		if n > 0 {
			w.process(min(n, len(w.bufs)))
		}
		if err == nil {
			errs = 0
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, tun.ErrTooManySegments) {
			d.drop(dropTUNRead, err)
			continue
		}
		if errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
			return fmt.Errorf("esp: TUN closed: %w", err)
		}
		d.drop(dropTUNRead, err)
		errs++
		if !sleep(ctx, backoff(errs)) {
			return nil
		}
	}
}

// process seals the first n packets read from the TUN device and sends them, one
// WriteBatch per socket.
func (w *outWorker) process(n int) {
	d := w.d
	t := d.out.Load()
	now := d.mono()
	for i := range n {
		buf, size := w.bufs[i], w.sizes[i]
		if size <= 0 || size > len(buf)-outHeadroom {
			d.drop(dropMalformed, nil)
			continue
		}
		ipLen, ok := w.fl.parseIP(buf[outHeadroom:outHeadroom+size], t.l4)
		if !ok {
			d.drop(dropMalformed, nil)
			continue
		}
		sa := t.lookup(&w.fl)
		if sa == nil {
			d.drop(dropNoPolicy, nil)
			continue
		}
		seq, ok := sa.nextSeq()
		if !ok {
			sa.ctr.dropped.Add(1)
			d.drop(dropSeqExhausted, nil)
			continue
		}
		nh := byte(protoIPv6)
		if w.fl.is4 {
			nh = protoIPv4
		}
		b := buf[outHeadroom-sa.suite.headLen():]
		m := sa.suite.seal(&w.sc, b, sa.spi, seq, sa.esn, ipLen, nh)
		if m == 0 {
			sa.ctr.dropped.Add(1)
			d.drop(dropTooBig, nil)
			continue
		}
		sa.ctr.add(ipLen, now)
		sa.lastSent.Store(now)
		ep := sa.ep.Load()
		w.perConn[ep.conn] = append(w.perConn[ep.conn], udp.Message{Buffer: b[:m], N: m, Local: ep.src, Remote: ep.remote})
	}
	for c, msgs := range w.perConn {
		if len(msgs) == 0 {
			continue
		}
		d.writeAll(d.conns[c], msgs)
		clear(msgs)
		w.perConn[c] = msgs[:0]
	}
}

// writeAll sends msgs on ci, skipping (and counting) a datagram the socket refuses.
func (d *Datapath) writeAll(ci *connInfo, msgs []udp.Message) {
	ci.wmu.Lock()
	defer ci.wmu.Unlock()
	for len(msgs) > 0 {
		n, err := ci.c.WriteBatch(msgs)
		if n < 0 || n > len(msgs) {
			n = 0
		}
		msgs = msgs[n:]
		if err == nil && n > 0 {
			continue
		}
		if err == nil {
			err = errors.New("no datagram sent")
		}
		if errors.Is(err, net.ErrClosed) {
			for range msgs {
				d.drop(dropSend, err)
			}
			return
		}
		if len(msgs) > 0 {
			d.drop(dropSend, err)
			msgs = msgs[1:]
		}
	}
}
