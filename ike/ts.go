package ike

import (
	"net/netip"

	"github.com/mobikevpn/mobikevpn/wire"
)

// resolveTS turns configured selectors into concrete ones; "dynamic" becomes one
// selector per address in dyn (an unspecified address: its whole family).
func resolveTS(cfgs []TSConfig, dyn []netip.Addr) []wire.TrafficSelector {
	var out []wire.TrafficSelector
	for _, c := range cfgs {
		if !c.Dynamic {
			out = append(out, c.Selector)
			continue
		}
		for _, a := range dyn {
			s := wire.TSFromRange(a, a)
			if a.IsUnspecified() {
				s = wire.TSFromPrefix(netip.PrefixFrom(a, 0))
			}
			s.IPProtocol = c.Selector.IPProtocol
			if c.Selector.EndPort != 0 || c.Selector.StartPort != 0 {
				s.StartPort, s.EndPort = c.Selector.StartPort, c.Selector.EndPort
			}
			out = append(out, s)
		}
	}
	return out
}

func maxAddr(a, b netip.Addr) netip.Addr {
	if a.Compare(b) >= 0 {
		return a
	}
	return b
}

func minAddr(a, b netip.Addr) netip.Addr {
	if a.Compare(b) <= 0 {
		return a
	}
	return b
}

// intersect returns the selector both a and b allow, if any.
func intersect(a, b wire.TrafficSelector) (wire.TrafficSelector, bool) {
	if a.Type != b.Type {
		return wire.TrafficSelector{}, false
	}
	out := wire.TrafficSelector{Type: a.Type}
	switch {
	case a.IPProtocol == 0:
		out.IPProtocol = b.IPProtocol
	case b.IPProtocol == 0 || a.IPProtocol == b.IPProtocol:
		out.IPProtocol = a.IPProtocol
	default:
		return wire.TrafficSelector{}, false
	}
	out.StartPort = max(a.StartPort, b.StartPort)
	out.EndPort = min(a.EndPort, b.EndPort)
	if out.StartPort > out.EndPort {
		return wire.TrafficSelector{}, false
	}
	out.Start = maxAddr(a.Start, b.Start)
	out.End = minAddr(a.End, b.End)
	if out.Start.Compare(out.End) > 0 {
		return wire.TrafficSelector{}, false
	}
	return out, true
}

// narrow intersects every proposed selector with every allowed one (RFC 7296 2.9).
func narrow(proposed, allowed []wire.TrafficSelector) []wire.TrafficSelector {
	var out []wire.TrafficSelector
	for _, p := range proposed {
		for _, a := range allowed {
			if s, ok := intersect(p, a); ok && !containsTS(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

func containsTS(list []wire.TrafficSelector, s wire.TrafficSelector) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// within reports whether inner is entirely inside outer.
func within(inner, outer wire.TrafficSelector) bool {
	s, ok := intersect(inner, outer)
	return ok && s == inner
}

// tsSubset reports whether every selector of got lies inside one of offered.
func tsSubset(got, offered []wire.TrafficSelector) bool {
	if len(got) == 0 {
		return false
	}
	for _, g := range got {
		ok := false
		for _, o := range offered {
			if within(g, o) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func tsStrings(ts []wire.TrafficSelector) []string {
	out := make([]string, 0, len(ts))
	for _, t := range ts {
		out = append(out, t.String())
	}
	return out
}
