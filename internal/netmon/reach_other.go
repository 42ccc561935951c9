//go:build !linux

package netmon

import "net/netip"

// Reachable lists the host's addresses that can reach dst. Without netlink it cannot
// tell which interfaces route toward dst: it returns every address of dst's family
// (see Addrs), which is what is announced on these systems; give the connection
// local_addrs or additional_addrs to be precise there.
func Reachable(dst netip.Addr) ([]netip.Addr, error) {
	all, err := Addrs("")
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range all {
		if a.Is4() == dst.Unmap().Is4() && a.IsGlobalUnicast() {
			out = append(out, a)
		}
	}
	return out, nil
}

// ReachableMarked is Reachable: there are no packet marks here.
func ReachableMarked(dst netip.Addr, _ uint32) ([]netip.Addr, error) { return Reachable(dst) }
