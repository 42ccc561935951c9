package ike

import (
	"fmt"
	"net/netip"
)

// pool hands out virtual IPs from its prefixes; an identity gets its previous address
// back while it is free.
type pool struct {
	name   string
	pfx    []netip.Prefix
	dns    []netip.Addr
	inUse  map[netip.Addr]bool
	byID   map[leaseKey]netip.Addr // the address each identity had, per family
	cursor map[int]netip.Addr      // per prefix: where the next search starts
}

type leaseKey struct {
	id  string
	is4 bool
}

// maxScan bounds the search for a free address so that a huge prefix costs nothing.
const maxScan = 1 << 16

func newPool(c *PoolConfig) (*pool, error) {
	if len(c.Addrs) == 0 {
		return nil, fmt.Errorf("ike: pool %q has no addresses", c.Name)
	}
	p := &pool{
		name:   c.Name,
		dns:    c.DNS,
		inUse:  make(map[netip.Addr]bool),
		byID:   make(map[leaseKey]netip.Addr),
		cursor: make(map[int]netip.Addr),
	}
	for _, pf := range c.Addrs {
		p.pfx = append(p.pfx, pf.Masked())
	}
	return p, nil
}

func (p *pool) hasFamily(is4 bool) bool {
	for _, pf := range p.pfx {
		if pf.Addr().Is4() == is4 {
			return true
		}
	}
	return false
}

// allocate returns an address of the family for identity id, preferring want (if in
// the pool and free) and then the address id had before.
func (p *pool) allocate(id string, is4 bool, want netip.Addr) (netip.Addr, bool) {
	if want.IsValid() && !want.IsUnspecified() && want.Is4() == is4 && p.contains(want) && !p.inUse[want] && usable(want, p.prefixOf(want)) {
		return p.take(id, want), true
	}
	if a, ok := p.byID[leaseKey{id, is4}]; ok && !p.inUse[a] {
		return p.take(id, a), true
	}
	for i, pf := range p.pfx {
		if pf.Addr().Is4() != is4 {
			continue
		}
		a, ok := p.cursor[i]
		if !ok {
			a = pf.Addr().Next() // skip the network address
		}
		for n := 0; n < maxScan; n++ {
			if !pf.Contains(a) {
				a = pf.Addr().Next()
			}
			if usable(a, pf) && !p.inUse[a] {
				p.cursor[i] = a.Next()
				return p.take(id, a), true
			}
			a = a.Next()
		}
	}
	return netip.Addr{}, false
}

// usable excludes the network and (IPv4) broadcast addresses.
func usable(a netip.Addr, pf netip.Prefix) bool {
	if !a.IsValid() || a == pf.Addr() {
		return false
	}
	if a.Is4() && pf.Bits() < 31 {
		b := a.As4()
		bcast := pf.Addr().As4()
		host := 32 - pf.Bits()
		for i := 3; i >= 0 && host > 0; i-- {
			n := min(host, 8)
			bcast[i] |= byte(1<<n - 1)
			host -= n
		}
		if b == bcast {
			return false
		}
	}
	return true
}

func (p *pool) contains(a netip.Addr) bool { return p.prefixOf(a).IsValid() }

func (p *pool) prefixOf(a netip.Addr) netip.Prefix {
	for _, pf := range p.pfx {
		if pf.Contains(a) {
			return pf
		}
	}
	return netip.Prefix{}
}

func (p *pool) take(id string, a netip.Addr) netip.Addr {
	p.inUse[a] = true
	p.byID[leaseKey{id, a.Is4()}] = a
	return a
}

func (p *pool) release(a netip.Addr) { delete(p.inUse, a) }
