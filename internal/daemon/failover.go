package daemon

import (
	"context"
	"net/netip"
	"slices"
	"time"

	"github.com/mobikevpn/mobikevpn/ike"
	"github.com/mobikevpn/mobikevpn/internal/cluster"
)

// Failover: a node that dies (SIGKILL, power cut: its lease expires) leaves its SAs'
// snapshots in etcd, and the survivors continue them without a new handshake.
//
// Snapshots. The owner writes an SA's snapshot (ike Engine.Snapshot) before the peer
// can see anything newer: each IKE message that shows the peer something for the first
// time (ike Send.Persist: every response and every request's first transmission) waits
// until the snapshot taken after the step that made it is in etcd. Everything the peer
// has seen is in etcd then: the message IDs both ways, our request it may be answering
// (as sealed), our last answer (for its retransmission), the keys and Child SAs (an
// established SA's IKE_AUTH answer, a rekey's, waits for its claim and snapshot). Each
// message waits for one etcd write (a few milliseconds); should etcd not answer within
// persistTimeout, it goes anyway (a node keeps serving its peers while etcd is away)
// and the snapshot is written again later.
//
// ESP sequence numbers are not written per packet: each outbound SA has a lease
// (esp LeaseOutbound), the last sequence number it may use, written in the snapshot
// before the datapath may use it; when an SA has used half of its lease's last
// reservation, a snapshot with a lease leaseChunk higher is written, and the datapath
// raises its cap once that is in etcd. A successor starts above the lease of the
// snapshot it took: the dead node sent nothing there, so no AEAD nonce repeats. Inbound
// windows start at the snapshot's tops: what the dead node accepted since its last
// snapshot (at most snapshotRefresh of traffic; every IKE message writes one too) could
// be replayed to the successor once: the window of exposure.
//
// Detection and election. Every node watches the nodes' keys; when one is gone (its
// lease expired), each survivor reads the owners, takes over the dead node's SAs that
// cluster.Divide gives it (filling the survivors up to the mean load), and after
// orphanGrace any the others left; each take-over is one transaction (the owner key
// and the state's revision compared, the new state with its new leases and the SA's
// virtual IPs written), so no SA is taken twice. The survivor continues the SA from its
// own address (ike Engine.TakeOver: the dead node's outstanding request resent as
// sealed, a switch request to a peer with 'R'), claims its virtual IPs on the inner
// side at once (the dead node answers for nothing any more) and rekeys a Child SA whose
// sequence numbers run short (leaseChunk further per failover).

const (
	// leaseChunk is how many outbound sequence numbers a lease reserves at a time.
	leaseChunk = 1 << 24
	// leaseTick paces the check of the leases' use and of stale snapshots.
	leaseTick = time.Second
	// snapshotRefresh: an SA whose inbound windows moved is written again after it.
	snapshotRefresh = 30 * time.Second
	// persistTimeout bounds the wait of an IKE message for its SA's snapshot.
	persistTimeout = 2 * time.Second
	// orphanGrace: after it, a survivor takes a dead node's SAs that are not its share.
	orphanGrace = 2 * time.Second
	// orphanSweep paces the search for SAs no live node owns (missed deaths).
	orphanSweep = time.Minute
	// thinReserve: a Child SA taken over whose lease leaves fewer 32-bit sequence
	// numbers than this is rekeyed.
	thinReserve = 1 << 30
)

// Job key of the search for orphaned SAs.
const jobOrphans = "orphans"

// failover is the clusterRole's part in failover. Its maps are the engine
// goroutine's, but alive, which the nodes job keeps.
type failover struct {
	held    map[uint64][]ike.Send // by IKE SA id: messages waiting for the snapshot being written
	next    map[uint64][]ike.Send // by IKE SA id: messages of later steps, for the snapshot after it
	writing map[uint64]bool       // by IKE SA id: a snapshot is being written
	leases  map[uint64]uint64     // by outbound policy: the lease in force in the datapath
	want    map[uint64]uint64     // by outbound policy: the lease the next snapshot writes
	snapAt  map[uint64]time.Time  // by IKE SA id: the last snapshot written
	snapIn  map[uint64]uint64     // by IKE SA id: the sum of its inbound tops then
	alive   map[string]bool       // the live nodes at the last read (nodes job); nil: none yet
	// rekeyed maps an IKE SA rekeyed in the batch being applied to its successor: the
	// rekey's answer, sent on the old SA, waits for the new SA's first snapshot.
	rekeyed map[uint64]uint64
	// afterPersist runs once the batch's snapshots are queued (persist): etcd jobs of
	// an SA that must come after its snapshot.
	afterPersist []func()
}

func newFailover() *failover {
	return &failover{held: make(map[uint64][]ike.Send), next: make(map[uint64][]ike.Send), writing: make(map[uint64]bool),
		leases: make(map[uint64]uint64), want: make(map[uint64]uint64), snapAt: make(map[uint64]time.Time),
		snapIn: make(map[uint64]uint64), rekeyed: make(map[uint64]uint64)}
}

// persist sends the messages that show peers something new once their SAs' snapshots
// are in etcd (engine goroutine).
func (c *clusterRole) persist(sends []ike.Send) {
	fo := c.fo
	defer clear(fo.rekeyed)
	var due []uint64
	for _, s := range sends {
		id := s.Persist
		if next, ok := fo.rekeyed[id]; ok {
			id = next
		}
		if _, ok := c.keys[id]; !ok || c.lost {
			c.d.send(s)
			continue
		}
		if c.etcdDown.Load() {
			// etcd is away: the peer is served at once, the snapshot follows when it can.
			c.d.send(s)
			if !fo.writing[id] && len(fo.held[id]) == 0 && !slices.Contains(due, id) {
				due = append(due, id)
			}
			continue
		}
		if fo.writing[id] {
			fo.next[id] = append(fo.next[id], s)
			continue
		}
		if len(fo.held[id]) == 0 {
			due = append(due, id)
		}
		fo.held[id] = append(fo.held[id], s)
	}
	for _, id := range due {
		c.writeSnapshot(id)
	}
	after := fo.afterPersist
	fo.afterPersist = nil
	for _, f := range after {
		f()
	}
}

// writeSnapshot writes the snapshot of IKE SA id, and then sends the messages held for
// it (engine goroutine).
func (c *clusterRole) writeSnapshot(id uint64) {
	fo := c.fo
	key, ok := c.keys[id]
	enc, leases, sum, err := c.snapshot(id)
	if !ok || err != nil {
		// Nothing a successor could take (a hand-over under way, an IKE SA rekey):
		// the last snapshot stands.
		c.sendHeld(id, nil)
		return
	}
	fo.writing[id] = true
	c.async(saJob(key), func(ctx context.Context) {
		wctx, cancel := context.WithTimeout(ctx, persistTimeout)
		owner, err := c.co.PutState(wctx, key, enc)
		cancel()
		clear(enc)
		c.cmd(func(now time.Time) {
			delete(fo.writing, id)
			switch {
			case err != nil:
				if !c.etcdDown.Swap(true) {
					c.d.log.Warn("cluster: etcd does not answer: IKE messages no longer wait for their SAs' snapshots", "err", err)
				}
				c.sendHeld(id, nil)
			case !owner && c.keys[id] == key && c.moves[key] == nil:
				// Another node owns it now: it took it over while this one was cut off.
				c.fenced(now, id, key)
			default:
				if c.etcdDown.Swap(false) {
					c.d.log.Warn("cluster: etcd answers again: snapshots are written before IKE messages go")
				}
				fo.snapAt[id], fo.snapIn[id] = now, sum
				c.sendHeld(id, leases)
			}
		})
	})
}

// sendHeld sends the messages held for IKE SA id, raising the leases the snapshot wrote,
// and writes the next snapshot if more messages wait (engine goroutine).
func (c *clusterRole) sendHeld(id uint64, leases map[uint64]uint64) {
	fo := c.fo
	for policy, l := range leases {
		if _, err := c.d.dp.LeaseOutbound(policy, l); err == nil && l > fo.leases[policy] {
			fo.leases[policy] = l
		}
	}
	for _, s := range fo.held[id] {
		c.d.send(s)
	}
	delete(fo.held, id)
	if next := fo.next[id]; len(next) > 0 {
		delete(fo.next, id)
		fo.held[id] = next
		c.writeSnapshot(id)
	}
}

// snapshot is IKE SA id's snapshot, encoded, with its Child SAs' sequence numbers and
// leases (by outbound policy) and the sum of its inbound tops.
func (c *clusterRole) snapshot(id uint64) ([]byte, map[uint64]uint64, uint64, error) {
	st, err := c.d.engine.Snapshot(c.d.clock.Now(), id)
	if err != nil {
		return nil, nil, 0, err
	}
	info, _ := c.d.engine.SAInfo(id)
	leases := make(map[uint64]uint64)
	var sum uint64
	for i := range st.Children {
		cs := &st.Children[i]
		for _, ch := range info.Children {
			if ch.SPIIn != cs.SPIIn {
				continue
			}
			if ctr, ok := c.d.dp.OutboundCounters(ch.Policy); ok {
				cs.OutSeq = ctr.Seq
			}
			if ctr, ok := c.d.dp.InboundCounters(ch.SPIIn); ok {
				cs.InSeq = ctr.Seq
				sum += ctr.Seq
			}
			cs.OutLease = max(c.fo.want[ch.Policy], cs.OutSeq+1)
			leases[ch.Policy] = cs.OutLease
		}
	}
	enc, err := st.Encode()
	return enc, leases, sum, err
}

// installLease is the lease an outbound SA of ours is installed with (engine
// goroutine): the one of its state, for an SA moved or taken over here, else
// leaseChunk above where it starts. A new SA sends up to it before its first snapshot:
// a successor knows of the SA only from a snapshot, which has that lease or a higher.
func (c *clusterRole) installLease(a ike.InstallOutbound) uint64 {
	l := a.Lease
	if l == 0 {
		l = a.Seq + leaseChunk
	}
	c.fo.leases[a.Policy], c.fo.want[a.Policy] = l, l
	return l
}

// dropLease forgets the lease of an outbound SA removed (engine goroutine).
func (c *clusterRole) dropLease(policy uint64) {
	delete(c.fo.leases, policy)
	delete(c.fo.want, policy)
}

// leaseTick reserves more sequence numbers for the outbound SAs that used half of
// their last reservation, and writes again the snapshots whose inbound windows moved
// since snapshotRefresh (engine goroutine, every leaseTick).
func (c *clusterRole) leaseTick(now time.Time) {
	defer c.after(leaseTick, c.leaseTick)
	if c.lost {
		return
	}
	fo := c.fo
	due := make(map[uint64]bool)
	for id := range c.keys {
		if c.moves[c.keys[id]] != nil {
			continue
		}
		info, ok := c.d.engine.SAInfo(id)
		if !ok {
			continue
		}
		var sum uint64
		for _, ch := range info.Children {
			if ctr, ok := c.d.dp.OutboundCounters(ch.Policy); ok {
				if l := fo.leases[ch.Policy]; l != 0 && ctr.Seq+leaseChunk/2 > l && fo.want[ch.Policy] <= l {
					fo.want[ch.Policy] = l + leaseChunk
					due[id] = true
				}
			}
			if ctr, ok := c.d.dp.InboundCounters(ch.SPIIn); ok {
				sum += ctr.Seq
			}
		}
		if sum != fo.snapIn[id] && now.Sub(fo.snapAt[id]) >= snapshotRefresh {
			due[id] = true
		}
	}
	for id := range due {
		if !fo.writing[id] && len(fo.held[id]) == 0 {
			c.writeSnapshot(id)
		}
	}
}

// noteNodes follows the live nodes (nodes job): when one is gone, or at the first
// read, the SAs that no live node holds are taken over.
func (c *clusterRole) noteNodes(nodes []cluster.Node) {
	fo := c.fo
	first := fo.alive == nil
	gone := false
	alive := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		alive[n.Name] = true
	}
	for name := range fo.alive {
		if !alive[name] && name != c.co.Self().Name { // (this node's own key gone: its lease is, see fencing.go)
			gone = true
			c.d.log.Warn("cluster: a node is gone (its lease expired or it left): taking over its SAs", "node", name)
		}
	}
	fo.alive = alive
	if first || gone {
		c.async(jobOrphans, func(ctx context.Context) { c.takeOrphans(ctx, first, false) })
		c.after(orphanGrace, func(time.Time) {
			c.async(jobOrphans, func(ctx context.Context) { c.takeOrphans(ctx, false, true) })
		})
	}
}

// sweepOrphans looks for SAs that no live node holds, every orphanSweep.
func (c *clusterRole) sweepOrphans(time.Time) {
	defer c.after(orphanSweep, c.sweepOrphans)
	c.async(jobOrphans, func(ctx context.Context) { c.takeOrphans(ctx, false, true) })
}

// takeOrphans takes over this node's share of the SAs whose owners are gone (all of
// them: any it finds), and at startup (own) those still owned by this node's name from
// before it restarted (jobs goroutine).
func (c *clusterRole) takeOrphans(ctx context.Context, own, all bool) {
	if !c.d.cfg.Cluster.Failover || c.offline.Load() || c.d.clock.Now().UnixNano() < c.quietUntil.Load() {
		return // no member, or just back (fencing.go): nothing is taken over
	}
	owners, states, err := c.co.OwnersStates(ctx)
	if err != nil {
		c.d.log.Warn("cluster: reading the SAs' owners", "err", err)
		return
	}
	nodes, err := c.co.Nodes(ctx)
	if err != nil {
		c.d.log.Warn("cluster: reading the nodes", "err", err)
		return
	}
	self := c.co.Self().Name
	orphans := cluster.Orphans(owners, nodes)
	if own {
		for sa, owner := range owners {
			if owner == self {
				orphans[self] = append(orphans[self], sa)
			}
		}
	}
	for dead, sas := range orphans {
		if dead == self && !own {
			continue // this node's lease is gone: it takes nothing over (fencing.go)
		}
		share := sas
		if !all && dead != self {
			share = cluster.Divide(sas, nodes, self)
		}
		if len(share) > 0 {
			c.d.log.Info("cluster: taking over SAs of a node that is gone", "node", dead, "sas", len(share), "of", len(sas))
		}
		for _, sa := range share {
			sealed := states[sa]
			c.async(saJob(sa), func(ctx context.Context) { c.takeOver(ctx, sa, dead, sealed) })
		}
	}
}

// takeOver takes SA sa of node dead over (jobs goroutine): its state (sealed, as read
// with the owners) with new leases and this node as owner in one transaction, then the
// engine continues it. Should the state have changed since it was read, another node
// took it first.
func (c *clusterRole) takeOver(ctx context.Context, sa cluster.SAKey, dead string, sealed cluster.SealedState) {
	rev := sealed.Rev
	raw, err := c.co.OpenState(sa, sealed)
	if rev == 0 || err != nil || raw == nil {
		c.d.log.Warn("cluster: an orphaned SA has no readable state", "sa", sa, "node", dead, "err", err)
		return
	}
	st, err := ike.DecodeSAState(raw)
	clear(raw)
	if err != nil {
		c.d.log.Error("cluster: the state of an orphaned SA", "sa", sa, "err", err)
		return
	}
	home := familyAddr(c.co.Self(), st.Remote.Addr())
	if !home.IsValid() {
		c.d.log.Error("cluster: this node has no address of an orphaned SA's family", "sa", sa, "peer", st.Remote)
		return
	}
	for i := range st.Children {
		cs := &st.Children[i]
		from := max(cs.OutLease, cs.OutSeq)
		if cs.OutLease == 0 {
			from = cs.OutSeq + 4*leaseChunk // written without a lease: far beyond anything sent
		}
		cs.OutSeq, cs.OutLease = from, from+leaseChunk
	}
	enc, err := st.Encode()
	if err != nil {
		return
	}
	var vips []netip.Addr
	if !st.OrigInitiator {
		vips = st.VIPs
	}
	ok, err := c.co.TakeOver(ctx, sa, dead, rev, enc, vips)
	clear(enc)
	if err != nil || !ok {
		if err != nil {
			c.d.log.Warn("cluster: taking over an orphaned SA", "sa", sa, "err", err)
		}
		return // another survivor took it
	}
	c.cmd(func(now time.Time) { c.tookOver(now, sa, dead, st, home) })
}

// tookOver continues an SA this node took over (engine goroutine).
func (c *clusterRole) tookOver(now time.Time, key cluster.SAKey, dead string, st ike.SAState, home netip.Addr) {
	if c.held(key) {
		return
	}
	id, acts, err := c.d.engine.TakeOver(now, st, netip.AddrPortFrom(home, c.d.cfg.Ports.NATT))
	if err != nil {
		c.d.log.Error("cluster: continuing an SA taken over", "sa", key, "node", dead, "err", err)
		c.async(saJob(key), func(ctx context.Context) { c.co.Release(ctx, key) })
		return
	}
	c.keys[id] = key
	c.loadChanged()
	c.failedOver.Add(1)
	c.d.apply(acts)
	c.d.log.Info("cluster: SA taken over from a node that is gone", "sa", key, "id", id, "node", dead, "peer", st.Remote)
	for _, cs := range st.Children {
		if !cs.Suite.ESN && cs.OutLease > 1<<32-1-thinReserve {
			c.d.apply(c.d.engine.RekeyChild(now, cs.SPIIn))
		}
	}
}

// fenced drops IKE SA id, which another node owns now (engine goroutine): it took it
// over while this node was cut off from etcd. Nothing is sent to the peer (it is the
// other node's now), and the datapath, capped by its leases, had stopped short of the
// other node's sequence numbers.
func (c *clusterRole) fenced(now time.Time, id uint64, key cluster.SAKey) {
	c.d.log.Warn("cluster: an SA of this node is owned by another now (taken over while this node was cut off): dropping it", "sa", key, "id", id)
	delete(c.fo.held, id)
	delete(c.fo.next, id)
	delete(c.keys, id)
	c.loadChanged()
	if acts, err := c.d.engine.Forget(now, id); err == nil {
		c.d.apply(acts)
	}
}
