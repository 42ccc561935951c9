// Package killswitch is a VPN client's kill switch: while the daemon runs, nothing
// leaves through the underlay (any interface but the TUN device) toward the
// destinations the tunnel covers, except the daemon's own IKE and ESP packets.
//
// # Rules
//
// The rules live in one nftables table of family inet ("mobikevpn" unless Options
// name another), owned by the daemon: Set installs it, or replaces it when the
// tunnel's destinations change, and Remove deletes it at exit. The table has a base
// chain on the output hook and one on the forward hook (type filter, priority 0),
// both of policy accept, so that only what the table means to stop is stopped:
//
//	output:  oifname "lo" accept
//	         oifname DEV accept                the TUN device: the tunnel itself
//	         meta mark MARK accept             the daemon's IKE and ESP sockets
//	         [LinkSetup: DHCPv4 and DHCPv6 clients, ICMPv6 RS, NS and NA accept]
//	         ip daddr @block4 counter drop     when Block has IPv4 prefixes
//	         ip6 daddr @block6 counter drop    when Block has IPv6 prefixes
//	forward: oifname DEV accept
//	         the same drops
//
// The forward chain keeps what the host routes for others (containers, virtual
// machines, a LAN it shares its connection with) from leaking past the tunnel when
// the TUN device's routes are gone, just as the host's own traffic; it has no mark
// exemption, since only the daemon's own sockets may pass marked. The blocked
// prefixes sit in interval sets, merged first (nft refuses overlapping intervals), and
// every drop counts into one named counter, which Dropped reads.
//
// An accept in this table ends only its own chain: a packet goes on to the other
// tables' chains on the hook, so the table cannot open what another firewall closes,
// and no accept elsewhere can let through what it drops.
//
// # Why the mark
//
// The daemon's IKE and ESP datagrams go to the gateway through the underlay, and in a
// full tunnel the gateway's address is among the blocked destinations. Exempting the
// gateway's address would also let any other program's traffic to that host (and,
// behind a NAT, to whatever shares its address) bypass the tunnel; exempting a port
// would let anything that sends from it through. The daemon's sockets instead carry
// SO_MARK (settable only with CAP_NET_ADMIN), so only they pass, whichever address
// MOBIKE moves the SA to.
//
// # Fail closed
//
// Set replaces the table in one nft transaction (create it if missing, delete it,
// define it again), so there is never a moment without rules. The table belongs to no
// process: should the daemon be killed before Remove, its rules stay in force and
// nothing leaks while the tunnel is down, until the next start replaces the table or
// removes it (or an operator runs `nft delete table inet mobikevpn`). A firewall
// manager that flushes the whole ruleset also removes the table; Dropped then fails,
// and the next Set installs it again.
//
// In a full tunnel the local network is blocked too (its addresses are in 0.0.0.0/0
// and ::/0, and so are the answers to connections from it); a caller that wants it
// reachable leaves its prefixes out of Block.
//
// nft runs as a child process, forked from the thread the calling goroutine runs on:
// a caller whose goroutine is locked to a thread in another network namespace (as the
// tests' is) acts on that namespace.
package killswitch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// runTimeout bounds one run of nft by the default runner.
const runTimeout = 10 * time.Second

// Options say where the rules go and how nft runs. The zero value is the default.
type Options struct {
	// Table is the nftables table's name (family inet); "mobikevpn" when empty.
	Table string
	// Nft is the path of nft; exec.LookPath("nft") when empty. A path given with a
	// Run of the caller's is not checked.
	Nft string
	// Run runs a command with stdin as its input and returns its output; the default
	// runs it for at most 10 s and puts its combined output in the error.
	Run func(stdin []byte, name string, args ...string) ([]byte, error)
}

// Firewall installs, replaces and removes the kill switch's table. Its methods are
// safe for concurrent use.
type Firewall struct {
	table string
	nft   string
	run   func(stdin []byte, name string, args ...string) ([]byte, error)

	mu        sync.Mutex
	installed bool   // this Firewall's Set succeeded, and no Remove since
	base      uint64 // drops counted by the tables this Firewall replaced or removed
}

// New returns a Firewall; it fails when nft cannot be found.
func New(o Options) (*Firewall, error) {
	f := &Firewall{table: o.Table, nft: o.Nft, run: o.Run}
	if f.table == "" {
		f.table = defaultTable
	}
	if err := checkTable(f.table); err != nil {
		return nil, err
	}
	if f.nft == "" || o.Run == nil {
		name := f.nft
		if name == "" {
			name = "nft"
		}
		path, err := exec.LookPath(name)
		if err != nil {
			return nil, fmt.Errorf("kill switch needs nft (nftables): %w", err)
		}
		f.nft = path
	}
	if f.run == nil {
		f.run = run
	}
	return f, nil
}

// Set installs the table for s, or replaces the one there (this daemon's, or one left
// by a daemon that was killed) in one transaction.
func (f *Firewall) Set(s Spec) error {
	script, err := Script(f.table, s)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	before, counted := f.current()
	if _, err := f.run([]byte(script), f.nft, "-f", "-"); err != nil {
		return fmt.Errorf("kill switch: installing table inet %s: %w", f.table, err)
	}
	if counted {
		f.base += before
	}
	f.installed = true
	return nil
}

// Remove deletes the table; it is no error when there is none.
func (f *Firewall) Remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	before, counted := f.current()
	if _, err := f.run([]byte(removeScript(f.table)), f.nft, "-f", "-"); err != nil {
		return fmt.Errorf("kill switch: removing table inet %s: %w", f.table, err)
	}
	if counted {
		f.base += before
	}
	f.installed = false
	return nil
}

// Dropped returns how many packets the kill switch has dropped since this Firewall
// first installed its table, over every Set (packets dropped in the instant between
// reading the counter and replacing the table may go uncounted). It fails when the
// table this Firewall installed is gone (someone else deleted it).
func (f *Firewall) Dropped() (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.installed {
		return f.base, nil
	}
	n, err := f.counter()
	if err != nil {
		return f.base, err
	}
	return f.base + n, nil
}

// current reads the counter of the table this Firewall installed, before it replaces
// or removes that table; false when there is none or it cannot be read.
func (f *Firewall) current() (uint64, bool) {
	if !f.installed {
		return 0, false
	}
	n, err := f.counter()
	return n, err == nil
}

// counter reads the table's named counter.
func (f *Firewall) counter() (uint64, error) {
	out, err := f.run(nil, f.nft, "list", "counter", "inet", f.table, counterName)
	if err != nil {
		return 0, fmt.Errorf("kill switch: reading the counter of table inet %s: %w", f.table, err)
	}
	n, err := parsePackets(out)
	if err != nil {
		return 0, fmt.Errorf("kill switch: reading the counter of table inet %s: %w", f.table, err)
	}
	return n, nil
}

// parsePackets finds the packet count in nft's listing of one counter:
//
//	table inet mobikevpn {
//		counter dropped {
//			packets 12 bytes 840
//		}
//	}
func parsePackets(out []byte) (uint64, error) {
	for _, ln := range strings.Split(string(out), "\n") {
		f := strings.Fields(ln)
		if len(f) >= 2 && f[0] == "packets" {
			return strconv.ParseUint(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no packet count in nft's output %q", truncate(string(out)))
}

// run is the default runner: name with args and stdin, for at most runTimeout.
func run(stdin []byte, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("%w (timed out after %v)", err, runTimeout)
		}
		if msg := strings.TrimSpace(string(out)); msg != "" {
			return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, truncate(msg))
		}
		return out, fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return out, nil
}

// truncate shortens s for an error message.
func truncate(s string) string {
	const limit = 1024
	if len(s) > limit {
		return s[:limit] + "..."
	}
	return s
}
