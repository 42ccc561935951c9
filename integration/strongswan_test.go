package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The strongSwan peer for interop tests: Debian's charon (5.9) run by the test itself in
// one of the lab's namespaces, with its own strongswan.conf, a private /run (charon's
// pid file is fixed at /var/run/charon.pid), its vici socket and log in the test's
// folders, and ESP done in userspace by kernel-libipsec over its own TUN device
// (ipsec0). swanctl drives it over the vici socket; Unix sockets are reached by path,
// so swanctl runs outside the namespace.
//
// Debian packages: strongswan-charon (charon; pulls libstrongswan and
// strongswan-libcharon with most plugins), strongswan-swanctl (swanctl and the vici
// plugin), libcharon-extra-plugins (kernel-libipsec), libstrongswan-standard-plugins
// (openssl, gcm: only a Recommends of libstrongswan, so name it when installing with
// --no-install-recommends), strongswan-pki for certificates; util-linux (unshare).
//
// Facts worth knowing when reading its logs: with kernel-libipsec, charon always forces
// UDP encapsulation, as with encap = yes: its NAT_DETECTION_SOURCE_IP never matches, so
// we see it as behind a NAT (nat_remote) even without one. It logs "no acceptable
// ENCRYPTION_ALGORITHM found" for each of its configured proposals that does not match
// before the one that does; that line alone is no failure.

const (
	charonPath = "/usr/lib/ipsec/charon"
	swPlugins  = "/usr/lib/ipsec/plugins"
)

// swPluginList is what charon loads, in this order: kernel-libipsec must come before
// kernel-netlink so that its userspace IPsec backend is the one registered, and
// kernel-netlink still handles addresses and routes. openssl provides x25519, the ECP
// and MODP groups, AES-GCM and ChaCha20-Poly1305 (Debian builds neither the curve25519
// nor the chapoly plugin). Deliberately absent: resolve (it would rewrite the host's
// /etc/resolv.conf, which the namespaces share) and updown (no script is used).
var swPluginList = []string{
	"random", "nonce", "openssl", "pem", "pkcs1", "pkcs8", "x509", "pubkey",
	"revocation", "constraints", "gmp", "aes", "sha1", "sha2", "hmac", "kdf", "gcm",
	"kernel-libipsec", "kernel-netlink", "socket-default", "vici", "attr",
	"eap-identity", "eap-mschapv2", "eap-tls", "ccm", "ctr",
}

// swSecret is a PSK for a set of identities.
type swSecret struct {
	IDs []string
	PSK string
	EAP bool // an EAP secret (swanctl's eap-<name> section): PSK is the password
}

// swPool is a swanctl address pool.
type swPool struct {
	Name  string
	Addrs string // a subnet or a range
	DNS   []string
}

// swAuth is one round of authentication (local or remote) of a connection.
type swAuth struct {
	Auth  string // psk, pubkey, ...
	ID    string
	Extra []string // raw "key = value" lines, e.g. certs = gw.pem
}

// swChild is a Child SA configuration (swanctl children.<name>).
type swChild struct {
	Name              string
	LocalTS, RemoteTS []string // default: dynamic
	ESPProposals      []string // default: strongSwan's default
	RekeyTime         time.Duration
	LifeTime          time.Duration
	StartAction       string // none (default), trap, start
	DPDAction         string
	CloseAction       string
	Extra             []string
}

// swConn is a connection (swanctl connections.<name>).
type swConn struct {
	Name        string
	LocalAddrs  []string
	RemoteAddrs []string // default: %any
	Proposals   []string // IKE; default: strongSwan's default
	NoMobike    bool     // mobike = no (strongSwan's default is yes)
	Encap       bool     // encap = yes: fake NAT-D, force UDP encapsulation
	DPDDelay    time.Duration
	RekeyTime   time.Duration // IKE SA rekey
	ReauthTime  time.Duration
	OverTime    time.Duration
	VIPs        []string // initiator: vips = 0.0.0.0, ::
	Pools       []string // responder
	Local       swAuth
	Remote      swAuth
	Children    []swChild
	Extra       []string // raw lines inside the connection
}

// swOpts is a whole strongSwan instance: its swanctl.conf and charon settings.
type swOpts struct {
	Conns   []swConn
	Pools   []swPool
	Secrets []swSecret // default: labPSK for gw.example.org and alice@example.org
	Charon  []string   // raw lines inside charon { }, e.g. "make_before_break = yes"
	// LogLevels overrides the file logger's subsystem levels (e.g. "knl": 3).
	LogLevels map[string]int
	// Files are written next to swanctl.conf before it is loaded: path relative to
	// that folder (e.g. "x509ca/ca.pem", "private/gw.key", "x509/gw.pem") -> content.
	Files map[string][]byte
}

// strongswan is a running charon.
type strongswan struct {
	t       *testing.T
	name    string
	ns      string
	dir     string // its files: strongswan.conf, swanctl.conf, charon.log
	uri     string // the vici socket, unix://...
	conf    string
	swconf  string
	logPath string
	p       *proc
}

func swDuration(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) + "s" }

func swList(xs []string) string { return strings.Join(xs, ", ") }

// strongswanConf renders strongswan.conf.
func (s *strongswan) strongswanConf(o swOpts) string {
	levels := map[string]int{
		"dmn": 1, "mgr": 1, "ike": 2, "chd": 2, "job": 1, "cfg": 2, "knl": 2, "net": 1,
		"asn": 1, "enc": 1, "lib": 1, "esp": 1, "tls": 1, "imc": 0, "imv": 0, "pts": 0,
	}
	for k, v := range o.LogLevels {
		levels[k] = v
	}
	var b strings.Builder
	fmt.Fprintf(&b, "charon {\n")
	fmt.Fprintf(&b, "  load_modular = no\n  load = %s\n", strings.Join(swPluginList, " "))
	// Fail fast: the tests look for errors, not for patience.
	fmt.Fprintf(&b, "  retransmit_timeout = 1.0\n  retransmit_base = 1.4\n  retransmit_tries = 3\n")
	fmt.Fprintf(&b, "  install_routes = yes\n  install_virtual_ip = yes\n")
	fmt.Fprintf(&b, "  plugins {\n    vici { socket = %s }\n    kernel-libipsec { allow_peer_ts = no }\n  }\n", s.uri)
	fmt.Fprintf(&b, "  syslog { daemon { default = -1 } }\n")
	fmt.Fprintf(&b, "  filelog {\n    main {\n      path = %s\n      time_format = %%T\n      append = no\n      flush_line = yes\n      ike_name = yes\n", s.logPath)
	fmt.Fprintf(&b, "      default = 1\n")
	for _, k := range slices.Sorted(maps.Keys(levels)) {
		fmt.Fprintf(&b, "      %s = %d\n", k, levels[k])
	}
	fmt.Fprintf(&b, "    }\n  }\n")
	for _, line := range o.Charon {
		fmt.Fprintf(&b, "  %s\n", line)
	}
	fmt.Fprintf(&b, "}\n")
	// swanctl's own plugins (it parses credentials); without this it tries Debian's
	// full default list and complains about the missing ones.
	fmt.Fprintf(&b, "swanctl {\n  load = random nonce openssl pem pkcs1 pkcs8 x509 pubkey gmp aes sha1 sha2 hmac\n}\n")
	return b.String()
}

// swanctlConf renders swanctl.conf.
func swanctlConf(o swOpts) string {
	var b strings.Builder
	line := func(indent int, format string, args ...any) {
		b.WriteString(strings.Repeat("  ", indent))
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	line(0, "connections {")
	for _, c := range o.Conns {
		line(1, "%s {", c.Name)
		line(2, "version = 2")
		if len(c.LocalAddrs) > 0 {
			line(2, "local_addrs = %s", swList(c.LocalAddrs))
		}
		if len(c.RemoteAddrs) > 0 {
			line(2, "remote_addrs = %s", swList(c.RemoteAddrs))
		}
		if len(c.Proposals) > 0 {
			line(2, "proposals = %s", swList(c.Proposals))
		}
		if c.NoMobike {
			line(2, "mobike = no")
		}
		if c.Encap {
			line(2, "encap = yes")
		}
		if c.DPDDelay > 0 {
			line(2, "dpd_delay = %s", swDuration(c.DPDDelay))
		}
		if c.RekeyTime > 0 {
			line(2, "rekey_time = %s", swDuration(c.RekeyTime))
		}
		if c.ReauthTime > 0 {
			line(2, "reauth_time = %s", swDuration(c.ReauthTime))
		}
		if c.OverTime > 0 {
			line(2, "over_time = %s", swDuration(c.OverTime))
		}
		if len(c.VIPs) > 0 {
			line(2, "vips = %s", swList(c.VIPs))
		}
		if len(c.Pools) > 0 {
			line(2, "pools = %s", swList(c.Pools))
		}
		for _, x := range c.Extra {
			line(2, "%s", x)
		}
		for _, a := range []struct {
			name string
			a    swAuth
		}{{"local", c.Local}, {"remote", c.Remote}} {
			line(2, "%s {", a.name)
			if a.a.Auth != "" {
				line(3, "auth = %s", a.a.Auth)
			}
			if a.a.ID != "" {
				line(3, "id = %q", a.a.ID)
			}
			for _, x := range a.a.Extra {
				line(3, "%s", x)
			}
			line(2, "}")
		}
		line(2, "children {")
		for _, ch := range c.Children {
			line(3, "%s {", ch.Name)
			if len(ch.LocalTS) > 0 {
				line(4, "local_ts = %s", swList(ch.LocalTS))
			}
			if len(ch.RemoteTS) > 0 {
				line(4, "remote_ts = %s", swList(ch.RemoteTS))
			}
			if len(ch.ESPProposals) > 0 {
				line(4, "esp_proposals = %s", swList(ch.ESPProposals))
			}
			if ch.RekeyTime > 0 {
				line(4, "rekey_time = %s", swDuration(ch.RekeyTime))
			}
			if ch.LifeTime > 0 {
				line(4, "life_time = %s", swDuration(ch.LifeTime))
			}
			for _, kv := range [][2]string{{"start_action", ch.StartAction}, {"dpd_action", ch.DPDAction}, {"close_action", ch.CloseAction}} {
				if kv[1] != "" {
					line(4, "%s = %s", kv[0], kv[1])
				}
			}
			for _, x := range ch.Extra {
				line(4, "%s", x)
			}
			line(3, "}")
		}
		line(2, "}")
		line(1, "}")
	}
	line(0, "}")
	line(0, "pools {")
	for _, p := range o.Pools {
		line(1, "%s {", p.Name)
		line(2, "addrs = %s", p.Addrs)
		if len(p.DNS) > 0 {
			line(2, "dns = %s", swList(p.DNS))
		}
		line(1, "}")
	}
	line(0, "}")
	secrets := o.Secrets
	if secrets == nil {
		secrets = []swSecret{{IDs: []string{"gw.example.org", "alice@example.org"}, PSK: labPSK}}
	}
	line(0, "secrets {")
	for i, s := range secrets {
		if s.EAP {
			line(1, "eap-%d {", i+1)
		} else {
			line(1, "ike-%d {", i+1)
		}
		for j, id := range s.IDs {
			line(2, "id-%d = %q", j+1, id)
		}
		line(2, "secret = %q", s.PSK)
		line(1, "}")
	}
	line(0, "}")
	return b.String()
}

// startStrongSwan starts charon in namespace ns, loads o with swanctl and returns when
// it is ready. The process is stopped and its files dropped when the test ends; on
// failure the tail of its log is printed.
func startStrongSwan(l *lab, ns, name string, o swOpts) *strongswan {
	t := l.t
	t.Helper()
	if _, err := os.Stat(charonPath); err != nil {
		t.Fatalf("strongSwan is not installed (%v); ./scripts/test.sh installs strongswan-charon strongswan-swanctl libcharon-extra-plugins strongswan-pki", err)
	}
	for _, p := range swPluginList {
		if _, err := os.Stat(filepath.Join(swPlugins, "libstrongswan-"+p+".so")); err != nil {
			pkg := map[string]string{"openssl": "libstrongswan-standard-plugins", "gcm": "libstrongswan-standard-plugins",
				"kernel-libipsec": "libcharon-extra-plugins", "vici": "strongswan-swanctl",
				"eap-identity": "libcharon-extra-plugins", "ccm": "libstrongswan-extra-plugins", "ctr": "libstrongswan-extra-plugins", "eap-tls": "libcharon-extra-plugins", "eap-mschapv2": "libcharon-extauth-plugins"}[p]
			if pkg == "" {
				pkg = "libstrongswan or strongswan-libcharon"
			}
			t.Fatalf("strongSwan plugin %s is missing (Debian package %s): %v", p, pkg, err)
		}
	}
	if _, err := exec.LookPath("swanctl"); err != nil {
		t.Fatal("swanctl is not installed (package strongswan-swanctl)")
	}
	// The vici socket path must stay short (108 bytes for sun_path) whatever the
	// test's name: it gets a folder of its own under /tmp.
	sockDir, err := os.MkdirTemp("", "sw-")
	if err != nil {
		t.Fatal(err)
	}
	s := &strongswan{
		t: t, name: name, ns: ns,
		dir:     filepath.Join(l.dir, "strongswan-"+name),
		uri:     "unix://" + filepath.Join(sockDir, "charon.vici"),
		logPath: filepath.Join(l.dir, "strongswan-"+name, "charon.log"),
	}
	// swanctl reads credentials from folders next to swanctl.conf (x509, private, ...);
	// they exist, empty, so that --load-all does not report them missing. Tests with
	// certificates put their files there (swOpts.Files).
	for _, sub := range swCredDirs {
		if err := os.MkdirAll(filepath.Join(s.dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	s.conf = filepath.Join(s.dir, "strongswan.conf")
	s.swconf = filepath.Join(s.dir, "swanctl.conf")
	writeFile(t, s.conf, s.strongswanConf(o))
	s.writeSwanctl(o)
	// Registered before the lab's cleanup runs (cleanups run last-in first-out), so the
	// log is still there; charon itself is stopped by the lab's cleanup.
	t.Cleanup(func() {
		if t.Failed() {
			// Without the vici requests of the test's polling, which would crowd out the
			// IKE exchanges that explain a failure.
			t.Logf("strongSwan %s log (%s), last lines without vici requests:\n%s", name, s.logPath, lastLines(withoutVici(s.log()), 250))
		}
		os.RemoveAll(sockDir)
	})
	// unshare -m with a tmpfs on /run: a private /var/run/charon.pid, so that charon
	// does not refuse to start because of another instance (or a stale file), and
	// nothing is left behind. Every step execs, so the process is charon itself.
	s.p = l.start("charon-"+name, ns, "env", "STRONGSWAN_CONF="+s.conf,
		"unshare", "--mount", "--propagation", "private",
		"sh", "-c", "mount -t tmpfs -o mode=0755 tmpfs /run && exec "+charonPath)
	exited := false
	if !waitFor(10*time.Second, func() bool {
		select {
		case <-s.p.done:
			exited = true
			return true
		default:
		}
		_, err := s.swanctl("--stats")
		return err == nil
	}) || exited {
		t.Fatalf("charon %s did not open its vici socket (exited: %v):\n%s\n%s", name, exited, s.p.output(), s.log())
	}
	s.load()
	return s
}

// swCredDirs are the credential folders swanctl --load-all reads.
var swCredDirs = []string{"x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl", "pubkey",
	"private", "rsa", "ecdsa", "bliss", "pkcs8", "pkcs12"}

// writeSwanctl writes swanctl.conf and o.Files.
func (s *strongswan) writeSwanctl(o swOpts) {
	s.t.Helper()
	for rel, data := range o.Files {
		p := filepath.Join(s.dir, filepath.Clean(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			s.t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			s.t.Fatal(err)
		}
	}
	writeFile(s.t, s.swconf, swanctlConf(o))
}

// load (re)loads swanctl.conf.
func (s *strongswan) load() {
	s.t.Helper()
	out, err := s.swanctl("--load-all", "--noprompt", "--file", s.swconf)
	if err != nil || strings.Contains(out, "failed") {
		s.t.Fatalf("swanctl --load-all: %v\n%s\n%s", err, out, s.swconfText())
	}
}

func (s *strongswan) swconfText() string {
	b, _ := os.ReadFile(s.swconf)
	return string(b)
}

// swanctl runs swanctl against this charon and returns its combined output.
func (s *strongswan) swanctl(args ...string) (string, error) {
	cmd := exec.Command("swanctl", append(args, "--uri", s.uri)...)
	cmd.Env = append(os.Environ(), "STRONGSWAN_CONF="+s.conf)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// initiate runs swanctl --initiate --child child (of connection ike, if not empty) and
// waits for the result.
func (s *strongswan) initiate(ike, child string) (string, error) {
	args := []string{"--initiate", "--child", child, "--timeout", "15"}
	if ike != "" {
		args = append(args, "--ike", ike)
	}
	return s.swanctl(args...)
}

// mustInitiate initiates and fails the test if the SA does not come up.
func (s *strongswan) mustInitiate(ike, child string) time.Duration {
	s.t.Helper()
	start := time.Now()
	out, err := s.initiate(ike, child)
	took := time.Since(start)
	if err != nil || !strings.Contains(out, "initiate completed successfully") {
		s.t.Fatalf("swanctl --initiate --child %s: %v\n%s", child, err, lastLines(out, 40))
	}
	return took
}

// terminateIKE runs swanctl --terminate --ike name and waits for the peer's answer.
func (s *strongswan) terminateIKE(name string) (string, error) {
	return s.swanctl("--terminate", "--ike", name, "--timeout", "10")
}

// terminateChild runs swanctl --terminate --child name.
func (s *strongswan) terminateChild(name string) (string, error) {
	return s.swanctl("--terminate", "--child", name, "--timeout", "10")
}

func (s *strongswan) log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// withoutVici drops the lines charon logs for vici requests (the tests poll list-sas).
func withoutVici(log string) string {
	var out []string
	for _, ln := range strings.Split(log, "\n") {
		if !strings.Contains(ln, "vici") {
			out = append(out, ln)
		}
	}
	return strings.Join(out, "\n")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// swIKESA is an IKE SA as swanctl --list-sas reports it.
type swIKESA struct {
	Name     string
	KV       map[string]string   // every scalar: state, local-host, encr-alg, ...
	Lists    map[string][]string // local-vips, remote-vips, ...
	Children []swChildSA
}

// swChildSA is a Child SA as swanctl --list-sas reports it.
type swChildSA struct {
	Key   string // e.g. net-3
	KV    map[string]string
	Lists map[string][]string // local-ts, remote-ts
}

// Proposal is strongSwan's name of the negotiated IKE algorithms, as in its human
// list-sas output: e.g. AES_GCM_16_128/PRF_HMAC_SHA2_256/CURVE_25519.
func (sa swIKESA) Proposal() string { return swProposal(sa.KV, true) }

// Proposal is the Child SA's algorithms, e.g. AES_CBC_256/HMAC_SHA2_256_128 or
// AES_GCM_16_256/ESN when extended sequence numbers are on.
func (c swChildSA) Proposal() string { return swProposal(c.KV, false) }

func swProposal(kv map[string]string, ike bool) string {
	var parts []string
	e := kv["encr-alg"]
	if ks := kv["encr-keysize"]; ks != "" {
		e += "_" + ks
	}
	parts = append(parts, e)
	if v := kv["integ-alg"]; v != "" {
		parts = append(parts, v)
	}
	if v := kv["prf-alg"]; v != "" && ike {
		parts = append(parts, v)
	}
	if v := kv["dh-group"]; v != "" {
		parts = append(parts, v)
	}
	if kv["esn"] == "1" {
		parts = append(parts, "ESN")
	}
	return strings.Join(parts, "/")
}

// listSAs returns strongSwan's IKE SAs, parsed from swanctl --list-sas --pretty: the
// pretty form has one item per line, so values with spaces (distinguished names) stay
// whole, which --raw does not guarantee.
func (s *strongswan) listSAs() []swIKESA {
	s.t.Helper()
	out, err := s.swanctl("--list-sas", "--pretty", "--noblock")
	if err != nil {
		s.t.Fatalf("swanctl --list-sas: %v\n%s", err, out)
	}
	sas, err := parseListSAs(out)
	if err != nil {
		s.t.Fatalf("swanctl --list-sas output: %v\n%s", err, out)
	}
	return sas
}

// viciSection is a parsed vici message section.
type viciSection struct {
	name  string
	kv    map[string]string
	lists map[string][]string
	subs  []*viciSection
}

func newViciSection(name string) *viciSection {
	return &viciSection{name: name, kv: map[string]string{}, lists: map[string][]string{}}
}

// parseVici parses swanctl's --pretty dump of one or more vici messages into a root
// section whose subsections are the messages ("list-sa event", "list-sas reply").
func parseVici(out string) (*viciSection, error) {
	root := newViciSection("")
	stack := []*viciSection{root}
	inList, listKey := false, ""
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		ln := strings.TrimSpace(sc.Text())
		top := stack[len(stack)-1]
		switch {
		case ln == "":
		case inList:
			if ln == "]" {
				inList = false
			} else {
				top.lists[listKey] = append(top.lists[listKey], ln)
			}
		case ln == "}":
			if len(stack) < 2 {
				return nil, fmt.Errorf("line %d: unbalanced }", n)
			}
			stack = stack[:len(stack)-1]
		case strings.HasSuffix(ln, " {"):
			sec := newViciSection(strings.TrimSuffix(ln, " {"))
			top.subs = append(top.subs, sec)
			stack = append(stack, sec)
		case strings.HasSuffix(ln, " = ["):
			inList, listKey = true, strings.TrimSuffix(ln, " = [")
			top.lists[listKey] = []string{}
		case strings.Contains(ln, " = "):
			k, v, _ := strings.Cut(ln, " = ")
			top.kv[k] = v
		case len(stack) > 1:
			return nil, fmt.Errorf("line %d: unexpected %q", n, ln)
		default:
			// A human line outside any message (swanctl's own notes): not data.
		}
	}
	if len(stack) != 1 || inList {
		return nil, fmt.Errorf("truncated output")
	}
	return root, sc.Err()
}

// parseListSAs turns the list-sa events into IKE SAs.
func parseListSAs(out string) ([]swIKESA, error) {
	root, err := parseVici(out)
	if err != nil {
		return nil, err
	}
	var sas []swIKESA
	for _, msg := range root.subs {
		if msg.name != "list-sa event" {
			continue
		}
		for _, ike := range msg.subs {
			sa := swIKESA{Name: ike.name, KV: ike.kv, Lists: ike.lists}
			for _, sub := range ike.subs {
				if sub.name != "child-sas" {
					continue
				}
				for _, c := range sub.subs {
					sa.Children = append(sa.Children, swChildSA{Key: c.name, KV: c.kv, Lists: c.lists})
				}
			}
			sas = append(sas, sa)
		}
	}
	return sas, nil
}

// interopLab is tunnel_test.go's topology with strongSwan on one side:
//
//	client 192.0.2.10 / 2001:db8:1::10 -- router -- 198.51.100.1 / 2001:db8:2::1 gateway
//
// Whichever the gateway is, the protected network behind it is 198.18.0.0/24 and
// 2001:db8:ff::/64 with the gateway itself at 198.18.0.1 and 2001:db8:ff::1. mobikevpn's
// pool is 198.18.100.0/24 and 2001:db8:100::/64, strongSwan's 198.18.200.0/24, both with
// DNS server 198.18.0.53.
type interopLab struct {
	*tunnelLab
}

func newInteropLab(t *testing.T) *interopLab {
	return &interopLab{tunnelLab: newTunnelLab(t)}
}

// mvOpts parameterises a mobikevpn side. Empty fields take the defaults noted.
type mvOpts struct {
	Gateway      string   // client: the gateway's address; default 198.51.100.1
	Proposals    []string // default aes128gcm16-prfsha256-x25519
	ESPProposals []string // default aes128gcm16
	VIPs         []string // client: default [0.0.0.0]; ["-"] for none
	LocalTS      []string // default: gateway 198.18.0.0/24 + 2001:db8:ff::/64, client dynamic
	RemoteTS     []string // default: gateway dynamic, client 198.18.0.0/24
	Conn         []string // raw YAML lines inside the connection, e.g. "rekey_time: 10s"
	Child        []string // raw YAML lines inside the child
	Top          []string // raw YAML lines at the top level
	// Local and Remote replace the connection's authentication rounds (YAML flow maps,
	// e.g. `{ auth: pubkey, certs: [rsa-gw.pem], key: rsa-gw.key }`); default PSK.
	Local, Remote string
	// Children are raw YAML lines appended to the children section (more children, at
	// an indentation of 6 for their names).
	Children []string
	// GatewayAddrs are the gateway's local_addrs; default 198.51.100.1, 2001:db8:2::1.
	GatewayAddrs []string
	// Secrets are more entries of secrets (YAML flow maps), e.g. EAP passwords.
	Secrets []string
}

// mvAuth returns o's authentication rounds, or the PSK defaults given.
func (o mvOpts) mvAuth(local, remote string) (string, string) {
	if o.Local != "" {
		local = o.Local
	}
	if o.Remote != "" {
		remote = o.Remote
	}
	return local, remote
}

func mvYAMLList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = strconv.Quote(x)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func mvDefault(xs, def []string) []string {
	if len(xs) == 0 {
		return def
	}
	return xs
}

func prefixAll(xs []string, p string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = p + x
	}
	return out
}

func mvIndent(xs []string, n int) string {
	var b strings.Builder
	for _, x := range xs {
		b.WriteString(strings.Repeat(" ", n) + x + "\n")
	}
	return b.String()
}

// mvGatewayConfig is our gateway: connection rw, child net, pool rw.
func (l *interopLab) mvGatewayConfig(o mvOpts) string {
	local, remote := o.mvAuth(`{ auth: psk, id: gw.example.org }`, `{ auth: psk, id: "%any" }`)
	return fmt.Sprintf(`control: %s
log_level: debug
tun: { name: mvpn0, mtu: 1400, addrs: [198.18.0.1/24, "2001:db8:ff::1/64"] }
%ssecrets:
  - ids: [gw.example.org, alice@example.org]
    psk: %q
%spools:
  - name: rw
    addrs: [198.18.100.0/24, "2001:db8:100::/64"]
    dns: [198.18.0.53]
connections:
  rw:
    local_addrs: %s
    remote_addrs: ["%%any"]
    proposals: %s
    pools: [rw]
    local: %s
    remote: %s
%s    children:
      net:
        local_ts: %s
        remote_ts: %s
        esp_proposals: %s
%s%s`, l.gwSock, mvIndent(o.Top, 0), labPSK, mvIndent(prefixAll(o.Secrets, "- "), 2),
		mvYAMLList(mvDefault(o.GatewayAddrs, []string{"198.51.100.1", "2001:db8:2::1"})),
		mvYAMLList(mvDefault(o.Proposals, []string{"aes128gcm16-prfsha256-x25519"})),
		local, remote, mvIndent(o.Conn, 4),
		mvYAMLList(mvDefault(o.LocalTS, []string{"198.18.0.0/24", "2001:db8:ff::/64"})),
		mvYAMLList(mvDefault(o.RemoteTS, []string{"dynamic"})),
		mvYAMLList(mvDefault(o.ESPProposals, []string{"aes128gcm16"})),
		mvIndent(o.Child, 8), mvIndent(o.Children, 0))
}

// mvClientConfig is our client: connection home, child net, to gateway.
func (l *interopLab) mvClientConfig(gateway string, o mvOpts) string {
	vips := "    vips: " + mvYAMLList(mvDefault(o.VIPs, []string{"0.0.0.0"})) + "\n"
	if len(o.VIPs) == 1 && o.VIPs[0] == "-" {
		vips = ""
	}
	local, remote := o.mvAuth(`{ auth: psk, id: alice@example.org }`, `{ auth: psk, id: gw.example.org }`)
	return fmt.Sprintf(`control: %s
log_level: debug
tun: { name: mvpn0, mtu: 1400 }
%ssecrets:
  - ids: [gw.example.org, alice@example.org]
    psk: %q
%sconnections:
  home:
    remote_addrs: [%q]
    proposals: %s
%s    local: %s
    remote: %s
    start_action: none
%s    children:
      net:
        local_ts: %s
        remote_ts: %s
        esp_proposals: %s
%s%s`, l.clSock, mvIndent(o.Top, 0), labPSK, mvIndent(prefixAll(o.Secrets, "- "), 2), gateway,
		mvYAMLList(mvDefault(o.Proposals, []string{"aes128gcm16-prfsha256-x25519"})),
		vips, local, remote, mvIndent(o.Conn, 4),
		mvYAMLList(mvDefault(o.LocalTS, []string{"dynamic"})),
		mvYAMLList(mvDefault(o.RemoteTS, []string{"198.18.0.0/24"})),
		mvYAMLList(mvDefault(o.ESPProposals, []string{"aes128gcm16"})),
		mvIndent(o.Child, 8), mvIndent(o.Children, 0))
}

// startMV starts a mobikevpn daemon with config text in ns and waits for its socket.
func (l *interopLab) startMV(name, ns, sock, cfgText string) *proc {
	t := l.t
	t.Helper()
	cfg := filepath.Join(l.dir, name+".yaml")
	writeFile(t, cfg, cfgText)
	p := l.start(name, ns, binary(t), "run", "-c", cfg)
	if !waitFor(10*time.Second, func() bool { return status(t, sock) != nil }) {
		t.Fatalf("%s did not open its control socket:\n%s", name, p.output())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("mobikevpn %s log, last lines without control requests:\n%s", name, lastLines(withoutControl(p.output()), 200))
		}
	})
	return p
}

// mvGateway starts our gateway in the gateway namespace.
func (l *interopLab) mvGateway(o mvOpts) *proc {
	l.t.Helper()
	l.gwCfg = filepath.Join(l.dir, "gateway.yaml")
	return l.startMV("gateway", l.gw, l.gwSock, l.mvGatewayConfig(o))
}

// mvClient starts our client in the client namespace.
func (l *interopLab) mvClient(o mvOpts) *proc {
	l.t.Helper()
	l.clCfg = filepath.Join(l.dir, "client.yaml")
	gw := o.Gateway
	if gw == "" {
		gw = "198.51.100.1"
	}
	return l.startMV("client", l.cl, l.clSock, l.mvClientConfig(gw, o))
}

// mvUp runs `mobikevpn up NAME` on the daemon at sock.
func (l *interopLab) mvUp(sock, name string) (string, error) {
	out, err := exec.Command(binary(l.t), "up", name, "--control", sock).CombinedOutput()
	return string(out), err
}

// mvDown runs `mobikevpn down NAME` on the daemon at sock.
func (l *interopLab) mvDown(sock, name string) (string, error) {
	out, err := exec.Command(binary(l.t), "down", name, "--control", sock).CombinedOutput()
	return string(out), err
}

// swGatewayOpts is a strongSwan gateway for road warriors: connection rw with child
// net (198.18.0.0/24), pool rw (198.18.200.0/24, DNS 198.18.0.53).
func swGatewayOpts(ike, esp []string) swOpts {
	return swOpts{
		Conns: []swConn{{
			Name:       "rw",
			LocalAddrs: []string{"198.51.100.1", "2001:db8:2::1"},
			Proposals:  ike,
			Pools:      []string{"rw"},
			Local:      swAuth{Auth: "psk", ID: "gw.example.org"},
			Remote:     swAuth{Auth: "psk"},
			Children: []swChild{{
				Name:         "net",
				LocalTS:      []string{"198.18.0.0/24"},
				ESPProposals: esp,
			}},
		}},
		Pools: []swPool{{Name: "rw", Addrs: "198.18.200.0/24", DNS: []string{"198.18.0.53"}}},
	}
}

// swClientOpts is a strongSwan road warrior: connection home with child net to
// 198.18.0.0/24, asking for a virtual IPv4 address.
func swClientOpts(gateway string, ike, esp []string) swOpts {
	return swOpts{
		Conns: []swConn{{
			Name:        "home",
			RemoteAddrs: []string{gateway},
			Proposals:   ike,
			VIPs:        []string{"0.0.0.0"},
			Local:       swAuth{Auth: "psk", ID: "alice@example.org"},
			Remote:      swAuth{Auth: "psk", ID: "gw.example.org"},
			Children: []swChild{{
				Name:         "net",
				RemoteTS:     []string{"198.18.0.0/24"},
				ESPProposals: esp,
			}},
		}},
	}
}

// swGateway starts strongSwan as the gateway, with the protected network's addresses
// 198.18.0.1 and 2001:db8:ff::1 on its loopback device.
func (l *interopLab) swGateway(o swOpts) *strongswan {
	l.t.Helper()
	// No dummy device in every kernel: the loopback device holds them.
	l.exec(l.gw, "ip", "addr", "add", "198.18.0.1/32", "dev", "lo")
	l.exec(l.gw, "ip", "addr", "add", "2001:db8:ff::1/128", "dev", "lo")
	return startStrongSwan(l.lab, l.gw, "gateway", o)
}

// swClient starts strongSwan as the client.
func (l *interopLab) swClient(o swOpts) *strongswan {
	l.t.Helper()
	return startStrongSwan(l.lab, l.cl, "client", o)
}

// mvSA returns our daemon's only IKE SA from `status --json`, or nil if it has none;
// more than one fails the test.
func mvSA(t *testing.T, sock string) map[string]any {
	t.Helper()
	sas, _ := statusJSON(t, sock)["ike_sas"].([]any)
	switch len(sas) {
	case 0:
		return nil
	case 1:
		return sas[0].(map[string]any)
	}
	t.Fatalf("%d IKE SAs at %s, want at most 1: %v", len(sas), sock, sas)
	return nil
}

// mvChildren returns the child SAs of an IKE SA from status --json.
func mvChildren(sa map[string]any) []map[string]any {
	cs, _ := sa["child_sas"].([]any)
	out := make([]map[string]any, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.(map[string]any))
	}
	return out
}

// mvCount counts our daemon's IKE SAs and installed Child SAs.
func mvCount(t *testing.T, sock string) (ike, child int) {
	st := status(t, sock)
	if st == nil {
		return -1, -1
	}
	for _, sa := range st.IKESAs {
		ike++
		child += len(sa.ChildSAs)
	}
	return ike, child
}

// TestParseListSAs checks the list-sas parser on a captured dump (no root needed),
// including a value with spaces as distinguished names have.
func TestParseListSAs(t *testing.T) {
	const out = `list-sa event {
  home {
    uniqueid = 1
    state = ESTABLISHED
    local-host = 2001:db8:1::10
    local-port = 4500
    remote-id = C=CH, O=strongSwan Test, CN=gw.example.org
    initiator-spi = 64650f11821bee8a
    encr-alg = AES_GCM_16
    encr-keysize = 128
    prf-alg = PRF_HMAC_SHA2_256
    dh-group = CURVE_25519
    local-vips = [
      198.18.100.1
      2001:db8:100::1
    ]
    child-sas {
      net-1 {
        name = net
        state = INSTALLED
        encr-alg = AES_CBC
        encr-keysize = 256
        integ-alg = HMAC_SHA2_256_128
        esn = 1
        local-ts = [
          198.18.100.1/32
        ]
        remote-ts = [
          198.18.0.0/24
        ]
      }
    }
  }
}
list-sa event {
  other {
    state = CONNECTING
    child-sas {
    }
  }
}
list-sas reply {
}
`
	sas, err := parseListSAs(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(sas) != 2 || sas[0].Name != "home" || sas[1].Name != "other" || sas[1].KV["state"] != "CONNECTING" || len(sas[1].Children) != 0 {
		t.Fatalf("parsed %+v", sas)
	}
	sa := sas[0]
	if sa.KV["remote-id"] != "C=CH, O=strongSwan Test, CN=gw.example.org" || sa.KV["local-host"] != "2001:db8:1::10" {
		t.Errorf("scalars %v", sa.KV)
	}
	if fmt.Sprint(sa.Lists["local-vips"]) != "[198.18.100.1 2001:db8:100::1]" {
		t.Errorf("list %v", sa.Lists)
	}
	if sa.Proposal() != "AES_GCM_16_128/PRF_HMAC_SHA2_256/CURVE_25519" {
		t.Errorf("IKE proposal %s", sa.Proposal())
	}
	if len(sa.Children) != 1 || sa.Children[0].Key != "net-1" || sa.Children[0].KV["name"] != "net" {
		t.Fatalf("children %+v", sa.Children)
	}
	c := sa.Children[0]
	if c.Proposal() != "AES_CBC_256/HMAC_SHA2_256_128/ESN" || fmt.Sprint(c.Lists["remote-ts"]) != "[198.18.0.0/24]" {
		t.Errorf("child %s %v", c.Proposal(), c.Lists)
	}
	for _, bad := range []string{"list-sa event {\n  home {\n", "list-sa event {\n}\n}\n", "list-sa event {\n  x = [\n"} {
		if _, err := parseListSAs(bad); err == nil {
			t.Errorf("no error for %q", bad)
		}
	}
}

// rekey runs swanctl --rekey with args (e.g. "--child", "net" or "--ike", "rw"); the
// rekey itself runs in charon after swanctl returns.
func (s *strongswan) rekey(args ...string) {
	s.t.Helper()
	out, err := s.swanctl(append([]string{"--rekey"}, args...)...)
	if err != nil || !strings.Contains(out, "rekey completed successfully") {
		s.t.Fatalf("swanctl --rekey %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// mark returns the length of charon's log so far, for logSince.
func (s *strongswan) mark() int { return len(s.log()) }

// logSince returns what charon logged after mark.
func (s *strongswan) logSince(mark int) string {
	l := s.log()
	if mark > len(l) {
		return ""
	}
	return l[mark:]
}

// kill ends charon abruptly (SIGKILL): it sends nothing to its peers.
func (s *strongswan) kill() {
	s.t.Helper()
	s.p.cmd.Process.Kill()
	if _, ok := s.p.wait(5 * time.Second); !ok {
		s.t.Fatal("charon did not die")
	}
}

// waitLog waits until charon's log after mark contains want.
func (s *strongswan) waitLog(mark int, d time.Duration, want string) bool {
	return waitFor(d, func() bool { return strings.Contains(s.logSince(mark), want) })
}

// outputSince returns what the process logged after mark (a length of its output).
func (p *proc) outputSince(mark int) string {
	o := p.output()
	if mark > len(o) {
		return ""
	}
	return o[mark:]
}

// certFiles reads cert's test credentials for strongSwan's credential folders:
// dst path (e.g. "x509/rsa-gw.pem") -> the content of the testdata file of the same
// base name.
func certFiles(t *testing.T, dsts ...string) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	for _, d := range dsts {
		b, err := os.ReadFile(filepath.Join("..", "cert", "testdata", filepath.Base(d)))
		if err != nil {
			t.Fatal(err)
		}
		m[d] = b
	}
	return m
}

// capture is a tcpdump running in a namespace, writing a pcap file.
type capture struct {
	l    *lab
	p    *proc
	pcap string
	home string // tshark's configuration folder (HOME and XDG_CONFIG_HOME)
}

// installKeyLog copies our key log's Wireshark tables (ikev2_decryption_table, esp_sa)
// from the folder keys into tshark's configuration folder home/wireshark, after
// checking that each is private (mode 0600).
func installKeyLog(t *testing.T, keys, home string) {
	t.Helper()
	ws := filepath.Join(home, "wireshark")
	if err := os.MkdirAll(ws, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ikev2_decryption_table", "esp_sa"} {
		p := filepath.Join(keys, f)
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("key log %s: %v %v", p, fi, err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ws, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// startCapture captures filter on dev in ns until stop.
func (l *lab) startCapture(name, ns, dev, filter string) *capture {
	l.t.Helper()
	for _, tool := range []string{"tcpdump", "tshark"} {
		if _, err := exec.LookPath(tool); err != nil {
			l.t.Fatalf("%s is not installed; ./scripts/test.sh installs it", tool)
		}
	}
	c := &capture{l: l, pcap: filepath.Join(l.dir, name+".pcap"), home: filepath.Join(l.dir, name+"-wshome")}
	c.p = l.start("tcpdump-"+name, ns, "tcpdump", "--immediate-mode", "-Z", "root", "-n", "-i", dev, "-U", "-w", c.pcap, filter)
	if !waitFor(5*time.Second, func() bool { return strings.Contains(c.p.output(), "listening on") }) {
		l.t.Fatalf("tcpdump did not start:\n%s", c.p.output())
	}
	return c
}

// stop ends the capture (tcpdump flushes its file on SIGINT).
func (c *capture) stop() {
	c.l.t.Helper()
	time.Sleep(100 * time.Millisecond)
	c.p.signal(syscall.SIGINT)
	if _, ok := c.p.wait(5 * time.Second); !ok {
		c.l.t.Fatal("tcpdump did not stop")
	}
}

// tshark reads the capture with tshark (its configuration in c.home) and returns its
// output.
func (c *capture) tshark(args ...string) string {
	c.l.t.Helper()
	cmd := exec.Command("tshark", append([]string{"-n", "-r", c.pcap}, args...)...)
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+c.home, "HOME="+c.home)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		c.l.t.Fatalf("tshark %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// tcpTransferWithin is tcpTransfer with a deadline: a transfer that stalls (a tunnel
// that lost its path) fails the test after d instead of hanging it. It returns the
// throughput in Mbit/s.
func (l *lab) tcpTransferWithin(srcNS, dstNS, listen, dial string, n int64, d time.Duration) float64 {
	l.t.Helper()
	mbps, err := l.tcpTransferErr(srcNS, dstNS, listen, dial, n, d)
	if err != nil {
		l.t.Fatal(err)
	}
	return mbps
}

// tcpTransferErr is tcpTransferWithin returning its error (for goroutines).
func (l *lab) tcpTransferErr(srcNS, dstNS, listen, dial string, n int64, d time.Duration) (float64, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	sink := exec.CommandContext(ctx, "ip", "netns", "exec", dstNS, self, listen)
	sink.Env = append(os.Environ(), "MOBIKEVPN_HELPER=tcpsink")
	sinkOut, _ := sink.StdoutPipe()
	if err := sink.Start(); err != nil {
		return 0, err
	}
	defer sink.Wait()
	defer sink.Process.Kill()
	buf := make([]byte, 10)
	if _, err := io.ReadFull(sinkOut, buf); err != nil || string(buf) != "listening\n" {
		return 0, fmt.Errorf("TCP sink did not start: %q %v", buf, err)
	}
	src := exec.CommandContext(ctx, "ip", "netns", "exec", srcNS, self, dial, strconv.FormatInt(n, 10))
	src.Env = append(os.Environ(), "MOBIKEVPN_HELPER=tcpsource")
	srcOut, err := src.Output()
	if ctx.Err() != nil {
		return 0, fmt.Errorf("TCP transfer of %d bytes to %s did not finish within %v", n, dial, d)
	}
	if err != nil {
		return 0, fmt.Errorf("TCP source: %v", err)
	}
	rest, _ := io.ReadAll(sinkOut)
	sent, recv := strings.Fields(string(srcOut)), strings.Fields(string(rest))
	if len(sent) != 4 || len(recv) != 3 {
		return 0, fmt.Errorf("TCP transfer output: source %q sink %q", srcOut, rest)
	}
	if sent[1] != recv[1] || sent[2] != recv[2] {
		return 0, fmt.Errorf("TCP transfer corrupted: sent %s bytes %s, received %s bytes %s", sent[1], sent[2], recv[1], recv[2])
	}
	secs, _ := strconv.ParseFloat(sent[3], 64)
	return float64(n) * 8 / secs / 1e6, nil
}

// trafficCheck is checkInteropTraffic with deadlines on the TCP transfers: pings both
// ways and TCP both ways (checked byte for byte) through the tunnel; it returns the
// client's virtual IP (read from strongSwan, which must start with vipPrefix).
func (l *interopLab) trafficCheck(t *testing.T, sw *strongswan, vipPrefix string) string {
	t.Helper()
	var vip string
	var sas []swIKESA
	// An IKE SA being rekeyed shows twice for a moment.
	if !waitFor(2*time.Second, func() bool { sas = sw.listSAs(); return len(sas) == 1 }) {
		t.Fatalf("strongSwan has %d IKE SAs, want 1: %+v", len(sas), sas)
	}
	for _, k := range []string{"local-vips", "remote-vips"} {
		if v := sas[0].Lists[k]; len(v) > 0 {
			vip = v[0]
		}
	}
	if !strings.HasPrefix(vip, vipPrefix) {
		t.Fatalf("client virtual IP %q, want one from %s0/24", vip, vipPrefix)
	}
	l.ping(l.cl, "198.18.0.1", 5)
	l.ping(l.gw, vip, 5)
	l.tcpTransferWithin(l.cl, l.gw, "198.18.0.1:5001", "198.18.0.1:5001", 2<<20, 15*time.Second)
	l.tcpTransferWithin(l.gw, l.cl, vip+":5002", vip+":5002", 1<<20, 15*time.Second)
	return vip
}
