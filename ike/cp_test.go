package ike

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/wire"
)

// RFC 7296 3.15.4: a client that asks for an IPv4 and an IPv6 address (and DNS of both)
// gets what the gateway's pools can give; only when no address at all can be given does
// the Child SA fail with INTERNAL_ADDRESS_FAILURE. Every combination of the families
// asked for against pools of each family.
func TestCPFamiliesAgainstPools(t *testing.T) {
	v4, v6 := netip.IPv4Unspecified(), netip.IPv6Unspecified()
	pool4 := &PoolConfig{Name: "p4", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.100.0/24")}, DNS: []netip.Addr{netip.MustParseAddr("198.18.0.53")}}
	pool6 := &PoolConfig{Name: "p6", Addrs: []netip.Prefix{netip.MustParsePrefix("2001:db8:100::/64")}, DNS: []netip.Addr{netip.MustParseAddr("2001:db8::53")}}
	pool46 := &PoolConfig{Name: "p46", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.101.0/24"), netip.MustParsePrefix("2001:db8:101::/64")}}
	cases := []struct {
		name  string
		ask   []netip.Addr
		pools []*PoolConfig
		want  []bool // the families assigned: [ipv4, ipv6]; nil: INTERNAL_ADDRESS_FAILURE
	}{
		{"4 from 4", []netip.Addr{v4}, []*PoolConfig{pool4}, []bool{true, false}},
		{"6 from 6", []netip.Addr{v6}, []*PoolConfig{pool6}, []bool{false, true}},
		{"4+6 from 4", []netip.Addr{v4, v6}, []*PoolConfig{pool4}, []bool{true, false}},
		{"4+6 from 6", []netip.Addr{v4, v6}, []*PoolConfig{pool6}, []bool{false, true}},
		{"4+6 from 4 and 6", []netip.Addr{v4, v6}, []*PoolConfig{pool4, pool6}, []bool{true, true}},
		{"4+6 from one dual pool", []netip.Addr{v4, v6}, []*PoolConfig{pool46}, []bool{true, true}},
		{"6+4 from 4", []netip.Addr{v6, v4}, []*PoolConfig{pool4}, []bool{true, false}},
		{"4 from 4 and 6", []netip.Addr{v4}, []*PoolConfig{pool4, pool6}, []bool{true, false}},
		{"6 from dual", []netip.Addr{v6}, []*PoolConfig{pool46}, []bool{false, true}},
		{"4 from 6", []netip.Addr{v4}, []*PoolConfig{pool6}, nil},
		{"6 from 4", []netip.Addr{v6}, []*PoolConfig{pool4}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, cc *Config) {
				g.Pools = c.pools
				g.Connections[0].Pools = nil
				for _, p := range c.pools {
					g.Connections[0].Pools = append(g.Connections[0].Pools, p.Name)
				}
				cc.Connections[0].VIPs = c.ask
				// Both families in the selectors, so that either may be narrowed to.
				g.Connections[0].Children[0].LocalTS = []TSConfig{prefixTS("198.18.0.0/24"), prefixTS("2001:db8:ff::/64")}
				cc.Connections[0].Children[0].RemoteTS = []TSConfig{prefixTS("198.18.0.0/24"), prefixTS("2001:db8:ff::/64")}
			})
			n.run(10*time.Second, func() bool { return established(gw, cl)() || cl.hasEvent(EventChildFailed) != nil })
			if c.want == nil {
				if ev := cl.hasEvent(EventChildFailed); ev == nil || ev.Reason != wire.INTERNAL_ADDRESS_FAILURE.String() {
					t.Fatalf("client events %v, want INTERNAL_ADDRESS_FAILURE", cl.events)
				}
				return
			}
			if !established(gw, cl)() {
				t.Fatalf("not established: client %v gateway %v", cl.events, gw.events)
			}
			got := []bool{slices.ContainsFunc(cl.vips, netip.Addr.Is4), slices.ContainsFunc(cl.vips, netip.Addr.Is6)}
			if !slices.Equal(got, c.want) {
				t.Errorf("assigned %v, want families %v", cl.vips, c.want)
			}
			checkChildPair(t, gw, cl)
			// The addresses go back to their own pools when the SA ends.
			n.apply(cl, cl.e.DeleteAll(n.now))
			n.run(10*time.Second, nil)
			for _, pl := range gw.e.pools {
				if len(pl.inUse) != 0 {
					t.Errorf("pool %s still has %v in use", pl.name, pl.inUse)
				}
			}
		})
	}
}
