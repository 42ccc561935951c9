// Package config loads and validates mobikevpn's YAML configuration file, reporting
// every problem with the file, line and full key path it concerns.
package config

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/mobikevpn/mobikevpn/cert"
	"github.com/mobikevpn/mobikevpn/ike"
	"github.com/mobikevpn/mobikevpn/wire"
)

// DefaultControl is the control socket used when neither the command line nor the
// configuration names one.
const DefaultControl = "/run/mobikevpn/mobikevpn.sock"

// Config is a loaded and validated configuration file.
type Config struct {
	Path      string // the file loaded, absolute
	Control   string // control socket path (absolute); "" means not set: use DefaultControl
	LogLevel  string // debug, info, warn or error
	LogFormat string // text (default) or json: the logs' slog handler
	Metrics   string // metrics.listen: the Prometheus endpoint's address, or "" (off)
	Keylog    string // folder for Wireshark key files (absolute), or ""
	Ports     Ports
	TUN       TUN
	Updown    string // hook script (absolute path), or ""
	Secrets   []Secret
	// Radius is the RADIUS servers of EAP-RADIUS (nil: none configured).
	Radius          *Radius
	Pools           []Pool
	CookieThreshold int           // half-open IKE SAs above which COOKIEs are required
	HalfOpenTimeout time.Duration // how long a half-open IKE SA is kept
	Retransmit      Retransmit
	FragmentSize    int // largest IP datagram of an IKE fragment (RFC 7383)
	BlockThreshold  int // half-open IKE SAs one source may have before it must return a COOKIE
	HalfOpenLimit   int // half-open IKE SAs in all
	// BlockIPv6Prefix groups IPv6 sources for block_threshold: one prefix of this length
	// counts as one source (default 64).
	BlockIPv6Prefix int
	// PreauthMemory bounds, in bytes, what SAs whose peer is not authenticated hold
	// (IKE_SA_INIT messages, fragments being reassembled); default 64M.
	PreauthMemory uint64
	Datapath      Datapath
	Connections   []*Connection // in file order
	// Cluster makes the gateway a node of a cluster (nil: a single gateway).
	Cluster *Cluster
	// Warnings are what the file allows but should not, one sentence each naming the
	// key (legacy algorithms named in proposals): `run` logs them at start and
	// `check` prints them.
	Warnings []string
}

// Cluster is the `cluster:` section: this gateway is one node of a cluster coordinated
// through etcd.
type Cluster struct {
	Node  string       // this node's name, unique in the cluster
	Addrs []netip.Addr // this node's client-facing addresses
	// Endpoints are etcd's client URLs; Prefix starts every key the cluster writes.
	Endpoints []string
	Prefix    string
	// TLSCA, TLSCert and TLSKey (files, all or none) make the etcd connection TLS with a
	// client certificate.
	TLSCA, TLSCert, TLSKey string
	StateKeyFile           string        // the cluster's key for SA state written to etcd
	LeaseTTL               time.Duration // a node that stops renewing is dead after this
	// Inner says how the protected side learns which node serves a client's virtual
	// IP (nil: it is not told).
	Inner *Inner
	// Balance: keeping the nodes' loads within MaxSkew of the mean, checked every
	// Interval.
	Balance Balance
	// Failover: the node takes over SAs of nodes that died (default true; false: their
	// clients reconnect, as to a cluster without state sharing).
	Failover bool
}

// Balance is cluster.balance.
type Balance struct {
	Enabled  bool
	Interval time.Duration
	MaxSkew  float64
}

// Inner modes.
const (
	InnerARP  = "arp"  // answer ARP (IPv4) and NDP (IPv6) on Interface; announce takeovers
	InnerNDP  = "ndp"  // the same as arp
	InnerHook = "hook" // run Hook on each claim and release
)

// Inner is `cluster.inner`: how the node announces the virtual IPs it serves.
type Inner struct {
	Mode      string // InnerARP, InnerNDP or InnerHook
	Interface string // the inner segment's interface (arp, ndp)
	Hook      string // the executable run (hook)
}

// Datapath tunes the ESP datapath.
type Datapath struct {
	// Workers is how many goroutines seal or open the packets of a large batch
	// together: 0 means one per CPU, 1 keeps the crypto on the goroutine that read
	// the batch.
	Workers int
	// UDPOffload uses UDP GSO and GRO on the NAT-T sockets where the kernel has them.
	UDPOffload bool
}

// Ports are the local UDP ports.
type Ports struct {
	IKE  uint16
	NATT uint16
}

// TUN describes the TUN device.
type TUN struct {
	Name  string
	MTU   int
	Addrs []netip.Prefix // interface addresses (host bits allowed, e.g. 198.18.0.1/24)
}

// Secret is a pre-shared key and the identities it belongs to. An empty IDs matches
// any identity (as in strongSwan).
type Secret struct {
	IDs []string
	PSK []byte
	// EAP (type: eap) is an EAP password for the identities in IDs (then PSK is nil).
	EAP []byte
}

// Radius is the `radius:` section: the servers EAP-RADIUS passes EAP to.
type Radius struct {
	Servers []RadiusServer // tried in order
	Timeout time.Duration  // per try (default 2s)
	Tries   int            // per server (default 3)
}

// RadiusServer is one RADIUS server and the secret shared with it.
type RadiusServer struct {
	Addr   netip.AddrPort
	Secret []byte
}

// Pool is a virtual IP address pool handed out by configuration payloads.
type Pool struct {
	Name  string
	Addrs []netip.Prefix // masked prefixes
	DNS   []netip.Addr
}

// Retransmit is the IKE retransmission schedule: the n-th retransmission (n from 1)
// waits Timeout * Base^(n-1) after the previous send; after Tries retransmissions the
// exchange fails (strongSwan's retransmit_timeout, retransmit_tries, retransmit_base).
type Retransmit struct {
	Timeout time.Duration
	Tries   int
	Base    float64
}

// Additional address modes (Connection.AdditionalAddrs.Mode).
const (
	AdditionalAuto = "auto" // all local_addrs except the current one
	AdditionalNone = "none" // announce nothing (NO_ADDITIONAL_ADDRESSES)
	AdditionalList = "list" // exactly AdditionalAddrs.Addrs
)

// AdditionalAddrs is what a connection announces in ADDITIONAL_IP4/6_ADDRESS.
type AdditionalAddrs struct {
	Mode  string // AdditionalAuto, AdditionalNone or AdditionalList
	Addrs []netip.Addr
}

// Authentication methods.
const (
	AuthPSK         = "psk"
	AuthPubkey      = "pubkey"
	AuthEAPMSCHAPv2 = "eap-mschapv2"
	AuthEAPTLS      = "eap-tls"
	AuthEAPRadius   = "eap-radius"
)

// AnyID is the identity wildcard.
const AnyID = "%any"

// LocalAuth is how this end authenticates itself.
type LocalAuth struct {
	Auth  string           // AuthPSK, AuthPubkey, AuthEAPMSCHAPv2 or AuthEAPTLS (a client)
	ID    string           // IKE identity; with pubkey "" means the first certificate's subject
	EAPID string           // EAP identity (eap_id; EAP only); "" means ID
	Certs []string         // pubkey, eap-tls: certificate files (absolute paths), first is ours
	Key   string           // pubkey, eap-tls: private key file (absolute path)
	Cred  *cert.Credential // pubkey, eap-tls: the loaded chain and key
}

// RemoteAuth is how the peer must authenticate.
type RemoteAuth struct {
	// Auth is AuthPSK or AuthPubkey; on a gateway also AuthEAPMSCHAPv2, AuthEAPTLS
	// (with CACerts and the other pubkey settings) or AuthEAPRadius.
	Auth string
	// ID is the expected identity; AnyID ("%any") when not given. With pubkey on an
	// initiator (concrete remote_addrs), AnyID means the peer's address, which its
	// certificate must carry as an IP subjectAltName, unless AcceptAnyID; an explicit
	// id: "%any" there is an error without AcceptAnyID.
	ID      string
	CACerts []string            // pubkey: trusted CA certificate files (absolute paths)
	CAs     []*x509.Certificate // pubkey: the loaded CA certificates
	// AcceptAnyID (accept_any_id, pubkey) lets an initiator with id %any accept any
	// certificate of its CAs as the peer. A responder with %any always does.
	AcceptAnyID bool
	// EKU (eku, pubkey) are extended key usages as written (names or dotted OIDs), of
	// which the peer's certificate must carry one; EKUOIDs the same parsed. Empty: not
	// checked.
	EKU     []string
	EKUOIDs []asn1.ObjectIdentifier
	// CRLFiles (crls, pubkey) are certificate revocation list files (absolute paths);
	// CRLs the loaded lists.
	CRLFiles []string
	CRLs     []*x509.RevocationList
	// EAPOnly (eap_only) is EAP-only authentication of the gateway (RFC 5998) with
	// EAP-TLS: a client asks for it and accepts a gateway proved by its TLS
	// certificate alone (with cacerts, id, eku, crls); a gateway grants it when asked.
	EAPOnly bool
}

// Connection is one entry of `connections`.
type Connection struct {
	Name        string
	LocalAddrs  []netip.Addr // empty: any
	RemoteAddrs []netip.Addr // concrete peer addresses; empty when RemoteAny
	RemoteAny   bool         // remote_addrs is %any or empty: accept any peer address
	// RemoteHosts are the host names in remote_addrs (an initiator's), resolved before
	// each attempt; all their A and AAAA records are candidates.
	RemoteHosts []string
	RemotePort  uint16   // default Ports.IKE
	Proposals   []string // IKE proposals, strongSwan syntax; default ["default"]
	// IKEProposals are Proposals parsed, in order: what the engine uses.
	IKEProposals []wire.Proposal
	Mobike       bool // default true
	RMobike      bool // default true (false when mobike is false)

	AdditionalAddrs AdditionalAddrs // default auto

	// SwitchAccept is the initiator's policy for SWITCH_TO_IP_ADDRESS targets, as
	// written: "additional", "any" or prefixes; empty refuses every target. The
	// parsed forms follow.
	SwitchAccept           []string
	SwitchAcceptAny        bool
	SwitchAcceptAdditional bool
	SwitchAcceptPrefixes   []netip.Prefix

	// SwitchLimit caps the switches of one IKE SA per minute (switch_limit, 1..1000,
	// default 5): a responder sends at most this many SWITCH_TO_IP_ADDRESS requests to
	// the SA's peer, an initiator follows at most this many (it answers the rest but does
	// not act on them).
	SwitchLimit int
	// SwitchHold is the hysteresis against flapping (switch_hold, default 30s; 0
	// disables it): no switch back to an address the SA left by a switch less than this
	// ago (a responder does not ask for it, an initiator does not follow).
	SwitchHold time.Duration
	// RMobikeNotify is the Notify Message Type of SWITCH_TO_IP_ADDRESS (rmobike_notify,
	// 40970..65535, default 40970); IANA never assigned one, so both peers must agree.
	RMobikeNotify uint16

	Encap       bool          // force UDP encapsulation (fake NAT-D); default true
	DPDDelay    time.Duration // default 30s; 0 disables
	DPDAction   string        // clear (default), restart or none
	CloseAction string        // none (default) or restart
	RekeyTime   time.Duration // IKE SA rekey interval; default 4h; 0 disables
	Pools       []string      // names of Config.Pools to assign virtual IPs from
	VIPs        []netip.Addr  // virtual IPs to request (0.0.0.0 / :: for any)
	Local       LocalAuth
	Remote      RemoteAuth
	StartAction string   // start or none (default)
	Children    []*Child // in file order, at least one
	// MaxChildren caps the Child SAs of one IKE SA (max_children, 1..1000, default
	// 32): the peer's requests for more are answered NO_ADDITIONAL_SAS; rekeys work.
	MaxChildren int

	// Initiator reports that remote_addrs is a concrete list, so that this end can
	// initiate the connection.
	Initiator bool

	// KillSwitch (kill_switch, a client's): nothing toward the tunnel's remote
	// selectors leaves through the underlay but IKE/ESP to the gateway, whether the
	// tunnel is up or not.
	KillSwitch bool
	// DNS (dns, a client's): "apply" (default) configures the DNS servers the gateway
	// assigns while the SA is up; "ignore" does not.
	DNS string
}

// Child is one Child SA configuration of a connection.
type Child struct {
	Name         string
	LocalTS      []ike.TSConfig // default [dynamic]; the engine's own form, see ParseTS
	RemoteTS     []ike.TSConfig // default [dynamic]
	ESPProposals []string       // default ["default"]
	// ParsedESP are ESPProposals parsed, in order: what the engine uses.
	ParsedESP []wire.Proposal
	RekeyTime time.Duration // default 1h; 0 disables
	// Volume limits, per direction of the Child SA, as swanctl.conf: at RekeyBytes
	// or RekeyPackets a rekey starts (the datapath always starts one before its
	// sequence numbers run out), at LifeBytes or LifePackets the SA is closed and
	// replaced. 0: none. A Life* not written is its Rekey* plus 10%.
	RekeyBytes, LifeBytes     uint64
	RekeyPackets, LifePackets uint64
}

// Child returns the child named name, or nil.
func (c *Connection) Child(name string) *Child {
	for _, ch := range c.Children {
		if ch.Name == name {
			return ch
		}
	}
	return nil
}

// Connection returns the connection named name, or nil.
func (c *Config) Connection(name string) *Connection {
	for _, conn := range c.Connections {
		if conn.Name == name {
			return conn
		}
	}
	return nil
}

// Pool returns the pool named name, or nil.
func (c *Config) Pool(name string) *Pool {
	for i := range c.Pools {
		if c.Pools[i].Name == name {
			return &c.Pools[i]
		}
	}
	return nil
}

// PSK returns a copy of the pre-shared key for the identities localID and remoteID,
// matched as strongSwan does: an entry qualifies when one of its ids matches either
// identity (an entry without ids matches any), an exact match scores more than a
// wildcard ("*" in an id, or "%any"), and the entry with the best combined score over
// both sides wins (the first one on a tie). A remoteID of "%any" matches any id.
func (c *Config) PSK(localID, remoteID string) ([]byte, bool) {
	best, bestScore := -1, 0
	for i, s := range c.Secrets {
		if s.PSK == nil {
			continue // an EAP secret
		}
		my, other := idsMatch(s.IDs, localID), idsMatch(s.IDs, remoteID)
		if my == matchNone && other == matchNone {
			continue
		}
		if score := my + other; score > bestScore {
			best, bestScore = i, score
		}
	}
	if best < 0 {
		return nil, false
	}
	return bytes.Clone(c.Secrets[best].PSK), true
}

// EAPSecret returns a copy of the EAP password of identity id: the first secret of
// type eap that lists id (compared exactly) or lists no ids.
func (c *Config) EAPSecret(id string) ([]byte, bool) {
	for _, s := range c.Secrets {
		if s.EAP != nil && (len(s.IDs) == 0 || slices.Contains(s.IDs, id)) {
			return bytes.Clone(s.EAP), true
		}
	}
	return nil, false
}

// Error is a problem in a configuration file.
type Error struct {
	File string // the file as named by the caller
	Line int    // 1-based; 0 if unknown
	Key  string // full key path, e.g. connections.home.children.net.esp_proposals[1]
	Msg  string
}

func (e *Error) Error() string {
	s := e.File
	if s == "" {
		s = "config"
	}
	if e.Line > 0 {
		s += ":" + strconv.Itoa(e.Line)
	}
	if e.Key != "" {
		s += ": " + e.Key
	}
	return s + ": " + e.Msg
}

// Load reads, parses and validates the configuration file at path. Relative paths in
// the file resolve against the file's folder. Errors are *Error.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read the configuration: %v", unwrapPathError(err))}
	}
	return Parse(data, path)
}

// Parse parses and validates a configuration file's content; path names the file in
// errors and is the base for relative paths in it. Errors are *Error.
func Parse(data []byte, path string) (*Config, error) {
	abs := path
	if path != "" {
		a, err := filepath.Abs(path)
		if err != nil {
			return nil, &Error{File: path, Msg: err.Error()}
		}
		abs = a
	} else {
		wd, err := os.Getwd()
		if err != nil {
			return nil, &Error{Msg: err.Error()}
		}
		abs = filepath.Join(wd, "config")
	}
	p := &parser{name: path, dir: filepath.Dir(abs), budget: maxNodes}
	cfg, err := p.parse(data)
	if cfg != nil {
		cfg.Warnings = p.warnings
	}
	if err != nil {
		return nil, err
	}
	cfg.Path = abs
	return cfg, nil
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
