package daemon

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/internal/control"
)

// `drain` of node A with three clients (two with R-MOBIKE, one without) in a cluster of
// three: the SAs go to B and C, least loaded first (switched or redirected), A is
// marked draining and takes no SA any more, and a client that comes afterwards is
// redirected to another node in IKE_SA_INIT.
func TestClusterDrainInProcess(t *testing.T) {
	l := newClusterLab(t, "/drain/")
	ctx := l.ctx
	aAddr := netip.MustParseAddr("198.51.100.1")
	a := l.node("gw-a", aAddr)
	b := l.node("gw-b", netip.MustParseAddr("198.51.100.2"))
	c := l.node("gw-c", netip.MustParseAddr("198.51.100.3"))
	clients := []*node{
		l.client(clusterClientConfig, "alice@example.org", netip.MustParseAddr("192.0.2.10")),
		l.client(clusterClientConfig, "bob@example.org", netip.MustParseAddr("192.0.2.11")),
		l.client(noRMobike(clusterClientConfig), "carol@example.org", netip.MustParseAddr("192.0.2.12")),
	}
	for _, cl := range clients {
		waitFor(t, "the clients established with A, told of B and C (else they refuse to switch there)", func() bool {
			st := cl.status(t)
			return len(st) == 1 && len(st[0].ChildSAs) == 1 && st[0].Remote == "198.51.100.1:4500" && len(st[0].PeerAdditionalAddrs) == 2
		})
	}
	waitFor(t, "A's load in etcd", func() bool {
		cs, err := a.d.ClusterStatus(ctx)
		return err == nil && len(cs.Nodes) == 3 && cs.Nodes[0].IKESAs == 3
	})

	msg, err := l.command("the drain", 50*time.Millisecond, func() (string, error) { return a.d.Drain(ctx, 30*time.Second) })
	if err != nil {
		t.Fatalf("drain: %v (%s)", err, msg)
	}
	for _, want := range []string{"draining: moving 3 SAs to gw-b, gw-c", "moved: alice@example.org", "moved: bob@example.org", "redirected: carol@example.org"} {
		if !strings.Contains(msg, want) {
			t.Errorf("drain said %q, without %q", msg, want)
		}
	}
	waitFor(t, "the SAs on B and C", func() bool {
		if len(a.status(t)) == 0 && len(b.status(t))+len(c.status(t)) == 3 {
			return true
		}
		l.clk.Advance(100 * time.Millisecond) // A forgets the SAs it moved after a grace
		return false
	})
	// Least loaded first: the three spread over both.
	if len(b.status(t)) == 0 || len(c.status(t)) == 0 {
		t.Errorf("B has %d SAs, C %d: not spread", len(b.status(t)), len(c.status(t)))
	}
	for _, cl := range clients {
		if st := cl.status(t); len(st) != 1 || st[0].Remote == "198.51.100.1:4500" || len(st[0].ChildSAs) != 1 {
			t.Errorf("a client after the drain: %+v", st)
		}
	}
	cs, err := b.d.ClusterStatus(ctx)
	if err != nil || !cs.Nodes[0].Draining || cs.Nodes[1].Draining || cs.Nodes[2].Draining {
		t.Errorf("cluster status after the drain: %+v %v", cs, err)
	}
	// No SA moves to a draining node.
	var ce *control.Error
	if _, err := b.d.Move(ctx, control.Move{ToNode: "gw-a", All: true}); !errors.As(err, &ce) || ce.Code != control.CodeUsage || !strings.Contains(ce.Msg, "draining") {
		t.Errorf("move to the draining node: %v", err)
	}
	// A new client of A is redirected in IKE_SA_INIT: A never holds its SA.
	dave := l.client(clusterClientConfig, "dave@example.org", netip.MustParseAddr("192.0.2.13"))
	waitFor(t, "the new client established with another node", func() bool {
		st := dave.status(t)
		return len(st) == 1 && st[0].State == "established" && len(st[0].ChildSAs) == 1
	})
	if st := dave.status(t); st[0].Remote == "198.51.100.1:4500" || len(a.status(t)) != 0 {
		t.Errorf("the new client is with %s; A has %d SAs", st[0].Remote, len(a.status(t)))
	}
	t.Logf("%s", msg)
}

// `drain` needs another live node that is not draining.
func TestClusterDrainAlone(t *testing.T) {
	l := newClusterLab(t, "/drain-alone/")
	a := l.node("gw-a", netip.MustParseAddr("198.51.100.1"))
	var ce *control.Error
	if _, err := a.d.Drain(l.ctx, 0); !errors.As(err, &ce) || ce.Code != control.CodeUsage || !strings.Contains(ce.Msg, "no other live node") {
		t.Errorf("drain of a lone node: %v", err)
	}
	if cs, err := a.d.ClusterStatus(l.ctx); err != nil || cs.Nodes[0].Draining {
		t.Errorf("a refused drain marked the node draining: %+v %v", cs, err)
	}
}
