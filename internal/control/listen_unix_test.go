//go:build unix

package control

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestListenRestoresUmask(t *testing.T) {
	orig := unix.Umask(0o022)
	defer unix.Umask(orig)
	srv, err := Listen(sockPath(t, "u.sock"), &fakeHandler{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if got := unix.Umask(0o022); got != 0o022 {
		t.Errorf("umask after Listen is %#o, want 022", got)
	}
}
