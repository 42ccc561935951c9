//go:build linux || darwin || freebsd

package control

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// TestMain lets the test binary be the client of TestPeerOtherUserRefused.
func TestMain(m *testing.M) {
	if path := os.Getenv("MOBIKEVPN_CONTROL_TEST_CLIENT"); path != "" {
		c, err := net.Dial("unix", path)
		if err != nil {
			fmt.Println("dial:", err)
			os.Exit(1)
		}
		fmt.Fprintln(c, `{"cmd":"status"}`)
		line, _ := bufio.NewReader(c).ReadString('\n')
		fmt.Print(line)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestPeerCredentials(t *testing.T) {
	path := sockPath(t, "p.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("unix", path)
		if err == nil {
			io.Copy(io.Discard, c)
		}
	}()
	c, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	uid, err := peerUID(c)
	if err != nil || uid != os.Geteuid() {
		t.Errorf("peerUID = %d %v, want our uid %d", uid, err, os.Geteuid())
	}
	who, ok, err := peerAllowed(c, os.Getuid())
	if err != nil || !ok || who != fmt.Sprintf("uid %d", os.Geteuid()) {
		t.Errorf("peerAllowed = %q %v %v, want our uid %d", who, ok, err, os.Geteuid())
	}
	// Another daemon uid: only root passes.
	if _, ok, _ := peerAllowed(c, os.Getuid()+1); ok != (os.Geteuid() == 0) {
		t.Errorf("peerAllowed with a foreign daemon uid = %v", ok)
	}
}

// TestPeerOtherUserRefused: a process of another user that can reach the socket (its
// mode opened up here on purpose) is refused by the peer check.
func TestPeerOtherUserRefused(t *testing.T) {
	if os.Geteuid() != 0 || runtime.GOOS != "linux" {
		t.Skip("needs root on Linux (runs a client as another user); ./scripts/test.sh runs it as root")
	}
	h := &fakeHandler{status: &Status{}}
	srv, err := Listen(sockPath(t, "o.sock"), h, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(t.Context()) }()
	t.Cleanup(func() { srv.Close(); <-done })
	// Open the way for anybody: the folder, the socket, and a copy of the test binary.
	os.Chmod(filepath.Dir(srv.Path()), 0o755)
	os.Chmod(srv.Path(), 0o666)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := sockPath(t, "client")
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Dir(bin), 0o755)
	run := func(cred *syscall.Credential) string {
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Env = append(os.Environ(), "MOBIKEVPN_CONTROL_TEST_CLIENT="+srv.Path())
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("client: %v\n%s", err, out)
		}
		return string(out)
	}
	// The server's answer, not connect's EACCES.
	if out := run(&syscall.Credential{Uid: 65534, Gid: 65534}); !strings.Contains(out, `"error":"permission denied"`) {
		t.Errorf("a client of uid 65534 got %q", out)
	}
	if out := run(nil); !strings.Contains(out, `"ok":true`) {
		t.Errorf("a client of our own uid got %q", out)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.calls) != 1 {
		t.Errorf("handler calls %v, want one status (our own)", h.calls)
	}
}
