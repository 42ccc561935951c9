package mobike

import (
	"net/netip"
	"time"
)

// Path is a pair of outer endpoints: where IKE messages or ESP packets go from and to.
type Path struct {
	Local  netip.AddrPort `json:"local"`
	Remote netip.AddrPort `json:"remote"`
}

// Valid reports whether both endpoints are set.
func (p Path) Valid() bool { return p.Local.IsValid() && p.Remote.IsValid() }

func (p Path) String() string { return p.Local.String() + " <-> " + p.Remote.String() }

// pair is the path's address pair, without ports.
func (p Path) pair() Pair { return Pair{p.Local.Addr(), p.Remote.Addr()} }

// Role is an end's MOBIKE role. "Initiator" is the original initiator of the first IKE
// SA of a chain of rekeyed ones (RFC 4555 and draft-smyslov-ipsecme-ikev2-r-mobike 2):
// it decides which addresses are used; after an IKE SA rekey the RFC 7296 roles may
// swap, the MOBIKE roles do not.
type Role uint8

// The two roles.
const (
	Initiator Role = iota + 1
	Responder
)

func (r Role) String() string {
	if r == Initiator {
		return "initiator"
	}
	return "responder"
}

// Policy is a connection's mobility configuration.
type Policy struct {
	Announce     Announce     // what we announce in ADDITIONAL_IP*_ADDRESS
	SwitchAccept SwitchPolicy // initiator: which SWITCH_TO_IP_ADDRESS targets to follow
	// RMobike: an initiator advertised 'R' and follows switches; a responder may send
	// them (to peers that advertised 'R').
	RMobike bool
	// SwitchLimit is how many switches per minute one SA may be asked for (responder)
	// or follow (initiator); 0: DefaultSwitchLimit.
	SwitchLimit int
	// SwitchHold: no switch back to an address the SA left by a switch less than this
	// ago (0: none).
	SwitchHold time.Duration
	// LocalAddrs are the connection's local_addrs (empty: any of the host's).
	LocalAddrs []netip.Addr
	// RemoteAddrs are an initiator's configured peer addresses: probe candidates.
	RemoteAddrs []netip.Addr
}

func (p *Policy) localAllowed(a netip.Addr) bool {
	if len(p.LocalAddrs) == 0 {
		return true
	}
	for _, x := range p.LocalAddrs {
		if x.Unmap() == a.Unmap() {
			return true
		}
	}
	return false
}

// Host is what the engine knows of the host when it feeds an event.
type Host struct {
	// Addrs are the host's usable addresses now; nil: not known (then the
	// connection's local_addrs are assumed present).
	Addrs []netip.Addr
	// Route returns the source address the routing table picks for remote; nil or
	// false: no answer.
	Route func(remote netip.Addr) (netip.Addr, bool)
	// Reachable lists the host's addresses that can reach remote (those on interfaces
	// with a route toward it); nil: not known (every address counts).
	Reachable func(remote netip.Addr) []netip.Addr
	// Cluster are the addresses of the other live nodes of the gateway's cluster: a
	// peer may be asked to switch to them, so they are always announced too.
	Cluster []netip.Addr
}

func (h Host) has(a netip.Addr) bool {
	if h.Addrs == nil {
		return true
	}
	a = a.Unmap()
	for _, x := range h.Addrs {
		if x == a {
			return true
		}
	}
	return false
}

// CheckKind says what an exchange the path manager asked for proves.
type CheckKind uint8

// Check kinds.
const (
	// Update is an initiator's UPDATE_SA_ADDRESSES (with NAT detection and COOKIE2).
	Update CheckKind = iota + 1
	// Reachability is a responder's return routability check: an INFORMATIONAL with
	// COOKIE2 (RFC 4555 3.7).
	Reachability
)

func (k CheckKind) String() string {
	if k == Update {
		return "UPDATE_SA_ADDRESSES"
	}
	return "return routability check"
}

// Check is one INFORMATIONAL exchange the path manager asked for. The engine carries it
// as a request: it sends it where Dest says, and reports every retransmission
// (Manager.Retransmit) and the reply (Manager.Reply).
type Check struct {
	Kind CheckKind
	// Path is where the check is sent while it is bound, and the only path a reply
	// proves anything for.
	Path    Path
	Cookie2 []byte
	// Tentative (initiator): ESP and other IKE traffic stay on Fallback until a reply
	// from Path confirms it; without one the initiator falls back.
	Tentative bool
	Fallback  Path
	Why       string

	// unbound: the request went, or goes, to more than one path (it was retransmitted
	// elsewhere), so its reply does not tell which path works (RFC 4555 3.7).
	unbound bool
	// stale: a newer check superseded it; its reply is ignored (RFC 4555 3.5).
	stale bool
	// since is the retransmission count when the check was last re-pointed.
	since int
	// retries counts re-issues of the same intent (a reply from elsewhere,
	// UNEXPECTED_NAT_DETECTED), bounded by maxReissue.
	retries int
	// switchFrom is set on an initiator's check that follows a switch request: the
	// address it leaves.
	switchFrom netip.Addr
	// gaveUp: a responder's check ran out of retransmissions; the request continues
	// on the verified ESP path once more (Manager.Exhausted).
	gaveUp bool
}

// Bound reports whether the check still goes to Path only.
func (c *Check) Bound() bool { return !c.unbound && !c.stale && !c.gaveUp }

// Stale reports whether a newer check superseded c.
func (c *Check) Stale() bool { return c.stale }

// Decision is something the path manager asks the engine to do, in order.
//
//sumtype:decl
type Decision interface{ isDecision() }

// SetIKEPath: IKE requests of the SA go on Path from now on. With Resend, the
// outstanding request (if any) is sent where it goes now at once, without changing its
// retransmission count or schedule (RFC 4555 3.5: outstanding requests continue
// retransmitting on the new addresses).
type SetIKEPath struct {
	Path   Path
	Resend bool
}

// SetESPPath: every Child SA of the IKE SA sends from Path.Local to Path.Remote from
// now on, atomically.
type SetESPPath struct{ Path Path }

// StartCheck: queue the exchange Check (an UPDATE_SA_ADDRESSES or a return
// routability check), replacing any queued check of the same kind that has not gone
// out yet.
type StartCheck struct{ Check *Check }

// LivenessCheck: queue an empty INFORMATIONAL (unless one is on its way).
type LivenessCheck struct{}

// SendSwitch: queue an INFORMATIONAL with SWITCH_TO_IP_ADDRESS(To), replacing one that
// has not gone out yet.
type SendSwitch struct{ To netip.Addr }

// AnnounceAddrs: queue an INFORMATIONAL with these additional addresses (none:
// NO_ADDITIONAL_ADDRESSES).
type AnnounceAddrs struct{ Addrs []netip.Addr }

// CloseSA: the IKE SA must be closed (COOKIE2 mismatch, RFC 4555 3.7).
type CloseSA struct{ Reason string }

// Confirmed: the reply to a bound UPDATE_SA_ADDRESSES came from its path: its NAT
// detection notifies describe Path and can be evaluated.
type Confirmed struct{ Path Path }

// NoteKind says what a Note reports.
type NoteKind uint8

// Note kinds.
const (
	NoteInfo          NoteKind = iota + 1 // worth a log line
	NoteMoved                             // the SA's addresses changed
	NoteSwitched                          // responder: the initiator arrived where we asked
	NoteSwitchRefused                     // initiator: we did not follow a switch request
	NoteFellBack                          // initiator: a new path did not answer; back on the old one
	NoteVerified                          // responder: the peer's address passed the return routability check
)

// Note reports something for the log and the engine's events.
type Note struct {
	Kind   NoteKind
	Msg    string
	Path   Path
	Reason string
}

func (SetIKEPath) isDecision()    {}
func (SetESPPath) isDecision()    {}
func (StartCheck) isDecision()    {}
func (LivenessCheck) isDecision() {}
func (SendSwitch) isDecision()    {}
func (AnnounceAddrs) isDecision() {}
func (CloseSA) isDecision()       {}
func (Confirmed) isDecision()     {}
func (Note) isDecision()          {}
