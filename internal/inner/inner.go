// Package inner tells a gateway cluster's protected side which node serves a client's
// virtual IP: on a shared inner segment the node answers ARP (IPv4) and NDP (IPv6) for
// the addresses it serves and announces a takeover with a gratuitous ARP or an
// unsolicited Neighbor Advertisement (ARP); in routed set-ups an operator's hook is run
// on each claim and release, to tell a BGP or OSPF speaker (Hook).
package inner

import (
	"fmt"
	"net/netip"

	"github.com/mobikevpn/mobikevpn/tun"
)

// Announcer announces the virtual IPs this node serves. Its methods may block (they
// run commands or system calls); the caller runs them off its hot paths, in order.
type Announcer interface {
	// Claim: this node serves a from now on (a new client, or one moved here).
	Claim(a netip.Addr) error
	// Release: this node no longer serves a.
	Release(a netip.Addr) error
	// Close releases what the announcer still holds.
	Close() error
}

// Hook runs an operator's executable once per claim and release, with the environment
// of this process plus
//
//	ACTION  claim | release
//	VIP     the virtual IP, e.g. 198.18.100.7
//	FAMILY  4 or 6
//	NODE    this node's name
//
// The executable must exit 0 on success, within tun.HookTimeout.
type Hook struct {
	Path string
	Node string
}

// Claim implements Announcer.
func (h *Hook) Claim(a netip.Addr) error { return h.run("claim", a) }

// Release implements Announcer.
func (h *Hook) Release(a netip.Addr) error { return h.run("release", a) }

// Close implements Announcer: the hook holds nothing.
func (h *Hook) Close() error { return nil }

func (h *Hook) run(action string, a netip.Addr) error {
	family := "6"
	if a.Unmap().Is4() {
		family = "4"
	}
	return tun.RunHook(h.Path, fmt.Sprintf("inner hook %s %s %s", h.Path, action, a), "ACTION="+action,
		"VIP="+a.Unmap().String(), "FAMILY="+family, "NODE="+h.Node)
}
