package main

import (
	"fmt"
	"os"
	"os/exec"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/mobikevpn/mobikevpn/internal/config"
)

// cmdCheck is `mobikevpn check -c FILE`: the configuration is loaded as `run` loads
// it (every file it names read and checked: certificates, keys, CRLs, PSK files, the
// cluster's state key), then what `run` would find missing on this host (the updown
// hook runnable, nft for a kill switch) is checked too. Nothing is started, opened or
// written. Exit 0 when all is well, 2 with the same messages as run otherwise.
func (a *app) cmdCheck(c *cli.Context) error {
	if err := a.common(c); err != nil {
		return err
	}
	if err := noArgs(c); err != nil {
		return err
	}
	path, ok := flagValue(c, "config")
	if !ok {
		return usageErr("check needs the configuration: mobikevpn check -c FILE")
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	if err := checkHost(cfg); err != nil {
		return usageErr("%s: %v", path, err)
	}
	clients := 0
	for _, conn := range cfg.Connections {
		if conn.Initiator {
			clients++
		}
	}
	fmt.Fprintf(a.stdout, "%s: configuration OK: %d connections (%d initiating), %d pools, %d secrets", path,
		len(cfg.Connections), clients, len(cfg.Pools), len(cfg.Secrets))
	if cfg.Cluster != nil {
		fmt.Fprintf(a.stdout, ", cluster node %s", cfg.Cluster.Node)
	}
	fmt.Fprintln(a.stdout)
	for _, w := range cfg.Warnings {
		fmt.Fprintf(a.stderr, "warning: %s: %s\n", path, w)
	}
	return nil
}

// checkHost checks what the configuration needs of the host beyond its files.
func checkHost(cfg *config.Config) error {
	if cfg.Updown != "" {
		st, err := os.Stat(cfg.Updown)
		if err != nil {
			return fmt.Errorf("updown: %w", err)
		}
		if st.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("updown: %s is not executable", cfg.Updown)
		}
	}
	if slices.ContainsFunc(cfg.Connections, func(c *config.Connection) bool { return c.KillSwitch }) {
		if _, err := exec.LookPath("nft"); err != nil {
			return fmt.Errorf("kill_switch needs nft (nftables), which is not installed: %w", err)
		}
	}
	return nil
}
