// Package mobike is the address logic of MOBIKE (RFC 4555) and of the responder-initiated
// switch (draft-smyslov-ipsecme-ikev2-r-mobike) that the IKE engine applies: which
// addresses to announce, which address pairs to probe, whether a switch target is
// acceptable, and COOKIE2 values.
package mobike

import (
	"crypto/subtle"
	"errors"
	"io"
	"net/netip"
	"slices"
)

// Usable reports whether a can carry IKE and ESP to a peer elsewhere: not unspecified,
// loopback, multicast or link-local (which would need a zone).
func Usable(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsLoopback() && !a.IsMulticast() &&
		!a.IsLinkLocalUnicast() && !a.IsInterfaceLocalMulticast()
}

// Mode says which addresses a connection announces in ADDITIONAL_IP*_ADDRESS.
type Mode int

// Announcement modes (config additional_addrs).
const (
	Auto Mode = iota // the connection's local addresses (else the host's) but the current
	None             // nothing: NO_ADDITIONAL_ADDRESSES
	List             // exactly the configured list, but the current
)

// Announce is a connection's announcement policy.
type Announce struct {
	Mode Mode
	// List holds the addresses for List; for Auto, the connection's local_addrs
	// (empty: the host's usable addresses).
	List []netip.Addr
}

// Addresses returns what to announce when current is in use and host are the host's
// addresses now: never current, only addresses the host has and that are usable.
func (a Announce) Addresses(current netip.Addr, host []netip.Addr) []netip.Addr {
	var from []netip.Addr
	switch a.Mode {
	case None:
		return nil
	case List:
		from = a.List
	case Auto:
		from = a.List
		if len(from) == 0 {
			from = host
		}
	}
	var out []netip.Addr
	for _, x := range from {
		x = x.Unmap()
		if x == current.Unmap() || !Usable(x) || slices.Contains(out, x) {
			continue
		}
		if host != nil && !slices.Contains(host, x) {
			continue // not on this host now
		}
		out = append(out, x)
	}
	return out
}

// Candidates are the host addresses an Auto announcement without a list picks from:
// those that can reach one of the peer's addresses (peers), when the host can tell
// (Host.Reachable), so that a LAN or container bridge address that cannot reach the
// peer is never announced; otherwise the host's addresses.
func (a Announce) Candidates(host Host, peers []netip.Addr) []netip.Addr {
	if a.Mode != Auto || len(a.List) > 0 || host.Reachable == nil {
		return host.Addrs
	}
	out := []netip.Addr{}
	for _, p := range peers {
		if !Usable(p) {
			continue
		}
		for _, x := range host.Reachable(p.Unmap()) {
			if x = x.Unmap(); !slices.Contains(out, x) && (host.Addrs == nil || slices.Contains(host.Addrs, x)) {
				out = append(out, x)
			}
		}
	}
	return out
}

// For returns what to announce to a peer at peers (its current address first) while
// current is in use: the addresses of Addresses and Candidates, and the host's cluster
// addresses after them (never current).
func (a Announce) For(current netip.Addr, host Host, peers []netip.Addr) []netip.Addr {
	out := a.Addresses(current, a.Candidates(host, peers))
	for _, x := range host.Cluster {
		if x = x.Unmap(); x != current.Unmap() && Usable(x) && !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// SwitchPolicy is the initiator's policy for SWITCH_TO_IP_ADDRESS targets
// (config switch_accept).
type SwitchPolicy struct {
	Additional bool           // addresses the peer announced in ADDITIONAL_IP*_ADDRESS
	Any        bool           // everything
	Prefixes   []netip.Prefix // targets within these prefixes
}

// Decide says whether the initiator moves its SA to target, which the responder asked
// for: an announced address is acceptable (draft 4.2) when the policy accepts announced
// addresses ("additional", the default), anything else goes to the rest of the policy;
// an empty policy (switch_accept: []) refuses every target. hasLocal reports whether the
// host has a usable local address of a family.
func (p SwitchPolicy) Decide(target netip.Addr, announced []netip.Addr, hasLocal func(is4 bool) bool) (bool, string) {
	target = target.Unmap()
	if !p.Additional && !p.Any && len(p.Prefixes) == 0 {
		return false, "switch_accept is empty: every switch is refused"
	}
	if !Usable(target) {
		return false, "the target " + target.String() + " is not a usable unicast address"
	}
	if !hasLocal(target.Is4()) {
		return false, "no usable local address of the target's address family"
	}
	if p.Additional && slices.Contains(announced, target) {
		return true, "announced by the peer"
	}
	if p.Additional && len(p.Prefixes) == 0 && !p.Any {
		return false, "not announced by the peer, and switch_accept allows only announced addresses"
	}
	if p.Any {
		return true, "switch_accept allows any address"
	}
	for _, pf := range p.Prefixes {
		if pf.Contains(target) {
			return true, "within switch_accept " + pf.String()
		}
	}
	return false, "neither announced by the peer nor allowed by switch_accept"
}

// Pair is a candidate path.
type Pair struct{ Local, Remote netip.Addr }

// Pairs lists the candidate paths for probing (RFC 4555 3.6): every usable local
// address with every peer address of the same family, the current pair first, at most
// max of them.
func Pairs(current Pair, locals, remotes []netip.Addr, max int) []Pair {
	out := []Pair{current}
	for _, r := range remotes {
		for _, l := range locals {
			p := Pair{l.Unmap(), r.Unmap()}
			if len(out) >= max {
				return out
			}
			if p.Local.Is4() != p.Remote.Is4() || !Usable(p.Local) || !Usable(p.Remote) || slices.Contains(out, p) {
				continue
			}
			out = append(out, p)
		}
	}
	return out
}

// Cookie2Len is the length of the COOKIE2 values we send (RFC 4555: 8 to 64 octets).
const Cookie2Len = 16

// NewCookie2 returns a fresh COOKIE2 value.
func NewCookie2(rand io.Reader) ([]byte, error) {
	c := make([]byte, Cookie2Len)
	if _, err := io.ReadFull(rand, c); err != nil {
		return nil, err
	}
	return c, nil
}

// ErrCookie2 is returned when a response does not echo the COOKIE2 of its request.
var ErrCookie2 = errors.New("COOKIE2 in the response does not match the request")

// CheckCookie2 compares the echoed value with the one sent, in constant time.
func CheckCookie2(sent, got []byte) error {
	if len(got) != len(sent) || subtle.ConstantTimeCompare(sent, got) != 1 {
		return ErrCookie2
	}
	return nil
}

// DefaultSwitchLimit is how many switches per minute one IKE SA may be asked for (a
// responder) or follow (an initiator) unless configured otherwise.
const DefaultSwitchLimit = 5
