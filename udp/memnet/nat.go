package memnet

import (
	"fmt"
	"net/netip"
	"slices"
)

// Filtering says which senders may use a NAT mapping to reach the inside (RFC 4787
// section 5).
type Filtering int

const (
	// AddressAndPortDependent admits only address:port pairs the inside endpoint has
	// sent to from this mapping, as Linux conntrack masquerading does. The default.
	AddressAndPortDependent Filtering = iota
	// AddressDependent admits any port of an address the inside endpoint has sent to.
	AddressDependent
	// EndpointIndependent admits anyone ("full cone").
	EndpointIndependent
)

// NAT is a masquerading NAT: datagrams from its inside prefixes to anywhere outside get
// the public address as source and a port mapped per inside address:port
// (endpoint-independent mapping, RFC 4787 section 4.1); replies to the public address
// and a mapped port go back to the inside endpoint when Filtering admits their sender.
// Mapped ports are taken from a counter, not preserved, so a translation is always
// visible and a rebinding always changes the port.
type NAT struct {
	net       *Network
	public    netip.Addr
	inside    []netip.Prefix
	filtering Filtering
	byInside  map[netip.AddrPort]*natMapping
	byPort    map[uint16]*natMapping
	nextPort  uint16
}

type natMapping struct {
	inside netip.AddrPort
	port   uint16
	peers  map[netip.AddrPort]struct{}
}

const (
	natPortMin = 20000
	natPortMax = 60000
)

// AddNAT puts the given inside prefixes behind a NAT with the given public address.
// The public address must not belong to a host; inside prefixes must not overlap
// another NAT's.
func (n *Network) AddNAT(public netip.Addr, inside ...netip.Prefix) (*NAT, error) {
	public = public.Unmap()
	if !public.IsValid() || public.IsUnspecified() {
		return nil, fmt.Errorf("memnet: invalid NAT address %v", public)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.checkPublicLocked(public, nil); err != nil {
		return nil, err
	}
	ins := make([]netip.Prefix, 0, len(inside))
	for _, p := range inside {
		if !p.IsValid() || p.Addr().Is4() != public.Is4() {
			return nil, fmt.Errorf("memnet: inside prefix %v invalid or not of the public address's family", p)
		}
		if p.Contains(public) {
			return nil, fmt.Errorf("memnet: inside prefix %v contains the public address", p)
		}
		for _, other := range n.nats {
			for _, q := range other.inside {
				if q.Overlaps(p) {
					return nil, fmt.Errorf("memnet: inside prefix %v overlaps %v of another NAT", p, q)
				}
			}
		}
		ins = append(ins, p.Masked())
	}
	nat := &NAT{
		net:      n,
		public:   public,
		inside:   ins,
		byInside: make(map[netip.AddrPort]*natMapping),
		byPort:   make(map[uint16]*natMapping),
		nextPort: natPortMin,
	}
	n.nats = append(n.nats, nat)
	return nat, nil
}

func (n *Network) checkPublicLocked(public netip.Addr, self *NAT) error {
	if n.hosts[public] != nil {
		return fmt.Errorf("memnet: NAT address %v belongs to a host", public)
	}
	for _, other := range n.nats {
		if other != self && other.public == public {
			return fmt.Errorf("memnet: NAT address %v already in use", public)
		}
	}
	return nil
}

// Public returns the NAT's public address.
func (t *NAT) Public() netip.Addr {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	return t.public
}

// SetFiltering changes which senders may use existing and future mappings.
func (t *NAT) SetFiltering(f Filtering) {
	t.net.mu.Lock()
	t.filtering = f
	t.net.mu.Unlock()
}

// Mapping returns the public address and port inside is mapped to, if it is.
func (t *NAT) Mapping(inside netip.AddrPort) (netip.AddrPort, bool) {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	m := t.byInside[inside]
	if m == nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(t.public, m.port), true
}

// Rebind simulates a NAT rebinding: every mapping is forgotten, so the next datagram
// from inside gets a new port (and nothing from outside gets in until then), and, when
// public is valid, the NAT moves to that public address (the old one stops existing).
func (t *NAT) Rebind(public netip.Addr) error {
	n := t.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if public.IsValid() {
		public = public.Unmap()
		if public.Is4() != t.public.Is4() || public.IsUnspecified() {
			return fmt.Errorf("memnet: invalid NAT address %v", public)
		}
		if err := n.checkPublicLocked(public, t); err != nil {
			return err
		}
		t.public = public
	}
	clear(t.byInside)
	clear(t.byPort)
	return nil
}

func (t *NAT) isInside(a netip.Addr) bool {
	return slices.ContainsFunc(t.inside, func(p netip.Prefix) bool { return p.Contains(a) })
}

// outbound maps src and records dst as a peer. Called with the network locked.
func (t *NAT) outbound(src, dst netip.AddrPort) netip.AddrPort {
	m := t.byInside[src]
	if m == nil {
		port := t.allocPort()
		if port == 0 {
			// Every port taken: reuse the mapping of this port's previous owner,
			// as a NAT under pressure evicts old state.
			port = t.nextPort
			t.advance()
			old := t.byPort[port]
			delete(t.byInside, old.inside)
		}
		m = &natMapping{inside: src, port: port, peers: make(map[netip.AddrPort]struct{})}
		t.byInside[src] = m
		t.byPort[port] = m
	}
	if _, ok := m.peers[dst]; !ok {
		m.peers[dst] = struct{}{}
	}
	return netip.AddrPortFrom(t.public, m.port)
}

func (t *NAT) advance() {
	t.nextPort++
	if t.nextPort >= natPortMax {
		t.nextPort = natPortMin
	}
}

func (t *NAT) allocPort() uint16 {
	for range natPortMax - natPortMin {
		p := t.nextPort
		t.advance()
		if t.byPort[p] == nil {
			return p
		}
	}
	return 0
}

// inbound maps a datagram from src to the public port back to the inside endpoint.
// Called with the network locked.
func (t *NAT) inbound(src netip.AddrPort, port uint16) (netip.AddrPort, bool) {
	m := t.byPort[port]
	if m == nil {
		return netip.AddrPort{}, false
	}
	switch t.filtering {
	case EndpointIndependent:
	case AddressDependent:
		found := false
		for p := range m.peers {
			if p.Addr() == src.Addr() {
				found = true
				break
			}
		}
		if !found {
			return netip.AddrPort{}, false
		}
	default:
		if _, ok := m.peers[src]; !ok {
			return netip.AddrPort{}, false
		}
	}
	return m.inside, true
}
