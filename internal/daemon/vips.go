package daemon

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/mobikevpn/mobikevpn/ike"
)

// Virtual IP leases of a cluster node (see internal/cluster/vips.go): the engine's
// pools are leased (ike.PoolConfig.Leased) and hand out only the addresses this node
// holds in etcd. The node keeps vipSpare of them free per pool and family, claiming
// more when fewer than vipLow are left and giving back those beyond vipHigh.

const (
	vipSpare = 16
	vipLow   = 8
	vipHigh  = 64
	// vipScan bounds the addresses one refill tries.
	vipScan = 1 << 16
)

// vipFamily names a pool's addresses of one family.
type vipFamily struct {
	pool string
	is4  bool
}

// checkVIPs starts the refills and returns the pools need (engine goroutine).
func (c *clusterRole) checkVIPs() {
	if c.lost {
		return
	}
	for _, p := range c.d.cfg.Pools {
		v4, v6 := c.d.engine.SpareVIPs(p.Name)
		for _, fam := range []struct {
			is4   bool
			spare int
		}{{true, v4}, {false, v6}} {
			f := vipFamily{p.Name, fam.is4}
			if !hasFamily(p.Addrs, fam.is4) || c.vipBusy[f] {
				continue
			}
			wanted := c.d.engine.WantedVIPs(p.Name, fam.is4)
			switch {
			case fam.spare < vipLow || wanted > 0:
				// As many as the peers waiting for one (a burst of handshakes: their
				// IKE_AUTHs are answered on retransmission), and the usual spare.
				c.vipBusy[f] = true
				c.claimVIPs(f, p.Addrs, max(min(vipSpare+wanted, vipScan)-fam.spare, 1))
			case fam.spare > vipHigh:
				back := c.d.engine.ReturnVIPs(p.Name, fam.is4, fam.spare-vipSpare)
				c.async(jobVIPs, func(ctx context.Context) {
					if err := c.co.ReleaseVIPs(ctx, back); err != nil {
						c.d.log.Warn("cluster: giving back spare virtual IPs", "pool", f.pool, "err", err)
					}
				})
			}
		}
	}
}

// claimVIPs claims up to n addresses of family f that no node holds and grants them to
// the engine's pool (asynchronously).
func (c *clusterRole) claimVIPs(f vipFamily, prefixes []netip.Prefix, n int) {
	c.async(jobVIPs, func(ctx context.Context) {
		got, dry := c.claimFree(ctx, f, prefixes, n)
		c.cmd(func(time.Time) {
			c.vipBusy[f] = false
			c.grantVIPs(f, got)
			// None to be had in the cluster: peers are refused rather than kept waiting
			// (until an address comes back here, or a later claim finds one).
			c.d.engine.PoolDry(f.pool, f.is4, dry && len(got) == 0)
			if len(got) > 0 {
				c.checkVIPs() // more may have been wanted meanwhile
			}
		})
	})
}

// initialVIPs claims the spare addresses of every pool before the engine runs, so that
// the first clients get addresses.
func (c *clusterRole) initialVIPs(ctx context.Context) {
	for _, p := range c.d.cfg.Pools {
		for _, is4 := range []bool{true, false} {
			if f := (vipFamily{p.Name, is4}); hasFamily(p.Addrs, is4) {
				got, _ := c.claimFree(ctx, f, p.Addrs, vipSpare)
				c.grantVIPs(f, got)
			}
		}
	}
}

func (c *clusterRole) grantVIPs(f vipFamily, got []netip.Addr) {
	if err := c.d.engine.GrantVIPs(f.pool, got); err != nil {
		c.d.log.Warn("cluster: granting virtual IPs", "pool", f.pool, "err", err)
	}
	c.d.log.Debug("cluster: virtual IPs claimed", "pool", f.pool, "ipv4", f.is4, "count", len(got))
}

// claimFree claims up to n addresses of prefixes of family f that no node holds;
// dry says the prefixes have no more (when etcd did not fail).
func (c *clusterRole) claimFree(ctx context.Context, f vipFamily, prefixes []netip.Prefix, n int) (got []netip.Addr, dry bool) {
	held, err := c.co.VIPs(ctx)
	if err != nil {
		c.d.log.Warn("cluster: reading the virtual IP leases", "pool", f.pool, "err", err)
		return nil, false
	}
	var free []netip.Addr
	scanned, complete := 0, true
	for _, pf := range prefixes {
		if pf.Addr().Is4() != f.is4 {
			continue
		}
		// From a random place in the prefix, round to it: nodes claiming at once do
		// not all go for the same addresses.
		size := uint64(vipScan)
		if bits := pf.Addr().BitLen() - pf.Bits(); bits <= 16 {
			size = 1 << bits
		} else {
			complete = false // scanned in part only
		}
		start, i := rand.Uint64N(size), uint64(0)
		for ; i < size && len(free) < n && scanned < vipScan; i++ {
			scanned++
			a := addrPlus(pf.Masked().Addr(), (start+i)%size)
			if _, ok := held[a]; !ok && ike.HostAddr(a, pf) {
				free = append(free, a)
			}
		}
		if i < size {
			complete = false // stopped before the prefix's end
		}
	}
	got, err = c.co.ClaimVIPs(ctx, free)
	if err != nil {
		c.d.log.Warn("cluster: claiming virtual IPs", "pool", f.pool, "err", err)
		return got, false
	}
	if len(got) < n {
		c.d.log.Info("cluster: the pool has few free virtual IPs left in the cluster", "pool", f.pool, "ipv4", f.is4, "claimed", len(got), "wanted", n)
	}
	return got, complete && len(got) < n
}

// takeVIPs makes this node the holder of the virtual IPs of an SA imported here.
func (c *clusterRole) takeVIPs(ctx context.Context, st *ike.SAState) {
	if st.OrigInitiator || len(st.VIPs) == 0 {
		return
	}
	if err := c.co.TakeVIPs(ctx, st.VIPs); err != nil {
		c.d.log.Warn("cluster: taking over the virtual IPs of an SA moved here", "vips", st.VIPs, "err", err)
	}
}

func hasFamily(prefixes []netip.Prefix, is4 bool) bool {
	for _, pf := range prefixes {
		if pf.Addr().Is4() == is4 {
			return true
		}
	}
	return false
}

// addrPlus is a plus n (carried within the last 64 bits).
func addrPlus(a netip.Addr, n uint64) netip.Addr {
	if a.Is4() {
		b := a.As4()
		binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(b[:])+uint32(n))
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	binary.BigEndian.PutUint64(b[8:], binary.BigEndian.Uint64(b[8:])+n)
	return netip.AddrFrom16(b)
}

// vipTaken: node took address a, which this node held (engine goroutine): with an SA
// moved from here, or taken over from a node that died, whose address this node had
// claimed as spare meanwhile (its key was free between the death and the take-over): a
// spare one is handed out no more.
func (c *clusterRole) vipTaken(a netip.Addr, node string) {
	spare, inUse := c.d.engine.RevokeVIP(a)
	if spare {
		c.d.log.Info("cluster: a spare virtual IP is another node's now (an SA that has it lives there)", "vip", a, "node", node)
	} else if inUse {
		c.d.log.Debug("cluster: a virtual IP in use here is another node's now (its SA moved there)", "vip", a, "node", node)
	}
}
