package memnet

import (
	"net"
	"net/netip"
	"sync"

	"github.com/mobikevpn/mobikevpn/udp"
)

// Conn is one in-memory socket: one family, one port, all of its host's addresses of
// that family. It implements udp.Conn.
type Conn struct {
	host *Host
	v6   bool
	port uint16

	mu      sync.Mutex
	queue   []*pbuf // ring buffer
	head    int
	count   int
	held    *pbuf // datagram held back for reordering
	closed  bool
	dropped uint64

	notify chan struct{} // capacity 1: something was queued
	done   chan struct{} // closed by Close
}

var _ udp.Conn = (*Conn)(nil)

// LocalAddr is 0.0.0.0:port or [::]:port.
func (c *Conn) LocalAddr() netip.AddrPort {
	if c.v6 {
		return netip.AddrPortFrom(netip.IPv6Unspecified(), c.port)
	}
	return netip.AddrPortFrom(netip.IPv4Unspecified(), c.port)
}

// BatchSize returns BatchSize.
func (c *Conn) BatchSize() int { return BatchSize }

// Host returns the host the Conn belongs to.
func (c *Conn) Host() *Host { return c.host }

// Dropped counts datagrams dropped because this Conn's queue was full.
func (c *Conn) Dropped() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}

// ReadBatch blocks until a datagram is queued, then takes as many as are queued, up to
// len(msgs). A datagram longer than its Buffer fills the Buffer and sets Truncated.
// After Close it returns net.ErrClosed.
func (c *Conn) ReadBatch(msgs []udp.Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	pool := &c.host.net.pool
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return 0, net.ErrClosed
		}
		if c.count > 0 {
			k := min(c.count, len(msgs))
			for i := range k {
				b := c.queue[c.head]
				c.queue[c.head] = nil
				c.head = (c.head + 1) % len(c.queue)
				m := &msgs[i]
				m.N = copy(m.Buffer, b.b[:b.n])
				m.Truncated = b.n > len(m.Buffer)
				m.Local = b.dst
				m.Remote = b.src
				pool.put(b)
			}
			c.count -= k
			c.mu.Unlock()
			return k, nil
		}
		c.mu.Unlock()
		select {
		case <-c.notify:
		case <-c.done:
		}
	}
}

// WriteBatch sends msgs in order. A message that cannot be sent (a source address the
// host does not have, a destination of the other family, ...) stops the batch: the
// count is the index of that message and the error says why. Datagrams lost on the way
// count as sent, as on a real network. Concurrent calls are serialised (by the
// network's lock), as udp.Conn requires.
func (c *Conn) WriteBatch(msgs []udp.Message) (int, error) {
	n := c.host.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closedLocked(c) {
		return 0, net.ErrClosed
	}
	for i := range msgs {
		if err := n.send(c, &msgs[i]); err != nil {
			return i, err
		}
	}
	return len(msgs), nil
}

func (n *Network) closedLocked(c *Conn) bool {
	return c.host.conns[connKey{c.port, c.v6}] != c
}

// Close unbinds the port, drops what is queued and unblocks ReadBatch with
// net.ErrClosed. Closing twice is harmless.
func (c *Conn) Close() error {
	n := c.host.net
	n.mu.Lock()
	if n.closedLocked(c) {
		n.mu.Unlock()
		return nil
	}
	delete(c.host.conns, connKey{c.port, c.v6})
	n.mu.Unlock()

	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for c.count > 0 {
		n.pool.put(c.queue[c.head])
		c.queue[c.head] = nil
		c.head = (c.head + 1) % len(c.queue)
		c.count--
	}
	if c.held != nil {
		n.pool.put(c.held)
		c.held = nil
	}
	close(c.done)
	return nil
}

type enqueueResult int

const (
	queued enqueueResult = iota
	held
	dropped
)

// enqueue queues b, or holds it back when reorder is set and nothing is held yet.
// Called with the network locked.
func (c *Conn) enqueue(b *pbuf, reorder bool, pool *bufPool) enqueueResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		pool.put(b)
		return dropped
	}
	if reorder && c.held == nil {
		c.held = b
		return held
	}
	res := queued
	if !c.pushLocked(b, pool) {
		res = dropped
	}
	c.flushHeldLocked(pool)
	return res
}

func (c *Conn) pushLocked(b *pbuf, pool *bufPool) bool {
	if c.count == len(c.queue) {
		c.dropped++
		pool.put(b)
		return false
	}
	c.queue[(c.head+c.count)%len(c.queue)] = b
	c.count++
	select {
	case c.notify <- struct{}{}:
	default:
	}
	return true
}

func (c *Conn) flushHeldLocked(pool *bufPool) {
	if c.held == nil {
		return
	}
	b := c.held
	c.held = nil
	if !c.pushLocked(b, pool) {
		c.host.net.stats.QueueFull++
	}
}

// flushHeld queues a held datagram. Called with the network locked.
func (c *Conn) flushHeld() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushHeldLocked(&c.host.net.pool)
}
