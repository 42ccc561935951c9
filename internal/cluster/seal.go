package cluster

import (
	"bytes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"golang.org/x/crypto/chacha20poly1305"
)

// StateKey seals what the cluster writes to etcd that must stay secret (SA state:
// keys, nonces) with the cluster's key, the same on every node (state_key_file):
// XChaCha20-Poly1305 with a random nonce per value, and the etcd key a value is
// written under as associated data, so that a value cannot be moved to another key
// (one SA's state passed off as another's). etcd and its backups hold only ciphertext.
type StateKey struct {
	aead cipher.AEAD
}

// stateKeyInfo separates the sealing key from any other use of the file's secret.
const stateKeyInfo = "mobikevpn cluster state v1"

// sealVersion is the first byte of a sealed value.
const sealVersion = 1

// NewStateKey makes a StateKey from the 32-byte secret.
func NewStateKey(secret []byte) (*StateKey, error) {
	if len(secret) != 32 {
		return nil, fmt.Errorf("a cluster state key is 32 bytes, not %d", len(secret))
	}
	k, err := hkdf.Key(sha256.New, secret, nil, stateKeyInfo, chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(k)
	clear(k)
	if err != nil {
		return nil, err
	}
	return &StateKey{aead: aead}, nil
}

// LoadStateKey reads the state key file: 32 random bytes, raw or as 64 hex digits
// (a trailing newline allowed). The file must not be readable by group or others.
func LoadStateKey(path string) (*StateKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by others (mode %04o): a cluster state key must be mode 0600 or 0400", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	secret := b
	if t := bytes.TrimRight(b, "\r\n"); len(t) == 64 {
		d := make([]byte, 32)
		if _, err := hex.Decode(d, t); err != nil {
			return nil, fmt.Errorf("%s: 64 characters but not hex: %v", path, err)
		}
		defer clear(d)
		secret = d
	}
	if len(secret) != 32 {
		return nil, fmt.Errorf("%s holds %d bytes: a cluster state key is 32 random bytes, raw or as 64 hex digits", path, len(b))
	}
	return NewStateKey(secret)
}

// Seal seals plain, to be written to etcd under key.
func (k *StateKey) Seal(key string, plain []byte) ([]byte, error) {
	out := make([]byte, 1+chacha20poly1305.NonceSizeX, 1+chacha20poly1305.NonceSizeX+len(plain)+k.aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, err
	}
	return k.aead.Seal(out, out[1:], plain, []byte(key)), nil
}

// ErrSealed is wrapped by Open's error for a value that is not sealed with this key
// for that etcd key (another cluster's key, another key's value, or altered).
var ErrSealed = errors.New("not sealed with the cluster's state key for this etcd key")

// Open opens a value read from etcd under key.
func (k *StateKey) Open(key string, sealed []byte) ([]byte, error) {
	n := 1 + chacha20poly1305.NonceSizeX
	if len(sealed) < n+k.aead.Overhead() || sealed[0] != sealVersion {
		return nil, fmt.Errorf("%s: %w (malformed)", key, ErrSealed)
	}
	plain, err := k.aead.Open(nil, sealed[1:n], sealed[n:], []byte(key))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, ErrSealed)
	}
	return plain, nil
}
