package hostdns

import (
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// call is one command a fake host ran.
type call struct {
	stdin string
	argv  string // name and arguments, space-separated
}

// fakeHost stands for the commands found and run.
type fakeHost struct {
	mu       sync.Mutex
	commands []string          // the commands LookPath finds, in /usr/bin
	outputs  map[string]string // output of an argv
	fail     map[string]error  // failure of an argv (by prefix)
	calls    []call            // since the last takeCalls
	all      []call
}

func (h *fakeHost) lookPath(name string) (string, error) {
	if slices.Contains(h.commands, name) {
		return "/usr/bin/" + name, nil
	}
	return "", exec.ErrNotFound
}

func (h *fakeHost) run(stdin []byte, name string, args ...string) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	argv := strings.Join(append([]string{name}, args...), " ")
	h.calls = append(h.calls, call{string(stdin), argv})
	h.all = append(h.all, call{string(stdin), argv})
	for prefix, err := range h.fail {
		if strings.HasPrefix(argv, prefix) {
			return []byte("it failed"), err
		}
	}
	return []byte(h.outputs[argv]), nil
}

// takeCalls returns the commands run since the last call, and forgets them.
func (h *fakeHost) takeCalls() []call {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.calls
	h.calls = nil
	return c
}

// argvs are the calls' command lines.
func argvs(calls []call) []string {
	var out []string
	for _, c := range calls {
		out = append(out, c.argv)
	}
	return out
}

// newCommandManager returns a Manager on h, with systemd-resolved running when
// resolved, and the names of its files (none exists: the command backends touch none).
func newCommandManager(t *testing.T, h *fakeHost, resolved bool) (*Manager, string) {
	t.Helper()
	dir := t.TempDir()
	rdir := filepath.Join(dir, "resolve")
	if err := os.Mkdir(rdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if resolved {
		if err := os.WriteFile(filepath.Join(rdir, "io.systemd.Resolve"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "resolv.conf")
	m := New(Options{ResolvConf: conf, ResolvedDir: rdir, LookPath: h.lookPath, Run: h.run, Log: testLog(t)})
	m.linkExists = func(string) bool { return false }
	return m, conf
}

func assertCalls(t *testing.T, h *fakeHost, want ...string) {
	t.Helper()
	if got := argvs(h.takeCalls()); !slices.Equal(got, want) {
		t.Fatalf("commands run:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func assertNoFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s: %v, want no file", path, err)
	}
}

var (
	srv4 = netip.MustParseAddr("198.18.0.53")
	srv6 = netip.MustParseAddr("2001:db8::53")
	srv3 = netip.MustParseAddr("198.18.0.54")
)

func TestResolvedApplyReplaceRevert(t *testing.T) {
	h := &fakeHost{commands: []string{"resolvectl", "resolvconf"}}
	m, conf := newCommandManager(t, h, true)
	if b := m.Backend(); b != "resolved" {
		t.Fatalf("Backend() = %q, want resolved", b)
	}
	assertCalls(t, h) // choosing it runs nothing

	if err := m.Apply("tun0", []netip.Addr{srv4, srv6, srv4}, true); err != nil {
		t.Fatal(err)
	}
	assertCalls(t, h,
		"/usr/bin/resolvectl dns tun0 198.18.0.53 2001:db8::53",
		"/usr/bin/resolvectl domain tun0 ~.",
		"/usr/bin/resolvectl default-route tun0 yes")

	// Other servers: the list is replaced.
	if err := m.Apply("tun0", []netip.Addr{srv3}, true); err != nil {
		t.Fatal(err)
	}
	assertCalls(t, h,
		"/usr/bin/resolvectl dns tun0 198.18.0.54",
		"/usr/bin/resolvectl domain tun0 ~.",
		"/usr/bin/resolvectl default-route tun0 yes")

	// A split tunnel now: the full tunnel's routing domain and default route go.
	if err := m.Apply("tun0", []netip.Addr{srv3}, false); err != nil {
		t.Fatal(err)
	}
	assertCalls(t, h,
		"/usr/bin/resolvectl revert tun0",
		"/usr/bin/resolvectl dns tun0 198.18.0.54")
	if err := m.Apply("tun0", []netip.Addr{srv4}, false); err != nil {
		t.Fatal(err)
	}
	assertCalls(t, h, "/usr/bin/resolvectl dns tun0 198.18.0.53")

	// Another device: the old one's settings go.
	if err := m.Apply("tun1", []netip.Addr{srv4}, false); err != nil {
		t.Fatal(err)
	}
	assertCalls(t, h, "/usr/bin/resolvectl revert tun0", "/usr/bin/resolvectl dns tun1 198.18.0.53")

	if err := m.Revert(); err != nil {
		t.Fatal(err)
	}
	assertCalls(t, h, "/usr/bin/resolvectl revert tun1")
	if err := m.Revert(); err != nil {
		t.Fatal(err)
	}
	assertCalls(t, h) // idempotent

	// Apply with no servers is Revert.
	if err := m.Apply("tun0", []netip.Addr{srv4}, false); err != nil {
		t.Fatal(err)
	}
	h.takeCalls()
	if err := m.Apply("tun0", nil, true); err != nil {
		t.Fatal(err)
	}
	assertCalls(t, h, "/usr/bin/resolvectl revert tun0")
	for _, c := range h.all {
		if c.stdin != "" {
			t.Errorf("%s: stdin %q", c.argv, c.stdin)
		}
	}
	assertNoFile(t, conf)
}

func TestResolvedNeedsItsSocket(t *testing.T) {
	h := &fakeHost{commands: []string{"resolvectl"}}
	m, _ := newCommandManager(t, h, false)
	if b := m.Backend(); b != "file" {
		t.Fatalf("Backend() = %q without resolved's socket, want file", b)
	}
	h = &fakeHost{commands: []string{"resolvconf"}}
	m, _ = newCommandManager(t, h, true)
	if b := m.Backend(); b != "resolvconf" {
		t.Fatalf("Backend() = %q without resolvectl, want resolvconf", b)
	}
}

func TestResolvedErrors(t *testing.T) {
	h := &fakeHost{commands: []string{"resolvectl"}, fail: map[string]error{
		"/usr/bin/resolvectl dns": errors.New("exit status 1: Failed to set DNS configuration"),
	}}
	m, _ := newCommandManager(t, h, true)
	err := m.Apply("tun0", []netip.Addr{srv4}, true)
	if err == nil {
		t.Fatal("Apply succeeded although resolvectl failed")
	}
	for _, want := range []string{"resolved", "/usr/bin/resolvectl dns tun0 198.18.0.53", "Failed to set DNS configuration"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	assertCalls(t, h, "/usr/bin/resolvectl dns tun0 198.18.0.53")
	if err := m.Revert(); err != nil {
		t.Fatal(err)
	}
	assertCalls(t, h) // nothing was applied

	// Set in part: Revert undoes that part.
	h.fail = map[string]error{"/usr/bin/resolvectl domain": errors.New("exit status 1")}
	err = m.Apply("tun0", []netip.Addr{srv4}, true)
	if err == nil || !strings.Contains(err.Error(), "resolvectl domain tun0 ~.") {
		t.Fatalf("Apply: %v, want the domain command's error", err)
	}
	h.takeCalls()

	// revert fails while the device exists: an error, and the next Revert tries again.
	h.fail = map[string]error{"/usr/bin/resolvectl revert": errors.New("exit status 1")}
	m.linkExists = func(dev string) bool { return dev == "tun0" }
	if err := m.Revert(); err == nil || !strings.Contains(err.Error(), "resolvectl revert tun0") {
		t.Fatalf("Revert: %v, want the revert command's error", err)
	}
	assertCalls(t, h, "/usr/bin/resolvectl revert tun0")
	// The device is gone now, and its settings with it: no error.
	m.linkExists = func(string) bool { return false }
	if err := m.Revert(); err != nil {
		t.Fatalf("Revert of a device that is gone: %v", err)
	}
	assertCalls(t, h, "/usr/bin/resolvectl revert tun0")
	if err := m.Revert(); err != nil {
		t.Fatal(err)
	}
	assertCalls(t, h)
}

const resolvconfStdin = "# mobikevpn: DNS servers of the VPN on tun0\nnameserver 198.18.0.53\nnameserver 2001:db8::53\n"

func TestResolvconfDebian(t *testing.T) {
	h := &fakeHost{commands: []string{"resolvectl", "resolvconf"},
		outputs: map[string]string{"/usr/bin/resolvconf --version": "Debian resolvconf 1.91+nmu1\n"}}
	m, conf := newCommandManager(t, h, false) // resolvectl, but resolved does not run
	if b := m.Backend(); b != "resolvconf" {
		t.Fatalf("Backend() = %q, want resolvconf", b)
	}
	assertCalls(t, h, "/usr/bin/resolvconf --version")
	if err := m.Apply("tun0", []netip.Addr{srv4, netip.MustParseAddr("::ffff:198.18.0.53"), srv6}, true); err != nil {
		t.Fatal(err)
	}
	calls := h.takeCalls()
	if len(calls) != 1 || calls[0].argv != "/usr/bin/resolvconf -a tun0.mobikevpn" || calls[0].stdin != resolvconfStdin {
		t.Fatalf("commands run: %q, want resolvconf -a tun0.mobikevpn (no -x: not openresolv) with stdin %q", calls, resolvconfStdin)
	}
	if err := m.Revert(); err != nil {
		t.Fatal(err)
	}
	assertCalls(t, h, "/usr/bin/resolvconf -d tun0.mobikevpn -f")
	if err := m.Revert(); err != nil {
		t.Fatal(err)
	}
	assertCalls(t, h)
	assertNoFile(t, conf)
}

func TestResolvconfOpenresolv(t *testing.T) {
	h := &fakeHost{commands: []string{"resolvconf"},
		outputs: map[string]string{"/usr/bin/resolvconf --version": "openresolv 3.13.2\n"}}
	m, _ := newCommandManager(t, h, true)
	if err := m.Apply("tun0", []netip.Addr{srv4, srv6}, true); err != nil {
		t.Fatal(err)
	}
	calls := h.takeCalls()
	want := []string{"/usr/bin/resolvconf --version", "/usr/bin/resolvconf -a tun0.mobikevpn -x"}
	if !slices.Equal(argvs(calls), want) || calls[1].stdin != resolvconfStdin {
		t.Fatalf("commands run: %q, want %q with stdin %q", calls, want, resolvconfStdin)
	}
	// The same, with other servers: the record is replaced.
	if err := m.Apply("tun0", []netip.Addr{srv3}, true); err != nil {
		t.Fatal(err)
	}
	calls = h.takeCalls()
	if len(calls) != 1 || calls[0].argv != "/usr/bin/resolvconf -a tun0.mobikevpn -x" ||
		calls[0].stdin != "# mobikevpn: DNS servers of the VPN on tun0\nnameserver 198.18.0.54\n" {
		t.Fatalf("commands run: %q", calls)
	}
	// A split tunnel: the record is no longer exclusive.
	if err := m.Apply("tun0", []netip.Addr{srv3}, false); err != nil {
		t.Fatal(err)
	}
	assertCalls(t, h, "/usr/bin/resolvconf -d tun0.mobikevpn -f", "/usr/bin/resolvconf -a tun0.mobikevpn")
	// Another device.
	if err := m.Apply("tun1", []netip.Addr{srv3}, false); err != nil {
		t.Fatal(err)
	}
	assertCalls(t, h, "/usr/bin/resolvconf -d tun0.mobikevpn -f", "/usr/bin/resolvconf -a tun1.mobikevpn")
	if err := m.Apply("tun1", nil, false); err != nil {
		t.Fatal(err)
	}
	assertCalls(t, h, "/usr/bin/resolvconf -d tun1.mobikevpn -f")
}

func TestResolvconfOfSystemdWithoutResolved(t *testing.T) {
	h := &fakeHost{commands: []string{"resolvconf", "resolvectl"},
		outputs: map[string]string{"/usr/bin/resolvconf --version": "systemd 255 (255.4-1ubuntu8)\n+PAM +AUDIT\n"}}
	m, _ := newCommandManager(t, h, false)
	if b := m.Backend(); b != "file" {
		t.Fatalf("Backend() = %q, want file", b)
	}
}

func TestResolvconfErrors(t *testing.T) {
	h := &fakeHost{commands: []string{"resolvconf"}, fail: map[string]error{
		"/usr/bin/resolvconf --version": errors.New("exit status 99"), // an old Debian resolvconf
		"/usr/bin/resolvconf -a":        errors.New("exit status 1: Error: Slash not allowed"),
	}}
	m, _ := newCommandManager(t, h, false)
	err := m.Apply("tun0", []netip.Addr{srv4}, true)
	if err == nil {
		t.Fatal("Apply succeeded although resolvconf failed")
	}
	for _, want := range []string{"resolvconf:", "/usr/bin/resolvconf -a tun0.mobikevpn", "Slash not allowed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	assertCalls(t, h, "/usr/bin/resolvconf --version", "/usr/bin/resolvconf -a tun0.mobikevpn")
	if err := m.Revert(); err != nil {
		t.Fatal(err)
	}
	assertCalls(t, h)

	h.fail = map[string]error{"/usr/bin/resolvconf -d": errors.New("exit status 1")}
	if err := m.Apply("tun0", []netip.Addr{srv4}, true); err != nil {
		t.Fatal(err)
	}
	if err := m.Revert(); err == nil || !strings.Contains(err.Error(), "resolvconf -d tun0.mobikevpn -f") {
		t.Fatalf("Revert: %v, want the -d command's error", err)
	}
	h.fail = nil
	h.takeCalls()
	if err := m.Revert(); err != nil {
		t.Fatal(err)
	}
	assertCalls(t, h, "/usr/bin/resolvconf -d tun0.mobikevpn -f") // tried again
}

func TestResolvconfRecoverStale(t *testing.T) {
	h := &fakeHost{commands: []string{"resolvconf"}, outputs: map[string]string{
		"/usr/bin/resolvconf --version": "openresolv 3.13.2\n",
		"/usr/bin/resolvconf -i":        "lo.inet tun0.mobikevpn eth0.dhclient tun7.mobikevpn .mobikevpn\n",
	}}
	m, _ := newCommandManager(t, h, false)
	m.linkExists = func(dev string) bool { return dev == "tun7" } // another daemon's, alive
	restored, err := m.RecoverStale()
	if err != nil || !restored {
		t.Fatalf("RecoverStale() = %v, %v; want true, nil", restored, err)
	}
	assertCalls(t, h, "/usr/bin/resolvconf --version", "/usr/bin/resolvconf -i", "/usr/bin/resolvconf -d tun0.mobikevpn -f")

	h.outputs["/usr/bin/resolvconf -i"] = "lo.inet eth0.dhclient\n"
	if restored, err := m.RecoverStale(); err != nil || restored {
		t.Fatalf("RecoverStale() = %v, %v; want false, nil", restored, err)
	}
	h.fail = map[string]error{"/usr/bin/resolvconf -i": errors.New("exit status 1")}
	if _, err := m.RecoverStale(); err == nil || !strings.Contains(err.Error(), "resolvconf -i") {
		t.Fatalf("RecoverStale: %v, want the -i command's error", err)
	}
}

func TestApplyRefusesBadInput(t *testing.T) {
	h := &fakeHost{commands: []string{"resolvectl"}}
	m, _ := newCommandManager(t, h, true)
	if err := m.Apply("tun0", []netip.Addr{srv4, {}}, true); err == nil {
		t.Error("Apply accepted the zero netip.Addr")
	}
	for _, dev := range []string{"", "tun/0", "tun 0", "-x", ".tun0"} {
		if err := m.Apply(dev, []netip.Addr{srv4}, true); err == nil {
			t.Errorf("Apply accepted the device %q", dev)
		}
	}
	assertCalls(t, h)
}

func TestRunCommand(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	out, err := runCommand([]byte("to stdin\n"), "sh", "-c", "cat; echo to stderr >&2")
	if err != nil || string(out) != "to stdin\nto stderr\n" {
		t.Fatalf("runCommand = %q, %v", out, err)
	}
	_, err = runCommand(nil, "sh", "-c", "echo '  Failed to do it  '; exit 3")
	if err == nil || !strings.HasSuffix(err.Error(), "exit status 3: Failed to do it") {
		t.Fatalf("runCommand error %v, want exit status 3 with the trimmed output", err)
	}
}
