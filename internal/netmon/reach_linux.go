package netmon

import (
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Reachable lists the host's addresses that can reach dst: those on the interfaces that
// have a route toward it (a default route included), in the main table or the one the
// kernel picks for dst. An address on an interface with no route toward dst (a LAN
// without a default route, a container bridge) is left out: announcing it to a peer
// (MOBIKE's ADDITIONAL_IP*_ADDRESS) would only give it a path that cannot work. Only
// global unicast addresses of dst's family count.
func Reachable(dst netip.Addr) ([]netip.Addr, error) { return reachable(netlink.Handle{}, dst, 0) }

// ReachableMarked is Reachable for packets carrying mark (the daemon's IKE and ESP,
// which policy routing keeps out of the tunnel's own table).
func ReachableMarked(dst netip.Addr, mark uint32) ([]netip.Addr, error) {
	return reachable(netlink.Handle{}, dst, mark)
}

func reachable(h netlink.Handle, dst netip.Addr, mark uint32) ([]netip.Addr, error) {
	dst = dst.Unmap()
	family := unix.AF_INET6
	if dst.Is4() {
		family = unix.AF_INET
	}
	routes, err := h.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, err
	}
	var links []int
	add := func(i int) {
		if i > 0 && !slices.Contains(links, i) {
			links = append(links, i)
		}
	}
	for _, r := range routes {
		if r.Dst != nil {
			p, ok := netip.AddrFromSlice(r.Dst.IP)
			ones, _ := r.Dst.Mask.Size()
			if !ok || !netip.PrefixFrom(p.Unmap(), ones).Contains(dst) {
				continue
			}
		}
		add(r.LinkIndex)
		for _, nh := range r.MultiPath {
			add(nh.LinkIndex)
		}
	}
	if rs, err := h.RouteGetWithOptions(dst.AsSlice(), &netlink.RouteGetOptions{Mark: mark}); err == nil {
		for _, r := range rs {
			add(r.LinkIndex)
		}
	}
	var out []netip.Addr
	for _, i := range links {
		link, err := h.LinkByIndex(i)
		if err != nil {
			continue
		}
		addrs, err := h.AddrList(link, family)
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok || a.Scope != unix.RT_SCOPE_UNIVERSE || !ip.Unmap().IsGlobalUnicast() {
				continue
			}
			if ip = ip.Unmap(); !slices.Contains(out, ip) {
				out = append(out, ip)
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out, nil
}
