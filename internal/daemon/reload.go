package daemon

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/mobikevpn/mobikevpn/internal/config"
)

// Reloading the configuration (SIGHUP, `mobikevpn reload`): new SAs use the new
// connections, pools, secrets and IKE settings at once, established SAs keep theirs;
// a new connection with start_action: start is started; the kill switch follows the
// new selectors. What the daemon opened at start (the TUN device, the ports, the
// control socket, the metrics endpoint, the datapath's workers, the cluster's etcd
// session, the logger, the updown hook) keeps its old settings until a restart, and
// the report says so.

// Reload implements control.Reloader.
func (d *daemon) Reload(ctx context.Context) (string, error) {
	var msg string
	var rerr error
	if err := d.run(ctx, func(now time.Time) { msg, rerr = d.reloadNow(now) }); err != nil {
		return "", err
	}
	if rerr != nil {
		// Exit 1 for `mobikevpn reload` (interface.md): the request was fine, the file not.
		return "", fmt.Errorf("reload failed; the running configuration stays: %w", rerr)
	}
	return msg, nil
}

// reload is SIGHUP's: it logs what Reload would report.
func (d *daemon) reload() {
	now := time.Now()
	if d.clock != nil {
		now = d.clock.Now()
	}
	msg, err := d.reloadNow(now)
	if err != nil {
		d.log.Error("reload failed; keeping the running configuration", "err", err)
		return
	}
	d.log.Info("configuration reloaded", "file", d.cfg.Path, "report", msg)
}

// reloadNow loads the file again and applies it (engine goroutine).
func (d *daemon) reloadNow(now time.Time) (string, error) {
	cfg, err := config.Load(d.cfg.Path)
	if err != nil {
		return "", err
	}
	for _, w := range cfg.Warnings {
		d.log.Warn("configuration: " + w)
	}
	icfg, err := ikeConfig(cfg)
	if err != nil {
		return "", err
	}
	useKeylog, err := d.reloadKeylog(cfg)
	if err != nil {
		return "", err
	}
	if err := d.engine.Reload(icfg); err != nil {
		return "", err
	}
	useKeylog()
	old := d.cfg
	d.cfg = cfg
	applied, restart := configChanges(old, cfg)
	var started []string
	for _, c := range cfg.Connections {
		if c.StartAction == "start" && !startedBefore(old, c.Name) {
			started = append(started, c.Name)
		}
	}
	if len(started) > 0 {
		d.apply(d.engine.StartConns(now, started))
	}
	if ks := d.killSwitchReload(old); ks != "" {
		restart = append(restart, ks)
	}
	return reloadReport(cfg.Path, applied, restart, started), nil
}

// startedBefore reports whether the old configuration started connection name itself.
func startedBefore(old *config.Config, name string) bool {
	c := old.Connection(name)
	return c != nil && c.StartAction == "start"
}

// configChanges lists what differs between old and cfg: what the reload applied, and
// what needs a restart.
func configChanges(old, cfg *config.Config) (applied, restart []string) {
	restartKeys := []struct {
		key  string
		a, b any
	}{
		{"tun", old.TUN, cfg.TUN}, {"ports", old.Ports, cfg.Ports}, {"control", old.Control, cfg.Control},
		{"log_level", old.LogLevel, cfg.LogLevel}, {"log_format", old.LogFormat, cfg.LogFormat},
		{"metrics", old.Metrics, cfg.Metrics}, {"datapath", old.Datapath, cfg.Datapath},
		{"updown", old.Updown, cfg.Updown}, {"cluster", old.Cluster, cfg.Cluster}, {"radius", old.Radius, cfg.Radius},
	}
	for _, k := range restartKeys {
		if !reflect.DeepEqual(k.a, k.b) {
			restart = append(restart, k.key)
		}
	}
	var added, removed, changed []string
	for _, c := range cfg.Connections {
		switch o := old.Connection(c.Name); {
		case o == nil:
			added = append(added, c.Name)
		case !reflect.DeepEqual(o, c):
			changed = append(changed, c.Name)
		}
	}
	for _, o := range old.Connections {
		if cfg.Connection(o.Name) == nil {
			removed = append(removed, o.Name)
		}
	}
	for _, l := range []struct {
		what  string
		names []string
	}{{"connections added", added}, {"connections removed", removed}, {"connections changed", changed}} {
		if len(l.names) > 0 {
			applied = append(applied, l.what+" "+strings.Join(l.names, ", "))
		}
	}
	for _, k := range []struct {
		key  string
		a, b any
	}{
		{"pools", old.Pools, cfg.Pools}, {"secrets", old.Secrets, cfg.Secrets}, {"keylog", old.Keylog, cfg.Keylog},
		{"IKE settings (cookies, half-open limits, retransmission, fragments, pre-auth memory)",
			[]any{old.CookieThreshold, old.HalfOpenTimeout, old.Retransmit, old.FragmentSize, old.BlockThreshold, old.HalfOpenLimit, old.BlockIPv6Prefix, old.PreauthMemory},
			[]any{cfg.CookieThreshold, cfg.HalfOpenTimeout, cfg.Retransmit, cfg.FragmentSize, cfg.BlockThreshold, cfg.HalfOpenLimit, cfg.BlockIPv6Prefix, cfg.PreauthMemory}},
	} {
		if !reflect.DeepEqual(k.a, k.b) {
			applied = append(applied, k.key)
		}
	}
	return applied, restart
}

// killSwitchReload makes the kill switch block what the new configuration asks; it
// returns what needs a restart instead ("" when nothing).
func (d *daemon) killSwitchReload(old *config.Config) string {
	oldP, oldL := killSwitchPrefixes(old)
	newP, newL := killSwitchPrefixes(d.cfg)
	if slices.Equal(oldP, newP) && oldL == newL {
		return ""
	}
	ks := d.deps.KillSwitch
	if ks == nil {
		return "kill_switch (it was off at start)"
	}
	if len(newP) == 0 {
		if err := ks.Remove(); err != nil {
			d.log.Warn("removing the kill switch", "err", err)
		}
		d.client.killOn = false
		d.log.Info("kill switch off")
		return ""
	}
	if err := ks.Block(d.devNm, newP, newL); err != nil {
		d.log.Error("kill switch: the new selectors", "err", err)
		return ""
	}
	d.client.killOn = true
	d.log.Info("kill switch now blocks", "prefixes", newP)
	return ""
}

// reloadReport says what a reload did.
func reloadReport(path string, applied, restart, started []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "reloaded %s", path)
	if len(applied) == 0 && len(restart) == 0 && len(started) == 0 {
		b.WriteString(": no changes")
		return b.String()
	}
	if len(applied) > 0 {
		fmt.Fprintf(&b, "\napplied (new SAs use them; established SAs keep theirs): %s", strings.Join(applied, "; "))
	}
	if len(started) > 0 {
		fmt.Fprintf(&b, "\nstarted (start_action: start): %s", strings.Join(started, ", "))
	}
	if len(restart) > 0 {
		fmt.Fprintf(&b, "\nneeds a restart to take effect (the old values stay in force): %s", strings.Join(restart, ", "))
	}
	return b.String()
}
