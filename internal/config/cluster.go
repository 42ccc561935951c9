package config

import (
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mobikevpn/mobikevpn/internal/cluster"
)

// Cluster defaults and bounds.
const (
	DefaultClusterPrefix = "/mobikevpn/"
	DefaultLeaseTTL      = 5 * time.Second
	MinLeaseTTL          = 2 * time.Second
	MaxLeaseTTL          = time.Minute
	// DefaultBalanceInterval and DefaultBalanceSkew are cluster.balance's defaults.
	DefaultBalanceInterval = 10 * time.Second
	DefaultBalanceSkew     = 0.2
)

func (p *parser) cluster(v val, cfg *Config, c *Cluster) error {
	o, err := p.object(v, "node, addrs, etcd, state_key_file, lease_ttl, inner, balance, failover", "node", "addrs", "etcd", "state_key_file", "lease_ttl", "inner", "balance", "failover")
	if err != nil {
		return err
	}
	c.Prefix, c.LeaseTTL, c.Failover = DefaultClusterPrefix, DefaultLeaseTTL, true
	c.Balance = Balance{Interval: DefaultBalanceInterval, MaxSkew: DefaultBalanceSkew}
	return p.apply(o, []setting{
		{key: "node", need: "missing; this node's name, unique in the cluster (e.g. gw-a)", read: func(p *parser, v val) error {
			if err := stringKey(&c.Node)(p, v); err != nil {
				return err
			}
			if strings.ContainsAny(c.Node, "/ \t\n") || len(c.Node) > 64 {
				return p.verr(v, "%q: a node name has at most 64 characters and no '/' or spaces", c.Node)
			}
			return nil
		}},
		{key: "addrs", read: func(p *parser, v val) error {
			items, err := p.list(v, false)
			if err != nil {
				return err
			}
			c.Addrs, err = p.addrs(items, false)
			return err
		}},
		{check: func() error {
			if len(c.Addrs) > 0 {
				return nil
			}
			for _, conn := range cfg.Connections {
				if !conn.Initiator {
					for _, a := range conn.LocalAddrs {
						if !slices.Contains(c.Addrs, a) {
							c.Addrs = append(c.Addrs, a)
						}
					}
				}
			}
			if len(c.Addrs) == 0 {
				return p.kerr(o, "addrs", "missing, and no responder connection has local_addrs: give this node's client-facing addresses")
			}
			return nil
		}},
		{key: "etcd", need: "missing; e.g. { endpoints: [http://198.18.9.1:2379] }", read: func(p *parser, v val) error {
			return p.etcd(v, c)
		}},
		{key: "state_key_file", need: "missing; a file of 32 random bytes (raw or hex), the same on every node, mode 0600",
			read: func(p *parser, v val) error {
				if err := fileKey(&c.StateKeyFile)(p, v); err != nil {
					return err
				}
				if _, err := cluster.LoadStateKey(c.StateKeyFile); err != nil {
					return p.verr(v, "%v", err)
				}
				return nil
			}},
		{key: "lease_ttl", read: func(p *parser, v val) error {
			d, err := p.duration(v)
			if err != nil {
				return err
			}
			if d < MinLeaseTTL || d > MaxLeaseTTL {
				return p.verr(v, "%v is out of range; allowed: %v..%v", d, MinLeaseTTL, MaxLeaseTTL)
			}
			c.LeaseTTL = d
			return nil
		}},
		{key: "inner", read: func(p *parser, v val) error {
			c.Inner = &Inner{}
			return p.inner(v, c.Inner)
		}},
		{key: "balance", read: func(p *parser, v val) error {
			return p.balance(v, &c.Balance)
		}},
		{key: "failover", read: boolKey(&c.Failover)},
	})
}

func (p *parser) balance(v val, b *Balance) error {
	o, err := p.object(v, "enabled, interval, max_skew", "enabled", "interval", "max_skew")
	if err != nil {
		return err
	}
	return p.apply(o, []setting{
		{key: "enabled", read: boolKey(&b.Enabled)},
		{key: "interval", read: func(p *parser, v val) error {
			d, err := p.duration(v)
			if err != nil {
				return err
			}
			if d < time.Second || d > time.Hour {
				return p.verr(v, "%v is out of range; allowed: 1s..1h", d)
			}
			b.Interval = d
			return nil
		}},
		{key: "max_skew", read: floatKey(&b.MaxSkew, 0.01, 10)},
	})
}

func (p *parser) inner(v val, in *Inner) error {
	o, err := p.object(v, "mode, interface, hook", "mode", "interface", "hook")
	if err != nil {
		return err
	}
	return p.apply(o, []setting{
		{key: "mode", need: "missing; arp (or ndp) with interface, or hook with hook", read: func(p *parser, v val) error {
			if err := stringKey(&in.Mode)(p, v); err != nil {
				return err
			}
			switch in.Mode {
			case InnerARP, InnerNDP, InnerHook:
				return nil
			}
			return p.verr(v, "%q; allowed: arp, ndp, hook", in.Mode)
		}},
		{key: "interface", read: func(p *parser, v val) error {
			if err := stringKey(&in.Interface)(p, v); err != nil {
				return err
			}
			if _, err := net.InterfaceByName(in.Interface); err != nil {
				return p.verr(v, "%q: no such network interface here", in.Interface)
			}
			return nil
		}},
		{key: "hook", read: func(p *parser, v val) error {
			if err := fileKey(&in.Hook)(p, v); err != nil {
				return err
			}
			if fi, err := os.Stat(in.Hook); err == nil && fi.Mode().Perm()&0o111 == 0 {
				return p.verr(v, "%s is not executable", in.Hook)
			}
			return nil
		}},
		{check: func() error {
			switch {
			case in.Mode == InnerHook && in.Hook == "":
				return p.kerr(o, "hook", "missing; mode hook runs this executable on each claim and release")
			case in.Mode == InnerHook && in.Interface != "":
				return p.kerr(o, "interface", "not used with mode hook")
			case in.Mode != InnerHook && in.Interface == "":
				return p.kerr(o, "interface", "missing; mode %s announces on this interface (the inner segment)", in.Mode)
			case in.Mode != InnerHook && in.Hook != "":
				return p.kerr(o, "hook", "only with mode hook")
			}
			return nil
		}},
	})
}

func (p *parser) etcd(v val, c *Cluster) error {
	o, err := p.object(v, "endpoints, prefix, tls", "endpoints", "prefix", "tls")
	if err != nil {
		return err
	}
	return p.apply(o, []setting{
		{key: "endpoints", need: "missing; etcd's client URLs, e.g. [http://198.18.9.1:2379]", read: func(p *parser, v val) error {
			items, err := p.list(v, false)
			if err != nil {
				return err
			}
			for _, it := range items {
				u, err := url.Parse(it.s)
				if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "unix" && u.Scheme != "unixs") || (u.Host == "" && u.Path == "") {
					return p.ierr(it, "%q is not an etcd client URL; use http://host:2379, https://host:2379 or unix:///path", it.s)
				}
				c.Endpoints = append(c.Endpoints, it.s)
			}
			return nil
		}},
		{key: "prefix", read: func(p *parser, v val) error {
			if err := stringKey(&c.Prefix)(p, v); err != nil {
				return err
			}
			if !strings.HasPrefix(c.Prefix, "/") || !strings.HasSuffix(c.Prefix, "/") {
				return p.verr(v, "%q: the prefix starts and ends with '/', e.g. /mobikevpn/", c.Prefix)
			}
			return nil
		}},
		{key: "tls", read: func(p *parser, v val) error {
			t, err := p.object(v, "ca, cert, key", "ca", "cert", "key")
			if err != nil {
				return err
			}
			return p.apply(t, []setting{
				{key: "ca", need: "missing; the CA that signed etcd's server certificate", read: fileKey(&c.TLSCA)},
				{key: "cert", need: "missing; this node's client certificate", read: fileKey(&c.TLSCert)},
				{key: "key", need: "missing; the key of cert", read: fileKey(&c.TLSKey)},
			})
		}},
	})
}
