// Package control is the daemon's local control socket: a Unix socket carrying one
// JSON request and its JSON-line response per connection, with the client side the
// CLI uses.
package control

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Limits.
const (
	MaxRequest  = 64 << 10 // bytes in one request line
	MaxResponse = 16 << 20 // bytes in one response line (a status with many SAs)
)

// Exit-code-like error codes carried in responses.
const (
	CodeFailed = 1 // the operation failed
	CodeUsage  = 2 // bad request: unknown command, missing name, unknown connection...
)

// Commands.
const (
	CmdStatus = "status"
	CmdUp     = "up"
	CmdDown   = "down"
	CmdSwitch = "switch"
	CmdReload = "reload"
)

// Request is what a client sends: one JSON object on one line.
type Request struct {
	Cmd  string `json:"cmd"`
	Name string `json:"name,omitempty"` // up, down: the connection

	// switch: move the selected peers' SAs to the local address To. At most one
	// selector (SA, Peer, From, All) is set; WaitMS > 0 waits for the peers to move.
	To     string  `json:"to,omitempty"`
	SA     *uint64 `json:"sa,omitempty"`
	Peer   string  `json:"peer,omitempty"`
	From   string  `json:"from,omitempty"`
	All    bool    `json:"all,omitempty"`
	WaitMS int64   `json:"wait_ms,omitempty"`

	// move: hand the selected SAs (SA, Peer, All, or the first Count) to the cluster
	// node ToNode.
	ToNode string `json:"to_node,omitempty"`
	Count  int    `json:"count,omitempty"`

	// status: only the counts, the drops and the runtime, without the list of SAs
	// (cheap with many SAs).
	Brief bool `json:"brief,omitempty"`
	// brief status: collect garbage first, so that runtime.heap_live_bytes is the heap
	// really in use now (for measurements; it costs a full collection).
	GC bool `json:"gc,omitempty"`
}

// Response is a line the server sends. Lines with Progress set are intermediate
// (informational); the last line is the final one, with OK and, on failure, Error and
// Code.
type Response struct {
	Progress string  `json:"progress,omitempty"`
	OK       bool    `json:"ok"`
	Error    string  `json:"error,omitempty"`
	Code     int     `json:"code,omitempty"`
	Message  string  `json:"message,omitempty"` // human-readable result, if any
	Status   *Status `json:"status,omitempty"`  // status
	// Cluster answers cluster-status.
	Cluster *ClusterStatus `json:"cluster,omitempty"`
}

// Err returns nil for an OK response, else an *Error with its message and code.
func (r *Response) Err() error {
	if r.OK {
		return nil
	}
	code := r.Code
	if code == 0 {
		code = CodeFailed
	}
	msg := r.Error
	if msg == "" {
		msg = "request failed"
	}
	return &Error{Code: code, Msg: msg}
}

// Error is a failure with a code (CodeFailed or CodeUsage). A Handler returns one to
// choose the code; the client returns one for every failed response.
type Error struct {
	Code int
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// UsageError returns an *Error with CodeUsage, for requests that cannot be served as
// asked (unknown connection, address not local, ...).
func UsageError(format string, args ...any) error {
	return &Error{Code: CodeUsage, Msg: fmt.Sprintf(format, args...)}
}

// Handler serves requests. Each method runs with a context that is cancelled when the
// client disconnects or the server shuts down; on cancellation a method should stop
// waiting (whether the operation itself is abandoned is up to the handler). The text
// of a returned error is passed to the client as is (e.g. "AUTHENTICATION_FAILED").
type Handler interface {
	Status(ctx context.Context) (*Status, error)
	Up(ctx context.Context, name string) error
	Down(ctx context.Context, name string) error
}

// SwitchRequest selects the SAs to move to the local address To (see Request).
type SwitchRequest struct {
	To   string
	SA   *uint64
	Peer string
	From string
	All  bool
	Wait time.Duration
}

// Switch is a switch request as Parse validated it: a local address, one selection,
// a wait.
type Switch struct {
	To   netip.Addr
	SA   uint64     // one IKE SA by id (0: not this selection)
	Peer string     // every IKE SA of this peer identity
	From netip.Addr // every IKE SA on this local address
	All  bool       // every IKE SA
	Wait time.Duration
}

// Parse validates a switch request: the one check, made by the command line before it
// sends the request and by the server when it arrives. Its errors are usage errors
// that name the flag.
func (r SwitchRequest) Parse() (Switch, error) {
	var s Switch
	to, err := netip.ParseAddr(r.To)
	switch {
	case r.To == "":
		return s, UsageError("switch needs --to ADDR, the local address to move to")
	case err != nil || to.Zone() != "":
		return s, UsageError("switch --to %q: not an IP address", r.To)
	}
	s.To, s.Peer, s.All = to.Unmap(), r.Peer, r.All
	var sels []string
	if r.SA != nil {
		if s.SA = *r.SA; s.SA == 0 {
			return s, UsageError("switch --sa 0: IKE SA ids start at 1")
		}
		sels = append(sels, "--sa")
	}
	if r.Peer != "" {
		sels = append(sels, "--peer")
	}
	if r.From != "" {
		from, err := netip.ParseAddr(r.From)
		if err != nil || from.Zone() != "" {
			return s, UsageError("switch --from %q: not an IP address", r.From)
		}
		s.From = from.Unmap()
		sels = append(sels, "--from")
	}
	if r.All {
		sels = append(sels, "--all")
	}
	switch len(sels) {
	case 0:
		return s, UsageError("switch needs one selection: --sa ID, --peer IDENTITY, --from ADDR or --all")
	case 1:
	default:
		return s, UsageError("switch takes one selection, got %s", strings.Join(sels, " and "))
	}
	if r.Wait < 0 {
		return s, UsageError("switch --wait %v: the wait must not be negative", r.Wait)
	}
	s.Wait = r.Wait
	return s, nil
}

// Reloader is implemented by handlers that reload their configuration file on
// request (as SIGHUP does): the report says what changed and what needs a restart; an
// error says why the new file was refused (the old one stays in force).
type Reloader interface {
	Reload(ctx context.Context) (string, error)
}

// Switcher is implemented by handlers that support the switch command; for others the
// server answers that switching is not supported yet. The returned string is a human
// summary for the client.
type Switcher interface {
	Switch(ctx context.Context, req Switch) (string, error)
}

// Status is the answer to the status command (and `mobikevpn status --json`).
type Status struct {
	IKESAs   []IKESA `json:"ike_sas"`          // empty in a brief status
	Counts   *Counts `json:"counts,omitempty"` // how many SAs there are
	HalfOpen int     `json:"half_open"`        // responder IKE SAs waiting for IKE_AUTH
	// PreauthBytes is what SAs whose peer is not authenticated yet hold (IKE_SA_INIT
	// messages, fragments being reassembled); it is bounded by preauth_memory.
	PreauthBytes int               `json:"preauth_bytes,omitempty"`
	Runtime      *Runtime          `json:"runtime,omitempty"` // the daemon's memory and goroutines
	Drops        map[string]uint64 `json:"drops,omitempty"`   // datapath/IKE drop counters by reason
}

// Counts are the numbers of SAs.
type Counts struct {
	IKESAs      int `json:"ike_sas"`     // IKE SAs but half-open ones
	Established int `json:"established"` // established IKE SAs
	ChildSAs    int `json:"child_sas"`   // Child SAs
	// Since the daemon started (zero where the handler does not know):
	IKESAsCreated   uint64 `json:"ike_sas_created"`   // half-open ones and rekeys included
	ChildSAsCreated uint64 `json:"child_sas_created"` // rekeys included
	LivenessChecks  uint64 `json:"liveness_checks"`   // DPD requests sent
}

// BriefStatuser is implemented by handlers that answer a brief status (Request.Brief)
// without building the list of SAs, after a garbage collection if gc is set; for other
// handlers the server drops the list from the full status.
type BriefStatuser interface {
	BriefStatus(ctx context.Context, gc bool) (*Status, error)
}

// Runtime is the daemon's own resource use.
type Runtime struct {
	HeapLiveBytes    uint64 `json:"heap_live_bytes"`    // live heap after the last GC
	HeapObjectsBytes uint64 `json:"heap_objects_bytes"` // heap objects now, garbage included
	TotalBytes       uint64 `json:"total_bytes"`        // all memory the Go runtime has mapped
	Goroutines       int    `json:"goroutines"`
}

// IKESA describes one IKE SA.
type IKESA struct {
	ID        uint64 `json:"id"`
	Name      string `json:"name"`
	Role      string `json:"role"`  // initiator or responder
	State     string `json:"state"` // e.g. connecting, established, rekeying, deleting
	Local     string `json:"local"` // current outer endpoint, IPv6 as [addr]:port
	Remote    string `json:"remote"`
	LocalID   string `json:"local_id"`
	RemoteID  string `json:"remote_id"`
	SPIi      string `json:"spi_i"` // hex
	SPIr      string `json:"spi_r"`
	Proposal  string `json:"proposal"`
	NATLocal  bool   `json:"nat_local"`
	NATRemote bool   `json:"nat_remote"`
	Encap     bool   `json:"encap"` // UDP encapsulation forced (fake NAT-D) by this end
	// UDPEncap says why ESP is in UDP: "nat" (a NAT detected in front of us),
	// "forced" (this end forces it, no NAT detected here), "peer" (only the peer's
	// NAT detection differs: a NAT in front of it, or it forces encapsulation), or
	// "none" (none of these: the userspace datapath encapsulates all the same).
	UDPEncap            string   `json:"udp_encap"`
	Mobike              bool     `json:"mobike"`
	RMobike             bool     `json:"rmobike"`
	PeerAdditionalAddrs []string `json:"peer_additional_addrs"`
	// MobikeState is where the SA's path manager is: "" without MOBIKE, "stable",
	// "updating" (an UPDATE_SA_ADDRESSES is on its way; after a switch ESP stays on the
	// old path until it is answered), "probing" (the path is silent: other address pairs
	// are being tried) or "verifying" (responder: a return routability check of the
	// peer's new address is pending; ESP stays on the verified one).
	MobikeState  string    `json:"mobike_state,omitempty"`
	VirtualIPs   []string  `json:"virtual_ips"`
	DNS          []string  `json:"dns,omitempty"` // DNS servers the peer assigned to us
	EstablishedS int64     `json:"established_s"`
	ChildSAs     []ChildSA `json:"child_sas"`
}

// ChildSA describes one Child SA.
type ChildSA struct {
	Name       string   `json:"name"`
	State      string   `json:"state"` // e.g. installed, rekeying
	SPIIn      string   `json:"spi_in"`
	SPIOut     string   `json:"spi_out"`
	Proposal   string   `json:"proposal"`
	LocalTS    []string `json:"local_ts"`
	RemoteTS   []string `json:"remote_ts"`
	BytesIn    uint64   `json:"bytes_in"`
	BytesOut   uint64   `json:"bytes_out"`
	PacketsIn  uint64   `json:"packets_in"`
	PacketsOut uint64   `json:"packets_out"`
}

// MarshalJSON writes nil slices as [].
func (s Status) MarshalJSON() ([]byte, error) {
	type plain Status
	if s.IKESAs == nil {
		s.IKESAs = []IKESA{}
	}
	return json.Marshal(plain(s))
}

// MarshalJSON writes nil slices as [].
func (sa IKESA) MarshalJSON() ([]byte, error) {
	type plain IKESA
	sa.PeerAdditionalAddrs = nonNil(sa.PeerAdditionalAddrs)
	sa.VirtualIPs = nonNil(sa.VirtualIPs)
	if sa.ChildSAs == nil {
		sa.ChildSAs = []ChildSA{}
	}
	return json.Marshal(plain(sa))
}

// MarshalJSON writes nil slices as [].
func (c ChildSA) MarshalJSON() ([]byte, error) {
	type plain ChildSA
	c.LocalTS = nonNil(c.LocalTS)
	c.RemoteTS = nonNil(c.RemoteTS)
	return json.Marshal(plain(c))
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
