// Package radiustest runs a real FreeRADIUS (Debian's freeradius package, 3.2) for
// tests: a configuration of its own written into a folder the test gives (never
// /etc/freeradius), with one client, users allowed to authenticate with EAP-MSCHAPv2
// or EAP-MD5, started (in a network namespace if asked) and stopped.
package radiustest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"
)

// Bin is FreeRADIUS's daemon.
const Bin = "/usr/sbin/freeradius"

// ErrNotInstalled is returned by Start when there is no FreeRADIUS.
var ErrNotInstalled = errors.New("FreeRADIUS is not installed (apt-get install freeradius freeradius-utils)")

// Config is a FreeRADIUS configuration: one client, its users, one virtual server for
// authentication. The EAP module has md5 and mschapv2 only (default_eap_type mschapv2,
// so no Nak round is needed): without tls, peap and ttls it needs no certificates.
// Every request must carry a Message-Authenticator.
//
// The secret, names and passwords must be printable ASCII without quotes, backslashes,
// "$" or braces (a single quote is refused in the secret, a double quote in names and
// passwords): FreeRADIUS 3.2.1 would not read them literally, and Write refuses them.
type Config struct {
	Dir    string            // the configuration's folder: radiusd.conf, users, and the log
	Listen netip.AddrPort    // where the server listens
	Client netip.Prefix      // the client's network
	Secret string            // the client's shared secret
	Users  map[string]string // name → cleartext password
}

// Write writes radiusd.conf and the users file into Dir.
func (c *Config) Write() error {
	if c.Dir == "" || !c.Listen.IsValid() || c.Listen.Port() == 0 || !c.Client.IsValid() {
		return errors.New("radiustest: the folder, the address and port to listen on and the client network are required")
	}
	secret, err := quote("secret", c.Secret, `'`)
	if err != nil {
		return err
	}
	users, err := usersFile(c.Users)
	if err != nil {
		return err
	}
	listen, client := c.Listen.Addr().Unmap(), c.Client.Masked()
	family, clientFamily := "ipv4addr", "ipv4addr"
	if listen.Is6() {
		family = "ipv6addr"
	}
	if client.Addr().Is6() {
		clientFamily = "ipv6addr"
	}
	var conf strings.Builder
	if err := confTemplate.Execute(&conf, map[string]any{
		"Dir": c.Dir, "ClientFamily": clientFamily, "Client": client, "Secret": secret,
		"Family": family, "Addr": listen, "Port": c.Listen.Port(),
	}); err != nil {
		return err
	}
	for name, text := range map[string]string{"radiusd.conf": conf.String(), "users": users} {
		if err := os.WriteFile(filepath.Join(c.Dir, name), []byte(text), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// quote quotes s for radiusd.conf (single quotes) or the users file (double quotes),
// or refuses what FreeRADIUS 3.2.1 does not take literally there: quotes of that kind,
// backslashes, "$", braces, control and non-ASCII characters.
func quote(what, s, q string) (string, error) {
	if s == "" || strings.ContainsAny(s, q+`\${}`) || strings.IndexFunc(s, func(r rune) bool { return r < ' ' || r > '~' }) >= 0 {
		return "", fmt.Errorf("radiustest: the %s %q is empty or holds characters FreeRADIUS would not take literally (%s\\${} or control or non-ASCII)", what, s, q)
	}
	return q + s + q, nil
}

// usersFile is the files module's users file: one line per user, in the names' order.
func usersFile(users map[string]string) (string, error) {
	var b strings.Builder
	for _, n := range slices.Sorted(maps.Keys(users)) {
		name, err := quote("user name", n, `"`)
		if err != nil {
			return "", err
		}
		pw, err := quote("password", users[n], `"`)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s Cleartext-Password := %s\n", name, pw)
	}
	return b.String(), nil
}

// confTemplate is a radiusd.conf complete in itself: every path in the folder, the
// dictionaries and modules of the package, one client, the files, mschap and eap (md5,
// mschapv2) modules, one virtual server for authentication. The secret comes quoted.
var confTemplate = template.Must(template.New("radiusd.conf").Parse(`prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
libdir = /usr/lib/freeradius
raddbdir = {{.Dir}}
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
	{{.ClientFamily}} = {{.Client}}
	secret = {{.Secret}}
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
		{{.Family}} = {{.Addr}}
		port = {{.Port}}
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
`))

// Server is a running FreeRADIUS.
type Server struct {
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	stop    sync.Once
}

// StartError is Start's error when FreeRADIUS ran but did not get ready: it exited, or
// it was not ready in time. Log is its log.
type StartError struct {
	Exited bool
	Log    string
	Err    error // why the wait ended, when not an exit
}

func (e *StartError) Error() string {
	if e.Exited {
		return "FreeRADIUS exited before it was ready"
	}
	return "FreeRADIUS was not ready: " + e.Err.Error()
}

func (e *StartError) Unwrap() error { return e.Err }

// readyTimeout bounds the wait for FreeRADIUS to be ready.
const readyTimeout = 15 * time.Second

// Start writes the configuration (as Write) and runs `freeradius -X -d Dir` (through
// `ip netns exec netns` when netns is not empty: that execs FreeRADIUS itself, so
// signals reach it), its output into Dir/freeradius.log. It returns once FreeRADIUS
// has opened its socket ("Ready to process requests" in its log), at most 15 s later;
// ctx bounds that wait only. If it exits or is not ready by then, Start stops it and
// returns a *StartError with its log. FreeRADIUS runs until Stop, and is killed if the
// process that started it dies (Pdeathsig).
func (c *Config) Start(ctx context.Context, netns string) (*Server, error) {
	if _, err := os.Stat(Bin); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotInstalled, err)
	}
	if err := c.Write(); err != nil {
		return nil, err
	}
	s := &Server{logPath: filepath.Join(c.Dir, "freeradius.log"), done: make(chan struct{})}
	f, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	args := []string{Bin, "-X", "-d", c.Dir}
	if netns != "" {
		args = append([]string{"ip", "netns", "exec", netns}, args...)
	}
	s.cmd = exec.Command(args[0], args[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = f, f
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	go func() { s.cmd.Wait(); f.Close(); close(s.done) }()
	if err := s.waitReady(ctx); err != nil {
		s.Stop()
		err.Log = s.Log()
		return nil, err
	}
	return s, nil
}

// waitReady polls the log until FreeRADIUS says it is ready, it exits, ctx is done or
// readyTimeout has passed.
func (s *Server) waitReady(ctx context.Context) *StartError {
	deadline := time.NewTimer(readyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.done:
			return &StartError{Exited: true}
		default:
		}
		if strings.Contains(s.Log(), "Ready to process requests") {
			return nil
		}
		select {
		case <-s.done:
		case <-tick.C:
		case <-ctx.Done():
			return &StartError{Err: ctx.Err()}
		case <-deadline.C:
			return &StartError{Err: fmt.Errorf("not ready after %v", readyTimeout)}
		}
	}
}

// Stop stops FreeRADIUS: SIGTERM, then SIGKILL if it has not exited 5 s later. It
// returns once it has exited; calling it again does nothing.
func (s *Server) Stop() {
	s.stop.Do(func() {
		select {
		case <-s.done:
			return
		default:
		}
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
	})
}

// Log is FreeRADIUS's log so far (debug level, -X).
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// LogPath is the log's file.
func (s *Server) LogPath() string { return s.logPath }
