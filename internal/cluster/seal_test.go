package cluster

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStateKeySeal(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	k, err := NewStateKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte(`{"keys":{"sk_d":"very secret"}}`)
	a, err := k.Seal("/mobikevpn/sas/1-2/state", plain)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := k.Seal("/mobikevpn/sas/1-2/state", plain)
	if bytes.Equal(a, b) || bytes.Contains(a, []byte("very secret")) {
		t.Error("sealing is deterministic, or shows the plaintext")
	}
	if got, err := k.Open("/mobikevpn/sas/1-2/state", a); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("open: %q %v", got, err)
	}
	other, _ := NewStateKey(bytes.Repeat([]byte{8}, 32))
	flipped := bytes.Clone(a)
	flipped[len(flipped)-1] ^= 1
	for name, try := range map[string]func() ([]byte, error){
		"under another etcd key": func() ([]byte, error) { return k.Open("/mobikevpn/sas/3-4/state", a) },
		"with another state key": func() ([]byte, error) { return other.Open("/mobikevpn/sas/1-2/state", a) },
		"altered":                func() ([]byte, error) { return k.Open("/mobikevpn/sas/1-2/state", flipped) },
		"truncated":              func() ([]byte, error) { return k.Open("/mobikevpn/sas/1-2/state", a[:20]) },
		"empty":                  func() ([]byte, error) { return k.Open("/mobikevpn/sas/1-2/state", nil) },
	} {
		if _, err := try(); !errors.Is(err, ErrSealed) {
			t.Errorf("opened a value %s: %v", name, err)
		}
	}
	if _, err := NewStateKey(secret[:31]); err == nil {
		t.Error("a 31-byte key accepted")
	}
}

func TestLoadStateKey(t *testing.T) {
	dir := t.TempDir()
	secret := bytes.Repeat([]byte{0xab}, 32)
	write := func(name string, b []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	raw, err := LoadStateKey(write("raw.key", secret, 0o600))
	if err != nil {
		t.Fatal(err)
	}
	hx, err := LoadStateKey(write("hex.key", []byte(hex.EncodeToString(secret)+"\n"), 0o400))
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := raw.Seal("k", []byte("x"))
	if _, err := hx.Open("k", sealed); err != nil {
		t.Errorf("raw and hex forms of one secret differ: %v", err)
	}
	for name, c := range map[string]struct {
		data []byte
		mode os.FileMode
		want string
	}{
		"short.key":    {secret[:16], 0o600, "holds 16 bytes"},
		"badhex.key":   {[]byte(strings.Repeat("zz", 32)), 0o600, "not hex"},
		"readable.key": {secret, 0o644, "readable by others"},
	} {
		_, err := LoadStateKey(write(name, c.data, c.mode))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v (want an error naming the file and %q)", name, err, c.want)
		}
	}
	if _, err := LoadStateKey(filepath.Join(dir, "missing.key")); err == nil {
		t.Error("a missing file accepted")
	}
}
