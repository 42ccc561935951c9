package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mobikevpn/mobikevpn/ike"
	"github.com/mobikevpn/mobikevpn/internal/cluster"
)

// A move whose peer does not follow the switch request (it refuses the address, or
// cannot reach the node it is asked to go to) is handed back: the node the SA moved to
// (B) gives it back to the node it came from (A), where the peer still is, as a move
// without a switch request (ike Engine.HandBack). A tells B as soon as it knows: the
// peer's answer to the switch request and then a new request of its own reached A
// (ike EventPeerStayed; etcd mark "stayed"). Should A not know (its switch request or
// the answer was lost), B hands the SA back when the peer did not arrive within
// moveArriveTimeout. A resumes the SA from B's state (message IDs, sequence numbers
// above B's, replay windows at B's tops), answers the peer's retransmitted request,
// and `move` reports the SA not moved.

const (
	// moveArriveTimeout is how long a node that imported an SA waits for its peer
	// before it hands the SA back (when the node it came from did not say the peer
	// stayed there).
	moveArriveTimeout = time.Minute
)

// stayedHere: the peer of IKE SA id, which this node handed to another, stayed here
// (engine goroutine). The other node is asked to give the SA back.
func (c *clusterRole) stayedHere(id uint64) {
	key, ok := c.keys[id]
	m := c.moves[key]
	if !ok || m == nil || m.id != id || !m.ready || m.arrived || m.ret {
		return
	}
	to := m.to.Name
	c.d.log.Info("cluster: the peer of an SA handed to another node stayed here; asking for it back", "sa", key, "node", to)
	c.async(saJob(key), func(ctx context.Context) {
		if ok, err := c.co.MarkStayed(ctx, key, to); err != nil || !ok {
			c.d.log.Warn("cluster: telling the other node that an SA's peer stayed here", "sa", key, "node", to, "owner", ok, "err", err)
		}
	})
}

// peerStayed: node says that the peer of SA key, which it gave this node, stayed there
// (engine goroutine).
func (c *clusterRole) peerStayed(now time.Time, key cluster.SAKey, node string) {
	if id, ok := c.arriving[key]; ok && c.from[key] == node {
		c.handBack(now, key, id, "its peer stayed with "+node)
	}
}

// notArrived: moveArriveTimeout after SA key was imported as IKE SA id.
func (c *clusterRole) notArrived(now time.Time, key cluster.SAKey, id uint64) {
	if c.arriving[key] == id {
		c.handBack(now, key, id, fmt.Sprintf("its peer did not arrive within %v", moveArriveTimeout))
	}
}

// handBack gives IKE SA id (SA key), imported here, back to the node it came from.
func (c *clusterRole) handBack(now time.Time, key cluster.SAKey, id uint64, why string) {
	giver := c.from[key]
	delete(c.arriving, key)
	delete(c.from, key)
	c.d.log.Warn("cluster: handing an SA back to the node it came from", "sa", key, "id", id, "to", giver, "why", why)
	deadline := now.Add(moveReadyTimeout)
	c.async(saJob(key), func(ctx context.Context) {
		nodes, err := c.co.Nodes(ctx)
		c.cmd(func(now time.Time) {
			if c.keys[id] != key {
				return // gone meanwhile
			}
			for _, n := range nodes {
				if n.Name == giver {
					c.tryHandBack(now, key, id, n, deadline)
					return
				}
			}
			// (When the node is gone, the peer finds this one by its own probing: the
			// SA stays, and its arrival still counts.)
			c.d.log.Error("cluster: cannot hand an SA back: the node it came from is not alive; it stays here", "sa", key, "node", giver, "err", err)
			c.arriving[key], c.from[key] = id, giver
		})
	})
}

// tryHandBack hands IKE SA id back to node, again every moveRetry while it is busy
// with an exchange, until deadline.
func (c *clusterRole) tryHandBack(now time.Time, key cluster.SAKey, id uint64, node cluster.Node, deadline time.Time) {
	info, ok := c.d.engine.SAInfo(id)
	if !ok {
		return
	}
	target := familyAddr(node, info.Local.Addr())
	err := errors.New("it has no address of the SA's family")
	if target.IsValid() {
		err = c.handOver(now, &move{id: id, key: key, to: node, target: target, ret: true}, info, nil)
	}
	switch {
	case err == nil:
	case errors.Is(err, ike.ErrExchangeInFlight) && now.Before(deadline):
		c.after(moveRetry, func(now time.Time) {
			if c.keys[id] == key && c.moves[key] == nil {
				c.tryHandBack(now, key, id, node, deadline)
			}
		})
	default:
		c.d.log.Error("cluster: cannot hand an SA back; it stays here", "sa", key, "node", node.Name, "err", err)
		c.arriving[key], c.from[key] = id, node.Name
	}
}

// comeBack orders the actions of forgetting the handed-over copy of an SA (forget) and
// of importing the SA again (imp) so that no packet finds neither: the copy's inbound
// SAs are replaced by the import's (esp AddInbound replaces a handed-over SA), its
// outbound flows removed once the import's are installed; the rest (its virtual IPs
// released before they are claimed again) in order.
func comeBack(forget, imp []ike.Action) []ike.Action {
	spis, policies := make(map[uint32]bool), make(map[uint64]bool)
	for _, a := range imp {
		if in, ok := a.(ike.InstallInbound); ok {
			spis[in.SPI] = true
		} else if o, ok := a.(ike.InstallOutbound); ok {
			policies[o.Policy] = true
		}
	}
	var out, later []ike.Action
	for _, a := range forget {
		if in, ok := a.(ike.RemoveInbound); ok && spis[in.SPI] {
			continue // replaced by the import's
		}
		if o, ok := a.(ike.RemoveOutbound); ok {
			if !policies[o.Policy] {
				later = append(later, a)
			}
			continue
		}
		out = append(out, a)
	}
	return append(append(out, imp...), later...)
}
