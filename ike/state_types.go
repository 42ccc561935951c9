package ike

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"time"

	"github.com/mobikevpn/mobikevpn/mobike"
	"github.com/mobikevpn/mobikevpn/wire"
)

// The SA state: an established IKE SA and its Child SAs as a value that another engine
// can import and carry on with (the gateway cluster hands SAs between nodes), encoded
// as versioned JSON. See ARCHITECTURE.md ("SA state") for what it holds and omits.

// SAStateVersion is the version of SAState this engine writes and the only one it
// reads.
const SAStateVersion = 1

// Limits of a decoded state, so that a damaged one cannot make Import allocate much.
const (
	maxStateChildren  = 1024
	maxStateResponse  = 256 // fragments of the cached response
	maxStateSelectors = 64  // traffic selectors per side
)

// Secret is key material. Formatting it (fmt, any verb), logging it (slog) or
// marshalling it to JSON shows only its length: only SAState.Encode writes the bytes
// (base64), so seal an encoded SAState before it leaves the process.
type Secret []byte

// MarshalJSON redacts: a state or key that reaches a JSON log shows no key.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

func (s Secret) String() string {
	if s == nil {
		return "[secret: none]"
	}
	return "[secret: " + strconv.Itoa(len(s)) + " bytes]"
}

// GoString redacts like String.
func (s Secret) GoString() string { return s.String() }

// Format redacts whatever the verb.
func (s Secret) Format(f fmt.State, _ rune) { io.WriteString(f, s.String()) }

// LogValue redacts for slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

func secret(b []byte) Secret {
	if b == nil {
		return nil
	}
	return Secret(bytes.Clone(b))
}

// SAState is everything another engine needs to continue an established IKE SA and
// its Child SAs: Engine.Export writes it, Engine.Import takes it. Times are absolute
// (UTC). It holds the SA's keys (Secret, redacted when formatted or logged).
type SAState struct {
	Version int    `json:"version"` // SAStateVersion
	Conn    string `json:"conn"`    // the connection's name; the importer must have it
	// Exported is when Export wrote it.
	Exported time.Time `json:"exported"`

	SPIi uint64 `json:"spi_i"`
	SPIr uint64 `json:"spi_r"`
	// Initiator: we are this IKE SA's initiator (RFC 7296; a rekey may have swapped it).
	// OrigInitiator: we are the MOBIKE/R-MOBIKE initiator (of the first IKE SA of the
	// chain), the client.
	Initiator     bool `json:"initiator"`
	OrigInitiator bool `json:"orig_initiator"`

	// Local and Remote are the IKE SA's addresses; AuthLocal and AuthRemote those of
	// IKE_AUTH (what "dynamic" traffic selectors mean without virtual IPs).
	Local      netip.AddrPort `json:"local"`
	Remote     netip.AddrPort `json:"remote"`
	AuthLocal  netip.AddrPort `json:"auth_local"`
	AuthRemote netip.AddrPort `json:"auth_remote"`

	Suite IKESuiteState `json:"suite"`
	Keys  IKEKeysState  `json:"keys"`
	// SealCounter is the last IV counter our outbound SK payloads used (AEAD suites;
	// 0 otherwise): the importer continues beyond it, so no IV repeats under SK_e.
	SealCounter uint64 `json:"seal_counter"`
	// Ni and Nr are the nonces of the exchange that created the IKE SA (IKE_SA_INIT, or
	// the CREATE_CHILD_SA that rekeyed its predecessor).
	Ni []byte `json:"ni"`
	Nr []byte `json:"nr"`

	LocalID    IDState `json:"local_id"`
	RemoteID   IDState `json:"remote_id"`
	LocalAuth  string  `json:"local_auth"`  // the connection's auth methods when exported
	RemoteAuth string  `json:"remote_auth"` // (psk, pubkey): the importer's must match

	// NATLocal: a NAT is in front of us; NATRemote: in front of the peer (or the peer
	// forces UDP encapsulation).
	NATLocal  bool `json:"nat_local"`
	NATRemote bool `json:"nat_remote"`
	// Mobike: MOBIKE negotiated; PeerRMobike: the peer (initiator) advertised 'R';
	// Fragmentation: RFC 7383 negotiated.
	Mobike        bool `json:"mobike"`
	PeerRMobike   bool `json:"peer_rmobike"`
	PeerRedirect  bool `json:"peer_redirect"` // the peer follows RFC 5685 redirects
	Fragmentation bool `json:"fragmentation"`
	// PeerHashes are the peer's SIGNATURE_HASH_ALGORITHMS (nil: it sent none).
	PeerHashes []uint16 `json:"peer_hashes"`

	// NextRequestID is the message ID of our next request; PeerRequestID the one we
	// expect on the peer's next request. LastResponse is our response (or its
	// fragments) to the peer's request PeerRequestID-1, sent again byte for byte when
	// that request is retransmitted; LastRequestHash is SHA-256 of that request (of
	// its first fragment), which a copy must match.
	NextRequestID   uint32   `json:"next_request_id"`
	PeerRequestID   uint32   `json:"peer_request_id"`
	LastResponse    [][]byte `json:"last_response"`
	LastRequestHash []byte   `json:"last_request_hash"`

	// VIPs are the virtual IPs: ours (OrigInitiator) or leased to the peer from Pool.
	VIPs []netip.Addr `json:"vips"`
	DNS  []netip.Addr `json:"dns"`
	Pool string       `json:"pool"`

	Created     time.Time `json:"created"`
	Established time.Time `json:"established"`
	LastRecv    time.Time `json:"last_recv"` // the last authenticated message from the peer
	RekeyAt     time.Time `json:"rekey_at"`  // the IKE SA's rekey (zero: none)
	DPDAt       time.Time `json:"dpd_at"`    // the next liveness check (zero: none armed)

	// Path is the path manager's durable state.
	Path mobike.Snapshot `json:"path"`

	// Pending is a request of ours that the exporter sealed and sends, unanswered: a
	// hand-over's switch request (Engine.Handoff). nil: none.
	Pending *PendingState `json:"pending,omitempty"`

	Children []ChildSAState `json:"children"`
}

// PendingState is a request of ours that is on its way, as sealed: the importer takes
// its answer and sends it again, byte for byte, until that comes.
type PendingState struct {
	MessageID uint32   `json:"message_id"`
	Exchange  uint8    `json:"exchange"`
	Data      [][]byte `json:"data"` // the message, or its fragments
	// Opaque: not a hand-over's switch request but any request of a Snapshot: the
	// importer resends it and takes its answer only as the end of the exchange (it
	// holds none of what the exchange needs: its nonces, its key exchange).
	Opaque bool `json:"opaque,omitempty"`
}

// IKESuiteState is an IKE SA's negotiated algorithms (IANA transform IDs).
type IKESuiteState struct {
	Encr        uint16 `json:"encr"`
	EncrKeyBits uint16 `json:"encr_key_bits"`
	Integ       uint16 `json:"integ"`
	PRF         uint16 `json:"prf"`
	DH          uint16 `json:"dh"`
	// AddKE are the additional key exchange methods ADDKE1..n (RFC 9370), trailing
	// zeros left out; absent without any (so a state without them reads as before).
	AddKE []uint16 `json:"add_ke,omitempty"`
}

// IKEKeysState are an IKE SA's keys (RFC 7296 2.14).
type IKEKeysState struct {
	SKd  Secret `json:"sk_d"`
	SKai Secret `json:"sk_ai"`
	SKar Secret `json:"sk_ar"`
	SKei Secret `json:"sk_ei"`
	SKer Secret `json:"sk_er"`
	SKpi Secret `json:"sk_pi"`
	SKpr Secret `json:"sk_pr"`
}

// IDState is an identity (ID payload type and data).
type IDState struct {
	Type uint8  `json:"type"`
	Data []byte `json:"data"`
}

// ESPSuiteState is a Child SA's negotiated algorithms.
type ESPSuiteState struct {
	Encr        uint16 `json:"encr"`
	EncrKeyBits uint16 `json:"encr_key_bits"`
	Integ       uint16 `json:"integ"`
	DH          uint16 `json:"dh"`
	ESN         bool   `json:"esn"`
	// AddKE as in IKESuiteState.
	AddKE []uint16 `json:"add_ke,omitempty"`
}

// addKEState returns the additional key exchange methods m without trailing zeros
// (nil without any), and addKEFromState the other way round.
func addKEState(m [7]uint16) []uint16 {
	n := len(m)
	for n > 0 && m[n-1] == 0 {
		n--
	}
	if n == 0 {
		return nil
	}
	return append([]uint16(nil), m[:n]...)
}

func addKEFromState(s []uint16) (m [7]uint16, err error) {
	if len(s) > len(m) {
		return m, fmt.Errorf("%d additional key exchanges, at most %d", len(s), len(m))
	}
	copy(m[:], s)
	return m, nil
}

// ChildKeysState are the keys of one direction of a Child SA.
type ChildKeysState struct {
	Encr  Secret `json:"encr"`
	Integ Secret `json:"integ"`
}

// TSState is a traffic selector.
type TSState struct {
	Type      uint8      `json:"type"`
	Protocol  uint8      `json:"protocol"`
	StartPort uint16     `json:"start_port"`
	EndPort   uint16     `json:"end_port"`
	Start     netip.Addr `json:"start"`
	End       netip.Addr `json:"end"`
}

// ChildSAState is one installed Child SA.
type ChildSAState struct {
	Name     string         `json:"name"` // its child config's name in the connection
	SPIIn    uint32         `json:"spi_in"`
	SPIOut   uint32         `json:"spi_out"`
	Suite    ESPSuiteState  `json:"suite"`
	In       ChildKeysState `json:"in"`
	Out      ChildKeysState `json:"out"`
	LocalTS  []TSState      `json:"local_ts"`
	RemoteTS []TSState      `json:"remote_ts"`
	// Ni and Nr are the nonces of the exchange that created it.
	Ni      []byte    `json:"ni"`
	Nr      []byte    `json:"nr"`
	Created time.Time `json:"created"`
	RekeyAt time.Time `json:"rekey_at"` // zero: none
	// Limits are its volume limits (soft ones jittered); Expired says a hard one was
	// reached and it is being replaced.
	Limits  LimitsState `json:"limits"`
	Expired bool        `json:"expired"`
	// OutSeq and InSeq are the last outbound sequence number used (or reserved) and
	// the highest inbound one authenticated. The engine does not hold them (the
	// datapath does): Export leaves them 0 and the caller fills them in from the
	// datapath's counters or its reservations; Import hands them to the datapath
	// (InstallOutbound.Seq, InstallInbound.Seq), which must go on beyond them.
	OutSeq uint64 `json:"out_seq"`
	InSeq  uint64 `json:"in_seq"`
	// OutLease is the last outbound sequence number the owner may use before it writes
	// a higher one (a cluster's reservation for failover: whoever continues the SA from
	// this state starts above it); 0: none. The engine does not hold it either.
	OutLease uint64 `json:"out_lease,omitempty"`
}

// LimitsState are a Child SA's volume limits (0: none).
type LimitsState struct {
	SoftBytes   uint64 `json:"soft_bytes"`
	SoftPackets uint64 `json:"soft_packets"`
	HardBytes   uint64 `json:"hard_bytes"`
	HardPackets uint64 `json:"hard_packets"`
}

// String summarises the state without secrets.
func (s *SAState) String() string {
	return fmt.Sprintf("IKE SA %016x_i %016x_r conn %s peer %s (%s), %d Child SAs", s.SPIi, s.SPIr, s.Conn,
		s.RemoteID.String(), s.Remote, len(s.Children))
}

// LogValue summarises the state for slog, without secrets.
func (s SAState) LogValue() slog.Value {
	return slog.GroupValue(slog.Int("version", s.Version), slog.String("conn", s.Conn),
		slog.String("spi_i", fmt.Sprintf("%016x", s.SPIi)), slog.String("spi_r", fmt.Sprintf("%016x", s.SPIr)),
		slog.String("peer", s.RemoteID.String()), slog.Int("children", len(s.Children)))
}

// LogValue summarises a Child SA's state for slog, without secrets.
func (c ChildSAState) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", c.Name), slog.String("spi_in", spiHex(c.SPIIn)),
		slog.String("spi_out", spiHex(c.SPIOut)))
}

// String renders the identity as the engine's logs do.
func (id IDState) String() string {
	w := wire.ID{IDType: wire.IDType(id.Type), Data: id.Data}
	return w.String()
}

// The encoding: SAState with its keys as plain bytes (base64). The fields of these
// types shadow the embedded ones of the same JSON name (Go's rules for embedded
// fields), so everything else encodes as SAState declares it.
type (
	stateJSON struct {
		SAState
		Keys     keysJSON    `json:"keys"`
		Children []childJSON `json:"children"`
	}
	keysJSON struct {
		SKd  []byte `json:"sk_d"`
		SKai []byte `json:"sk_ai"`
		SKar []byte `json:"sk_ar"`
		SKei []byte `json:"sk_ei"`
		SKer []byte `json:"sk_er"`
		SKpi []byte `json:"sk_pi"`
		SKpr []byte `json:"sk_pr"`
	}
	childJSON struct {
		ChildSAState
		In  childKeysJSON `json:"in"`
		Out childKeysJSON `json:"out"`
	}
	childKeysJSON struct {
		Encr  []byte `json:"encr"`
		Integ []byte `json:"integ"`
	}
)

func (k childKeysJSON) state() ChildKeysState {
	return ChildKeysState{Encr: Secret(k.Encr), Integ: Secret(k.Integ)}
}

func childKeysOf(k ChildKeysState) childKeysJSON {
	return childKeysJSON{Encr: k.Encr, Integ: k.Integ}
}

// Encode returns the state as JSON, keys included: seal the result before it leaves
// the process.
func (s *SAState) Encode() ([]byte, error) {
	if s.Version != SAStateVersion {
		return nil, fmt.Errorf("ike: SA state version %d, this engine writes version %d", s.Version, SAStateVersion)
	}
	j := stateJSON{SAState: *s, Keys: keysJSON{SKd: s.Keys.SKd, SKai: s.Keys.SKai, SKar: s.Keys.SKar,
		SKei: s.Keys.SKei, SKer: s.Keys.SKer, SKpi: s.Keys.SKpi, SKpr: s.Keys.SKpr}}
	j.SAState.Children = nil
	if s.Children != nil {
		j.Children = make([]childJSON, len(s.Children))
		for i, c := range s.Children {
			j.Children[i] = childJSON{ChildSAState: c, In: childKeysOf(c.In), Out: childKeysOf(c.Out)}
		}
	}
	return json.Marshal(&j)
}

// ErrStateVersion is wrapped by DecodeSAState's error for a state of another version.
var ErrStateVersion = errors.New("unsupported SA state version")

// DecodeSAState reads a state that Encode wrote. A state of another version, with
// fields this version does not know, or beyond the limits of a sane one is refused.
func DecodeSAState(b []byte) (SAState, error) {
	var v struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return SAState{}, fmt.Errorf("ike: SA state: %w", err)
	}
	if v.Version == nil {
		return SAState{}, errors.New("ike: SA state has no version")
	}
	if *v.Version != SAStateVersion {
		return SAState{}, fmt.Errorf("ike: SA state version %d: %w (this engine reads version %d)", *v.Version, ErrStateVersion, SAStateVersion)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var j stateJSON
	if err := d.Decode(&j); err != nil {
		return SAState{}, fmt.Errorf("ike: SA state: %w", err)
	}
	s := j.SAState
	k := j.Keys
	s.Keys = IKEKeysState{SKd: k.SKd, SKai: k.SKai, SKar: k.SKar, SKei: k.SKei, SKer: k.SKer, SKpi: k.SKpi, SKpr: k.SKpr}
	if j.Children != nil {
		s.Children = make([]ChildSAState, len(j.Children))
		for i, c := range j.Children {
			s.Children[i] = c.ChildSAState
			s.Children[i].In, s.Children[i].Out = c.In.state(), c.Out.state()
		}
	}
	if err := s.check(); err != nil {
		return SAState{}, err
	}
	return s, nil
}

// check refuses what no engine could have exported: the bounds and the fields every
// state has. What depends on the importing engine (its configuration, its SPIs, its
// pools) Import checks.
func (s *SAState) check() error {
	switch {
	case s.Version != SAStateVersion:
		return fmt.Errorf("ike: SA state version %d: %w (this engine reads version %d)", s.Version, ErrStateVersion, SAStateVersion)
	case s.Conn == "":
		return errors.New("ike: SA state names no connection")
	case s.SPIi == 0 || s.SPIr == 0:
		return errors.New("ike: SA state has a zero IKE SPI")
	case len(s.Children) > maxStateChildren:
		return fmt.Errorf("ike: SA state has %d Child SAs (at most %d)", len(s.Children), maxStateChildren)
	case len(s.LastResponse) > maxStateResponse:
		return fmt.Errorf("ike: SA state caches a response of %d fragments (at most %d)", len(s.LastResponse), maxStateResponse)
	case s.LastResponse != nil && len(s.LastRequestHash) != sha256.Size:
		return errors.New("ike: SA state caches a response without the hash of its request")
	case !s.Local.IsValid() || !s.Remote.IsValid() || !s.Path.IKE.Valid() || !s.Path.ESP.Valid():
		return errors.New("ike: SA state has no path (IKE and ESP addresses)")
	case s.Pending != nil && (s.Pending.MessageID+1 != s.NextRequestID || !pendingExchange(s.Pending) ||
		len(s.Pending.Data) == 0 || len(s.Pending.Data) > maxStateResponse):
		return errors.New("ike: SA state has a pending request that is not the INFORMATIONAL (or, opaque, CREATE_CHILD_SA or IKE_FOLLOWUP_KE) before its next message ID")
	}
	for i := range s.Children {
		c := &s.Children[i]
		if c.SPIIn <= 255 || c.SPIOut <= 255 {
			return fmt.Errorf("ike: SA state: Child SA %q has a reserved SPI (in %08x, out %08x)", c.Name, c.SPIIn, c.SPIOut)
		}
		if len(c.LocalTS) == 0 || len(c.RemoteTS) == 0 || len(c.LocalTS) > maxStateSelectors || len(c.RemoteTS) > maxStateSelectors {
			return fmt.Errorf("ike: SA state: Child SA %q has %d local and %d remote traffic selectors", c.Name, len(c.LocalTS), len(c.RemoteTS))
		}
		for _, ts := range append(append([]TSState(nil), c.LocalTS...), c.RemoteTS...) {
			if _, err := ts.selector(); err != nil {
				return fmt.Errorf("ike: SA state: Child SA %q: %w", c.Name, err)
			}
		}
	}
	return nil
}

func tsState(ts []wire.TrafficSelector) []TSState {
	out := make([]TSState, len(ts))
	for i, t := range ts {
		out[i] = TSState{Type: uint8(t.Type), Protocol: t.IPProtocol, StartPort: t.StartPort, EndPort: t.EndPort, Start: t.Start, End: t.End}
	}
	return out
}

func (t TSState) selector() (wire.TrafficSelector, error) {
	ts := wire.TrafficSelector{Type: wire.TSType(t.Type), IPProtocol: t.Protocol, StartPort: t.StartPort, EndPort: t.EndPort, Start: t.Start, End: t.End}
	var is4 bool
	switch ts.Type {
	case wire.TS_IPV4_ADDR_RANGE:
		is4 = true
	case wire.TS_IPV6_ADDR_RANGE:
	default:
		return ts, fmt.Errorf("traffic selector of type %d", t.Type)
	}
	if !ts.Start.IsValid() || !ts.End.IsValid() || ts.Start.Is4() != is4 || ts.End.Is4() != is4 || ts.End.Less(ts.Start) || ts.EndPort < ts.StartPort {
		return ts, fmt.Errorf("malformed traffic selector %s-%s ports %d-%d", ts.Start, ts.End, ts.StartPort, ts.EndPort)
	}
	return ts, nil
}

func selectors(ts []TSState) []wire.TrafficSelector {
	out := make([]wire.TrafficSelector, len(ts))
	for i, t := range ts {
		out[i], _ = t.selector() // checked by SAState.check
	}
	return out
}

// pendingExchange reports whether p's exchange may be pending in a state: a hand-over's
// switch request is INFORMATIONAL; a snapshot's request may be a CREATE_CHILD_SA or an
// IKE_FOLLOWUP_KE (of a Child SA) too.
func pendingExchange(p *PendingState) bool {
	x := wire.ExchangeType(p.Exchange)
	return x == wire.INFORMATIONAL || p.Opaque && (x == wire.CREATE_CHILD_SA || x == wire.IKE_FOLLOWUP_KE)
}
