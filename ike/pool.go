package ike

import (
	"fmt"
	"net/netip"
	"slices"
)

// pool hands out virtual IPs from its prefixes; an identity gets its previous address
// back while it is free.
//
// The leases it remembers by identity are bounded: an address remembers at most one
// identity (the last one it was given to), so a lease is forgotten when its address
// goes to someone else; and of the leases whose addresses are free, only the
// maxRememberedLeases most recently released are kept, so that a large pool does not
// remember every identity that ever connected.
type pool struct {
	name     string
	pfx      []netip.Prefix
	dns      []netip.Addr
	inUse    map[netip.Addr]bool
	byID     map[leaseKey]*lease   // the address each identity had last, per family
	byAddr   map[netip.Addr]*lease // the same leases by address
	released leaseList             // the leases whose address is free, least recently released first
	cursor   map[int]netip.Addr    // per prefix: where the next search starts
	maxFree  int                   // how many entries released may hold
	// leased: only granted addresses are handed out; spare are those granted and
	// free. An address released goes back to spare (it stays granted); one dropped
	// (its SA lives on elsewhere) is no longer granted here.
	leased bool
	spare  map[netip.Addr]bool
	// wanted counts, per family (index 1: IPv4), the IKE_AUTHs left unanswered for
	// want of a spare address (since WantedVIPs); dry says the last attempt to get
	// more found none (Engine.PoolDry): the peers are refused then, not kept waiting.
	wanted [2]int
	dry    [2]bool
}

func famIndex(is4 bool) int {
	if is4 {
		return 1
	}
	return 0
}

type leaseKey struct {
	id  string
	is4 bool
}

// lease is an identity's last address; while the address is free it is on the pool's
// released list.
type lease struct {
	key        leaseKey
	addr       netip.Addr
	prev, next *lease // on released
	listed     bool
}

// leaseList is a doubly linked list of leases, oldest first.
type leaseList struct {
	head, tail *lease
	n          int
}

func (l *leaseList) push(x *lease) {
	x.prev, x.next, x.listed = l.tail, nil, true
	if l.tail != nil {
		l.tail.next = x
	} else {
		l.head = x
	}
	l.tail = x
	l.n++
}

func (l *leaseList) remove(x *lease) {
	if !x.listed {
		return
	}
	if x.prev != nil {
		x.prev.next = x.next
	} else {
		l.head = x.next
	}
	if x.next != nil {
		x.next.prev = x.prev
	} else {
		l.tail = x.prev
	}
	x.prev, x.next, x.listed = nil, nil, false
	l.n--
}

// maxScan bounds the search for a free address so that a huge prefix costs nothing.
const maxScan = 1 << 16

// maxRememberedLeases caps the leases of released addresses a pool remembers.
const maxRememberedLeases = 4096

func newPool(c *PoolConfig) (*pool, error) {
	if len(c.Addrs) == 0 {
		return nil, fmt.Errorf("ike: pool %q has no addresses", c.Name)
	}
	p := &pool{
		name:    c.Name,
		dns:     c.DNS,
		inUse:   make(map[netip.Addr]bool),
		byID:    make(map[leaseKey]*lease),
		byAddr:  make(map[netip.Addr]*lease),
		cursor:  make(map[int]netip.Addr),
		maxFree: maxRememberedLeases,
		leased:  c.Leased,
		spare:   make(map[netip.Addr]bool),
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
	if p.leased {
		return p.allocateSpare(id, is4, want)
	}
	if want.IsValid() && !want.IsUnspecified() && want.Is4() == is4 && p.contains(want) && !p.inUse[want] && usable(want, p.prefixOf(want)) {
		return p.take(id, want), true
	}
	if l, ok := p.byID[leaseKey{id, is4}]; ok && !p.inUse[l.addr] {
		return p.take(id, l.addr), true
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

// allocateSpare is allocate of a leased pool: a spare address, preferring want and
// then the address id had before, else the lowest.
// canAllocate reports whether a leased pool has a spare address of the family.
func (p *pool) canAllocate(is4 bool) bool {
	for a := range p.spare {
		if a.Is4() == is4 {
			return true
		}
	}
	return false
}

func (p *pool) allocateSpare(id string, is4 bool, want netip.Addr) (netip.Addr, bool) {
	if want.Is4() == is4 && p.spare[want] {
		return p.take(id, want), true
	}
	if l, ok := p.byID[leaseKey{id, is4}]; ok && p.spare[l.addr] {
		return p.take(id, l.addr), true
	}
	var low netip.Addr
	for a := range p.spare {
		if a.Is4() == is4 && (!low.IsValid() || a.Less(low)) {
			low = a
		}
	}
	if !low.IsValid() {
		return netip.Addr{}, false
	}
	return p.take(id, low), true
}

// grant makes the free addresses of addrs in the pool spare (a leased pool).
func (p *pool) grant(addrs []netip.Addr) {
	for _, a := range addrs {
		a = a.Unmap()
		if pf := p.prefixOf(a); pf.IsValid() && usable(a, pf) && !p.inUse[a] {
			p.spare[a] = true
		}
	}
}

// takeBack removes up to n spare addresses of the family from the pool, the highest
// first, and returns them.
func (p *pool) takeBack(is4 bool, n int) []netip.Addr {
	var out []netip.Addr
	for a := range p.spare {
		if a.Is4() == is4 {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return b.Compare(a) })
	out = out[:min(n, len(out))]
	for _, a := range out {
		delete(p.spare, a)
	}
	return out
}

// drop forgets a, in use by an SA that lives on elsewhere: a leased pool no longer
// has it; any other pool has it free again.
func (p *pool) drop(a netip.Addr) {
	if !p.leased {
		p.release(a)
		return
	}
	delete(p.inUse, a)
	if l := p.byAddr[a]; l != nil {
		p.forget(l)
	}
}

// HostAddr reports whether a pool may hand out a of prefix pf: not its network address,
// nor (IPv4) its broadcast address.
func HostAddr(a netip.Addr, pf netip.Prefix) bool { return usable(a, pf.Masked()) }

// usable excludes the network and (IPv4) broadcast addresses (pf masked).
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

// take gives a to identity id, which remembers it; whoever had a before forgets it.
func (p *pool) take(id string, a netip.Addr) netip.Addr {
	p.inUse[a] = true
	delete(p.spare, a)
	key := leaseKey{id, a.Is4()}
	if l := p.byAddr[a]; l != nil {
		if l.key == key {
			p.released.remove(l)
			return a
		}
		p.forget(l)
	}
	if l := p.byID[key]; l != nil {
		p.forget(l)
	}
	l := &lease{key: key, addr: a}
	p.byID[key] = l
	p.byAddr[a] = l
	return a
}

// release frees a; its lease is remembered among the most recently released ones.
func (p *pool) release(a netip.Addr) {
	if !p.inUse[a] {
		return
	}
	delete(p.inUse, a)
	if p.leased {
		p.spare[a] = true
	}
	if l := p.byAddr[a]; l != nil {
		p.released.push(l)
		for p.released.n > p.maxFree {
			p.forget(p.released.head)
		}
	}
}

func (p *pool) forget(l *lease) {
	p.released.remove(l)
	if p.byID[l.key] == l {
		delete(p.byID, l.key)
	}
	if p.byAddr[l.addr] == l {
		delete(p.byAddr, l.addr)
	}
}

// GrantVIPs grants pool name the addresses addrs to hand out: a pool with
// PoolConfig.Leased hands out no others. Addresses outside the pool or in use are
// ignored.
func (e *Engine) GrantVIPs(name string, addrs []netip.Addr) error {
	pl := e.pools[name]
	if pl == nil || !pl.leased {
		return fmt.Errorf("ike: no leased pool %q", name)
	}
	pl.grant(addrs)
	return nil
}

// WantedVIPs returns how many IKE_AUTHs waited for an address of pool name (leased) of
// the family since the last call, and forgets them: what the caller should get besides
// its usual spare ones. (A peer's retransmissions count again.)
func (e *Engine) WantedVIPs(name string, is4 bool) int {
	pl := e.pools[name]
	if pl == nil {
		return 0
	}
	n := pl.wanted[famIndex(is4)]
	pl.wanted[famIndex(is4)] = 0
	return n
}

// PoolDry says whether the caller found no more addresses for pool name (leased) of a
// family: with none spare, peers asking for one are then refused at once
// (INTERNAL_ADDRESS_FAILURE) instead of waiting for a grant.
func (e *Engine) PoolDry(name string, is4, dry bool) {
	if pl := e.pools[name]; pl != nil {
		pl.dry[famIndex(is4)] = dry
	}
}

// SpareVIPs returns how many addresses granted to pool name are free, IPv4 and IPv6.
func (e *Engine) SpareVIPs(name string) (v4, v6 int) {
	if pl := e.pools[name]; pl != nil {
		for a := range pl.spare {
			if a.Is4() {
				v4++
			} else {
				v6++
			}
		}
	}
	return v4, v6
}

// ReturnVIPs takes up to n free granted addresses of the family back from pool name
// (they are not handed out any more) and returns them.
func (e *Engine) ReturnVIPs(name string, is4 bool, n int) []netip.Addr {
	if pl := e.pools[name]; pl != nil {
		return pl.takeBack(is4, n)
	}
	return nil
}

// RevokeVIP takes address a back from the spare addresses of every leased pool: another
// gateway holds it now (it took over the SA that has it). It reports whether a was
// spare here, and whether it is in use here (by a peer of this engine: then it was
// handed out twice, which the caller reports).
func (e *Engine) RevokeVIP(a netip.Addr) (spare, inUse bool) {
	a = a.Unmap()
	for _, pl := range e.pools {
		if !pl.leased {
			continue
		}
		if pl.spare[a] {
			delete(pl.spare, a)
			spare = true
		}
		inUse = inUse || pl.inUse[a]
	}
	return spare, inUse
}
