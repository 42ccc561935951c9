//go:build darwin || freebsd

package control

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// xucredVersion is XUCRED_VERSION of <sys/ucred.h> (macOS and FreeBSD).
const xucredVersion = 0

// peerUID is the effective uid of the process at the other end of c, from
// LOCAL_PEERCRED (its credentials when it connected, as getpeereid(3) reads them).
func peerUID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *unix.Xucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if credErr != nil {
		return -1, fmt.Errorf("LOCAL_PEERCRED: %w", credErr)
	}
	if cred.Version != xucredVersion {
		return -1, fmt.Errorf("LOCAL_PEERCRED: unknown xucred version %d", cred.Version)
	}
	return int(cred.Uid), nil
}
