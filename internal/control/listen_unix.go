//go:build unix

package control

import (
	"fmt"
	"io/fs"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// testHookAfterBind, when set by a test, runs between the bind and the checks of
// what it created.
var testHookAfterBind func(path string)

// listenPrivate binds the socket with umask 0177, so that it is created with mode
// 0600 and never exists with wider permissions. The umask is process-wide; it only
// ever removes permission bits, for the duration of the bind. Then it makes sure that
// path is still the socket it created, not a symlink or another file put there
// meanwhile by someone who can write to the folder, and that its mode is 0600 (a
// default ACL on the folder takes precedence over the umask), changing it without
// following symlinks: nothing planted at path can make it change another file.
func listenPrivate(path string) (*net.UnixListener, error) {
	old := unix.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, err
	}
	if testHookAfterBind != nil {
		testHookAfterBind(path)
	}
	if ours, err := makePrivate(path); err != nil {
		// Whatever is at path now is not ours to remove.
		ln.SetUnlinkOnClose(ours)
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// checkOurs reports whether a file of mode and owner uid is a socket of our own (our
// socket, or one put there by our own user: who can do that can use it anyway).
func checkOurs(path string, mode uint32, uid uint32) error {
	if mode&unix.S_IFMT == unix.S_IFSOCK && int(uid) == os.Geteuid() {
		return nil
	}
	what := "a file of another user"
	switch mode & unix.S_IFMT {
	case unix.S_IFLNK:
		what = "a symlink"
	case unix.S_IFSOCK:
		what = "a socket of another user"
	case unix.S_IFREG:
		what = "a regular file"
	}
	return fmt.Errorf("%s was replaced by %s while the control socket was being created; refusing it (check who else can write to %s's folder)", path, what, path)
}

// private is the mode of the control socket.
const private fs.FileMode = 0o600
