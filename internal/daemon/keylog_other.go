//go:build !unix

package daemon

import (
	"fmt"
	"os"
	"path/filepath"
)

// Without O_NOFOLLOW and Unix permissions (Windows): a key file that is a symbolic
// link is refused by an Lstat before the open, which leaves a window between the two,
// and the folder's and files' ACLs are not checked. Put the key log folder where only
// the daemon's account can write.

func checkKeyFolder(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("key log folder %s is not a folder", dir)
	}
	for _, name := range keyFiles {
		if err := checkKeyPath(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

func checkKeyPath(path string) error {
	fi, err := os.Lstat(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("key file %s is a symbolic link: refusing to write keys through it", path)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("key file %s is not a regular file: refusing to write keys to it", path)
	}
	return nil
}

func openKeyFile(dir, name string) (*os.File, error) {
	path := filepath.Join(dir, name)
	if err := checkKeyPath(path); err != nil {
		return nil, err
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
}
