package ike

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/wire"
)

// Found in review (B), fixed since: a hard volume limit reported while the soft limit's rekey is
// still in flight is ignored (ChildVolume returns early because the Child SA is
// childRekeying, without setting c.expired). If the peer then refuses that rekey, the
// Child SA past its hard limit is never deleted and replaced: rekeyChildDone's retry
// path only reschedules a rekey in retryDelay, again and again, while the datapath has
// stopped sending on it (seqMax lowered at the hard limit).
func TestHardLimitDuringSoftRekeyReplacesOnRefusal(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		g.Connections[0].DPDDelay, c.Connections[0].DPDDelay = 0, 0
	})
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	_, c := checkChildPair(t, gw, cl)
	// As in TestChildVolumeHardLimitRekeyRefused: the gateway refuses rekeys of this
	// Child SA (NO_PROPOSAL_CHOSEN), not new Child SAs.
	gsa := onlySA(t, gw)
	cc := *gsa.children[0].cfg
	cc.ESPProposals = mustESP(t, "chacha20poly1305")
	gsa.children[0].cfg = &cc
	// The soft limit: the rekey request goes out (not delivered yet) ...
	n.apply(cl, cl.e.ChildVolume(n.now, VolumeLimit{Policy: c.Policy, SPI: c.SPI}))
	if countExchanges(cl, wire.CREATE_CHILD_SA, false) != 1 {
		t.Fatal("no rekey at the soft limit")
	}
	// ... and before its answer, the hard limit: the outbound SA no longer sends.
	n.apply(cl, cl.e.ChildVolume(n.now, VolumeLimit{Policy: c.Policy, SPI: c.SPI, Hard: true}))
	n.run(time.Minute, nil)
	refused := len(messagesTo(t, gw, cl, netip.AddrPort{}, hasNotify(wire.NO_PROPOSAL_CHOSEN)))
	t.Logf("rekeys refused in a minute: %d", refused)
	if _, ok := cl.inbound[c.In.SPI]; ok {
		t.Error("the client kept the Child SA past its hard limit (a minute later, still only retrying the refused rekey)")
	}
	if out, ok := cl.outbound[c.Policy]; ok && out.SPI == c.SPI {
		t.Error("the client's flow is still on the outbound SA past its hard limit (the datapath sends nothing on it)")
	}
}

// Found in review (A), fixed since: restarts (dpd_action/close_action restart, and the retries of a
// restart) use the *Conn of the SA that died, not the connection of the running
// configuration. After a reload that adds a CRL revoking the gateway's certificate, the
// client re-establishes with the revoked certificate.
func TestRestartUsesReloadedConnection(t *testing.T) {
	p := newPKI(t, "mobikevpn test CA")
	gwCred := p.leaf(t, "ecdsa", "gw.example.org", []string{"gw.example.org"}, nil, []netip.Addr{gwAddr})
	clCred := p.leaf(t, "ecdsa", "alice", nil, []string{"alice@example.org"}, nil)
	setCerts := func(g, c *Config) {
		gc, cc := g.Connections[0], c.Connections[0]
		gc.LocalAuth, gc.RemoteAuth, gc.LocalCred, gc.RemoteCAs = AuthPubkey, AuthPubkey, gwCred, []*x509.Certificate{p.ca}
		cc.LocalAuth, cc.RemoteAuth, cc.LocalCred, cc.RemoteCAs = AuthPubkey, AuthPubkey, clCred, []*x509.Certificate{p.ca}
		gc.LocalID = ""
		g.PSK, c.PSK = nil, nil
		cc.DPDDelay = 5 * time.Second
		cc.DPDAction = "restart"
		c.Retransmit = Retransmit{Timeout: time.Second, Tries: 2, Base: 2}
	}
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", setCerts)
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	// The operator revokes the gateway's certificate and reloads the client (as the
	// daemon does on SIGHUP: a fresh configuration, new *Conn values).
	gc, cc := gatewayConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16"), clientConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
	setCerts(&gc, &cc)
	now := time.Now()
	cc.Connections[0].RemotePolicy.CRLs = []*x509.RevocationList{p.crl(t, 3, now.Add(-time.Hour), now.Add(24*time.Hour), gwCred.Chain[0])}
	if err := cl.e.Reload(cc); err != nil {
		t.Fatal(err)
	}
	// The gateway restarts (forgets everything), still with its revoked certificate: the
	// client's DPD fails and it restarts the connection.
	gw2 := n.add("gateway2", gwAddr, gc)
	n.eps = []*endpoint{gw2, cl}
	cl.events = nil
	if n.run(time.Minute, established(cl, gw2)) {
		t.Errorf("after the reload, the client re-established with a gateway whose certificate its CRL revokes: the restart used the stale connection (CRLs %d)",
			len(onlySA(t, cl).conn.RemotePolicy.CRLs))
	}
}

// Control for A: a connection started from the reloaded configuration refuses
// the revoked gateway (the CRL itself is right).
func TestInitiateAfterReloadRefusesRevokedGateway(t *testing.T) {
	p := newPKI(t, "mobikevpn test CA")
	gwCred := p.leaf(t, "ecdsa", "gw.example.org", []string{"gw.example.org"}, nil, []netip.Addr{gwAddr})
	clCred := p.leaf(t, "ecdsa", "alice", nil, []string{"alice@example.org"}, nil)
	setCerts := func(g, c *Config) {
		gc, cc := g.Connections[0], c.Connections[0]
		gc.LocalAuth, gc.RemoteAuth, gc.LocalCred, gc.RemoteCAs = AuthPubkey, AuthPubkey, gwCred, []*x509.Certificate{p.ca}
		cc.LocalAuth, cc.RemoteAuth, cc.LocalCred, cc.RemoteCAs = AuthPubkey, AuthPubkey, clCred, []*x509.Certificate{p.ca}
		gc.LocalID = ""
		g.PSK, c.PSK = nil, nil
		cc.StartAction = "none"
	}
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", setCerts)
	cc := clientConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
	gc := gatewayConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
	setCerts(&gc, &cc)
	now := time.Now()
	cc.Connections[0].RemotePolicy.CRLs = []*x509.RevocationList{p.crl(t, 3, now.Add(-time.Hour), now.Add(24*time.Hour), gwCred.Chain[0])}
	if err := cl.e.Reload(cc); err != nil {
		t.Fatal(err)
	}
	_, acts, err := cl.e.Initiate(n.now, "home")
	if err != nil {
		t.Fatal(err)
	}
	n.apply(cl, acts)
	wantRefused(t, n, gw, cl)
}

// Found in review (C), fixed since: "ten times per second per SA" (README) does not hold. replayAllowed
// counts the sources answered in the last second, not the answers: nine sources that
// each replay every 250 ms are all answered, 36 answers a second.
func TestReplayBudgetPerSAPerSecond(t *testing.T) {
	n, gw, _ := mobikePair(t, func(g, c *Config) { c.Connections[0].DPDDelay = 2 * time.Second })
	n.run(3*time.Second, nil)
	var req []byte
	for _, d := range n.eps[1].sent {
		if h, err := wire.ParseHeader(d.data); err == nil && h.Exchange == wire.INFORMATIONAL && !h.IsResponse() {
			req = d.data
		}
	}
	if req == nil {
		t.Fatal("no INFORMATIONAL request from the client")
	}
	before := len(gw.sent)
	start := n.now.Add(time.Second)
	for tick := 0; tick < 4; tick++ { // one second
		for s := 0; s < 9; s++ {
			src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(10 + s)}), 4500)
			n.apply(gw, gw.e.HandleDatagram(start.Add(time.Duration(tick)*250*time.Millisecond+time.Duration(s)*time.Millisecond), gwAP, src, req))
		}
	}
	if got := len(gw.sent) - before; got > 10 {
		t.Errorf("%d cached responses sent in one second for one SA, the limit is 10", got)
	}
}

// Found in review (D), fixed since: a Child SA past its hard limit whose rekey is answered
// TEMPORARY_FAILURE ("try again later", RFC 7296 2.25, e.g. the peer is rekeying the IKE
// SA) is replaced by replaceExpired: createChild + deleteChild. The create is refused
// with TEMPORARY_FAILURE too, and createChild never retries, while the delete goes
// through: the flow is removed and no Child SA is ever created again on this IKE SA.
func TestHardLimitReplacementRetriedAfterTemporaryFailure(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		g.Connections[0].DPDDelay, c.Connections[0].DPDDelay = 0, 0
	})
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	_, c := checkChildPair(t, gw, cl)
	// For a moment the gateway answers every CREATE_CHILD_SA with TEMPORARY_FAILURE
	// (handleCreateChildSA does so outside stateEstablished; a strongSwan peer does so
	// while it rekeys the IKE SA).
	gsa := onlySA(t, gw)
	gsa.state = stateDeleting
	n.apply(cl, cl.e.ChildVolume(n.now, VolumeLimit{Policy: c.Policy, SPI: c.SPI, Hard: true}))
	n.run(2*time.Second, nil)
	gsa.state = stateEstablished // the peer is ready again
	n.run(time.Minute, nil)
	t.Logf("TEMPORARY_FAILUREs: %d", len(messagesTo(t, gw, cl, netip.AddrPort{}, hasNotify(wire.TEMPORARY_FAILURE))))
	if len(cl.outbound) != 1 || len(onlySA(t, cl).children) != 1 {
		t.Errorf("a minute later the client has %d outbound flows and %d Child SAs (want 1 each): the flow was deleted and never replaced",
			len(cl.outbound), len(onlySA(t, cl).children))
	}
}

// Found in review (E), fixed since: before the first rotation of the cookie secret, cookies of
// version 255 (cookieJar.version-1 in uint8) are accepted and computed with
// cookieJar.secret[1], which New never filled: all zeros. Anyone can compute such a cookie
// for any address, so forged requests count as "proved" for the victim's source. Five
// of them (block_threshold) and five plain ones make the victim's own cookie-proved
// IKE_SA_INIT dropped as Blocked: the lockout the hardening is meant to prevent. The
// window opens at the first cookie operation (rotateCookieSecret is lazy), which the
// attacker triggers itself, and lasts cookieJar.each (2 minutes).
func TestPreviousCookieVersionNotForgeable(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", nil)
	n.inflight = nil
	cl.e = mustNew(t, cl.e.cfg)
	victim := netip.AddrPortFrom(clientAddr, 500)
	forged := func(spi uint64) []byte {
		h := sha256.New()
		h.Write(bytes.Repeat([]byte{7}, 32)) // initRequest's nonce
		h.Write(clientAddr.AsSlice())
		var s [8]byte
		binary.BigEndian.PutUint64(s[:], spi)
		h.Write(s[:])
		h.Write(make([]byte, 32)) // cookieJar.secret[1] before any rotation
		return initRequest(t, spi, &wire.Notify{NotifyType: wire.COOKIE, Data: h.Sum([]byte{0xff})})
	}
	for i := 0; i < 5; i++ {
		gw.e.HandleDatagram(n.now, gwInit, victim, initRequest(t, uint64(5000+i)))
		gw.e.HandleDatagram(n.now, gwInit, victim, forged(uint64(6000+i)))
	}
	t.Logf("half-open after the forgeries: %d (proved %d, unproved %d), invalid cookies %d",
		gw.e.gate.nHalf, gw.e.gate.proved[sourceBlock(clientAddr, gw.e.cfg.IPv6SourcePrefix)], gw.e.gate.unproved[sourceBlock(clientAddr, gw.e.cfg.IPv6SourcePrefix)], gw.e.Drops().InvalidCookie.Load())
	n.apply(cl, cl.e.StartAll(n.now))
	if !n.run(20*time.Second, established(gw, cl)) {
		t.Fatalf("the victim could not connect after forged requests from its address: %v (blocked %d)", cl.events, gw.e.Drops().Blocked.Load())
	}
}

// Found in review (F), fixed since: a Child SA rekey queued behind another request (here a liveness
// check) when the peer rekeys the IKE SA stays on the old IKE SA's queue: inherit moves
// the Child SA to the new IKE SA but not the queued request. The old IKE SA is then
// deleted by the peer (removeSA drops its pending and queued requests, so onReply never
// runs; had the peer answered TEMPORARY_FAILURE instead, rekeyChildDone's retry would
// see stillOurs == false and do nothing either). The Child SA stays childRekeying for
// good: no rekey (rekey_time, soft or hard volume limit, sequence numbers) ever touches
// it again, and ChildVolume ignores it as "being replaced already".
func TestQueuedChildRekeyMovesWithIKERekey(t *testing.T) {
	var clLog *bytes.Buffer
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		g.Connections[0].DPDDelay, c.Connections[0].DPDDelay = 0, 0
		clLog = captureLog(c)
	})
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	_, c := checkChildPair(t, gw, cl)
	csa, gsa := onlySA(t, cl), onlySA(t, gw)
	// The client has a request outstanding (a liveness check) ...
	n.apply(cl, func() []Action { cl.e.queueRequest(n.now, csa, cl.e.dpdRequest(csa)); return cl.e.take() }())
	// ... when its outbound SA reaches its hard limit: the rekey waits in the queue.
	n.apply(cl, cl.e.ChildVolume(n.now, VolumeLimit{Policy: c.Policy, SPI: c.SPI, Hard: true}))
	// Meanwhile the gateway rekeys the IKE SA (its rekey_time).
	n.apply(gw, gw.e.RekeyIKE(n.now, gsa.id))
	n.run(time.Minute, nil)
	ncsa := onlySA(t, cl)
	if strings.Contains(clLog.String(), "rekey failed") {
		t.Log("the queued rekey was answered on the old IKE SA")
	}
	if ncsa == csa {
		t.Fatal("the IKE SA was not rekeyed")
	}
	for _, ch := range ncsa.children {
		t.Logf("client child spi_in %08x state %v expired %v", ch.spiIn, ch.state, ch.expired)
	}
	if out, ok := cl.outbound[c.Policy]; ok && out.SPI == c.SPI {
		t.Errorf("a minute later the client still sends on the Child SA past its hard limit (state %v)", ncsa.childByOutSPI(c.SPI).state)
	}
	// Another report changes nothing either.
	// And the Child SA that replaced it is rekeyed at its own limit.
	var cur *ChildSA
	for _, ch := range ncsa.children {
		if ch.state == childInstalled && ch.outActive {
			cur = ch
		}
	}
	if cur == nil {
		t.Fatal("no installed Child SA on the new IKE SA")
	}
	before := countExchanges(cl, wire.CREATE_CHILD_SA, false)
	n.apply(cl, cl.e.ChildVolume(n.now, VolumeLimit{Policy: cur.policy, SPI: cur.spiOut, Hard: true}))
	n.run(time.Minute, nil)
	if countExchanges(cl, wire.CREATE_CHILD_SA, false) == before {
		t.Error("the Child SA is never rekeyed again")
	}
}

// Found in review (C, second half), fixed since: the per-SA budget is shared with the peer itself,
// so whoever can see one request (a passive observer) and spoof ten sources keeps the
// real peer's retransmissions from being answered.
func TestSpoofedCopiesDoNotStarvePeerRetransmissions(t *testing.T) {
	n, gw, _ := mobikePair(t, func(g, c *Config) { c.Connections[0].DPDDelay = 2 * time.Second })
	n.run(3*time.Second, nil)
	var req []byte
	for _, d := range n.eps[1].sent {
		if h, err := wire.ParseHeader(d.data); err == nil && h.Exchange == wire.INFORMATIONAL && !h.IsResponse() {
			req = d.data
		}
	}
	start := n.now.Add(time.Second)
	for s := 0; s < 10; s++ {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(10 + s)}), 4500)
		n.apply(gw, gw.e.HandleDatagram(start.Add(time.Duration(s)*time.Millisecond), gwAP, src, req))
	}
	before := len(gw.sent)
	n.apply(gw, gw.e.HandleDatagram(start.Add(500*time.Millisecond), gwAP, clientAP, req))
	if len(gw.sent) == before {
		t.Error("the peer's own retransmission was not answered: ten spoofed copies used the SA's budget")
	}
}

// Found in review (mobility R3), fixed since: requests the path manager asked for that wait in the old IKE SA's queue when a
// rekey completes are dropped with it (deleteIKESA clears the queue; Rekeyed asks only
// for checks again): a switch request, an address update. The switch was counted
// (switch_limit) and reported as asked; SwitchPending stays set.
func TestSwitchQueuedDuringIKERekeyGoesOut(t *testing.T) {
	n, gw, cl := mobikePair(t, nil)
	id := gw.e.Status(n.now)[0].ID
	n.apply(gw, gw.e.RekeyIKE(n.now, id)) // the rekey request is on its way
	targets, acts, err := gw.e.Switch(n.now, SwitchSelector{All: true}, gwAddr2)
	if err != nil || !targets[0].Asked() {
		t.Fatalf("switch: %v %+v", err, targets)
	}
	n.apply(gw, acts)
	n.run(30*time.Second, nil)
	if len(messagesTo(t, gw, cl, netip.AddrPort{}, hasNotify(wire.SWITCH_TO_IP_ADDRESS))) == 0 {
		t.Error("the switch request never went out")
	}
	flowsAt(t, gw, cl, clientAddr, gwAddr2)
}

func TestAnnouncementQueuedDuringIKERekeyGoesOut(t *testing.T) {
	n, gw, cl := mobikePair(t, nil)
	id := gw.e.Status(n.now)[0].ID
	n.apply(gw, gw.e.RekeyIKE(n.now, id))
	// The gateway's second address goes while the rekey is under way.
	n.apply(gw, gw.e.SetLocalAddrs(n.now, []netip.Addr{gwAddr}))
	n.run(30*time.Second, nil)
	if got := cl.e.Status(n.now)[0].PeerAdditional; len(got) != 0 {
		t.Errorf("the client still lists %v as the gateway's address: the update was lost", got)
	}
}

// A reload that removes a connection ends its restarts: its SA dying afterwards
// (dpd_action restart) starts nothing.
func TestNoRestartOfConnectionRemovedByReload(t *testing.T) {
	var clLog *bytes.Buffer
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		c.Connections[0].DPDDelay = 5 * time.Second
		c.Connections[0].DPDAction = "restart"
		c.Retransmit = Retransmit{Timeout: time.Second, Tries: 2, Base: 2}
		clLog = captureLog(c)
	})
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	cc := clientConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
	cc.Connections[0].Name = "elsewhere"
	cc.Connections[0].StartAction = "none"
	cc.Retransmit = Retransmit{Timeout: time.Second, Tries: 2, Base: 2}
	if err := cl.e.Reload(cc); err != nil {
		t.Fatal(err)
	}
	n.drop = func(datagram) bool { return true } // the gateway goes away
	n.run(2*time.Minute, nil)
	if len(cl.e.store.byID) != 0 {
		t.Errorf("the client holds %d IKE SAs for a connection the reload removed\n%s", len(cl.e.store.byID), clLog)
	}
	if countExchanges(cl, wire.IKE_SA_INIT, false) != 1 {
		t.Errorf("%d IKE_SA_INIT requests: the removed connection was restarted", countExchanges(cl, wire.IKE_SA_INIT, false))
	}
	if !strings.Contains(clLog.String(), "not restarting: a reload removed the connection") {
		t.Errorf("no log line says why the connection was not restarted:\n%s", clLog)
	}
}

// Found in review (minor), fixed since: pools that share addresses are refused (each
// pool knows only its own leases: an address in two could go to two clients), and a
// refused reload changes nothing, not even the DNS servers of the pools it keeps.
func TestOverlappingPoolsAndRefusedReloadChangeNothing(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", nil)
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	rw := netip.MustParsePrefix("198.18.100.0/24")
	dns := []netip.Addr{netip.MustParseAddr("198.18.0.53")}
	overlap := []*PoolConfig{
		{Name: "rw", Addrs: []netip.Prefix{rw}},
		{Name: "more", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.100.128/25")}},
	}
	cfg := gw.e.cfg
	cfg.Pools = overlap
	if err := gw.e.Reload(cfg); err == nil || !strings.Contains(err.Error(), `pools "rw" (198.18.100.0/24) and "more" (198.18.100.128/25) overlap`) {
		t.Errorf("reload with overlapping pools: %v", err)
	}
	cfg.Pools = overlap
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "overlap") {
		t.Errorf("New with overlapping pools: %v", err)
	}
	// Refused for an unknown pool: the kept pool's DNS servers stay as they were.
	before := gw.e.pools["rw"].dns
	cfg.Pools = []*PoolConfig{{Name: "rw", Addrs: []netip.Prefix{rw}, DNS: dns}}
	conn := *cfg.Connections[0]
	conn.Pools = []string{"rw", "nowhere"}
	cfg.Connections = []*Conn{&conn}
	if err := gw.e.Reload(cfg); err == nil || !strings.Contains(err.Error(), `unknown pool "nowhere"`) {
		t.Fatalf("reload naming an unknown pool: %v", err)
	}
	if got := gw.e.pools["rw"].dns; !slices.Equal(got, before) {
		t.Errorf("the refused reload changed the pool's DNS servers from %v to %v", before, got)
	}
}

// Found in review (minor), fixed since: the outbound keys of a Child SA that never
// carried our traffic (a collision's loser, one deleted before its deferred
// activation) are overwritten when it goes, like every other key the engine drops.
func TestUnactivatedOutboundKeysWiped(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", nil)
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	sa := onlySA(t, gw)
	c := sa.children[0]
	encr, integ := []byte{1, 2, 3, 4}, []byte{5, 6}
	c.outKeys = ChildKeys{Encr: encr, Integ: integ} // as if its activation were deferred
	gw.e.retireChild(n.now, sa, c, false)
	if !bytes.Equal(encr, make([]byte, 4)) || !bytes.Equal(integ, make([]byte, 2)) || c.outKeys.Encr != nil {
		t.Errorf("the retired Child SA's outbound keys were not overwritten: %x %x", encr, integ)
	}
}

// Found in review (minor), fixed since: the pre-authentication memory a fragment
// buffer holds includes its table of fragment slots (up to 128 of them), not only the
// fragments' bytes.
func TestPreauthCountsFragmentSlots(t *testing.T) {
	sa := &IKESA{state: stateInitDone}
	sa.win.frags[0] = &fragBuffer{total: 128, parts: make([][]byte, 128), size: 100}
	if got, want := sa.preauthHeld(), 100+128*24; got < want {
		t.Errorf("a buffer of 128 fragment slots and 100 bytes counts %d bytes, want at least %d", got, want)
	}
}
