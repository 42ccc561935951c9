package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mobikevpn/mobikevpn/ike"
	"github.com/mobikevpn/mobikevpn/internal/cluster"
	"github.com/mobikevpn/mobikevpn/internal/control"
)

// `move`, and the moves of `drain`: the commands' side (the hand-over itself is in
// cluster.go).

// Move implements control.Mover: it hands the selected SAs to node req.ToNode and,
// with a wait, reports once each peer arrived there or why it did not.
func (d *daemon) Move(ctx context.Context, req control.Move) (string, error) {
	if d.cl == nil {
		return "", control.UsageError("move: this gateway is not a cluster node (no cluster: section)")
	}
	var moves moveSet
	var useErr error
	to, err := d.cl.liveNode(ctx, req.ToNode)
	if err != nil {
		return "", err
	}
	if err := d.run(ctx, func(now time.Time) {
		if d.cl.lost {
			useErr = errors.New("move: this node lost its etcd lease")
			return
		}
		for _, s := range d.engine.Status(now) {
			info, ok := d.engine.SAInfo(s.ID)
			if !ok || !info.Gateway || (req.SA != 0 && s.ID != req.SA) || (req.Peer != "" && s.RemoteID != req.Peer) ||
				(req.Count > 0 && len(moves.moving) >= req.Count) {
				continue
			}
			if err := moves.start(now, d.cl, s, info, to); err != nil {
				moves.refuse(s, err)
			}
		}
		if len(moves.moving) == 0 && len(moves.refused) == 0 {
			useErr = control.UsageError("move: no SA of this gateway matches the selection")
		}
	}); err != nil {
		return "", err
	}
	if useErr != nil {
		return "", useErr
	}
	return moves.await(ctx, fmt.Sprintf("moving %d SAs to %s", len(moves.moving), req.ToNode), req.Wait)
}

// moveSet is the moves one command started, and the SAs it could not move.
type moveSet struct {
	moving  []movingSA
	refused []string
}

// movingSA is one SA a command moves.
type movingSA struct {
	id   uint64
	peer string
	how  string // "moved" (switch), "redirected" (RFC 5685)
	to   string // the node
	done chan error
}

// start moves SA s to node to (engine goroutine), or says why not.
func (ms *moveSet) start(now time.Time, c *clusterRole, s ike.SAStatus, info ike.SAInfo, to cluster.Node) error {
	ch := make(chan error, 1)
	if err := c.startMoveWhenQuiet(now, s.ID, to, ch); err != nil {
		return err
	}
	how := "moved"
	if !info.RMobike {
		how = "redirected"
	}
	ms.moving = append(ms.moving, movingSA{id: s.ID, peer: s.RemoteID, how: how, to: to.Name, done: ch})
	return nil
}

// refuse notes why SA s is not moved.
func (ms *moveSet) refuse(s ike.SAStatus, err error) {
	ms.refused = append(ms.refused, fmt.Sprintf("%s (SA #%d): %v", s.RemoteID, s.ID, err))
}

// await reports the moves under head: without a wait at once (a failure only when
// nothing could be started), with one once each ended or the wait is over (a failure
// naming those that did not move).
func (ms *moveSet) await(ctx context.Context, head string, wait time.Duration) (string, error) {
	var b strings.Builder
	b.WriteString(head)
	for _, r := range ms.refused {
		fmt.Fprintf(&b, "\nnot moved: %s", r)
	}
	if wait <= 0 {
		if len(ms.moving) == 0 && len(ms.refused) > 0 {
			return "", &control.Error{Code: control.CodeFailed, Msg: b.String()}
		}
		return b.String(), nil
	}
	timeout := time.After(wait)
	failed := len(ms.refused)
	for _, m := range ms.moving {
		select {
		case err := <-m.done:
			if err != nil {
				failed++
				fmt.Fprintf(&b, "\nnot moved: %s (SA #%d): %v", m.peer, m.id, err)
			} else {
				fmt.Fprintf(&b, "\n%s: %s (SA #%d) to %s", m.how, m.peer, m.id, m.to)
			}
		case <-timeout:
			failed++
			fmt.Fprintf(&b, "\nnot moved within %v: %s (SA #%d)", wait, m.peer, m.id)
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	if failed > 0 {
		return "", &control.Error{Code: control.CodeFailed, Msg: b.String()}
	}
	return b.String(), nil
}

// switched: the peer of IKE SA id arrived here where it was asked to switch (engine
// goroutine). If the SA was imported here, its peer is here from now on: this node
// claims its virtual IPs on the inner side and tells the node it came from, which
// releases them and forgets the SA after a grace. Both wait until the SA's ESP goes to
// the peer's new address: until the check of that address answered (RFC 4555 3.5;
// behind a NAT it is not the one the other node sent to), the traffic the protected
// side sends here could not reach the peer, while the other node still reaches it.
func (c *clusterRole) switched(id uint64) {
	key, ok := c.keys[id]
	if !ok || c.arriving[key] != id {
		return
	}
	delete(c.arriving, key)
	delete(c.from, key)
	if info, ok := c.d.engine.SAInfo(id); ok && info.ESPRemote != info.Remote {
		c.espWait[id] = key
		return
	}
	c.arrived(id, key)
}

// espMoved: the ESP of IKE SA id goes somewhere else now (engine goroutine); a peer
// that arrived while ESP waited for it (switched) is here now.
func (c *clusterRole) espMoved(id uint64) {
	key, ok := c.espWait[id]
	if !ok {
		return
	}
	if info, ok := c.d.engine.SAInfo(id); ok && info.ESPRemote == info.Remote {
		delete(c.espWait, id)
		c.arrived(id, key)
	}
}

// arrived: the peer of IKE SA id (key), imported here, arrived and its ESP goes there.
// The node it came from is told once our answer to the peer's UPDATE_SA_ADDRESSES is
// on its way (after this batch's snapshot, failover.go): the peer sends its ESP there
// until it has that answer, and the node forgets the SA a grace after it is told.
func (c *clusterRole) arrived(id uint64, key cluster.SAKey) {
	if c.d.inner != nil {
		c.d.inner.arrived(id)
	}
	c.fo.afterPersist = append(c.fo.afterPersist, func() {
		c.async(saJob(key), func(ctx context.Context) {
			if _, err := c.co.MarkArrived(ctx, key); err != nil {
				c.d.log.Warn("cluster: marking an SA arrived", "sa", key, "err", err)
			}
		})
	})
}
