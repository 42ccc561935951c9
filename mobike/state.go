package mobike

import (
	"errors"
	"net/netip"
	"slices"
	"time"
)

// Snapshot is the durable state of a Manager: what another engine needs to carry on
// with the IKE SA's paths (an SA handed to another node of a gateway cluster). It holds
// no check in flight: Manager.Snapshot refuses while the manager probes, updates or
// verifies (State is "probing", "updating" or "verifying"), since such a check belongs
// to a request of the exporting engine. What the role, the connection's policy, the
// negotiated flags and the retransmission count say comes from the Config given to
// Restore, not from here. Left out on purpose: the paths that failed in the last
// minute (failHold; at worst the new owner probes one of them again sooner) and the
// probing state (transient, refused above).
type Snapshot struct {
	IKE Path `json:"ike"` // where the SA's IKE requests go
	ESP Path `json:"esp"` // where its Child SAs send
	// PeerAddrs are the peer's additional addresses as last announced.
	PeerAddrs []netip.Addr `json:"peer_addrs"`
	// Announced is what we announced last; AnnouncedOnce says whether we did at all.
	Announced     []netip.Addr `json:"announced"`
	AnnouncedOnce bool         `json:"announced_once"`
	// Used and Seen (initiator): peer addresses the SA was confirmed on, and those that
	// only sent something (probe candidates only).
	Used []netip.Addr `json:"used"`
	Seen []netip.Addr `json:"seen"`
	// LastNATD (initiator) is the peer's last NAT_DETECTION_DESTINATION_IP.
	LastNATD []byte `json:"last_natd"`
	// Verified (responder): the peer addresses that passed a return routability check,
	// oldest first, with when they last passed it or ESP last used them (the zero time:
	// IKE_AUTH's address, kept until ESP leaves it).
	Verified []StampedAddrPort `json:"verified"`
	// SwitchTo (responder) is the address we asked the initiator to move to, since
	// SwitchSince; zero when none is pending.
	SwitchTo    netip.Addr `json:"switch_to"`
	SwitchSince time.Time  `json:"switch_since"`
	// Switches are the times of the switches of the last minute (switch_limit); Left
	// the addresses left by a switch and when (switch_hold).
	Switches []time.Time   `json:"switches"`
	Left     []StampedAddr `json:"left"`
}

// Rehome makes s the state of the gateway at home that an SA is handed to (a cluster
// node) while its peer is asked to switch there: its IKE and ESP paths start from home
// (the peer's end unchanged), and the address it leaves counts as left by a switch at
// now (switch_hold).
func (s *Snapshot) Rehome(home netip.AddrPort, now time.Time) {
	left := s.IKE.Local.Addr()
	s.IKE.Local, s.ESP.Local = home, home
	if left != home.Addr() {
		s.Left = append(s.Left, StampedAddr{Addr: left.Unmap(), At: now})
		if len(s.Left) > maxLeft {
			s.Left = s.Left[len(s.Left)-maxLeft:]
		}
	}
}

// StampedAddrPort is an address and port with a time.
type StampedAddrPort struct {
	Addr netip.AddrPort `json:"addr"`
	At   time.Time      `json:"at"`
}

// StampedAddr is an address with a time.
type StampedAddr struct {
	Addr netip.Addr `json:"addr"`
	At   time.Time  `json:"at"`
}

// ErrCheckInFlight is returned by Snapshot while a check of the manager is unanswered.
var ErrCheckInFlight = errors.New("mobike: a path check is in flight")

// Snapshot returns the manager's durable state; it refuses (ErrCheckInFlight) while a
// check is unanswered or the initiator probes.
func (m *Manager) Snapshot() (Snapshot, error) {
	if m.probing || m.update != nil || m.rr != nil {
		return Snapshot{}, ErrCheckInFlight
	}
	return m.Durable(), nil
}

// Durable returns the manager's durable state as it is, a check in flight or not: for
// a copy kept in case this node dies, from which another continues without the check
// (the peer's answer to it is only the answer to a request there; a peer that moved
// tells the new owner so again).
func (m *Manager) Durable() Snapshot {
	s := Snapshot{
		IKE:           m.ike,
		ESP:           m.esp,
		PeerAddrs:     slices.Clone(m.peerAddrs),
		Announced:     slices.Clone(m.announced),
		AnnouncedOnce: m.announcedOnce,
		Used:          slices.Clone(m.used),
		Seen:          slices.Clone(m.seen),
		LastNATD:      slices.Clone(m.lastNATD),
		SwitchTo:      m.switchTo,
		SwitchSince:   m.switchSince,
		Switches:      slices.Clone(m.switches),
	}
	for _, v := range m.verified {
		s.Verified = append(s.Verified, StampedAddrPort{Addr: v.v, At: v.at})
	}
	for _, l := range m.left {
		s.Left = append(s.Left, StampedAddr{Addr: l.v, At: l.at})
	}
	return s
}

// Restore returns the manager of an IKE SA taken over with state s. cfg gives the
// role, policy, negotiated flags, randomness and retransmission count; its Path,
// PeerAddrs, Announced and NATD are ignored (s has them). Lists longer than the
// manager keeps are cut to their newest entries.
func Restore(cfg Config, s Snapshot) *Manager {
	m := &Manager{
		role:          cfg.Role,
		pol:           cfg.Policy,
		mobike:        cfg.Mobike,
		peerR:         cfg.PeerRMobike,
		rand:          cfg.Rand,
		tries:         cfg.Tries,
		ike:           s.IKE,
		esp:           s.ESP,
		peerAddrs:     slices.Clone(s.PeerAddrs),
		announced:     slices.Clone(s.Announced),
		announcedOnce: s.AnnouncedOnce,
		used:          newest(s.Used, maxUsed),
		seen:          newest(s.Seen, maxSeen),
		lastNATD:      slices.Clone(s.LastNATD),
		switchTo:      s.SwitchTo,
		switchSince:   s.SwitchSince,
		switches:      newest(s.Switches, maxSwitches),
	}
	for _, v := range newest(s.Verified, maxVerified) {
		m.verified = append(m.verified, stamped[netip.AddrPort]{unmapAP(v.Addr), v.At})
	}
	for _, l := range newest(s.Left, maxLeft) {
		m.left = append(m.left, stamped[netip.Addr]{l.Addr.Unmap(), l.At})
	}
	return m
}

// maxSwitches bounds the switch times Restore takes (switch_limit counts those of the
// last minute).
const maxSwitches = 64

func newest[T any](s []T, max int) []T {
	if len(s) > max {
		s = s[len(s)-max:]
	}
	return slices.Clone(s)
}
