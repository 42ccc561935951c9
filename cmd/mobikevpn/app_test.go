package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/internal/config"
	"github.com/mobikevpn/mobikevpn/internal/control"
	"github.com/mobikevpn/mobikevpn/internal/daemon"
)

// harness runs the CLI with fake environment, daemon and signals.
type harness struct {
	env map[string]string

	mu        sync.Mutex
	daemonCfg *config.Config
	daemonLog *slog.Logger
	daemonErr error
	reload    chan struct{}
	gotReload bool
}

type result struct {
	code           int
	stdout, stderr string
}

func newHarness() *harness { return &harness{env: map[string]string{}} }

func (h *harness) run(args ...string) result {
	var out, errb bytes.Buffer
	a := newApp(&out, &errb)
	a.getenv = func(k string) string { return h.env[k] }
	a.signals = func(ctx context.Context) (context.Context, <-chan struct{}, func()) {
		h.reload = make(chan struct{}, 1)
		h.reload <- struct{}{} // a SIGHUP arrived
		return ctx, h.reload, func() {}
	}
	a.runDaemon = func(ctx context.Context, cfg *config.Config, log *slog.Logger, opts daemon.Options) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.daemonCfg, h.daemonLog = cfg, log
		select {
		case <-opts.Reload:
			h.gotReload = true
		default:
		}
		return h.daemonErr
	}
	code := a.run(append([]string{"mobikevpn"}, args...))
	return result{code, out.String(), errb.String()}
}

func (r result) expect(t *testing.T, code int, stderrFrag string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit %d, want %d (stdout %q, stderr %q)", r.code, code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, stderrFrag) {
		t.Errorf("stderr %q lacks %q", r.stderr, stderrFrag)
	}
}

const goodConfig = `control: gw.sock
log_level: warn
secrets: [{ ids: [gw.example.org], psk: secret }]
connections:
  rw:
    local: { auth: psk, id: gw.example.org }
    remote: { auth: psk }
    children: { net: {} }
`

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mvcli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := filepath.Join(dir, "gw.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBadUsage(t *testing.T) {
	h := newHarness()
	tests := []struct {
		args []string
		frag string
	}{
		{nil, "missing command"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"--bogus", "status"}, "flag provided but not defined: -bogus"},
		{[]string{"status", "--bogus"}, "Run 'mobikevpn status --help'"},
		{[]string{"status", "extra"}, "status takes no arguments"},
		{[]string{"up"}, "up needs the connection NAME"},
		{[]string{"down"}, "down needs the connection NAME"},
		{[]string{"up", "a", "b"}, "up takes one connection NAME"},
		{[]string{"up", "home", "--control", "/x", "more"}, `up takes one connection NAME, got ["home" "more"]`},
		{[]string{"up", "--", "-x", "y"}, `got ["-x" "y"]`},
		{[]string{"--log-level", "loud", "status"}, `--log-level "loud": use debug, info, warn or error`},
		{[]string{"status", "--log-level", "loud"}, `--log-level "loud"`},
		{[]string{"run"}, "run needs the configuration: mobikevpn run -c FILE"},
		{[]string{"run", "-c", ""}, "-c/--config needs a file name"},
		{[]string{"version", "x"}, "version takes no arguments"},
		{[]string{"help", "nope"}, "No help topic for 'nope'"},
		{[]string{"status", "--control", ""}, "--control needs a path"},
		{[]string{"switch", "--all"}, "switch needs --to ADDR"},
		{[]string{"switch", "--to", "gw", "--all"}, `switch --to "gw": not an IP address`},
		{[]string{"switch", "--to", "192.0.2.2", "--all", "--sa", "3"}, "switch takes one selection, got --sa and --all"},
		{[]string{"switch", "--to", "192.0.2.2", "--from", "192.0.2.1", "--peer", "p"}, "got --peer and --from"},
		{[]string{"switch", "--to", "192.0.2.2", "--from", "x"}, `switch --from "x": not an IP address`},
		{[]string{"switch", "--to", "192.0.2.2", "--sa", "abc"}, "invalid value"},
		{[]string{"switch", "--to", "192.0.2.2", "--all", "--wait", "0s"}, "the wait must be more than 0"},
		{[]string{"switch", "--to", "192.0.2.2", "--all", "--wait", "soon"}, "invalid value"},
		{[]string{"switch", "--to", "192.0.2.2", "--peer", "", "--all"}, "--peer needs an IDENTITY"},
		{[]string{"switch", "--to", "192.0.2.2", "--all", "extra"}, "switch takes no arguments"},
		{[]string{"move", "--all"}, "move needs --to-node NODE"},
		{[]string{"move", "--to-node", "gw-b", "--sa", "3", "--peer", "p"}, "move takes one selection, got --sa and --peer"},
		{[]string{"move", "--to-node", "gw-b", "--count", "0"}, "move --count 0: a count is more than 0"},
		{[]string{"move", "--to-node", "gw-b", "--wait", "0s"}, "the wait must be more than 0"},
		{[]string{"move", "--to-node", "gw-b", "--sa", "0"}, "IKE SA ids start at 1"},
		{[]string{"cluster", "status", "x"}, "status takes no arguments"},
		{[]string{"drain", "x"}, "drain takes no arguments"},
		{[]string{"drain", "--wait", "0s"}, "drain --wait 0s: the wait must be more than 0"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			h.run(tc.args...).expect(t, exitUsage, tc.frag)
		})
	}
}

func TestHelpExitsZero(t *testing.T) {
	h := newHarness()
	for _, args := range [][]string{{"--help"}, {"help"}, {"status", "--help"}, {"help", "switch"}} {
		r := h.run(args...)
		if r.code != 0 || !strings.Contains(r.stdout, "mobikevpn") {
			t.Errorf("%v: exit %d, stdout %q", args, r.code, r.stdout)
		}
	}
	r := h.run("help", "switch")
	if !strings.Contains(r.stdout, "--to ADDR [--sa ID | --peer IDENTITY | --from ADDR | --all] [--wait DURATION]") {
		t.Errorf("switch help: %s", r.stdout)
	}
}

func TestConfigErrors(t *testing.T) {
	h := newHarness()
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	h.run("run", "-c", missing).expect(t, exitUsage, missing+": cannot read the configuration: no such file or directory")

	bad := writeConfig(t, "tun:\n  name: mvpn0\n  mtu: 100\n")
	for _, args := range [][]string{
		{"run", "-c", bad},
		{"-c", bad, "run"},
		{"status", "-c", bad}, // status reads control from the config
		{"--config", bad, "up", "x"},
	} {
		h.run(args...).expect(t, exitUsage, bad+":3: tun.mtu: 100 is out of range; allowed: 576..9000")
	}
	if h.daemonCfg != nil {
		t.Error("daemon started with a bad config")
	}
}

func TestRun(t *testing.T) {
	p := writeConfig(t, goodConfig)
	dir := filepath.Dir(p)
	tests := []struct {
		name        string
		args        []string
		env         string
		wantControl string
		wantLevel   slog.Level
	}{
		{"config values", []string{"run", "-c", p}, "", filepath.Join(dir, "gw.sock"), slog.LevelWarn},
		{"flags after", []string{"run", "-c", p, "--log-level", "debug", "--control", "/tmp/a.sock"}, "", "/tmp/a.sock", slog.LevelDebug},
		{"flags before", []string{"--log-level", "debug", "--control", "/tmp/a.sock", "-c", p, "run"}, "", "/tmp/a.sock", slog.LevelDebug},
		{"after wins", []string{"--log-level", "error", "run", "--log-level", "info", "--config", p}, "", filepath.Join(dir, "gw.sock"), slog.LevelInfo},
		{"env", []string{"run", "-c", p}, "/tmp/env.sock", "/tmp/env.sock", slog.LevelWarn},
		{"flag beats env", []string{"run", "-c", p, "--control", "/tmp/f.sock"}, "/tmp/env.sock", "/tmp/f.sock", slog.LevelWarn},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness()
			if tc.env != "" {
				h.env[envControl] = tc.env
			}
			r := h.run(tc.args...)
			r.expect(t, 0, "")
			cfg := h.daemonCfg
			if cfg == nil {
				t.Fatal("daemon not started")
			}
			if cfg.Path != p || cfg.Control != tc.wantControl || cfg.Connection("rw") == nil {
				t.Errorf("daemon got path %q control %q", cfg.Path, cfg.Control)
			}
			ctx := context.Background()
			if !h.daemonLog.Enabled(ctx, tc.wantLevel) || (tc.wantLevel > slog.LevelDebug && h.daemonLog.Enabled(ctx, tc.wantLevel-4)) {
				t.Errorf("logger level is not %v", tc.wantLevel)
			}
			if !h.gotReload {
				t.Error("the reload channel was not passed to the daemon")
			}
		})
	}
	// The default control socket when the config has none.
	noControl := writeConfig(t, strings.Replace(goodConfig, "control: gw.sock\n", "", 1))
	h := newHarness()
	h.run("run", "-c", noControl).expect(t, 0, "")
	if h.daemonCfg.Control != config.DefaultControl {
		t.Errorf("control %q, want the default", h.daemonCfg.Control)
	}
	// A daemon failure is exit 1 with its message.
	h = newHarness()
	h.daemonErr = errors.New("listen udp :500: address already in use")
	h.run("run", "-c", p).expect(t, exitFailed, "mobikevpn: listen udp :500: address already in use")
	// A configuration the daemon refuses when it starts (a key log folder others may
	// write to) is bad configuration: exit 2.
	h = newHarness()
	h.daemonErr = &config.Error{File: p, Key: "keylog", Msg: "key log folder /k is writable by group or others (mode 0777)"}
	h.run("run", "-c", p).expect(t, exitUsage, "mobikevpn: "+p+": keylog: key log folder /k is writable")
}

// fakeDaemon answers control requests.
type fakeDaemon struct {
	mu    sync.Mutex
	calls []string
}

func (d *fakeDaemon) Status(ctx context.Context) (*control.Status, error) {
	return &control.Status{IKESAs: []control.IKESA{{
		ID: 3, Name: "home", Role: "initiator", State: "established",
		Local: "192.0.2.10:4500", Remote: "198.51.100.1:4500", LocalID: "alice@example.org", RemoteID: "gw.example.org",
		SPIi: "8f2c", SPIr: "11aa", Proposal: "aes128gcm16-prfsha256-x25519", Mobike: true, EstablishedS: 42,
		ChildSAs: []control.ChildSA{{Name: "net", State: "installed", LocalTS: []string{"198.18.100.2/32"}, RemoteTS: []string{"0.0.0.0/0"}}},
	}}}, nil
}

func (d *fakeDaemon) Up(ctx context.Context, name string) error {
	d.mu.Lock()
	d.calls = append(d.calls, "up "+name)
	d.mu.Unlock()
	control.Progress(ctx, "initiating "+name)
	switch name {
	case "home":
		return nil
	case "nope":
		return control.UsageError("no connection named %q", name)
	}
	return errors.New("AUTHENTICATION_FAILED")
}

func (d *fakeDaemon) Down(ctx context.Context, name string) error {
	d.mu.Lock()
	d.calls = append(d.calls, "down "+name)
	d.mu.Unlock()
	return nil
}

type switchDaemon struct {
	fakeDaemon
	got control.Switch
}

func (d *switchDaemon) Switch(ctx context.Context, req control.Switch) (string, error) {
	d.got = req
	if req.To == netip.MustParseAddr("192.0.2.99") {
		return "", control.UsageError("192.0.2.99 is not a local address")
	}
	return "alice@example.org (SA 3) moved", nil
}

func serve(t *testing.T, h control.Handler) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mvcli")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "c.sock")
	srv, err := control.Listen(path, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; os.RemoveAll(dir) })
	return path
}

func TestStatus(t *testing.T) {
	d := &fakeDaemon{}
	sock := serve(t, d)
	h := newHarness()

	st, _ := d.Status(context.Background())
	wantJSON, _ := json.MarshalIndent(st, "", "  ")
	var table bytes.Buffer
	control.FormatStatus(&table, st)

	for _, args := range [][]string{
		{"status", "--json", "--control", sock},
		{"--control", sock, "status", "--json"},
	} {
		r := h.run(args...)
		r.expect(t, 0, "")
		if r.stdout != string(wantJSON)+"\n" {
			t.Errorf("%v: stdout\n%s\nwant\n%s", args, r.stdout, wantJSON)
		}
		var back control.Status
		if err := json.Unmarshal([]byte(r.stdout), &back); err != nil || back.IKESAs[0].SPIi != "8f2c" {
			t.Errorf("JSON does not decode: %v", err)
		}
		if !strings.Contains(r.stdout, `"spi_i": "8f2c"`) || !strings.Contains(r.stdout, `"peer_additional_addrs": []`) {
			t.Errorf("JSON names: %s", r.stdout)
		}
	}
	r := h.run("status", "--control", sock)
	r.expect(t, 0, "")
	if r.stdout != table.String() || !strings.Contains(r.stdout, "home #3: established, initiator, up 42s") {
		t.Errorf("table:\n%s\nwant\n%s", r.stdout, table.String())
	}

	// --brief: no list of SAs.
	r = h.run("status", "--brief", "--control", sock)
	r.expect(t, 0, "")
	if strings.Contains(r.stdout, "home #3") || !strings.Contains(r.stdout, "drops:") {
		t.Errorf("status --brief:\n%s", r.stdout)
	}
	r = h.run("status", "--brief", "--json", "--control", sock)
	r.expect(t, 0, "")
	if !strings.Contains(r.stdout, `"ike_sas": []`) {
		t.Errorf("status --brief --json:\n%s", r.stdout)
	}

	// The socket from the environment, and from the config.
	h.env[envControl] = sock
	h.run("status").expect(t, 0, "")
	delete(h.env, envControl)
	cfg := writeConfig(t, strings.Replace(goodConfig, "control: gw.sock", "control: "+sock, 1))
	h.run("status", "-c", cfg).expect(t, 0, "")
	h.run("-c", cfg, "status").expect(t, 0, "")
	// --control beats the config's.
	h.run("status", "-c", cfg, "--control", sock+".other").expect(t, exitFailed, "cannot reach the daemon at "+sock+".other")
	// Env beats the config's.
	h.env[envControl] = sock + ".env"
	h.run("status", "-c", cfg).expect(t, exitFailed, sock+".env")
}

func TestNoDaemon(t *testing.T) {
	h := newHarness()
	sock := filepath.Join(t.TempDir(), "none.sock")
	for _, args := range [][]string{{"status"}, {"up", "home"}, {"down", "home"}, {"switch", "--to", "192.0.2.1", "--all"}} {
		h.run(append(args, "--control", sock)...).expect(t, exitFailed, "cannot reach the daemon at "+sock)
	}
}

func TestUpDown(t *testing.T) {
	d := &fakeDaemon{}
	sock := serve(t, d)
	h := newHarness()
	r := h.run("up", "--control", sock, "home")
	r.expect(t, 0, "initiating home")
	if r.stdout != "connection home is up\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	h.run("--control", sock, "up", "office").expect(t, exitFailed, "mobikevpn: up office: AUTHENTICATION_FAILED")
	h.run("up", "--control", sock, "nope").expect(t, exitUsage, `up nope: no connection named "nope"`)
	r = h.run("down", "--control", sock, "home")
	r.expect(t, 0, "")
	if r.stdout != "connection home is down\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	want := []string{"up home", "up office", "up nope", "down home"}
	if strings.Join(d.calls, ",") != strings.Join(want, ",") {
		t.Errorf("calls %q, want %q", d.calls, want)
	}
}

func TestSwitch(t *testing.T) {
	// A daemon without switch support.
	sock := serve(t, &fakeDaemon{})
	h := newHarness()
	h.run("switch", "--control", sock, "--to", "192.0.2.2", "--all").expect(t, exitFailed, "switch: switch: not supported yet")

	d := &switchDaemon{}
	sock = serve(t, d)
	r := h.run("switch", "--to", "2001:db8::2", "--sa", "3", "--wait", "5s", "--control", sock)
	r.expect(t, 0, "")
	if r.stdout != "alice@example.org (SA 3) moved\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	if d.got.To != netip.MustParseAddr("2001:db8::2") || d.got.SA != 3 || d.got.Wait != 5*time.Second || d.got.All {
		t.Errorf("daemon got %+v", d.got)
	}
	h.run("--control", sock, "switch", "--to", "192.0.2.2", "--peer", "alice@example.org").expect(t, 0, "")
	if d.got.Peer != "alice@example.org" || d.got.SA != 0 || d.got.Wait != 0 {
		t.Errorf("daemon got %+v", d.got)
	}
	h.run("switch", "--control", sock, "--to", "192.0.2.2", "--from", "192.0.2.1").expect(t, 0, "")
	if d.got.From != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("daemon got %+v", d.got)
	}
	// The daemon refuses a non-local address as bad usage.
	h.run("switch", "--control", sock, "--to", "192.0.2.99", "--all").expect(t, exitUsage, "192.0.2.99 is not a local address")
}

func TestVersion(t *testing.T) {
	r := newHarness().run("version")
	r.expect(t, 0, "")
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "mobikevpn ") || !strings.HasPrefix(lines[1], "commit: ") ||
		lines[2] != "go: "+runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("version output %q", r.stdout)
	}
	bi := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123abc"}, {Key: "vcs.modified", Value: "true"},
	}}
	for _, tc := range []struct {
		ver, com         string
		bi               *debug.BuildInfo
		wantVer, wantCom string
	}{
		{"", "", nil, "dev", "unknown"},
		{"1.2.3", "feed", bi, "1.2.3", "feed"}, // -ldflags -X wins
		{"", "", bi, "dev", "0123abc-dirty"},
		{"", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.4.0"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "99"}}}, "v0.4.0", "99"},
		{"", "", &debug.BuildInfo{}, "dev", "unknown"},
	} {
		v, c := versionCommit(tc.ver, tc.com, tc.bi)
		if v != tc.wantVer || c != tc.wantCom {
			t.Errorf("versionCommit(%q, %q) = %q, %q; want %q, %q", tc.ver, tc.com, v, c, tc.wantVer, tc.wantCom)
		}
	}
	if got := versionText("1.0", "abc", nil); got != "mobikevpn 1.0\ncommit: abc\ngo: "+runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH+"\n" {
		t.Errorf("versionText %q", got)
	}
}

func TestReorderArgs(t *testing.T) {
	ca := newApp(nil, nil).cliApp()
	for _, tc := range []struct{ in, want string }{
		{"mobikevpn up home --control /s", "mobikevpn up --control /s home"},
		{"mobikevpn --control /s up home -c f --log-level=debug", "mobikevpn --control /s up -c f --log-level=debug home"},
		{"mobikevpn -c f status --json x --control /s", "mobikevpn -c f status --json --control /s x"},
		{"mobikevpn switch --all --to 192.0.2.1 --wait 5s", "mobikevpn switch --all --to 192.0.2.1 --wait 5s"},
		{"mobikevpn down -- -odd --control", "mobikevpn down -- -odd --control"},
		{"mobikevpn nope a --x", "mobikevpn nope a --x"},
		{"mobikevpn --control", "mobikevpn --control"},
		{"mobikevpn", "mobikevpn"},
	} {
		if got := strings.Join(reorderArgs(ca, strings.Fields(tc.in)), " "); got != tc.want {
			t.Errorf("reorderArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRunAppEntry(t *testing.T) {
	var out, errb bytes.Buffer
	if code := runApp([]string{"mobikevpn", "version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "mobikevpn ") {
		t.Errorf("runApp version: %d %q %q", code, out.String(), errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := runApp([]string{"mobikevpn", "nope"}, &out, &errb); code != exitUsage {
		t.Errorf("runApp nope: %d", code)
	}
}

// moveDaemon is a cluster node's control handler that records the move it was asked.
type moveDaemon struct {
	fakeDaemon
	got       control.Move
	drainWait time.Duration
	drained   bool
}

func (d *moveDaemon) Drain(ctx context.Context, wait time.Duration) (string, error) {
	if d.drained {
		return "", &control.Error{Code: control.CodeFailed, Msg: "draining: moving 1 SAs to gw-b\nnot moved: bob@example.org (SA #2): the peer supports neither R-MOBIKE (switch) nor redirects (RFC 5685): it stays"}
	}
	d.drained, d.drainWait = true, wait
	return "draining: moving 2 SAs to gw-b", nil
}

func (d *moveDaemon) Move(ctx context.Context, req control.Move) (string, error) {
	d.got = req
	if req.ToNode == "gw-x" {
		return "", control.UsageError("move --to-node gw-x: no live node of that name; live: gw-b")
	}
	return "moving 1 SAs to " + req.ToNode, nil
}

func (d *moveDaemon) ClusterStatus(ctx context.Context) (*control.ClusterStatus, error) {
	return &control.ClusterStatus{Self: "gw-a", Nodes: []control.ClusterNode{
		{Name: "gw-a", Addrs: []string{"198.51.100.1"}, Alive: true, IKESAs: 12},
		{Name: "gw-b", Addrs: []string{"198.51.100.2", "2001:db8:1::2"}, Alive: true},
	}}, nil
}

func TestMoveAndClusterStatus(t *testing.T) {
	h := newHarness()
	// A gateway that is not a cluster node.
	sock := serve(t, &fakeDaemon{})
	h.run("move", "--control", sock, "--to-node", "gw-b").expect(t, exitUsage, "not a cluster node")
	h.run("cluster", "status", "--control", sock).expect(t, exitUsage, "not a cluster node")
	h.run("drain", "--control", sock).expect(t, exitUsage, "not a cluster node")

	d := &moveDaemon{}
	sock = serve(t, d)
	r := h.run("move", "--control", sock, "--to-node", "gw-b", "--count", "5", "--wait", "3s")
	r.expect(t, 0, "")
	if r.stdout != "moving 1 SAs to gw-b\n" || d.got.Count != 5 || d.got.Wait != 3*time.Second || d.got.All {
		t.Errorf("stdout %q, daemon got %+v", r.stdout, d.got)
	}
	h.run("move", "--control", sock, "--to-node", "gw-b").expect(t, 0, "")
	if !d.got.All || d.got.Count != 0 {
		t.Errorf("no selection: daemon got %+v", d.got)
	}
	h.run("move", "--control", sock, "--to-node", "gw-x").expect(t, exitUsage, "no live node of that name")
	r = h.run("cluster", "status", "--control", sock, "--json")
	r.expect(t, 0, "")
	var st control.ClusterStatus
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.Self != "gw-a" || len(st.Nodes) != 2 || st.Nodes[0].IKESAs != 12 {
		t.Errorf("cluster status --json: %s (%v)", r.stdout, err)
	}
	for _, key := range []string{`"self": "gw-a"`, `"name": "gw-b"`, `"alive": true`, `"ike_sas": 12`, `"addrs": [`} {
		if !strings.Contains(r.stdout, key) {
			t.Errorf("cluster status --json lacks %s:\n%s", key, r.stdout)
		}
	}
	r = h.run("cluster", "status", "--control", sock)
	r.expect(t, 0, "")
	if !strings.Contains(r.stdout, "* gw-a") || !strings.Contains(r.stdout, "198.51.100.2, 2001:db8:1::2") {
		t.Errorf("cluster status:\n%s", r.stdout)
	}
	r = h.run("drain", "--control", sock, "--wait", "2s")
	r.expect(t, 0, "")
	if r.stdout != "draining: moving 2 SAs to gw-b\n" || d.drainWait != 2*time.Second {
		t.Errorf("drain: stdout %q, wait %v", r.stdout, d.drainWait)
	}
	h.run("drain", "--control", sock).expect(t, exitFailed, "not moved: bob@example.org")
}

// TestCheck: `check -c FILE` validates without starting anything: exit 0 with a
// summary, or 2 with run's message; an updown hook that cannot run is found too.
func TestCheck(t *testing.T) {
	h := newHarness()
	good := writeConfig(t, goodConfig)
	r := h.run("check", "-c", good)
	r.expect(t, exitOK, "")
	if !strings.Contains(r.stdout, good+": configuration OK: 1 connections (0 initiating)") {
		t.Errorf("check stdout %q", r.stdout)
	}
	bad := writeConfig(t, "tun:\n  name: mvpn0\n  mtu: 100\n")
	h.run("check", "-c", bad).expect(t, exitUsage, bad+":3: tun.mtu: 100 is out of range; allowed: 576..9000")
	h.run("check").expect(t, exitUsage, "check needs the configuration")
	hook := filepath.Join(t.TempDir(), "updown")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	noexec := writeConfig(t, "updown: "+hook+"\n"+goodConfig)
	h.run("check", "-c", noexec).expect(t, exitUsage, "updown: "+hook+" is not executable")
	if h.daemonCfg != nil {
		t.Error("check started the daemon")
	}
	// Legacy algorithms: valid, with a warning on stderr naming the key.
	legacy := writeConfig(t, strings.Replace(goodConfig, "    children: { net: {} }", "    proposals: [aes128-sha1-modp1024]\n    children: { net: {} }", 1))
	r = h.run("check", "-c", legacy)
	r.expect(t, exitOK, `warning: `+legacy+`: connections.rw.proposals[0]: "aes128-sha1-modp1024" uses legacy algorithms (prfsha1, sha1, modp1024)`)
	if r2 := h.run("check", "-c", good); strings.Contains(r2.stderr, "warning") {
		t.Errorf("a good configuration warns: %q", r2.stderr)
	}
}

// TestVersionFlag: --version (and -V) print what `version` prints.
func TestVersionFlag(t *testing.T) {
	want := newHarness().run("version").stdout
	for _, f := range []string{"--version", "-V"} {
		r := newHarness().run(f)
		r.expect(t, exitOK, "")
		if r.stdout != want {
			t.Errorf("%s: %q, want %q", f, r.stdout, want)
		}
	}
}

// TestLogFormat: log_format json gives one JSON object per line, text the key=value
// lines; a bad value is a configuration error naming the key.
func TestLogFormat(t *testing.T) {
	var buf bytes.Buffer
	newLogger(&buf, "json", slog.LevelInfo).Info("IKE SA established", "sa", 1, "id", "alice@example.org")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil || rec["msg"] != "IKE SA established" || rec["id"] != "alice@example.org" || rec["sa"] != float64(1) {
		t.Errorf("json log line %q: %v %v", buf.String(), rec, err)
	}
	buf.Reset()
	newLogger(&buf, "text", slog.LevelInfo).Info("IKE SA established", "sa", 1)
	if !strings.Contains(buf.String(), `msg="IKE SA established" sa=1`) {
		t.Errorf("text log line %q", buf.String())
	}
	h := newHarness()
	cfg := writeConfig(t, "log_format: json\n"+goodConfig)
	h.run("run", "-c", cfg).expect(t, exitOK, "")
	if h.daemonCfg == nil || h.daemonCfg.LogFormat != "json" {
		t.Fatalf("daemon config: %+v", h.daemonCfg)
	}
	bad := writeConfig(t, "log_format: xml\n"+goodConfig)
	h.run("check", "-c", bad).expect(t, exitUsage, "log_format")
}

// reloadingDaemon answers reload requests: a report, or a refused file.
type reloadingDaemon struct {
	fakeDaemon
	refuse bool
}

func (d *reloadingDaemon) Reload(context.Context) (string, error) {
	if d.refuse {
		return "", errors.New("reload failed; the running configuration stays: gw.yaml:3: tun.mtu: 100 is out of range")
	}
	return "reloaded gw.yaml\nneeds a restart to take effect (the old values stay in force): tun", nil
}

// TestReload: `mobikevpn reload` prints the daemon's report (exit 0), or its refusal
// of the new file (exit 1).
func TestReload(t *testing.T) {
	d := &reloadingDaemon{}
	sock := serve(t, d)
	h := newHarness()
	r := h.run("reload", "--control", sock)
	r.expect(t, exitOK, "")
	if !strings.Contains(r.stdout, "needs a restart to take effect (the old values stay in force): tun") {
		t.Errorf("reload stdout %q", r.stdout)
	}
	d.refuse = true
	h.run("reload", "--control", sock).expect(t, exitFailed, "reload: reload failed; the running configuration stays: gw.yaml:3")
	h.run("reload", "extra", "--control", sock).expect(t, exitUsage, "")
}
