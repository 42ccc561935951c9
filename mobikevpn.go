// Package mobikevpn embeds an IKEv2/IPsec VPN, client or gateway, in a Go program: the
// same engine, datapath and configuration as the mobikevpn command (IKEv2, MOBIKE, the
// gateway-initiated switch of draft-smyslov-ipsecme-ikev2-r-mobike, ESP in userspace).
//
// A VPN runs either on the host, like `mobikevpn run` (a TUN device, UDP sockets,
// netlink; it needs the privileges to create them), or in memory, on a MemNetwork with
// a TUN device the program provides (tun/memtun), for tests and simulations:
//
//	cfg, err := mobikevpn.LoadConfig("/etc/mobikevpn/mobikevpn.yaml")
//	...
//	vpn, err := mobikevpn.New(cfg, mobikevpn.Options{})
//	...
//	defer vpn.Close()
//	err = vpn.Up(ctx, "home")
//
// The configuration is the YAML of the command's configuration file.
package mobikevpn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/mobikevpn/mobikevpn/internal/config"
	"github.com/mobikevpn/mobikevpn/internal/control"
	"github.com/mobikevpn/mobikevpn/internal/daemon"
	"github.com/mobikevpn/mobikevpn/internal/system"
	"github.com/mobikevpn/mobikevpn/tun"
)

// Config is a parsed and validated configuration.
type Config struct{ c *config.Config }

// ParseConfig parses a configuration in the format of the command's configuration
// file; name stands for it in error messages. Its errors name the key at fault.
func ParseConfig(yaml []byte, name string) (*Config, error) {
	c, err := config.Parse(yaml, name)
	if err != nil {
		return nil, err
	}
	return &Config{c}, nil
}

// LoadConfig reads and parses the configuration file at path.
func LoadConfig(path string) (*Config, error) {
	c, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	return &Config{c}, nil
}

// Options are a VPN's inputs besides its configuration. The zero value runs it on the
// host, without a control socket, logging nothing.
type Options struct {
	// Logger receives the VPN's log; nil discards it.
	Logger *slog.Logger
	// ControlSocket serves the configuration's control socket (`control:`), so that
	// the mobikevpn command can show and steer this VPN as it does its own daemon.
	ControlSocket bool
	// Host runs the VPN in memory, on this host of a MemNetwork, with TUN as its
	// device (both are then required). Nil runs it on the system's devices and
	// sockets.
	Host *MemHost
	TUN  tun.Device
}

// Status is what a VPN reports about itself and its SAs: the document of `mobikevpn
// status --json`.
type Status = control.Status

// Switch asks the peers of one or more IKE SAs to move to one of this gateway's
// addresses (draft-smyslov-ipsecme-ikev2-r-mobike): To, and exactly one of SA, Peer,
// From and All; Wait, when positive, waits that long for the moves.
type Switch struct {
	To   netip.Addr
	SA   uint64     // one IKE SA by id
	Peer string     // every IKE SA of this peer identity
	From netip.Addr // every IKE SA on this local address
	All  bool       // every IKE SA
	Wait time.Duration
}

// ErrClosed is returned by the methods of a VPN that has stopped.
var ErrClosed = errors.New("mobikevpn: the VPN has stopped")

// VPN is a running VPN. Its methods are safe for concurrent use.
type VPN struct {
	d      *daemon.Daemon
	stop   context.CancelFunc
	done   chan struct{}
	err    error // why Run ended; read after done is closed
	closed sync.Once
}

// New builds a VPN for cfg and starts it: connections with `start_action: start` are
// initiated, and a gateway answers from now on. Close stops it.
func New(cfg *Config, opts Options) (*VPN, error) {
	if cfg == nil || cfg.c == nil {
		return nil, errors.New("mobikevpn: no configuration")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var deps daemon.Deps
	var closeAll func()
	var err error
	if opts.Host != nil {
		if opts.TUN == nil {
			return nil, errors.New("mobikevpn: Options.Host needs Options.TUN (a device such as tun/memtun's)")
		}
		deps, err = opts.Host.deps(cfg.c, opts.TUN)
		closeAll = func() { closeConns(deps) }
	} else {
		if opts.TUN != nil {
			return nil, errors.New("mobikevpn: Options.TUN is for a VPN in memory (Options.Host); on the host the VPN creates its device")
		}
		deps, closeAll, err = system.Open(cfg.c, log, opts.ControlSocket)
	}
	if err != nil {
		return nil, err
	}
	if opts.Host != nil && opts.ControlSocket {
		deps.Serve = controlServer(cfg.c, log)
	}
	d, err := daemon.New(cfg.c, log, deps)
	if err != nil {
		closeAll()
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	v := &VPN{d: d, stop: stop, done: make(chan struct{})}
	go func() {
		v.err = d.Run(ctx, daemon.Options{})
		close(v.done)
	}()
	return v, nil
}

func controlServer(cfg *config.Config, log *slog.Logger) func(context.Context, control.Handler, chan<- struct{}) error {
	ctl := cfg.Control
	if ctl == "" {
		ctl = config.DefaultControl
	}
	return func(ctx context.Context, h control.Handler, ready chan<- struct{}) error {
		if err := control.Serve(ctx, ctl, h, log.With("part", "control"), ready); err != nil {
			return fmt.Errorf("%s: %w", ctl, err)
		}
		return nil
	}
}

// call runs f with a context that also ends when the VPN stops.
func (v *VPN) call(ctx context.Context, f func(context.Context) error) error {
	select {
	case <-v.done:
		return ErrClosed
	default:
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-v.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := f(ctx)
	select {
	case <-v.done:
		if err != nil {
			return ErrClosed
		}
	default:
	}
	return err
}

// Up establishes the connection name (or waits for it, if it is being established)
// and returns once it is up, or why it is not.
func (v *VPN) Up(ctx context.Context, name string) error {
	return v.call(ctx, func(ctx context.Context) error { return v.d.Up(ctx, name) })
}

// Down deletes the IKE SAs of connection name at the peer and waits for the answers.
func (v *VPN) Down(ctx context.Context, name string) error {
	return v.call(ctx, func(ctx context.Context) error { return v.d.Down(ctx, name) })
}

// Status reports the VPN's SAs and counters.
func (v *VPN) Status(ctx context.Context) (*Status, error) {
	var st *Status
	err := v.call(ctx, func(ctx context.Context) (err error) {
		st, err = v.d.Status(ctx)
		return err
	})
	return st, err
}

// Switch asks peers to move to one of our addresses (a gateway's operation) and returns
// what was done, a line per outcome, as `mobikevpn switch` prints it. A request that is
// not valid (no selection or two, an address that is not ours, ...) is refused with an
// error that says why.
func (v *VPN) Switch(ctx context.Context, s Switch) (string, error) {
	req := control.SwitchRequest{To: s.To.String(), Peer: s.Peer, All: s.All, Wait: s.Wait}
	if s.SA != 0 {
		req.SA = &s.SA
	}
	if s.From.IsValid() {
		req.From = s.From.String()
	}
	sw, err := req.Parse()
	if err != nil {
		return "", err
	}
	var out string
	err = v.call(ctx, func(ctx context.Context) (err error) {
		out, err = v.d.Switch(ctx, sw)
		return err
	})
	return out, err
}

// Close deletes every SA at its peer (waiting a few seconds at most for the answers),
// removes what the VPN added to the system, closes its device and sockets, and returns
// why it had stopped, if it stopped by itself.
func (v *VPN) Close() error {
	v.closed.Do(v.stop)
	<-v.done
	return v.err
}

// Done is closed when the VPN has stopped: after Close, or by itself (the datapath
// failed, say); Close then says why.
func (v *VPN) Done() <-chan struct{} { return v.done }
