package cluster

import (
	"context"
	"net/netip"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Virtual IP leases: every node may serve the same pools, and an address is handed to
// one client at a time cluster-wide. A node holds the addresses it may hand out, in use
// or spare, as keys <prefix>vips/<addr> naming it, under its lease (they are free again
// once the node is gone). It claims spare addresses ahead of need, a few at a time;
// an SA moved to another node takes its address's key with it.

func (c *Coordinator) vipKey(a netip.Addr) string { return c.prefix + "vips/" + a.Unmap().String() }

// VIPs returns the addresses nodes hold, with the node holding each.
func (c *Coordinator) VIPs(ctx context.Context) (map[netip.Addr]string, error) {
	resp, err := c.cli.Get(ctx, c.prefix+"vips/", clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := make(map[netip.Addr]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if a, err := netip.ParseAddr(strings.TrimPrefix(string(kv.Key), c.prefix+"vips/")); err == nil {
			out[a] = string(kv.Value)
		}
	}
	return out, nil
}

// ClaimVIP makes this node the holder of address a if no node holds it; it reports
// whether it did.
func (c *Coordinator) ClaimVIP(ctx context.Context, a netip.Addr) (bool, error) {
	k := c.vipKey(a)
	resp, err := c.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, c.self.Name, clientv3.WithLease(c.lease()))).Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

// ClaimVIPs makes this node the holder of those of addrs that no node holds, in
// transactions of up to 64 addresses (one that fails, some address being taken
// meanwhile, is tried again address by address), and returns them.
func (c *Coordinator) ClaimVIPs(ctx context.Context, addrs []netip.Addr) ([]netip.Addr, error) {
	var got []netip.Addr
	for len(addrs) > 0 {
		batch := addrs[:min(len(addrs), 64)]
		addrs = addrs[len(batch):]
		var cmps []clientv3.Cmp
		var puts []clientv3.Op
		for _, a := range batch {
			k := c.vipKey(a)
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
			puts = append(puts, clientv3.OpPut(k, c.self.Name, clientv3.WithLease(c.lease())))
		}
		resp, err := c.cli.Txn(ctx).If(cmps...).Then(puts...).Commit()
		if err != nil {
			return got, err
		}
		if resp.Succeeded {
			got = append(got, batch...)
			continue
		}
		for _, a := range batch {
			ok, err := c.ClaimVIP(ctx, a)
			if err != nil {
				return got, err
			}
			if ok {
				got = append(got, a)
			}
		}
	}
	return got, nil
}

// TakeVIPs makes this node the holder of addrs, whoever held them: the addresses of an
// SA moved here (its old node holds them until then and hands them out no more).
func (c *Coordinator) TakeVIPs(ctx context.Context, addrs []netip.Addr) error {
	for _, a := range addrs {
		if _, err := c.cli.Put(ctx, c.vipKey(a), c.self.Name, clientv3.WithLease(c.lease())); err != nil {
			return err
		}
	}
	return nil
}

// ReleaseVIPs gives up those of addrs this node holds.
func (c *Coordinator) ReleaseVIPs(ctx context.Context, addrs []netip.Addr) error {
	for _, a := range addrs {
		k := c.vipKey(a)
		if _, err := c.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(k), "=", c.self.Name)).
			Then(clientv3.OpDelete(k)).Commit(); err != nil {
			return err
		}
	}
	return nil
}
