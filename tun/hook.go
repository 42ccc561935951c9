package tun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
)

// HookTimeout bounds one run of the updown hook.
const HookTimeout = 30 * time.Second

// Hook actions, passed to the script in ACTION.
const (
	ActionUp         = "up"
	ActionAddAddress = "add-address"
	ActionAddRoute   = "add-route"
	ActionDelAddress = "del-address"
	ActionDelRoute   = "del-route"
)

// HookConfigurator configures the device by running an operator's script (the updown
// hook) once per change, with the environment of this process plus
//
//	ACTION  up | add-address | add-route | del-address | del-route
//	DEV     the device name
//	PREFIX  the address with prefix length (add-address, del-address) or the route
//	        (add-route, del-route), e.g. 198.18.0.1/24 or 2001:db8:5::/64; empty for up
//	FAMILY  4 or 6; empty for up
//
// The script must exit 0 on success. Since the script cannot say whether something
// already existed, every successful add is undone by Close.
type HookConfigurator struct {
	path string

	mu      sync.Mutex
	changes []change
	closed  bool
}

// NewHookConfigurator returns a Configurator that runs the executable at path.
func NewHookConfigurator(path string) (*HookConfigurator, error) {
	if _, err := exec.LookPath(path); err != nil {
		return nil, fmt.Errorf("tun: updown hook: %w", err)
	}
	return &HookConfigurator{path: path}, nil
}

func (h *HookConfigurator) run(action, dev string, p netip.Prefix) error {
	if dev == "" {
		return errors.New("tun: empty device name")
	}
	prefix, family := "", ""
	if p.IsValid() {
		prefix, family = p.String(), "6"
		if p.Addr().Is4() {
			family = "4"
		}
	}
	return RunHook(h.path, fmt.Sprintf("tun: updown hook %s %s %v", action, dev, p),
		"ACTION="+action, "DEV="+dev, "PREFIX="+prefix, "FAMILY="+family)
}

// RunHook runs an operator's executable at path with the environment of this process
// plus env, for at most HookTimeout. Its failure is an error beginning with what and
// ending with the script's output (its first 512 bytes).
func RunHook(path, what string, env ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), HookTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 512 {
			msg = msg[:512] + "..."
		}
		if msg != "" {
			return fmt.Errorf("%s: %w: %s", what, err, msg)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// Up runs the hook with ACTION=up.
func (h *HookConfigurator) Up(dev string) error {
	if err := h.checkOpen(); err != nil {
		return err
	}
	return h.run(ActionUp, dev, netip.Prefix{})
}

func (h *HookConfigurator) checkOpen() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return errClosed
	}
	return nil
}

var errClosed = errors.New("tun: configurator closed")

func (h *HookConfigurator) add(c change, action string) error {
	if !c.p.IsValid() {
		return fmt.Errorf("tun: invalid prefix %v", c.p)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return errClosed
	}
	if slices.Contains(h.changes, c) {
		return nil
	}
	if err := h.run(action, c.dev, c.p); err != nil {
		return err
	}
	h.changes = append(h.changes, c)
	return nil
}

func (h *HookConfigurator) del(c change, action string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	i := slices.Index(h.changes, c)
	if i < 0 {
		return nil
	}
	if err := h.run(action, c.dev, c.p); err != nil {
		return err
	}
	h.changes = slices.Delete(h.changes, i, i+1)
	return nil
}

// AddAddress runs the hook with ACTION=add-address.
func (h *HookConfigurator) AddAddress(dev string, p netip.Prefix) error {
	return h.add(change{dev: dev, p: p}, ActionAddAddress)
}

// AddRoute runs the hook with ACTION=add-route for p masked to its prefix.
func (h *HookConfigurator) AddRoute(dev string, p netip.Prefix) error {
	return h.add(change{route: true, dev: dev, p: p.Masked()}, ActionAddRoute)
}

// DelAddress runs the hook with ACTION=del-address if this Configurator added p.
func (h *HookConfigurator) DelAddress(dev string, p netip.Prefix) error {
	return h.del(change{dev: dev, p: p}, ActionDelAddress)
}

// DelRoute runs the hook with ACTION=del-route if this Configurator added p.
func (h *HookConfigurator) DelRoute(dev string, p netip.Prefix) error {
	return h.del(change{route: true, dev: dev, p: p.Masked()}, ActionDelRoute)
}

// Close undoes every remaining add, newest first. It tries them all and joins the
// errors; a change whose undo failed is forgotten anyway.
func (h *HookConfigurator) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	var errs []error
	for _, c := range slices.Backward(h.changes) {
		action := ActionDelAddress
		if c.route {
			action = ActionDelRoute
		}
		errs = append(errs, h.run(action, c.dev, c.p))
	}
	h.changes = nil
	return errors.Join(errs...)
}
