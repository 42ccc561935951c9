//go:build unix

package control

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// withAfterBind sets testHookAfterBind for the test.
func withAfterBind(t *testing.T, f func(path string)) {
	t.Helper()
	testHookAfterBind = f
	t.Cleanup(func() { testHookAfterBind = nil })
}

// victim is a file of the test's own, mode 0644, outside the socket's folder.
func victim(t *testing.T) string {
	t.Helper()
	p := sockPath(t, "victim")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func checkUntouched(t *testing.T, p string) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("the symlink's target %s now has mode %v, want 0644", p, fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(p); string(b) != "x" {
		t.Errorf("the symlink's target was written: %q", b)
	}
}

// TestListenSymlinkSwapped: the socket replaced by a symlink to another file between
// its creation and the setting of its mode (someone who can write to the folder) must
// not make Listen change that file's mode; Listen fails. (Issue 11: os.Chmod followed
// the symlink.)
func TestListenSymlinkSwapped(t *testing.T) {
	path := sockPath(t, "s.sock")
	target := victim(t)
	withAfterBind(t, func(p string) {
		if err := os.Remove(p); err != nil {
			t.Error(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Error(err)
		}
	})
	srv, err := Listen(path, &fakeHandler{}, nil)
	if err == nil {
		srv.Close()
		t.Error("Listen accepted a symlink in place of its socket")
	}
	checkUntouched(t, target)
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("the symlink was not left alone: %v %v", fi, err)
	}
}

// TestListenPlantedSymlink: a symlink already at the control path (to a file, to a
// socket, or dangling) is refused and left alone; its target keeps its mode.
func TestListenPlantedSymlink(t *testing.T) {
	target := victim(t)
	for _, to := range []string{target, filepath.Join(filepath.Dir(target), "missing")} {
		path := sockPath(t, "s.sock")
		if err := os.Symlink(to, path); err != nil {
			t.Fatal(err)
		}
		if srv, err := Listen(path, &fakeHandler{}, nil); err == nil {
			srv.Close()
			t.Errorf("Listen over a symlink to %s succeeded", to)
		}
		if fi, err := os.Lstat(path); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			t.Errorf("the symlink to %s was not left alone: %v %v", to, fi, err)
		}
		if _, err := os.Lstat(to); to != target && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Listen created the dangling symlink's target: %v", err)
		}
	}
	checkUntouched(t, target)
	// A symlink to a live daemon's socket.
	live := start(t, &fakeHandler{})
	path := sockPath(t, "s.sock")
	os.Symlink(live, path)
	if srv, err := Listen(path, &fakeHandler{}, nil); err == nil {
		srv.Close()
		t.Error("Listen over a symlink to a socket succeeded")
	}
	if fi, err := os.Lstat(live); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the live socket: %v %v", fi, err)
	}
}

// TestListenNarrowsMode: should the socket come out with wider permissions than 0600
// (a default ACL on the folder overrides the umask), Listen narrows them.
func TestListenNarrowsMode(t *testing.T) {
	path := sockPath(t, "s.sock")
	withAfterBind(t, func(p string) {
		if err := os.Chmod(p, 0o666); err != nil {
			t.Error(err)
		}
	})
	srv, err := Listen(path, &fakeHandler{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket %v %v, want a socket with mode 0600", fi.Mode(), err)
	}
}
