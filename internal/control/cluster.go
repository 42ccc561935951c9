package control

import (
	"context"
	"strings"
	"time"
)

// The gateway cluster's commands: `move`, `drain` and `cluster status`.

// Cluster commands.
const (
	CmdMove          = "move"
	CmdDrain         = "drain"
	CmdClusterStatus = "cluster-status"
)

// MoveRequest selects the SAs to hand to the node ToNode (see Request). No selection
// means every SA.
type MoveRequest struct {
	ToNode string
	SA     *uint64
	Peer   string
	All    bool
	Count  int
	Wait   time.Duration
}

// Move is a move request as Parse validated it: a node, at most one selection, a wait.
type Move struct {
	ToNode string
	SA     uint64 // one IKE SA by id (0: not this selection)
	Peer   string // the SAs of one peer identity
	Count  int    // the first Count SAs (0: not this selection)
	All    bool   // every SA (also when nothing else is selected)
	Wait   time.Duration
}

// Parse validates a move request, for the command line and the server alike; its
// errors are usage errors that name the flag.
func (r MoveRequest) Parse() (Move, error) {
	m := Move{ToNode: r.ToNode, Peer: r.Peer, All: r.All, Count: r.Count}
	if r.ToNode == "" {
		return m, UsageError("move needs --to-node NODE, the cluster node to move to")
	}
	var sels []string
	if r.SA != nil {
		if m.SA = *r.SA; m.SA == 0 {
			return m, UsageError("move --sa 0: IKE SA ids start at 1")
		}
		sels = append(sels, "--sa")
	}
	if r.Peer != "" {
		sels = append(sels, "--peer")
	}
	if r.Count != 0 {
		if r.Count < 0 {
			return m, UsageError("move --count %d: a count is more than 0", r.Count)
		}
		sels = append(sels, "--count")
	}
	if r.All {
		sels = append(sels, "--all")
	}
	switch len(sels) {
	case 0:
		m.All = true
	case 1:
	default:
		return m, UsageError("move takes one selection, got %s", strings.Join(sels, " and "))
	}
	if r.Wait < 0 {
		return m, UsageError("move --wait %v: the wait must not be negative", r.Wait)
	}
	m.Wait = r.Wait
	return m, nil
}

// Mover is implemented by handlers of cluster nodes; for others the server answers that
// the gateway is not a cluster node. The string is a summary for the client.
type Mover interface {
	Move(ctx context.Context, req Move) (string, error)
	// Drain stops new IKE SAs on the node and moves every SA to the other live nodes;
	// with a wait (more than 0) it reports once each arrived there, as Move.
	Drain(ctx context.Context, wait time.Duration) (string, error)
	ClusterStatus(ctx context.Context) (*ClusterStatus, error)
}

// ClusterStatus is the answer to `cluster status`.
type ClusterStatus struct {
	Self  string        `json:"self"`
	Nodes []ClusterNode `json:"nodes"`
	// Etcd is "ok", or what is wrong with this node's etcd: unreachable (the nodes are
	// then this node alone, as it knows itself), or its lease lost (no member).
	Etcd string `json:"etcd"`
}

// ClusterNode is a node of the cluster.
type ClusterNode struct {
	Name     string   `json:"name"`
	Addrs    []string `json:"addrs"`
	Alive    bool     `json:"alive"`
	IKESAs   int      `json:"ike_sas"`
	Draining bool     `json:"draining"` // `drain` ran on it: no new IKE SAs, none moved to it
}

// Move asks the daemon to hand the selected SAs to another node.
func (cl *Client) Move(ctx context.Context, req MoveRequest) (string, error) {
	r := Request{Cmd: CmdMove, ToNode: req.ToNode, SA: req.SA, Peer: req.Peer, All: req.All, Count: req.Count}
	if req.Wait > 0 {
		r.WaitMS = max(req.Wait.Milliseconds(), 1)
	}
	resp, err := cl.Do(ctx, r)
	if err != nil {
		return "", err
	}
	return resp.Message, nil
}

// Drain asks the daemon to drain its node, waiting up to wait (0: not) for the SAs to
// arrive at the other nodes.
func (cl *Client) Drain(ctx context.Context, wait time.Duration) (string, error) {
	r := Request{Cmd: CmdDrain}
	if wait > 0 {
		r.WaitMS = max(wait.Milliseconds(), 1)
	}
	resp, err := cl.Do(ctx, r)
	if err != nil {
		return "", err
	}
	return resp.Message, nil
}

// ClusterStatus fetches the cluster's nodes.
func (cl *Client) ClusterStatus(ctx context.Context) (*ClusterStatus, error) {
	resp, err := cl.Do(ctx, Request{Cmd: CmdClusterStatus})
	if err != nil {
		return nil, err
	}
	if resp.Cluster == nil {
		return nil, &Error{Code: CodeFailed, Msg: "the daemon's answer has no cluster status"}
	}
	return resp.Cluster, nil
}

// serveCluster answers the cluster commands.
func (s *Server) serveCluster(ctx context.Context, req Request) *Response {
	mv, ok := s.h.(Mover)
	if !ok {
		return &Response{Error: req.Cmd + ": this gateway is not a cluster node (no cluster: section)", Code: CodeUsage}
	}
	if req.Cmd == CmdClusterStatus {
		st, err := mv.ClusterStatus(ctx)
		if err != nil {
			return errResponse(err)
		}
		return &Response{OK: true, Cluster: st}
	}
	if req.Cmd == CmdDrain {
		if req.WaitMS < 0 {
			return errResponse(UsageError("drain --wait: the wait must not be negative"))
		}
		msg, err := mv.Drain(ctx, time.Duration(req.WaitMS)*time.Millisecond)
		if err != nil {
			return errResponse(err)
		}
		return &Response{OK: true, Message: msg}
	}
	m, err := MoveRequest{ToNode: req.ToNode, SA: req.SA, Peer: req.Peer, All: req.All, Count: req.Count,
		Wait: time.Duration(req.WaitMS) * time.Millisecond}.Parse()
	if err != nil {
		return errResponse(err)
	}
	msg, err := mv.Move(ctx, m)
	if err != nil {
		return errResponse(err)
	}
	return &Response{OK: true, Message: msg}
}
