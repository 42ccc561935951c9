package control

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// makePrivate checks that path is our socket and gives it mode 0600. It works on the
// inode that path names when opened without following a symlink (O_PATH|O_NOFOLLOW):
// checked with fstat and changed through that descriptor, so that nothing put at path
// after the open is touched. ours reports whether path was our socket.
func makePrivate(path string) (ours bool, err error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("checking %s: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, fmt.Errorf("checking %s: %w", path, err)
	}
	if err := checkOurs(path, st.Mode, st.Uid); err != nil {
		return false, err
	}
	if st.Mode&0o7777 == uint32(private) {
		return true, nil
	}
	// fchmodat2 (Linux 6.6) changes the descriptor's inode; older kernels do it
	// through /proc/self/fd, which names that inode, not a path (as glibc does).
	err = unix.Fchmodat(fd, "", uint32(private), unix.AT_EMPTY_PATH)
	if err != nil {
		err = unix.Chmod(fmt.Sprintf("/proc/self/fd/%d", fd), uint32(private))
	}
	if err != nil {
		return true, fmt.Errorf("setting the mode of %s to 0600: %w", path, err)
	}
	return true, nil
}
