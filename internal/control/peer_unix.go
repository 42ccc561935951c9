//go:build linux || darwin || freebsd

package control

import (
	"fmt"
	"net"
)

// peerAllowed reports whether the process at the other end of c may use the socket:
// root or the user self (our uid). who names the peer for logs.
func peerAllowed(c *net.UnixConn, self int) (who string, ok bool, err error) {
	uid, err := peerUID(c)
	if err != nil {
		return "unknown", false, err
	}
	return fmt.Sprintf("uid %d", uid), uidAllowed(uid, self), nil
}
