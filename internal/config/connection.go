package config

import (
	"net/netip"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
)

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

// connectionKeys are the keys of a connection, in the order an unknown key's error
// lists them.
var connectionKeys = []string{
	"local_addrs", "remote_addrs", "remote_port", "proposals", "mobike", "rmobike",
	"additional_addrs", "switch_accept", "switch_limit", "switch_hold", "rmobike_notify", "encap", "dpd_delay", "dpd_action", "close_action",
	"rekey_time", "pools", "vips", "local", "remote", "start_action", "children", "max_children",
	"kill_switch", "dns",
}

func (p *parser) connection(f field, cfg *Config) (*Connection, error) {
	o, err := p.object(f.v, "connection settings", connectionKeys...)
	if err != nil {
		return nil, err
	}
	o.v.line = f.keyLine
	c := &Connection{
		Name:                   f.key,
		RemoteAny:              true,
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
		DNS:                    "apply",
	}
	if err := p.apply(o, p.connectionSettings(o, c, cfg)); err != nil {
		return nil, err
	}
	return c, nil
}

// connectionSettings is the table of the keys of connection c (the mapping o), in the
// order they are read: remote_addrs decides c.Initiator, mobike what may follow it.
func (p *parser) connectionSettings(o *obj, c *Connection, cfg *Config) []setting {
	return []setting{
		{key: "local_addrs", read: into((*parser).localAddrs, &c.LocalAddrs)},
		{key: "remote_addrs", read: into((*parser).remoteAddrs, c)},
		{key: "remote_port", read: intKey(&c.RemotePort, 1, 65535)},
		{key: "proposals", read: proposalsKey(&c.Proposals, checkIKEProposal, "[aes128gcm16-prfsha256-x25519]")},
		{key: "mobike", read: boolKey(&c.Mobike)},
		{key: "rmobike", read: boolKey(&c.RMobike)},
		{key: "encap", read: boolKey(&c.Encap)},
		{check: func() error { return p.rmobikeNeedsMobike(o, c) }},
		{key: "additional_addrs", read: into((*parser).additionalAddrs, c)},
		{key: "switch_accept", read: into((*parser).switchAccept, c)},
		{key: "switch_limit", read: intKey(&c.SwitchLimit, 1, MaxSwitchLimit)},
		{key: "switch_hold", read: durationKey(&c.SwitchHold)},
		{key: "rmobike_notify", read: into((*parser).rmobikeNotify, &c.RMobikeNotify)},
		{check: func() error { return p.switchNeedsMobike(o, c) }},
		{key: "dpd_delay", read: durationKey(&c.DPDDelay)},
		{key: "rekey_time", read: durationKey(&c.RekeyTime)},
		{key: "dpd_action", read: enumKey(&c.DPDAction, "clear", "restart", "none")},
		{check: func() error {
			if !o.has("dpd_action") && c.Initiator {
				c.DPDAction = "restart" // a client stays up by itself
			}
			return nil
		}},
		{key: "kill_switch", read: clientKey(c, "kill_switch", boolKey(&c.KillSwitch))},
		{key: "dns", read: clientKey(c, "dns", enumKey(&c.DNS, "apply", "ignore"))},
		{key: "close_action", read: enumKey(&c.CloseAction, "none", "restart")},
		{key: "pools", read: func(p *parser, v val) error { return p.connectionPools(v, c, cfg) }},
		{key: "vips", read: into((*parser).vips, c)},
		{key: "max_children", read: intKey(&c.MaxChildren, 1, MaxMaxChildren)},
		{key: "local", need: "missing; e.g. local: { auth: psk, id: alice@example.org }", read: func(p *parser, v val) error { return p.localAuth(v, &c.Local, c, cfg) }},
		{key: "remote", need: "missing; e.g. remote: { auth: psk, id: gw.example.org }", read: func(p *parser, v val) error { return p.remoteAuth(v, &c.Remote, c, cfg) }},
		{key: "start_action", read: into((*parser).startAction, c)},
		{key: "children", need: "missing; a connection needs at least one child, e.g. children: { net: { remote_ts: [0.0.0.0/0] } }", read: into((*parser).children, &c.Children)},
		{check: func() error {
			if c.Local.Auth == AuthPSK || c.Remote.Auth == AuthPSK {
				if _, ok := cfg.PSK(c.Local.ID, c.Remote.ID); !ok {
					return p.verr(o.v, "psk authentication, but no entry in secrets has an id matching the local id %q or the remote id %q", c.Local.ID, c.Remote.ID)
				}
			}
			return nil
		}},
		{check: func() (err error) {
			if c.IKEProposals, err = parseProposals(c.Proposals, ikecrypto.ParseIKEProposal); err != nil {
				return p.errf(o.v.line, joinPath(o.v.path, "proposals"), "%v", err) // at the connection's line
			}
			p.legacyWarnings(joinPath(o.v.path, "proposals"), c.Proposals, ikecrypto.ParseIKEProposal)
			return nil
		}},
	}
}

// localAddrs reads local_addrs: %any (or nothing) for any, else addresses.
func (p *parser) localAddrs(v val, dst *[]netip.Addr) error {
	items, err := p.list(v, true)
	if err != nil {
		return err
	}
	if len(items) == 1 && items[0].s == AnyID {
		return nil
	}
	*dst, err = p.addrs(items, false)
	return err
}

// remoteAddrs reads remote_addrs: %any (or nothing) for any peer, else the peer's
// addresses, which make c an initiator.
func (p *parser) remoteAddrs(v val, c *Connection) error {
	items, err := p.list(v, true)
	if err != nil {
		return err
	}
	if !(len(items) == 1 && items[0].s == AnyID) {
		for _, it := range items {
			if it.s == AnyID {
				return p.ierr(it, "%%any must be the only entry; give either %%any or a list of addresses")
			}
		}
		if c.RemoteAddrs, c.RemoteHosts, err = p.addrsOrHosts(items); err != nil {
			return err
		}
		c.RemoteAny = len(c.RemoteAddrs) == 0 && len(c.RemoteHosts) == 0
	}
	c.Initiator = !c.RemoteAny
	return nil
}

// rmobikeNeedsMobike turns R-MOBIKE off without MOBIKE, where rmobike: true is an
// error.
func (p *parser) rmobikeNeedsMobike(o *obj, c *Connection) error {
	if !c.Mobike {
		if v, ok := o.get("rmobike"); ok && c.RMobike {
			return p.verr(v, "rmobike needs mobike; set mobike: true or drop rmobike")
		}
		c.RMobike = false
	}
	return nil
}

// additionalAddrs reads additional_addrs: auto, none or a list of addresses.
func (p *parser) additionalAddrs(v val, c *Connection) error {
	if err := p.additional(v, &c.AdditionalAddrs); err != nil {
		return err
	}
	if !c.Mobike && c.AdditionalAddrs.Mode != AdditionalNone {
		return p.verr(v, "addresses are only announced with MOBIKE; set mobike: true or additional_addrs: none")
	}
	return nil
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

// rmobikeNotify reads rmobike_notify, the Notify Message Type of SWITCH_TO_IP_ADDRESS.
func (p *parser) rmobikeNotify(v val, dst *uint16) error {
	n, err := p.integer(v, MinRMobikeNotify, MaxRMobikeNotify)
	if err != nil {
		var i int64
		if v.n.ShortTag() == "!!int" && v.n.Decode(&i) == nil && i < MinRMobikeNotify {
			return p.verr(v, "%d is out of range; allowed: %d..%d: the private-use status range starts at 40960, but 40960-40969 are used by libreswan and strongSwan", i, MinRMobikeNotify, MaxRMobikeNotify)
		}
		return err
	}
	*dst = uint16(n)
	return nil
}

// switchNeedsMobike checks switch_limit, switch_hold and rmobike_notify, the settings
// of SWITCH_TO_IP_ADDRESS (draft-smyslov-ipsecme-ikev2-r-mobike). They need MOBIKE;
// with mobike: false they are an error unless rmobike: false is written too (then they
// are merely unused).
func (p *parser) switchNeedsMobike(o *obj, c *Connection) error {
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

// connectionPools reads a connection's pools: names of cfg.Pools, each once.
func (p *parser) connectionPools(v val, c *Connection, cfg *Config) error {
	items, err := p.list(v, true)
	if err != nil {
		return err
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
			return p.ierr(it, "no pool named %q in pools (%s)", it.s, defined)
		}
		for _, q := range c.Pools {
			if q == it.s {
				return p.ierr(it, "pool %q is listed twice", it.s)
			}
		}
		c.Pools = append(c.Pools, it.s)
	}
	return nil
}

// vips reads the virtual IPs an initiator requests.
func (p *parser) vips(v val, c *Connection) error {
	items, err := p.list(v, true)
	if err != nil {
		return err
	}
	if c.VIPs, err = p.addrs(items, true); err != nil {
		return err
	}
	if len(c.VIPs) > 0 && !c.Initiator {
		return p.verr(v, "only an initiator (a connection with concrete remote_addrs) can request virtual IPs")
	}
	return nil
}

func (p *parser) startAction(v val, c *Connection) error {
	if err := enumKey(&c.StartAction, "start", "none")(p, v); err != nil {
		return err
	}
	if c.StartAction == "start" && !c.Initiator {
		return p.verr(v, "a responder (remote_addrs %%any or empty) cannot start the connection; set remote_addrs to the peer's address(es) or use start_action: none")
	}
	return nil
}

// clientKey reads a key only a client (a connection with remote_addrs) may have.
func clientKey(c *Connection, key string, read reader) reader {
	return func(p *parser, v val) error {
		if !c.Initiator {
			return p.verr(v, "%s is a client setting: the connection has no remote_addrs to connect to", key)
		}
		return read(p, v)
	}
}

// addrsOrHosts parses remote_addrs: unique addresses and host names (an item that is
// not an address must be a valid DNS name).
func (p *parser) addrsOrHosts(items []item) ([]netip.Addr, []string, error) {
	var addrs []netip.Addr
	var hosts []string
	for _, it := range items {
		if _, err := netip.ParseAddr(it.s); err != nil && !strings.ContainsAny(it.s, ":/") {
			h := strings.ToLower(strings.TrimSuffix(it.s, "."))
			if !validHostName(h) {
				return nil, nil, p.ierr(it, "%q is neither an IP address nor a valid host name", it.s)
			}
			if slices.Contains(hosts, h) {
				return nil, nil, p.ierr(it, "%s is listed twice", h)
			}
			hosts = append(hosts, h)
			continue
		}
		a, err := p.addr(it, false)
		if err != nil {
			return nil, nil, err
		}
		if slices.Contains(addrs, a) {
			return nil, nil, p.ierr(it, "%s is listed twice", a)
		}
		addrs = append(addrs, a)
	}
	return addrs, hosts, nil
}

// validHostName reports whether h is a DNS host name (RFC 1123): dot-separated labels
// of letters, digits and inner hyphens, at most 63 octets each and 253 in all, not all
// digits in the last label.
func validHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	last := labels[len(labels)-1]
	return strings.Trim(last, "0123456789") != ""
}
