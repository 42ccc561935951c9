package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/ike"
	"github.com/mobikevpn/mobikevpn/internal/config"
	"github.com/mobikevpn/mobikevpn/wire"
)

// The key log writes secrets in the clear: it must stop when the configuration says
// so, and it must write only to the files the operator meant, readable by us alone.

const keylogTestYAML = `tun: { name: mvpn0 }
secrets: [{ ids: [gw.example.org], psk: "0123456789abcdef0123" }]
connections:
  rw:
    local: { auth: psk, id: gw.example.org }
    remote: { auth: psk }
    children: { net: {} }
`

// writeKeylogConfig writes the test configuration at path, with keylog: dir unless
// dir is "".
func writeKeylogConfig(t *testing.T, path, dir string) {
	t.Helper()
	y := keylogTestYAML
	if dir != "" {
		y = "keylog: " + dir + "\n" + y
	}
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
}

// newKeylogDaemon is the part of a daemon that reload and the key log use: the
// configuration from path, the engine, the key log as Run opens it, and a log.
func newKeylogDaemon(t *testing.T, path string) (*daemon, *bytes.Buffer) {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	icfg, err := ikeConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	icfg.Logger = log
	engine, err := ike.New(icfg)
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{cfg: cfg, log: log, engine: engine}
	if cfg.Keylog != "" {
		if d.keys, err = newKeylog(cfg.Keylog); err != nil {
			t.Fatal(err)
		}
	}
	return d, &logs
}

// ikeKeys is the key log entry of an IKE SA whose SPIs are both spi.
func ikeKeys(spi uint64) ike.IKEKeysLog {
	return ike.IKEKeysLog{
		SPIi: spi, SPIr: spi,
		Suite: ikecrypto.IKESuite{Encr: wire.ENCR_AES_GCM_16, EncrKeyBits: 128},
		SKei:  []byte{1}, SKer: []byte{2},
	}
}

// keyLines returns the lines of dir/name, nil if it does not exist.
func keyLines(t *testing.T, dir, name string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// TestKeylogReload: a reload that moves the key log writes to the new folder only; one
// that removes keylog: stops writing keys, and says so.
func TestKeylogReload(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	path := filepath.Join(dir, "gw.yaml")
	writeKeylogConfig(t, path, a)
	d, logs := newKeylogDaemon(t, path)
	d.apply([]ike.Action{ikeKeys(1)})
	if l := keyLines(t, a, "ikev2_decryption_table"); len(l) != 1 {
		t.Fatalf("first folder: %q", l)
	}

	writeKeylogConfig(t, path, b)
	d.reload()
	d.apply([]ike.Action{ikeKeys(2)})
	if l := keyLines(t, a, "ikev2_decryption_table"); len(l) != 1 {
		t.Errorf("the old folder still gets keys after the reload moved the key log: %q", l)
	}
	if l := keyLines(t, b, "ikev2_decryption_table"); len(l) != 1 || !strings.HasPrefix(l[0], "0000000000000002,") {
		t.Errorf("the new folder: %q", l)
	}
	if !strings.Contains(logs.String(), b) {
		t.Errorf("the move is not logged:\n%s", logs)
	}

	logs.Reset()
	writeKeylogConfig(t, path, "")
	d.reload()
	d.apply([]ike.Action{ikeKeys(3)})
	for _, f := range []string{a, b} {
		if l := keyLines(t, f, "ikev2_decryption_table"); len(l) != 1 {
			t.Errorf("%s: keys written after keylog: was removed: %q", f, l)
		}
	}
	if !strings.Contains(logs.String(), "key log is off") {
		t.Errorf("stopping the key log is not logged:\n%s", logs)
	}
}

// TestKeylogRefusesSymlinks: a symbolic link planted in the folder does not make us
// write keys to another file, existing or not.
func TestKeylogRefusesSymlinks(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	k, err := newKeylog(dir)
	if err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	victim := filepath.Join(other, "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(other, "created")
	mustKL(t, os.Symlink(victim, filepath.Join(dir, "esp_sa")))
	mustKL(t, os.Symlink(dangling, filepath.Join(dir, "ikev2_decryption_table")))

	a := netip.MustParseAddr("192.0.2.10")
	err = k.espSA(a, a, 0x1234, ikecrypto.ESPSuite{Encr: wire.ENCR_AES_GCM_16, EncrKeyBits: 128}, ike.ChildKeys{Encr: []byte{0xbb}})
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("esp_sa through a symbolic link: %v", err)
	}
	if err := k.ikeSA(ikeKeys(1)); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("ikev2_decryption_table through a symbolic link: %v", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("keys written through the link: %q", b)
	}
	if _, err := os.Lstat(dangling); !os.IsNotExist(err) {
		t.Errorf("the link's target was created: %v", err)
	}
	// At startup too.
	if _, err := newKeylog(dir); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("newKeylog with symbolic links in the folder: %v", err)
	}
}

// TestKeylogRefusesLoosePermissions: a folder others may write to (they could swap the
// files), a folder or file that belongs to someone else, and a key file others may
// read are refused, at startup and at every write.
func TestKeylogRefusesLoosePermissions(t *testing.T) {
	mkdir := func(mode fs.FileMode) string {
		dir := filepath.Join(t.TempDir(), "keys")
		mustKL(t, os.Mkdir(dir, 0o700))
		mustKL(t, os.Chmod(dir, mode))
		return dir
	}
	for _, mode := range []fs.FileMode{0o720, 0o702, 0o777, 0o777 | fs.ModeSticky} {
		if _, err := newKeylog(mkdir(mode)); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
			t.Errorf("folder mode %v: %v", mode, err)
		}
	}
	// Group and others may read or enter the folder: the files are still 0600.
	if _, err := newKeylog(mkdir(0o755)); err != nil {
		t.Errorf("folder mode 0755: %v", err)
	}
	for _, mode := range []fs.FileMode{0o640, 0o604, 0o666} {
		dir := mkdir(0o700)
		mustKL(t, os.WriteFile(filepath.Join(dir, "esp_sa"), nil, 0o600))
		mustKL(t, os.Chmod(filepath.Join(dir, "esp_sa"), mode))
		if _, err := newKeylog(dir); err == nil || !strings.Contains(err.Error(), "wider than 0600") {
			t.Errorf("existing esp_sa with mode %v: %v", mode, err)
		}
	}
	if os.Geteuid() == 0 {
		const nobody = 65534
		dir := mkdir(0o700)
		mustKL(t, os.Chown(dir, nobody, nobody))
		if _, err := newKeylog(dir); err == nil || !strings.Contains(err.Error(), "owned by") {
			t.Errorf("folder owned by uid %d: %v", nobody, err)
		}
		dir = mkdir(0o700)
		mustKL(t, os.WriteFile(filepath.Join(dir, "ikev2_decryption_table"), nil, 0o600))
		mustKL(t, os.Chown(filepath.Join(dir, "ikev2_decryption_table"), nobody, nobody))
		if _, err := newKeylog(dir); err == nil || !strings.Contains(err.Error(), "owned by") {
			t.Errorf("key file owned by uid %d: %v", nobody, err)
		}
	} else {
		t.Log("not root: the ownership cases need chown")
	}

	// Every write checks again: nothing is written once the folder or file is loose.
	dir := mkdir(0o700)
	k, err := newKeylog(dir)
	if err != nil {
		t.Fatal(err)
	}
	mustKL(t, k.ikeSA(ikeKeys(1)))
	mustKL(t, os.Chmod(dir, 0o777))
	if err := k.ikeSA(ikeKeys(2)); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("write into a folder with mode 0777: %v", err)
	}
	mustKL(t, os.Chmod(dir, 0o700))
	mustKL(t, os.Chmod(filepath.Join(dir, "ikev2_decryption_table"), 0o644))
	if err := k.ikeSA(ikeKeys(3)); err == nil || !strings.Contains(err.Error(), "wider than 0600") {
		t.Errorf("write into a file with mode 0644: %v", err)
	}
	if l := keyLines(t, dir, "ikev2_decryption_table"); len(l) != 1 {
		t.Errorf("written despite the loose permissions: %q", l)
	}
}

// TestKeylogReloadRefusesLooseFolder: a reload to a folder the key log refuses is
// refused as a whole, and the running key log goes on.
func TestKeylogReloadRefusesLooseFolder(t *testing.T) {
	dir := t.TempDir()
	a, loose := filepath.Join(dir, "a"), filepath.Join(dir, "loose")
	mustKL(t, os.Mkdir(loose, 0o700))
	mustKL(t, os.Chmod(loose, 0o777))
	path := filepath.Join(dir, "gw.yaml")
	writeKeylogConfig(t, path, a)
	d, logs := newKeylogDaemon(t, path)
	writeKeylogConfig(t, path, loose)
	d.reload()
	d.apply([]ike.Action{ikeKeys(1)})
	if l := keyLines(t, loose, "ikev2_decryption_table"); l != nil {
		t.Errorf("keys written to a folder with mode 0777: %q", l)
	}
	if l := keyLines(t, a, "ikev2_decryption_table"); len(l) != 1 {
		t.Errorf("the running key log stopped: %q", l)
	}
	if !strings.Contains(logs.String(), "reload failed") || !strings.Contains(logs.String(), "writable by group or others") {
		t.Errorf("the refusal is not logged:\n%s", logs)
	}
}

// TestKeylogStartupRefusal: at startup a refused key log folder is a configuration
// error (the command exits 2), naming the file and the key.
func TestKeylogStartupRefusal(t *testing.T) {
	dir := t.TempDir()
	loose := filepath.Join(dir, "loose")
	mustKL(t, os.Mkdir(loose, 0o700))
	mustKL(t, os.Chmod(loose, 0o777))
	path := filepath.Join(dir, "gw.yaml")
	writeKeylogConfig(t, path, loose)
	cfg, err := config.Load(path)
	mustKL(t, err)
	_, err = openKeylog(cfg)
	var ce *config.Error
	if !errors.As(err, &ce) || ce.File != path || ce.Key != "keylog" || !strings.Contains(ce.Msg, "writable by group or others") {
		t.Errorf("openKeylog: %v (%T)", err, err)
	}
}

func mustKL(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// keylogESPCases are ESP suites with Wireshark's names for them and key lengths as the
// IKE side derives them (encryption key with its salt or nonce, integrity key).
var keylogESPCases = []struct {
	s             ikecrypto.ESPSuite
	encr, integ   string
	encrLen, iLen int
}{
	{ikecrypto.ESPSuite{Encr: wire.ENCR_AES_GCM_16, EncrKeyBits: 128}, "AES-GCM with 16 octet ICV [RFC4106]", "NULL", 20, 0},
	{ikecrypto.ESPSuite{Encr: wire.ENCR_AES_GCM_8, EncrKeyBits: 128}, "AES-GCM with 8 octet ICV [RFC4106]", "NULL", 20, 0},
	{ikecrypto.ESPSuite{Encr: wire.ENCR_AES_GCM_12, EncrKeyBits: 256}, "AES-GCM with 12 octet ICV [RFC4106]", "NULL", 36, 0},
	{ikecrypto.ESPSuite{Encr: wire.ENCR_AES_CBC, EncrKeyBits: 128, Integ: wire.AUTH_HMAC_SHA1_96}, "AES-CBC [RFC3602]", "HMAC-SHA-1-96 [RFC2404]", 16, 20},
	{ikecrypto.ESPSuite{Encr: wire.ENCR_AES_CBC, EncrKeyBits: 256, Integ: wire.AUTH_HMAC_SHA2_256_128}, "AES-CBC [RFC3602]", "HMAC-SHA-256-128 [RFC4868]", 32, 32},
	{ikecrypto.ESPSuite{Encr: wire.ENCR_AES_CTR, EncrKeyBits: 128, Integ: wire.AUTH_HMAC_SHA1_96}, "AES-CTR [RFC3686]", "HMAC-SHA-1-96 [RFC2404]", 20, 20},
	{ikecrypto.ESPSuite{Encr: wire.ENCR_AES_CTR, EncrKeyBits: 192, Integ: wire.AUTH_HMAC_SHA2_384_192}, "AES-CTR [RFC3686]", "HMAC-SHA-384-192 [RFC4868]", 28, 48},
	{ikecrypto.ESPSuite{Encr: wire.ENCR_AES_CTR, EncrKeyBits: 256, Integ: wire.AUTH_HMAC_SHA2_512_256}, "AES-CTR [RFC3686]", "HMAC-SHA-512-256 [RFC4868]", 36, 64},
}

// keylogIKECases are IKE suites with Wireshark's names and the SK_e and SK_a lengths.
var keylogIKECases = []struct {
	s             ikecrypto.IKESuite
	encr, integ   string
	encrLen, iLen int
}{
	{ikecrypto.IKESuite{Encr: wire.ENCR_AES_CBC, EncrKeyBits: 128, Integ: wire.AUTH_HMAC_SHA1_96}, "AES-CBC-128 [RFC3602]", "HMAC_SHA1_96 [RFC2404]", 16, 20},
	{ikecrypto.IKESuite{Encr: wire.ENCR_AES_CTR, EncrKeyBits: 128, Integ: wire.AUTH_HMAC_SHA1_96}, "AES-CTR-128 [RFC5930]", "HMAC_SHA1_96 [RFC2404]", 20, 20},
	{ikecrypto.IKESuite{Encr: wire.ENCR_AES_CTR, EncrKeyBits: 192, Integ: wire.AUTH_HMAC_SHA2_256_128}, "AES-CTR-192 [RFC5930]", "HMAC_SHA2_256_128 [RFC4868]", 28, 32},
	{ikecrypto.IKESuite{Encr: wire.ENCR_AES_CTR, EncrKeyBits: 256, Integ: wire.AUTH_HMAC_SHA2_512_256}, "AES-CTR-256 [RFC5930]", "HMAC_SHA2_512_256 [RFC4868]", 36, 64},
	{ikecrypto.IKESuite{Encr: wire.ENCR_AES_GCM_8, EncrKeyBits: 128}, "AES-GCM-128 with 8 octet ICV [RFC5282]", "NONE [RFC4306]", 20, 0},
	{ikecrypto.IKESuite{Encr: wire.ENCR_AES_GCM_12, EncrKeyBits: 192}, "AES-GCM-192 with 12 octet ICV [RFC5282]", "NONE [RFC4306]", 28, 0},
	{ikecrypto.IKESuite{Encr: wire.ENCR_AES_GCM_16, EncrKeyBits: 256}, "AES-GCM-256 with 16 octet ICV [RFC5282]", "NONE [RFC4306]", 36, 0},
	{ikecrypto.IKESuite{Encr: wire.ENCR_AES_CCM_8, EncrKeyBits: 128}, "AES-CCM-128 with 8 octet ICV [RFC5282]", "NONE [RFC4306]", 19, 0},
	{ikecrypto.IKESuite{Encr: wire.ENCR_AES_CCM_12, EncrKeyBits: 192}, "AES-CCM-192 with 12 octet ICV [RFC5282]", "NONE [RFC4306]", 27, 0},
	{ikecrypto.IKESuite{Encr: wire.ENCR_AES_CCM_16, EncrKeyBits: 256}, "AES-CCM-256 with 16 octet ICV [RFC5282]", "NONE [RFC4306]", 35, 0},
	{ikecrypto.IKESuite{Encr: wire.ENCR_AES_CCM_16, EncrKeyBits: 128}, "AES-CCM-128 with 16 octet ICV [RFC5282]", "NONE [RFC4306]", 19, 0},
}

// fill is n bytes of b.
func fill(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }

// writeKeylogCases writes a line for every case into a new key log in dir and returns
// the lines expected in ikev2_decryption_table and esp_sa.
func writeKeylogCases(t *testing.T, dir string) (ikeLines, espLines []string) {
	t.Helper()
	k, err := newKeylog(dir)
	mustKL(t, err)
	for i, c := range keylogIKECases {
		a := ike.IKEKeysLog{SPIi: uint64(i + 1), SPIr: 0xfeed, Suite: c.s,
			SKei: fill(c.encrLen, 1), SKer: fill(c.encrLen, 2), SKai: fill(c.iLen, 3), SKar: fill(c.iLen, 4)}
		mustKL(t, k.ikeSA(a))
		ikeLines = append(ikeLines, fmt.Sprintf("%016x,000000000000feed,%x,%x,%q,%x,%x,%q",
			i+1, a.SKei, a.SKer, c.encr, a.SKai, a.SKar, c.integ))
	}
	src, dst := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("198.51.100.7")
	for i, c := range keylogESPCases {
		keys := ike.ChildKeys{Encr: fill(c.encrLen, 5), Integ: fill(c.iLen, 6)}
		mustKL(t, k.espSA(src, dst, uint32(0x1000+i), c.s, keys))
		espLines = append(espLines, fmt.Sprintf(`"IPv4","192.0.2.10","198.51.100.7","0x%08x",%q,"0x%x",%q,"0x%x"`,
			0x1000+i, c.encr, keys.Encr, c.integ, keys.Integ))
	}
	return ikeLines, espLines
}

// TestKeylogAlgorithmNames: each line names the algorithms as Wireshark does (tshark
// 4.x: packet-isakmp.c's vs_ikev2_encr_algs and vs_ikev2_auth_algs, packet-ipsec.c's
// esp_encryption_type_vals and esp_authentication_type_vals), for the legacy
// transforms of issue 18 too. Wireshark decrypts no AES-CCM ESP and refuses a whole
// esp_sa file with a name it does not know, so an AES-CCM Child SA gets no line, and
// an error that says why.
func TestKeylogAlgorithmNames(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	ikeLines, espLines := writeKeylogCases(t, dir)
	if got := keyLines(t, dir, "ikev2_decryption_table"); !slices.Equal(got, ikeLines) {
		t.Errorf("ikev2_decryption_table:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(ikeLines, "\n"))
	}
	if got := keyLines(t, dir, "esp_sa"); !slices.Equal(got, espLines) {
		t.Errorf("esp_sa:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(espLines, "\n"))
	}

	k, err := newKeylog(dir)
	mustKL(t, err)
	a := netip.MustParseAddr("192.0.2.10")
	for _, encr := range []uint16{wire.ENCR_AES_CCM_8, wire.ENCR_AES_CCM_12, wire.ENCR_AES_CCM_16} {
		err := k.espSA(a, a, 0xcc, ikecrypto.ESPSuite{Encr: encr, EncrKeyBits: 128}, ike.ChildKeys{Encr: fill(19, 7)})
		if err == nil || !strings.Contains(err.Error(), "no esp_sa line") {
			t.Errorf("AES-CCM transform %d: %v", encr, err)
		}
	}
	if got := keyLines(t, dir, "esp_sa"); len(got) != len(espLines) {
		t.Errorf("esp_sa got lines for AES-CCM: %q", got[len(espLines):])
	}
	if err := k.ikeSA(ike.IKEKeysLog{SPIi: 9, Suite: ikecrypto.IKESuite{Encr: wire.ENCR_3DES}}); err == nil {
		t.Error("a line for an IKE SA with an encryption algorithm Wireshark has no name for")
	}
}

// TestKeylogLoadsInTshark hands the key log files to tshark, where it is installed:
// it loads them only if every name is one of its own and every key has the length
// its algorithm takes (checked for the IKE table as it loads).
func TestKeylogLoadsInTshark(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("no tshark")
	}
	home := t.TempDir()
	writeKeylogCases(t, filepath.Join(home, "wireshark"))
	// An empty capture (pcap header, raw IP).
	pcap := filepath.Join(home, "empty.pcap")
	mustKL(t, os.WriteFile(pcap, []byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 101, 0, 0, 0}, 0o600))
	run := func() ([]byte, error) {
		cmd := exec.Command(tshark, "-r", pcap)
		cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+home)
		return cmd.CombinedOutput()
	}
	out, err := run()
	if err != nil || strings.Contains(string(out), "Error loading table") {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	// The check works: a name tshark does not know is refused.
	f, err := os.OpenFile(filepath.Join(home, "wireshark", "esp_sa"), os.O_APPEND|os.O_WRONLY, 0)
	mustKL(t, err)
	fmt.Fprintln(f, `"IPv4","192.0.2.10","198.51.100.7","0x00000001","AES-CCM with 8 octet ICV [RFC4309]","0x00","NULL",""`)
	mustKL(t, f.Close())
	if out, _ := run(); !strings.Contains(string(out), "Error loading table") {
		t.Fatalf("tshark took an unknown algorithm name:\n%s", out)
	}
}
