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

// The names below are Wireshark's: the values of the ikev2_decryption_table and esp_sa
// tables, as epan/dissectors/packet-isakmp.c (vs_ikev2_encr_algs, vs_ikev2_auth_algs)
// and packet-ipsec.c (esp_encryption_type_vals, esp_authentication_type_vals) spell
// them. tshark 4.0 knows all but the ChaCha20-Poly1305 ones, which came later
// (TestKeylogLoadsInTshark loads the others into the tshark installed). A name Wireshark
// does not know makes it refuse the whole file, so an algorithm without one gets no line.

// ikeEncrName is Wireshark's name for the IKE SA's encryption algorithm, "" if it has
// none.
func ikeEncrName(s ikecrypto.IKESuite) string {
	switch s.Encr {
	case wire.ENCR_AES_CBC:
		return fmt.Sprintf("AES-CBC-%d [RFC3602]", s.EncrKeyBits)
	case wire.ENCR_AES_CTR:
		return fmt.Sprintf("AES-CTR-%d [RFC5930]", s.EncrKeyBits)
	case wire.ENCR_AES_GCM_8, wire.ENCR_AES_GCM_12, wire.ENCR_AES_GCM_16:
		return fmt.Sprintf("AES-GCM-%d with %d octet ICV [RFC5282]", s.EncrKeyBits, aeadICV(s.Encr))
	case wire.ENCR_AES_CCM_8, wire.ENCR_AES_CCM_12, wire.ENCR_AES_CCM_16:
		return fmt.Sprintf("AES-CCM-%d with %d octet ICV [RFC5282]", s.EncrKeyBits, aeadICV(s.Encr))
	case wire.ENCR_CHACHA20_POLY1305:
		return "ChaCha20-Poly1305 [RFC7634]"
	}
	return ""
}

// aeadICV is the ICV length of an AES-GCM or AES-CCM transform: 8, 12 or 16 octets
// (the IANA numbers go up in that order from ENCR_AES_CCM_8 and ENCR_AES_GCM_8).
func aeadICV(encr uint16) int {
	if encr >= wire.ENCR_AES_GCM_8 {
		return 8 + 4*int(encr-wire.ENCR_AES_GCM_8)
	}
	return 8 + 4*int(encr-wire.ENCR_AES_CCM_8)
}

func ikeIntegName(id uint16) string {
	switch id {
	case wire.AUTH_HMAC_SHA1_96:
		return "HMAC_SHA1_96 [RFC2404]"
	case wire.AUTH_HMAC_SHA2_256_128:
		return "HMAC_SHA2_256_128 [RFC4868]"
	case wire.AUTH_HMAC_SHA2_384_192:
		return "HMAC_SHA2_384_192 [RFC4868]"
	case wire.AUTH_HMAC_SHA2_512_256:
		return "HMAC_SHA2_512_256 [RFC4868]"
	}
	return "NONE [RFC4306]"
}

// espEncrName is Wireshark's name for an ESP encryption algorithm, "" if it has none:
// it decrypts no AES-CCM ESP (its esp_sa table has no AES-CCM entry).
func espEncrName(s ikecrypto.ESPSuite) string {
	switch s.Encr {
	case wire.ENCR_AES_CBC:
		return "AES-CBC [RFC3602]"
	case wire.ENCR_AES_CTR:
		return "AES-CTR [RFC3686]"
	case wire.ENCR_AES_GCM_8, wire.ENCR_AES_GCM_12, wire.ENCR_AES_GCM_16:
		return fmt.Sprintf("AES-GCM with %d octet ICV [RFC4106]", aeadICV(s.Encr))
	case wire.ENCR_CHACHA20_POLY1305:
		return "ChaCha20 with Poly1305 [RFC7634]"
	}
	return ""
}

func espIntegName(id uint16) string {
	switch id {
	case wire.AUTH_HMAC_SHA1_96:
		return "HMAC-SHA-1-96 [RFC2404]"
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
	encr := ikeEncrName(a.Suite)
	if encr == "" {
		return fmt.Errorf("no ikev2_decryption_table line for IKE SA %016x/%016x: Wireshark has no name for encryption transform %d",
			a.SPIi, a.SPIr, a.Suite.Encr)
	}
	line := fmt.Sprintf("%016x,%016x,%x,%x,%q,%x,%x,%q",
		a.SPIi, a.SPIr, a.SKei, a.SKer, encr, a.SKai, a.SKar, ikeIntegName(a.Suite.Integ))
	return k.appendLine("ikev2_decryption_table", line)
}

// espSA writes one esp_sa line: ESP from src to dst with spi. For an algorithm Wireshark
// cannot decrypt (AES-CCM) it writes nothing and says so.
func (k *keylog) espSA(src, dst netip.Addr, spi uint32, s ikecrypto.ESPSuite, keys ike.ChildKeys) error {
	encr := espEncrName(s)
	if encr == "" {
		return fmt.Errorf("no esp_sa line for SPI %08x: Wireshark does not decrypt ESP with encryption transform %d", spi, s.Encr)
	}
	family := "IPv4"
	if src.Is6() {
		family = "IPv6"
	}
	line := fmt.Sprintf("%q,%q,%q,\"0x%08x\",%q,\"0x%x\",%q,\"0x%x\"",
		family, src.String(), dst.String(), spi, encr, keys.Encr, espIntegName(s.Integ), keys.Integ)
	return k.appendLine("esp_sa", line)
}
