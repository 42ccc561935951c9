package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/mobikevpn/mobikevpn/internal/cluster"
	"github.com/mobikevpn/mobikevpn/internal/control"
)

// etcd away, and fencing.
//
// A node that cannot reach etcd keeps serving its SAs: the IKE messages that wait for a
// snapshot go after persistTimeout, and at once while etcd is known to be away
// (etcdDown), their snapshots written once it answers again. Its outbound SAs send up
// to their leases and no further: it cannot write higher ones.
//
// When its lease is gone (not renewed within the TTL: Lost), the node is no member: it
// moves nothing, takes nothing over, hands out no spare virtual IP, and tries to join
// again every second (cluster Coordinator.Reattach). If etcd still has its lease (etcd
// itself was away, and every node with it: etcd's leader renews the leases when it
// comes back), nothing else changed. If the lease expired (this node was cut off while
// the others were not), the others have taken its SAs over meanwhile: it joins under a
// new lease and drops every SA that another node owns now (fenced), without a word to
// its peer, which its new owner serves. What guards against two nodes serving one SA
// in between: the successor's switch request moves the peer away, the successor's
// sequence numbers start above the lease this node could not raise (no AEAD nonce is
// used twice), and the ownership in etcd, which this node's next snapshot finds
// changed.

// reattachRetry paces the tries to join again.
const reattachRetry = time.Second

// leaseLost: the node's lease is gone (run's goroutine). back hears once the node is a
// member again (fresh: under a new lease).
func (c *clusterRole) leaseLost(ctx context.Context, back chan<- bool) {
	c.offline.Store(true)
	c.d.log.Error("cluster: this node's etcd lease is gone: it is no member until it joins again; its SAs stay here, nothing moves, nothing is taken over, no new client gets a virtual IP")
	c.cmd(func(now time.Time) {
		c.lost, c.lostAt = true, now
		// The addresses it held are free for other nodes after the lease: hand out none
		// of the spare ones any more.
		for _, p := range c.d.cfg.Pools {
			c.d.engine.ReturnVIPs(p.Name, true, vipScan)
			c.d.engine.ReturnVIPs(p.Name, false, vipScan)
		}
	})
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(reattachRetry):
			}
			rctx, cancel := context.WithTimeout(ctx, etcdTimeout)
			fresh, err := c.co.Reattach(rctx)
			cancel()
			if err == nil {
				back <- fresh
				return
			}
			c.d.log.Debug("cluster: joining again", "err", err)
		}
	}()
}

// leaseBack: the node is a member again (run's goroutine); fresh: under a new lease,
// after the others may have taken its SAs over.
//
// When etcd was away for every node, all of them come back within a second or two
// (each tries every reattachRetry), those whose leases expired meanwhile under new
// ones: none takes over the SAs of nodes gone from the nodes' keys for a while
// (rejoinQuiet), so that those that are merely slower to come back keep theirs; then
// what is orphaned is taken over as usual.
func (c *clusterRole) leaseBack(fresh bool) {
	c.etcdDown.Store(false)
	quiet := c.d.cfg.Cluster.LeaseTTL + 3*reattachRetry
	c.quietUntil.Store(c.d.clock.Now().Add(quiet).UnixNano())
	c.after(quiet, func(time.Time) {
		c.async(jobOrphans, func(ctx context.Context) { c.takeOrphans(ctx, false, false) })
		c.after(orphanGrace, func(time.Time) {
			c.async(jobOrphans, func(ctx context.Context) { c.takeOrphans(ctx, false, true) })
		})
	})
	if !fresh {
		c.d.log.Warn("cluster: this node is a member again under its lease (etcd was away)")
		c.cmd(func(time.Time) { c.lost = false })
		c.offline.Store(false)
		c.nodesChanged()
		return
	}
	c.d.log.Warn("cluster: this node joined again under a new lease (it was cut off): dropping the SAs that others took over")
	c.async(jobOrphans, func(ctx context.Context) {
		owners, err := c.co.Owners(ctx)
		if err != nil {
			c.d.log.Error("cluster: reading the SAs' owners after joining again", "err", err)
			owners = nil
		}
		self := c.co.Self().Name
		c.cmd(func(now time.Time) {
			var kept []cluster.SAKey
			for id, key := range c.keys {
				switch owner, ok := owners[key]; {
				case owners == nil:
					kept = append(kept, key) // unknown: the next snapshot finds out
				case ok && owner != self:
					c.fenced(now, id, key)
				default:
					kept = append(kept, key)
					c.retake(id, key, !ok)
				}
			}
			c.lost = false
			c.offline.Store(false)
			c.d.log.Info("cluster: joined again", "kept", len(kept))
			c.nodesChanged()
		})
	})
}

// retake makes IKE SA id (key) this node's again in etcd after it joined under a new
// lease (engine goroutine): its owner key if it had none any more (claim), and its
// virtual IPs, whose keys went with the old lease.
func (c *clusterRole) retake(id uint64, key cluster.SAKey, claim bool) {
	st, err := c.d.engine.Snapshot(c.d.clock.Now(), id)
	if err != nil {
		return
	}
	c.async(saJob(key), func(ctx context.Context) {
		if claim {
			if ok, err := c.co.Claim(ctx, key); err != nil || !ok {
				c.d.log.Warn("cluster: claiming an SA again after joining again", "sa", key, "claimed", ok, "err", err)
			}
		}
		c.takeVIPs(ctx, &st)
	})
	c.writeSnapshot(id)
}

// statusTimeout bounds the read of the nodes for `cluster status`.
const statusTimeout = 2 * time.Second

// status is what `cluster status` shows: the live nodes as etcd has them, and how this
// node stands with etcd; with etcd unreachable, this node alone as it knows itself.
func (c *clusterRole) status(ctx context.Context) *control.ClusterStatus {
	self := c.co.Self()
	st := &control.ClusterStatus{Self: self.Name, Nodes: []control.ClusterNode{}, Etcd: "ok"}
	rctx, cancel := context.WithTimeout(ctx, statusTimeout)
	nodes, err := c.co.Nodes(rctx)
	cancel()
	switch {
	case c.offline.Load():
		st.Etcd = "lease lost: not a member until it joins again; serving its own SAs, no moves, no take-overs"
	case err != nil:
		st.Etcd = fmt.Sprintf("unreachable (%v): serving its own SAs, no moves, no take-overs", err)
	case c.etcdDown.Load():
		st.Etcd = "not answering lately: serving its own SAs, snapshots behind"
	}
	if err != nil {
		self.IKESAs = int(c.load.Load())
		nodes = []cluster.Node{self}
	}
	for _, n := range nodes {
		cn := control.ClusterNode{Name: n.Name, Alive: err == nil, IKESAs: n.IKESAs, Draining: n.Draining, Addrs: []string{}}
		for _, a := range n.Addrs {
			cn.Addrs = append(cn.Addrs, a.String())
		}
		st.Nodes = append(st.Nodes, cn)
	}
	return st
}
