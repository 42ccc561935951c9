package ike

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"time"

	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/mobike"
	"github.com/mobikevpn/mobikevpn/wire"
)

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
	sa, path, err := e.exportable(id)
	if err != nil {
		return SAState{}, err
	}
	st := sa.exportState(now, path)
	sa.handedOver = true
	for _, c := range sa.children {
		st.Children = append(st.Children, c.exportState())
	}
	return st, nil
}

// exportable finds the IKE SA id and checks that it can be exported (Export's rules);
// it returns the path manager's snapshot too.
func (e *Engine) exportable(id uint64) (*IKESA, mobike.Snapshot, error) {
	sa := e.store.get(id)
	if sa == nil {
		return nil, mobike.Snapshot{}, fmt.Errorf("ike: export: no IKE SA #%d", id)
	}
	if sa.state != stateEstablished {
		return nil, mobike.Snapshot{}, fmt.Errorf("ike: export: IKE SA #%d is %s, not established", id, sa.state)
	}
	if sa.rekeyedTo != nil {
		return nil, mobike.Snapshot{}, fmt.Errorf("ike: export: IKE SA #%d was rekeyed; its successor is #%d", id, sa.rekeyedTo.id)
	}
	if sa.handedOver {
		return nil, mobike.Snapshot{}, fmt.Errorf("ike: export: IKE SA #%d was exported already", id)
	}
	if why := sa.busy(); why != "" {
		return nil, mobike.Snapshot{}, fmt.Errorf("ike: export: IKE SA #%d: %w: %s", id, ErrExchangeInFlight, why)
	}
	if sa.pm == nil {
		return nil, mobike.Snapshot{}, fmt.Errorf("ike: export: IKE SA #%d has no path manager", id)
	}
	path, err := sa.pm.Snapshot()
	if err != nil {
		return nil, mobike.Snapshot{}, fmt.Errorf("ike: export: IKE SA #%d: %w: the path manager is %s", id, ErrExchangeInFlight, sa.pm.State())
	}
	if len(sa.children) > 0 && !e.cfg.Exportable {
		return nil, mobike.Snapshot{}, fmt.Errorf("ike: export: IKE SA #%d: this engine does not keep Child SA keys (Config.Exportable is off)", id)
	}
	return sa, path, nil
}

// exportState is sa's state (its Child SAs aside) at now.
func (sa *IKESA) exportState(now time.Time, path mobike.Snapshot) SAState {
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
			PRF: sa.suite.PRF, DH: sa.suite.DH, AddKE: addKEState(sa.suite.AddKE)},
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
		PeerRedirect:  sa.peerRedirect,
		Fragmentation: sa.fragment,
		NextRequestID: sa.win.nextReqID,
		PeerRequestID: sa.win.peerReqID,
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
	if sa.win.lastResp != nil {
		st.LastResponse = make([][]byte, len(sa.win.lastResp))
		for i, d := range sa.win.lastResp {
			st.LastResponse[i] = bytes.Clone(d)
		}
		st.LastRequestHash = bytes.Clone(sa.win.lastReqHash[:])
	}
	if sa.pool != nil {
		st.Pool = sa.pool.name
	}
	return st
}

// exportState is c's state, keys included (held when the engine is Exportable).
func (c *ChildSA) exportState() ChildSAState {
	return ChildSAState{
		Name:   c.cfg.Name,
		SPIIn:  c.spiIn,
		SPIOut: c.spiOut,
		Suite: ESPSuiteState{Encr: c.suite.Encr, EncrKeyBits: c.suite.EncrKeyBits, Integ: c.suite.Integ, DH: c.suite.DH, ESN: c.suite.ESN,
			AddKE: addKEState(c.suite.AddKE)},
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
	}
}

// busy says what exchange sa is in the middle of ("": none).
func (sa *IKESA) busy() string {
	switch {
	case sa.win.pending != nil:
		return fmt.Sprintf("our %s request (message ID %d) awaits its response", sa.win.pending.exchange, sa.win.pending.msgID)
	case len(sa.win.queue) > 0:
		return fmt.Sprintf("%d requests of ours wait to be sent", len(sa.win.queue))
	case sa.rekeying != nil || sa.collision != nil:
		return "an IKE SA rekey is under way"
	case sa.addKE != nil || len(sa.followups) > 0:
		return "additional key exchanges (IKE_FOLLOWUP_KE) are under way"
	case sa.win.reassembling():
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
	sa, pl, err := e.importState(now, &st)
	if err != nil {
		return 0, nil, err
	}
	e.log.Info("IKE SA imported", "conn", pl.conn.Name, "sa", sa.id, "peer", sa.remote, "id", sa.remoteID.String(),
		"children", len(sa.children), "proposal", sa.suite.String())
	e.schedule(sa)
	return sa.id, e.take(), nil
}

// importState checks st (Import's refusals) and registers its SA: its virtual IPs and
// Child SAs installed, its pending request (if any) its own outstanding one, its key
// log line written. Nothing is refused once it registers anything.
func (e *Engine) importState(now time.Time, st *SAState) (*IKESA, *importPlan, error) {
	pl, err := e.planImport(st)
	if err != nil {
		return nil, nil, err
	}
	sa := e.importedSA(st, pl)
	e.store.add(sa)
	e.store.indexPeer(sa)
	e.installImported(sa, st, pl)
	if st.Pending != nil {
		e.importPending(now, sa, st.Pending)
	}
	e.keylogIKE(sa)
	return sa, pl, nil
}

// importPlan is what planImport found acceptable in a state: the connection, the
// IKE SA's suite, PRF and keys, its Child SAs and the pools of its virtual IPs.
type importPlan struct {
	conn     *Conn
	suite    ikecrypto.IKESuite
	prf      *ikecrypto.PRF
	keys     ikecrypto.IKEKeys
	skI, skR ikecrypto.SKCipher
	children []*ChildSA
	leases   []*pool
}

// planImport checks st against this engine (Import's refusals) and prepares what
// Import registers, changing nothing.
func (e *Engine) planImport(st *SAState) (*importPlan, error) {
	if err := st.check(); err != nil {
		return nil, fmt.Errorf("ike: import: %w", err)
	}
	conn := e.conns[st.Conn]
	if conn == nil {
		return nil, fmt.Errorf("ike: import: connection %q is not configured here", st.Conn)
	}
	if st.LocalAuth != conn.LocalAuth || st.RemoteAuth != conn.RemoteAuth {
		return nil, fmt.Errorf("ike: import: connection %q authenticates %s/%s here, the state says %s/%s",
			st.Conn, conn.LocalAuth, conn.RemoteAuth, st.LocalAuth, st.RemoteAuth)
	}
	ourSPI := st.SPIr
	if st.Initiator {
		ourSPI = st.SPIi
	}
	if other := e.store.bySPI(ourSPI); other != nil {
		return nil, fmt.Errorf("ike: import: SPI collision: IKE SPI %016x is in use here (IKE SA #%d)", ourSPI, other.id)
	}
	suite := ikecrypto.IKESuite{Encr: st.Suite.Encr, EncrKeyBits: st.Suite.EncrKeyBits, Integ: st.Suite.Integ, PRF: st.Suite.PRF, DH: st.Suite.DH}
	addKE, err := addKEFromState(st.Suite.AddKE)
	if err != nil {
		return nil, fmt.Errorf("ike: import: IKE suite: %w", err)
	}
	suite.AddKE = addKE
	prf, keys, skI, skR, err := importIKEKeys(suite, &st.Keys)
	if err != nil {
		return nil, fmt.Errorf("ike: import: %w", err)
	}
	children := make([]*ChildSA, 0, len(st.Children))
	seen := make(map[uint32]bool)
	for i := range st.Children {
		cs := &st.Children[i]
		c, err := importChild(conn, cs)
		if err != nil {
			return nil, fmt.Errorf("ike: import: %w", err)
		}
		if e.store.inbound(cs.SPIIn) != nil || seen[cs.SPIIn] {
			return nil, fmt.Errorf("ike: import: SPI collision: inbound ESP SPI %08x of Child SA %q is in use here", cs.SPIIn, cs.Name)
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
				return nil, fmt.Errorf("ike: import: virtual IP %s is in no pool of connection %q here", a, st.Conn)
			case in.inUse[a]:
				return nil, fmt.Errorf("ike: import: virtual IP %s is leased to someone else here", a)
			}
			leases = append(leases, in)
		}
	}
	return &importPlan{conn: conn, suite: suite, prf: prf, keys: keys, skI: skI, skR: skR, children: children, leases: leases}, nil
}

// importedSA builds the IKE SA of st with the parts pl prepared, and its path manager.
func (e *Engine) importedSA(st *SAState, pl *importPlan) *IKESA {
	conn, suite, prf, keys, skI, skR := pl.conn, pl.suite, pl.prf, pl.keys, pl.skI, pl.skR
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
		peerRedirect:  st.PeerRedirect,
		fragment:      st.Fragmentation,
		authLocal:     st.AuthLocal,
		authRemote:    st.AuthRemote,
		created:       st.Created,
		estab:         st.Established,
		lastRecv:      st.LastRecv,
		win:           window{nextReqID: st.NextRequestID, peerReqID: st.PeerRequestID},
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
		sa.win.lastResp = make([][]byte, len(st.LastResponse))
		for i, d := range st.LastResponse {
			sa.win.lastResp[i] = bytes.Clone(d)
		}
		copy(sa.win.lastReqHash[:], st.LastRequestHash)
	}
	role := mobike.Responder
	if sa.origInitiator {
		role = mobike.Initiator
	}
	sa.pm = mobike.Restore(mobike.Config{
		Role:        role,
		Policy:      e.mobilityPolicy(conn),
		Mobike:      sa.mobike,
		PeerRMobike: sa.peerRMobike,
		Rand:        e.rand,
		Tries:       e.cfg.Retransmit.Tries,
	}, st.Path)
	return sa
}

// installImported leases the imported SA's virtual IPs and installs its Child SAs.
func (e *Engine) installImported(sa *IKESA, st *SAState, pl *importPlan) {
	leases, children := pl.leases, pl.children
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
		e.emit(VirtualIPs{IKESA: sa.id, Conn: connName(sa), Local: sa.origInitiator, Addrs: sa.vips, DNS: sa.vipDNS})
	}
	p := e.espPath(sa)
	for i, c := range children {
		cs := &st.Children[i]
		c.id = e.store.newChildID()
		c.policy = c.id
		c.state = childInstalled
		sa.children = append(sa.children, c)
		e.store.claimInbound(c.spiIn, c)
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
			Keepalive: sa.natLocal, Limits: c.limits, Seq: cs.OutSeq, Lease: cs.OutLease,
		})
		c.outActive = true
	}
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
	var err error
	if suite.AddKE, err = addKEFromState(cs.Suite.AddKE); err != nil {
		return nil, fmt.Errorf("the ESP suite of Child SA %q: %w", cs.Name, err)
	}
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
// RemoveOutbound) and its virtual IPs go back to the pool, or, of a leased pool, are
// no longer granted here (the other engine has them); no Delete is sent and no event
// reported.
func (e *Engine) Forget(now time.Time, id uint64) ([]Action, error) {
	sa := e.store.get(id)
	if sa == nil {
		return nil, fmt.Errorf("ike: forget: no IKE SA #%d", id)
	}
	sa.forgotten = true
	e.removeSA(now, sa, "")
	return e.take(), nil
}
