//go:build unix

package control

import (
	"net"

	"golang.org/x/sys/unix"
)

// listenPrivate binds the socket with umask 0177, so that it is created with mode
// 0600 and never exists with wider permissions. The umask is process-wide; it only
// ever removes permission bits, for the duration of the bind.
func listenPrivate(path string) (*net.UnixListener, error) {
	old := unix.Umask(0o177)
	defer unix.Umask(old)
	return net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
}
