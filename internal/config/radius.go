package config

import (
	"net/netip"
	"time"
)

// radius reads the radius section: the RADIUS servers of EAP-RADIUS.
func (p *parser) radius(v val, r *Radius) error {
	o, err := p.object(v, "servers, timeout, tries", "servers", "timeout", "tries")
	if err != nil {
		return err
	}
	r.Timeout, r.Tries = 2*time.Second, 3
	return p.apply(o, []setting{
		{key: "servers", need: "missing; e.g. servers: [{ addr: 198.18.0.5:1812, secret: \"...\" }]", read: func(p *parser, v val) error {
			elems, err := p.seq(v, "of RADIUS servers, each with addr and secret")
			if err != nil {
				return err
			}
			if len(elems) == 0 {
				return p.verr(v, "needs at least one server, e.g. [{ addr: 198.18.0.5:1812, secret: \"...\" }]")
			}
			for _, e := range elems {
				s, err := p.radiusServer(e)
				if err != nil {
					return err
				}
				r.Servers = append(r.Servers, s)
			}
			return nil
		}},
		{key: "timeout", read: positiveDurationKey(&r.Timeout, "2s")},
		{key: "tries", read: intKey(&r.Tries, 1, 10)},
	})
}

// radiusServer reads one entry of radius.servers.
func (p *parser) radiusServer(e val) (RadiusServer, error) {
	var s RadiusServer
	o, err := p.object(e, "addr, secret", "addr", "secret")
	if err != nil {
		return s, err
	}
	err = p.apply(o, []setting{
		{key: "addr", need: "missing; the server's address and port, e.g. addr: 198.18.0.5:1812", read: func(p *parser, v val) error {
			str, err := p.str(v)
			if err != nil {
				return err
			}
			if a, err := netip.ParseAddr(str); err == nil {
				s.Addr = netip.AddrPortFrom(a.Unmap(), 1812)
				return nil
			}
			ap, err := netip.ParseAddrPort(str)
			if err != nil || ap.Port() == 0 {
				return p.verr(v, "%q is not an address with an optional port, e.g. 198.18.0.5:1812, [2001:db8::5]:1812 or 198.18.0.5", str)
			}
			s.Addr = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			return nil
		}},
		{key: "secret", need: "missing; the secret shared with the RADIUS server", read: func(p *parser, v val) error {
			str, err := p.scalar(v, "a string")
			if err != nil {
				return err
			}
			if s.Secret, err = decodeSecret(str); err != nil {
				return p.verr(v, "a RADIUS shared secret must not be empty (0x... is hex, 0s... base64)")
			}
			return nil
		}},
	})
	return s, err
}
