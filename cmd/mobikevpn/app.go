package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mobikevpn/mobikevpn/internal/config"
	"github.com/mobikevpn/mobikevpn/internal/control"
	"github.com/mobikevpn/mobikevpn/internal/daemon"
	"github.com/mobikevpn/mobikevpn/internal/system"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // the operation failed
	exitUsage  = 2 // bad usage or bad configuration
)

// envControl names the control socket when --control is not given.
const envControl = "MOBIKEVPN_CONTROL"

// envCPUProfile names a file that `run` writes a CPU profile of the daemon to (for
// developers: go tool pprof).
const envCPUProfile = "MOBIKEVPN_CPUPROFILE"

// exitError carries an exit code and the message to print (if any).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func usageErr(format string, args ...any) error {
	return &exitError{code: exitUsage, msg: fmt.Sprintf(format, args...)}
}

func failed(format string, args ...any) error {
	return &exitError{code: exitFailed, msg: fmt.Sprintf(format, args...)}
}

// app is the CLI with its I/O and the daemon entry point injected.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	runDaemon      func(ctx context.Context, cfg *config.Config, log *slog.Logger, opts daemon.Options) error
	// signals returns a context cancelled on SIGINT/SIGTERM and a channel fed by
	// SIGHUP; tests replace it.
	signals func(ctx context.Context) (context.Context, <-chan struct{}, func())
}

func newApp(stdout, stderr io.Writer) *app {
	return &app{stdout: stdout, stderr: stderr, getenv: os.Getenv, signals: osSignals, runDaemon: system.Run}
}

// runApp runs the CLI on args (args[0] is the program name) and returns the exit code.
func runApp(args []string, stdout, stderr io.Writer) int {
	return newApp(stdout, stderr).run(args)
}

// osSignals: SIGINT and SIGTERM cancel the context, SIGHUP asks for a reload.
func osSignals(ctx context.Context) (context.Context, <-chan struct{}, func()) {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-hup:
				select {
				case reload <- struct{}{}:
				default: // a reload is already pending
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return ctx, reload, func() {
		signal.Stop(hup)
		stop()
		<-done
	}
}

// run executes the CLI and maps every outcome to an exit code.
func (a *app) run(args []string) int {
	ca := a.cliApp()
	err := ca.RunContext(context.Background(), reorderArgs(ca, args))
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintf(a.stderr, "mobikevpn: %s\n", ee.msg)
		}
		return ee.code
	}
	// Anything else comes from urfave/cli itself: usage problems.
	fmt.Fprintf(a.stderr, "mobikevpn: %v\nRun 'mobikevpn --help' for usage.\n", err)
	return exitUsage
}

// reorderArgs moves a command's flags before its positional arguments, so that
// "up NAME --control PATH" works as "up --control PATH NAME" (Go's flag parsing stops
// at the first positional argument). Arguments after "--" stay positional.
func reorderArgs(ca *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	takesValue := func(flags []cli.Flag, name string) bool {
		for _, f := range flags {
			for _, n := range f.Names() {
				if n == name {
					_, isBool := f.(*cli.BoolFlag)
					return !isBool
				}
			}
		}
		return false
	}
	isFlag := func(s string) bool { return len(s) > 1 && s[0] == '-' && s != "--" }
	flagName := func(s string) (string, bool) {
		name, _, hasValue := strings.Cut(strings.TrimLeft(s, "-"), "=")
		return name, hasValue
	}
	// Skip the flags before the command name.
	i := 1
	for i < len(args) && isFlag(args[i]) {
		name, inline := flagName(args[i])
		i++
		if !inline && takesValue(ca.Flags, name) && i < len(args) {
			i++
		}
	}
	if i >= len(args) {
		return args
	}
	var cmd *cli.Command
	for _, c := range ca.Commands {
		if c.HasName(args[i]) {
			cmd = c
		}
	}
	if cmd == nil {
		return args
	}
	// A command with subcommands: its subcommand's flags are the ones to move.
	if len(cmd.Subcommands) > 0 && i+1 < len(args) {
		for _, sc := range cmd.Subcommands {
			if sc.HasName(args[i+1]) {
				cmd = sc
				i++
				break
			}
		}
	}
	out := append([]string(nil), args[:i+1]...)
	var positional []string
	rest := args[i+1:]
	for j := 0; j < len(rest); j++ {
		s := rest[j]
		switch {
		case s == "--":
			positional = append(positional, rest[j+1:]...)
			j = len(rest)
		case isFlag(s):
			out = append(out, s)
			if name, inline := flagName(s); !inline && takesValue(cmd.Flags, name) && j+1 < len(rest) {
				j++
				out = append(out, rest[j])
			}
		default:
			positional = append(positional, s)
		}
	}
	for _, p := range positional {
		if strings.HasPrefix(p, "-") {
			out = append(out, "--")
			break
		}
	}
	return append(out, positional...)
}

// commonFlags are accepted before and after the command name.
func commonFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "configuration `FILE`"},
		&cli.StringFlag{Name: "control", Usage: "control socket `PATH` (env " + envControl + "; default: the config's control, else " + config.DefaultControl + ")"},
		&cli.StringFlag{Name: "log-level", Usage: "`LEVEL`: debug, info, warn or error (default: the config's log_level, else info)"},
	}
}

func (a *app) cliApp() *cli.App {
	onUsage := func(c *cli.Context, err error, isSubcommand bool) error {
		hint := "mobikevpn --help"
		if isSubcommand && c.Command != nil {
			hint = "mobikevpn " + c.Command.Name + " --help"
		}
		return usageErr("%v\nRun '%s' for usage.", err, hint)
	}
	cmd := func(c *cli.Command) *cli.Command {
		c.Flags = append(commonFlags(), c.Flags...)
		c.OnUsageError = onUsage
		return c
	}
	return &cli.App{
		Name:           "mobikevpn",
		Usage:          "userspace IKEv2/IPsec VPN with MOBIKE",
		Version:        versionString(),
		HideVersion:    true,
		Writer:         a.stdout,
		ErrWriter:      a.stderr,
		Flags:          append(commonFlags(), &cli.BoolFlag{Name: "version", Aliases: []string{"V"}, Usage: "print version, commit and Go version"}),
		OnUsageError:   onUsage,
		ExitErrHandler: func(*cli.Context, error) {}, // never os.Exit inside the library
		Action: func(c *cli.Context) error {
			if c.Bool("version") && c.NArg() == 0 {
				fmt.Fprint(a.stdout, versionText(version, commit, buildInfo()))
				return nil
			}
			if c.NArg() > 0 {
				return usageErr("unknown command %q; commands: run, check, reload, status, up, down, switch, pki, completion, man, version\nRun 'mobikevpn --help' for usage.", c.Args().First())
			}
			return usageErr("missing command; commands: run, check, reload, status, up, down, switch, pki, completion, man, version\nRun 'mobikevpn --help' for usage.")
		},
		Commands: []*cli.Command{
			cmd(&cli.Command{
				Name:      "run",
				Usage:     "run the daemon in the foreground",
				ArgsUsage: " ",
				Action:    a.cmdRun,
			}),
			cmd(&cli.Command{
				Name:      "check",
				Usage:     "validate the configuration and everything it references, start nothing (exit 0 or 2)",
				ArgsUsage: " ",
				Action:    a.cmdCheck,
			}),
			cmd(&cli.Command{
				Name:      "reload",
				Usage:     "ask the running daemon to reload its configuration file (as SIGHUP) and print what changed and what needs a restart",
				ArgsUsage: " ",
				Action:    a.cmdReload,
			}),
			cmd(&cli.Command{
				Name:      "status",
				Usage:     "show the IKE SAs and Child SAs of the running daemon",
				ArgsUsage: " ",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"},
					&cli.BoolFlag{Name: "brief", Usage: "counts and drop counters only, no list of SAs (cheap on a gateway with many)"}},
				Action: a.cmdStatus,
			}),
			cmd(&cli.Command{
				Name:      "up",
				Usage:     "initiate connection NAME and wait until it is established",
				ArgsUsage: "NAME",
				Action:    func(c *cli.Context) error { return a.cmdUpDown(c, true) },
			}),
			cmd(&cli.Command{
				Name:      "down",
				Usage:     "delete connection NAME",
				ArgsUsage: "NAME",
				Action:    func(c *cli.Context) error { return a.cmdUpDown(c, false) },
			}),
			cmd(&cli.Command{
				Name:      "switch",
				Usage:     "ask peers to move their SAs to local address ADDR (responder, R-MOBIKE)",
				UsageText: "mobikevpn switch --to ADDR [--sa ID | --peer IDENTITY | --from ADDR | --all] [--wait DURATION] (no selection: all SAs)",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "to", Usage: "the local `ADDR` to move to"},
					&cli.Uint64Flag{Name: "sa", Usage: "select the IKE SA with this `ID`"},
					&cli.StringFlag{Name: "peer", Usage: "select the SAs of the peer with this `IDENTITY`"},
					&cli.StringFlag{Name: "from", Usage: "select the SAs on local address `ADDR`"},
					&cli.BoolFlag{Name: "all", Usage: "select every SA"},
					&cli.DurationFlag{Name: "wait", Usage: "wait up to `DURATION` for the peers to move"},
				},
				Action: a.cmdSwitch,
			}),
			cmd(&cli.Command{
				Name:      "move",
				Usage:     "hand SAs to another node of the gateway cluster; their peers are asked to switch there",
				UsageText: "mobikevpn move --to-node NODE [--sa ID | --peer IDENTITY | --all | --count N] [--wait DURATION] (no selection: all SAs)",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "to-node", Usage: "the cluster `NODE` to move to"},
					&cli.Uint64Flag{Name: "sa", Usage: "select the IKE SA with this `ID`"},
					&cli.StringFlag{Name: "peer", Usage: "select the SAs of the peer with this `IDENTITY`"},
					&cli.BoolFlag{Name: "all", Usage: "select every SA"},
					&cli.IntFlag{Name: "count", Usage: "select the first `N` SAs"},
					&cli.DurationFlag{Name: "wait", Usage: "wait up to `DURATION` for the peers to arrive there"},
				},
				Action: a.cmdMove,
			}),
			cmd(&cli.Command{
				Name:      "drain",
				Usage:     "stop new IKE SAs on this cluster node and move every SA to the other live nodes, least loaded first",
				UsageText: "mobikevpn drain [--wait DURATION]",
				Flags: []cli.Flag{
					&cli.DurationFlag{Name: "wait", Usage: "wait up to `DURATION` for the peers to arrive at the other nodes"},
				},
				Action: a.cmdDrain,
			}),
			cmd(&cli.Command{
				Name:  "cluster",
				Usage: "the gateway cluster",
				Subcommands: []*cli.Command{cmd(&cli.Command{
					Name:      "status",
					Usage:     "show the cluster's live nodes: name, addresses, IKE SAs (this node marked)",
					ArgsUsage: " ",
					Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
					Action:    a.cmdClusterStatus,
				})},
			}),
			cmd(&cli.Command{
				Name:  "bench",
				Usage: "load generators for tests",
				Subcommands: []*cli.Command{cmd(&cli.Command{
					Name:      "handshake",
					Usage:     "establish many IKE SAs (or flood IKE_SA_INIT) against a gateway from many source addresses",
					UsageText: "mobikevpn bench handshake --target ADDR[:PORT] --sources PREFIX (--count N [--concurrency C] [--vip] [--rmobike] [--hold D] [--dpd D [--reconnect ADDRS]] | --flood --rate R --duration D) [--psk SECRET] [--json]",
					Flags: []cli.Flag{
						&cli.StringFlag{Name: "target", Usage: "the gateway `ADDR[:PORT]` (port 500 by default)"},
						&cli.StringFlag{Name: "sources", Usage: "`PREFIX` of source addresses the host accepts (e.g. an AnyIP route)"},
						&cli.IntFlag{Name: "count", Usage: "`N` IKE SAs to establish, each with a Child SA"},
						&cli.IntFlag{Name: "concurrency", Value: 50, Usage: "handshakes in flight"},
						&cli.StringFlag{Name: "psk", Usage: "the pre-shared key"},
						&cli.StringFlag{Name: "remote-id", Value: "%any", Usage: "the gateway's `IDENTITY`"},
						&cli.StringFlag{Name: "id-prefix", Value: "client", Usage: "client identities are `PREFIX`<n>@bench.example.org"},
						&cli.StringFlag{Name: "proposal", Value: "aes128gcm16-prfsha256-x25519", Usage: "IKE `PROPOSAL`"},
						&cli.StringFlag{Name: "esp", Value: "aes128gcm16", Usage: "ESP `PROPOSAL`"},
						&cli.BoolFlag{Name: "vip", Usage: "ask for a virtual IPv4 address"},
						&cli.BoolFlag{Name: "rmobike", Usage: "MOBIKE with R-MOBIKE: follow the gateway's switch requests"},
						&cli.DurationFlag{Name: "hold", Usage: "keep the SAs for `DURATION`, then delete them"},
						&cli.DurationFlag{Name: "dpd", Usage: "the clients check the gateway's liveness after `DURATION` of silence"},
						&cli.StringFlag{Name: "reconnect", Usage: "`ADDRS` (comma-separated): a client whose SA died starts a new one with one of these gateways"},
						&cli.BoolFlag{Name: "flood", Usage: "send only IKE_SA_INIT requests, keep no state"},
						&cli.IntFlag{Name: "rate", Usage: "flood: requests per second"},
						&cli.DurationFlag{Name: "duration", Usage: "flood: for how long"},
						&cli.BoolFlag{Name: "echo-cookies", Usage: "flood: answer COOKIE demands"},
						&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
					},
					Action: a.cmdBenchHandshake,
				})},
			}),
			a.pkiCommand(cmd),
			a.completionCommand(cmd),
			a.manCommand(cmd),
			cmd(&cli.Command{
				Name:      "version",
				Usage:     "print version, commit and Go version",
				ArgsUsage: " ",
				Action: func(c *cli.Context) error {
					if err := a.common(c); err != nil {
						return err
					}
					if c.NArg() > 0 {
						return usageErr("version takes no arguments")
					}
					fmt.Fprint(a.stdout, versionText(version, commit, buildInfo()))
					return nil
				},
			}),
		},
	}
}

// flagValue returns a common flag's value, from after the command name first, then from
// before it.
func flagValue(c *cli.Context, name string) (string, bool) {
	for _, cc := range c.Lineage() {
		if cc.IsSet(name) {
			return cc.String(name), true
		}
	}
	return "", false
}

// common validates the common flags shared by all commands.
func (a *app) common(c *cli.Context) error {
	if lvl, ok := flagValue(c, "log-level"); ok {
		if _, err := parseLevel(lvl); err != nil {
			return err
		}
	}
	if p, ok := flagValue(c, "config"); ok && p == "" {
		return usageErr("-c/--config needs a file name")
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	switch s {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, usageErr("--log-level %q: use debug, info, warn or error", s)
}

// loadConfig loads the config named by -c; bad configuration is a usage error.
func loadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, usageErr("%v", err)
	}
	return cfg, nil
}

// controlPath: --control, else $MOBIKEVPN_CONTROL, else the config's control (when -c
// is given), else the default.
func (a *app) controlPath(c *cli.Context) (string, error) {
	if p, ok := flagValue(c, "control"); ok {
		if p == "" {
			return "", usageErr("--control needs a path")
		}
		return p, nil
	}
	if p := a.getenv(envControl); p != "" {
		return p, nil
	}
	if path, ok := flagValue(c, "config"); ok {
		cfg, err := loadConfig(path)
		if err != nil {
			return "", err
		}
		if cfg.Control != "" {
			return cfg.Control, nil
		}
	}
	return config.DefaultControl, nil
}

func noArgs(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageErr("%s takes no arguments, got %q", c.Command.Name, c.Args().Slice())
	}
	return nil
}

func (a *app) cmdRun(c *cli.Context) error {
	if err := a.common(c); err != nil {
		return err
	}
	if err := noArgs(c); err != nil {
		return err
	}
	path, ok := flagValue(c, "config")
	if !ok {
		return usageErr("run needs the configuration: mobikevpn run -c FILE")
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	if lvl, ok := flagValue(c, "log-level"); ok {
		cfg.LogLevel = lvl
	}
	level, err := parseLevel(cfg.LogLevel)
	if err != nil {
		return err
	}
	if p, ok := flagValue(c, "control"); ok {
		cfg.Control = p
	} else if p := a.getenv(envControl); p != "" {
		cfg.Control = p
	}
	if cfg.Control == "" {
		cfg.Control = config.DefaultControl
	}
	log := newLogger(a.stderr, cfg.LogFormat, level)
	for _, w := range cfg.Warnings {
		log.Warn("configuration: " + w)
	}
	ctx, reload, stop := a.signals(c.Context)
	defer stop()
	if path := a.getenv(envCPUProfile); path != "" {
		// For developers: where the daemon's CPU goes (go tool pprof).
		f, err := os.Create(path)
		if err != nil {
			return failed("%s: %v", envCPUProfile, err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return failed("%s: %v", envCPUProfile, err)
		}
		defer pprof.StopCPUProfile()
	}
	opts := daemon.Options{Reload: reload}
	if n := newNotifier(a.getenv("NOTIFY_SOCKET"), monotonic); n != nil { // sdnotify.go
		opts.Notify = func(state string) {
			if err := n.notify(state); err != nil {
				log.Warn("telling the service manager", "state", state, "err", err)
			}
		}
		opts.Watchdog = watchdogInterval(a.getenv("WATCHDOG_USEC"), a.getenv("WATCHDOG_PID"), os.Getpid())
	}
	if err := a.runDaemon(ctx, cfg, log, opts); err != nil {
		// What the daemon refuses of the configuration when it starts (e.g. the key log
		// folder's permissions) is bad configuration too.
		var ce *config.Error
		if errors.As(err, &ce) {
			return usageErr("%v", err)
		}
		return failed("%v", err)
	}
	return nil
}

// opErr maps a control error to an exit code: the daemon's code, else 1.
func opErr(what string, err error) error {
	code := exitFailed
	var ce *control.Error
	if errors.As(err, &ce) && ce.Code == control.CodeUsage {
		code = exitUsage
	}
	return &exitError{code: code, msg: what + ": " + err.Error()}
}

func (a *app) cmdStatus(c *cli.Context) error {
	path, err := a.noArgsControl(c)
	if err != nil {
		return err
	}
	var st *control.Status
	if c.Bool("brief") {
		st, err = control.BriefStatusOf(c.Context, path, false)
	} else {
		st, err = control.StatusOf(c.Context, path)
	}
	if err != nil {
		return opErr("status", err)
	}
	if c.Bool("json") {
		b, err := json.MarshalIndent(st, "", "  ")
		if err != nil {
			return failed("status: %v", err)
		}
		_, err = a.stdout.Write(append(b, '\n'))
		return err
	}
	if c.Bool("brief") {
		return control.FormatBrief(a.stdout, st)
	}
	return control.FormatStatus(a.stdout, st)
}

func (a *app) cmdUpDown(c *cli.Context, up bool) error {
	if err := a.common(c); err != nil {
		return err
	}
	verb := c.Command.Name
	switch {
	case c.NArg() == 0:
		return usageErr("%s needs the connection NAME: mobikevpn %s NAME", verb, verb)
	case c.NArg() > 1:
		return usageErr("%s takes one connection NAME, got %q", verb, c.Args().Slice())
	}
	name := c.Args().First()
	path, err := a.controlPath(c)
	if err != nil {
		return err
	}
	cl := &control.Client{Path: path, Progress: func(m string) { fmt.Fprintln(a.stderr, m) }}
	if up {
		err = cl.Up(c.Context, name)
	} else {
		err = cl.Down(c.Context, name)
	}
	if err != nil {
		return opErr(verb+" "+name, err)
	}
	if up {
		fmt.Fprintf(a.stdout, "connection %s is up\n", name)
	} else {
		fmt.Fprintf(a.stdout, "connection %s is down\n", name)
	}
	return nil
}

func (a *app) cmdSwitch(c *cli.Context) error {
	if err := a.common(c); err != nil {
		return err
	}
	if err := noArgs(c); err != nil {
		return err
	}
	req := control.SwitchRequest{To: c.String("to")}
	if c.IsSet("sa") {
		id := c.Uint64("sa")
		req.SA = &id
	}
	if c.IsSet("peer") {
		if req.Peer = c.String("peer"); req.Peer == "" {
			return usageErr("switch --peer needs an IDENTITY")
		}
	}
	req.From = c.String("from")
	req.All = c.IsSet("all") && c.Bool("all")
	if req.SA == nil && req.Peer == "" && req.From == "" && !req.All {
		// interface.md: the selection is optional; without one, every SA is selected.
		req.All = true
	}
	var err error
	if req.Wait, err = waitFlag(c, "switch"); err != nil {
		return err
	}
	if _, err := req.Parse(); err != nil {
		return usageErr("%v", err)
	}
	return a.controlCall(c, "switch", func(cl *control.Client) (string, error) { return cl.Switch(c.Context, req) })
}

// waitFlag reads the --wait flag of command name: more than 0 when given, 0 when not.
func waitFlag(c *cli.Context, name string) (time.Duration, error) {
	if !c.IsSet("wait") {
		return 0, nil
	}
	w := c.Duration("wait")
	if w <= 0 {
		return 0, usageErr("%s --wait %v: the wait must be more than 0", name, w)
	}
	return w, nil
}

// controlCall runs command name against the daemon with call, progress to stderr, and
// prints the daemon's summary.
func (a *app) controlCall(c *cli.Context, name string, call func(cl *control.Client) (string, error)) error {
	path, err := a.controlPath(c)
	if err != nil {
		return err
	}
	msg, err := call(&control.Client{Path: path, Progress: func(m string) { fmt.Fprintln(a.stderr, m) }})
	if err != nil {
		return opErr(name, err)
	}
	if msg != "" {
		fmt.Fprintln(a.stdout, msg)
	}
	return nil
}

func buildInfo() *debug.BuildInfo {
	bi, _ := debug.ReadBuildInfo()
	return bi
}

func versionString() string {
	v, _ := versionCommit(version, commit, buildInfo())
	return v
}

// versionCommit fills in what -ldflags did not set from the build information.
func versionCommit(ver, com string, bi *debug.BuildInfo) (string, string) {
	if ver == "" && bi != nil && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		ver = bi.Main.Version
	}
	if ver == "" {
		ver = "dev"
	}
	if com == "" && bi != nil {
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				com = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if com != "" && dirty {
			com += "-dirty"
		}
	}
	if com == "" {
		com = "unknown"
	}
	return ver, com
}

func versionText(ver, com string, bi *debug.BuildInfo) string {
	ver, com = versionCommit(ver, com, bi)
	return fmt.Sprintf("mobikevpn %s\ncommit: %s\ngo: %s %s/%s\n", ver, com, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// newLogger is the daemon's logger: log_format text (the default) or json, one
// record per line on w.
func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// cmdReload is `mobikevpn reload`: exit 0 with the daemon's report, 1 when the new
// file is refused (the old configuration stays in force).
func (a *app) cmdReload(c *cli.Context) error {
	path, err := a.noArgsControl(c)
	if err != nil {
		return err
	}
	msg, err := (&control.Client{Path: path}).Reload(c.Context)
	if err != nil {
		return opErr("reload", err)
	}
	fmt.Fprintln(a.stdout, msg)
	return nil
}

// noArgsControl is the start of a command that takes no arguments and talks to the
// daemon: the common flags, no arguments, the control socket's path.
func (a *app) noArgsControl(c *cli.Context) (string, error) {
	if err := a.common(c); err != nil {
		return "", err
	}
	if err := noArgs(c); err != nil {
		return "", err
	}
	return a.controlPath(c)
}
