package daemon

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/mobikevpn/mobikevpn/ike"
	ikecrypto "github.com/mobikevpn/mobikevpn/ike/crypto"
	"github.com/mobikevpn/mobikevpn/ike/wire"
)

// keylog appends IKE and ESP keys to Wireshark's ikev2_decryption_table and esp_sa
// files (the UAT formats strongSwan's save-keys plugin also writes), for debugging with
// tshark. Off unless the operator configured a folder.
type keylog struct {
	mu  sync.Mutex
	dir string
}

func newKeylog(dir string) (*keylog, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keylog: %w", err)
	}
	return &keylog{dir: dir}, nil
}

func (k *keylog) appendLine(name, line string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	f, err := os.OpenFile(filepath.Join(k.dir, name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
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
