package cluster

import (
	"math"
	"slices"
	"strings"
)

// Balancing (cluster.balance): each node, on its own, compares the loads of the live
// nodes that are not draining (their IKE SAs, as their keys say) with their mean. When
// one is outside mean*(1±maxSkew), each node above the mean gives its SAs above it to
// the nodes below it, in proportion to what each lacks, and of what they lack only its
// part of the excess of all the nodes above the mean: two busy nodes do not both fill
// the same idle one. At most limit SAs a round from one node. When every node is
// within the band nothing moves (no flapping: a node just filled up to the mean gives
// nothing back), and a node that joins, empty, is below it: it receives its share.

// BalancePlan returns how many SAs node self moves to each other node this round
// (nil: none).
func BalancePlan(nodes []Node, self string, maxSkew float64, limit int) map[string]int {
	var live []Node
	total := 0
	for _, n := range nodes {
		if !n.Draining {
			live = append(live, n)
			total += n.IKESAs
		}
	}
	if len(live) < 2 || limit <= 0 {
		return nil
	}
	mean := float64(total) / float64(len(live))
	low, high := mean*(1-maxSkew), mean*(1+maxSkew)
	target := int(math.Ceil(mean))
	var me *Node
	excess, lack := 0, 0
	outside := false
	for i, n := range live {
		if n.Name == self {
			me = &live[i]
		}
		// (Outside by more than whole SAs can help: 3 over two nodes is 2 and 1.)
		if l := float64(n.IKESAs); l > high && n.IKESAs > target || l < low && n.IKESAs < int(mean) {
			outside = true
		}
		if n.IKESAs > target {
			excess += n.IKESAs - target
		}
		if n.IKESAs < target {
			lack += target - n.IKESAs
		}
	}
	if !outside || me == nil || me.IKESAs <= target || lack == 0 {
		return nil
	}
	// Of what the nodes below the mean lack, this node fills its part of the excess.
	give := min(me.IKESAs-target, limit, int(math.Ceil(float64(lack)*float64(me.IKESAs-target)/float64(excess))))
	slices.SortFunc(live, func(a, b Node) int {
		if d := a.IKESAs - b.IKESAs; d != 0 {
			return d
		}
		return strings.Compare(a.Name, b.Name)
	})
	plan := make(map[string]int)
	left := give
	for _, n := range live {
		if left == 0 || n.IKESAs >= target {
			break
		}
		k := min(left, int(math.Ceil(float64(give)*float64(target-n.IKESAs)/float64(lack))))
		plan[n.Name] = k
		left -= k
	}
	return plan
}
