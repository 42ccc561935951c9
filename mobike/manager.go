package mobike

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"

	"github.com/mobikevpn/mobikevpn/wire"
)

// The path manager: one per established IKE SA, a state machine without I/O. The engine
// feeds it events (the host's addresses changed, an address update or a switch request
// arrived, a request of the SA was retransmitted or answered) with the current time,
// and carries out the decisions it returns. Every address change it makes follows RFC
// 4555 section 5: an initiator moves only by its own decisions, confirmed by the reply
// to its UPDATE_SA_ADDRESSES from exactly the path it was sent on; a responder points
// ESP only at peer addresses that passed a return routability check sent to exactly
// that address and port and answered from there.

const (
	// ProbeAfter is how many retransmissions of a request on one path go unanswered
	// before the initiator also tries every other address pair (RFC 4555 3.10).
	ProbeAfter = 1
	// FallbackAfter is how many retransmissions of a tentative UPDATE_SA_ADDRESSES (one
	// following a switch request or a probe) go to the new path unanswered before the
	// initiator gives it up and returns to the old one.
	FallbackAfter = 2
	// MaxProbePairs bounds the pairs probed at once.
	MaxProbePairs = 8
	// maxReissue bounds how often one intent is re-sent as a new check (a reply from
	// another path, UNEXPECTED_NAT_DETECTED).
	maxReissue = 3
	// failHold is how long a path that did not answer or was refused is left out of
	// probing.
	failHold = time.Minute
	// VerifiedHold is how long a responder keeps a peer address verified after ESP last
	// used it (or after it passed its check, if ESP never went there): a peer that
	// comes back later is checked again.
	VerifiedHold = 10 * time.Minute
	// SwitchExpiry is how long a responder waits for the initiator to arrive where it
	// asked it to switch to; after that the request counts as refused or lost, and a
	// later arrival there is no switch.
	SwitchExpiry = 5 * time.Minute
	// bounds of the remembered address lists
	maxVerified = 16
	maxUsed     = 8
	maxSeen     = 8
	maxFailed   = 8
	maxLeft     = 8
	// switchWindow is the period of SwitchLimit.
	switchWindow = time.Minute
)

// Config creates a Manager.
type Config struct {
	Role   Role
	Policy Policy
	// Mobike: MOBIKE was negotiated. Without it the manager only carries out RFC 7296
	// 2.23's dynamic address updates.
	Mobike bool
	// PeerRMobike (responder): the initiator advertised 'R'.
	PeerRMobike bool
	// Path is the IKE SA's addresses after IKE_AUTH (RFC 4555 3.3): IKE and ESP start
	// there, and the peer's address counts as verified (it completed IKE_AUTH).
	Path Path
	// PeerAddrs are the peer's additional addresses from IKE_AUTH.
	PeerAddrs []netip.Addr
	// Announced are the additional addresses we sent in IKE_AUTH.
	Announced []netip.Addr
	// Rand makes COOKIE2 values.
	Rand io.Reader
	// NATD (initiator) is the NAT_DETECTION_DESTINATION_IP of the IKE_SA_INIT response
	// when it describes the SA's path (RFC 4555 3.8: liveness checks are compared with
	// it until an UPDATE_SA_ADDRESSES response replaces it); nil: not known.
	NATD []byte
	// Tries is how many retransmissions a request gets before the peer counts as dead
	// (0: not known, assumed more than FallbackAfter).
	Tries int
}

// Manager is the path manager of one IKE SA. It is not safe for concurrent use.
type Manager struct {
	role   Role
	pol    Policy
	mobike bool
	peerR  bool
	rand   io.Reader
	tries  int

	// ike is where the SA's IKE requests go (RFC 4555: the IKE SA's addresses); esp
	// where its Child SAs send. They differ while a responder verifies the peer's new
	// address.
	ike, esp Path

	peerAddrs     []netip.Addr // the peer's additional addresses, as last announced
	announced     []netip.Addr // what we announced last
	announcedOnce bool

	// Initiator.
	// used: peer addresses the SA was on, confirmed by IKE_AUTH or a reply from there:
	// candidates for committed moves and probing.
	used []netip.Addr
	// seen: peer addresses that only sent us something (the source of an address
	// update, which anyone on the path can forge): probe candidates only, never a
	// committed move.
	seen     []netip.Addr
	update   *Check // the newest UPDATE_SA_ADDRESSES not yet answered
	probing  bool
	probed   []Path // the pairs the outstanding request was also sent on
	failed   []stamped[Path]
	lastNATD []byte // the peer's last NAT_DETECTION_DESTINATION_IP (RFC 4555 3.8)

	// Responder.
	// verified: peer addresses that passed a check, newest last, stamped with when
	// they last passed it or ESP last used them (VerifiedHold).
	verified    []stamped[netip.AddrPort]
	rr          *Check     // the newest return routability check not yet answered
	switchTo    netip.Addr // the address we asked the initiator to move to
	switchSince time.Time

	// Both: the switches of the last minute (sent or followed) and the addresses left
	// by a switch, for SwitchLimit and SwitchHold.
	switches []time.Time
	left     []stamped[netip.Addr]
}

type stamped[T comparable] struct {
	v  T
	at time.Time
}

// New returns the path manager of an IKE SA established on cfg.Path.
func New(cfg Config) *Manager {
	m := &Manager{
		role:      cfg.Role,
		pol:       cfg.Policy,
		mobike:    cfg.Mobike,
		peerR:     cfg.PeerRMobike,
		rand:      cfg.Rand,
		tries:     cfg.Tries,
		ike:       cfg.Path,
		esp:       cfg.Path,
		peerAddrs: slices.Clone(cfg.PeerAddrs),
	}
	if cfg.Announced != nil {
		m.announced, m.announcedOnce = slices.Clone(cfg.Announced), true
	}
	if m.role == Initiator {
		m.remember(cfg.Path.Remote.Addr())
		m.lastNATD = slices.Clone(cfg.NATD)
	} else {
		m.verify(time.Time{}, cfg.Path.Remote)
	}
	return m
}

// IKE is where the SA's IKE requests go.
func (m *Manager) IKE() Path { return m.ike }

// ESP is where the SA's Child SAs send.
func (m *Manager) ESP() Path { return m.esp }

// Role is our MOBIKE role on the SA.
func (m *Manager) Role() Role { return m.role }

// Mobike reports whether MOBIKE was negotiated.
func (m *Manager) Mobike() bool { return m.mobike }

// PeerRMobike reports whether the peer (an initiator) advertised 'R'.
func (m *Manager) PeerRMobike() bool { return m.peerR }

// PeerAddrs are the peer's additional addresses as last announced.
func (m *Manager) PeerAddrs() []netip.Addr { return slices.Clone(m.peerAddrs) }

// Verified reports whether the peer address a passed a return routability check (or
// IKE_AUTH) and was not forgotten since (VerifiedHold).
func (m *Manager) Verified(a netip.AddrPort) bool {
	a = unmapAP(a)
	return slices.ContainsFunc(m.verified, func(v stamped[netip.AddrPort]) bool { return v.v == a })
}

// State names where the manager is, for status: "" without MOBIKE, else "probing",
// "updating" (an initiator's UPDATE_SA_ADDRESSES is unanswered), "verifying" (a
// responder's return routability check is unanswered) or "stable".
func (m *Manager) State() string {
	switch {
	case !m.mobike:
		return ""
	case m.probing:
		return "probing"
	case m.update != nil:
		return "updating"
	case m.rr != nil:
		return "verifying"
	}
	return "stable"
}

// Dest is where the request carrying check c (nil: an ordinary request) goes now: the
// check's path while it is bound to it, the verified ESP path once a responder gave it
// up, else the IKE SA's path.
func (m *Manager) Dest(c *Check) Path {
	switch {
	case c != nil && c.gaveUp:
		return m.esp
	case c != nil && c.Bound():
		return c.Path
	}
	return m.ike
}

// Reply describes the reply to a check.
type Reply struct {
	Cookie2 []byte          // the reply's COOKIE2 (nil: none)
	Error   wire.NotifyType // its first error notify (0: none)
}

// Reply handles the reply, which arrived on path at, to the request carrying check c
// (nil: an ordinary request). A COOKIE2 that does not match closes the SA (RFC 4555
// 3.7), whatever else happened since.
func (m *Manager) Reply(now time.Time, host Host, c *Check, at Path, r Reply) []Decision {
	if c == nil {
		return m.ordinaryReply(now, at)
	}
	if !CookieMatch(c.Cookie2, r.Cookie2) {
		return []Decision{CloseSA{Reason: "COOKIE2 mismatch in the reply to our " + c.Kind.String()}}
	}
	switch {
	case c.stale:
		if m.role == Initiator {
			// The request that was probed is answered: probing is over (the reply
			// itself is ignored, RFC 4555 3.5).
			m.probing, m.probed = false, nil
		}
		return nil
	case c.Kind == Update:
		return m.updateReply(now, host, c, at, r)
	default:
		return m.reachabilityReply(now, c, at)
	}
}

// CookieMatch compares a COOKIE2 echoed in a reply with the one sent, in constant time.
func CookieMatch(sent, got []byte) bool { return CheckCookie2(sent, got) == nil }

// Rekeyed tells the manager that a new IKE SA took over the SA's work: requests of the
// old one are gone, so checks that were still waiting are asked for again. The last NAT
// detection value is kept: it includes the old SPIs, so the first liveness check of
// the new SA differs from it and sends an UPDATE_SA_ADDRESSES, the extra update RFC
// 4555 3.8 calls harmless, and a NAT mapping that changed meanwhile is not missed.
func (m *Manager) Rekeyed(now time.Time) []Decision {
	m.probing, m.probed = false, nil
	var ds []Decision
	if c := m.update; c != nil {
		n := m.newCheck(Update, c.Path, c.Why)
		n.Tentative, n.Fallback, n.switchFrom = c.Tentative, c.Fallback, c.switchFrom
		c.stale = true
		m.update = n
		ds = append(ds, StartCheck{Check: n})
	}
	if c := m.rr; c != nil {
		c.stale = true
		m.rr = nil
		if !m.Verified(m.ike.Remote) {
			ds = append(ds, m.startReachability(m.ike)...)
		}
	}
	return ds
}

// Announcement is what we announce now in ADDITIONAL_IP*_ADDRESS: with additional_addrs
// auto and no local_addrs, only addresses that can reach the peer.
func (m *Manager) Announcement(host Host) []netip.Addr {
	peers := append([]netip.Addr{m.ike.Remote.Addr()}, m.peerAddrs...)
	return m.pol.Announce.For(m.ike.Local.Addr(), host, peers)
}

// AnnounceIfChanged asks for an address update when what we would announce differs from
// what the peer last heard (RFC 4555 3.6).
func (m *Manager) AnnounceIfChanged(host Host) []Decision {
	if !m.mobike {
		return nil
	}
	addrs := m.Announcement(host)
	if m.announcedOnce && slices.Equal(addrs, m.announced) {
		return nil
	}
	m.announced, m.announcedOnce = addrs, true
	return []Decision{AnnounceAddrs{Addrs: addrs}}
}

// PeerAddresses handles an address update (ADDITIONAL_IP*_ADDRESS or
// NO_ADDITIONAL_ADDRESSES in an INFORMATIONAL request) that arrived on path at. The list
// replaces the old one. An initiator never moves because of it (RFC 4555 3.8: a host not
// behind a NAT does not update addresses from IKE packets, and on-path attackers can
// re-source copies): when it came from another address it is a hint that the path may
// have changed, which a liveness check on the current path settles (RFC 4555 3.5); the
// sender's address becomes a probe candidate only (m.seen), never the target of a
// committed move.
func (m *Manager) PeerAddresses(now time.Time, list []netip.Addr, at Path) []Decision {
	if !m.mobike {
		return nil
	}
	m.peerAddrs = slices.Clone(list)
	if m.role != Initiator || at.Remote.Addr() == m.ike.Remote.Addr() {
		return nil
	}
	m.saw(at.Remote.Addr())
	return []Decision{
		Note{Kind: NoteInfo, Msg: "address update from an address the SA does not use: checking the current path instead of following it", Path: at},
		LivenessCheck{},
	}
}

// Authenticated handles a new (not retransmitted) authenticated request, or the reply to
// one of ours, that arrived on path at, for RFC 7296 2.23's dynamic address update: a
// responder that does not do MOBIKE with this peer and is not behind a NAT follows a peer
// behind a NAT to its new address and port. With MOBIKE nothing moves this way (RFC 4555
// 3.8). An initiator (a client) never does: it moves only by its own decisions, so that
// re-sourced packets cannot redirect it.
func (m *Manager) Authenticated(now time.Time, at Path, natLocal, natRemote bool) []Decision {
	if m.mobike || m.role != Responder || natLocal || !natRemote || !at.Valid() || at.Remote == m.ike.Remote {
		return nil
	}
	m.ike, m.esp = at, at
	return []Decision{
		SetIKEPath{Path: at, Resend: true},
		SetESPPath{Path: at},
		Note{Kind: NoteMoved, Msg: "the peer's NAT mapping changed: following it", Path: at, Reason: "NAT mapping change (RFC 7296 2.23)"},
	}
}

// newCheck returns a check of kind bound to p with a fresh COOKIE2.
func (m *Manager) newCheck(kind CheckKind, p Path, why string) *Check {
	c := &Check{Kind: kind, Path: p, Why: why, Cookie2: make([]byte, Cookie2Len)}
	// crypto/rand does not fail; test sources do not either.
	io.ReadFull(m.rand, c.Cookie2)
	return c
}

// reissue returns a new check with c's intent.
func (m *Manager) reissue(c *Check) *Check {
	n := m.newCheck(c.Kind, c.Path, c.Why)
	n.Tentative, n.Fallback, n.switchFrom = c.Tentative, c.Fallback, c.switchFrom
	n.retries = c.retries + 1
	c.stale = true
	return n
}

func (m *Manager) switchLimit() int {
	if m.pol.SwitchLimit > 0 {
		return m.pol.SwitchLimit
	}
	return DefaultSwitchLimit
}

// switchRefusal says why a switch to to is not allowed now by SwitchLimit or
// SwitchHold ("": it is).
func (m *Manager) switchRefusal(now time.Time, to netip.Addr) string {
	kept := m.switches[:0]
	for _, t := range m.switches {
		if now.Sub(t) < switchWindow {
			kept = append(kept, t)
		}
	}
	m.switches = kept
	if n := m.switchLimit(); len(m.switches) >= n {
		return fmt.Sprintf("switch_limit: %d switches of this SA in the last minute (at most %d)", len(m.switches), n)
	}
	if h := m.pol.SwitchHold; h > 0 {
		for _, l := range m.left {
			if l.v == to && now.Sub(l.at) < h {
				return fmt.Sprintf("switch_hold: the SA left %s by a switch %v ago (switch_hold %v)", to, now.Sub(l.at).Round(time.Millisecond), h)
			}
		}
	}
	return ""
}

func (m *Manager) countSwitch(now time.Time) { m.switches = append(m.switches, now) }

func (m *Manager) noteLeft(now time.Time, a netip.Addr) {
	m.left = appendBounded(m.left, stamped[netip.Addr]{a.Unmap(), now}, maxLeft)
}

// remember adds a peer address the SA was confirmed on to the candidates of committed
// moves and probing.
func (m *Manager) remember(a netip.Addr) {
	a = a.Unmap()
	if !Usable(a) || slices.Contains(m.used, a) {
		return
	}
	m.used = appendBounded(m.used, a, maxUsed)
	m.seen = slices.DeleteFunc(m.seen, func(x netip.Addr) bool { return x == a })
}

// saw adds a peer address that only sent us something to the probe candidates.
func (m *Manager) saw(a netip.Addr) {
	a = a.Unmap()
	if !Usable(a) || slices.Contains(m.used, a) || slices.Contains(m.seen, a) {
		return
	}
	m.seen = appendBounded(m.seen, a, maxSeen)
}

// verify marks the peer address a verified (again) at now.
func (m *Manager) verify(now time.Time, a netip.AddrPort) {
	a = unmapAP(a)
	m.verified = slices.DeleteFunc(m.verified, func(v stamped[netip.AddrPort]) bool { return v.v == a })
	m.verified = appendBounded(m.verified, stamped[netip.AddrPort]{a, now}, maxVerified)
}

// forgetVerified drops the verified peer addresses that ESP has not used for
// VerifiedHold (RFC 4555 5.2: a check proves reachability at its time only); the one
// ESP goes to now stays, and so does IKE_AUTH's address (stamped with the zero time)
// until ESP leaves it.
func (m *Manager) forgetVerified(now time.Time) {
	esp := unmapAP(m.esp.Remote)
	m.verified = slices.DeleteFunc(m.verified, func(v stamped[netip.AddrPort]) bool {
		return v.v != esp && !v.at.IsZero() && now.Sub(v.at) >= VerifiedHold
	})
}

// setESP points a responder's ESP at p; the address it leaves stays verified for
// VerifiedHold from now.
func (m *Manager) setESP(now time.Time, p Path) {
	if old := m.esp.Remote; old != p.Remote && m.Verified(old) {
		m.verify(now, old)
	}
	m.esp = p
}

func (m *Manager) fail(now time.Time, p Path) {
	m.failed = appendBounded(m.failed, stamped[Path]{p, now}, maxFailed)
}

func (m *Manager) failedRecently(now time.Time, p Path) bool {
	for _, f := range m.failed {
		if f.v == p && now.Sub(f.at) < failHold {
			return true
		}
	}
	return false
}

func appendBounded[T any](s []T, v T, max int) []T {
	if len(s) >= max {
		s = slices.Delete(s, 0, len(s)-max+1)
	}
	return append(s, v)
}

func unmapAP(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

func sameBytes(a, b []byte) bool { return bytes.Equal(a, b) }
