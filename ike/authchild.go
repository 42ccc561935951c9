package ike

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"time"

	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/wire"
)

// The Child SA that IKE_AUTH creates (RFC 7296 1.2), both roles: its traffic
// selectors and the configuration payload that comes with it (virtual IPs and DNS
// servers from the pools, RFC 7296 2.19). The Child SA itself, once negotiated, is
// childsa.go's: installing, activating, retiring.

// cpRequest asks for virtual IPs (and DNS servers) of the families in vips.
func cpRequest(vips []netip.Addr) *wire.CP {
	cp := &wire.CP{CfgType: wire.CFG_REQUEST}
	for _, v := range vips {
		if v.Is4() {
			var val []byte
			if !v.IsUnspecified() {
				val = v.AsSlice()
			}
			cp.Attrs = append(cp.Attrs, wire.ConfigAttr{Type: wire.INTERNAL_IP4_ADDRESS, Value: val},
				wire.ConfigAttr{Type: wire.INTERNAL_IP4_DNS})
		} else {
			var val []byte
			if !v.IsUnspecified() {
				val = append(v.AsSlice(), 128)
			}
			cp.Attrs = append(cp.Attrs, wire.ConfigAttr{Type: wire.INTERNAL_IP6_ADDRESS, Value: val},
				wire.ConfigAttr{Type: wire.INTERNAL_IP6_DNS})
		}
	}
	return cp
}

// vipWait reports whether an IKE_AUTH request that ps carries should wait for a virtual
// IP: it asks for addresses, and none of the families asked for can be served now,
// though one of them may soon: its leased pools have no spare address, and the caller
// has not said they are dry. The request is then left unanswered (the caller gets more
// addresses, EventVIPWanted) and its retransmission finds one, rather than failing a
// burst of peers beyond the spare addresses a cluster node keeps. Each family that
// waits is counted (WantedVIPs).
func (e *Engine) vipWait(conn *Conn, ps []wire.Payload) bool {
	cp := wire.Find[*wire.CP](ps)
	if cp == nil || cp.CfgType != wire.CFG_REQUEST || len(conn.Pools) == 0 {
		return false
	}
	var waiting []*pool
	var fams []bool
	for _, at := range cp.Attrs {
		var is4 bool
		switch at.Type {
		case wire.INTERNAL_IP4_ADDRESS:
			is4 = true
		case wire.INTERNAL_IP6_ADDRESS:
		default:
			continue
		}
		for _, name := range conn.Pools {
			pl := e.pools[name]
			if !pl.hasFamily(is4) {
				continue
			}
			if !pl.leased || pl.canAllocate(is4) {
				return false // served now (or never by waiting)
			}
			if !pl.dry[famIndex(is4)] {
				waiting, fams = append(waiting, pl), append(fams, is4)
			}
		}
	}
	for i, pl := range waiting {
		pl.wanted[famIndex(fams[i])]++
	}
	return len(waiting) > 0
}

// assignVIPs serves a CFG_REQUEST from the connection's pools: every address family
// asked for that a pool can serve gets an address; families no pool has, or whose pools
// are exhausted, are left out (RFC 7296 3.15.4: a responder ignores what it does not
// support). It returns the CP reply, or ok=false when addresses were asked for and
// none at all could be given.
func (e *Engine) assignVIPs(sa *IKESA, req *wire.CP) (*wire.CP, bool) {
	reply := &wire.CP{CfgType: wire.CFG_REPLY}
	idKey := sa.remoteID.String()
	asked := false
	var used []*pool
	for _, at := range req.Attrs {
		var is4 bool
		var want netip.Addr
		switch at.Type {
		case wire.INTERNAL_IP4_ADDRESS:
			is4 = true
			if len(at.Value) == 4 {
				want = netip.AddrFrom4([4]byte(at.Value))
			}
		case wire.INTERNAL_IP6_ADDRESS:
			if len(at.Value) == 17 {
				want = netip.AddrFrom16([16]byte(at.Value[:16]))
			}
		default:
			continue
		}
		asked = true
		if slices.ContainsFunc(sa.vips, func(a netip.Addr) bool { return a.Is4() == is4 }) {
			continue // one address per family
		}
		var got netip.Addr
		for _, name := range sa.conn.Pools {
			pl := e.pools[name]
			if !pl.hasFamily(is4) {
				continue
			}
			if a, ok := pl.allocate(idKey, is4, want); ok {
				got = a
				sa.pool = pl
				if !slices.Contains(used, pl) {
					used = append(used, pl)
				}
				break
			}
		}
		if !got.IsValid() {
			e.log.Info("no virtual IP of this family for the peer; assigning what can be", "sa", sa.id, "ipv4", is4)
			continue
		}
		sa.vips = append(sa.vips, got)
		if is4 {
			reply.Attrs = append(reply.Attrs, wire.ConfigAttr{Type: wire.INTERNAL_IP4_ADDRESS, Value: got.AsSlice()})
		} else {
			reply.Attrs = append(reply.Attrs, wire.ConfigAttr{Type: wire.INTERNAL_IP6_ADDRESS, Value: append(got.AsSlice(), 128)})
		}
	}
	if asked && len(sa.vips) == 0 {
		return nil, false
	}
	for _, pl := range used {
		for _, d := range pl.dns {
			if slices.Contains(sa.vipDNS, d) {
				continue
			}
			t := wire.INTERNAL_IP4_DNS
			if d.Is6() {
				t = wire.INTERNAL_IP6_DNS
			}
			reply.Attrs = append(reply.Attrs, wire.ConfigAttr{Type: t, Value: d.AsSlice()})
			sa.vipDNS = append(sa.vipDNS, d)
		}
	}
	return reply, true
}

// releaseVIPs gives the peer's virtual IPs of sa back to the pools they came from; a
// leased pool does not keep those of an SA that lives on elsewhere (Forget).
func (e *Engine) releaseVIPs(sa *IKESA) {
	for _, a := range sa.vips {
		for _, pl := range e.pools {
			switch {
			case !pl.contains(a):
			case sa.forgotten:
				pl.drop(a)
			default:
				pl.release(a)
			}
		}
	}
	sa.vips = nil
}

// parseCPReply reads the virtual IPs and DNS servers the responder assigned.
func parseCPReply(cp *wire.CP) (vips, dns []netip.Addr) {
	if cp == nil || cp.CfgType != wire.CFG_REPLY {
		return nil, nil
	}
	for _, at := range cp.Attrs {
		switch at.Type {
		case wire.INTERNAL_IP4_ADDRESS:
			if len(at.Value) == 4 {
				vips = append(vips, netip.AddrFrom4([4]byte(at.Value)))
			}
		case wire.INTERNAL_IP6_ADDRESS:
			if len(at.Value) == 17 {
				vips = append(vips, netip.AddrFrom16([16]byte(at.Value[:16])))
			}
		case wire.INTERNAL_IP4_DNS:
			if len(at.Value) == 4 {
				dns = append(dns, netip.AddrFrom4([4]byte(at.Value)))
			}
		case wire.INTERNAL_IP6_DNS:
			if len(at.Value) == 16 {
				dns = append(dns, netip.AddrFrom16([16]byte(at.Value)))
			}
		}
	}
	return vips, dns
}

// respondChild negotiates the Child SA a responder is asked for in IKE_AUTH. It returns
// the payloads for the response and, when the Child SA was refused, the reason.
func (e *Engine) respondChild(now time.Time, sa *IKESA, ps []wire.Payload) ([]wire.Payload, string) {
	var out []wire.Payload
	saP := wire.Find[*wire.SA](ps)
	tsi, tsr := wire.FindTS(ps, true), wire.FindTS(ps, false)
	if saP == nil || tsi == nil || tsr == nil {
		return nil, "no Child SA requested"
	}
	if cp := wire.Find[*wire.CP](ps); cp != nil && cp.CfgType == wire.CFG_REQUEST && len(sa.conn.Pools) > 0 {
		reply, ok := e.assignVIPs(sa, cp)
		if !ok {
			e.log.Info("no virtual IP left for peer", "sa", sa.id, "id", sa.remoteID.String())
			return []wire.Payload{&wire.Notify{NotifyType: wire.INTERNAL_ADDRESS_FAILURE}}, wire.INTERNAL_ADDRESS_FAILURE.String()
		}
		out = append(out, reply)
	}
	remoteDyn := sa.vips
	if len(remoteDyn) == 0 {
		remoteDyn = []netip.Addr{sa.remote.Addr()}
	}
	fail := wire.NO_PROPOSAL_CHOSEN
	for _, cc := range sa.conn.Children {
		chosen, ok := ikecrypto.SelectProposal(stripDH(cc.ESPProposals), saP.Proposals)
		if !ok || chosen.Protocol != wire.ProtoESP || len(chosen.SPI) != 4 {
			continue
		}
		ntsi := narrow(tsi.Selectors, resolveTS(cc.RemoteTS, remoteDyn))
		ntsr := narrow(tsr.Selectors, resolveTS(cc.LocalTS, []netip.Addr{sa.local.Addr()}))
		if len(ntsi) == 0 || len(ntsr) == 0 {
			fail = wire.TS_UNACCEPTABLE
			continue
		}
		suite, err := ikecrypto.ESPSuiteFromProposal(chosen)
		if err != nil {
			continue
		}
		spiIn, err := e.store.newChildSPI(e.rand)
		if err != nil {
			return nil, err.Error()
		}
		c := negotiatedChild(cc, spiIn, chosen, suite, ntsr, ntsi, sa.ni, sa.nr)
		keys, err := ikecrypto.ChildKeymat(sa.prf, sa.keys.SKd, nil, sa.ni, sa.nr, suite)
		if err != nil {
			return nil, err.Error()
		}
		if len(sa.vips) > 0 {
			e.emit(VirtualIPs{IKESA: sa.id, Conn: connName(sa), Local: false, Addrs: sa.vips, DNS: sa.vipDNS})
		}
		e.installChild(now, sa, c, keys, false, false)
		var spiB [4]byte
		binary.BigEndian.PutUint32(spiB[:], spiIn)
		chosen.SPI = spiB[:]
		out = append(out,
			&wire.SA{Proposals: []wire.Proposal{chosen}},
			&wire.TS{Initiator: true, Selectors: ntsi},
			&wire.TS{Initiator: false, Selectors: ntsr},
		)
		return out, ""
	}
	// Nothing acceptable: give back the virtual IPs.
	e.releaseVIPs(sa)
	e.log.Info("Child SA refused", "sa", sa.id, "reason", fail.String(), "offered", ikecrypto.ProposalsString(saP.Proposals),
		"tsi", tsStrings(tsi.Selectors), "tsr", tsStrings(tsr.Selectors))
	return []wire.Payload{&wire.Notify{NotifyType: fail}}, fail.String()
}

// initiatorChild completes the first Child SA from the IKE_AUTH response; it returns
// the reason when it cannot.
func (e *Engine) initiatorChild(now time.Time, sa *IKESA, ps []wire.Payload) string {
	for _, p := range ps {
		if n, ok := p.(*wire.Notify); ok && n.NotifyType.IsError() {
			return n.NotifyType.String()
		}
	}
	vips, dns := parseCPReply(wire.Find[*wire.CP](ps))
	if len(sa.conn.VIPs) > 0 && len(vips) == 0 {
		return "FAILED_CP_REQUIRED: the peer assigned no virtual IP"
	}
	saP := wire.Find[*wire.SA](ps)
	tsi, tsr := wire.FindTS(ps, true), wire.FindTS(ps, false)
	if saP == nil || tsi == nil || tsr == nil || len(saP.Proposals) != 1 {
		return "the peer created no Child SA"
	}
	cc := sa.firstChild
	var spiB [4]byte
	binary.BigEndian.PutUint32(spiB[:], sa.firstChildIn)
	offered := numberProposals(stripDH(cc.ESPProposals), spiB[:])
	got := saP.Proposals[0]
	if err := ikecrypto.CheckResponseProposal(offered, got); err != nil || len(got.SPI) != 4 {
		return "NO_PROPOSAL_CHOSEN: the peer chose an ESP proposal we did not offer"
	}
	suite, err := ikecrypto.ESPSuiteFromProposal(got)
	if err != nil {
		return "NO_PROPOSAL_CHOSEN: " + err.Error()
	}
	offTSi := resolveTS(cc.LocalTS, e.initiatorDynamicLocal(sa))
	offTSr := resolveTS(cc.RemoteTS, []netip.Addr{sa.remote.Addr()})
	if !tsSubset(tsi.Selectors, offTSi) || !tsSubset(tsr.Selectors, offTSr) {
		return "TS_UNACCEPTABLE: the peer's traffic selectors are not within ours"
	}
	keys, err := ikecrypto.ChildKeymat(sa.prf, sa.keys.SKd, nil, sa.ni, sa.nr, suite)
	if err != nil {
		return err.Error()
	}
	c := negotiatedChild(cc, sa.firstChildIn, got, suite, tsi.Selectors, tsr.Selectors, nil, nil)
	sa.firstChildIn = 0
	if len(vips) > 0 {
		sa.vips, sa.vipDNS = vips, dns
		e.emit(VirtualIPs{IKESA: sa.id, Conn: connName(sa), Local: true, Addrs: vips, DNS: dns})
	}
	c.ni, c.nr = sa.ni, sa.nr
	e.installChild(now, sa, c, keys, true, false)
	return ""
}
