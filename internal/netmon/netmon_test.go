package netmon

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The watcher runs in a child process inside a network namespace of the test's own,
// where the test adds and removes addresses and routes.
func TestMain(m *testing.M) {
	if os.Getenv("NETMON_CHILD") != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		Watch(ctx, "skipme", func(c Change) {
			fmt.Printf("addrs=%v routes=%v\n", c.Addrs, c.Routes)
		})
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestWatchReportsChanges(t *testing.T) {
	if os.Geteuid() != 0 || runtime.GOOS != "linux" {
		t.Skip("needs root on Linux (a network namespace); ./scripts/test.sh runs it as root")
	}
	var b [3]byte
	rand.Read(b[:])
	ns := "mvnm" + hex.EncodeToString(b[:])
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	run("ip", "netns", "add", ns)
	defer exec.Command("ip", "netns", "del", ns).Run()
	in := func(args ...string) { run(append([]string{"ip", "netns", "exec", ns}, args...)...) }
	// veth pairs: the kernel here has no dummy devices.
	in("ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1")
	in("ip", "link", "set", "d0", "up")
	in("ip", "link", "set", "d1", "up")
	in("ip", "link", "add", "skipme", "type", "veth", "peer", "name", "skip2")
	in("ip", "link", "set", "skipme", "up")
	in("ip", "link", "set", "skip2", "up")
	in("ip", "addr", "add", "192.0.2.10/24", "dev", "d0")
	in("ip", "addr", "add", "198.18.100.1/32", "dev", "skipme")

	self, _ := os.Executable()
	child := exec.Command("ip", "netns", "exec", ns, self, "-test.run=^$")
	child.Env = append(os.Environ(), "NETMON_CHILD=1")
	out, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	lines := make(chan string, 16)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	next := func(want ...string) string {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("watcher ended; wanted %q", want)
				}
				all := true
				for _, w := range want {
					all = all && strings.Contains(l, w)
				}
				if all {
					return l
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("no report with %q", want)
			}
		}
	}
	first := next("addrs=")
	if !strings.Contains(first, "192.0.2.10") || strings.Contains(first, "198.18.100.1") {
		t.Fatalf("first report %q: wants the dummy's address and not the skipped interface's", first)
	}
	start := time.Now()
	in("ip", "addr", "add", "203.0.113.20/24", "dev", "d0")
	next("192.0.2.10", "203.0.113.20")
	in("ip", "addr", "del", "192.0.2.10/24", "dev", "d0")
	l := next("203.0.113.20")
	if strings.Contains(l, "192.0.2.10") {
		l = next("addrs=[")
	}
	in("ip", "route", "add", "198.51.100.0/24", "dev", "d0")
	next("routes=true")
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("reports took %v", took)
	}
}
