package ike

import (
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// SAStatus describes one IKE SA for `status`.
type SAStatus struct {
	ID                  uint64
	Name                string
	Role                string // "initiator" or "responder" (MOBIKE roles: the original ones)
	State               string
	Local, Remote       netip.AddrPort
	LocalID, RemoteID   string
	SPIi, SPIr          string
	Proposal            string
	NATLocal, NATRemote bool
	Encap               bool // we force UDP encapsulation (fake NAT-D)
	Mobike, RMobike     bool
	PeerAdditional      []netip.Addr
	MobikeState         string // the path manager's state ("" without MOBIKE)
	VirtualIPs          []netip.Addr
	DNS                 []netip.Addr // initiator: the DNS servers the peer assigned
	EstablishedS        int64
	Children            []ChildStatus
}

// ChildStatus describes one Child SA.
type ChildStatus struct {
	ID                uint64
	Policy            uint64 // the flow across rekeys (the datapath's outbound key)
	OutActive         bool   // it carries the policy's outbound traffic
	Name              string
	State             string
	SPIIn, SPIOut     uint32
	Proposal          string
	LocalTS, RemoteTS []string
}

func (e *Engine) sorted() []*IKESA {
	out := make([]*IKESA, 0, e.store.count())
	for sa := range e.store.all() {
		out = append(out, sa)
	}
	slices.SortFunc(out, func(a, b *IKESA) int {
		switch {
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
	return out
}

// Status returns every IKE SA but half-open ones, by id.
func (e *Engine) Status(now time.Time) []SAStatus {
	var out []SAStatus
	for _, sa := range e.sorted() {
		if sa.state == stateInitDone {
			continue
		}
		st := SAStatus{
			ID:         sa.id,
			State:      sa.state.String(),
			Local:      sa.local,
			Remote:     sa.remote,
			LocalID:    sa.localID.String(),
			SPIi:       fmt.Sprintf("%016x", sa.spiI),
			SPIr:       fmt.Sprintf("%016x", sa.spiR),
			NATLocal:   sa.natLocal,
			NATRemote:  sa.natRemote,
			Encap:      sa.conn != nil && sa.conn.Encap,
			Mobike:     sa.mobike,
			VirtualIPs: slices.Clone(sa.vips),
		}
		if sa.pm != nil {
			st.PeerAdditional = sa.pm.PeerAddrs()
			st.MobikeState = sa.pm.State()
		}
		if sa.conn != nil {
			st.Name = sa.conn.Name
		}
		if sa.rekeyedTo != nil {
			st.State = "rekeyed"
		}
		if sa.origInitiator {
			st.DNS = slices.Clone(sa.vipDNS)
			st.Role = "initiator"
			st.RMobike = sa.mobike && sa.conn.RMobike
		} else {
			st.Role = "responder"
			st.RMobike = sa.mobike && sa.peerRMobike
		}
		if sa.remoteID.IDType != 0 {
			st.RemoteID = sa.remoteID.String()
		}
		if sa.suite.Encr != 0 {
			st.Proposal = sa.suite.String()
		}
		if !sa.estab.IsZero() {
			st.EstablishedS = int64(now.Sub(sa.estab) / time.Second)
		}
		for _, c := range sa.children {
			st.Children = append(st.Children, ChildStatus{
				ID:        c.id,
				Policy:    c.policy,
				OutActive: c.outActive,
				Name:      c.cfg.Name,
				State:     c.state.String(),
				SPIIn:     c.spiIn,
				SPIOut:    c.spiOut,
				Proposal:  c.suite.String(),
				LocalTS:   tsStrings(c.localTS),
				RemoteTS:  tsStrings(c.remoteTS),
			})
		}
		out = append(out, st)
	}
	return out
}

// Established reports whether IKE SA id exists and is established.
func (e *Engine) Established(id uint64) bool {
	sa := e.store.get(id)
	return sa != nil && sa.state == stateEstablished
}

// Counts are the numbers of SAs, for a status without the list.
type Counts struct {
	IKESAs      int // IKE SAs but half-open ones (as in Status)
	Established int // of those, established ones
	ChildSAs    int // Child SAs of all IKE SAs

	// Since the engine started:
	IKESAsCreated   uint64 // IKE SAs created (half-open ones and rekeys included)
	ChildSAsCreated uint64 // Child SAs installed (rekeys included)
	LivenessChecks  uint64 // liveness checks (DPD) sent
	ChildRekeys     uint64 // Child SAs rekeyed (either end starting it)
	CookiesSent     uint64 // IKE_SA_INITs answered with a COOKIE demand
	SwitchesSent    uint64 // SWITCH_TO_IP_ADDRESS requests queued
	// ByState counts the IKE SAs (half-open ones apart) by connection and state.
	ByState map[[2]string]int
}

// Count counts the SAs; it costs a pass over them, not a Status.
func (e *Engine) Count() Counts {
	c := Counts{IKESAsCreated: e.store.nextSAID, ChildSAsCreated: e.store.nextChildID, LivenessChecks: e.livenessChecks,
		ChildRekeys: e.stats.childRekeys, CookiesSent: e.stats.cookiesSent, SwitchesSent: e.stats.switchesSent,
		ByState: make(map[[2]string]int)}
	for sa := range e.store.all() {
		if sa.state == stateInitDone {
			continue
		}
		c.ByState[[2]string{connName(sa), sa.state.String()}]++
		c.IKESAs++
		if sa.state == stateEstablished {
			c.Established++
		}
		c.ChildSAs += len(sa.children)
	}
	return c
}

// HalfOpen is the number of half-open (responder) IKE SAs.
func (e *Engine) HalfOpen() int { return e.gate.nHalf }

// HasConn reports whether any IKE SA of connection name exists.
func (e *Engine) HasConn(name string) bool {
	for sa := range e.store.all() {
		if sa.conn != nil && sa.conn.Name == name {
			return true
		}
	}
	return false
}

// ConnSA returns the newest IKE SA of connection name that is established or being
// established, if any, and whether it is established.
func (e *Engine) ConnSA(name string) (id uint64, established, ok bool) {
	for sa := range e.store.all() {
		if sa.conn == nil || sa.conn.Name != name || !sa.initiator {
			continue
		}
		switch sa.state {
		case stateInitSent, stateAuthSent, stateEstablished:
			if sa.id > id {
				id, established, ok = sa.id, sa.state == stateEstablished, true
			}
		}
	}
	return id, established, ok
}
