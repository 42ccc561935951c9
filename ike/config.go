// Package ike negotiates IKEv2 SAs (RFC 7296) as a state machine without I/O: it takes
// datagrams, commands and the current time, and returns actions (datagrams to send,
// Child SAs to install or remove, events) for its caller to carry out.
package ike

import (
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/mobikevpn/mobikevpn/cert"
	"github.com/mobikevpn/mobikevpn/mobike"
	"github.com/mobikevpn/mobikevpn/wire"
)

// Config is what the engine needs to know about the host and its connections.
type Config struct {
	Connections []*Conn
	Pools       []*PoolConfig

	// PSK returns the pre-shared key for a pair of identities, as the configuration's
	// secrets section decides.
	PSK func(localID, remoteID string) ([]byte, bool)
	// EAPSecret returns the EAP password of an EAP identity (secrets of type eap): a
	// client's own, or a user's on a gateway that runs EAP-MSCHAPv2 itself.
	EAPSecret func(id string) ([]byte, bool)

	// SourceAddr returns the local address the host would use to reach remote (a route
	// lookup). Used by initiators whose connection names no local address.
	SourceAddr func(remote netip.Addr) (netip.Addr, error)
	// Reachable lists the host's addresses that can reach remote (on an interface with
	// a route toward it); nil: every address counts. It narrows what additional_addrs
	// auto announces without local_addrs.
	Reachable func(remote netip.Addr) []netip.Addr

	IKEPort  uint16 // 500 by default
	NATTPort uint16 // 4500 by default

	// FragmentSize is the largest IP datagram of an IKE fragment (default 1280).
	FragmentSize int

	// CookieThreshold is the number of half-open SAs from which COOKIEs are demanded
	// from everyone; 0 demands them always (as the configuration's cookie_threshold: 0).
	// The configuration's default is DefaultCookieThreshold.
	CookieThreshold int
	HalfOpenTimeout time.Duration // how long a half-open SA waits for IKE_AUTH (default 30s)
	// BlockThreshold is the number of half-open SAs one source (an IPv4 address, an IPv6
	// prefix of IPv6SourcePrefix bits) may have: beyond it a source must return a COOKIE
	// (which forged sources cannot), and sources that did so are dropped beyond it too
	// (strongSwan's block_threshold; default 5).
	BlockThreshold int
	// HalfOpenLimit caps all half-open SAs: beyond it IKE_SA_INITs are dropped, even with
	// a valid COOKIE (default 10000).
	HalfOpenLimit int
	// IPv6SourcePrefix is the prefix length by which IPv6 peer addresses are grouped for
	// BlockThreshold (default 64: one /64 is one source; 128: every address).
	IPv6SourcePrefix int
	// PreauthMemory bounds the bytes all SAs that are not authenticated yet hold
	// (IKE_SA_INIT messages, fragments being reassembled): beyond it new IKE_SA_INITs
	// and fragments are dropped (default 64 MiB).
	PreauthMemory int
	Retransmit    Retransmit

	// InboundActivity, if set, returns when the datapath last accepted an
	// authenticated ESP packet on the inbound Child SA with our SPI spi (the zero time
	// if never, or if the SA is unknown). The liveness check of an IKE SA is then only
	// sent when for dpd_delay neither IKE nor ESP brought anything cryptographically
	// protected from the peer (RFC 7296 2.4).
	InboundActivity func(spi uint32) time.Time

	// Exportable makes the engine keep what Export needs: a copy of each Child SA's
	// keys, which it otherwise hands to the datapath and forgets (they are overwritten
	// when the Child SA goes). Set when SAs may move to another engine (a gateway
	// cluster); fixed at New, Reload keeps it.
	Exportable bool

	Rand   io.Reader // crypto/rand.Reader unless a test injects another
	Logger *slog.Logger
}

// DefaultCookieThreshold is cookie_threshold's default (strongSwan's is 10 too).
const DefaultCookieThreshold = 10

// Retransmit configures the retransmission of requests: the n-th retransmission (from
// 0) is sent Timeout*Base^n after the previous one; after Tries retransmissions and one
// more such wait the exchange has failed (strongSwan's retransmit_* settings).
type Retransmit struct {
	Timeout time.Duration
	Tries   int
	Base    float64
}

// Conn is one connection: how to reach or accept a peer, authenticate it and which
// Child SAs to create.
type Conn struct {
	Name        string
	LocalAddrs  []netip.Addr // initiator: source (empty = route lookup); responder: addresses it accepts on (empty = all)
	RemoteAddrs []netip.Addr // initiator: the peer; responder: accepted peers (empty = any)
	// RemoteHosts (initiator): the peer's host names, resolved before each attempt to
	// keep the connection up (hosts.go); their addresses follow RemoteAddrs.
	RemoteHosts []string
	RemotePort  uint16

	Proposals []wire.Proposal // IKE proposals in preference order

	Mobike  bool
	RMobike bool
	// Announce says which addresses go into ADDITIONAL_IP*_ADDRESS.
	Announce mobike.Announce
	// SwitchAccept is the initiator's policy for SWITCH_TO_IP_ADDRESS targets.
	SwitchAccept mobike.SwitchPolicy
	// SwitchLimit caps the switches of one IKE SA per minute: a responder sends at most
	// this many SWITCH_TO_IP_ADDRESS requests, an initiator follows at most this many
	// (answering, not acting on, the rest). 0: mobike.DefaultSwitchLimit.
	SwitchLimit int
	// SwitchHold is the hysteresis against flapping: no switch back to an address the
	// SA left by a switch less than SwitchHold ago (0: none).
	SwitchHold time.Duration
	// RMobikeNotify is the Notify Message Type used for SWITCH_TO_IP_ADDRESS (IANA never
	// assigned one; both peers must agree). 0: wire.SWITCH_TO_IP_ADDRESS (40970).
	RMobikeNotify wire.NotifyType
	Encap         bool // force UDP encapsulation by a NAT_DETECTION_SOURCE_IP that cannot match

	DPDDelay    time.Duration
	DPDAction   string // "clear" or "restart"
	CloseAction string // "none" or "restart"
	RekeyTime   time.Duration

	LocalID  string // empty: the certificate's subject, else the outer address
	RemoteID string // "%any" or empty accepts any identity
	// LocalAuth/RemoteAuth are AuthPSK, AuthPubkey, or (initiator's local, responder's
	// remote) one of EAP's (IsEAP).
	LocalAuth  string
	RemoteAuth string
	// LocalCred is our certificate chain and key (pubkey); RemoteCAs the CAs the peer's
	// certificate must chain to (pubkey).
	// EAPID (initiator with EAP) is our EAP identity; empty: our IKE identity.
	EAPID string
	// EAPOnly: EAP-only authentication of the responder (RFC 5998) with EAP-TLS, whose
	// TLS server certificate then proves the gateway instead of an IKE signature. An
	// initiator asks for it (EAP_ONLY_AUTHENTICATION) and accepts a first IKE_AUTH
	// response without AUTH; a responder skips its AUTH when asked.
	EAPOnly   bool
	LocalCred *cert.Credential
	RemoteCAs []*x509.Certificate
	// RemotePolicy is what the peer's certificate must satisfy besides RemoteCAs (pubkey):
	// required extended key usages, CRLs, and whether a connection with RemoteAddrs
	// accepts any identity its CAs vouch for when RemoteID is %any (otherwise it expects
	// the peer's address, as an IP subjectAltName).
	RemotePolicy cert.PeerPolicy

	Pools []string     // responder: pools to assign virtual IPs from
	VIPs  []netip.Addr // initiator: virtual IPs to request (unspecified addresses ask for any)

	Children []*ChildConfig
	// MaxChildren caps the Child SAs of one IKE SA (max_children): beyond it the peer's
	// CREATE_CHILD_SA for a new one is answered NO_ADDITIONAL_SAS; rekeys still work.
	// 0: DefaultMaxChildren.
	MaxChildren int

	StartAction string // "start" or "none"
}

// ChildConfig is one Child SA of a connection.
type ChildConfig struct {
	Name         string
	LocalTS      []TSConfig
	RemoteTS     []TSConfig
	ESPProposals []wire.Proposal
	RekeyTime    time.Duration
	// Volume limits per direction (0: none): at RekeyBytes or RekeyPackets (less a
	// random jitter of up to 10%) the Child SA is rekeyed, at LifeBytes or LifePackets
	// it is replaced for good. The datapath reports them (Engine.ChildVolume).
	RekeyBytes, LifeBytes     uint64
	RekeyPackets, LifePackets uint64
}

// TSConfig is a configured traffic selector: either "dynamic" (the virtual IP, else the
// outer address) or a fixed selector. internal/config's ParseTS produces it directly.
type TSConfig struct {
	Dynamic  bool
	Selector wire.TrafficSelector // for Dynamic only its protocol and ports are used
}

// PoolConfig is an address pool for virtual IPs handed out by CP.
type PoolConfig struct {
	Name  string
	Addrs []netip.Prefix
	DNS   []netip.Addr
	// Leased: the pool hands out only the addresses granted to it (Engine.GrantVIPs),
	// for a gateway cluster whose nodes share the pool through leases kept elsewhere.
	Leased bool
}

func (c *Config) setDefaults() {
	if c.IKEPort == 0 {
		c.IKEPort = 500
	}
	if c.NATTPort == 0 {
		c.NATTPort = 4500
	}
	if c.FragmentSize == 0 {
		c.FragmentSize = DefaultFragmentSize
	}
	if c.BlockThreshold == 0 {
		c.BlockThreshold = 5
	}
	if c.HalfOpenLimit == 0 {
		c.HalfOpenLimit = 10000
	}
	if c.IPv6SourcePrefix == 0 {
		c.IPv6SourcePrefix = 64
	}
	if c.PreauthMemory == 0 {
		c.PreauthMemory = 64 << 20
	}
	if c.HalfOpenTimeout == 0 {
		c.HalfOpenTimeout = 30 * time.Second
	}
	if c.Retransmit.Timeout == 0 {
		c.Retransmit.Timeout = 4 * time.Second
	}
	if c.Retransmit.Tries == 0 {
		c.Retransmit.Tries = 5
	}
	if c.Retransmit.Base == 0 {
		c.Retransmit.Base = 1.8
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Reload replaces the connections, pools and secrets used for new SAs; established
// SAs keep the configuration they were negotiated with. Pools that keep their name keep
// their leases.
func (e *Engine) Reload(cfg Config) error {
	cfg.Rand, cfg.Logger, cfg.Exportable = e.cfg.Rand, e.cfg.Logger, e.cfg.Exportable
	if cfg.SourceAddr == nil {
		cfg.SourceAddr = e.cfg.SourceAddr
	}
	if cfg.Reachable == nil {
		cfg.Reachable = e.cfg.Reachable
	}
	if cfg.InboundActivity == nil {
		cfg.InboundActivity = e.cfg.InboundActivity
	}
	cfg.setDefaults()
	conns := make(map[string]*Conn)
	for _, c := range cfg.Connections {
		if _, dup := conns[c.Name]; dup {
			return fmt.Errorf("ike: connection %q defined twice", c.Name)
		}
		if len(c.Proposals) == 0 {
			return fmt.Errorf("ike: connection %q has no IKE proposals", c.Name)
		}
		conns[c.Name] = c
	}
	if err := poolsOverlap(cfg.Pools); err != nil {
		return err
	}
	pools := make(map[string]*pool)
	kept := make(map[*pool]bool)
	for _, p := range cfg.Pools {
		if old := e.pools[p.Name]; old != nil && slices.Equal(old.pfx, maskAll(p.Addrs)) {
			pools[p.Name] = old
			kept[old] = true
			continue
		}
		pl, err := newPool(p)
		if err != nil {
			return err
		}
		pools[p.Name] = pl
	}
	for _, c := range cfg.Connections {
		for _, name := range c.Pools {
			if pools[name] == nil {
				return fmt.Errorf("ike: connection %q: unknown pool %q", c.Name, name)
			}
		}
	}
	// Every virtual IP a live SA holds stays leased: taken in the new pool that
	// contains it, so that it is never handed to a second client. One that no pool
	// contains any more refuses the reload (delete that SA first, or keep its prefix).
	type lease struct {
		pl *pool
		id string
		a  netip.Addr
	}
	var leases []lease
	var lost []string
	for _, sa := range e.sorted() {
		if sa.origInitiator {
			continue
		}
		for _, a := range sa.vips {
			var in *pool
			for _, pl := range pools {
				if pl.contains(a) {
					in = pl
					break
				}
			}
			switch {
			case in == nil:
				lost = append(lost, fmt.Sprintf("%s (leased to %s, IKE SA #%d)", a, sa.remoteID.String(), sa.id))
			case !kept[in]:
				leases = append(leases, lease{in, sa.remoteID.String(), a})
			}
		}
	}
	if len(lost) > 0 {
		return fmt.Errorf("ike: the new pools no longer contain virtual IPs in use: %s; delete those SAs first or keep their prefixes", strings.Join(lost, ", "))
	}
	for _, l := range leases {
		l.pl.take(l.id, l.a)
	}
	// Nothing is refused from here on: the kept pools take the new DNS servers.
	for name, pl := range pools {
		if kept[pl] {
			for _, p := range cfg.Pools {
				if p.Name == name {
					pl.dns = p.DNS
				}
			}
		}
	}
	e.cfg, e.conns, e.pools = cfg, conns, pools
	return nil
}

func maskAll(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		out[i] = p.Masked()
	}
	return out
}

// poolsOverlap refuses pools that share addresses: each pool only knows its own
// leases, so an address in two pools could be handed to two clients.
func poolsOverlap(pools []*PoolConfig) error {
	for i, a := range pools {
		for _, b := range pools[i+1:] {
			for _, pa := range a.Addrs {
				for _, pb := range b.Addrs {
					if pa.Overlaps(pb) {
						return fmt.Errorf("ike: pools %q (%s) and %q (%s) overlap", a.Name, pa, b.Name, pb)
					}
				}
			}
		}
	}
	return nil
}
