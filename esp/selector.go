package esp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Selector is one traffic selector (RFC 7296 section 3.13.1): an address range, an IP
// protocol (0 = any) and a port range. StartPort 0 with EndPort 65535 is ANY; 65535
// with 0 is OPAQUE (matches only packets whose ports are not available, such as
// non-initial fragments). For ICMP, ICMPv6 and the IPv6 Mobility Header the "port" is
// type<<8|code (MH: type<<8); as RFC 4301 section 4.4.1.3 says, it is checked against
// the selector of the side that sends the packet only. Kept apart from
// wire.TrafficSelector because esp knows no IKE; compileSelectors turns it into sel.
type Selector struct {
	Proto     uint8
	StartPort uint16
	EndPort   uint16
	Start     netip.Addr
	End       netip.Addr
}

// String formats s as proto/start-end[ports].
func (s Selector) String() string {
	return fmt.Sprintf("%d/%s-%s[%d-%d]", s.Proto, s.Start, s.End, s.StartPort, s.EndPort)
}

// sel is a validated Selector in a form that is cheap to match.
type sel struct {
	is4      bool
	lo, hi   u128
	proto    uint8
	anyPorts bool
	opaque   bool
	pLo, pHi uint16
	host     bool // Start == End
}

type u128 struct{ hi, lo uint64 }

func addrU128(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (a u128) less(b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

func compileSelectors(ss []Selector) ([]sel, error) {
	if len(ss) == 0 {
		return nil, fmt.Errorf("esp: no traffic selectors")
	}
	out := make([]sel, 0, len(ss))
	for _, s := range ss {
		start, end := s.Start.Unmap(), s.End.Unmap()
		if !start.IsValid() || !end.IsValid() || start.Is4() != end.Is4() || end.Less(start) {
			return nil, fmt.Errorf("esp: bad traffic selector address range %s", s)
		}
		if start.Zone() != "" || end.Zone() != "" {
			return nil, fmt.Errorf("esp: traffic selector with zone %s", s)
		}
		c := sel{
			is4:   start.Is4(),
			lo:    addrU128(start),
			hi:    addrU128(end),
			proto: s.Proto,
			pLo:   s.StartPort,
			pHi:   s.EndPort,
			host:  start == end,
		}
		switch {
		case s.StartPort == 0 && s.EndPort == 65535:
			c.anyPorts = true
		case s.StartPort == 65535 && s.EndPort == 0:
			c.opaque = true
		case s.StartPort > s.EndPort:
			return nil, fmt.Errorf("esp: bad traffic selector port range %s", s)
		}
		out = append(out, c)
	}
	return out, nil
}

// needsL4 reports whether matching any of ss looks past the IP addresses.
func needsL4(ss []sel) bool {
	for _, s := range ss {
		if s.proto != 0 || !s.anyPorts {
			return true
		}
	}
	return false
}

// Protocols whose selectors use two ports, and those with one "port" (RFC 4301
// section 4.4.1.1).
const (
	protoICMP    = 1
	protoTCP     = 6
	protoUDP     = 17
	protoDCCP    = 33
	protoICMPv6  = 58
	protoMH      = 135
	protoSCTP    = 132
	protoUDPLite = 136

	protoIPv4  = 4  // ESP next header for tunnel mode with IPv4 inside
	protoIPv6  = 41 // and IPv6
	protoNoNxt = 59 // dummy packet (RFC 4303 section 2.6)
)

// flow is what selectors look at in an inner packet.
type flow struct {
	is4   bool
	s, d  u128 // source and destination in the 16-byte (v4-mapped) form
	proto uint8
	kind  uint8 // portsNone, portsTwo, portsOne
	sport uint16
	dport uint16 // for portsOne: type<<8|code in sport
}

const (
	portsNone = iota // no ports available (unknown protocol, fragment, truncated)
	portsTwo
	portsOne
)

// parseIP reads the addresses of an inner IPv4 or IPv6 packet and returns its length
// from the IP header (the packet may carry TFC padding after it, RFC 4303 section
// 2.7). With l4 it also finds the protocol and ports.
func (f *flow) parseIP(p []byte, l4 bool) (int, bool) {
	if len(p) < 1 {
		return 0, false
	}
	switch p[0] >> 4 {
	case 4:
		if len(p) < 20 {
			return 0, false
		}
		ihl := int(p[0]&0x0f) * 4
		tot := int(binary.BigEndian.Uint16(p[2:4]))
		if ihl < 20 || tot < ihl || tot > len(p) {
			return 0, false
		}
		f.is4 = true
		// As netip.Addr.As16 does: the v4-mapped form ::ffff:a.b.c.d.
		f.s = u128{0, 0xffff<<32 | uint64(binary.BigEndian.Uint32(p[12:16]))}
		f.d = u128{0, 0xffff<<32 | uint64(binary.BigEndian.Uint32(p[16:20]))}
		if l4 {
			f.proto = p[9]
			f.kind = portsNone
			if binary.BigEndian.Uint16(p[6:8])&0x1fff == 0 {
				f.ports(p[ihl:tot])
			}
		}
		return tot, true
	case 6:
		if len(p) < 40 {
			return 0, false
		}
		tot := 40 + int(binary.BigEndian.Uint16(p[4:6]))
		if tot > len(p) || tot == 40 && p[6] == 0 {
			// Payload length 0 with a hop-by-hop header is a jumbogram (RFC 2675): no.
			return 0, false
		}
		f.is4 = false
		f.s = u128{binary.BigEndian.Uint64(p[8:16]), binary.BigEndian.Uint64(p[16:24])}
		f.d = u128{binary.BigEndian.Uint64(p[24:32]), binary.BigEndian.Uint64(p[32:40])}
		if l4 {
			f.kind = portsNone
			f.ipv6L4(p[40:tot], p[6])
		}
		return tot, true
	}
	return 0, false
}

// ipv6L4 skips IPv6 extension headers (at most 8) to the next layer protocol.
func (f *flow) ipv6L4(b []byte, nh uint8) {
	first := true
	for range 8 {
		switch nh {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if len(b) < 8 {
				f.proto = nh
				return
			}
			n := (int(b[1]) + 1) * 8
			if n > len(b) {
				f.proto = nh
				return
			}
			nh, b = b[0], b[n:]
		case 44: // fragment
			if len(b) < 8 {
				f.proto = nh
				return
			}
			if binary.BigEndian.Uint16(b[2:4])>>3 != 0 {
				first = false
			}
			nh, b = b[0], b[8:]
		default:
			f.proto = nh
			if first {
				f.ports(b)
			}
			return
		}
	}
	f.proto = nh
}

// ports reads the ports (or ICMP type and code) of protocol f.proto from b.
func (f *flow) ports(b []byte) {
	switch f.proto {
	case protoTCP, protoUDP, protoSCTP, protoDCCP, protoUDPLite:
		if len(b) >= 4 {
			f.kind = portsTwo
			f.sport = binary.BigEndian.Uint16(b[0:2])
			f.dport = binary.BigEndian.Uint16(b[2:4])
		}
	case protoICMP, protoICMPv6:
		if len(b) >= 2 {
			f.kind = portsOne
			f.sport = uint16(b[0])<<8 | uint16(b[1])
		}
	case protoMH:
		if len(b) >= 3 {
			f.kind = portsOne
			f.sport = uint16(b[2]) << 8
		}
	}
}

// matchAddr reports whether a (of family is4) is inside s.
func (s *sel) matchAddr(is4 bool, a u128) bool {
	return s.is4 == is4 && !a.less(s.lo) && !s.hi.less(a)
}

// matchL4 checks protocol and ports. sender says whether s is the selector of the side
// that sent the packet; port is the packet's port on s's side.
func (s *sel) matchL4(f *flow, port uint16, sender bool) bool {
	if s.proto != 0 && s.proto != f.proto {
		return false
	}
	if s.anyPorts {
		return true
	}
	switch f.kind {
	case portsTwo:
		return !s.opaque && s.pLo <= port && port <= s.pHi
	case portsOne:
		if !sender {
			return true // the receiver's side has no "port" for ICMP or MH
		}
		return !s.opaque && s.pLo <= f.sport && f.sport <= s.pHi
	default:
		return s.opaque
	}
}

// matchSrc reports whether the packet's source side matches one of ss.
func matchSrc(ss []sel, f *flow, l4 bool) bool {
	for i := range ss {
		s := &ss[i]
		if s.matchAddr(f.is4, f.s) && (!l4 || s.matchL4(f, f.sport, true)) {
			return true
		}
	}
	return false
}

// matchDst reports whether the packet's destination side matches one of ss.
func matchDst(ss []sel, f *flow, l4 bool) bool {
	for i := range ss {
		s := &ss[i]
		if s.matchAddr(f.is4, f.d) && (!l4 || s.matchL4(f, f.dport, false)) {
			return true
		}
	}
	return false
}
