//go:build unix

package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// openKeyDir opens the key log folder and checks it: a folder that group or others
// may write to (they could replace the key files with links, or read them by swapping
// them) or that belongs to another user than us or root is refused. The checks are
// made on the opened folder, and the files are opened relative to it, so that the
// folder cannot be swapped between the check and the use.
func openKeyDir(dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	if uid := os.Geteuid(); int(st.Uid) != uid && st.Uid != 0 {
		unix.Close(fd)
		return -1, fmt.Errorf("key log folder %s is owned by uid %d, not by us (uid %d) or root: refusing to write keys there", dir, st.Uid, uid)
	}
	if m := uint32(st.Mode); m&0o022 != 0 {
		unix.Close(fd)
		return -1, fmt.Errorf("key log folder %s is writable by group or others (mode %04o): refusing to write keys there; chmod go-w it", dir, m&0o7777)
	}
	return fd, nil
}

// checkKeyFile refuses a key file that is not a regular file of ours, alone (one
// link), with mode 0600 or narrower.
func checkKeyFile(path string, st *unix.Stat_t) error {
	m := uint32(st.Mode)
	switch {
	case m&unix.S_IFMT == unix.S_IFLNK:
		return fmt.Errorf("key file %s is a symbolic link: refusing to write keys through it", path)
	case m&unix.S_IFMT != unix.S_IFREG:
		return fmt.Errorf("key file %s is not a regular file: refusing to write keys to it", path)
	case int(st.Uid) != os.Geteuid():
		return fmt.Errorf("key file %s is owned by uid %d, not by us (uid %d): refusing to write keys to it", path, st.Uid, os.Geteuid())
	case m&0o7777&^0o600 != 0:
		return fmt.Errorf("key file %s has mode %04o, wider than 0600: refusing to write keys to it; chmod 600 it", path, m&0o7777)
	case uint64(st.Nlink) != 1:
		return fmt.Errorf("key file %s has %d hard links: refusing to write keys to it", path, uint64(st.Nlink))
	}
	return nil
}

// checkKeyFolder checks the folder and the key files already in it.
func checkKeyFolder(dir string) error {
	dfd, err := openKeyDir(dir)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	for _, name := range keyFiles {
		var st unix.Stat_t
		err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		path := filepath.Join(dir, name)
		if err != nil {
			return &os.PathError{Op: "stat", Path: path, Err: err}
		}
		if err := checkKeyFile(path, &st); err != nil {
			return err
		}
	}
	return nil
}

// openKeyFile opens dir/name for appending, creating it with mode 0600. It does not
// follow a symbolic link (O_NOFOLLOW), does not block on a FIFO (O_NONBLOCK), and
// checks the folder and the opened file as checkKeyFolder does.
func openKeyFile(dir, name string) (*os.File, error) {
	dfd, err := openKeyDir(dir)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dfd)
	path := filepath.Join(dir, name)
	fd, err := unix.Openat(dfd, name, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o600)
	if err != nil {
		// Linux and macOS say ELOOP for a link with O_NOFOLLOW, FreeBSD EMLINK.
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EMLINK) {
			return nil, fmt.Errorf("key file %s is a symbolic link: refusing to write keys through it", path)
		}
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if err := checkKeyFile(path, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// A regular file: back to blocking writes.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "fcntl", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}
