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

	ikecrypto "github.com/mobikevpn/mobikevpn/ike/crypto"
	"github.com/mobikevpn/mobikevpn/ike/wire"
	"github.com/mobikevpn/mobikevpn/mobike"
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

	Children []ChildSAState `json:"children"`
}

// IKESuiteState is an IKE SA's negotiated algorithms (IANA transform IDs).
type IKESuiteState struct {
	Encr        uint16 `json:"encr"`
	EncrKeyBits uint16 `json:"encr_key_bits"`
	Integ       uint16 `json:"integ"`
	PRF         uint16 `json:"prf"`
	DH          uint16 `json:"dh"`
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

// ErrExchangeInFlight is wrapped by Export's error for an SA that is in the middle of
// an exchange.
var ErrExchangeInFlight = errors.New("exchange in flight")

// Export returns the state of the established IKE SA id, to be imported by another
// engine (Import). The SA must be quiet: no request of ours outstanding or queued, no
// rekey or collision under way, no fragmented request being reassembled, every Child
// SA installed and carrying its traffic, no path check in flight; otherwise Export
// refuses with an error wrapping ErrExchangeInFlight that says what is under way (try
// again once it is done). The engine must have been created with Config.Exportable if
// the SA has Child SAs (it keeps their keys only then).
//
// From then on this engine treats the SA as handed over, so that the importer's IV
// counter and message IDs are the only ones in use: it seals nothing under the SA's
// keys, drops the SA's datagrams and runs none of its timers, and a Delete (DeleteAll
// at shutdown too) only forgets it. Its Child SAs stay in the datapath until Forget,
// which drops the SA once the importer owns it. Should the hand-over fail, Forget it and
// Import the same state here again. An SA exported already is not exported again.
func (e *Engine) Export(now time.Time, id uint64) (SAState, error) {
	sa := e.byID[id]
	if sa == nil {
		return SAState{}, fmt.Errorf("ike: export: no IKE SA #%d", id)
	}
	if sa.state != stateEstablished {
		return SAState{}, fmt.Errorf("ike: export: IKE SA #%d is %s, not established", id, sa.state)
	}
	if sa.rekeyedTo != nil {
		return SAState{}, fmt.Errorf("ike: export: IKE SA #%d was rekeyed; its successor is #%d", id, sa.rekeyedTo.id)
	}
	if sa.handedOver {
		return SAState{}, fmt.Errorf("ike: export: IKE SA #%d was exported already", id)
	}
	if why := sa.busy(); why != "" {
		return SAState{}, fmt.Errorf("ike: export: IKE SA #%d: %w: %s", id, ErrExchangeInFlight, why)
	}
	if sa.pm == nil {
		return SAState{}, fmt.Errorf("ike: export: IKE SA #%d has no path manager", id)
	}
	path, err := sa.pm.Snapshot()
	if err != nil {
		return SAState{}, fmt.Errorf("ike: export: IKE SA #%d: %w: the path manager is %s", id, ErrExchangeInFlight, sa.pm.State())
	}
	if len(sa.children) > 0 && !e.cfg.Exportable {
		return SAState{}, fmt.Errorf("ike: export: IKE SA #%d: this engine does not keep Child SA keys (Config.Exportable is off)", id)
	}
	st := SAState{
		Version:       SAStateVersion,
		Conn:          sa.conn.Name,
		Exported:      utc(now),
		SPIi:          sa.spiI,
		SPIr:          sa.spiR,
		Initiator:     sa.initiator,
		OrigInitiator: sa.origInitiator,
		Local:         sa.local,
		Remote:        sa.remote,
		AuthLocal:     sa.authLocal,
		AuthRemote:    sa.authRemote,
		Suite: IKESuiteState{Encr: sa.suite.Encr, EncrKeyBits: sa.suite.EncrKeyBits, Integ: sa.suite.Integ,
			PRF: sa.suite.PRF, DH: sa.suite.DH},
		Keys: IKEKeysState{SKd: secret(sa.keys.SKd), SKai: secret(sa.keys.SKai), SKar: secret(sa.keys.SKar),
			SKei: secret(sa.keys.SKei), SKer: secret(sa.keys.SKer), SKpi: secret(sa.keys.SKpi), SKpr: secret(sa.keys.SKpr)},
		Ni:            bytes.Clone(sa.ni),
		Nr:            bytes.Clone(sa.nr),
		LocalID:       IDState{Type: uint8(sa.localID.IDType), Data: bytes.Clone(sa.localID.Data)},
		RemoteID:      IDState{Type: uint8(sa.remoteID.IDType), Data: bytes.Clone(sa.remoteID.Data)},
		LocalAuth:     sa.conn.LocalAuth,
		RemoteAuth:    sa.conn.RemoteAuth,
		NATLocal:      sa.natLocal,
		NATRemote:     sa.natRemote,
		Mobike:        sa.mobike,
		PeerRMobike:   sa.peerRMobike,
		Fragmentation: sa.fragment,
		NextRequestID: sa.nextReqID,
		PeerRequestID: sa.peerReqID,
		VIPs:          append([]netip.Addr(nil), sa.vips...),
		DNS:           append([]netip.Addr(nil), sa.vipDNS...),
		Created:       utc(sa.created),
		Established:   utc(sa.estab),
		LastRecv:      utc(sa.lastRecv),
		RekeyAt:       utc(sa.rekeyAt),
		DPDAt:         utc(sa.dpdAt),
		Path:          utcPath(path),
	}
	if sa.peerHashes != nil {
		st.PeerHashes = append([]uint16{}, sa.peerHashes...)
	}
	if c, ok := ikecrypto.SealCounter(sa.skOut); ok {
		st.SealCounter = c
	}
	if sa.lastResp != nil {
		st.LastResponse = make([][]byte, len(sa.lastResp))
		for i, d := range sa.lastResp {
			st.LastResponse[i] = bytes.Clone(d)
		}
		st.LastRequestHash = bytes.Clone(sa.lastReqHash[:])
	}
	if sa.pool != nil {
		st.Pool = sa.pool.name
	}
	sa.handedOver = true
	for _, c := range sa.children {
		st.Children = append(st.Children, ChildSAState{
			Name:     c.cfg.Name,
			SPIIn:    c.spiIn,
			SPIOut:   c.spiOut,
			Suite:    ESPSuiteState{Encr: c.suite.Encr, EncrKeyBits: c.suite.EncrKeyBits, Integ: c.suite.Integ, DH: c.suite.DH, ESN: c.suite.ESN},
			In:       ChildKeysState{Encr: secret(c.heldIn.Encr), Integ: secret(c.heldIn.Integ)},
			Out:      ChildKeysState{Encr: secret(c.heldOut.Encr), Integ: secret(c.heldOut.Integ)},
			LocalTS:  tsState(c.localTS),
			RemoteTS: tsState(c.remoteTS),
			Ni:       bytes.Clone(c.ni),
			Nr:       bytes.Clone(c.nr),
			Created:  utc(c.created),
			RekeyAt:  utc(c.rekeyAt),
			Limits:   LimitsState(c.limits),
			Expired:  c.expired,
		})
	}
	return st, nil
}

// busy says what exchange sa is in the middle of ("": none).
func (sa *IKESA) busy() string {
	switch {
	case sa.pending != nil:
		return fmt.Sprintf("our %s request (message ID %d) awaits its response", sa.pending.exchange, sa.pending.msgID)
	case len(sa.queue) > 0:
		return fmt.Sprintf("%d requests of ours wait to be sent", len(sa.queue))
	case sa.rekeying != nil || sa.collision != nil:
		return "an IKE SA rekey is under way"
	case sa.frags[0] != nil || sa.frags[1] != nil:
		return "a fragmented message is being reassembled"
	case len(sa.reserved) > 0:
		return "a Child SA is being negotiated"
	case sa.firstChildIn != 0:
		return "the first Child SA is being negotiated"
	}
	for _, c := range sa.children {
		switch {
		case c.state != childInstalled:
			return fmt.Sprintf("Child SA %s (SPI %s) is %s", c.cfg.Name, spiHex(c.spiIn), c.state)
		case !c.outActive:
			return fmt.Sprintf("Child SA %s (SPI %s) waits to carry its outbound traffic (a rekey is completing)", c.cfg.Name, spiHex(c.spiIn))
		case c.successor != nil || c.collision != nil:
			return fmt.Sprintf("Child SA %s (SPI %s) is being replaced", c.cfg.Name, spiHex(c.spiIn))
		}
	}
	return ""
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Round(0)
}

func utcPath(s mobike.Snapshot) mobike.Snapshot {
	s.SwitchSince = utc(s.SwitchSince)
	for i := range s.Switches {
		s.Switches[i] = utc(s.Switches[i])
	}
	for i := range s.Verified {
		s.Verified[i].At = utc(s.Verified[i].At)
	}
	for i := range s.Left {
		s.Left[i].At = utc(s.Left[i].At)
	}
	return s
}

// Import registers the IKE SA of st, exported by another engine (Export), and
// returns the actions that install it here: its virtual IPs, each Child SA's inbound
// and outbound halves (from the path manager's ESP path; Seq says where the sequence
// numbers go on) and the key log line. Its timers (liveness check, rekeys) keep their
// absolute times; its path manager continues from st.Path. It refuses, changing
// nothing, a state of another version, one whose connection (or one of whose Child
// SAs' configurations) this engine does not have, whose auth methods differ from the
// connection's here, whose IKE or ESP SPIs are in use here, whose virtual IP is leased
// to someone else here or in no pool of the connection, or whose keys do not fit its
// suites. It returns the new SA's id with the actions (it differs from the exporter's).
func (e *Engine) Import(now time.Time, st SAState) (uint64, []Action, error) {
	if err := st.check(); err != nil {
		return 0, nil, fmt.Errorf("ike: import: %w", err)
	}
	conn := e.conns[st.Conn]
	if conn == nil {
		return 0, nil, fmt.Errorf("ike: import: connection %q is not configured here", st.Conn)
	}
	if st.LocalAuth != conn.LocalAuth || st.RemoteAuth != conn.RemoteAuth {
		return 0, nil, fmt.Errorf("ike: import: connection %q authenticates %s/%s here, the state says %s/%s",
			st.Conn, conn.LocalAuth, conn.RemoteAuth, st.LocalAuth, st.RemoteAuth)
	}
	ourSPI := st.SPIr
	if st.Initiator {
		ourSPI = st.SPIi
	}
	if other := e.sas[ourSPI]; other != nil {
		return 0, nil, fmt.Errorf("ike: import: SPI collision: IKE SPI %016x is in use here (IKE SA #%d)", ourSPI, other.id)
	}
	suite := ikecrypto.IKESuite{Encr: st.Suite.Encr, EncrKeyBits: st.Suite.EncrKeyBits, Integ: st.Suite.Integ, PRF: st.Suite.PRF, DH: st.Suite.DH}
	prf, keys, skI, skR, err := importIKEKeys(suite, &st.Keys)
	if err != nil {
		return 0, nil, fmt.Errorf("ike: import: %w", err)
	}
	children := make([]*ChildSA, 0, len(st.Children))
	seen := make(map[uint32]bool)
	for i := range st.Children {
		cs := &st.Children[i]
		c, err := importChild(conn, cs)
		if err != nil {
			return 0, nil, fmt.Errorf("ike: import: %w", err)
		}
		if e.spisIn[cs.SPIIn] != nil || seen[cs.SPIIn] {
			return 0, nil, fmt.Errorf("ike: import: SPI collision: inbound ESP SPI %08x of Child SA %q is in use here", cs.SPIIn, cs.Name)
		}
		seen[cs.SPIIn] = true
		children = append(children, c)
	}
	// The peer's virtual IPs: each must be in a pool of the connection and free here.
	var leases []*pool
	if !st.OrigInitiator {
		for _, a := range st.VIPs {
			var in *pool
			for _, name := range conn.Pools {
				if pl := e.pools[name]; pl != nil && pl.contains(a) {
					in = pl
					break
				}
			}
			switch {
			case in == nil:
				return 0, nil, fmt.Errorf("ike: import: virtual IP %s is in no pool of connection %q here", a, st.Conn)
			case in.inUse[a]:
				return 0, nil, fmt.Errorf("ike: import: virtual IP %s is leased to someone else here", a)
			}
			leases = append(leases, in)
		}
	}
	// Nothing is refused from here on.
	sa := &IKESA{
		conn:          conn,
		state:         stateEstablished,
		initiator:     st.Initiator,
		origInitiator: st.OrigInitiator,
		spiI:          st.SPIi,
		spiR:          st.SPIr,
		local:         st.Local,
		remote:        st.Remote,
		suite:         suite,
		prf:           prf,
		keys:          keys,
		ni:            bytes.Clone(st.Ni),
		nr:            bytes.Clone(st.Nr),
		natLocal:      st.NATLocal,
		natRemote:     st.NATRemote,
		localID:       wire.ID{IDType: wire.IDType(st.LocalID.Type), Data: bytes.Clone(st.LocalID.Data)},
		remoteID:      wire.ID{IDType: wire.IDType(st.RemoteID.Type), Data: bytes.Clone(st.RemoteID.Data)},
		mobike:        st.Mobike,
		peerRMobike:   st.PeerRMobike,
		fragment:      st.Fragmentation,
		authLocal:     st.AuthLocal,
		authRemote:    st.AuthRemote,
		created:       st.Created,
		estab:         st.Established,
		lastRecv:      st.LastRecv,
		nextReqID:     st.NextRequestID,
		peerReqID:     st.PeerRequestID,
		rekeyAt:       st.RekeyAt,
		dpdAt:         st.DPDAt,
	}
	sa.skOut, sa.skIn = skR, skI
	if st.Initiator {
		sa.skOut, sa.skIn = skI, skR
	}
	ikecrypto.ResumeSealCounter(sa.skOut, st.SealCounter)
	if st.PeerHashes != nil {
		sa.peerHashes = append([]uint16{}, st.PeerHashes...)
	}
	if st.LastResponse != nil {
		sa.lastResp = make([][]byte, len(st.LastResponse))
		for i, d := range st.LastResponse {
			sa.lastResp[i] = bytes.Clone(d)
		}
		copy(sa.lastReqHash[:], st.LastRequestHash)
	}
	role := mobike.Responder
	if sa.origInitiator {
		role = mobike.Initiator
	}
	sa.pm = mobike.Restore(mobike.Config{
		Role:        role,
		Policy:      mobilityPolicy(conn),
		Mobike:      sa.mobike,
		PeerRMobike: sa.peerRMobike,
		Rand:        e.rand,
		Tries:       e.cfg.Retransmit.Tries,
	}, st.Path)
	e.addSA(sa)
	e.indexPeer(sa)
	if len(st.VIPs) > 0 {
		sa.vips = append([]netip.Addr(nil), st.VIPs...)
		sa.vipDNS = append([]netip.Addr(nil), st.DNS...)
		if !sa.origInitiator {
			id := sa.remoteID.String()
			for i, a := range sa.vips {
				leases[i].take(id, a)
				sa.pool = leases[i]
			}
		}
		e.emit(VirtualIPs{IKESA: sa.id, Local: sa.origInitiator, Addrs: sa.vips, DNS: sa.vipDNS})
	}
	p := e.espPath(sa)
	for i, c := range children {
		cs := &st.Children[i]
		e.nextChildID++
		c.id = e.nextChildID
		c.policy = c.id
		c.state = childInstalled
		sa.children = append(sa.children, c)
		e.spisIn[c.spiIn] = c
		in := ChildKeys{Encr: bytes.Clone(cs.In.Encr), Integ: bytes.Clone(cs.In.Integ)}
		out := ChildKeys{Encr: bytes.Clone(cs.Out.Encr), Integ: bytes.Clone(cs.Out.Integ)}
		if e.cfg.Exportable {
			c.heldIn, c.heldOut = in.clone(), out.clone()
		}
		e.emit(InstallInbound{
			IKESA: sa.id, Child: c.id, Name: c.cfg.Name, SPI: c.spiIn, Suite: c.suite, Keys: in,
			LocalTS: c.localTS, RemoteTS: c.remoteTS, Local: p.Local, Remote: p.Remote, Limits: c.limits, Seq: cs.InSeq,
		})
		e.emit(InstallOutbound{
			IKESA: sa.id, Child: c.id, Policy: c.policy, Name: c.cfg.Name, SPI: c.spiOut, Suite: c.suite,
			Keys: out, LocalTS: c.localTS, RemoteTS: c.remoteTS, Local: p.Local, Remote: p.Remote,
			Keepalive: sa.natLocal, Limits: c.limits, Seq: cs.OutSeq,
		})
		c.outActive = true
	}
	e.keylogIKE(sa)
	e.log.Info("IKE SA imported", "conn", conn.Name, "sa", sa.id, "peer", sa.remote, "id", sa.remoteID.String(),
		"children", len(sa.children), "proposal", sa.suite.String())
	e.schedule(sa)
	return sa.id, e.take(), nil
}

// importIKEKeys checks an imported IKE SA's keys against its suite and makes its PRF
// and SK ciphers (initiator's and responder's).
func importIKEKeys(suite ikecrypto.IKESuite, k *IKEKeysState) (*ikecrypto.PRF, ikecrypto.IKEKeys, ikecrypto.SKCipher, ikecrypto.SKCipher, error) {
	fail := func(err error) (*ikecrypto.PRF, ikecrypto.IKEKeys, ikecrypto.SKCipher, ikecrypto.SKCipher, error) {
		return nil, ikecrypto.IKEKeys{}, nil, nil, err
	}
	prf, err := ikecrypto.NewPRF(suite.PRF)
	if err != nil {
		return fail(err)
	}
	encrLen, integLen := suite.KeyLengths()
	if encrLen == 0 {
		return fail(fmt.Errorf("IKE suite %s is not supported", suite))
	}
	for _, x := range []struct {
		name string
		k    Secret
		n    int
	}{{"SK_d", k.SKd, prf.Size()}, {"SK_pi", k.SKpi, prf.Size()}, {"SK_pr", k.SKpr, prf.Size()},
		{"SK_ei", k.SKei, encrLen}, {"SK_er", k.SKer, encrLen}, {"SK_ai", k.SKai, integLen}, {"SK_ar", k.SKar, integLen}} {
		if len(x.k) != x.n {
			return fail(fmt.Errorf("%s of %d octets, the suite %s needs %d", x.name, len(x.k), suite, x.n))
		}
	}
	keys := ikecrypto.IKEKeys{SKd: bytes.Clone(k.SKd), SKai: bytes.Clone(k.SKai), SKar: bytes.Clone(k.SKar),
		SKei: bytes.Clone(k.SKei), SKer: bytes.Clone(k.SKer), SKpi: bytes.Clone(k.SKpi), SKpr: bytes.Clone(k.SKpr)}
	skI, err := ikecrypto.NewSKCipher(suite.Encr, int(suite.EncrKeyBits), suite.Integ, keys.SKei, keys.SKai)
	if err != nil {
		return fail(err)
	}
	skR, err := ikecrypto.NewSKCipher(suite.Encr, int(suite.EncrKeyBits), suite.Integ, keys.SKer, keys.SKar)
	if err != nil {
		return fail(err)
	}
	return prf, keys, skI, skR, nil
}

// importChild makes the Child SA of cs (without its ids) after checking it against
// conn's configuration and its suite.
func importChild(conn *Conn, cs *ChildSAState) (*ChildSA, error) {
	var cfg *ChildConfig
	for _, cc := range conn.Children {
		if cc.Name == cs.Name {
			cfg = cc
			break
		}
	}
	if cfg == nil {
		return nil, fmt.Errorf("connection %q has no Child SA %q here", conn.Name, cs.Name)
	}
	suite := ikecrypto.ESPSuite{Encr: cs.Suite.Encr, EncrKeyBits: cs.Suite.EncrKeyBits, Integ: cs.Suite.Integ, DH: cs.Suite.DH, ESN: cs.Suite.ESN}
	encrLen, integLen := suite.KeyLengths()
	if encrLen == 0 {
		return nil, fmt.Errorf("the ESP suite %s of Child SA %q is not supported", suite, cs.Name)
	}
	for _, k := range []ChildKeysState{cs.In, cs.Out} {
		if len(k.Encr) != encrLen || len(k.Integ) != integLen {
			return nil, fmt.Errorf("keys of Child SA %q: %d and %d octets, the suite %s needs %d and %d",
				cs.Name, len(k.Encr), len(k.Integ), suite, encrLen, integLen)
		}
	}
	return &ChildSA{
		cfg:      cfg,
		spiIn:    cs.SPIIn,
		spiOut:   cs.SPIOut,
		suite:    suite,
		localTS:  selectors(cs.LocalTS),
		remoteTS: selectors(cs.RemoteTS),
		created:  cs.Created,
		ni:       bytes.Clone(cs.Ni),
		nr:       bytes.Clone(cs.Nr),
		rekeyAt:  cs.RekeyAt,
		limits:   ChildLimits(cs.Limits),
		expired:  cs.Expired,
	}, nil
}

// Forget drops the IKE SA id without telling the peer: for an SA another engine has
// imported and now owns. Its Child SAs leave the datapath (RemoveInbound,
// RemoveOutbound) and its virtual IPs go back to the pool; no Delete is sent and no
// event reported.
func (e *Engine) Forget(now time.Time, id uint64) ([]Action, error) {
	sa := e.byID[id]
	if sa == nil {
		return nil, fmt.Errorf("ike: forget: no IKE SA #%d", id)
	}
	e.removeSA(now, sa, "")
	return e.take(), nil
}
