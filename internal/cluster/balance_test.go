package cluster

import (
	"fmt"
	"math"
	"testing"
)

// loadsAfter applies every node's plan to the loads at once (the nodes decide on the
// same view), as one balancing round does.
func loadsAfter(nodes []Node, skew float64, limit int) ([]Node, int) {
	out := make([]Node, len(nodes))
	copy(out, nodes)
	idx := map[string]int{}
	for i, n := range nodes {
		idx[n.Name] = i
	}
	moved := 0
	for _, n := range nodes {
		for to, k := range BalancePlan(nodes, n.Name, skew, limit) {
			out[idx[n.Name]].IKESAs -= k
			out[idx[to]].IKESAs += k
			moved += k
		}
	}
	return out, moved
}

func TestBalancePlan(t *testing.T) {
	for _, tc := range []struct {
		name  string
		nodes []Node
		want  []int // loads after the rounds it takes
	}{
		{"a node joins", []Node{{Name: "a", IKESAs: 300}, {Name: "b", IKESAs: 300}, {Name: "c", IKESAs: 0}}, []int{200, 200, 200}},
		{"within the band: nothing moves", []Node{{Name: "a", IKESAs: 110}, {Name: "b", IKESAs: 95}, {Name: "c", IKESAs: 95}}, []int{110, 95, 95}},
		{"one busy node", []Node{{Name: "a", IKESAs: 900}, {Name: "b", IKESAs: 0}, {Name: "c", IKESAs: 0}}, []int{324, 288, 288}},
		{"two busy nodes, one idle", []Node{{Name: "a", IKESAs: 400}, {Name: "b", IKESAs: 400}, {Name: "c", IKESAs: 100}}, []int{300, 300, 300}},
		{"below the band", []Node{{Name: "a", IKESAs: 110}, {Name: "b", IKESAs: 110}, {Name: "c", IKESAs: 70}}, []int{97, 97, 96}},
		{"a draining node is left out", []Node{{Name: "a", IKESAs: 50, Draining: true}, {Name: "b", IKESAs: 200}, {Name: "c"}}, []int{50, 100, 100}},
		{"small", []Node{{Name: "a", IKESAs: 3}, {Name: "b", IKESAs: 0}}, []int{2, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodes := tc.nodes
			rounds, total := 0, 0
			for ; rounds < 50; rounds++ {
				next, moved := loadsAfter(nodes, 0.2, 64)
				if moved == 0 {
					break
				}
				total += moved
				nodes = next
			}
			got := make([]int, len(nodes))
			for i, n := range nodes {
				got[i] = n.IKESAs
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("loads after %d rounds (%d SAs moved): %v, want %v", rounds, total, got, tc.want)
			}
			if rounds == 50 {
				t.Error("no end to the moves (flapping)")
			}
			sum := 0
			var live []int
			for _, n := range nodes {
				if !n.Draining {
					sum += n.IKESAs
					live = append(live, n.IKESAs)
				}
			}
			mean := float64(sum) / float64(len(live))
			for _, l := range live {
				if float64(l) > mean*1.2 && float64(l) > math.Ceil(mean) || float64(l) < mean*0.8 && float64(l) < math.Floor(mean) {
					t.Errorf("a node at %d SAs, outside 20%% of the mean %.0f", l, mean)
				}
			}
		})
	}
	// The rate: at most limit SAs a round from one node.
	for _, k := range BalancePlan([]Node{{Name: "a", IKESAs: 1000}, {Name: "b"}}, "a", 0.2, 64) {
		if k > 64 {
			t.Errorf("a round moves %d SAs (limit 64)", k)
		}
	}
}
