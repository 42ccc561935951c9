package integration

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// FreeRADIUS (Debian's freeradius package) as the RADIUS server of EAP-RADIUS tests:
// run in a namespace with a configuration of its own written into the test's
// directory (never /etc/freeradius), stopped when the test ends.

const freeradiusBin = "/usr/sbin/freeradius"

// startFreeRADIUS runs FreeRADIUS in namespace ns, listening on addr:1812, with a client
// entry for the given client network and shared secret, and the given users (name →
// cleartext password) allowed to authenticate with EAP-MSCHAPv2 (default_eap_type
// mschapv2, so no Nak round is needed; EAP-MD5 is enabled too), with a private
// configuration directory in t.TempDir() (never touching /etc/freeradius), stopping it
// in t.Cleanup. It returns once FreeRADIUS has opened its socket ("Ready to process
// requests" in its log); its log (debug level, -X) is printed if the test fails, in full
// into $MOBIKEVPN_KEEP_LOGS if that is set.
//
// The EAP module has md5 and mschapv2 only: without tls, peap and ttls it needs no
// certificates. Every request must carry a Message-Authenticator. The secret, names and
// passwords are printable ASCII without quotes, backslashes, "$" or braces (the test
// fails otherwise: FreeRADIUS would not read them literally).
func startFreeRADIUS(t *testing.T, ns string, addr netip.Addr, clientNet netip.Prefix, secret string, users map[string]string) {
	t.Helper()
	if _, err := os.Stat(freeradiusBin); err != nil {
		t.Fatalf("FreeRADIUS is not installed (%v); apt-get install freeradius freeradius-utils", err)
	}
	if secret == "" || !addr.IsValid() || !clientNet.IsValid() {
		t.Fatalf("startFreeRADIUS: secret, address and client network are required")
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "radiusd.conf"), freeradiusConf(dir, addr, clientNet, freeradiusQuote(t, "secret", secret, "'")))
	writeFile(t, filepath.Join(dir, "users"), freeradiusUsers(t, users))
	logPath := filepath.Join(dir, "freeradius.log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	// ip netns exec execs FreeRADIUS itself: signals reach it, and it dies with the test.
	cmd := exec.Command("ip", "netns", "exec", ns, freeradiusBin, "-X", "-d", dir)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(done) }()
	readLog := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	// Registered after the lab's cleanup, so it runs before it (last in, first out):
	// FreeRADIUS stops before its namespace goes.
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		}
		if !t.Failed() {
			return
		}
		log := readLog()
		t.Logf("FreeRADIUS in %s (%s), last lines of its log:\n%s", ns, logPath, freeradiusTail(log, 300))
		if keep := os.Getenv("MOBIKEVPN_KEEP_LOGS"); keep != "" {
			os.WriteFile(filepath.Join(keep, ns+"-freeradius.log"), []byte(log), 0o644)
		}
	})
	exited := false
	if !waitFor(15*time.Second, func() bool {
		select {
		case <-done:
			exited = true
			return true
		default:
		}
		return strings.Contains(readLog(), "Ready to process requests")
	}) || exited {
		t.Fatalf("FreeRADIUS in %s did not start listening on %s (exited: %v):\n%s", ns, netip.AddrPortFrom(addr, 1812), exited, freeradiusTail(readLog(), 300))
	}
}

// freeradiusQuote quotes s for FreeRADIUS's configuration (single) or users file
// (double quotes), or fails the test if s holds what FreeRADIUS 3.2 does not take
// literally there: quotes of that kind, backslashes, "$", braces, control and non-ASCII
// characters.
func freeradiusQuote(t *testing.T, what, s, quote string) string {
	t.Helper()
	if s == "" || strings.ContainsAny(s, quote+`\${}`) || strings.IndexFunc(s, func(r rune) bool { return r < ' ' || r > '~' }) >= 0 {
		t.Fatalf("startFreeRADIUS: the %s %q is empty or holds characters FreeRADIUS would not take literally (%s\\${} or control or non-ASCII)", what, s, quote)
	}
	return quote + s + quote
}

// freeradiusUsers is the files module's users file: one line per user, in order.
func freeradiusUsers(t *testing.T, users map[string]string) string {
	var b strings.Builder
	names := make([]string, 0, len(users))
	for n := range users {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(&b, "%s Cleartext-Password := %s\n", freeradiusQuote(t, "user name", n, `"`), freeradiusQuote(t, "password", users[n], `"`))
	}
	return b.String()
}

// freeradiusConf is a radiusd.conf complete in itself: every path in dir, the
// dictionaries and modules of the package, one client, the files, mschap and eap
// (md5, mschapv2) modules, one virtual server for authentication on addr:1812. The
// secret comes quoted.
func freeradiusConf(dir string, addr netip.Addr, clientNet netip.Prefix, secret string) string {
	family := "ipv4addr"
	if addr.Is6() && !addr.Is4In6() {
		family = "ipv6addr"
	}
	clientFamily := "ipv4addr"
	if clientNet.Addr().Is6() {
		clientFamily = "ipv6addr"
	}
	return `prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
libdir = /usr/lib/freeradius
raddbdir = ` + dir + `
confdir = ${raddbdir}
modconfdir = ${raddbdir}
logdir = ${raddbdir}
radacctdir = ${raddbdir}
run_dir = ${raddbdir}
db_dir = ${raddbdir}
certdir = ${raddbdir}
cadir = ${raddbdir}
name = freeradius
pidfile = ${run_dir}/freeradius.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 16384
hostname_lookups = no
log {
	destination = stdout
	colourise = no
	auth = yes
}
security {
	allow_core_dumps = no
	max_attributes = 200
	reject_delay = 0
	status_server = no
}
proxy_requests = no
thread pool {
	start_servers = 4
	max_servers = 16
	min_spare_servers = 2
	max_spare_servers = 8
	max_requests_per_server = 0
}
client mobikevpn {
	` + clientFamily + ` = ` + clientNet.Masked().String() + `
	secret = ` + secret + `
	require_message_authenticator = yes
	shortname = mobikevpn
}
modules {
	files {
		filename = ${raddbdir}/users
	}
	mschap {
	}
	eap {
		default_eap_type = mschapv2
		timer_expire = 60
		ignore_unknown_eap_types = no
		max_sessions = 16384
		md5 {
		}
		mschapv2 {
		}
	}
}
server default {
	listen {
		type = auth
		` + family + ` = ` + addr.Unmap().String() + `
		port = 1812
	}
	authorize {
		files
		eap {
			ok = return
		}
	}
	authenticate {
		Auth-Type MS-CHAP {
			mschap
		}
		eap
	}
	post-auth {
		Post-Auth-Type REJECT {
			eap
		}
	}
}
`
}

func freeradiusTail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines before]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// TestFreeRADIUSHelper: startFreeRADIUS in a namespace answers an EAP-Identity
// (sent by radclient from a NAS namespace) with an EAP-MSCHAPv2 challenge, and drops
// a request signed with another secret.
func TestFreeRADIUSHelper(t *testing.T) {
	l := newLab(t)
	if _, err := exec.LookPath("radclient"); err != nil {
		t.Fatal("radclient is not installed (package freeradius-utils)")
	}
	nas, srv := l.ns("nas"), l.ns("radius")
	l.link(nas, "eth0", []string{"198.18.0.1/24"}, srv, "eth0", []string{"198.18.0.5/24"})
	const secret = `te"st secret!`
	startFreeRADIUS(t, srv, netip.MustParseAddr("198.18.0.5"), netip.MustParsePrefix("198.18.0.0/24"), secret,
		map[string]string{"alice": "wonderland", "bob the builder": "can we fix it?"})
	radclient := func(secret string) (string, error) {
		cmd := exec.Command("ip", "netns", "exec", nas, "radclient", "-x", "-r", "1", "-t", "2", "198.18.0.5:1812", "auth", secret)
		cmd.Stdin = strings.NewReader("User-Name = \"alice\"\nEAP-Message = 0x0201000a01616c696365\nMessage-Authenticator = 0x00\n")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// radclient exits 1 on a Challenge (it expects an Accept): the output tells.
	out, _ := radclient(secret)
	if !strings.Contains(out, "Received Access-Challenge") || !strings.Contains(out, "EAP-Message = 0x01") ||
		!strings.Contains(out, "State = 0x") {
		t.Fatalf("no Access-Challenge with an EAP-Request and a State:\n%s", out)
	}
	if i := strings.Index(out, "EAP-Message = 0x01"); len(out) < i+26 || out[i+24:i+26] != "1a" {
		t.Errorf("the EAP-Request is not of type MSCHAPv2 (26):\n%s", out)
	}
	out, _ = radclient("wrong")
	if strings.Contains(out, "Received") {
		t.Errorf("an answer to a request with the wrong secret:\n%s", out)
	}
}
