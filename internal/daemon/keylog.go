package daemon

import (
	"fmt"
	"net/netip"
	"os"
	"sync"

	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/ike"
	"github.com/mobikevpn/mobikevpn/internal/config"
	"github.com/mobikevpn/mobikevpn/wire"
)

// keylog appends IKE and ESP keys to Wireshark's ikev2_decryption_table and esp_sa
// files (the UAT formats strongSwan's save-keys plugin also writes), for debugging with
// tshark. Off unless the operator configured a folder.
//
// Each line opens its file anew, so nothing stays open between lines: dropping the
// keylog stops it. Every open checks again, on Unix on the opened folder and file
// (keylog_unix.go): the folder must belong to us or root and be writable by us alone,
// a key file must be a regular file of ours with mode 0600 or narrower and one link,
// and a symbolic link in place of a key file is never followed (O_NOFOLLOW). Whatever
// fails these checks is refused, not repaired: nothing is written and the caller logs
// the error. On Windows only the symbolic link check is made (keylog_other.go).
type keylog struct {
	mu  sync.Mutex
	dir string
}

// keyFiles are the files of the key log folder.
var keyFiles = []string{"ikev2_decryption_table", "esp_sa"}

// newKeylog creates the folder dir (mode 0700) if needed and checks it and the key
// files already in it.
func newKeylog(dir string) (*keylog, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the key log folder: %w", err)
	}
	if err := checkKeyFolder(dir); err != nil {
		return nil, err
	}
	return &keylog{dir: dir}, nil
}

// openKeylog is newKeylog for cfg's keylog folder, with a refusal reported as a
// configuration error (exit 2 at startup).
func openKeylog(cfg *config.Config) (*keylog, error) {
	k, err := newKeylog(cfg.Keylog)
	if err != nil {
		return nil, &config.Error{File: cfg.Path, Key: "keylog", Msg: err.Error()}
	}
	return k, nil
}

// reloadKeylog checks the key log of the reloaded configuration cfg and returns what
// puts it in place, to be called once the rest of the reload succeeded: the key log
// stops if cfg has no keylog:, moves if its folder changed, starts if it was off. A
// folder that newKeylog refuses makes the reload fail.
func (d *daemon) reloadKeylog(cfg *config.Config) (func(), error) {
	if cfg.Keylog == "" {
		return func() {
			if d.keys != nil {
				d.log.Info("key log is off: no more keys are written", "dir", d.keys.dir)
				d.keys = nil
			}
		}, nil
	}
	k, err := openKeylog(cfg)
	if err != nil {
		return nil, err
	}
	return func() {
		switch {
		case d.keys == nil:
			d.log.Warn("key log is on: IKE and ESP keys are written in the clear", "dir", k.dir)
		case d.keys.dir != k.dir:
			d.log.Warn("key log moved: IKE and ESP keys are now written in the clear to another folder", "dir", k.dir, "old_dir", d.keys.dir)
		}
		d.keys = k
	}, nil
}

func (k *keylog) appendLine(name, line string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	f, err := openKeyFile(k.dir, name)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(line + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ikeEncrName is Wireshark's name for the IKE SA's encryption algorithm.
func ikeEncrName(s ikecrypto.IKESuite) string {
	switch s.Encr {
	case wire.ENCR_AES_CBC:
		return fmt.Sprintf("AES-CBC-%d [RFC3602]", s.EncrKeyBits)
	case wire.ENCR_AES_GCM_16:
		return fmt.Sprintf("AES-GCM-%d with 16 octet ICV [RFC5282]", s.EncrKeyBits)
	case wire.ENCR_CHACHA20_POLY1305:
		return "ChaCha20-Poly1305 [RFC7634]"
	}
	return ""
}

func ikeIntegName(id uint16) string {
	switch id {
	case wire.AUTH_HMAC_SHA2_256_128:
		return "HMAC_SHA2_256_128 [RFC4868]"
	case wire.AUTH_HMAC_SHA2_384_192:
		return "HMAC_SHA2_384_192 [RFC4868]"
	case wire.AUTH_HMAC_SHA2_512_256:
		return "HMAC_SHA2_512_256 [RFC4868]"
	}
	return "NONE [RFC4306]"
}

func espEncrName(s ikecrypto.ESPSuite) string {
	switch s.Encr {
	case wire.ENCR_AES_CBC:
		return "AES-CBC [RFC3602]"
	case wire.ENCR_AES_GCM_16:
		return "AES-GCM with 16 octet ICV [RFC4106]"
	case wire.ENCR_CHACHA20_POLY1305:
		return "ChaCha20 with Poly1305 [RFC7634]"
	}
	return ""
}

func espIntegName(id uint16) string {
	switch id {
	case wire.AUTH_HMAC_SHA2_256_128:
		return "HMAC-SHA-256-128 [RFC4868]"
	case wire.AUTH_HMAC_SHA2_384_192:
		return "HMAC-SHA-384-192 [RFC4868]"
	case wire.AUTH_HMAC_SHA2_512_256:
		return "HMAC-SHA-512-256 [RFC4868]"
	}
	return "NULL"
}

// ikeSA writes one line of ikev2_decryption_table.
func (k *keylog) ikeSA(a ike.IKEKeysLog) error {
	line := fmt.Sprintf("%016x,%016x,%x,%x,%q,%x,%x,%q",
		a.SPIi, a.SPIr, a.SKei, a.SKer, ikeEncrName(a.Suite), a.SKai, a.SKar, ikeIntegName(a.Suite.Integ))
	return k.appendLine("ikev2_decryption_table", line)
}

// espSA writes one esp_sa line: ESP from src to dst with spi.
func (k *keylog) espSA(src, dst netip.Addr, spi uint32, s ikecrypto.ESPSuite, keys ike.ChildKeys) error {
	family := "IPv4"
	if src.Is6() {
		family = "IPv6"
	}
	line := fmt.Sprintf("%q,%q,%q,\"0x%08x\",%q,\"0x%x\",%q,\"0x%x\"",
		family, src.String(), dst.String(), spi, espEncrName(s), keys.Encr, espIntegName(s.Integ), keys.Integ)
	return k.appendLine("esp_sa", line)
}
