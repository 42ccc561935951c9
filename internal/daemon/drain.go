package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/mobikevpn/mobikevpn/internal/cluster"
	"github.com/mobikevpn/mobikevpn/internal/control"
)

// `drain`: the node takes no new IKE SAs (new peers that follow redirects are sent to
// the least loaded other node in IKE_SA_INIT or IKE_AUTH, RFC 5685; others get no
// answer) and moves every SA to the other live nodes, each to the least loaded one at
// the time. The node is marked draining in etcd: no node moves SAs to it. There is no
// way back short of a restart.

// Drain implements control.Mover.
func (d *daemon) Drain(ctx context.Context, wait time.Duration) (string, error) {
	if d.cl == nil {
		return "", control.UsageError("drain: this gateway is not a cluster node (no cluster: section)")
	}
	nodes, err := d.cl.co.Nodes(ctx)
	if err != nil {
		return "", fmt.Errorf("drain: reading the cluster's nodes from etcd: %w", err)
	}
	targets := d.cl.drainNodes(nodes)
	if len(targets) == 0 {
		return "", control.UsageError("drain: no other live node that is not draining to move the SAs to")
	}
	// Marked first: from now on no node moves an SA here.
	if err := d.cl.co.SetDraining(ctx); err != nil {
		return "", fmt.Errorf("drain: marking this node draining in etcd: %w", err)
	}
	var moves moveSet
	var useErr error
	if err := d.run(ctx, func(now time.Time) {
		c := d.cl
		if c.lost {
			useErr = errors.New("drain: this node lost its etcd lease")
			return
		}
		c.draining = true
		d.engine.Drain(c.drainTargets(nodes))
		loads := make(map[string]int)
		for _, n := range targets {
			loads[n.Name] = n.IKESAs
		}
		for _, s := range d.engine.Status(now) {
			info, ok := d.engine.SAInfo(s.ID)
			if !ok || !info.Gateway || !info.Established {
				continue
			}
			// The least loaded node that can take it (a node it left by a switch
			// lately may not: switch_hold).
			var why []string
			for _, to := range byLoad(targets, loads) {
				err := moves.start(now, c, s, info, to)
				if err == nil {
					loads[to.Name]++
					why = nil
					break
				}
				why = append(why, fmt.Sprintf("to %s: %v", to.Name, err))
			}
			if why != nil {
				moves.refuse(s, errors.New(strings.Join(why, "; ")))
			}
		}
	}); err != nil {
		return "", err
	}
	if useErr != nil {
		return "", useErr
	}
	d.log.Info("cluster: draining: new IKE SAs are redirected, the SAs move to the other nodes", "moving", len(moves.moving), "staying", len(moves.refused))
	names := make([]string, len(targets))
	for i, n := range targets {
		names[i] = n.Name
	}
	return moves.await(ctx, fmt.Sprintf("draining: moving %d SAs to %s", len(moves.moving), strings.Join(names, ", ")), wait)
}

// drainNodes are the live nodes SAs may move to: the others, not draining.
func (c *clusterRole) drainNodes(nodes []cluster.Node) []cluster.Node {
	var out []cluster.Node
	for _, n := range nodes {
		if n.Name != c.co.Self().Name && !n.Draining {
			out = append(out, n)
		}
	}
	return out
}

// drainTargets are the addresses a draining node redirects new peers to: those of the
// other nodes, least loaded first (the engine takes the first of a peer's family).
func (c *clusterRole) drainTargets(nodes []cluster.Node) []netip.Addr {
	ns := c.drainNodes(nodes)
	slices.SortStableFunc(ns, func(a, b cluster.Node) int { return a.IKESAs - b.IKESAs })
	var out []netip.Addr
	for _, n := range ns {
		out = append(out, n.Addrs...)
	}
	return out
}

// byLoad orders nodes by their SAs in loads, fewest first, then by name.
func byLoad(nodes []cluster.Node, loads map[string]int) []cluster.Node {
	out := slices.Clone(nodes)
	slices.SortFunc(out, func(a, b cluster.Node) int {
		if d := loads[a.Name] - loads[b.Name]; d != 0 {
			return d
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}
