package config

import (
	"math"
	"strconv"
	"strings"
)

// Child SA volume limits (swanctl.conf's rekey_bytes, life_bytes, rekey_packets,
// life_packets) and max_children.

const (
	DefaultMaxChildren = 32   // max_children: Child SAs per IKE SA
	MaxMaxChildren     = 1000 // max_children
)

// volume reads a byte or packet count: a non-negative integer, optionally followed by
// K, M, G or T (powers of 1024, either case, as swanctl.conf). what is "bytes" or
// "packets", for the error message.
func (p *parser) volume(v val, what string) (uint64, error) {
	s, err := p.scalar(v, "a number of "+what)
	if err != nil {
		return 0, err
	}
	num := strings.TrimSpace(s)
	shift := 0
	if n := len(num); n > 0 {
		switch num[n-1] {
		case 'k', 'K':
			shift = 10
		case 'm', 'M':
			shift = 20
		case 'g', 'G':
			shift = 30
		case 't', 'T':
			shift = 40
		}
		if shift > 0 {
			num = strings.TrimSpace(num[:n-1])
		}
	}
	x, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, p.verr(v, "%q is too large; at most %d", s, uint64(math.MaxInt64))
		}
		return 0, p.verr(v, "%q is not a number of %s; use an integer, optionally with K, M, G or T (powers of 1024), e.g. 500M; 0 for no limit", s, what)
	}
	if x > math.MaxInt64>>shift {
		return 0, p.verr(v, "%q is too large; at most %d", s, uint64(math.MaxInt64))
	}
	return x << shift, nil
}

// childVolumes reads a child's rekey_bytes, life_bytes, rekey_packets and life_packets.
// As in swanctl.conf, a life_* left out is 10% more than its rekey_*, and a life_* must
// be more than its rekey_*.
func (p *parser) childVolumes(o *obj, ch *Child) error {
	for _, l := range []struct {
		what        string
		rekey, life string
		rdst, ldst  *uint64
	}{
		{"bytes", "rekey_bytes", "life_bytes", &ch.RekeyBytes, &ch.LifeBytes},
		{"packets", "rekey_packets", "life_packets", &ch.RekeyPackets, &ch.LifePackets},
	} {
		rv, hasRekey := o.get(l.rekey)
		if hasRekey {
			n, err := p.volume(rv, l.what)
			if err != nil {
				return err
			}
			*l.rdst = n
		}
		lv, hasLife := o.get(l.life)
		if !hasLife {
			*l.ldst = *l.rdst + *l.rdst/10
			continue
		}
		n, err := p.volume(lv, l.what)
		if err != nil {
			return err
		}
		*l.ldst = n
		if n != 0 && *l.rdst != 0 && n <= *l.rdst {
			return p.verr(lv, "%s (%d) must be more than %s (%d): the SA is rekeyed at %s and closed at %s", l.life, n, l.rekey, *l.rdst, l.rekey, l.life)
		}
	}
	return nil
}
