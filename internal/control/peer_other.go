//go:build !linux

package control

import "net"

// peerAllowed accepts every peer: outside Linux the socket's 0600 mode (and its 0700
// folder) is what keeps other users out.
func peerAllowed(c *net.UnixConn, self int) (uid int, ok bool, err error) {
	return -1, true, nil
}
