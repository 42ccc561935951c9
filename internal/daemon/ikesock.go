package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mobikevpn/mobikevpn/esp"
	"github.com/mobikevpn/mobikevpn/udp"
)

const (
	// ikeReadSize is the read buffer of the IKE port: the largest message received
	// intact there, the same as on the NAT-T port.
	ikeReadSize = esp.MaxIKEMessage
	// ikeBatch bounds the datagrams of one read of the IKE port.
	ikeBatch = 8
)

// ikeSockets carries the engine's IKE datagrams. It reads the IKE port's sockets (the
// NAT-T port's are the datapath's, which hands their IKE messages up through the same
// callback) and sends on both ports, picking the socket by the local port and the
// remote's family. On the NAT-T port it writes through the socket the datapath sends
// ESP on, behind the non-ESP marker; udp.Conn serialises the writes of the two.
type ikeSockets struct {
	conns []*ikeSocket
	log   *slog.Logger

	truncated  atomic.Uint64 // IKE port datagrams larger than ikeReadSize
	readErrors atomic.Uint64 // failed reads of the IKE port
	lastLog    atomic.Int64  // time.Now().UnixNano() of the last read error logged
}

type ikeSocket struct {
	c     udp.Conn
	local netip.AddrPort
	is4   bool
	natt  bool // on the NAT-T port: IKE goes behind the non-ESP marker, the datapath reads it
}

// newIKESockets checks the sockets of the IKE port (ike, on ikePort) and of the NAT-T
// port (natt, on nattPort): at most one per address family and port, and at least one
// on the NAT-T port.
func newIKESockets(ikePort uint16, ike []udp.Conn, nattPort uint16, natt []udp.Conn, log *slog.Logger) (*ikeSockets, error) {
	s := &ikeSockets{log: log}
	add := func(c udp.Conn, port uint16, isNATT bool) error {
		if c == nil {
			return errors.New("nil socket")
		}
		la := c.LocalAddr()
		if !la.Addr().IsValid() || la.Port() != port {
			return fmt.Errorf("socket on %s, not on port %d", la, port)
		}
		ci := &ikeSocket{c: c, local: la, is4: la.Addr().Unmap().Is4(), natt: isNATT}
		for _, o := range s.conns {
			if o.is4 == ci.is4 && o.local.Port() == port {
				return fmt.Errorf("two sockets for %s", la)
			}
		}
		s.conns = append(s.conns, ci)
		return nil
	}
	for _, c := range ike {
		if err := add(c, ikePort, false); err != nil {
			return nil, fmt.Errorf("IKE port: %w", err)
		}
	}
	for _, c := range natt {
		if err := add(c, nattPort, true); err != nil {
			return nil, fmt.Errorf("NAT-T port: %w", err)
		}
	}
	if len(natt) == 0 {
		return nil, fmt.Errorf("no socket on the NAT-T port %d", nattPort)
	}
	return s, nil
}

// send sends the IKE message pkt from local to remote on the socket of remote's family
// bound to local's port, behind the non-ESP marker on the NAT-T port. local's address
// is the source (unspecified lets the kernel choose).
func (s *ikeSockets) send(local, remote netip.AddrPort, pkt []byte) error {
	ra := remote.Addr().Unmap()
	if !ra.IsValid() || remote.Port() == 0 {
		return fmt.Errorf("bad remote address %s", remote)
	}
	la := local.Addr()
	specific := la.IsValid() && !la.IsUnspecified()
	if specific && la.Unmap().Is4() != ra.Is4() {
		return fmt.Errorf("local %s and remote %s are of different families", local, remote)
	}
	var ci *ikeSocket
	for _, c := range s.conns {
		if c.is4 == ra.Is4() && c.local.Port() == local.Port() {
			ci = c
			break
		}
	}
	if ci == nil {
		return fmt.Errorf("no socket for local %s (remote %s)", local, remote)
	}
	buf := pkt
	if ci.natt {
		buf = esp.FrameIKE(pkt)
	}
	m := udp.Message{Buffer: buf, N: len(buf), Remote: netip.AddrPortFrom(ra, remote.Port())}
	if specific {
		m.Local = netip.AddrPortFrom(la.Unmap(), local.Port())
	}
	n, err := ci.c.WriteBatch([]udp.Message{m})
	if err != nil {
		return fmt.Errorf("send to %s: %w", remote, err)
	}
	if n != 1 {
		return fmt.Errorf("send to %s: datagram not sent", remote)
	}
	return nil
}

// run reads the IKE port's sockets and hands each message to deliver, with the local
// address it arrived at and its source, until ctx ends (nil) or a socket fails for
// good (its error). It then closes the IKE port's sockets and returns once every
// reader has.
func (s *ikeSockets) run(ctx context.Context, deliver func(pkt []byte, local, remote netip.AddrPort)) error {
	parent := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for _, ci := range s.conns {
		if ci.natt {
			continue // the datapath's
		}
		wg.Go(func() {
			if err := s.receive(ctx, ci, deliver); err != nil {
				cancel(err)
			}
		})
	}
	<-ctx.Done()
	for _, ci := range s.conns {
		if !ci.natt {
			if err := ci.c.Close(); err != nil {
				s.log.Debug("closing the IKE port", "local", ci.local, "err", err)
			}
		}
	}
	wg.Wait()
	if parent.Err() != nil {
		return nil
	}
	return context.Cause(ctx)
}

// receive reads one IKE port socket in batches until it is closed.
func (s *ikeSockets) receive(ctx context.Context, ci *ikeSocket, deliver func(pkt []byte, local, remote netip.AddrPort)) error {
	msgs := make([]udp.Message, min(max(ci.c.BatchSize(), 1), ikeBatch))
	slab := make([]byte, len(msgs)*ikeReadSize)
	var errs udp.ReadErrors
	for {
		for i := range msgs {
			o := i * ikeReadSize
			msgs[i] = udp.Message{Buffer: slab[o : o+ikeReadSize : o+ikeReadSize]}
		}
		n, err := ci.c.ReadBatch(msgs)
		for _, m := range msgs[:max(min(n, len(msgs)), 0)] {
			if m.Truncated || m.N < 0 || m.N > len(m.Buffer) {
				s.truncated.Add(1)
				continue
			}
			local := m.Local
			if !local.IsValid() {
				local = ci.local
			}
			// An empty datagram goes on too: the engine counts it malformed.
			deliver(append([]byte(nil), m.Buffer[:m.N]...), local, m.Remote)
		}
		again, fatal := errs.After(ctx, err, func(err error) { s.readError(ci, err) })
		if !again {
			if fatal != nil {
				return fmt.Errorf("IKE socket %s closed: %w", ci.local, fatal)
			}
			return nil
		}
	}
}

// readError counts a failed read and logs it at debug level, at most once a minute.
func (s *ikeSockets) readError(ci *ikeSocket, err error) {
	n := s.readErrors.Add(1)
	now := time.Now().UnixNano()
	last := s.lastLog.Load()
	if last != 0 && now-last < int64(time.Minute) || !s.lastLog.CompareAndSwap(last, now) {
		return
	}
	s.log.Debug("reading the IKE port", "local", ci.local, "count", n, "err", err)
}

// drops adds the IKE port's read drops to m.
func (s *ikeSockets) drops(m map[string]uint64) {
	m["ike_truncated"] = s.truncated.Load()
	m["ike_read_error"] = s.readErrors.Load()
}
