// Package memnet is an in-memory UDP network of hosts, NATs and impairments whose
// sockets satisfy udp.Conn, for testing the datapath and IKE in one process without
// root.
//
// A Network holds Hosts, each with a set of addresses. (*Host).Listen(port) mirrors
// udp.Listen: it returns two Conns, an IPv4 one (0.0.0.0:port) first and an IPv6 one
// ([::]:port), which receive datagrams sent to any of the host's addresses of their
// family at that port. A datagram travels synchronously inside WriteBatch:
//
//  1. the source is the message's Local address, which the host must have (else the
//     write fails, as sending from an address the host lost does), or the host's first
//     address of the family when Local is unset;
//  2. if the source lies inside a NAT (AddNAT) and the destination does not, the NAT
//     rewrites the source to its public address and a mapped port;
//  3. the Impairment (loss, duplication, reordering; seeded, so runs repeat) and then
//     the Filter see the datagram as it is on the wire between the NATs;
//  4. a destination that is a NAT's public address is mapped back to the inside
//     address and port if a mapping exists and its filtering admits the sender;
//  5. the datagram is copied into the bounded queue of the Conn bound to the
//     destination port on the host that has the destination address. Anything that has
//     no such Conn, or finds its queue full, is dropped and counted in Stats.
//
// Addresses inside a NAT are reachable only from inside the same NAT or through its
// mappings. All methods are safe for concurrent use.
package memnet

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"

	"github.com/mobikevpn/mobikevpn/udp"
)

// DefaultQueueLen is the number of datagrams a Conn queues before it drops.
const DefaultQueueLen = 1024

// BatchSize is what Conn.BatchSize reports.
const BatchSize = 128

// Errors returned by WriteBatch for a message that cannot be sent.
var (
	ErrAddrNotAvailable = errors.New("memnet: source address is not assigned to the host")
	ErrNoSourceAddr     = errors.New("memnet: host has no address of the destination's family")
)

// Packet is a datagram on the wire, as a Filter sees it.
type Packet struct {
	Src, Dst netip.AddrPort
	// Data is the payload. It may alias the sender's buffer: a Filter must not modify
	// it in place but return a Packet with new Data to change it.
	Data []byte
}

// Impairment describes random damage to every datagram on the wire. Each rate is a
// probability in [0, 1], drawn from a math/rand/v2 PCG source seeded with Seed.
type Impairment struct {
	// Loss drops the datagram.
	Loss float64
	// Duplicate delivers the datagram twice.
	Duplicate float64
	// Reorder holds the datagram back until the next datagram to the same Conn has
	// been queued (then both are queued, the held one second), or until Flush.
	Reorder float64
	Seed    uint64
}

// Filter sees every datagram that survived the Impairment and returns what goes on:
// nil drops it, []Packet{*p} passes it, more packets inject or duplicate. It runs with
// the network locked, so it must not call methods of this package.
type Filter func(p *Packet) []Packet

// Stats counts datagrams across the network.
type Stats struct {
	Sent       uint64 // accepted by WriteBatch
	Delivered  uint64 // queued at a Conn (or held there for reordering)
	Lost       uint64 // dropped by the Impairment
	Duplicated uint64 // extra copies made by the Impairment
	Reordered  uint64 // held back by the Impairment
	Filtered   uint64 // dropped by the Filter (returned nothing)
	Unroutable uint64 // no host has the destination address, or no Conn has the port
	NATDropped uint64 // no NAT mapping, or the mapping's filtering refused the sender
	QueueFull  uint64 // the destination Conn's queue was full
}

// Network is an in-memory UDP network. The zero value is not usable; call New.
type Network struct {
	mu       sync.Mutex
	hosts    map[netip.Addr]*Host // address -> host that has it
	allHosts []*Host
	nats     []*NAT
	imp      Impairment
	rng      *rand.Rand
	filter   Filter
	stats    Stats
	queueLen int
	pool     bufPool
}

// New returns an empty network without impairment.
func New() *Network {
	return &Network{
		hosts:    make(map[netip.Addr]*Host),
		queueLen: DefaultQueueLen,
		rng:      rand.New(rand.NewPCG(0, 0)),
	}
}

// SetQueueLen sets the queue length of Conns opened from now on.
func (n *Network) SetQueueLen(l int) {
	if l < 1 {
		l = 1
	}
	n.mu.Lock()
	n.queueLen = l
	n.mu.Unlock()
}

// SetImpairment replaces the impairment and reseeds its random source.
func (n *Network) SetImpairment(im Impairment) {
	n.mu.Lock()
	n.imp = im
	n.rng = rand.New(rand.NewPCG(im.Seed, im.Seed^0x9e3779b97f4a7c15))
	n.mu.Unlock()
}

// SetFilter installs f (nil removes it).
func (n *Network) SetFilter(f Filter) {
	n.mu.Lock()
	n.filter = f
	n.mu.Unlock()
}

// Stats returns the counters.
func (n *Network) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// Flush queues every datagram held back for reordering.
func (n *Network) Flush() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, h := range n.allHosts {
		for _, c := range h.conns {
			c.flushHeld()
		}
	}
}

// Host adds a host with the given addresses. It panics if an address is invalid or
// already taken, which is a mistake in the test that builds the network.
func (n *Network) Host(addrs ...netip.Addr) *Host {
	h := &Host{net: n, conns: make(map[connKey]*Conn), nextPort: 49152}
	n.mu.Lock()
	n.allHosts = append(n.allHosts, h)
	n.mu.Unlock()
	for _, a := range addrs {
		if err := h.AddAddr(a); err != nil {
			panic(err)
		}
	}
	return h
}

// Host is a machine on the network.
type Host struct {
	net      *Network
	addrs    []netip.Addr // guarded by net.mu
	conns    map[connKey]*Conn
	nextPort uint16
}

type connKey struct {
	port uint16
	v6   bool
}

// Addrs returns the host's addresses in the order they were added.
func (h *Host) Addrs() []netip.Addr {
	h.net.mu.Lock()
	defer h.net.mu.Unlock()
	return slices.Clone(h.addrs)
}

// AddAddr gives the host another address (IPv4-mapped addresses count as IPv4).
func (h *Host) AddAddr(a netip.Addr) error {
	a = a.Unmap()
	if !a.IsValid() || a.IsUnspecified() || a.Zone() != "" {
		return fmt.Errorf("memnet: invalid host address %v", a)
	}
	n := h.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.hosts[a] != nil {
		return fmt.Errorf("memnet: address %v already in use", a)
	}
	for _, nat := range n.nats {
		if nat.public == a {
			return fmt.Errorf("memnet: address %v is a NAT's public address", a)
		}
	}
	n.hosts[a] = h
	h.addrs = append(h.addrs, a)
	return nil
}

// RemoveAddr takes an address away: sending from it fails from now on and datagrams
// to it are dropped.
func (h *Host) RemoveAddr(a netip.Addr) error {
	a = a.Unmap()
	n := h.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.hosts[a] != h {
		return fmt.Errorf("memnet: host does not have %v", a)
	}
	delete(n.hosts, a)
	h.addrs = slices.DeleteFunc(h.addrs, func(b netip.Addr) bool { return b == a })
	return nil
}

// Listen opens the host's IPv4 and IPv6 Conns on port, in that order, like
// udp.Listen; port 0 picks a port free in both families. Each element is a *Conn.
func (h *Host) Listen(port uint16) ([]udp.Conn, error) {
	n := h.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if port == 0 {
		for range 1 << 14 {
			p := h.nextPort
			h.nextPort++
			if h.nextPort == 0 {
				h.nextPort = 49152
			}
			if h.conns[connKey{p, false}] == nil && h.conns[connKey{p, true}] == nil {
				port = p
				break
			}
		}
		if port == 0 {
			return nil, errors.New("memnet: no free port")
		}
	}
	if h.conns[connKey{port, false}] != nil || h.conns[connKey{port, true}] != nil {
		return nil, fmt.Errorf("memnet: port %d already in use", port)
	}
	out := make([]udp.Conn, 0, 2)
	for _, v6 := range []bool{false, true} {
		c := &Conn{
			host:   h,
			v6:     v6,
			port:   port,
			queue:  make([]*pbuf, n.queueLen),
			notify: make(chan struct{}, 1),
			done:   make(chan struct{}),
		}
		h.conns[connKey{port, v6}] = c
		out = append(out, c)
	}
	return out, nil
}

// send moves one message from c through the network. Called with n.mu held.
func (n *Network) send(c *Conn, m *udp.Message) error {
	dstAddr := m.Remote.Addr().Unmap()
	if !dstAddr.IsValid() || dstAddr.IsUnspecified() || m.Remote.Port() == 0 {
		return fmt.Errorf("memnet: invalid destination %v", m.Remote)
	}
	if dstAddr.Is6() != c.v6 {
		return fmt.Errorf("memnet: destination %v does not match the socket's address family", m.Remote)
	}
	if m.N < 0 || m.N > len(m.Buffer) {
		return fmt.Errorf("memnet: message length %d outside buffer of %d bytes", m.N, len(m.Buffer))
	}
	h := c.host
	src := m.Local.Addr().Unmap()
	if src.IsValid() && !src.IsUnspecified() {
		if src.Is6() != c.v6 {
			return fmt.Errorf("memnet: source %v does not match the socket's address family", src)
		}
		if n.hosts[src] != h {
			return fmt.Errorf("%w: %v", ErrAddrNotAvailable, src)
		}
	} else {
		src = netip.Addr{}
		for _, a := range h.addrs {
			if a.Is6() == c.v6 {
				src = a
				break
			}
		}
		if !src.IsValid() {
			return ErrNoSourceAddr
		}
	}
	n.stats.Sent++
	p := Packet{
		Src:  netip.AddrPortFrom(src, c.port),
		Dst:  netip.AddrPortFrom(dstAddr, m.Remote.Port()),
		Data: m.Buffer[:m.N],
	}
	n.transmit(p)
	return nil
}

// transmit applies source NAT, impairment and filter. Called with n.mu held.
func (n *Network) transmit(p Packet) {
	srcNAT := n.insideNAT(p.Src.Addr())
	if srcNAT != nil && !srcNAT.isInside(p.Dst.Addr()) {
		p.Src = srcNAT.outbound(p.Src, p.Dst)
	}
	if n.imp.Loss > 0 && n.rng.Float64() < n.imp.Loss {
		n.stats.Lost++
		return
	}
	copies := 1
	if n.imp.Duplicate > 0 && n.rng.Float64() < n.imp.Duplicate {
		copies = 2
		n.stats.Duplicated++
	}
	reorder := n.imp.Reorder > 0 && n.rng.Float64() < n.imp.Reorder
	for range copies {
		if n.filter == nil {
			n.deliver(p, srcNAT, reorder)
			reorder = false
			continue
		}
		q := p // only this branch lets the Packet escape
		out := n.filter(&q)
		if len(out) == 0 {
			n.stats.Filtered++
		}
		for _, r := range out {
			n.deliver(r, srcNAT, reorder)
			reorder = false
		}
	}
}

// deliver applies destination NAT and queues p. srcNAT is the NAT the sender sits
// behind, if any. Called with n.mu held.
func (n *Network) deliver(p Packet, srcNAT *NAT, reorder bool) {
	translated := false
	for _, nat := range n.nats {
		if nat.public == p.Dst.Addr() {
			inside, ok := nat.inbound(p.Src, p.Dst.Port())
			if !ok {
				n.stats.NATDropped++
				return
			}
			p.Dst = inside
			translated = true
			break
		}
	}
	if dstNAT := n.insideNAT(p.Dst.Addr()); dstNAT != nil && !translated && dstNAT != srcNAT {
		n.stats.Unroutable++
		return
	}
	h := n.hosts[p.Dst.Addr()]
	if h == nil {
		n.stats.Unroutable++
		return
	}
	c := h.conns[connKey{p.Dst.Port(), p.Dst.Addr().Is6()}]
	if c == nil {
		n.stats.Unroutable++
		return
	}
	b := n.pool.get(len(p.Data))
	b.n = copy(b.b, p.Data)
	b.src, b.dst = p.Src, p.Dst
	switch c.enqueue(b, reorder, &n.pool) {
	case queued:
		n.stats.Delivered++
	case held:
		n.stats.Delivered++
		n.stats.Reordered++
	case dropped:
		n.stats.QueueFull++
	}
}

func (n *Network) insideNAT(a netip.Addr) *NAT {
	for _, nat := range n.nats {
		if nat.isInside(a) {
			return nat
		}
	}
	return nil
}

// pbuf is one queued datagram.
type pbuf struct {
	b        []byte
	n        int
	src, dst netip.AddrPort
}

// bufPool recycles datagram buffers in two sizes so that a steady flow allocates
// nothing. Unlike a sync.Pool it keeps what it is given (up to a bound), so the
// steady state does not depend on the garbage collector.
type bufPool struct {
	mu           sync.Mutex
	small, large []*pbuf
}

const (
	smallBuf = 2048
	largeBuf = 65536
	// keep at most this many free buffers of each size
	maxSmallFree = 8192
	maxLargeFree = 64
)

func (p *bufPool) get(size int) *pbuf {
	if size > largeBuf {
		return &pbuf{b: make([]byte, size)}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	free, capacity := &p.small, smallBuf
	if size > smallBuf {
		free, capacity = &p.large, largeBuf
	}
	if n := len(*free); n > 0 {
		b := (*free)[n-1]
		(*free)[n-1] = nil
		*free = (*free)[:n-1]
		return b
	}
	return &pbuf{b: make([]byte, capacity)}
}

func (p *bufPool) put(b *pbuf) {
	b.n = 0
	b.src, b.dst = netip.AddrPort{}, netip.AddrPort{}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case len(b.b) == smallBuf && len(p.small) < maxSmallFree:
		p.small = append(p.small, b)
	case len(b.b) == largeBuf && len(p.large) < maxLargeFree:
		p.large = append(p.large, b)
	}
}
