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
	var err error
	if req.Wait, err = waitFlag(c, "move"); err != nil {
		return err
	}
	if _, err := req.Parse(); err != nil {
		return usageErr("%v", err)
	}
	return a.controlCall(c, "move", func(cl *control.Client) (string, error) { return cl.Move(c.Context, req) })
}

// cmdDrain is `mobikevpn drain`.
func (a *app) cmdDrain(c *cli.Context) error {
	if err := a.common(c); err != nil {
		return err
	}
	if err := noArgs(c); err != nil {
		return err
	}
	wait, err := waitFlag(c, "drain")
	if err != nil {
		return err
	}
	return a.controlCall(c, "drain", func(cl *control.Client) (string, error) { return cl.Drain(c.Context, wait) })
}

// cmdClusterStatus is `mobikevpn cluster status`.
func (a *app) cmdClusterStatus(c *cli.Context) error {
	path, err := a.noArgsControl(c)
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
	if st.Etcd != "" && st.Etcd != "ok" {
		fmt.Fprintf(a.stdout, "etcd: %s\n", st.Etcd)
	}
	fmt.Fprintf(a.stdout, "%-2s%-16s %-6s %-8s %7s  %s\n", "", "NODE", "ALIVE", "DRAINING", "IKE SAS", "ADDRESSES")
	for _, n := range st.Nodes {
		mark := ""
		if n.Name == st.Self {
			mark = "*"
		}
		fmt.Fprintf(a.stdout, "%-2s%-16s %-6v %-8v %7d  %s\n", mark, n.Name, n.Alive, n.Draining, n.IKESAs, strings.Join(n.Addrs, ", "))
	}
	return nil
}
