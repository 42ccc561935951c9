package control

import (
	"io"
	"net"
	"strings"
	"testing"
)

// TestPeerCredentials: a client of our own user is allowed.
func TestPeerCredentials(t *testing.T) {
	path := sockPath(t, "p.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Skipf("AF_UNIX sockets: %v", err)
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
	who, ok, err := peerAllowed(c, -1)
	if err != nil || !ok || !strings.Contains(who, "user S-1-") {
		t.Errorf("peerAllowed = %q %v %v, want our own user allowed", who, ok, err)
	}
}
