package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/mobikevpn/mobikevpn/ike"
	"github.com/mobikevpn/mobikevpn/wire"
)

// The configuration's traffic selectors are the engine's ike.TSConfig ("dynamic" or a
// wire.TrafficSelector), so that the address arithmetic is wire's alone.

// dynamicTS is "dynamic" as ParseTS returns it: local_ts's and remote_ts's default.
var dynamicTS = ike.TSConfig{Dynamic: true, Selector: wire.TrafficSelector{EndPort: 0xffff}}

// FormatTS formats t in the syntax ParseTS accepts.
func FormatTS(t ike.TSConfig) string {
	sel := t.Selector
	var s string
	switch pf, ok := sel.Prefix(); {
	case t.Dynamic:
		s = "dynamic"
	case ok:
		s = pf.String()
	default:
		s = sel.Start.String() + "-" + sel.End.String()
	}
	if sel.IPProtocol == 0 && sel.StartPort == 0 && sel.EndPort == 0xffff {
		return s
	}
	proto := "%any"
	if sel.IPProtocol != 0 {
		proto = strconv.Itoa(int(sel.IPProtocol))
		for name, n := range protoNames {
			if n == sel.IPProtocol && name != "ipv6-icmp" {
				proto = name
			}
		}
	}
	if sel.StartPort == 0 && sel.EndPort == 0xffff {
		return s + "[" + proto + "]"
	}
	lo, hi := sel.StartPort, sel.EndPort
	if isICMP(sel.IPProtocol) && lo&0xff == 0 && hi&0xff == 0xff {
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
// message type (type<<8|code as RFC 4301). A bare "[PROTO/PORT]" means dynamic. The
// result is what the engine takes: a range selector typed by its family, or Dynamic
// with only the protocol and ports set.
func ParseTS(s string) (ike.TSConfig, error) {
	t := ike.TSConfig{Selector: wire.TrafficSelector{EndPort: 0xffff}}
	addr, pp, hasPP := strings.Cut(s, "[")
	addr = strings.TrimSpace(addr)
	if hasPP {
		var ok bool
		if pp, ok = strings.CutSuffix(pp, "]"); !ok {
			return ike.TSConfig{}, errors.New("missing ] after the protocol/port")
		}
		if err := parseProtoPort(&t.Selector, pp); err != nil {
			return ike.TSConfig{}, err
		}
	}
	var r wire.TrafficSelector // the address range
	switch {
	case addr == "dynamic" || (addr == "" && hasPP):
		t.Dynamic = true
		return t, nil
	case addr == "":
		return ike.TSConfig{}, errors.New("empty traffic selector")
	case strings.Contains(addr, "-"):
		a, b, _ := strings.Cut(addr, "-")
		start, err1 := netip.ParseAddr(strings.TrimSpace(a))
		end, err2 := netip.ParseAddr(strings.TrimSpace(b))
		if err1 != nil || err2 != nil || start.Zone() != "" || end.Zone() != "" {
			return ike.TSConfig{}, fmt.Errorf("%q is not an address range; use FIRST-LAST, e.g. 198.18.0.10-198.18.0.20", addr)
		}
		start, end = start.Unmap(), end.Unmap()
		if start.Is4() != end.Is4() {
			return ike.TSConfig{}, fmt.Errorf("range %q mixes IPv4 and IPv6", addr)
		}
		if end.Less(start) {
			return ike.TSConfig{}, fmt.Errorf("range %q ends before it starts", addr)
		}
		r = wire.TSFromRange(start, end)
	case strings.Contains(addr, "/"):
		pf, err := netip.ParsePrefix(addr)
		if err != nil {
			return ike.TSConfig{}, fmt.Errorf("%q is not a CIDR prefix; use e.g. 198.18.0.0/16", addr)
		}
		if pf.Addr().Is4In6() {
			return ike.TSConfig{}, fmt.Errorf("%q is an IPv4-mapped IPv6 prefix; write the IPv4 prefix", addr)
		}
		if pf.Masked() != pf {
			return ike.TSConfig{}, fmt.Errorf("%q has host bits set; did you mean %s?", addr, pf.Masked())
		}
		r = wire.TSFromPrefix(pf)
	default:
		a, err := netip.ParseAddr(addr)
		if err != nil || a.Zone() != "" {
			return ike.TSConfig{}, fmt.Errorf("%q is not dynamic, a CIDR prefix, an address or a range", addr)
		}
		r = wire.TSFromRange(a, a)
	}
	t.Selector.Type, t.Selector.Start, t.Selector.End = r.Type, r.Start, r.End
	return t, nil
}

// parseProtoPort reads "PROTO/PORT" into sel's protocol and ports.
func parseProtoPort(sel *wire.TrafficSelector, pp string) error {
	proto, port, hasPort := strings.Cut(pp, "/")
	proto = strings.TrimSpace(proto)
	switch {
	case proto == "" || proto == "%any":
	default:
		if n, ok := protoNames[strings.ToLower(proto)]; ok {
			sel.IPProtocol = n
			break
		}
		n, err := strconv.ParseUint(proto, 10, 8)
		if err != nil || n == 0 {
			return fmt.Errorf("unknown protocol %q; use tcp, udp, icmp, icmpv6, sctp, gre, a number 1..255 or %%any", proto)
		}
		sel.IPProtocol = uint8(n)
	}
	port = strings.TrimSpace(port)
	if !hasPort || port == "" || port == "%any" {
		return nil
	}
	if sel.IPProtocol == 0 {
		return fmt.Errorf("port %q needs a protocol, e.g. [tcp/%s] or [udp/%s]", port, port, port)
	}
	lo, hi, isRange := strings.Cut(port, "-")
	max := uint64(0xffff)
	if isICMP(sel.IPProtocol) {
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
	if isICMP(sel.IPProtocol) {
		sel.StartPort, sel.EndPort = uint16(a<<8), uint16(b<<8|0xff)
	} else {
		sel.StartPort, sel.EndPort = uint16(a), uint16(b)
	}
	return nil
}
