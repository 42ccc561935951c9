//go:build !unix

package control

import "net"

// listenPrivate binds the socket; without umask, the caller's chmod to 0600 and the
// folder's permissions protect it.
func listenPrivate(path string) (*net.UnixListener, error) {
	return net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
}
