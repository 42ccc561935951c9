// Package tun opens the TUN device and configures its addresses and routes.
//
// The device is golang.zx2c4.com/wireguard/tun's, with its batch API. Rules for
// callers of Device.Read and Device.Write, from that package's implementations:
//
//   - Offsets. Read places packet i at bufs[i][offset:] and its length in sizes[i];
//     Write sends bufs[i][offset:] whole, so len(bufs[i]) must be offset plus the
//     packet length. The bytes in front of offset belong to the device: on Linux the
//     TUN runs with IFF_VNET_HDR and Write puts the 10-byte virtio_net_hdr there
//     (WriteOffsetMin); on darwin and the BSDs Read and Write put the 4-byte address
//     family header there (ReadOffsetMin). Windows needs no headroom. Reserve at least
//     Headroom in front of every packet and both rules hold everywhere.
//   - Batches. Pass BatchSize() buffers to Read (and sizes of the same length): on
//     Linux one read may be a TCP or UDP GSO super-packet that is split into up to
//     that many packets, each at most the MTU plus headers, and too few buffers fail
//     with wgtun.ErrTooManySegments. Other platforms read one packet per call.
//   - Write may change bufs (Linux GRO): it writes into the headroom, coalesces
//     packets of one TCP or UDP flow by appending the payload of later packets to the
//     first one's buffer (only within cap(bufs[i]), so give buffers spare capacity,
//     e.g. 65535+offset, to let it coalesce), and may swap elements of bufs. Reset the
//     slices before reusing them. Coalescing needs valid transport checksums; a packet
//     whose checksum is wrong is written alone.
//   - Write's count is not a packet count on Linux (it sums bytes written); rely on
//     its error only. A failure of one packet is joined into the error while the
//     others are still written.
//   - Read and Write return os.ErrClosed once the device is closed.
package tun

import (
	"fmt"
	"net/netip"

	wgtun "golang.zx2c4.com/wireguard/tun"
)

// Device is a TUN device with the wireguard batch API.
type Device = wgtun.Device

const (
	// WriteOffsetMin is the least offset Device.Write accepts on every platform (the
	// virtio_net_hdr on Linux).
	WriteOffsetMin = 10
	// ReadOffsetMin is the least offset Device.Read accepts on every platform (the
	// address family header on darwin and the BSDs).
	ReadOffsetMin = 4
	// Headroom satisfies both minimums and keeps the packet 8-byte aligned.
	Headroom = 16
)

// Create creates the TUN device name with the given MTU. On Linux it keeps
// wireguard's offloads on (IFF_VNET_HDR with TSO/USO, so reads may be GSO batches and
// writes are coalesced). It needs CAP_NET_ADMIN on Linux, root elsewhere; on Windows
// wintun.dll must be next to the executable.
func Create(name string, mtu int) (Device, error) {
	dev, err := wgtun.CreateTUN(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("tun: create %q: %w", name, err)
	}
	return dev, nil
}

// Configurator sets up the addresses and routes of a device and takes them away
// again. Methods are safe for concurrent use.
type Configurator interface {
	// Up sets the link up. Call it before adding routes (Linux refuses routes over a
	// down link). It is not undone by Close: the link goes away with the device.
	Up(dev string) error
	// AddAddress assigns p (the address with its prefix length) to dev. An address
	// that is already there counts as success and is left alone by Close.
	AddAddress(dev string, p netip.Prefix) error
	// AddRoute routes p through dev. A route that is already there counts as success
	// and is left alone by Close.
	AddRoute(dev string, p netip.Prefix) error
	// DelAddress removes an address this Configurator added (e.g. a virtual IP that
	// changed); removing one that is gone is not an error.
	DelAddress(dev string, p netip.Prefix) error
	// DelRoute removes a route this Configurator added (e.g. when a client leaves);
	// removing one that is gone is not an error.
	DelRoute(dev string, p netip.Prefix) error
	// Close removes every address and route still added by this Configurator, in
	// reverse order, and releases its resources. A second Close does nothing.
	Close() error
}

// NewConfigurator returns the platform's Configurator. With a non-empty hook it
// returns a script Configurator running hook on every platform (see NewHookConfigurator);
// without one it returns the native one (netlink on Linux) or, where there is no native
// support yet, an error asking for a hook.
func NewConfigurator(hook string) (Configurator, error) {
	if hook != "" {
		return NewHookConfigurator(hook)
	}
	return newNativeConfigurator()
}

// PolicyRouting is where a configurator that routes by policy (Linux:
// NetlinkConfigurator.UsePolicyRouting) puts its routes: Table, consulted for every
// packet without Mark, by a rule of Priority (before the main table's 32766).
type PolicyRouting struct {
	Table    int
	Mark     uint32
	Priority int
}

// DefaultPolicyRouting is the daemon's: table and mark 4555 (RFC 4555, MOBIKE), the
// rule at priority 4555.
var DefaultPolicyRouting = PolicyRouting{Table: 4555, Mark: 4555, Priority: 4555}

// change is one thing a Configurator did, for undoing.
type change struct {
	route bool
	dev   string
	p     netip.Prefix
}

func (c change) String() string {
	kind := "address"
	if c.route {
		kind = "route"
	}
	return fmt.Sprintf("%s %v on %s", kind, c.p, c.dev)
}
