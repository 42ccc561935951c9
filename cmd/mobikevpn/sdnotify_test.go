package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func listenNotify(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readNotify(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

// TestNotifier: states reach $NOTIFY_SOCKET, a path or an abstract name; RELOADING=1
// carries MONOTONIC_USEC; without the variable nothing is sent.
func TestNotifier(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	c := listenNotify(t, path)
	n := newNotifier(path, func() time.Duration { return 1500 * time.Millisecond })
	if err := n.notify("READY=1"); err != nil {
		t.Fatal(err)
	}
	if got := readNotify(t, c); got != "READY=1" {
		t.Errorf("got %q", got)
	}
	if err := n.notify("RELOADING=1"); err != nil {
		t.Fatal(err)
	}
	if got := readNotify(t, c); got != "RELOADING=1\nMONOTONIC_USEC=1500000" {
		t.Errorf("got %q", got)
	}
	abstract := "@mobikevpn-test-" + filepath.Base(t.TempDir())
	ca := listenNotify(t, abstract)
	if err := newNotifier(abstract, nil).notify("STOPPING=1"); err != nil {
		t.Fatal(err)
	}
	if got := readNotify(t, ca); got != "STOPPING=1" {
		t.Errorf("abstract: got %q", got)
	}
	if newNotifier("", nil) != nil || (*notifier)(nil).notify("READY=1") != nil {
		t.Error("no NOTIFY_SOCKET: a notifier")
	}
	if err := newNotifier(filepath.Join(t.TempDir(), "gone"), nil).notify("READY=1"); err == nil || !strings.Contains(err.Error(), "sd_notify") {
		t.Errorf("a socket that is not there: %v", err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	self := os.Getpid()
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
	}{
		{"", "", 0},
		{"30000000", "", 30 * time.Second},
		{"30000000", "1", 0}, // meant for another process
		{"30000000", strconv.Itoa(self), 30 * time.Second},
		{"x", "", 0},
	} {
		if got := watchdogInterval(tc.usec, tc.pid, self); got != tc.want {
			t.Errorf("watchdogInterval(%q, %q) = %v, want %v", tc.usec, tc.pid, got, tc.want)
		}
	}
}
