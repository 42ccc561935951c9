package netmon

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The watcher runs in a child process inside a network namespace of the test's own
// (TestMain runs childWatch there), where the test adds and removes addresses and
// routes. These tests need root; they skip without it.

// nsLab is a network namespace with a watcher running in it.
type nsLab struct {
	t     *testing.T
	ns    string
	child *exec.Cmd
	lines chan string
	seen  []string // every line next read
}

func (l *nsLab) run(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		l.t.Fatalf("%v: %v\n%s", args, err, out)
	}
}

// in runs a command in the namespace.
func (l *nsLab) in(args ...string) {
	l.t.Helper()
	l.run(append([]string{"ip", "netns", "exec", l.ns}, args...)...)
}

// next waits for the watcher's next line that contains every one of want.
func (l *nsLab) next(want ...string) string {
	l.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case line, ok := <-l.lines:
			if !ok {
				l.t.Fatalf("watcher ended; wanted %q", want)
			}
			l.seen = append(l.seen, line)
			all := true
			for _, w := range want {
				all = all && strings.Contains(line, w)
			}
			if all {
				return line
			}
		case <-timeout:
			l.t.Fatalf("no line with %q", want)
		}
	}
}

// startChild creates a namespace with two veth pairs, 192.0.2.10/24 on d0 and
// 198.18.100.1/32 on skipme, and starts the watcher in it (env: more of the child's
// environment).
func startChild(t *testing.T, env ...string) *nsLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (a network namespace); ./scripts/test.sh runs it as root")
	}
	var b [3]byte
	rand.Read(b[:])
	l := &nsLab{t: t, ns: "mvnm" + hex.EncodeToString(b[:]), lines: make(chan string, 64)}
	l.run("ip", "netns", "add", l.ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", l.ns).Run() })
	// veth pairs: the kernel here has no dummy devices.
	l.in("ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1")
	l.in("ip", "link", "set", "d0", "up")
	l.in("ip", "link", "set", "d1", "up")
	l.in("ip", "link", "add", "skipme", "type", "veth", "peer", "name", "skip2")
	l.in("ip", "link", "set", "skipme", "up")
	l.in("ip", "link", "set", "skip2", "up")
	l.in("ip", "addr", "add", "192.0.2.10/24", "dev", "d0")
	l.in("ip", "addr", "add", "198.18.100.1/32", "dev", "skipme")

	self, _ := os.Executable()
	// ip netns exec executes the command itself: l.child.Process is the watcher.
	l.child = exec.Command("ip", "netns", "exec", l.ns, self, "-test.run=^$")
	l.child.Env = append(append(os.Environ(), "NETMON_CHILD=1"), env...)
	out, _ := l.child.StdoutPipe()
	l.child.Stderr = os.Stderr
	if err := l.child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		l.child.Process.Signal(syscall.SIGCONT)
		l.child.Process.Kill()
		l.child.Wait()
	})
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			l.lines <- s.Text()
		}
		close(l.lines)
	}()
	return l
}

func TestWatchReportsChanges(t *testing.T) {
	l := startChild(t)
	first := l.next("addrs=")
	if !strings.Contains(first, "192.0.2.10") || strings.Contains(first, "198.18.100.1") {
		t.Fatalf("first report %q: wants the dummy's address and not the skipped interface's", first)
	}
	start := time.Now()
	l.in("ip", "addr", "add", "203.0.113.20/24", "dev", "d0")
	l.next("192.0.2.10", "203.0.113.20")
	l.in("ip", "addr", "del", "192.0.2.10/24", "dev", "d0")
	line := l.next("203.0.113.20")
	if strings.Contains(line, "192.0.2.10") {
		l.next("addrs=[")
	}
	l.in("ip", "route", "add", "198.51.100.0/24", "dev", "d0")
	l.next("routes=true")
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("reports took %v", took)
	}
}

// TestWatchSurvivesOverflow: when the kernel drops notifications because the watcher
// did not read them in time (ENOBUFS on the netlink socket), the watcher subscribes
// again, reports the full current list and goes on reporting changes (issue 11: the
// subscription ended silently and MOBIKE stopped noticing address changes). The
// watcher's process is stopped (SIGSTOP) while a burst of changes overflows its small
// socket buffers.
func TestWatchSurvivesOverflow(t *testing.T) {
	l := startChild(t, "NETMON_RCVBUF=4096")
	if first := l.next("addrs="); !strings.Contains(first, "192.0.2.10") {
		t.Fatalf("first report %q", first)
	}
	if err := l.child.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// 2000 addresses, and as many local routes: more than the sockets hold.
	var batch strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&batch, "addr add 198.19.%d.%d/32 dev d0\n", i/100, i%100+1)
	}
	cmd := exec.Command("ip", "netns", "exec", l.ns, "ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	out, err := cmd.CombinedOutput()
	if err := l.child.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatalf("ip -batch: %v\n%s", err, out)
	}
	// Every address is reported (by the report after the new subscription, if not
	// before the notifications were lost).
	l.next("addrs=", "198.19.19.100", "192.0.2.10")
	// Changes are noticed again.
	l.in("ip", "addr", "add", "203.0.113.30/24", "dev", "d0")
	l.next("addrs=", "203.0.113.30")
	// And the loss was logged.
	if !slices.ContainsFunc(l.seen, func(s string) bool { return strings.Contains(s, "subscribing again") }) {
		t.Errorf("no log of the new subscription in %q", l.seen)
	}
}

// childWatch is the child's part: the watcher, reporting and logging on stdout.
func childWatch() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if v, err := strconv.Atoi(os.Getenv("NETMON_RCVBUF")); err == nil {
		rcvBuf = v
	}
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelDebug}))
	WatchLog(ctx, "skipme", log, func(c Change) {
		fmt.Printf("addrs=%v routes=%v\n", c.Addrs, c.Routes)
	})
}
