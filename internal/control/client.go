package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

// Client talks to a daemon's control socket.
type Client struct {
	Path     string
	Progress func(msg string) // receives intermediate messages; nil ignores them
}

// Do sends req and returns the final response. A response that is not OK is returned
// together with its *Error. Transport and protocol problems are other errors. The
// connection stays open until the response arrives (closing it cancels the request
// on the daemon's side); cancelling ctx abandons the request.
func (cl *Client) Do(ctx context.Context, req Request) (*Response, error) {
	body, err := json.Marshal(&req)
	if err != nil {
		return nil, err
	}
	if len(body) >= MaxRequest {
		return nil, fmt.Errorf("request larger than %d bytes", MaxRequest)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", cl.Path)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("cannot reach the daemon at %s: %v (is `mobikevpn run` running, and is --control right?)", cl.Path, unwrapOpError(err))
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if _, err := c.Write(append(body, '\n')); err != nil {
		return nil, cl.ioErr(ctx, "sending the request", err)
	}
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 0, 64<<10), MaxResponse)
	for sc.Scan() {
		var resp Response
		if err := json.Unmarshal(sc.Bytes(), &resp); err != nil {
			return nil, fmt.Errorf("malformed response from the daemon: %v", err)
		}
		if resp.Progress != "" {
			if cl.Progress != nil {
				cl.Progress(resp.Progress)
			}
			continue
		}
		return &resp, resp.Err()
	}
	if err := sc.Err(); err != nil {
		return nil, cl.ioErr(ctx, "reading the response", err)
	}
	return nil, errors.New("the daemon closed the connection without a response")
}

func (cl *Client) ioErr(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("%s to %s: %v", what, cl.Path, unwrapOpError(err))
}

func unwrapOpError(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// Status fetches the daemon's status.
func (cl *Client) Status(ctx context.Context) (*Status, error) {
	resp, err := cl.Do(ctx, Request{Cmd: CmdStatus})
	if err != nil {
		return nil, err
	}
	if resp.Status == nil {
		return nil, errors.New("the daemon's status response has no status")
	}
	return resp.Status, nil
}

// BriefStatus fetches the daemon's brief status: counts, drops and runtime, no list.
// With gc the daemon collects garbage first, so that the live heap is exact.
func (cl *Client) BriefStatus(ctx context.Context, gc bool) (*Status, error) {
	resp, err := cl.Do(ctx, Request{Cmd: CmdStatus, Brief: true, GC: gc})
	if err != nil {
		return nil, err
	}
	if resp.Status == nil {
		return nil, errors.New("the daemon's status response has no status")
	}
	return resp.Status, nil
}

// Up initiates the connection name and waits until it is established.
func (cl *Client) Up(ctx context.Context, name string) error {
	_, err := cl.Do(ctx, Request{Cmd: CmdUp, Name: name})
	return err
}

// Down deletes the connection name.
func (cl *Client) Down(ctx context.Context, name string) error {
	_, err := cl.Do(ctx, Request{Cmd: CmdDown, Name: name})
	return err
}

// Switch asks the daemon to move the selected SAs; it returns the daemon's summary.
func (cl *Client) Switch(ctx context.Context, req SwitchRequest) (string, error) {
	r := Request{Cmd: CmdSwitch, To: req.To, SA: req.SA, Peer: req.Peer, From: req.From, All: req.All}
	if req.Wait > 0 {
		r.WaitMS = max(req.Wait.Milliseconds(), 1)
	}
	resp, err := cl.Do(ctx, r)
	if err != nil {
		return "", err
	}
	return resp.Message, nil
}

// Do sends req to the socket at path; see Client.Do.
func Do(ctx context.Context, path string, req Request) (*Response, error) {
	return (&Client{Path: path}).Do(ctx, req)
}

// StatusOf fetches the status from the socket at path.
func StatusOf(ctx context.Context, path string) (*Status, error) {
	return (&Client{Path: path}).Status(ctx)
}

// BriefStatusOf fetches the brief status from the socket at path (see
// Client.BriefStatus).
func BriefStatusOf(ctx context.Context, path string, gc bool) (*Status, error) {
	return (&Client{Path: path}).BriefStatus(ctx, gc)
}

// Up asks the daemon at path to bring up the connection name.
func Up(ctx context.Context, path, name string) error {
	return (&Client{Path: path}).Up(ctx, name)
}

// Down asks the daemon at path to delete the connection name.
func Down(ctx context.Context, path, name string) error {
	return (&Client{Path: path}).Down(ctx, name)
}

// Reload asks the daemon to reload its configuration file and returns its report.
func (cl *Client) Reload(ctx context.Context) (string, error) {
	resp, err := cl.Do(ctx, Request{Cmd: CmdReload})
	if err != nil {
		return "", err
	}
	return resp.Message, nil
}
