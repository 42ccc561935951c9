package config

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Defaults.
const (
	DefaultLogLevel        = "info"
	DefaultIKEPort         = 500
	DefaultNATTPort        = 4500
	DefaultTUNName         = "mvpn0"
	DefaultMTU             = 1400
	DefaultCookieThreshold = 10
	DefaultFragmentSize    = 1280
	MaxDatapathWorkers     = 16       // datapath.workers
	DefaultBlockThreshold  = 5        // half-open SAs per peer address (strongSwan's block_threshold)
	DefaultHalfOpenLimit   = 10000    // half-open SAs in all
	DefaultBlockIPv6Prefix = 64       // block_ipv6_prefix: an IPv6 /64 is one source
	DefaultPreauthMemory   = 64 << 20 // preauth_memory: bytes held before authentication
	DefaultHalfOpenTimeout = 30 * time.Second
	DefaultDPDDelay        = 30 * time.Second
	DefaultIKERekeyTime    = 4 * time.Hour
	DefaultChildRekeyTime  = time.Hour
	DefaultSwitchLimit     = 5                // switch_limit: switches per IKE SA per minute
	MaxSwitchLimit         = 1000             // switch_limit
	DefaultSwitchHold      = 30 * time.Second // switch_hold
	DefaultRMobikeNotify   = 40970            // rmobike_notify: SWITCH_TO_IP_ADDRESS's Notify Message Type
	MinRMobikeNotify       = 40970            // rmobike_notify: 40960-40969 are libreswan's and strongSwan's
	MaxRMobikeNotify       = 65535            // rmobike_notify
)

// DefaultRetransmit is strongSwan's retransmission schedule.
var DefaultRetransmit = Retransmit{Timeout: 4 * time.Second, Tries: 5, Base: 1.8}

var yamlLineErr = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// topKeys are the keys of the top level, in the order an unknown key's error lists them.
var topKeys = []string{
	"control", "log_level", "log_format", "keylog", "ports", "tun", "updown", "secrets", "radius", "pools",
	"metrics", "cookie_threshold", "half_open_timeout", "block_threshold", "half_open_limit", "block_ipv6_prefix", "preauth_memory", "retransmit", "fragment_size", "datapath", "connections", "cluster",
}

func (p *parser) parse(data []byte) (*Config, error) {
	root, err := p.document(data)
	if err != nil {
		return nil, err
	}
	top, err := p.object(val{n: root, line: root.Line}, "the top level: control, log_level, connections, ...", topKeys...)
	if err != nil {
		return nil, err
	}
	cfg := &Config{
		LogLevel:        DefaultLogLevel,
		LogFormat:       "text",
		Ports:           Ports{IKE: DefaultIKEPort, NATT: DefaultNATTPort},
		TUN:             TUN{Name: DefaultTUNName, MTU: DefaultMTU},
		CookieThreshold: DefaultCookieThreshold,
		HalfOpenTimeout: DefaultHalfOpenTimeout,
		Retransmit:      DefaultRetransmit,
		FragmentSize:    DefaultFragmentSize,
		BlockThreshold:  DefaultBlockThreshold,
		HalfOpenLimit:   DefaultHalfOpenLimit,
		BlockIPv6Prefix: DefaultBlockIPv6Prefix,
		PreauthMemory:   DefaultPreauthMemory,
		Datapath:        Datapath{UDPOffload: true},
	}
	if err := p.apply(top, topSettings(cfg)); err != nil {
		return nil, err
	}
	return cfg, nil
}

// document decodes data, which must be one YAML document that is not empty, and
// returns its root node.
func (p *parser) document(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, p.errf(0, "", "the file is empty; it needs at least a `connections` section")
		}
		if m := yamlLineErr.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			return nil, p.errf(line, "", "YAML syntax: %s", m[2])
		}
		return nil, p.errf(0, "", "YAML syntax: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, p.errf(extra.Line, "", "more than one YAML document; put everything in one")
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, p.errf(doc.Line, "", "not a YAML document")
	}
	root, err := p.resolve(doc.Content[0], "")
	if err != nil {
		return nil, err
	}
	if isNull(root) {
		return nil, p.errf(root.Line, "", "the file is empty; it needs at least a `connections` section")
	}
	return root, nil
}

// topSettings is the table of the top level's keys, in the order they are read
// (connections last: they use the ports, secrets and pools).
func topSettings(cfg *Config) []setting {
	return []setting{
		{key: "control", read: func(p *parser, v val) error {
			if err := pathKey(&cfg.Control)(p, v); err != nil {
				return err
			}
			if len(cfg.Control) > 103 {
				return p.verr(v, "%s is %d bytes long; Unix socket paths are limited to 103 bytes", cfg.Control, len(cfg.Control))
			}
			return nil
		}},
		{key: "log_level", read: enumKey(&cfg.LogLevel, "debug", "info", "warn", "error")},
		{key: "log_format", read: enumKey(&cfg.LogFormat, "text", "json")},
		{key: "keylog", read: pathKey(&cfg.Keylog)},
		{key: "updown", read: fileKey(&cfg.Updown)},
		{key: "ports", read: into((*parser).ports, &cfg.Ports)},
		{key: "tun", read: into((*parser).tun, &cfg.TUN)},
		{key: "secrets", read: into((*parser).secrets, &cfg.Secrets)},
		{key: "pools", read: into((*parser).pools, &cfg.Pools)},
		{key: "cookie_threshold", read: intKey(&cfg.CookieThreshold, 0, 1<<20)},
		{key: "half_open_timeout", read: positiveDurationKey(&cfg.HalfOpenTimeout, "30s")},
		{key: "block_threshold", read: intKey(&cfg.BlockThreshold, 1, 1<<20)},
		{key: "half_open_limit", read: intKey(&cfg.HalfOpenLimit, 1, 1<<24)},
		{key: "block_ipv6_prefix", read: intKey(&cfg.BlockIPv6Prefix, 16, 128)},
		{key: "preauth_memory", read: func(p *parser, v val) error {
			n, err := p.volume(v, "bytes")
			if err != nil {
				return err
			}
			if n < 64<<10 || n > 1<<40 {
				return p.verr(v, "%d bytes is out of range; allowed: 64K..1T (what half-open IKE SAs may hold in all)", n)
			}
			cfg.PreauthMemory = n
			return nil
		}},
		{key: "fragment_size", read: intKey(&cfg.FragmentSize, 576, 65535)},
		{key: "retransmit", read: into((*parser).retransmit, &cfg.Retransmit)},
		{key: "datapath", read: into((*parser).datapath, &cfg.Datapath)},
		{key: "radius", read: func(p *parser, v val) error {
			cfg.Radius = &Radius{}
			return p.radius(v, cfg.Radius)
		}},
		{key: "connections", need: "missing; define at least one connection", read: func(p *parser, v val) (err error) {
			cfg.Connections, err = p.connections(v, cfg)
			return err
		}},
		{key: "metrics", read: into((*parser).metrics, &cfg.Metrics)},
		// After connections: a node's addresses default to their local_addrs.
		{key: "cluster", read: func(p *parser, v val) error {
			cfg.Cluster = &Cluster{}
			return p.cluster(v, cfg, cfg.Cluster)
		}},
	}
}

func (p *parser) ports(v val, ports *Ports) error {
	o, err := p.object(v, "ike, natt", "ike", "natt")
	if err != nil {
		return err
	}
	return p.apply(o, []setting{
		{key: "ike", read: intKey(&ports.IKE, 1, 65535)},
		{key: "natt", read: intKey(&ports.NATT, 1, 65535)},
		{check: func() error {
			if ports.IKE == ports.NATT {
				return p.kerr(o, "natt", "%d is also ports.ike; the two ports must differ", ports.NATT)
			}
			return nil
		}},
	})
}

func (p *parser) tun(v val, t *TUN) error {
	o, err := p.object(v, "name, mtu, addrs", "name", "mtu", "addrs")
	if err != nil {
		return err
	}
	return p.apply(o, []setting{
		{key: "name", read: func(p *parser, v val) error {
			s, err := p.str(v)
			if err != nil {
				return err
			}
			if len(s) > 15 || s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n") {
				return p.verr(v, "%q is not a valid interface name; use at most 15 characters without '/', ':' or spaces", s)
			}
			t.Name = s
			return nil
		}},
		{key: "mtu", read: intKey(&t.MTU, 576, 9000)},
		{key: "addrs", read: func(p *parser, v val) error { return p.tunAddrs(v, o, t) }},
	})
}

// tunAddrs reads tun.addrs (of the tun block o, whose mtu is read).
func (p *parser) tunAddrs(v val, o *obj, t *TUN) error {
	items, err := p.list(v, true)
	if err != nil {
		return err
	}
	for _, it := range items {
		pf, err := p.prefix(it, false, false)
		if err != nil {
			return err
		}
		if pf.Addr().IsUnspecified() {
			return p.ierr(it, "%s is the unspecified address; give the TUN device's own address", pf)
		}
		for _, q := range t.Addrs {
			if q.Addr() == pf.Addr() {
				return p.ierr(it, "%s is listed twice", pf.Addr())
			}
		}
		t.Addrs = append(t.Addrs, pf)
		if pf.Addr().Is6() && t.MTU < 1280 {
			return p.kerr(o, "mtu", "%d is below 1280, the IPv6 minimum, and tun.addrs has the IPv6 address %s", t.MTU, pf)
		}
	}
	return nil
}

func (p *parser) datapath(v val, d *Datapath) error {
	o, err := p.object(v, "workers, udp_offload", "workers", "udp_offload")
	if err != nil {
		return err
	}
	return p.apply(o, []setting{
		{key: "workers", read: intKey(&d.Workers, 0, MaxDatapathWorkers)},
		{key: "udp_offload", read: boolKey(&d.UDPOffload)},
	})
}

func (p *parser) retransmit(v val, r *Retransmit) error {
	o, err := p.object(v, "timeout, tries, base", "timeout", "tries", "base")
	if err != nil {
		return err
	}
	return p.apply(o, []setting{
		{key: "timeout", read: positiveDurationKey(&r.Timeout, "4s")},
		{key: "tries", read: intKey(&r.Tries, 0, 30)},
		{key: "base", read: floatKey(&r.Base, 1, 10)},
	})
}

// metrics reads metrics: { listen: HOST:PORT }.
func (p *parser) metrics(v val, dst *string) error {
	o, err := p.object(v, "listen", "listen")
	if err != nil {
		return err
	}
	return p.apply(o, []setting{
		{key: "listen", need: "missing; e.g. listen: 127.0.0.1:9520", read: func(p *parser, v val) error {
			s, err := p.str(v)
			if err != nil {
				return err
			}
			ap, err := netip.ParseAddrPort(s)
			if err != nil || ap.Port() == 0 {
				return p.verr(v, "%q is not an address and port, e.g. 127.0.0.1:9520 or [::1]:9520", s)
			}
			*dst = ap.String()
			return nil
		}},
	})
}
