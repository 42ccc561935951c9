package inner

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// ARP announces on the inner segment's interface. For each address it claims it adds a
// proxy neighbour entry, so that the kernel answers ARP (IPv4) and Neighbor
// Solicitations (IPv6) for it with the interface's MAC address, and sends a gratuitous
// ARP or an unsolicited Neighbor Advertisement (Override set) so that hosts that knew
// another node's MAC address for it take ours. The kernel answers only what it would
// forward: the interface must forward (net.ipv4.conf.IF.forwarding, and for IPv6
// net.ipv6.conf.IF.forwarding and proxy_ndp), and the address must be routed into the
// TUN device (the daemon's routes do that).
type ARP struct {
	ifi *net.Interface

	mu   sync.Mutex
	held map[netip.Addr]bool
}

// NewARP returns the announcer on interface ifname.
func NewARP(ifname string) (*ARP, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("interface %q: %w", ifname, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("interface %q has no Ethernet address to answer ARP with", ifname)
	}
	if err := sysctlOn("net/ipv4/conf/" + ifname + "/forwarding"); err != nil {
		return nil, fmt.Errorf("interface %q: %w: the node forwards between the inner segment and its TUN device (sysctl -w net.ipv4.ip_forward=1)", ifname, err)
	}
	return &ARP{ifi: ifi, held: make(map[netip.Addr]bool)}, nil
}

// sysctlOn checks that the sysctl at /proc/sys/name is 1.
func sysctlOn(name string) error {
	b, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(b)) != "1" {
		return fmt.Errorf("%s is %s, not 1", strings.ReplaceAll(name, "/", "."), strings.TrimSpace(string(b)))
	}
	return nil
}

func (a *ARP) neigh(addr netip.Addr) *netlink.Neigh {
	fam := netlink.FAMILY_V4
	if addr.Is6() {
		fam = netlink.FAMILY_V6
	}
	return &netlink.Neigh{LinkIndex: a.ifi.Index, Family: fam, Flags: netlink.NTF_PROXY, IP: net.IP(addr.AsSlice())}
}

// Claim implements Announcer.
func (a *ARP) Claim(addr netip.Addr) error {
	addr = addr.Unmap()
	if addr.Is6() {
		for _, s := range []string{"forwarding", "proxy_ndp"} {
			if err := sysctlOn("net/ipv6/conf/" + a.ifi.Name + "/" + s); err != nil {
				return fmt.Errorf("announcing %s on %s: %w", addr, a.ifi.Name, err)
			}
		}
	}
	if err := netlink.NeighSet(a.neigh(addr)); err != nil {
		return fmt.Errorf("answering for %s on %s (proxy neighbour entry): %w", addr, a.ifi.Name, err)
	}
	a.mu.Lock()
	a.held[addr] = true
	a.mu.Unlock()
	var err error
	if addr.Is4() {
		err = a.gratuitousARP(addr)
	} else {
		err = a.unsolicitedNA(addr)
	}
	if err != nil {
		return fmt.Errorf("announcing %s on %s: %w", addr, a.ifi.Name, err)
	}
	return nil
}

// Release implements Announcer.
func (a *ARP) Release(addr netip.Addr) error {
	addr = addr.Unmap()
	a.mu.Lock()
	delete(a.held, addr)
	a.mu.Unlock()
	if err := netlink.NeighDel(a.neigh(addr)); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("no longer answering for %s on %s: %w", addr, a.ifi.Name, err)
	}
	return nil
}

// Close implements Announcer: the entries still held are removed.
func (a *ARP) Close() error {
	a.mu.Lock()
	held := a.held
	a.held = make(map[netip.Addr]bool)
	a.mu.Unlock()
	var errs []error
	for addr := range held {
		if err := netlink.NeighDel(a.neigh(addr)); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// gratuitousARP broadcasts an ARP request and an ARP reply for addr from our MAC
// address (hosts differ in which of the two they take).
func (a *ARP) gratuitousARP(addr netip.Addr) error {
	proto := int(htons(unix.ETH_P_ARP))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return fmt.Errorf("packet socket (needs CAP_NET_RAW): %w", err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: a.ifi.Index, Halen: 6,
		Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	for _, op := range []uint16{1, 2} { // request, reply
		if err := unix.Sendto(fd, arpPacket(op, a.ifi.HardwareAddr, addr), 0, to); err != nil {
			return fmt.Errorf("gratuitous ARP: %w", err)
		}
	}
	return nil
}

// arpPacket is an Ethernet/IPv4 ARP packet whose sender and target are both addr.
func arpPacket(op uint16, mac net.HardwareAddr, addr netip.Addr) []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:], 1)      // Ethernet
	binary.BigEndian.PutUint16(b[2:], 0x0800) // IPv4
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], op)
	ip := addr.As4()
	copy(b[8:], mac)
	copy(b[14:], ip[:])
	if op == 2 {
		copy(b[18:], mac)
	}
	copy(b[24:], ip[:])
	return b
}

// unsolicitedNA sends a Neighbor Advertisement for addr with our MAC address to all
// nodes (RFC 4861 7.2.6), Override set.
func (a *ARP) unsolicitedNA(addr netip.Addr) error {
	c, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return fmt.Errorf("ICMPv6 socket (needs CAP_NET_RAW): %w", err)
	}
	defer c.Close()
	p := c.IPv6PacketConn()
	if err := p.SetMulticastInterface(a.ifi); err != nil {
		return err
	}
	if err := p.SetMulticastHopLimit(255); err != nil {
		return err
	}
	msg := icmp.Message{Type: ipv6.ICMPTypeNeighborAdvertisement, Body: &icmp.RawBody{Data: naBody(a.ifi.HardwareAddr, addr)}}
	b, err := msg.Marshal(nil) // the kernel fills in the checksum
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(b, &net.IPAddr{IP: net.IPv6linklocalallnodes, Zone: a.ifi.Name}); err != nil {
		return fmt.Errorf("unsolicited Neighbor Advertisement: %w", err)
	}
	return nil
}

// naBody is a Neighbor Advertisement's body after the ICMPv6 header: flags (Override),
// the target address, the target link-layer address option.
func naBody(mac net.HardwareAddr, addr netip.Addr) []byte {
	b := make([]byte, 4+16+8)
	b[0] = 0x20 // Override
	t := addr.As16()
	copy(b[4:], t[:])
	b[20], b[21] = 2, 1 // Target Link-Layer Address, 8 octets
	copy(b[22:], mac)
	return b
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
