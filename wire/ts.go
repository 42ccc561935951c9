package wire

import (
	"encoding/binary"
	"net/netip"
	"strconv"
)

// Selector lengths (RFC 7296 3.13.1).
const (
	tsIPv4Len = 16
	tsIPv6Len = 40
)

// Type returns PayloadTSi or PayloadTSr.
func (ts *TS) Type() PayloadType {
	if ts.Initiator {
		return PayloadTSi
	}
	return PayloadTSr
}

// ParseTS decodes a TSi (initiator true) or TSr payload body: Number of TSs (1 octet),
// RESERVED (3), selectors. TS_IPV4_ADDR_RANGE selectors are 16 octets and
// TS_IPV6_ADDR_RANGE 40; any other TS type is an error, and the selectors must fill the
// body exactly and match the count.
func ParseTS(body []byte, initiator bool) (*TS, error) {
	pt := PayloadTSr
	if initiator {
		pt = PayloadTSi
	}
	if len(body) < 4 {
		return nil, syntaxErr(pt, "body is %d octets, want at least 4", len(body))
	}
	num := int(body[0])
	b := body[4:]
	ts := &TS{Initiator: initiator}
	if num > 0 {
		ts.Selectors = make([]TrafficSelector, 0, min(num, len(b)/tsIPv4Len))
	}
	for i := 0; i < num; i++ {
		if len(b) < 4 {
			return nil, syntaxErr(pt, "selector %d of %d truncated", i+1, num)
		}
		sel := TrafficSelector{Type: TSType(b[0]), IPProtocol: b[1]}
		n := int(binary.BigEndian.Uint16(b[2:4]))
		var want, alen int
		switch sel.Type {
		case TS_IPV4_ADDR_RANGE:
			want, alen = tsIPv4Len, 4
		case TS_IPV6_ADDR_RANGE:
			want, alen = tsIPv6Len, 16
		default:
			return nil, syntaxErr(pt, "selector %d: unknown TS type %d", i+1, sel.Type)
		}
		if n != want || n > len(b) {
			return nil, syntaxErr(pt, "selector %d: length %d, want %d, %d octets remain", i+1, n, want, len(b))
		}
		sel.StartPort = binary.BigEndian.Uint16(b[4:6])
		sel.EndPort = binary.BigEndian.Uint16(b[6:8])
		sel.Start, _ = netip.AddrFromSlice(b[8 : 8+alen])
		sel.End, _ = netip.AddrFromSlice(b[8+alen : 8+2*alen])
		ts.Selectors = append(ts.Selectors, sel)
		b = b[n:]
	}
	if len(b) != 0 {
		return nil, syntaxErr(pt, "%d octets after %d selectors", len(b), num)
	}
	return ts, nil
}

// AppendBody appends the TS payload body. A selector whose Type is neither IPv4 nor
// IPv6 range is written as the range type of its Start address; an address of the other
// family than the type is written as zeros.
func (ts *TS) AppendBody(b []byte) []byte {
	b = append(b, byte(len(ts.Selectors)), 0, 0, 0)
	for i := range ts.Selectors {
		b = ts.Selectors[i].appendTo(b)
	}
	return b
}

func (sel *TrafficSelector) appendTo(b []byte) []byte {
	typ := sel.Type
	if typ != TS_IPV4_ADDR_RANGE && typ != TS_IPV6_ADDR_RANGE {
		typ = TS_IPV6_ADDR_RANGE
		if sel.Start.Unmap().Is4() {
			typ = TS_IPV4_ADDR_RANGE
		}
	}
	n := tsIPv6Len
	if typ == TS_IPV4_ADDR_RANGE {
		n = tsIPv4Len
	}
	b = append(b, byte(typ), sel.IPProtocol, byte(n>>8), byte(n))
	b = binary.BigEndian.AppendUint16(b, sel.StartPort)
	b = binary.BigEndian.AppendUint16(b, sel.EndPort)
	b = appendAddr(b, sel.Start, typ == TS_IPV4_ADDR_RANGE)
	return appendAddr(b, sel.End, typ == TS_IPV4_ADDR_RANGE)
}

func appendAddr(b []byte, a netip.Addr, v4 bool) []byte {
	switch {
	case v4 && a.Unmap().Is4():
		x := a.Unmap().As4()
		return append(b, x[:]...)
	case v4:
		return append(b, make([]byte, 4)...)
	case a.Is6():
		x := a.As16()
		return append(b, x[:]...)
	}
	return append(b, make([]byte, 16)...)
}

// TSFromPrefix returns the selector covering prefix p with any protocol and all ports.
func TSFromPrefix(p netip.Prefix) TrafficSelector {
	p = p.Masked()
	return TSFromRange(p.Addr(), lastAddr(p))
}

// TSFromRange returns the selector covering start..end with any protocol and all ports.
func TSFromRange(start, end netip.Addr) TrafficSelector {
	start, end = start.Unmap(), end.Unmap()
	typ := TS_IPV6_ADDR_RANGE
	if start.Is4() {
		typ = TS_IPV4_ADDR_RANGE
	}
	return TrafficSelector{Type: typ, StartPort: 0, EndPort: 0xffff, Start: start, End: end}
}

// lastAddr returns the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr()
	bits := p.Bits()
	if !a.IsValid() || bits < 0 {
		return netip.Addr{}
	}
	b := a.AsSlice()
	for i := range b {
		if lo := i * 8; lo+8 <= bits {
			continue
		} else if lo >= bits {
			b[i] = 0xff
		} else {
			b[i] |= 0xff >> (bits - lo)
		}
	}
	r, _ := netip.AddrFromSlice(b)
	return r
}

// AllPorts reports whether the selector covers every protocol and every port.
func (ts TrafficSelector) AllPorts() bool {
	return ts.IPProtocol == 0 && ts.StartPort == 0 && ts.EndPort == 0xffff
}

// Prefix returns the prefix whose addresses are exactly Start..End, if there is one.
func (ts TrafficSelector) Prefix() (netip.Prefix, bool) {
	if !ts.validRange() {
		return netip.Prefix{}, false
	}
	if p := firstPrefix(ts.Start, ts.End); lastAddr(p) == ts.End {
		return p, true
	}
	return netip.Prefix{}, false
}

// Prefixes returns the fewest prefixes that together cover Start..End exactly, in
// order: at most 2*bits-2 of them; nil for an empty, mixed-family or zoned range.
func (ts TrafficSelector) Prefixes() []netip.Prefix {
	if !ts.validRange() {
		return nil
	}
	var out []netip.Prefix
	for start := ts.Start; ; {
		p := firstPrefix(start, ts.End)
		out = append(out, p)
		last := lastAddr(p)
		if last == ts.End {
			return out
		}
		start = last.Next()
	}
}

// validRange reports whether Start..End is a non-empty range of one family, without
// zones (a prefix has none).
func (ts TrafficSelector) validRange() bool {
	return ts.Start.IsValid() && ts.Start.BitLen() == ts.End.BitLen() && ts.Start.Compare(ts.End) <= 0 &&
		ts.Start.Zone() == "" && ts.End.Zone() == ""
}

// firstPrefix returns the largest prefix that starts at start and ends at or before
// end (start <= end, one family).
func firstPrefix(start, end netip.Addr) netip.Prefix {
	n := start.BitLen()
	for n > 0 {
		p := netip.PrefixFrom(start, n-1).Masked()
		if p.Addr() != start || lastAddr(p).Compare(end) > 0 {
			break
		}
		n--
	}
	return netip.PrefixFrom(start, n)
}

// Contains reports whether address a lies in Start..End (ports and protocol aside).
func (ts TrafficSelector) Contains(a netip.Addr) bool {
	a = a.Unmap()
	return a.BitLen() == ts.Start.BitLen() && ts.Start.Compare(a) <= 0 && a.Compare(ts.End) <= 0
}

// String returns "198.18.0.0/16" for a selector that is exactly a prefix with any
// protocol and all ports, and otherwise a range with the protocol and ports, e.g.
// "198.18.0.1-198.18.0.9[tcp/80-80]" or "10.0.0.0/8[udp]".
func (ts TrafficSelector) String() string {
	var s string
	if p, ok := ts.Prefix(); ok {
		s = p.String()
	} else {
		s = ts.Start.String() + "-" + ts.End.String()
	}
	if ts.AllPorts() {
		return s
	}
	s += "[" + protoName(ts.IPProtocol)
	if ts.StartPort != 0 || ts.EndPort != 0xffff {
		s += "/" + strconv.Itoa(int(ts.StartPort)) + "-" + strconv.Itoa(int(ts.EndPort))
	}
	return s + "]"
}

func protoName(p uint8) string {
	switch p {
	case 0:
		return "any"
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 58:
		return "ipv6-icmp"
	case 132:
		return "sctp"
	}
	return strconv.Itoa(int(p))
}
