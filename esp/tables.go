package esp

import "maps"

// The SA tables are immutable once published, so that the packet paths read them
// without locks. They are split into tableShards pieces: a change copies the small
// array of pieces and the pieces it touches, so installing or removing an SA costs
// O(SAs/tableShards) instead of O(SAs) (a gateway with 10,000 clients rekeys all the
// time).
const tableShards = 256

// inTable is the inbound SA table by SPI.
type inTable struct {
	shards [tableShards]map[uint32]*inSA
}

// inShard spreads SPIs over the shards (Fibonacci hashing: SPIs need not be random).
func inShard(spi uint32) int { return int((spi * 0x9E3779B1) >> 24) }

func (t *inTable) get(spi uint32) *inSA { return t.shards[inShard(spi)][spi] }

// with returns a copy of t with sa added under its SPI.
func (t *inTable) with(sa *inSA) *inTable {
	nt := *t
	i := inShard(sa.spi)
	m := make(map[uint32]*inSA, len(t.shards[i])+1)
	maps.Copy(m, t.shards[i])
	m[sa.spi] = sa
	nt.shards[i] = m
	return &nt
}

// without returns a copy of t without spi.
func (t *inTable) without(spi uint32) *inTable {
	nt := *t
	i := inShard(spi)
	m := maps.Clone(t.shards[i])
	delete(m, spi)
	if len(m) == 0 {
		m = nil
	}
	nt.shards[i] = m
	return &nt
}

// outTable is the outbound policy: SAs whose remote selectors include a single address
// are found through hosts by destination; the others (scan) are tried in installation
// order. Every list is kept in installation order (outSA.order).
type outTable struct {
	byChild [tableShards]map[uint64]*outSA
	hosts   [tableShards]map[u128][]*outSA
	nHosts  int      // addresses in hosts
	scan    []*outSA // SAs with a selector that is not a single address
	nSAs    int
	nL4     int  // SAs whose selectors look at protocols or ports
	l4      bool // nL4 > 0
}

func childShard(child uint64) int { return int((child * 0x9E3779B97F4A7C15) >> 56) }

func hostShard(a u128) int { return int(((a.hi ^ a.lo) * 0x9E3779B97F4A7C15) >> 56) }

func (t *outTable) child(child uint64) *outSA { return t.byChild[childShard(child)][child] }

// each calls f for every SA, in no particular order.
func (t *outTable) each(f func(*outSA)) {
	for i := range t.byChild {
		for _, sa := range t.byChild[i] {
			f(sa)
		}
	}
}

// lookup returns the SA for the flow: first among the SAs with a host selector for the
// destination, then in installation order.
func (t *outTable) lookup(f *flow) *outSA {
	if t.nHosts > 0 {
		for _, sa := range t.hosts[hostShard(f.d)][f.d] {
			if sa.match(f) {
				return sa
			}
		}
	}
	for _, sa := range t.scan {
		if sa.match(f) {
			return sa
		}
	}
	return nil
}

// outEdit builds a changed copy of an outTable; the shards it changes are copied the
// first time they are touched, the others stay shared with the original.
type outEdit struct {
	t      *outTable
	hosts  [tableShards / 64]uint64 // shards of t.hosts already copied
	childs [tableShards / 64]uint64 // shards of t.byChild already copied
}

func editOut(t *outTable) *outEdit {
	nt := *t
	return &outEdit{t: &nt}
}

func owned(bits *[tableShards / 64]uint64, i int) bool {
	if bits[i/64]&(1<<(i%64)) != 0 {
		return true
	}
	bits[i/64] |= 1 << (i % 64)
	return false
}

func (e *outEdit) hostMap(a u128) map[u128][]*outSA {
	i := hostShard(a)
	if !owned(&e.hosts, i) {
		m := make(map[u128][]*outSA, len(e.t.hosts[i])+1)
		maps.Copy(m, e.t.hosts[i])
		e.t.hosts[i] = m
	}
	return e.t.hosts[i]
}

func (e *outEdit) childMap(child uint64) map[uint64]*outSA {
	i := childShard(child)
	if !owned(&e.childs, i) {
		m := make(map[uint64]*outSA, len(e.t.byChild[i])+1)
		maps.Copy(m, e.t.byChild[i])
		e.t.byChild[i] = m
	}
	return e.t.byChild[i]
}

// insertOrdered returns a new list: l with sa inserted by installation order, unless
// it is already there.
func insertOrdered(l []*outSA, sa *outSA) []*outSA {
	at := len(l)
	for i, x := range l {
		if x == sa {
			return l
		}
		if x.order > sa.order && at == len(l) {
			at = i
		}
	}
	out := make([]*outSA, 0, len(l)+1)
	out = append(out, l[:at]...)
	out = append(out, sa)
	return append(out, l[at:]...)
}

// removeFrom returns a new list without sa (l itself if sa is not in it).
func removeFrom(l []*outSA, sa *outSA) []*outSA {
	for i, x := range l {
		if x == sa {
			out := make([]*outSA, 0, len(l)-1)
			out = append(out, l[:i]...)
			return append(out, l[i+1:]...)
		}
	}
	return l
}

func (e *outEdit) add(sa *outSA) {
	e.childMap(sa.child)[sa.child] = sa
	e.t.nSAs++
	ranged := false
	for _, s := range sa.remote {
		if !s.host {
			ranged = true
			continue
		}
		m := e.hostMap(s.lo)
		l := m[s.lo]
		if len(l) == 0 {
			e.t.nHosts++
		}
		m[s.lo] = insertOrdered(l, sa)
	}
	if ranged {
		e.t.scan = insertOrdered(e.t.scan, sa)
	}
	if sa.l4 {
		e.t.nL4++
	}
	e.t.l4 = e.t.nL4 > 0
}

func (e *outEdit) remove(sa *outSA) {
	m := e.childMap(sa.child)
	if m[sa.child] != sa {
		return
	}
	delete(m, sa.child)
	e.t.nSAs--
	for _, s := range sa.remote {
		if !s.host {
			e.t.scan = removeFrom(e.t.scan, sa)
			continue
		}
		m := e.hostMap(s.lo)
		l, ok := m[s.lo]
		if !ok {
			continue
		}
		if l = removeFrom(l, sa); len(l) == 0 {
			delete(m, s.lo)
			e.t.nHosts--
		} else {
			m[s.lo] = l
		}
	}
	if sa.l4 {
		e.t.nL4--
	}
	e.t.l4 = e.t.nL4 > 0
}

// buildOutTable returns the table of the SAs in all, in that order of installation.
func buildOutTable(all []*outSA) *outTable {
	e := editOut(&outTable{})
	for i, sa := range all {
		sa.order = uint64(i + 1)
		e.add(sa)
	}
	return e.t
}
