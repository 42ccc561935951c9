package cluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Config says how a node reaches etcd and how it is known there.
type Config struct {
	Endpoints []string    // etcd client URLs (http://, https://, unix://)
	TLS       *tls.Config // nil: plain
	Prefix    string      // every key the cluster writes starts with it
	LeaseTTL  time.Duration
	// DialTimeout bounds connecting to etcd (default 5 s).
	DialTimeout time.Duration
}

// Node is a member of the cluster as etcd knows it.
type Node struct {
	Name   string       `json:"name"`
	Addrs  []netip.Addr `json:"addrs"`
	IKESAs int          `json:"ike_sas"`
	// Draining: the node takes no new IKE SAs and moves its SAs away (SetDraining); no
	// SA is to be moved to it.
	Draining bool `json:"draining,omitempty"`
}

// SAKey names an IKE SA in the cluster: its SPIs, which a move does not change.
type SAKey struct{ SPIi, SPIr uint64 }

func (k SAKey) String() string { return fmt.Sprintf("%016x-%016x", k.SPIi, k.SPIr) }

// ParseSAKey reads an SAKey as String writes it.
func ParseSAKey(s string) (SAKey, error) {
	i, r, ok := strings.Cut(s, "-")
	if !ok || len(i) != 16 || len(r) != 16 {
		return SAKey{}, fmt.Errorf("bad SA key %q", s)
	}
	a, err1 := strconv.ParseUint(i, 16, 64)
	b, err2 := strconv.ParseUint(r, 16, 64)
	if err := errors.Join(err1, err2); err != nil || a == 0 || b == 0 {
		return SAKey{}, fmt.Errorf("bad SA key %q", s)
	}
	return SAKey{a, b}, nil
}

// Coordinator is one node's view of the cluster in etcd:
//
//	<prefix>nodes/<name>          the node (Node as JSON), bound to its lease
//	<prefix>sas/<SAKey>/owner     the node that owns the SA
//	<prefix>sas/<SAKey>/state     the SA's state, sealed with the cluster's StateKey
//
// Membership lives as long as the node's lease: a node that stops renewing it
// (crashed, cut off) is gone from nodes/ after the lease's TTL. An SA has one owner;
// ownership changes only by compare-and-swap transactions, so that no two nodes ever
// own one SA.
type Coordinator struct {
	cli     *clientv3.Client
	prefix  string
	self    Node
	key     *StateKey
	leaseID atomic.Int64 // clientv3.LeaseID: the node's lease (a new one after Reattach)
	ttl     time.Duration
	// joined is etcd's revision when the node registered: Watch reports what changed
	// after it (the node is a move's target from then on).
	joined int64

	recMu sync.Mutex
	rec   Node // what the node's key says (SetLoad, SetDraining)

	kaMu sync.Mutex
	lost chan struct{}      // closed when the lease is gone (kaMu)
	stop context.CancelFunc // ends the keep-alive (kaMu)
	done chan struct{}      // closed when the keep-alive ended (kaMu)
}

// LeaseID is the node's lease in etcd (another after Reattach).
func (c *Coordinator) LeaseID() int64 { return c.leaseID.Load() }

// lease is the node's lease.
func (c *Coordinator) lease() clientv3.LeaseID { return clientv3.LeaseID(c.leaseID.Load()) }

// ErrNameInUse is returned by Join when a live node has the same name.
var ErrNameInUse = errors.New("a live node of the cluster has this name")

// Join connects to etcd and registers self as a live node of the cluster, under a
// lease of cfg.LeaseTTL that it keeps renewing until Close.
func Join(ctx context.Context, cfg Config, self Node, key *StateKey) (*Coordinator, error) {
	if self.Name == "" || strings.ContainsAny(self.Name, "/\x00") {
		return nil, fmt.Errorf("cluster: node name %q (non-empty, no '/')", self.Name)
	}
	if cfg.LeaseTTL < time.Second {
		return nil, fmt.Errorf("cluster: lease TTL %v: at least 1s", cfg.LeaseTTL)
	}
	dial := cfg.DialTimeout
	if dial == 0 {
		dial = 5 * time.Second
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.Endpoints, TLS: cfg.TLS, DialTimeout: dial, Context: ctx,
		Logger: quietLogger()})
	if err != nil {
		return nil, fmt.Errorf("cluster: etcd %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	c := &Coordinator{cli: cli, prefix: cfg.Prefix, self: self, rec: self, key: key, ttl: cfg.LeaseTTL}
	if err := c.register(ctx); err != nil {
		cli.Close()
		return nil, err
	}
	return c, nil
}

func (c *Coordinator) nodeKey(name string) string { return c.prefix + "nodes/" + name }
func (c *Coordinator) ownerKey(sa SAKey) string   { return c.prefix + "sas/" + sa.String() + "/owner" }
func (c *Coordinator) stateKey(sa SAKey) string   { return c.prefix + "sas/" + sa.String() + "/state" }
func (c *Coordinator) markKey(sa SAKey, m string) string {
	return c.prefix + "sas/" + sa.String() + "/" + m
}

// register grants a lease, writes the node's key (its record as it is) under it
// unless a live node holds the name, and keeps the lease alive.
func (c *Coordinator) register(ctx context.Context) error {
	lease, err := c.cli.Grant(ctx, int64((c.ttl+time.Second-1)/time.Second))
	if err != nil {
		return fmt.Errorf("cluster: etcd at %s: granting the node's lease: %w", strings.Join(c.cli.Endpoints(), ", "), err)
	}
	c.recMu.Lock()
	val, _ := json.Marshal(c.rec)
	c.recMu.Unlock()
	k := c.nodeKey(c.self.Name)
	resp, err := c.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(val), clientv3.WithLease(lease.ID))).Commit()
	if err != nil {
		c.cli.Revoke(context.WithoutCancel(ctx), lease.ID)
		return fmt.Errorf("cluster: registering node %q: %w", c.self.Name, err)
	}
	if !resp.Succeeded {
		c.cli.Revoke(context.WithoutCancel(ctx), lease.ID)
		return fmt.Errorf("cluster: node %q: %w", c.self.Name, ErrNameInUse)
	}
	if c.joined == 0 {
		c.joined = resp.Header.Revision
	}
	c.leaseID.Store(int64(lease.ID))
	return c.keepAlive(ctx)
}

// keepAlive keeps the node's lease alive until it is gone (not renewed within its TTL:
// etcd unreachable, or the lease expired or was revoked) or Close.
func (c *Coordinator) keepAlive(ctx context.Context) error {
	kctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	ka, err := c.cli.KeepAlive(kctx, c.lease())
	if err != nil {
		stop()
		return fmt.Errorf("cluster: keeping the lease alive: %w", err)
	}
	lost, done := make(chan struct{}), make(chan struct{})
	c.kaMu.Lock()
	c.lost, c.stop, c.done = lost, stop, done
	c.kaMu.Unlock()
	go func() {
		defer close(done)
		for range ka {
		}
		// The channel closes when the lease expired, was revoked, or we stopped.
		close(lost)
	}()
	return nil
}

// Lost is closed when the node's lease is gone (not renewed in time, or revoked): the
// node is no longer a member, and must not act as an owner until Reattach.
func (c *Coordinator) Lost() <-chan struct{} {
	c.kaMu.Lock()
	defer c.kaMu.Unlock()
	return c.lost
}

// Reattach makes the node a member again after its lease was lost (Lost): if etcd still
// has the lease (etcd itself was away: its leader renews every lease when it comes
// back), the node keeps it and nothing changed; otherwise the lease expired (the node
// was cut off while the others were not) and the node joins again under a new lease
// (fresh: the other nodes may have taken its SAs over meanwhile, and the keys under the
// old lease, its virtual IPs, are gone).
func (c *Coordinator) Reattach(ctx context.Context) (fresh bool, err error) {
	ttl, err := c.cli.TimeToLive(ctx, c.lease())
	if err != nil {
		return false, err
	}
	c.kaMu.Lock()
	stop, done := c.stop, c.done
	c.kaMu.Unlock()
	stop()
	<-done
	if ttl.TTL > 0 {
		return false, c.keepAlive(ctx)
	}
	return true, c.register(ctx)
}

// Self is the node as it registered (its name and addresses). Safe for concurrent use.
func (c *Coordinator) Self() Node { return c.self }

// SetLoad updates the node's IKE SA count in its key.
func (c *Coordinator) SetLoad(ctx context.Context, ikeSAs int) error {
	return c.putSelf(ctx, func(n *Node) { n.IKESAs = ikeSAs })
}

// SetDraining marks the node draining in its key, for good.
func (c *Coordinator) SetDraining(ctx context.Context) error {
	return c.putSelf(ctx, func(n *Node) { n.Draining = true })
}

// putSelf changes the node's record with f and writes it to its key; the lock is held
// across the write, so that the last record written is the last one made.
func (c *Coordinator) putSelf(ctx context.Context, f func(n *Node)) error {
	c.recMu.Lock()
	defer c.recMu.Unlock()
	f(&c.rec)
	val, _ := json.Marshal(c.rec)
	_, err := c.cli.Put(ctx, c.nodeKey(c.self.Name), string(val), clientv3.WithLease(c.lease()))
	return err
}

// Nodes returns the live nodes, by name.
func (c *Coordinator) Nodes(ctx context.Context) ([]Node, error) {
	resp, err := c.cli.Get(ctx, c.prefix+"nodes/", clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	var out []Node
	for _, kv := range resp.Kvs {
		var n Node
		if err := json.Unmarshal(kv.Value, &n); err != nil || n.Name != strings.TrimPrefix(string(kv.Key), c.prefix+"nodes/") {
			continue // not a node's key as we write them
		}
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Claim makes this node the owner of sa if it has none. It reports whether it did.
func (c *Coordinator) Claim(ctx context.Context, sa SAKey) (bool, error) {
	k := c.ownerKey(sa)
	return c.commit(ctx, c.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, c.self.Name)), k, c.self.Name)
}

// Owner returns the node that owns sa ("": none).
func (c *Coordinator) Owner(ctx context.Context, sa SAKey) (string, error) {
	resp, err := c.cli.Get(ctx, c.ownerKey(sa))
	if err != nil || len(resp.Kvs) == 0 {
		return "", err
	}
	return string(resp.Kvs[0].Value), nil
}

// Transfer gives sa, owned by this node, to node to, with its state (sealed here), in
// one transaction, which also clears the marks of an earlier move. It reports false,
// changing nothing, when this node is not the owner.
func (c *Coordinator) Transfer(ctx context.Context, sa SAKey, to string, state []byte) (bool, error) {
	sealed, err := c.key.Seal(c.stateKey(sa), state)
	if err != nil {
		return false, err
	}
	k := c.ownerKey(sa)
	return c.commit(ctx, c.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(k), "=", c.self.Name)).
		Then(append([]clientv3.Op{clientv3.OpPut(k, to), clientv3.OpPut(c.stateKey(sa), string(sealed))}, c.deleteMarks(sa)...)...), k, to)
}

// deleteMarks deletes the marks of sa's last move (a new one starts, or the SA ends).
func (c *Coordinator) deleteMarks(sa SAKey) []clientv3.Op {
	ops := make([]clientv3.Op, 0, len(allMarks))
	for _, m := range allMarks {
		ops = append(ops, clientv3.OpDelete(c.markKey(sa, m)))
	}
	return ops
}

// PutState writes sa's state (sealed here) if this node owns sa; it reports whether it
// did.
func (c *Coordinator) PutState(ctx context.Context, sa SAKey, state []byte) (bool, error) {
	sealed, err := c.key.Seal(c.stateKey(sa), state)
	if err != nil {
		return false, err
	}
	resp, err := c.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(c.ownerKey(sa)), "=", c.self.Name)).
		Then(clientv3.OpPut(c.stateKey(sa), string(sealed))).Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

// State returns sa's state, opened (nil: none written).
func (c *Coordinator) State(ctx context.Context, sa SAKey) ([]byte, error) {
	resp, err := c.cli.Get(ctx, c.stateKey(sa))
	if err != nil || len(resp.Kvs) == 0 {
		return nil, err
	}
	return c.key.Open(c.stateKey(sa), resp.Kvs[0].Value)
}

// Release forgets sa (owner, state and marks) if this node owns it; it reports whether it
// did.
func (c *Coordinator) Release(ctx context.Context, sa SAKey) (bool, error) {
	k := c.ownerKey(sa)
	resp, err := c.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(k), "=", c.self.Name)).
		Then(append([]clientv3.Op{clientv3.OpDelete(k), clientv3.OpDelete(c.stateKey(sa))}, c.deleteMarks(sa)...)...).Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

// Owned returns the SAs this node owns.
func (c *Coordinator) Owned(ctx context.Context) ([]SAKey, error) {
	resp, err := c.cli.Get(ctx, c.prefix+"sas/", clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	var out []SAKey
	for _, kv := range resp.Kvs {
		rest, ok := strings.CutSuffix(strings.TrimPrefix(string(kv.Key), c.prefix+"sas/"), "/owner")
		if !ok || string(kv.Value) != c.self.Name {
			continue
		}
		if sa, err := ParseSAKey(rest); err == nil {
			out = append(out, sa)
		}
	}
	return out, nil
}

// Close leaves the cluster: the lease is revoked, so the node is gone from nodes/ at
// once (its SAs keep their owner key until someone takes them), and the connection
// closes.
func (c *Coordinator) Close(ctx context.Context) error {
	_, err := c.cli.Revoke(ctx, c.lease())
	c.kaMu.Lock()
	stop, done := c.stop, c.done
	c.kaMu.Unlock()
	stop()
	<-done
	return errors.Join(err, c.cli.Close())
}

// The marks of a move (see the package doc): ready and arrived written by the new
// owner, stayed by the node that gave the SA.
const (
	markReady   = "ready"   // it imported the SA
	markArrived = "arrived" // the SA's peer arrived there
	markStayed  = "stayed"  // the SA's peer stayed with the node that gave it
)

var allMarks = []string{markReady, markArrived, markStayed}

// MarkReady says that this node, the owner of sa, imported it; it reports false when
// this node is not the owner (any more).
func (c *Coordinator) MarkReady(ctx context.Context, sa SAKey) (bool, error) {
	return c.mark(ctx, sa, markReady)
}

// MarkArrived says that sa's peer arrived at this node, its owner.
func (c *Coordinator) MarkArrived(ctx context.Context, sa SAKey) (bool, error) {
	return c.mark(ctx, sa, markArrived)
}

func (c *Coordinator) mark(ctx context.Context, sa SAKey, m string) (bool, error) {
	k := c.markKey(sa, m)
	return c.commit(ctx, c.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(c.ownerKey(sa)), "=", c.self.Name)).
		Then(clientv3.OpPut(k, c.self.Name)), k, c.self.Name)
}

// MarkStayed says that the peer of sa, which this node gave to node owner, stayed with
// this node (it did not follow the switch request): owner gives the SA back. It reports
// false when owner does not own sa (any more).
func (c *Coordinator) MarkStayed(ctx context.Context, sa SAKey, owner string) (bool, error) {
	k := c.markKey(sa, markStayed)
	return c.commit(ctx, c.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(c.ownerKey(sa)), "=", owner)).
		Then(clientv3.OpPut(k, c.self.Name)), k, c.self.Name)
}

// TakeBack makes this node the owner of sa again, which it gave to node from, as long
// as from has not imported it (no ready mark): a move that did not happen. The state
// given with it is deleted. It reports whether it did.
func (c *Coordinator) TakeBack(ctx context.Context, sa SAKey, from string) (bool, error) {
	k := c.ownerKey(sa)
	return c.commit(ctx, c.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(k), "=", from),
		clientv3.Compare(clientv3.CreateRevision(c.markKey(sa, markReady)), "=", 0)).
		Then(clientv3.OpPut(k, c.self.Name), clientv3.OpDelete(c.stateKey(sa))), k, c.self.Name)
}

// commit commits the compare-and-swap txn, which sets key to want when it succeeds, and
// reports whether it did. When etcd fails with the transaction in flight (the member
// it went to died), its outcome is unknown: key is read again (a linearizable read, on
// whichever member answers, until ctx ends) and the transaction counts as done if key
// is want. That is exact: no transaction here sets key to want unless it succeeded, and
// one that a dead member did not get replicated is never committed.
func (c *Coordinator) commit(ctx context.Context, txn clientv3.Txn, key, want string) (bool, error) {
	resp, err := txn.Commit()
	if err == nil {
		return resp.Succeeded, nil
	}
	for {
		got, gerr := c.cli.Get(ctx, key)
		if gerr == nil {
			return len(got.Kvs) == 1 && string(got.Kvs[0].Value) == want, nil
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("%w (and reading the outcome: %w)", err, gerr)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// EventKind says what changed in the cluster.
type EventKind int

// Event kinds.
const (
	SAGiven      EventKind = iota + 1 // an SA became this node's (Transfer to it): its state is there (Node: who gave it)
	SAReady                           // an SA's owner marked it imported (Node: who)
	SAArrived                         // an SA's peer arrived at its owner (Node: who)
	SAStayed                          // an SA's peer stayed with the node that gave it (Node: that node)
	NodesChanged                      // a node joined, left, or changed
	VIPTaken                          // a virtual IP this node held is another's now (Node: whose; Addr)
)

// Event is a change in the cluster that concerns this node.
type Event struct {
	Kind EventKind
	SA   SAKey
	Node string
	Addr netip.Addr // VIPTaken
}

// watchRetry is the pause before watching again after the watch broke.
const watchRetry = time.Second

// Watch reports the changes of the cluster that concern this node until ctx ends: SAs
// given to it, the marks of moves, membership; every change made after the node joined
// (other nodes may give it SAs from then on, before it watches). Should the watch break
// (etcd away), it watches again from where it was; if etcd compacted that history
// meanwhile, it starts from now and reports NodesChanged (the marks in between are
// lost: a move waiting for one times out).
func (c *Coordinator) Watch(ctx context.Context) <-chan Event {
	out := make(chan Event, 256)
	rev := c.joined
	go func() {
		defer close(out)
		for ctx.Err() == nil {
			opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithPrevKV()}
			if rev > 0 {
				opts = append(opts, clientv3.WithRev(rev+1))
			}
			for resp := range c.cli.Watch(clientv3.WithRequireLeader(ctx), c.prefix, opts...) {
				if resp.CompactRevision > 0 {
					rev = 0
					c.send(ctx, out, Event{Kind: NodesChanged})
					break
				}
				if resp.Err() != nil {
					break
				}
				rev = resp.Header.Revision
				for _, ev := range resp.Events {
					if e, ok := c.classify(ev); ok && !c.send(ctx, out, e) {
						return
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(watchRetry):
			}
		}
	}()
	return out
}

func (c *Coordinator) send(ctx context.Context, out chan<- Event, e Event) bool {
	select {
	case out <- e:
		return true
	case <-ctx.Done():
		return false
	}
}

// classify turns an etcd event into the cluster event it means to this node, if any.
func (c *Coordinator) classify(ev *clientv3.Event) (Event, bool) {
	key := strings.TrimPrefix(string(ev.Kv.Key), c.prefix)
	if strings.HasPrefix(key, "nodes/") {
		return Event{Kind: NodesChanged}, true
	}
	if a, ok := strings.CutPrefix(key, "vips/"); ok {
		// Another node took an address this one held: it moved or took over the SA
		// that has it (TakeVIPs, TakeOver).
		addr, err := netip.ParseAddr(a)
		if err != nil || ev.Type != clientv3.EventTypePut || ev.PrevKv == nil ||
			string(ev.PrevKv.Value) != c.self.Name || string(ev.Kv.Value) == c.self.Name {
			return Event{}, false
		}
		return Event{Kind: VIPTaken, Node: string(ev.Kv.Value), Addr: addr}, true
	}
	rest, ok := strings.CutPrefix(key, "sas/")
	if !ok || ev.Type != clientv3.EventTypePut {
		return Event{}, false
	}
	id, what, ok := strings.Cut(rest, "/")
	sa, err := ParseSAKey(id)
	if !ok || err != nil {
		return Event{}, false
	}
	val := string(ev.Kv.Value)
	switch what {
	case "owner":
		if val == c.self.Name && ev.PrevKv != nil && string(ev.PrevKv.Value) != c.self.Name {
			return Event{Kind: SAGiven, SA: sa, Node: string(ev.PrevKv.Value)}, true
		}
	case markReady:
		return Event{Kind: SAReady, SA: sa, Node: val}, true
	case markArrived:
		return Event{Kind: SAArrived, SA: sa, Node: val}, true
	case markStayed:
		return Event{Kind: SAStayed, SA: sa, Node: val}, true
	}
	return Event{}, false
}

// Owners returns the owner of every SA the cluster knows.
func (c *Coordinator) Owners(ctx context.Context) (map[SAKey]string, error) {
	owners, _, err := c.OwnersStates(ctx)
	return owners, err
}

// SealedState is an SA's state as etcd has it, with the revision that wrote it.
type SealedState struct {
	data []byte
	Rev  int64
}

// OwnersStates is Owners with every SA's state as read in the same request (for
// TakeOver without reading each again: OpenState).
func (c *Coordinator) OwnersStates(ctx context.Context) (map[SAKey]string, map[SAKey]SealedState, error) {
	resp, err := c.cli.Get(ctx, c.prefix+"sas/", clientv3.WithPrefix())
	if err != nil {
		return nil, nil, err
	}
	owners, states := make(map[SAKey]string), make(map[SAKey]SealedState)
	for _, kv := range resp.Kvs {
		id, what, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), c.prefix+"sas/"), "/")
		sa, err := ParseSAKey(id)
		if !ok || err != nil {
			continue
		}
		switch what {
		case "owner":
			owners[sa] = string(kv.Value)
		case "state":
			states[sa] = SealedState{data: kv.Value, Rev: kv.ModRevision}
		}
	}
	return owners, states, nil
}

// OpenState opens the state of sa that OwnersStates read.
func (c *Coordinator) OpenState(sa SAKey, s SealedState) ([]byte, error) {
	return c.key.Open(c.stateKey(sa), s.data)
}

// StateRev returns sa's state, opened, with the revision that wrote it (for TakeOver);
// nil and 0 when there is none.
func (c *Coordinator) StateRev(ctx context.Context, sa SAKey) ([]byte, int64, error) {
	resp, err := c.cli.Get(ctx, c.stateKey(sa))
	if err != nil || len(resp.Kvs) == 0 {
		return nil, 0, err
	}
	st, err := c.key.Open(c.stateKey(sa), resp.Kvs[0].Value)
	return st, resp.Kvs[0].ModRevision, err
}

// TakeOver makes this node the owner of sa, owned by node dead, which is gone, with
// state (sealed here) replacing the one written at revision rev, and makes it the
// holder of vips, the SA's virtual IPs (under its lease), in one transaction. It
// reports false, changing nothing, when dead no longer owns sa or its state changed
// since rev: another survivor took it first.
func (c *Coordinator) TakeOver(ctx context.Context, sa SAKey, dead string, rev int64, state []byte, vips []netip.Addr) (bool, error) {
	sealed, err := c.key.Seal(c.stateKey(sa), state)
	if err != nil {
		return false, err
	}
	k := c.ownerKey(sa)
	ops := append([]clientv3.Op{clientv3.OpPut(k, c.self.Name), clientv3.OpPut(c.stateKey(sa), string(sealed))}, c.deleteMarks(sa)...)
	for _, a := range vips {
		ops = append(ops, clientv3.OpPut(c.vipKey(a), c.self.Name, clientv3.WithLease(c.lease())))
	}
	return c.commit(ctx, c.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(k), "=", dead),
		clientv3.Compare(clientv3.ModRevision(c.stateKey(sa)), "=", rev)).Then(ops...), k, c.self.Name)
}
