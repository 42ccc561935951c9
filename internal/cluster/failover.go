package cluster

import (
	"slices"
	"strings"
)

// Failover: the SAs of a node that died (its lease expired: gone from nodes/, its owner
// keys left) are taken over by the survivors, each SA by one of them (TakeOver, a
// compare-and-swap on the owner key and the state's revision). Each survivor first takes
// the SAs Divide gives it, which evens out the nodes' loads if they all see the same
// nodes; whatever is still orphaned a little later (a survivor that died too, or views
// that differed) is taken by whichever survivor comes first. No SA is taken twice: of
// two survivors racing for one, the second finds the owner changed.

// Orphans groups the SAs of owners (Owners) by those of their owners that are not
// among the live nodes.
func Orphans(owners map[SAKey]string, live []Node) map[string][]SAKey {
	alive := make(map[string]bool, len(live))
	for _, n := range live {
		alive[n.Name] = true
	}
	out := make(map[string][]SAKey)
	for sa, owner := range owners {
		if !alive[owner] {
			out[owner] = append(out[owner], sa)
		}
	}
	for _, sas := range out {
		slices.SortFunc(sas, func(a, b SAKey) int { return strings.Compare(a.String(), b.String()) })
	}
	return out
}

// Divide returns the share of orphans that node self takes over first: the live nodes
// that are not draining fill up, in order of name, to the mean load the orphans make
// (IKE SAs, as each node's key says), and what is left goes round them. Every node
// that sees the same nodes and orphans computes the same division.
func Divide(orphans []SAKey, live []Node, self string) []SAKey {
	var takers []Node
	total := len(orphans)
	for _, n := range live {
		if !n.Draining {
			takers = append(takers, n)
			total += n.IKESAs
		}
	}
	if len(takers) == 0 {
		return nil
	}
	slices.SortFunc(takers, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	sorted := slices.Clone(orphans)
	slices.SortFunc(sorted, func(a, b SAKey) int { return strings.Compare(a.String(), b.String()) })
	mean := (total + len(takers) - 1) / len(takers)
	var mine []SAKey
	i := 0
	for _, n := range takers {
		need := max(0, mean-n.IKESAs)
		for ; need > 0 && i < len(sorted); need-- {
			if n.Name == self {
				mine = append(mine, sorted[i])
			}
			i++
		}
	}
	for j := 0; i < len(sorted); i, j = i+1, j+1 {
		if takers[j%len(takers)].Name == self {
			mine = append(mine, sorted[i])
		}
	}
	return mine
}
