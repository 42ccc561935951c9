package config

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mobikevpn/mobikevpn/ike/cert"
	ikecrypto "github.com/mobikevpn/mobikevpn/ike/crypto"
	"github.com/mobikevpn/mobikevpn/ike/wire"
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

func (p *parser) parse(data []byte) (*Config, error) {
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
	top, err := p.object(val{n: root, line: root.Line}, "the top level: control, log_level, connections, ...",
		"control", "log_level", "keylog", "ports", "tun", "updown", "secrets", "pools",
		"cookie_threshold", "half_open_timeout", "block_threshold", "half_open_limit", "block_ipv6_prefix", "preauth_memory", "retransmit", "fragment_size", "datapath", "connections")
	if err != nil {
		return nil, err
	}
	cfg := &Config{
		LogLevel:        DefaultLogLevel,
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
	if v, ok := top.get("control"); ok {
		s, err := p.str(v)
		if err != nil {
			return nil, err
		}
		cfg.Control = p.path(s)
		if len(cfg.Control) > 103 {
			return nil, p.verr(v, "%s is %d bytes long; Unix socket paths are limited to 103 bytes", cfg.Control, len(cfg.Control))
		}
	}
	if v, ok := top.get("log_level"); ok {
		if cfg.LogLevel, err = p.oneOf(v, "debug", "info", "warn", "error"); err != nil {
			return nil, err
		}
	}
	if v, ok := top.get("keylog"); ok {
		s, err := p.str(v)
		if err != nil {
			return nil, err
		}
		cfg.Keylog = p.path(s)
	}
	if v, ok := top.get("updown"); ok {
		s, err := p.str(v)
		if err != nil {
			return nil, err
		}
		if cfg.Updown, err = p.file(item{s: s, path: v.path, line: v.line}); err != nil {
			return nil, err
		}
	}
	if v, ok := top.get("ports"); ok {
		if err := p.ports(v, &cfg.Ports); err != nil {
			return nil, err
		}
	}
	if v, ok := top.get("tun"); ok {
		if err := p.tun(v, &cfg.TUN); err != nil {
			return nil, err
		}
	}
	if v, ok := top.get("secrets"); ok {
		if cfg.Secrets, err = p.secrets(v); err != nil {
			return nil, err
		}
	}
	if v, ok := top.get("pools"); ok {
		if cfg.Pools, err = p.pools(v); err != nil {
			return nil, err
		}
	}
	if v, ok := top.get("cookie_threshold"); ok {
		n, err := p.integer(v, 0, 1<<20)
		if err != nil {
			return nil, err
		}
		cfg.CookieThreshold = int(n)
	}
	if v, ok := top.get("half_open_timeout"); ok {
		if cfg.HalfOpenTimeout, err = p.duration(v); err != nil {
			return nil, err
		}
		if cfg.HalfOpenTimeout == 0 {
			return nil, p.verr(v, "must be more than 0, e.g. 30s")
		}
	}
	if v, ok := top.get("block_threshold"); ok {
		n, err := p.integer(v, 1, 1<<20)
		if err != nil {
			return nil, err
		}
		cfg.BlockThreshold = int(n)
	}
	if v, ok := top.get("half_open_limit"); ok {
		n, err := p.integer(v, 1, 1<<24)
		if err != nil {
			return nil, err
		}
		cfg.HalfOpenLimit = int(n)
	}
	if v, ok := top.get("block_ipv6_prefix"); ok {
		n, err := p.integer(v, 16, 128)
		if err != nil {
			return nil, err
		}
		cfg.BlockIPv6Prefix = int(n)
	}
	if v, ok := top.get("preauth_memory"); ok {
		n, err := p.volume(v, "bytes")
		if err != nil {
			return nil, err
		}
		if n < 64<<10 || n > 1<<40 {
			return nil, p.verr(v, "%d bytes is out of range; allowed: 64K..1T (what half-open IKE SAs may hold in all)", n)
		}
		cfg.PreauthMemory = n
	}
	if v, ok := top.get("fragment_size"); ok {
		n, err := p.integer(v, 576, 65535)
		if err != nil {
			return nil, err
		}
		cfg.FragmentSize = int(n)
	}
	if v, ok := top.get("retransmit"); ok {
		if err := p.retransmit(v, &cfg.Retransmit); err != nil {
			return nil, err
		}
	}
	if v, ok := top.get("datapath"); ok {
		if err := p.datapath(v, &cfg.Datapath); err != nil {
			return nil, err
		}
	}
	v, ok := top.get("connections")
	if !ok {
		return nil, p.errf(top.keyLine("connections"), "connections", "missing; define at least one connection")
	}
	if cfg.Connections, err = p.connections(v, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (p *parser) ports(v val, ports *Ports) error {
	o, err := p.object(v, "ike, natt", "ike", "natt")
	if err != nil {
		return err
	}
	if v, ok := o.get("ike"); ok {
		n, err := p.integer(v, 1, 65535)
		if err != nil {
			return err
		}
		ports.IKE = uint16(n)
	}
	if v, ok := o.get("natt"); ok {
		n, err := p.integer(v, 1, 65535)
		if err != nil {
			return err
		}
		ports.NATT = uint16(n)
	}
	if ports.IKE == ports.NATT {
		return p.errf(o.keyLine("natt"), joinPath(v.path, "natt"), "%d is also ports.ike; the two ports must differ", ports.NATT)
	}
	return nil
}

func (p *parser) tun(tv val, t *TUN) error {
	o, err := p.object(tv, "name, mtu, addrs", "name", "mtu", "addrs")
	if err != nil {
		return err
	}
	if v, ok := o.get("name"); ok {
		s, err := p.str(v)
		if err != nil {
			return err
		}
		if len(s) > 15 || s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n") {
			return p.verr(v, "%q is not a valid interface name; use at most 15 characters without '/', ':' or spaces", s)
		}
		t.Name = s
	}
	if v, ok := o.get("mtu"); ok {
		n, err := p.integer(v, 576, 9000)
		if err != nil {
			return err
		}
		t.MTU = int(n)
	}
	if v, ok := o.get("addrs"); ok {
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
				return p.errf(o.keyLine("mtu"), joinPath(tv.path, "mtu"), "%d is below 1280, the IPv6 minimum, and tun.addrs has the IPv6 address %s", t.MTU, pf)
			}
		}
	}
	return nil
}

func (p *parser) secrets(v val) ([]Secret, error) {
	elems, err := p.seq(v, "of secrets, each with ids and psk or psk_file")
	if err != nil {
		return nil, err
	}
	out := make([]Secret, 0, len(elems))
	for _, e := range elems {
		o, err := p.object(e, "ids, psk or psk_file", "ids", "psk", "psk_file")
		if err != nil {
			return nil, err
		}
		var s Secret
		if v, ok := o.get("ids"); ok {
			items, err := p.list(v, false)
			if err != nil {
				return nil, err
			}
			for _, it := range items {
				s.IDs = append(s.IDs, it.s)
			}
		}
		vp, hasPSK := o.get("psk")
		vf, hasFile := o.get("psk_file")
		switch {
		case hasPSK && hasFile:
			return nil, p.errf(o.keyLine("psk_file"), vf.path, "give either psk or psk_file, not both")
		case !hasPSK && !hasFile:
			return nil, p.verr(e, "missing psk or psk_file")
		case hasPSK:
			str, err := p.scalar(vp, "a string")
			if err != nil {
				return nil, err
			}
			if s.PSK, err = decodeSecret(str); err != nil {
				return nil, p.verr(vp, "%v", err)
			}
		default:
			name, err := p.str(vf)
			if err != nil {
				return nil, err
			}
			abs := p.path(name)
			data, err := os.ReadFile(abs)
			if err != nil {
				return nil, p.verr(vf, "%s: %v", abs, unwrapPathError(err))
			}
			s.PSK = bytes.TrimRight(data, "\r\n")
			if len(s.PSK) == 0 {
				return nil, p.verr(vf, "%s is empty; a pre-shared key must not be empty", abs)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// decodeSecret decodes a psk as strongSwan does: "0x..." is hex, "0s..." base64,
// anything else the literal bytes.
func decodeSecret(s string) ([]byte, error) {
	var b []byte
	switch {
	case strings.HasPrefix(s, "0x"):
		var err error
		if b, err = hex.DecodeString(s[2:]); err != nil {
			return nil, errors.New("starts with 0x but is not hex; write the key as hex after 0x, or quote a text key that does not start with 0x")
		}
	case strings.HasPrefix(s, "0s"):
		var err error
		if b, err = base64.StdEncoding.DecodeString(s[2:]); err != nil {
			return nil, errors.New("starts with 0s but is not base64; write the key as base64 after 0s, or use a text key that does not start with 0s")
		}
	default:
		b = []byte(s)
	}
	if len(b) == 0 {
		return nil, errors.New("a pre-shared key must not be empty")
	}
	return b, nil
}

func (p *parser) pools(v val) ([]Pool, error) {
	elems, err := p.seq(v, "of pools, each with name, addrs and dns")
	if err != nil {
		return nil, err
	}
	out := make([]Pool, 0, len(elems))
	for _, e := range elems {
		o, err := p.object(e, "name, addrs, dns", "name", "addrs", "dns")
		if err != nil {
			return nil, err
		}
		var pool Pool
		nv, ok := o.get("name")
		if !ok {
			return nil, p.errf(o.keyLine("name"), joinPath(e.path, "name"), "missing; every pool needs a name")
		}
		if pool.Name, err = p.str(nv); err != nil {
			return nil, err
		}
		if !validName(pool.Name) {
			return nil, p.verr(nv, "%q is not a valid name; use 1..64 letters, digits, '.', '_' or '-'", pool.Name)
		}
		for _, q := range out {
			if q.Name == pool.Name {
				return nil, p.verr(nv, "a pool named %q is already defined", pool.Name)
			}
		}
		av, ok := o.get("addrs")
		if !ok {
			return nil, p.errf(o.keyLine("addrs"), joinPath(e.path, "addrs"), "missing; give the pool's prefix(es), e.g. 198.18.100.0/24")
		}
		items, err := p.list(av, true)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			pf, err := p.prefix(it, true, false)
			if err != nil {
				return nil, err
			}
			for _, q := range pool.Addrs {
				if q.Overlaps(pf) {
					return nil, p.ierr(it, "%s overlaps %s", pf, q)
				}
			}
			pool.Addrs = append(pool.Addrs, pf)
		}
		if dv, ok := o.get("dns"); ok {
			items, err := p.list(dv, true)
			if err != nil {
				return nil, err
			}
			if pool.DNS, err = p.addrs(items, false); err != nil {
				return nil, err
			}
		}
		out = append(out, pool)
	}
	return out, nil
}

func (p *parser) datapath(v val, d *Datapath) error {
	o, err := p.object(v, "workers, udp_offload", "workers", "udp_offload")
	if err != nil {
		return err
	}
	if v, ok := o.get("workers"); ok {
		n, err := p.integer(v, 0, MaxDatapathWorkers)
		if err != nil {
			return err
		}
		d.Workers = int(n)
	}
	if v, ok := o.get("udp_offload"); ok {
		if d.UDPOffload, err = p.boolean(v); err != nil {
			return err
		}
	}
	return nil
}

func (p *parser) retransmit(v val, r *Retransmit) error {
	o, err := p.object(v, "timeout, tries, base", "timeout", "tries", "base")
	if err != nil {
		return err
	}
	if v, ok := o.get("timeout"); ok {
		if r.Timeout, err = p.duration(v); err != nil {
			return err
		}
		if r.Timeout == 0 {
			return p.verr(v, "must be more than 0, e.g. 4s")
		}
	}
	if v, ok := o.get("tries"); ok {
		n, err := p.integer(v, 0, 30)
		if err != nil {
			return err
		}
		r.Tries = int(n)
	}
	if v, ok := o.get("base"); ok {
		if r.Base, err = p.float(v, 1, 10); err != nil {
			return err
		}
	}
	return nil
}

func (p *parser) connections(v val, cfg *Config) ([]*Connection, error) {
	fs, err := p.entries(v, "connection names to their settings", 0)
	if err != nil {
		return nil, err
	}
	var out []*Connection
	for _, f := range fs {
		if !validName(f.key) {
			return nil, p.errf(f.keyLine, f.v.path, "%q is not a valid connection name; use 1..64 letters, digits, '.', '_' or '-'", f.key)
		}
		if isNull(f.v.n) {
			return nil, p.errf(f.keyLine, f.v.path, "empty connection; it needs at least local, remote and children")
		}
		c, err := p.connection(f, cfg)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, p.verr(v, "no connections; define at least one")
	}
	return out, nil
}

var connectionKeys = []string{
	"local_addrs", "remote_addrs", "remote_port", "proposals", "mobike", "rmobike",
	"additional_addrs", "switch_accept", "switch_limit", "switch_hold", "rmobike_notify", "encap", "dpd_delay", "dpd_action", "close_action",
	"rekey_time", "pools", "vips", "local", "remote", "start_action", "children", "max_children",
}

func (p *parser) connection(f field, cfg *Config) (*Connection, error) {
	o, err := p.object(f.v, "connection settings", connectionKeys...)
	if err != nil {
		return nil, err
	}
	o.v.line = f.keyLine
	c := &Connection{
		Name:                   f.key,
		RemotePort:             cfg.Ports.IKE,
		Proposals:              []string{"default"},
		Mobike:                 true,
		RMobike:                true,
		AdditionalAddrs:        AdditionalAddrs{Mode: AdditionalAuto},
		SwitchAccept:           []string{"additional"},
		SwitchAcceptAdditional: true,
		SwitchLimit:            DefaultSwitchLimit,
		SwitchHold:             DefaultSwitchHold,
		RMobikeNotify:          DefaultRMobikeNotify,
		Encap:                  true,
		DPDDelay:               DefaultDPDDelay,
		DPDAction:              "clear",
		CloseAction:            "none",
		RekeyTime:              DefaultIKERekeyTime,
		StartAction:            "none",
		MaxChildren:            DefaultMaxChildren,
	}
	if v, ok := o.get("local_addrs"); ok {
		items, err := p.list(v, true)
		if err != nil {
			return nil, err
		}
		if !(len(items) == 1 && items[0].s == AnyID) {
			if c.LocalAddrs, err = p.addrs(items, false); err != nil {
				return nil, err
			}
		}
	}
	c.RemoteAny = true
	if v, ok := o.get("remote_addrs"); ok {
		items, err := p.list(v, true)
		if err != nil {
			return nil, err
		}
		if !(len(items) == 1 && items[0].s == AnyID) {
			for _, it := range items {
				if it.s == AnyID {
					return nil, p.ierr(it, "%%any must be the only entry; give either %%any or a list of addresses")
				}
			}
			if c.RemoteAddrs, err = p.addrs(items, false); err != nil {
				return nil, err
			}
			c.RemoteAny = len(c.RemoteAddrs) == 0
		}
	}
	c.Initiator = !c.RemoteAny
	if v, ok := o.get("remote_port"); ok {
		n, err := p.integer(v, 1, 65535)
		if err != nil {
			return nil, err
		}
		c.RemotePort = uint16(n)
	}
	if v, ok := o.get("proposals"); ok {
		items, err := p.list(v, true)
		if err != nil {
			return nil, err
		}
		if len(items) == 0 {
			return nil, p.verr(v, "needs at least one proposal, e.g. [default] or [aes128gcm16-prfsha256-x25519]")
		}
		c.Proposals = c.Proposals[:0]
		for _, it := range items {
			if err := checkIKEProposal(it.s); err != nil {
				return nil, p.ierr(it, "%v", err)
			}
			c.Proposals = append(c.Proposals, it.s)
		}
	}
	for _, b := range []struct {
		key string
		dst *bool
	}{{"mobike", &c.Mobike}, {"rmobike", &c.RMobike}, {"encap", &c.Encap}} {
		if v, ok := o.get(b.key); ok {
			if *b.dst, err = p.boolean(v); err != nil {
				return nil, err
			}
		}
	}
	if !c.Mobike {
		if v, ok := o.get("rmobike"); ok && c.RMobike {
			return nil, p.verr(v, "rmobike needs mobike; set mobike: true or drop rmobike")
		}
		c.RMobike = false
	}
	if v, ok := o.get("additional_addrs"); ok {
		if err := p.additional(v, &c.AdditionalAddrs); err != nil {
			return nil, err
		}
		if !c.Mobike && c.AdditionalAddrs.Mode != AdditionalNone {
			return nil, p.verr(v, "addresses are only announced with MOBIKE; set mobike: true or additional_addrs: none")
		}
	}
	if v, ok := o.get("switch_accept"); ok {
		if err := p.switchAccept(v, c); err != nil {
			return nil, err
		}
	}
	if err := p.switchSettings(o, c); err != nil {
		return nil, err
	}
	for _, d := range []struct {
		key string
		dst *time.Duration
	}{{"dpd_delay", &c.DPDDelay}, {"rekey_time", &c.RekeyTime}} {
		if v, ok := o.get(d.key); ok {
			if *d.dst, err = p.duration(v); err != nil {
				return nil, err
			}
		}
	}
	if v, ok := o.get("dpd_action"); ok {
		if c.DPDAction, err = p.oneOf(v, "clear", "restart", "none"); err != nil {
			return nil, err
		}
	}
	if v, ok := o.get("close_action"); ok {
		if c.CloseAction, err = p.oneOf(v, "none", "restart"); err != nil {
			return nil, err
		}
	}
	if v, ok := o.get("pools"); ok {
		items, err := p.list(v, true)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			if cfg.Pool(it.s) == nil {
				var names []string
				for _, q := range cfg.Pools {
					names = append(names, q.Name)
				}
				defined := "none are defined"
				if len(names) > 0 {
					defined = "defined: " + strings.Join(names, ", ")
				}
				return nil, p.ierr(it, "no pool named %q in pools (%s)", it.s, defined)
			}
			for _, q := range c.Pools {
				if q == it.s {
					return nil, p.ierr(it, "pool %q is listed twice", it.s)
				}
			}
			c.Pools = append(c.Pools, it.s)
		}
	}
	if v, ok := o.get("vips"); ok {
		items, err := p.list(v, true)
		if err != nil {
			return nil, err
		}
		if c.VIPs, err = p.addrs(items, true); err != nil {
			return nil, err
		}
		if len(c.VIPs) > 0 && !c.Initiator {
			return nil, p.verr(v, "only an initiator (a connection with concrete remote_addrs) can request virtual IPs")
		}
	}
	if v, ok := o.get("max_children"); ok {
		n, err := p.integer(v, 1, MaxMaxChildren)
		if err != nil {
			return nil, err
		}
		c.MaxChildren = int(n)
	}
	lv, ok := o.get("local")
	if !ok {
		return nil, p.errf(o.keyLine("local"), joinPath(f.v.path, "local"), "missing; e.g. local: { auth: psk, id: alice@example.org }")
	}
	if err := p.localAuth(lv, &c.Local); err != nil {
		return nil, err
	}
	rv, ok := o.get("remote")
	if !ok {
		return nil, p.errf(o.keyLine("remote"), joinPath(f.v.path, "remote"), "missing; e.g. remote: { auth: psk, id: gw.example.org }")
	}
	if err := p.remoteAuth(rv, &c.Remote, c); err != nil {
		return nil, err
	}
	if v, ok := o.get("start_action"); ok {
		if c.StartAction, err = p.oneOf(v, "start", "none"); err != nil {
			return nil, err
		}
		if c.StartAction == "start" && !c.Initiator {
			return nil, p.verr(v, "a responder (remote_addrs %%any or empty) cannot start the connection; set remote_addrs to the peer's address(es) or use start_action: none")
		}
	}
	cv, ok := o.get("children")
	if !ok {
		return nil, p.errf(o.keyLine("children"), joinPath(f.v.path, "children"), "missing; a connection needs at least one child, e.g. children: { net: { remote_ts: [0.0.0.0/0] } }")
	}
	if c.Children, err = p.children(cv); err != nil {
		return nil, err
	}
	if c.Local.Auth == AuthPSK || c.Remote.Auth == AuthPSK {
		if _, ok := cfg.PSK(c.Local.ID, c.Remote.ID); !ok {
			return nil, p.errf(f.keyLine, f.v.path, "psk authentication, but no entry in secrets has an id matching the local id %q or the remote id %q", c.Local.ID, c.Remote.ID)
		}
	}
	if c.IKEProposals, err = parseProposals(c.Proposals, ikecrypto.ParseIKEProposal); err != nil {
		return nil, p.errf(f.keyLine, joinPath(f.v.path, "proposals"), "%v", err)
	}
	return c, nil
}

// parseProposals parses validated proposal strings into the engine's proposals, in
// order (one string may give several: "default").
func parseProposals(ss []string, parse func(string) ([]wire.Proposal, error)) ([]wire.Proposal, error) {
	var out []wire.Proposal
	for _, s := range ss {
		ps, err := parse(s)
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
	}
	return out, nil
}

func (p *parser) additional(v val, a *AdditionalAddrs) error {
	if v.n.Kind == yaml.ScalarNode {
		switch v.n.Value {
		case AdditionalAuto, AdditionalNone:
			*a = AdditionalAddrs{Mode: v.n.Value}
			return nil
		}
	}
	items, err := p.list(v, true)
	if err != nil {
		return err
	}
	for _, it := range items {
		if _, err := p.addr(it, false); err != nil {
			return p.ierr(it, "%q is not allowed; use auto, none or a list of IP addresses", it.s)
		}
	}
	addrs, err := p.addrs(items, false)
	if err != nil {
		return err
	}
	if len(addrs) == 0 {
		*a = AdditionalAddrs{Mode: AdditionalNone}
		return nil
	}
	*a = AdditionalAddrs{Mode: AdditionalList, Addrs: addrs}
	return nil
}

func (p *parser) switchAccept(v val, c *Connection) error {
	c.SwitchAccept, c.SwitchAcceptAdditional, c.SwitchAcceptAny, c.SwitchAcceptPrefixes = []string{}, false, false, nil
	if v.n.Kind == yaml.ScalarNode && v.n.Value == "none" {
		return nil
	}
	items, err := p.list(v, true)
	if err != nil {
		return err
	}
	for _, it := range items {
		switch it.s {
		case "additional":
			c.SwitchAcceptAdditional = true
		case "any":
			c.SwitchAcceptAny = true
		default:
			if _, err := netip.ParsePrefix(it.s); err != nil {
				if _, err := netip.ParseAddr(it.s); err != nil {
					return p.ierr(it, "%q is not allowed; use additional, any, a CIDR prefix or an address ([] refuses every switch)", it.s)
				}
			}
			pf, err := p.prefix(it, true, true)
			if err != nil {
				return err
			}
			c.SwitchAcceptPrefixes = append(c.SwitchAcceptPrefixes, pf)
		}
		c.SwitchAccept = append(c.SwitchAccept, it.s)
	}
	return nil
}

// switchSettings reads switch_limit, switch_hold and rmobike_notify, the settings of
// SWITCH_TO_IP_ADDRESS (draft-smyslov-ipsecme-ikev2-r-mobike). They need MOBIKE; with
// mobike: false they are an error unless rmobike: false is written too (then they are
// merely unused).
func (p *parser) switchSettings(o *obj, c *Connection) error {
	if v, ok := o.get("switch_limit"); ok {
		n, err := p.integer(v, 1, MaxSwitchLimit)
		if err != nil {
			return err
		}
		c.SwitchLimit = int(n)
	}
	if v, ok := o.get("switch_hold"); ok {
		d, err := p.duration(v)
		if err != nil {
			return err
		}
		c.SwitchHold = d
	}
	if v, ok := o.get("rmobike_notify"); ok {
		n, err := p.integer(v, MinRMobikeNotify, MaxRMobikeNotify)
		if err != nil {
			var i int64
			if v.n.ShortTag() == "!!int" && v.n.Decode(&i) == nil && i < MinRMobikeNotify {
				return p.verr(v, "%d is out of range; allowed: %d..%d: the private-use status range starts at 40960, but 40960-40969 are used by libreswan and strongSwan", i, MinRMobikeNotify, MaxRMobikeNotify)
			}
			return err
		}
		c.RMobikeNotify = uint16(n)
	}
	if c.Mobike {
		return nil
	}
	if v, ok := o.get("rmobike"); ok {
		if b, err := p.boolean(v); err == nil && !b {
			return nil // rmobike: false written: the switch settings are harmless
		}
	}
	for _, key := range []string{"switch_limit", "switch_hold", "rmobike_notify"} {
		if v, ok := o.get(key); ok {
			return p.verr(v, "%s needs MOBIKE: it is a setting of SWITCH_TO_IP_ADDRESS (R-MOBIKE), which works only over MOBIKE; set mobike: true or drop %s", key, key)
		}
	}
	return nil
}

func (p *parser) localAuth(v val, a *LocalAuth) error {
	o, err := p.object(v, "auth, id, certs, key, rsa_pss", "auth", "id", "certs", "key", "rsa_pss")
	if err != nil {
		return err
	}
	av, ok := o.get("auth")
	if !ok {
		return p.errf(o.keyLine("auth"), joinPath(v.path, "auth"), "missing; use psk or pubkey")
	}
	if a.Auth, err = p.oneOf(av, AuthPSK, AuthPubkey); err != nil {
		return err
	}
	if iv, ok := o.get("id"); ok {
		if a.ID, err = p.str(iv); err != nil {
			return err
		}
		if a.ID == AnyID {
			return p.verr(iv, "the local identity must be concrete, not %%any")
		}
	}
	switch a.Auth {
	case AuthPSK:
		if a.ID == "" {
			return p.errf(o.keyLine("id"), joinPath(v.path, "id"), "missing; psk authentication needs our identity, e.g. id: alice@example.org")
		}
		for _, k := range []string{"certs", "key", "rsa_pss"} {
			if o.has(k) {
				return p.errf(o.keyLine(k), joinPath(v.path, k), "only used with auth: pubkey")
			}
		}
	case AuthPubkey:
		cv, ok := o.get("certs")
		if !ok {
			return p.errf(o.keyLine("certs"), joinPath(v.path, "certs"), "missing; pubkey authentication needs our certificate, e.g. certs: [gw.pem]")
		}
		items, err := p.list(cv, false)
		if err != nil {
			return err
		}
		for _, it := range items {
			f, err := p.file(it)
			if err != nil {
				return err
			}
			a.Certs = append(a.Certs, f)
		}
		if len(a.Certs) == 0 {
			return p.verr(cv, "needs at least one certificate file")
		}
		kv, ok := o.get("key")
		if !ok {
			return p.errf(o.keyLine("key"), joinPath(v.path, "key"), "missing; pubkey authentication needs our private key, e.g. key: gw.key")
		}
		s, err := p.str(kv)
		if err != nil {
			return err
		}
		if a.Key, err = p.file(item{s: s, path: kv.path, line: kv.line}); err != nil {
			return err
		}
		if a.Cred, err = cert.LoadCredential(a.Certs, a.Key); err != nil {
			return p.verr(kv, "%v", err)
		}
		if pv, ok := o.get("rsa_pss"); ok {
			if a.Cred.RSAPSS, err = p.boolean(pv); err != nil {
				return err
			}
		}
	}
	return nil
}

// remoteAuth parses the remote block of connection c (whose remote_addrs are parsed).
func (p *parser) remoteAuth(v val, a *RemoteAuth, c *Connection) error {
	o, err := p.object(v, "auth, id, cacerts, accept_any_id, eku, crls", "auth", "id", "cacerts", "accept_any_id", "eku", "crls")
	if err != nil {
		return err
	}
	av, ok := o.get("auth")
	if !ok {
		return p.errf(o.keyLine("auth"), joinPath(v.path, "auth"), "missing; use psk or pubkey")
	}
	if a.Auth, err = p.oneOf(av, AuthPSK, AuthPubkey); err != nil {
		return err
	}
	a.ID = AnyID
	iv, hasID := o.get("id")
	if hasID {
		if a.ID, err = p.str(iv); err != nil {
			return err
		}
	}
	switch a.Auth {
	case AuthPSK:
		for _, k := range []string{"cacerts", "accept_any_id", "eku", "crls"} {
			if o.has(k) {
				return p.errf(o.keyLine(k), joinPath(v.path, k), "only used with auth: pubkey")
			}
		}
	case AuthPubkey:
		cv, ok := o.get("cacerts")
		if !ok {
			return p.errf(o.keyLine("cacerts"), joinPath(v.path, "cacerts"), "missing; pubkey authentication of the peer needs the CA certificate(s) to trust, e.g. cacerts: [ca.pem]")
		}
		items, err := p.list(cv, false)
		if err != nil {
			return err
		}
		for _, it := range items {
			f, err := p.file(it)
			if err != nil {
				return err
			}
			a.CACerts = append(a.CACerts, f)
		}
		if len(a.CACerts) == 0 {
			return p.verr(cv, "needs at least one CA certificate file")
		}
		if a.CAs, err = cert.LoadCAs(a.CACerts); err != nil {
			return p.verr(cv, "%v", err)
		}
		if xv, ok := o.get("accept_any_id"); ok {
			if a.AcceptAnyID, err = p.boolean(xv); err != nil {
				return err
			}
			if a.ID != AnyID {
				return p.verr(xv, "only applies with id: \"%%any\" (or no id); this connection names its peer (id: %s)", a.ID)
			}
		}
		// Issue 11: a client that takes any certificate of its CAs as the gateway can be
		// fooled by anyone holding one (any other client of the same CA).
		if c.Initiator && hasID && a.ID == AnyID && !a.AcceptAnyID {
			return p.verr(iv, "\"%%any\" on a client (remote_addrs %s) would accept any certificate issued by the CAs in cacerts as the gateway: "+
				"anyone holding one (another client, too) could pose as the gateway and see the traffic. Name the gateway's identity "+
				"(e.g. id: gw.example.org, or its certificate's subject DN), or leave id out to expect the gateway's address in its "+
				"certificate (an IP subjectAltName); to accept any certificate of these CAs all the same, add accept_any_id: true",
				addrList(c.RemoteAddrs))
		}
		if ev, ok := o.get("eku"); ok {
			items, err := p.list(ev, true)
			if err != nil {
				return err
			}
			if len(items) == 0 {
				return p.verr(ev, "needs at least one extended key usage (e.g. [serverAuth, ipsecIKE]); leave eku out not to check them")
			}
			for _, it := range items {
				oid, err := cert.ParseEKU(it.s)
				if err != nil {
					return p.ierr(it, "%v", err)
				}
				for _, have := range a.EKUOIDs {
					if have.Equal(oid) {
						return p.ierr(it, "%s is listed twice", it.s)
					}
				}
				a.EKU = append(a.EKU, it.s)
				a.EKUOIDs = append(a.EKUOIDs, oid)
			}
		}
		if rv, ok := o.get("crls"); ok {
			items, err := p.list(rv, false)
			if err != nil {
				return err
			}
			if len(items) == 0 {
				return p.verr(rv, "needs at least one CRL file; leave crls out not to check revocation")
			}
			for _, it := range items {
				f, err := p.file(it)
				if err != nil {
					return err
				}
				crls, err := cert.LoadCRLs([]string{f})
				if err != nil {
					return p.ierr(it, "%v", err)
				}
				if err := crlsFitCAs(crls, a.CAs); err != nil {
					return p.ierr(it, "%v", err)
				}
				a.CRLFiles = append(a.CRLFiles, f)
				a.CRLs = append(a.CRLs, crls...)
			}
		}
	}
	return nil
}

// crlsFitCAs checks that each CRL issued in the name of one of the trusted CAs verifies
// with that CA's key. CRLs of other issuers may be those of intermediate CAs, which
// peers send: they are checked when used.
func crlsFitCAs(crls []*x509.RevocationList, cas []*x509.Certificate) error {
	for _, crl := range crls {
		var named []*x509.Certificate
		for _, ca := range cas {
			if bytes.Equal(crl.RawIssuer, ca.RawSubject) {
				named = append(named, ca)
			}
		}
		if len(named) == 0 {
			continue
		}
		var err error
		for _, ca := range named {
			if err = crl.CheckSignatureFrom(ca); err == nil {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("the CRL of %q does not verify with that CA's certificate in cacerts: %v", crl.Issuer.String(), err)
		}
	}
	return nil
}

func addrList(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return "[" + strings.Join(s, ", ") + "]"
}

func (p *parser) children(v val) ([]*Child, error) {
	fs, err := p.entries(v, "child names to their settings", 0)
	if err != nil {
		return nil, err
	}
	var out []*Child
	for _, f := range fs {
		if !validName(f.key) {
			return nil, p.errf(f.keyLine, f.v.path, "%q is not a valid child name; use 1..64 letters, digits, '.', '_' or '-'", f.key)
		}
		ch := &Child{
			Name:         f.key,
			LocalTS:      []TS{{Dynamic: true, EndPort: 0xffff}},
			RemoteTS:     []TS{{Dynamic: true, EndPort: 0xffff}},
			ESPProposals: []string{"default"},
			RekeyTime:    DefaultChildRekeyTime,
		}
		if !isNull(f.v.n) {
			o, err := p.object(f.v, "local_ts, remote_ts, esp_proposals, rekey_time, rekey_bytes, life_bytes, rekey_packets, life_packets",
				"local_ts", "remote_ts", "esp_proposals", "rekey_time", "rekey_bytes", "life_bytes", "rekey_packets", "life_packets")
			if err != nil {
				return nil, err
			}
			for _, t := range []struct {
				key string
				dst *[]TS
			}{{"local_ts", &ch.LocalTS}, {"remote_ts", &ch.RemoteTS}} {
				if v, ok := o.get(t.key); ok {
					if *t.dst, err = p.tsList(v); err != nil {
						return nil, err
					}
				}
			}
			if v, ok := o.get("esp_proposals"); ok {
				items, err := p.list(v, true)
				if err != nil {
					return nil, err
				}
				if len(items) == 0 {
					return nil, p.verr(v, "needs at least one proposal, e.g. [default] or [aes128gcm16]")
				}
				ch.ESPProposals = ch.ESPProposals[:0]
				for _, it := range items {
					if err := checkESPProposal(it.s); err != nil {
						return nil, p.ierr(it, "%v", err)
					}
					ch.ESPProposals = append(ch.ESPProposals, it.s)
				}
			}
			if v, ok := o.get("rekey_time"); ok {
				if ch.RekeyTime, err = p.duration(v); err != nil {
					return nil, err
				}
			}
			if err := p.childVolumes(o, ch); err != nil {
				return nil, err
			}
		}
		if ch.ParsedESP, err = parseProposals(ch.ESPProposals, ikecrypto.ParseESPProposal); err != nil {
			return nil, p.errf(f.keyLine, joinPath(f.v.path, "esp_proposals"), "%v", err)
		}
		out = append(out, ch)
	}
	if len(out) == 0 {
		return nil, p.verr(v, "no children; define at least one")
	}
	return out, nil
}

func (p *parser) tsList(v val) ([]TS, error) {
	items, err := p.list(v, true)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, p.verr(v, "needs at least one traffic selector, e.g. [dynamic] or [198.18.0.0/16]")
	}
	out := make([]TS, 0, len(items))
	for _, it := range items {
		t, err := ParseTS(it.s)
		if err != nil {
			return nil, p.ierr(it, "%v", err)
		}
		out = append(out, t)
	}
	return out, nil
}

// checkIKEProposal and checkESPProposal validate one proposal string with the crypto
// package's parsers, reworded to stand on their own in a config error.
func checkIKEProposal(s string) error {
	_, err := ikecrypto.ParseIKEProposal(s)
	return proposalErr(s, err, "e.g. aes128gcm16-prfsha256-x25519, aes256-sha256-ecp256 or default")
}

func checkESPProposal(s string) error {
	_, err := ikecrypto.ParseESPProposal(s)
	return proposalErr(s, err, "e.g. aes128gcm16, chacha20poly1305, aes128-sha256-x25519 or default")
}

func proposalErr(s string, err error, examples string) error {
	if err == nil {
		return nil
	}
	msg := strings.TrimPrefix(err.Error(), "ikecrypto: ")
	msg = strings.TrimPrefix(msg, fmt.Sprintf("proposal %q: ", s))
	if !strings.Contains(msg, s) {
		msg = fmt.Sprintf("proposal %q: %s", s, msg)
	}
	return fmt.Errorf("%s (strongSwan proposal syntax, %s)", msg, examples)
}
