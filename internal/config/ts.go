package config

import (
	"errors"
	"fmt"
	"github.com/mobikevpn/mobikevpn/ike/wire"
	"net/netip"
	"strconv"
	"strings"
)

// TS is a traffic selector as written in local_ts/remote_ts: an address range (or
// dynamic: the virtual IP or the outer address, filled in at negotiation) with an
// optional protocol and port range.
type TS struct {
	Dynamic    bool
	Start, End netip.Addr // invalid when Dynamic
	Proto      uint8      // IP protocol, 0 = any
	StartPort  uint16     // 0..65535 = any; for ICMP/ICMPv6 type<<8|code as RFC 4301
	EndPort    uint16
}

// Prefix returns the TS's address range as a prefix when it is exactly one.
func (t TS) Prefix() (netip.Prefix, bool) {
	if t.Dynamic || !t.Start.IsValid() {
		return netip.Prefix{}, false
	}
	return wire.TSFromRange(t.Start, t.End).Prefix()
}

// String formats the TS in the syntax ParseTS accepts.
func (t TS) String() string {
	var s string
	switch pf, ok := t.Prefix(); {
	case t.Dynamic:
		s = "dynamic"
	case ok:
		s = pf.String()
	default:
		s = t.Start.String() + "-" + t.End.String()
	}
	if t.Proto == 0 && t.StartPort == 0 && t.EndPort == 0xffff {
		return s
	}
	proto := "%any"
	if t.Proto != 0 {
		proto = strconv.Itoa(int(t.Proto))
		for name, n := range protoNames {
			if n == t.Proto && name != "ipv6-icmp" {
				proto = name
			}
		}
	}
	if t.StartPort == 0 && t.EndPort == 0xffff {
		return s + "[" + proto + "]"
	}
	lo, hi := t.StartPort, t.EndPort
	if isICMP(t.Proto) && lo&0xff == 0 && hi&0xff == 0xff {
		lo, hi = lo>>8, hi>>8
	}
	if lo == hi {
		return fmt.Sprintf("%s[%s/%d]", s, proto, lo)
	}
	return fmt.Sprintf("%s[%s/%d-%d]", s, proto, lo, hi)
}

var protoNames = map[string]uint8{
	"icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132,
}

func isICMP(p uint8) bool { return p == 1 || p == 58 }

// ParseTS parses a traffic selector in strongSwan's syntax: "dynamic", a CIDR prefix,
// a single address or a range "A-B", optionally followed by "[PROTO]" or
// "[PROTO/PORT]" where PROTO is a name (tcp, udp, icmp, icmpv6, sctp, gre), a number
// or %any, and PORT a number, a range "LO-HI" or %any; for icmp/icmpv6 PORT is the
// message type. A bare "[PROTO/PORT]" means dynamic.
func ParseTS(s string) (TS, error) {
	t := TS{EndPort: 0xffff}
	addr, pp, hasPP := strings.Cut(s, "[")
	addr = strings.TrimSpace(addr)
	if hasPP {
		var ok bool
		if pp, ok = strings.CutSuffix(pp, "]"); !ok {
			return TS{}, errors.New("missing ] after the protocol/port")
		}
		if err := t.parseProtoPort(pp); err != nil {
			return TS{}, err
		}
	}
	switch {
	case addr == "dynamic" || (addr == "" && hasPP):
		t.Dynamic = true
	case addr == "":
		return TS{}, errors.New("empty traffic selector")
	case strings.Contains(addr, "-"):
		a, b, _ := strings.Cut(addr, "-")
		start, err1 := netip.ParseAddr(strings.TrimSpace(a))
		end, err2 := netip.ParseAddr(strings.TrimSpace(b))
		if err1 != nil || err2 != nil || start.Zone() != "" || end.Zone() != "" {
			return TS{}, fmt.Errorf("%q is not an address range; use FIRST-LAST, e.g. 198.18.0.10-198.18.0.20", addr)
		}
		start, end = start.Unmap(), end.Unmap()
		if start.Is4() != end.Is4() {
			return TS{}, fmt.Errorf("range %q mixes IPv4 and IPv6", addr)
		}
		if end.Less(start) {
			return TS{}, fmt.Errorf("range %q ends before it starts", addr)
		}
		t.Start, t.End = start, end
	case strings.Contains(addr, "/"):
		pf, err := netip.ParsePrefix(addr)
		if err != nil {
			return TS{}, fmt.Errorf("%q is not a CIDR prefix; use e.g. 198.18.0.0/16", addr)
		}
		if pf.Addr().Is4In6() {
			return TS{}, fmt.Errorf("%q is an IPv4-mapped IPv6 prefix; write the IPv4 prefix", addr)
		}
		if pf.Masked() != pf {
			return TS{}, fmt.Errorf("%q has host bits set; did you mean %s?", addr, pf.Masked())
		}
		t.Start, t.End = pf.Addr(), wire.TSFromPrefix(pf).End
	default:
		a, err := netip.ParseAddr(addr)
		if err != nil || a.Zone() != "" {
			return TS{}, fmt.Errorf("%q is not dynamic, a CIDR prefix, an address or a range", addr)
		}
		t.Start, t.End = a.Unmap(), a.Unmap()
	}
	return t, nil
}

func (t *TS) parseProtoPort(pp string) error {
	proto, port, hasPort := strings.Cut(pp, "/")
	proto = strings.TrimSpace(proto)
	switch {
	case proto == "" || proto == "%any":
	default:
		if n, ok := protoNames[strings.ToLower(proto)]; ok {
			t.Proto = n
			break
		}
		n, err := strconv.ParseUint(proto, 10, 8)
		if err != nil || n == 0 {
			return fmt.Errorf("unknown protocol %q; use tcp, udp, icmp, icmpv6, sctp, gre, a number 1..255 or %%any", proto)
		}
		t.Proto = uint8(n)
	}
	port = strings.TrimSpace(port)
	if !hasPort || port == "" || port == "%any" {
		return nil
	}
	if t.Proto == 0 {
		return fmt.Errorf("port %q needs a protocol, e.g. [tcp/%s] or [udp/%s]", port, port, port)
	}
	lo, hi, isRange := strings.Cut(port, "-")
	max := uint64(0xffff)
	if isICMP(t.Proto) {
		max = 0xff
	}
	a, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	b := a
	var err2 error
	if isRange {
		b, err2 = strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	}
	if err1 != nil || err2 != nil || a > max || b > max {
		return fmt.Errorf("bad port %q; use a number 0..%d, a range LO-HI or %%any", port, max)
	}
	if b < a {
		return fmt.Errorf("port range %q ends before it starts", port)
	}
	if isICMP(t.Proto) {
		t.StartPort, t.EndPort = uint16(a<<8), uint16(b<<8|0xff)
	} else {
		t.StartPort, t.EndPort = uint16(a), uint16(b)
	}
	return nil
}
