//go:build !unix

package control

import "net"

// listenPrivate binds the socket. There is no umask and no Unix mode here: on Windows
// the socket file's ACL is inherited from its folder, and what keeps other users out
// is the check of each connection's peer (peerAllowed). Nothing is done to the file
// after the bind, so nothing planted at path can be changed through it.
func listenPrivate(path string) (*net.UnixListener, error) {
	return net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
}
