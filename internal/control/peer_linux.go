package control

import (
	"net"

	"golang.org/x/sys/unix"
)

// peerAllowed reports whether the process at the other end of c may use the socket:
// root or our own uid (SO_PEERCRED).
func peerAllowed(c *net.UnixConn, self int) (uid int, ok bool, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, false, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, false, err
	}
	if credErr != nil {
		return -1, false, credErr
	}
	return int(cred.Uid), uidAllowed(int(cred.Uid), self), nil
}
