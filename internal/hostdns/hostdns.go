package hostdns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// The backends' names, as Backend reports them.
const (
	backendResolved   = "resolved"
	backendResolvconf = "resolvconf"
	backendFile       = "file"
)

// runTimeout bounds one run of resolvectl or resolvconf by the default Options.Run.
const runTimeout = 10 * time.Second

// Options: all optional; zero values mean the real host.
type Options struct {
	ResolvConf  string // default "/etc/resolv.conf"
	ResolvedDir string // default "/run/systemd/resolve": systemd-resolved is running when ResolvedDir/io.systemd.Resolve (a socket) exists
	// LookPath finds a command; default exec.LookPath.
	LookPath func(string) (string, error)
	// Run runs a command with stdin (nil: none) and returns its combined output; default:
	// the command, for at most 10 s, its error ending with the trimmed output.
	Run func(stdin []byte, name string, args ...string) ([]byte, error)
	Log *slog.Logger // may be nil
}

// Manager puts DNS servers on the host and takes them off again; see the package
// documentation. Its methods may be called from several goroutines.
type Manager struct {
	o          Options
	log        *slog.Logger
	linkExists func(dev string) bool // whether a network device exists (tests replace it)

	mu         sync.Mutex
	backend    string // "" until chosen
	command    string // resolvectl's or resolvconf's path, as LookPath found it
	openresolv bool   // the resolvconf found is openresolv

	// What is applied; dev is "" when nothing is.
	dev      string
	servers  []netip.Addr
	routeAll bool
	// The file backend's: the original content and what Apply last wrote.
	orig    *original
	written []byte
}

// New returns a Manager for the host o describes. It changes nothing and runs nothing:
// the backend is chosen at the first Apply or Backend call.
func New(o Options) *Manager {
	if o.ResolvConf == "" {
		o.ResolvConf = "/etc/resolv.conf"
	}
	if o.ResolvedDir == "" {
		o.ResolvedDir = "/run/systemd/resolve"
	}
	if o.LookPath == nil {
		o.LookPath = exec.LookPath
	}
	if o.Run == nil {
		o.Run = runCommand
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{o: o, log: log, linkExists: linkExists}
}

// Backend reports which mechanism Apply used or will use: "resolved", "resolvconf" or
// "file".
func (m *Manager) Backend() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.choose()
	return m.backend
}

// choose picks the backend, once.
func (m *Manager) choose() {
	if m.backend != "" {
		return
	}
	if p, err := m.o.LookPath("resolvectl"); err == nil {
		if _, err := os.Stat(filepath.Join(m.o.ResolvedDir, "io.systemd.Resolve")); err == nil {
			m.backend, m.command = backendResolved, p
			m.log.Info("host DNS: systemd-resolved", "command", p)
			return
		}
	}
	if p, err := m.o.LookPath("resolvconf"); err == nil {
		// openresolv names itself, systemd's compatibility command names systemd first,
		// Debian's resolvconf prints "Debian resolvconf" (old ones fail).
		out, _ := m.o.Run(nil, p, "--version")
		switch {
		case bytes.Contains(out, []byte("openresolv")):
			m.backend, m.command, m.openresolv = backendResolvconf, p, true
			m.log.Info("host DNS: resolvconf (openresolv)", "command", p)
			return
		case bytes.HasPrefix(bytes.TrimSpace(out), []byte("systemd")):
			m.log.Info("host DNS: resolvconf is systemd's but systemd-resolved is not running; rewriting the file",
				"command", p, "file", m.o.ResolvConf)
		default:
			m.backend, m.command = backendResolvconf, p
			m.log.Info("host DNS: resolvconf", "command", p)
			return
		}
	}
	m.backend = backendFile
	m.log.Info("host DNS: rewriting the file", "file", m.o.ResolvConf)
}

// Apply configures servers for the TUN device dev. routeAll: the tunnel is a full tunnel
// (all DNS should go to these servers). Calling Apply again replaces the previous
// configuration. Apply with no servers is Revert.
func (m *Manager) Apply(dev string, servers []netip.Addr, routeAll bool) error {
	list, err := normalize(servers)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(list) == 0 {
		return m.revert()
	}
	// (what would be an option to resolvectl, or a name resolvconf refuses)
	if dev == "" || strings.ContainsAny(dev, "/ \t\n") || strings.ContainsAny(dev[:1], "-.~") {
		return fmt.Errorf("hostdns: invalid device name %q", dev)
	}
	m.choose()
	switch m.backend {
	case backendResolved:
		err = m.applyResolved(dev, list, routeAll)
	case backendResolvconf:
		err = m.applyResolvconf(dev, list, routeAll)
	default:
		err = m.applyFile(dev, list, routeAll)
	}
	if err == nil {
		m.log.Info("host DNS applied", "backend", m.backend, "dev", dev, "servers", list, "route_all", routeAll)
	}
	return err
}

// Revert undoes what Apply did (nothing when nothing is applied). Idempotent.
func (m *Manager) Revert() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.revert()
}

func (m *Manager) revert() error {
	if m.dev == "" {
		return nil
	}
	var err error
	switch m.backend {
	case backendResolved:
		err = m.revertResolved()
	case backendResolvconf:
		err = m.revertResolvconf()
	default:
		err = m.revertFile()
	}
	if err == nil {
		m.log.Info("host DNS reverted", "backend", m.backend)
	}
	return err
}

// applied records what Apply put on the host.
func (m *Manager) applied(dev string, servers []netip.Addr, routeAll bool) {
	m.dev, m.servers, m.routeAll = dev, servers, routeAll
}

// cleared records that nothing is applied any more.
func (m *Manager) cleared() {
	m.dev, m.servers, m.routeAll, m.orig, m.written = "", nil, false, nil, nil
}

// normalize returns the servers without IPv4-mapped forms and duplicates, in their
// order; an invalid address is an error.
func normalize(servers []netip.Addr) ([]netip.Addr, error) {
	out := make([]netip.Addr, 0, len(servers))
	for _, s := range servers {
		if !s.IsValid() {
			return nil, errors.New("hostdns: invalid DNS server address (the zero netip.Addr)")
		}
		s = s.Unmap()
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// run runs the backend's command; its error names the backend and the command line.
func (m *Manager) run(stdin []byte, args ...string) error {
	out, err := m.output(stdin, args...)
	if msg := strings.TrimSpace(string(out)); err == nil && msg != "" {
		m.log.Debug("host DNS command", "command", m.command, "args", args, "output", msg)
	}
	return err
}

// output runs the backend's command and returns its output; its error names the
// backend and the command line.
func (m *Manager) output(stdin []byte, args ...string) ([]byte, error) {
	out, err := m.o.Run(stdin, m.command, args...)
	if err != nil {
		return out, fmt.Errorf("hostdns: %s: %s %s: %w", m.backend, m.command, strings.Join(args, " "), err)
	}
	return out, nil
}

// runCommand is the default Options.Run.
func runCommand(stdin []byte, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	cmd.WaitDelay = time.Second // a child keeping the output open does not hold us
	out, err := cmd.CombinedOutput()
	if err == nil {
		return out, nil
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", runTimeout, err)
	}
	msg := strings.TrimSpace(string(out))
	if len(msg) > 512 {
		msg = msg[:512] + "..."
	}
	if msg != "" {
		return out, fmt.Errorf("%w: %s", err, msg)
	}
	return out, err
}

// linkExists reports whether the network device dev exists.
func linkExists(dev string) bool {
	_, err := net.InterfaceByName(dev)
	return err == nil
}
