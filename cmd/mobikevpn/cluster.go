package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/mobikevpn/mobikevpn/internal/control"
)

// cmdMove is `mobikevpn move`.
func (a *app) cmdMove(c *cli.Context) error {
	if err := a.common(c); err != nil {
		return err
	}
	if err := noArgs(c); err != nil {
		return err
	}
	req := control.MoveRequest{ToNode: c.String("to-node"), Peer: c.String("peer"), All: c.Bool("all"), Count: c.Int("count")}
	if c.IsSet("sa") {
		id := c.Uint64("sa")
		req.SA = &id
	}
	if c.IsSet("peer") && req.Peer == "" {
		return usageErr("move --peer needs an IDENTITY")
	}
	if c.IsSet("count") && req.Count <= 0 {
		return usageErr("move --count %d: a count is more than 0", req.Count)
	}
	if c.IsSet("wait") {
		if req.Wait = c.Duration("wait"); req.Wait <= 0 {
			return usageErr("move --wait %v: the wait must be more than 0", req.Wait)
		}
	}
	if _, err := req.Parse(); err != nil {
		return usageErr("%v", err)
	}
	path, err := a.controlPath(c)
	if err != nil {
		return err
	}
	cl := &control.Client{Path: path, Progress: func(m string) { fmt.Fprintln(a.stderr, m) }}
	msg, err := cl.Move(c.Context, req)
	if err != nil {
		return opErr("move", err)
	}
	if msg != "" {
		fmt.Fprintln(a.stdout, msg)
	}
	return nil
}

// cmdClusterStatus is `mobikevpn cluster status`.
func (a *app) cmdClusterStatus(c *cli.Context) error {
	if err := a.common(c); err != nil {
		return err
	}
	if err := noArgs(c); err != nil {
		return err
	}
	path, err := a.controlPath(c)
	if err != nil {
		return err
	}
	st, err := (&control.Client{Path: path}).ClusterStatus(c.Context)
	if err != nil {
		return opErr("cluster status", err)
	}
	if c.Bool("json") {
		b, err := json.MarshalIndent(st, "", "  ")
		if err != nil {
			return failed("cluster status: %v", err)
		}
		_, err = a.stdout.Write(append(b, '\n'))
		return err
	}
	fmt.Fprintf(a.stdout, "%-2s%-16s %-6s %7s  %s\n", "", "NODE", "ALIVE", "IKE SAS", "ADDRESSES")
	for _, n := range st.Nodes {
		mark := ""
		if n.Name == st.Self {
			mark = "*"
		}
		fmt.Fprintf(a.stdout, "%-2s%-16s %-6v %7d  %s\n", mark, n.Name, n.Alive, n.IKESAs, strings.Join(n.Addrs, ", "))
	}
	return nil
}
