package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/internal/control"
)

// The lab: network namespaces made by the test itself, with a unique prefix per run,
// linked by veth pairs, holding only documentation and benchmarking addresses. Every
// namespace and process is removed when the test ends.

var (
	binPath  string // the mobikevpn binary under test
	buildErr error
	buildMu  sync.Once
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Getenv("MOBIKEVPN_HELPER") != "" {
		os.Exit(helperMain(os.Getenv("MOBIKEVPN_HELPER"), os.Args[1:]))
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var binDir string

// needRoot skips integration tests when not root: they create namespaces.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("integration tests need root (network namespaces, TUN devices); run ./scripts/test.sh as root")
	}
	if runtime.GOOS != "linux" {
		t.Skip("integration tests run on Linux only")
	}
}

// binary builds the mobikevpn binary once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildMu.Do(func() {
		if p := os.Getenv("MOBIKEVPN_BIN"); p != "" {
			binPath = p
			return
		}
		binDir, buildErr = os.MkdirTemp("", "mobikevpn-bin-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "mobikevpn")
		cmd := exec.Command("go", "build", "-o", binPath, "../cmd/mobikevpn")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// lab is one test's set of namespaces.
type lab struct {
	t      *testing.T
	prefix string
	nss    []string
	dir    string
	procs  []*proc
}

func newLab(t *testing.T) *lab {
	t.Helper()
	needRoot(t)
	var b [3]byte
	rand.Read(b[:])
	l := &lab{t: t, prefix: "mvt" + hex.EncodeToString(b[:]), dir: t.TempDir()}
	t.Cleanup(l.cleanup)
	return l
}

func (l *lab) run(args ...string) string {
	l.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ns creates a namespace named prefix-name with loopback up and returns its name.
func (l *lab) ns(name string) string {
	l.t.Helper()
	n := l.prefix + "-" + name
	l.run("ip", "netns", "add", n)
	l.nss = append(l.nss, n)
	// Its own resolv.conf, which ip netns exec mounts over /etc/resolv.conf: a client
	// applies the DNS servers its gateway assigns there (dns: apply), not on the host.
	if err := os.MkdirAll("/etc/netns/"+n, 0o755); err != nil {
		l.t.Fatal(err)
	}
	if err := os.WriteFile("/etc/netns/"+n+"/resolv.conf", []byte("# mobikevpn integration test "+n+"\nnameserver 192.0.2.53\n"), 0o644); err != nil {
		l.t.Fatal(err)
	}
	l.exec(n, "ip", "link", "set", "lo", "up")
	// IPv6 addresses usable at once, no duplicate address detection delays.
	l.exec(n, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	// No router solicitations on new devices (the TUN device): that chatter would count
	// as packets without a policy and blur the drop counters the tests check.
	l.exec(n, "sysctl", "-qw", "net.ipv6.conf.default.router_solicitations=0")
	return n
}

func (l *lab) exec(ns string, args ...string) string {
	l.t.Helper()
	return l.run(append([]string{"ip", "netns", "exec", ns}, args...)...)
}

// link connects two namespaces with a veth pair and gives each end its addresses.
func (l *lab) link(nsA, ifA string, addrsA []string, nsB, ifB string, addrsB []string) {
	l.t.Helper()
	tmpA, tmpB := l.prefix+ifA, l.prefix+ifB
	if len(tmpA) > 15 {
		tmpA = tmpA[:15]
	}
	if len(tmpB) > 15 {
		tmpB = tmpB[:15]
	}
	l.run("ip", "link", "add", tmpA, "netns", nsA, "type", "veth", "peer", "name", tmpB, "netns", nsB)
	l.exec(nsA, "ip", "link", "set", tmpA, "name", ifA)
	l.exec(nsB, "ip", "link", "set", tmpB, "name", ifB)
	for _, a := range addrsA {
		l.exec(nsA, "ip", "addr", "add", a, "dev", ifA, "nodad")
	}
	for _, a := range addrsB {
		l.exec(nsB, "ip", "addr", "add", a, "dev", ifB, "nodad")
	}
	l.exec(nsA, "ip", "link", "set", ifA, "up")
	l.exec(nsB, "ip", "link", "set", ifB, "up")
}

func (l *lab) cleanup() {
	for _, p := range l.procs {
		p.kill()
	}
	if dir := os.Getenv("MOBIKEVPN_KEEP_LOGS"); dir != "" && l.t.Failed() {
		// For developers: the whole logs of a failed test's processes.
		for _, p := range l.procs {
			if b, err := os.ReadFile(p.log); err == nil {
				os.WriteFile(filepath.Join(dir, l.prefix+"-"+p.name+".log"), b, 0o644)
			}
		}
	}
	for _, n := range l.nss {
		exec.Command("ip", "netns", "del", n).Run()
		os.RemoveAll("/etc/netns/" + n)
	}
}

// proc is a process started in a namespace, with its output kept in a file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func (l *lab) start(name, ns string, args ...string) *proc {
	l.t.Helper()
	logPath := filepath.Join(l.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); f.Close(); close(p.done) }()
	l.procs = append(l.procs, p)
	return p
}

func (p *proc) signal(s os.Signal) { p.cmd.Process.Signal(s) }

func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(d time.Duration) (int, bool) {
	select {
	case <-p.done:
		if p.err == nil {
			return 0, true
		}
		if ee, ok := p.err.(*exec.ExitError); ok {
			return ee.ExitCode(), true
		}
		return -1, true
	case <-time.After(d):
		return 0, false
	}
}

func (p *proc) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// status reads a daemon's status over its control socket.
func status(t *testing.T, sock string) *control.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := control.StatusOf(ctx, sock)
	if err != nil {
		return nil
	}
	return st
}

// statusJSON runs `mobikevpn status --json` as a user would and decodes its output
// into a generic map, so that the field names themselves are checked.
func statusJSON(t *testing.T, sock string) map[string]any {
	t.Helper()
	out, err := exec.Command(binary(t), "status", "--json", "--control", sock).Output()
	if err != nil {
		t.Fatalf("status --json: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("status --json output is not JSON: %v\n%s", err, out)
	}
	return m
}

// waitFor polls cond every 10 ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

// installedChild reports whether the daemon has an established IKE SA with an
// installed Child SA.
func installedChild(t *testing.T, sock string) bool {
	st := status(t, sock)
	if st == nil {
		return false
	}
	for _, sa := range st.IKESAs {
		if sa.State == "established" {
			for _, c := range sa.ChildSAs {
				if c.State == "installed" {
					return true
				}
			}
		}
	}
	return false
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func contains(s string, subs ...string) bool {
	for _, x := range subs {
		if !bytes.Contains([]byte(s), []byte(x)) {
			return false
		}
	}
	return true
}
