package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mobikevpn/mobikevpn/ike"
	"github.com/mobikevpn/mobikevpn/internal/cluster"
	"github.com/mobikevpn/mobikevpn/internal/control"
)

// The daemon's part in a gateway cluster (config cluster:): it claims the SAs
// established here, releases those that end, announces the other nodes' addresses to
// its peers, imports the SAs other nodes give it, and moves SAs to other nodes as the
// package doc of internal/cluster describes. etcd is only ever called off the engine
// goroutine (jobs); what comes back goes through d.cmds like any command.

const (
	// moveReserve is how many outbound sequence numbers a moving SA keeps here for the
	// traffic that still reaches this node until its peer moved (1M packets).
	moveReserve = 1 << 20
	// moveReadyTimeout bounds the wait for the other node to import an SA.
	moveReadyTimeout = 10 * time.Second
	// moveGrace is how long, after the peer arrived at the other node, this node keeps
	// forwarding what still reaches it before it forgets the SA.
	moveGrace = 2 * time.Second
	// moveRetry paces the tries of a move whose SA is in the middle of an exchange (a
	// liveness check, a rekey, the switch request of its last move): it moves once
	// quiet, within moveReadyTimeout.
	moveRetry = 100 * time.Millisecond
	// etcdTimeout bounds one etcd call.
	etcdTimeout = 10 * time.Second
)

// clusterRole is the daemon's membership of its cluster. Its maps are owned by the
// engine goroutine.
type clusterRole struct {
	d    *daemon
	co   *cluster.Coordinator
	jobs *jobQueue
	quit chan struct{} // closed when the daemon stops: nothing goes to the engine any more

	keys     map[uint64]cluster.SAKey // the IKE SAs of ours the cluster knows, by id
	moves    map[cluster.SAKey]*move  // hand-overs from here under way
	arriving map[cluster.SAKey]uint64 // SAs imported here whose peer has not arrived yet
	from     map[cluster.SAKey]string // the nodes that gave them (handBack)
	// espWait: SAs imported here whose peer arrived while its ESP waits for the check of
	// the peer's new address (switched), by id.
	espWait map[uint64]cluster.SAKey
	fo      *failover // snapshots, leases, take-overs (failover.go)
	lost    bool      // the node's lease is gone: no cluster operations (fencing.go)
	lostAt  time.Time // since when
	// offline is lost for the etcd jobs; etcdDown: a snapshot could not be written
	// lately (etcd away): messages do not wait for snapshots (failover.go).
	offline, etcdDown atomic.Bool
	quietUntil        atomic.Int64       // unix ns: no take-overs before it (fencing.go)
	draining          bool               // `drain` ran: new peers are redirected elsewhere
	vipBusy           map[vipFamily]bool // virtual IP claims under way
	// nodesQueued: a read of the nodes is queued (nodesChanged).
	nodesQueued atomic.Bool
	// For the metrics: the live nodes last read, SAs moved away, imported, taken over.
	nodesAlive                    atomic.Int64
	movesOut, movesIn, failedOver atomic.Uint64
	// load is len(keys) as the engine goroutine last saw it, loadQueued says a write of
	// it to etcd is queued (loadChanged), loadWritten is the last one written (etcd
	// jobs only).
	load        atomic.Int64
	loadQueued  atomic.Bool
	loadWritten int64
	// redirected are the SAs whose peers were redirected to another node (RFC 5685),
	// by id: the channel hears when the peer deleted the SA here, its new one being up.
	redirected map[uint64]chan error
}

// move is a hand-over from this node under way.
type move struct {
	id      uint64
	key     cluster.SAKey
	to      cluster.Node
	target  netip.Addr     // the other node's address the peer is asked to switch to
	forward netip.AddrPort // where the SA's inbound ESP goes meanwhile (its NAT-T port)
	local   netip.AddrPort // our NAT-T address it goes from
	sends   []ike.Action   // the switch request, sent once the other node is ready
	bounds  map[uint64]uint64
	spis    []uint32
	ready   bool
	arrived bool // the peer arrived there
	// ret: a hand-back (handback.go) to the node the SA came from, where its peer
	// stayed: there is no switch request, and it is done once that node imported it.
	ret     bool
	waiters []chan error // `move --wait`: the outcome (nil: the peer arrived there)
}

func newClusterRole(d *daemon, co *cluster.Coordinator) *clusterRole {
	return &clusterRole{d: d, co: co, jobs: newJobQueue(), quit: make(chan struct{}),
		keys: make(map[uint64]cluster.SAKey), moves: make(map[cluster.SAKey]*move), arriving: make(map[cluster.SAKey]uint64),
		from: make(map[cluster.SAKey]string), espWait: make(map[uint64]cluster.SAKey), fo: newFailover(),
		redirected: make(map[uint64]chan error), vipBusy: make(map[vipFamily]bool), loadWritten: -1}
}

// run carries out the etcd jobs (jobQueue: in order by key, several keys at once) and
// follows the cluster's changes until ctx ends; then it carries out the jobs still
// queued (the releases of the SAs deleted at shutdown) for a little while.
func (c *clusterRole) run(ctx context.Context) {
	events := c.co.Watch(ctx)
	c.nodesChanged()
	c.after(leaseTick, c.leaseTick)
	c.after(orphanSweep, c.sweepOrphans)
	if b := c.d.cfg.Cluster.Balance; b.Enabled {
		c.after(b.Interval, c.balanceTick)
	}
	finished := make(chan string, maxJobs)
	running := 0
	lost, back := c.co.Lost(), make(chan bool, 1)
	defer func() {
		for ; running > 0; running-- {
			c.jobs.done(<-finished)
		}
		deadline := time.Now().Add(shutdownGrace)
		for jb, ok := c.jobs.pop(); ok && time.Now().Before(deadline); jb, ok = c.jobs.pop() {
			jctx, cancel := context.WithDeadline(context.Background(), deadline)
			jb.run(jctx)
			cancel()
			c.jobs.done(jb.key)
		}
	}()
	for {
		select {
		case <-c.jobs.wake:
			for running < maxJobs {
				jb, ok := c.jobs.pop()
				if !ok {
					break
				}
				running++
				go func() {
					jctx, cancel := context.WithTimeout(ctx, etcdTimeout)
					jb.run(jctx)
					cancel()
					finished <- jb.key
				}()
			}
		case key := <-finished:
			running--
			c.jobs.done(key)
		case ev, ok := <-events:
			if !ok {
				return
			}
			c.event(ctx, ev)
		case <-lost:
			lost = nil // until it is back (fencing.go)
			c.leaseLost(ctx, back)
		case fresh := <-back:
			lost = c.co.Lost()
			c.leaseBack(fresh)
		case <-ctx.Done():
			return
		}
	}
}

// async queues an etcd job of key (see jobQueue).
func (c *clusterRole) async(key string, job func(ctx context.Context)) { c.jobs.push(key, job) }

// saJob is the job key of SA key.
func saJob(key cluster.SAKey) string { return "sa/" + key.String() }

// Job keys of the node's own records.
const (
	jobNodes = "nodes"
	jobLoad  = "load"
	jobVIPs  = "vips"
)

// cmd runs f on the engine goroutine, unless the daemon stopped.
func (c *clusterRole) cmd(f func(now time.Time)) {
	select {
	case c.d.cmds <- f:
	case <-c.quit:
	}
}

// event handles a change of the cluster (on the watcher's goroutine).
func (c *clusterRole) event(ctx context.Context, ev cluster.Event) {
	switch ev.Kind {
	case cluster.NodesChanged:
		c.nodesChanged()
	case cluster.SAGiven:
		c.given(ctx, ev.SA, ev.Node)
	case cluster.SAReady:
		c.cmd(func(now time.Time) { c.readyThere(now, ev.SA, ev.Node) })
	case cluster.SAArrived:
		c.cmd(func(now time.Time) { c.arrivedThere(now, ev.SA, ev.Node) })
	case cluster.SAStayed:
		c.cmd(func(now time.Time) { c.peerStayed(now, ev.SA, ev.Node) })
	case cluster.VIPTaken:
		c.cmd(func(time.Time) { c.vipTaken(ev.Addr, ev.Node) })
	}
}

// nodesChanged reads the live nodes and announces the others' addresses to our peers.
// Changes that come while a read is queued are covered by it (every node's load
// change is one: a drain makes thousands).
func (c *clusterRole) nodesChanged() {
	if !c.nodesQueued.CompareAndSwap(false, true) {
		return
	}
	c.async(jobNodes, func(ctx context.Context) {
		c.nodesQueued.Store(false)
		nodes, err := c.co.Nodes(ctx)
		if err != nil {
			c.d.log.Warn("cluster: reading the nodes", "err", err)
			return
		}
		c.noteNodes(nodes)
		c.nodesAlive.Store(int64(len(nodes)))
		c.cmd(func(now time.Time) {
			var others []netip.Addr
			for _, n := range nodes {
				if n.Name != c.co.Self().Name {
					others = append(others, n.Addrs...)
				}
			}
			c.d.apply(c.d.engine.SetClusterAddrs(now, others))
			if c.draining {
				c.d.engine.Drain(c.drainTargets(nodes))
			}
		})
	})
}

// onEvent follows the engine's events for the cluster (engine goroutine).
func (c *clusterRole) onEvent(ev ike.Event) {
	defer c.checkVIPs()
	switch ev.Kind {
	case ike.EventEstablished, ike.EventChildFailed:
		// (An IKE SA up without its first Child SA, which the peer may create later,
		// is this node's too: counted, movable, released when it ends.)
		c.claim(ev.IKESA)
	case ike.EventRekeyed:
		if old, ok := c.keys[ev.Replaces]; ok {
			delete(c.keys, ev.Replaces)
			c.release(old)
			c.fo.rekeyed[ev.Replaces] = ev.IKESA
		}
		c.claim(ev.IKESA)
	case ike.EventDeleted, ike.EventFailed:
		if ch, ok := c.redirected[ev.IKESA]; ok {
			delete(c.redirected, ev.IKESA)
			ch <- nil
		}
		if key, ok := c.keys[ev.IKESA]; ok {
			delete(c.keys, ev.IKESA)
			delete(c.arriving, key)
			delete(c.from, key)
			delete(c.espWait, ev.IKESA)
			delete(c.fo.snapAt, ev.IKESA)
			delete(c.fo.snapIn, ev.IKESA)
			c.release(key)
		}
	case ike.EventPeerStayed:
		c.stayedHere(ev.IKESA)
	case ike.EventSwitched:
		c.switched(ev.IKESA)
	}
}

// claim makes this node the owner of IKE SA id, a gateway SA established here.
func (c *clusterRole) claim(id uint64) {
	info, ok := c.d.engine.SAInfo(id)
	if !ok || !info.Gateway {
		return
	}
	key := cluster.SAKey{SPIi: info.SPIi, SPIr: info.SPIr}
	c.keys[id] = key
	c.async(saJob(key), func(ctx context.Context) {
		if ok, err := c.co.Claim(ctx, key); err != nil || !ok {
			c.d.log.Warn("cluster: claiming an SA established here", "sa", key, "claimed", ok, "err", err)
		}
	})
	c.loadChanged()
}

func (c *clusterRole) release(key cluster.SAKey) {
	c.async(saJob(key), func(ctx context.Context) {
		if _, err := c.co.Release(ctx, key); err != nil {
			c.d.log.Warn("cluster: releasing an SA that ended", "sa", key, "err", err)
		}
	})
	c.loadChanged()
}

// loadChanged writes the node's load (its IKE SAs) to etcd after a change (engine
// goroutine). The changes that come while a write is queued are covered by it: a
// drain of a thousand SAs makes a few writes, not two thousand.
func (c *clusterRole) loadChanged() {
	c.load.Store(int64(len(c.keys)))
	if !c.loadQueued.CompareAndSwap(false, true) {
		return
	}
	c.async(jobLoad, func(ctx context.Context) {
		c.loadQueued.Store(false)
		n := c.load.Load()
		if n == c.loadWritten {
			return
		}
		if err := c.co.SetLoad(ctx, int(n)); err != nil {
			c.d.log.Debug("cluster: updating the load", "err", err)
			return
		}
		c.loadWritten = n
	})
}

// given imports an SA node giver gave this one (watcher goroutine): a move here, or a
// hand-back of an SA moved from here whose peer stayed (handback.go).
func (c *clusterRole) given(ctx context.Context, key cluster.SAKey, giver string) {
	jctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	raw, err := c.co.State(jctx, key)
	cancel()
	if err == nil && raw == nil {
		// No state: taken back by the node that gave it (TakeBack deletes it), unless
		// this node still owns it.
		jctx, cancel := context.WithTimeout(ctx, etcdTimeout)
		owner, oerr := c.co.Owner(jctx, key)
		cancel()
		if oerr == nil && owner != c.co.Self().Name {
			c.d.log.Info("cluster: an SA given to this node was taken back before it was imported", "sa", key, "owner", owner)
			return
		}
	}
	if err != nil || raw == nil {
		c.d.log.Error("cluster: an SA given to this node has no readable state", "sa", key, "err", err)
		return
	}
	st, err := ike.DecodeSAState(raw)
	clear(raw)
	if err != nil {
		c.d.log.Error("cluster: the state of an SA given to this node", "sa", key, "err", err)
		return
	}
	c.cmd(func(now time.Time) {
		back := false
		var forget []ike.Action
		if m := c.moves[key]; m != nil && m.ready && c.keys[m.id] == key {
			// Moved from here, and back before its grace ended (the old copy goes), or
			// handed back because its peer never left.
			if back = !m.arrived; back {
				c.finish(m, fmt.Errorf("its peer did not follow the switch to %s; the SA is back on this node", m.to.Name))
			}
			forget = c.dropMoved(now, m)
		}
		if c.held(key) {
			c.d.apply(forget)
			return // ours already (a move taken back)
		}
		id, acts, err := c.d.engine.Import(now, st)
		if err != nil {
			c.d.apply(forget)
			c.d.log.Error("cluster: importing an SA given to this node", "sa", key, "err", err)
			return
		}
		c.keys[id] = key
		c.loadChanged()
		c.movesIn.Add(1)
		if !back {
			c.arriving[key], c.from[key] = id, giver
			c.after(moveArriveTimeout, func(now time.Time) { c.notArrived(now, key, id) })
		}
		c.d.apply(comeBack(forget, acts))
		c.async(saJob(key), func(ctx context.Context) {
			ok, err := c.co.MarkReady(ctx, key)
			if err != nil || !ok {
				// The giver took it back meanwhile: it was never ours to serve.
				c.d.log.Warn("cluster: an SA imported here is no longer this node's; dropping it", "sa", key, "err", err)
				c.cmd(func(now time.Time) {
					if c.keys[id] == key {
						delete(c.keys, id)
						delete(c.arriving, key)
						delete(c.from, key)
						c.loadChanged()
						if acts, err := c.d.engine.Forget(now, id); err == nil {
							c.d.apply(acts)
						}
					}
				})
				return
			}
			c.takeVIPs(ctx, &st)
		})
		if back {
			c.d.log.Info("cluster: SA handed back: its peer stayed here", "sa", key, "id", id, "from", giver)
		} else {
			c.d.log.Info("cluster: SA imported; its peer is asked to switch here", "sa", key, "id", id)
		}
	})
}

// isArriving reports whether IKE SA id was imported here and its peer is yet to arrive.
func (c *clusterRole) isArriving(id uint64) bool {
	key, ok := c.keys[id]
	return ok && c.arriving[key] == id
}

func (c *clusterRole) held(key cluster.SAKey) bool {
	for _, k := range c.keys {
		if k == key {
			return true
		}
	}
	return false
}

// startMove hands IKE SA id to node to (engine goroutine). done, if not nil, gets the
// outcome once the peer arrived there, or why the move failed.
func (c *clusterRole) startMove(now time.Time, id uint64, to cluster.Node, done chan error) error {
	if c.lost {
		return errors.New("this node lost its etcd lease")
	}
	info, ok := c.d.engine.SAInfo(id)
	if !ok || !info.Gateway || !info.Established {
		return fmt.Errorf("SA #%d is not an established SA of this gateway", id)
	}
	key, ok := c.keys[id]
	if !ok {
		return fmt.Errorf("SA #%d is not known to the cluster", id)
	}
	if c.moves[key] != nil {
		return fmt.Errorf("SA #%d is being moved already", id)
	}
	if c.arriving[key] == id {
		// Its peer is still with the node it came from (and may stay there).
		return fmt.Errorf("SA #%d: %w: it was moved here and its peer has not arrived yet", id, ike.ErrExchangeInFlight)
	}
	target := familyAddr(to, info.Local.Addr())
	if !target.IsValid() {
		return fmt.Errorf("node %s has no address of the SA's family", to.Name)
	}
	if !info.RMobike {
		// A peer that cannot be asked to switch may follow a redirect (RFC 5685): it
		// builds a new IKE SA with the other node and deletes this one.
		if !info.Redirect {
			return errors.New("the peer supports neither R-MOBIKE (switch) nor redirects (RFC 5685): it stays")
		}
		acts, err := c.d.engine.Redirect(now, id, target)
		if err != nil {
			return err
		}
		c.d.apply(acts)
		if done != nil {
			c.redirected[id] = done
		}
		c.d.log.Info("cluster: peer redirected to another node (no R-MOBIKE)", "sa", key, "id", id, "to", to.Name)
		return nil
	}
	if err := c.d.engine.CanHandoff(now, id, target); err != nil {
		return err
	}
	return c.handOver(now, &move{id: id, key: key, to: to, target: target}, info, done)
}

// handOver gives the SA of m to m.to (engine goroutine): by Handoff, whose switch
// request goes out once m.to imported it, or, for a hand-back (m.ret), by HandBack.
func (c *clusterRole) handOver(now time.Time, m *move, info ike.SAInfo, done chan error) error {
	id, key, to := m.id, m.key, m.to
	m.bounds = make(map[uint64]uint64)
	m.forward = netip.AddrPortFrom(m.target, c.d.cfg.Ports.NATT)
	m.local = netip.AddrPortFrom(info.Local.Addr(), c.d.cfg.Ports.NATT)
	if done != nil {
		m.waiters = append(m.waiters, done)
	}
	tops, err := c.holdDatapath(m, info)
	if err != nil {
		return err
	}
	var st ike.SAState
	var sends []ike.Action
	if m.ret {
		st, err = c.d.engine.HandBack(now, id, m.target)
	} else {
		st, sends, err = c.d.engine.Handoff(now, id, m.target)
	}
	if err != nil {
		c.undoDatapath(m)
		return err
	}
	for i := range st.Children {
		cs := &st.Children[i]
		cs.InSeq = tops[cs.SPIIn]
		for _, ch := range info.Children {
			if ch.SPIIn == cs.SPIIn {
				// The other node's first lease, written with the state.
				cs.OutSeq, cs.OutLease = m.bounds[ch.Policy], m.bounds[ch.Policy]+leaseChunk
			}
		}
	}
	enc, err := st.Encode()
	if err != nil {
		c.abort(now, m, err)
		return err
	}
	m.sends = sends
	c.moves[key] = m
	if m.ret {
		c.d.log.Info("cluster: handing SA back", "sa", key, "id", id, "to", to.Name, "target", m.target)
	} else {
		c.d.log.Info("cluster: moving SA", "sa", key, "id", id, "to", to.Name, "target", m.target)
	}
	c.async(saJob(key), func(ctx context.Context) {
		ok, err := c.co.Transfer(ctx, key, to.Name, enc)
		clear(enc)
		c.cmd(func(now time.Time) {
			if c.moves[key] != m {
				return
			}
			if err != nil || !ok {
				c.abort(now, m, fmt.Errorf("giving SA #%d to %s in etcd: owned here %v, %v", id, to.Name, !ok, err))
				return
			}
			c.after(moveReadyTimeout, func(now time.Time) { c.readyTimeout(now, m) })
		})
	})
	return nil
}

// startMoveWhenQuiet is startMove, tried again while the SA is busy with an exchange;
// done hears why if it never got quiet.
func (c *clusterRole) startMoveWhenQuiet(now time.Time, id uint64, to cluster.Node, done chan error) error {
	err := c.startMove(now, id, to, done)
	if !errors.Is(err, ike.ErrExchangeInFlight) || done == nil {
		return err
	}
	deadline := now.Add(moveReadyTimeout)
	var retry func(now time.Time)
	retry = func(now time.Time) {
		switch err := c.startMove(now, id, to, done); {
		case err == nil:
		case errors.Is(err, ike.ErrExchangeInFlight) && now.Before(deadline):
			c.after(moveRetry, retry)
		default:
			done <- err
		}
	}
	c.after(moveRetry, retry)
	return nil
}

// familyAddr is node's first address of like's family (invalid: none).
func familyAddr(node cluster.Node, like netip.Addr) netip.Addr {
	for _, a := range node.Addrs {
		if a.Unmap().Is4() == like.Unmap().Is4() {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

// holdDatapath prepares the datapath for moving m's SA first: each Child SA's outbound
// half capped, its inbound half held, so that the state says where the other node's
// sequence numbers and windows start. It returns the inbound tops by SPI.
func (c *clusterRole) holdDatapath(m *move, info ike.SAInfo) (map[uint32]uint64, error) {
	tops := make(map[uint32]uint64)
	for _, ch := range info.Children {
		bound, err := c.d.dp.ReserveOutbound(ch.Policy, moveReserve)
		if err != nil {
			c.undoDatapath(m)
			return nil, fmt.Errorf("SA #%d: %w (rekey it first)", m.id, err)
		}
		m.bounds[ch.Policy] = bound
		top, err := c.d.dp.HandInbound(ch.SPIIn)
		if err != nil {
			c.undoDatapath(m)
			return nil, fmt.Errorf("SA #%d: %w", m.id, err)
		}
		m.spis = append(m.spis, ch.SPIIn)
		tops[ch.SPIIn] = top
	}
	return tops, nil
}

// readyThere continues a move once the other node imported the SA: the held and later
// inbound packets go there, and the peer is asked to switch.
func (c *clusterRole) readyThere(now time.Time, key cluster.SAKey, node string) {
	m := c.moves[key]
	if m == nil || m.ready || node != m.to.Name {
		return
	}
	m.ready = true
	for _, spi := range m.spis {
		if err := c.d.dp.ForwardInbound(spi, m.local, m.forward); err != nil {
			c.d.log.Warn("cluster: forwarding a moved SA's ESP", "sa", key, "err", err)
		}
	}
	if m.ret {
		// The peer is there already: the hand-back is done.
		c.d.log.Info("cluster: SA taken back by the node its peer stayed with", "sa", key, "to", node)
		c.moveDone(m)
		return
	}
	c.d.apply(m.sends)
	m.sends = nil
	c.d.log.Info("cluster: SA taken by the other node; its peer is asked to switch there", "sa", key, "to", node)
}

// arrivedThere finishes a move once the peer arrived at the other node: after a grace
// for what is still on its way here, the SA is forgotten.
func (c *clusterRole) arrivedThere(now time.Time, key cluster.SAKey, node string) {
	m := c.moves[key]
	if m == nil || !m.ready || node != m.to.Name {
		return
	}
	c.d.log.Info("cluster: SA moved", "sa", key, "to", node)
	c.moveDone(m)
}

// moveDone ends move m once the peer is with the other node: after a grace for what
// is still on its way here, the SA is forgotten.
func (c *clusterRole) moveDone(m *move) {
	m.arrived = true
	c.movesOut.Add(1)
	if c.d.inner != nil {
		c.d.inner.leave(m.id) // the other node answers for its addresses now
	}
	c.finish(m, nil) // moved: `move --wait` hears it now, not after the grace
	c.after(moveGrace, func(now time.Time) {
		if c.moves[m.key] == m {
			c.forgetMoved(now, m)
		}
	})
}

// forgetMoved ends move m, whose peer arrived at the other node: the SA leaves this
// node.
func (c *clusterRole) forgetMoved(now time.Time, m *move) {
	c.d.apply(c.dropMoved(now, m))
}

// dropMoved is forgetMoved, returning the engine's actions for the caller to apply.
func (c *clusterRole) dropMoved(now time.Time, m *move) []ike.Action {
	delete(c.moves, m.key)
	delete(c.keys, m.id)
	acts, _ := c.d.engine.Forget(now, m.id)
	// (The move's marks stay until the SA's next move or its end clears them.)
	c.loadChanged()
	return acts
}

// after runs f on the engine goroutine once the daemon's clock moved on by dur.
func (c *clusterRole) after(dur time.Duration, f func(now time.Time)) {
	t := c.d.clock.NewTimer(dur)
	go func() {
		select {
		case <-t.C():
			c.cmd(f)
		case <-c.quit:
			t.Stop()
		}
	}()
}

// readyTimeout takes a move back whose other node did not import the SA in time.
func (c *clusterRole) readyTimeout(now time.Time, m *move) {
	if c.moves[m.key] != m || m.ready {
		return
	}
	c.async(saJob(m.key), func(ctx context.Context) {
		ok, err := c.co.TakeBack(ctx, m.key, m.to.Name)
		c.cmd(func(now time.Time) {
			if c.moves[m.key] != m || m.ready {
				return
			}
			if err != nil || !ok {
				// It was imported after all (or etcd is away): wait for its mark.
				c.d.log.Warn("cluster: the other node took its time importing an SA", "sa", m.key, "err", err)
				return
			}
			c.abort(now, m, fmt.Errorf("%s did not import SA #%d within %v", m.to.Name, m.id, moveReadyTimeout))
		})
	})
}

// abort takes back a move that did not happen (nothing was sent to the peer).
func (c *clusterRole) abort(now time.Time, m *move, why error) {
	delete(c.moves, m.key)
	if acts, err := c.d.engine.Reclaim(now, m.id); err == nil {
		c.d.apply(acts)
	}
	c.undoDatapath(m)
	c.d.log.Warn("cluster: move abandoned; the SA stays here", "sa", m.key, "err", why)
	if m.ret {
		c.arriving[m.key], c.from[m.key] = m.id, m.to.Name // its peer may still come
	}
	c.finish(m, why)
}

func (c *clusterRole) undoDatapath(m *move) {
	for _, spi := range m.spis {
		c.d.dp.ResumeInbound(spi)
	}
	for policy, bound := range m.bounds {
		c.d.dp.UnreserveOutbound(policy, bound)
	}
}

func (c *clusterRole) finish(m *move, err error) {
	for _, w := range m.waiters {
		w <- err
	}
	m.waiters = nil
}

// liveNode reads the live nodes from etcd (not the last list the watch delivered,
// which may lag a node that just joined) and returns the one called name; a usage
// error naming the live nodes if there is none.
func (c *clusterRole) liveNode(ctx context.Context, name string) (cluster.Node, error) {
	nodes, err := c.co.Nodes(ctx)
	if err != nil {
		return cluster.Node{}, fmt.Errorf("move: reading the cluster's nodes from etcd: %w", err)
	}
	var others []string
	for _, n := range nodes {
		switch {
		case n.Name == name && name == c.co.Self().Name:
			return cluster.Node{}, control.UsageError("move --to-node %s: that is this node", name)
		case n.Name == name && n.Draining:
			return cluster.Node{}, control.UsageError("move --to-node %s: that node is draining", name)
		case n.Name == name:
			return n, nil
		case n.Name != c.co.Self().Name:
			others = append(others, n.Name)
		}
	}
	if len(others) == 0 {
		others = []string{"none"}
	}
	return cluster.Node{}, control.UsageError("move --to-node %s: no live node of that name; live: %s", name, strings.Join(others, ", "))
}

// startCluster runs the cluster role; the returned function stops it (after the SAs
// were deleted at shutdown: their releases go out first) and leaves the cluster.
func (d *daemon) startCluster() func() {
	ictx, icancel := context.WithTimeout(context.Background(), etcdTimeout)
	d.cl.initialVIPs(ictx) // the engine does not run yet
	icancel()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.cl.run(ctx)
	}()
	return func() {
		close(d.cl.quit)
		cancel()
		<-done
		lctx, lcancel := context.WithTimeout(context.Background(), etcdTimeout)
		defer lcancel()
		if err := d.cl.co.Close(lctx); err != nil {
			d.log.Warn("cluster: leaving", "err", err)
		}
	}
}

// ClusterStatus implements control.Mover.
func (d *daemon) ClusterStatus(ctx context.Context) (*control.ClusterStatus, error) {
	if d.cl == nil {
		return nil, control.UsageError("cluster status: this gateway is not a cluster node (no cluster: section)")
	}
	return d.cl.status(ctx), nil
}
