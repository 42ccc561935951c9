package daemon

import (
	"github.com/mobikevpn/mobikevpn/cert"
	"github.com/mobikevpn/mobikevpn/ike"
	"github.com/mobikevpn/mobikevpn/internal/config"
	"github.com/mobikevpn/mobikevpn/mobike"
	"github.com/mobikevpn/mobikevpn/wire"
)

// ikeConfig translates the validated configuration into the IKE engine's terms.
func ikeConfig(cfg *config.Config) (ike.Config, error) {
	out := ike.Config{
		IKEPort:          cfg.Ports.IKE,
		NATTPort:         cfg.Ports.NATT,
		CookieThreshold:  cfg.CookieThreshold,
		FragmentSize:     cfg.FragmentSize,
		BlockThreshold:   cfg.BlockThreshold,
		HalfOpenLimit:    cfg.HalfOpenLimit,
		IPv6SourcePrefix: cfg.BlockIPv6Prefix,
		PreauthMemory:    int(cfg.PreauthMemory),
		HalfOpenTimeout:  cfg.HalfOpenTimeout,
		Retransmit: ike.Retransmit{
			Timeout: cfg.Retransmit.Timeout,
			Tries:   cfg.Retransmit.Tries,
			Base:    cfg.Retransmit.Base,
		},
		PSK:       cfg.PSK,
		EAPSecret: cfg.EAPSecret,
		// A cluster node hands SAs to other nodes: the engine keeps what Export needs.
		Exportable: cfg.Cluster != nil,
	}
	for _, p := range cfg.Pools {
		// A cluster node hands out the addresses it holds in etcd only (vips.go).
		out.Pools = append(out.Pools, &ike.PoolConfig{Name: p.Name, Addrs: p.Addrs, DNS: p.DNS, Leased: cfg.Cluster != nil})
	}
	for _, c := range cfg.Connections {
		ic, err := ikeConn(c)
		if err != nil {
			return ike.Config{}, err
		}
		out.Connections = append(out.Connections, ic)
	}
	return out, nil
}

func ikeConn(c *config.Connection) (*ike.Conn, error) {
	ic := &ike.Conn{
		Name:        c.Name,
		LocalAddrs:  c.LocalAddrs,
		RemoteAddrs: c.RemoteAddrs,
		RemoteHosts: c.RemoteHosts,
		RemotePort:  c.RemotePort,
		Mobike:      c.Mobike,
		RMobike:     c.RMobike,
		Encap:       c.Encap,
		DPDDelay:    c.DPDDelay,
		DPDAction:   c.DPDAction,
		CloseAction: c.CloseAction,
		RekeyTime:   c.RekeyTime,
		LocalID:     c.Local.ID,
		EAPID:       c.Local.EAPID,
		EAPOnly:     c.Remote.EAPOnly,
		RemoteID:    c.Remote.ID,
		LocalAuth:   c.Local.Auth,
		RemoteAuth:  c.Remote.Auth,
		Pools:       c.Pools,
		VIPs:        c.VIPs,
		StartAction: c.StartAction,
		SwitchAccept: mobike.SwitchPolicy{
			Additional: c.SwitchAcceptAdditional,
			Any:        c.SwitchAcceptAny,
			Prefixes:   c.SwitchAcceptPrefixes,
		},
		SwitchLimit:   c.SwitchLimit,
		SwitchHold:    c.SwitchHold,
		RMobikeNotify: wire.NotifyType(c.RMobikeNotify),
		MaxChildren:   c.MaxChildren,
	}
	switch c.AdditionalAddrs.Mode {
	case config.AdditionalNone:
		ic.Announce = mobike.Announce{Mode: mobike.None}
	case config.AdditionalList:
		ic.Announce = mobike.Announce{Mode: mobike.List, List: c.AdditionalAddrs.Addrs}
	default:
		ic.Announce = mobike.Announce{Mode: mobike.Auto, List: c.LocalAddrs}
	}
	ic.LocalCred = c.Local.Cred
	ic.RemoteCAs = c.Remote.CAs
	ic.RemotePolicy = cert.PeerPolicy{AnyID: c.Remote.AcceptAnyID, EKUs: c.Remote.EKUOIDs, CRLs: c.Remote.CRLs}
	ic.Proposals = c.IKEProposals
	for _, ch := range c.Children {
		cc := &ike.ChildConfig{
			Name:      ch.Name,
			LocalTS:   ch.LocalTS,
			RemoteTS:  ch.RemoteTS,
			RekeyTime: ch.RekeyTime,
			// Volume limits (issue 11): the datapath reports them, see daemon.volumeLimits.
			RekeyBytes: ch.RekeyBytes, LifeBytes: ch.LifeBytes,
			RekeyPackets: ch.RekeyPackets, LifePackets: ch.LifePackets,
		}
		cc.ESPProposals = ch.ParsedESP
		ic.Children = append(ic.Children, cc)
	}
	return ic, nil
}
