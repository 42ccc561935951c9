//go:build unix && !linux

package control

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// makePrivate checks that path is our socket and gives it mode 0600, with
// AT_SYMLINK_NOFOLLOW: should path become a symlink between the check and the change,
// the link's own mode changes and the check after the change fails. ours reports
// whether path was our socket.
func makePrivate(path string) (ours bool, err error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return false, fmt.Errorf("checking %s: %w", path, err)
	}
	if err := checkOurs(path, uint32(st.Mode), uint32(st.Uid)); err != nil {
		return false, err
	}
	if uint32(st.Mode)&0o7777 == uint32(private) {
		return true, nil
	}
	if err := unix.Fchmodat(unix.AT_FDCWD, path, uint32(private), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return true, fmt.Errorf("setting the mode of %s to 0600: %w", path, err)
	}
	if err := unix.Lstat(path, &st); err != nil {
		return false, fmt.Errorf("checking %s: %w", path, err)
	}
	if err := checkOurs(path, uint32(st.Mode), uint32(st.Uid)); err != nil {
		return false, err
	}
	if uint32(st.Mode)&0o7777 != uint32(private) {
		return true, fmt.Errorf("%s has mode %#o after setting it to 0600", path, uint32(st.Mode)&0o7777)
	}
	return true, nil
}
