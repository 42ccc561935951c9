package daemon

import (
	"context"
	"slices"
	"time"

	"github.com/mobikevpn/mobikevpn/internal/cluster"
)

// Balancing (cluster.balance.enabled): every interval the node reads the nodes' loads
// and, if cluster.BalancePlan gives it SAs to move, moves them with the planned-move
// path (SWITCH_TO_IP_ADDRESS, no new handshake), at most balanceLimit a round and one
// round at a time (none while moves of the last are under way). Only SAs whose peers
// can be asked to switch are moved: a redirect would cost the peer a new handshake.

// balanceLimit bounds the SAs one node moves in a round.
const balanceLimit = 64

// Job key of the balancer's read of the nodes.
const jobBalance = "balance"

// balanceTick runs a round of balancing (engine goroutine, every interval).
func (c *clusterRole) balanceTick(time.Time) {
	b := c.d.cfg.Cluster.Balance
	defer c.after(b.Interval, c.balanceTick)
	if c.lost || c.draining || len(c.moves) > 0 {
		return
	}
	self := c.co.Self().Name
	c.async(jobBalance, func(ctx context.Context) {
		nodes, err := c.co.Nodes(ctx)
		if err != nil {
			return
		}
		plan := cluster.BalancePlan(nodes, self, b.MaxSkew, balanceLimit)
		if len(plan) == 0 {
			return
		}
		c.cmd(func(now time.Time) { c.rebalance(now, nodes, plan) })
	})
}

// rebalance moves SAs to other nodes as plan says (engine goroutine).
func (c *clusterRole) rebalance(now time.Time, nodes []cluster.Node, plan map[string]int) {
	if c.lost || c.draining || len(c.moves) > 0 {
		return
	}
	ids := make([]uint64, 0, len(c.keys))
	for id := range c.keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	slices.Reverse(ids) // the newest first: SAs that have been somewhere long stay there
	next := 0
	moved := map[string]int{}
	for _, n := range nodes {
		for want := plan[n.Name]; moved[n.Name] < want && next < len(ids); next++ {
			id := ids[next]
			info, ok := c.d.engine.SAInfo(id)
			if !ok || !info.Established || !info.RMobike || c.isArriving(id) {
				continue
			}
			if err := c.startMove(now, id, n, nil); err == nil {
				moved[n.Name]++
			}
		}
	}
	if len(moved) > 0 {
		c.d.log.Info("cluster: balancing: moving SAs to the nodes below the mean load", "moves", moved)
	}
}
