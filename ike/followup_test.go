package ike

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/wire"
)

// RFC 9370 2.2.4: additional key exchanges in IKE_FOLLOWUP_KE after CREATE_CHILD_SA.

const hybridESP = "aes128gcm16-x25519-ke1_mlkem768"

// keyInputs records the shared secrets an engine derives Child SA or rekeyed IKE SA
// keys from (Engine.testKeyInputs).
type keyInputs struct{ gir, addKE [][]byte }

func recordKeyInputs(ep *endpoint) *keyInputs {
	k := &keyInputs{}
	ep.e.testKeyInputs = func(gir []byte, addKE [][]byte) {
		k.gir = append(k.gir, bytes.Clone(gir))
		var all []byte
		for _, s := range addKE {
			all = append(all, s...)
		}
		k.addKE = append(k.addKE, all)
	}
	return k
}

// requestsOf counts the requests of exchange ex that ep sent (by message ID: not the
// fragments, not the retransmissions).
func requestsOf(ep *endpoint, ex wire.ExchangeType) int {
	ids := map[[2]uint64]bool{}
	for _, d := range ep.sent {
		if h, err := wire.ParseHeader(d.data); err == nil && h.Exchange == ex && !h.IsResponse() {
			ids[[2]uint64{h.SPIi ^ h.SPIr, uint64(h.MessageID)}] = true
		}
	}
	return len(ids)
}

// hybridPair is a client and a gateway whose Child SA proposal is x25519 plus ML-KEM-768
// (the IKE_AUTH Child SA has neither), established.
func hybridPair(t *testing.T, ike string, mutate func(g, c *Config)) (*testNet, *endpoint, *endpoint) {
	t.Helper()
	n, gw, cl := pair(t, ike, hybridESP, mutate)
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatalf("not established: client %v, gateway %v", cl.events, gw.events)
	}
	return n, gw, cl
}

func onlyInbound(t *testing.T, ep *endpoint) uint32 {
	t.Helper()
	if len(ep.inbound) != 1 {
		t.Fatalf("%s has %d inbound SAs", ep.name, len(ep.inbound))
	}
	for spi := range ep.inbound {
		return spi
	}
	return 0
}

// noHalfSA asserts that neither end holds anything of an unfinished series: no series,
// no reserved SPI.
func noHalfSA(t *testing.T, eps ...*endpoint) {
	t.Helper()
	for _, ep := range eps {
		for _, sa := range ep.e.store.byID {
			if sa.addKE != nil || len(sa.followups) != 0 || len(sa.reserved) != 0 {
				t.Errorf("%s: IKE SA #%d holds a half-done exchange: ours %v, the peer's %d, reserved SPIs %d",
					ep.name, sa.id, sa.addKE != nil, len(sa.followups), len(sa.reserved))
			}
		}
	}
}

func TestFollowupChildRekey(t *testing.T) {
	n, gw, cl := hybridPair(t, "aes128gcm16-prfsha256-x25519", nil)
	first, _ := checkChildPair(t, gw, cl)
	if first.Suite.DH != 0 || first.Suite.AddKE != [7]uint16{} {
		t.Fatalf("IKE_AUTH Child SA suite %v", first.Suite)
	}
	ki, kr := recordKeyInputs(cl), recordKeyInputs(gw)
	n.apply(cl, cl.e.RekeyChild(n.now, onlyInbound(t, cl)))
	// A liveness check queued meanwhile goes after the IKE_FOLLOWUP_KE: the series
	// is not interleaved with other requests of ours.
	csa := onlySA(t, cl)
	cl.e.livenessCheck(n.now, csa)
	n.apply(cl, cl.e.take())
	n.runChecked(20*time.Second, makeBeforeBreak(t, n, gw, cl))
	byID := map[uint32]wire.ExchangeType{}
	for _, d := range cl.sent {
		if h, err := wire.ParseHeader(d.data); err == nil && !h.IsResponse() && h.MessageID >= 2 {
			byID[h.MessageID] = h.Exchange // IKE_SA_INIT 0, IKE_AUTH 1
		}
	}
	var order []wire.ExchangeType
	for id := uint32(2); byID[id] != 0; id++ {
		order = append(order, byID[id])
	}
	if want := []wire.ExchangeType{wire.CREATE_CHILD_SA, wire.IKE_FOLLOWUP_KE, wire.INFORMATIONAL}; len(order) < 3 || !slices.Equal(order[:3], want) || csa.win.pending != nil {
		t.Fatalf("requests in order %v, want %v first", order, want)
	}
	if requestsOf(cl, wire.CREATE_CHILD_SA) != 1 || requestsOf(cl, wire.IKE_FOLLOWUP_KE) != 1 || countExchanges(gw, wire.IKE_FOLLOWUP_KE, true) < 1 {
		t.Fatalf("exchanges: CREATE_CHILD_SA %d, IKE_FOLLOWUP_KE %d", requestsOf(cl, wire.CREATE_CHILD_SA), requestsOf(cl, wire.IKE_FOLLOWUP_KE))
	}
	g, c := checkChildPair(t, gw, cl)
	if g.SPI == first.SPI || c.Suite.String() != hybridESP {
		t.Fatalf("after the rekey: SPI %08x (before %08x), suite %v", g.SPI, first.SPI, c.Suite)
	}
	for _, ep := range []*endpoint{gw, cl} {
		if p := ep.e.Status(n.now)[0].Children; len(p) != 1 || p[0].Proposal != hybridESP {
			t.Errorf("%s: Child SA status %+v", ep.name, p)
		}
	}
	// Both ends mixed the same SK(0) (x25519) and SK(1) (ML-KEM, 32 octets).
	if len(ki.gir) != 1 || len(kr.gir) != 1 || !bytes.Equal(ki.gir[0], kr.gir[0]) || !bytes.Equal(ki.addKE[0], kr.addKE[0]) ||
		len(ki.gir[0]) != 32 || len(ki.addKE[0]) != 32 {
		t.Fatalf("key inputs differ: initiator %x / %x, responder %x / %x", ki.gir, ki.addKE, kr.gir, kr.addKE)
	}
	// KEYMAT by hand, prf+(SK_d, SK(0) | Ni | Nr | SK(1)); and what the rekey would have
	// given without ML-KEM differs.
	sa := onlySA(t, cl)
	child := sa.childBySPIIn(c.In.SPI)
	seed := slices.Concat(ki.gir[0], child.ni, child.nr, ki.addKE[0])
	km, err := sa.prf.Plus(sa.keys.SKd, seed, 2*len(c.Keys.Encr))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(km[:len(c.Keys.Encr)], c.Keys.Encr) || !bytes.Equal(km[len(c.Keys.Encr):], c.In.Keys.Encr) {
		t.Fatal("Child SA keys are not prf+(SK_d, SK(0) | Ni | Nr | SK(1))")
	}
	plain, err := ikecrypto.ChildKeymat(sa.prf, sa.keys.SKd, ki.gir[0], child.ni, child.nr, child.suite)
	if err != nil || bytes.Equal(plain.EncrI, c.Keys.Encr) {
		t.Fatal("the ML-KEM secret is not in the Child SA's keys")
	}
	quiesce(n, makeBeforeBreak(t, n, gw, cl))
	oneChildEach(t, n, gw, cl)
	noHalfSA(t, gw, cl)
}

// The gateway rekeys: the roles swap, the keys still agree.
func TestFollowupChildRekeyByResponder(t *testing.T) {
	n, gw, cl := hybridPair(t, "aes128gcm16-prfsha256-x25519", func(g, c *Config) {
		g.Connections[0].Children[0].RekeyTime = 15 * time.Second
	})
	n.runChecked(40*time.Second, makeBeforeBreak(t, n, gw, cl))
	if requestsOf(gw, wire.IKE_FOLLOWUP_KE) < 2 || requestsOf(cl, wire.IKE_FOLLOWUP_KE) != 0 {
		t.Fatalf("IKE_FOLLOWUP_KE requests: gateway %d, client %d", requestsOf(gw, wire.IKE_FOLLOWUP_KE), requestsOf(cl, wire.IKE_FOLLOWUP_KE))
	}
	checkHybridChild(t, n, gw, cl)
}

// Both ends rekey the same Child SA at once: the exchange with the lowest nonce stops
// after its CREATE_CHILD_SA (RFC 9370 2.2.4), one successor survives.
func TestFollowupChildRekeyCollision(t *testing.T) {
	var winners [2]int // the client's rekey survived, the gateway's
	for seed := byte(1); seed <= 6; seed++ {
		n, gw, cl := hybridPair(t, "aes128gcm16-prfsha256-x25519", func(g, c *Config) {
			g.Rand, c.Rand = seededRand(seed), seededRand(seed+100)
		})
		n.apply(cl, cl.e.RekeyChild(n.now, onlyInbound(t, cl)))
		n.apply(gw, gw.e.RekeyChild(n.now, onlyInbound(t, gw)))
		n.runChecked(20*time.Second, makeBeforeBreak(t, n, gw, cl))
		quiesce(n, makeBeforeBreak(t, n, gw, cl))
		if _, c := checkChildPair(t, gw, cl); c.Suite.String() != hybridESP {
			t.Fatalf("seed %d: suite %v", seed, c.Suite)
		}
		oneChildEach(t, n, gw, cl)
		noHalfSA(t, gw, cl)
		if requestsOf(gw, wire.CREATE_CHILD_SA) != 1 || requestsOf(cl, wire.CREATE_CHILD_SA) != 1 {
			t.Fatalf("seed %d: no collision", seed)
		}
		gf, cf := requestsOf(gw, wire.IKE_FOLLOWUP_KE), requestsOf(cl, wire.IKE_FOLLOWUP_KE)
		if gf+cf != 1 {
			t.Errorf("seed %d: %d IKE_FOLLOWUP_KE requests, want 1 (the loser stops)", seed, gf+cf)
		}
		winners[gf]++
	}
	if winners[0] == 0 || winners[1] == 0 {
		t.Errorf("winners (client, gateway) %v: both cases should occur", winners)
	}
}

// An additional Child SA with x25519 and ML-KEM-768, created after IKE_AUTH.
func TestFollowupAdditionalChild(t *testing.T) {
	extra := func(esp string) *ChildConfig {
		return &ChildConfig{Name: "extra", LocalTS: []TSConfig{dynamicTS}, RemoteTS: []TSConfig{prefixTS("198.19.0.0/16")}, ESPProposals: mustESP(t, esp)}
	}
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		c.Connections[0].Children = append(c.Connections[0].Children, extra(hybridESP))
		gx := extra(hybridESP)
		gx.LocalTS, gx.RemoteTS = []TSConfig{prefixTS("198.19.0.0/16")}, []TSConfig{dynamicTS}
		g.Connections[0].Children = append(g.Connections[0].Children, gx)
	})
	ki, kr := recordKeyInputs(cl), recordKeyInputs(gw)
	if !n.run(time.Minute, func() bool { return len(cl.outbound) == 2 && len(gw.outbound) == 2 }) {
		t.Fatalf("no second Child SA: client %d, gateway %d flows", len(cl.outbound), len(gw.outbound))
	}
	n.run(time.Second, nil)
	if requestsOf(cl, wire.IKE_FOLLOWUP_KE) != 1 {
		t.Fatalf("%d IKE_FOLLOWUP_KE requests", requestsOf(cl, wire.IKE_FOLLOWUP_KE))
	}
	var found bool
	for _, o := range cl.outbound {
		if o.Name != "extra" {
			continue
		}
		found = true
		in, ok := gw.inbound[o.SPI]
		if !ok || !bytes.Equal(in.Keys.Encr, o.Keys.Encr) || o.Suite.String() != hybridESP {
			t.Fatalf("extra Child SA: installed %v, suite %v", ok, o.Suite)
		}
	}
	// (The Child SA of IKE_AUTH has its keys from the IKE SA's, no key exchange.)
	if !found || len(ki.addKE) != 1 || len(ki.addKE[0]) != 32 || !bytes.Equal(ki.addKE[0], kr.addKE[0]) || !bytes.Equal(ki.gir[0], kr.gir[0]) {
		t.Fatalf("extra Child SA found %v; key inputs %d/%d", found, len(ki.addKE), len(kr.addKE))
	}
	noHalfSA(t, gw, cl)
}

// The IKE SA rekey runs ML-KEM too: IKE_FOLLOWUP_KE on the old IKE SA, SKEYSEED =
// prf(SK_d, SK(0) | Ni | Nr | SK(1)), and the new SA carries on (a Child SA rekey and
// a liveness check over it).
func TestFollowupIKERekey(t *testing.T) {
	n, gw, cl := hybridPair(t, hybridIKE, nil)
	old := onlySA(t, cl)
	oldSPIs := [2]uint64{old.spiI, old.spiR}
	oldSKd, oldPRF := bytes.Clone(old.keys.SKd), old.prf
	ki, kr := recordKeyInputs(cl), recordKeyInputs(gw)
	n.apply(cl, cl.e.RekeyIKE(n.now, old.id))
	n.runChecked(20*time.Second, makeBeforeBreak(t, n, gw, cl))
	if cl.hasEvent(EventRekeyed) == nil || gw.hasEvent(EventRekeyed) == nil {
		t.Fatalf("not rekeyed: client %v gateway %v", cl.events, gw.events)
	}
	for _, d := range cl.sent {
		if h, _ := wire.ParseHeader(d.data); h.Exchange == wire.IKE_FOLLOWUP_KE && (h.SPIi != oldSPIs[0] || h.SPIr != oldSPIs[1]) {
			t.Fatalf("IKE_FOLLOWUP_KE on SPIs %016x/%016x, not the old SA's", h.SPIi, h.SPIr)
		}
	}
	if requestsOf(cl, wire.IKE_FOLLOWUP_KE) != 1 {
		t.Fatalf("%d IKE_FOLLOWUP_KE requests", requestsOf(cl, wire.IKE_FOLLOWUP_KE))
	}
	ns, gs := onlySA(t, cl), onlySA(t, gw)
	if ns.spiI == oldSPIs[0] || !bytes.Equal(ns.keys.SKd, gs.keys.SKd) || ns.suite.String() != hybridIKE {
		t.Fatalf("new IKE SA: SPI %016x, suite %v", ns.spiI, ns.suite)
	}
	if len(ki.gir) != 1 || !bytes.Equal(ki.gir[0], kr.gir[0]) || !bytes.Equal(ki.addKE[0], kr.addKE[0]) || len(ki.addKE[0]) != 32 {
		t.Fatal("key inputs differ or no ML-KEM secret")
	}
	// SKEYSEED by hand, and without ML-KEM it would differ.
	seed := oldPRF.Compute(oldSKd, slices.Concat(ki.gir[0], ns.ni, ns.nr, ki.addKE[0]))
	keys, err := ikecrypto.DeriveIKEKeys(ns.prf, ns.suite, seed, ns.ni, ns.nr, ns.spiI, ns.spiR)
	if err != nil || !bytes.Equal(keys.SKd, ns.keys.SKd) || !bytes.Equal(keys.SKei, ns.keys.SKei) {
		t.Fatal("the new IKE SA's keys are not from prf(SK_d, SK(0) | Ni | Nr | SK(1))")
	}
	plain, _ := ikecrypto.DeriveIKEKeys(ns.prf, ns.suite, oldPRF.RekeySKEYSEED(oldSKd, ki.gir[0], ns.ni, ns.nr), ns.ni, ns.nr, ns.spiI, ns.spiR)
	if bytes.Equal(plain.SKd, ns.keys.SKd) {
		t.Fatal("the ML-KEM secret is not in the new IKE SA's keys")
	}
	if len(cl.keylogs) != 2 || !bytes.Equal(cl.keylogs[1].SKei, ns.keys.SKei) {
		t.Errorf("key log: %d entries", len(cl.keylogs))
	}
	// The new SA works: a Child SA rekey (with its own IKE_FOLLOWUP_KE) and a liveness
	// check over it.
	n.apply(cl, cl.e.RekeyChild(n.now, onlyInbound(t, cl)))
	n.runChecked(20*time.Second, makeBeforeBreak(t, n, gw, cl))
	if requestsOf(cl, wire.IKE_FOLLOWUP_KE) != 2 {
		t.Fatalf("%d IKE_FOLLOWUP_KE requests after the Child SA rekey", requestsOf(cl, wire.IKE_FOLLOWUP_KE))
	}
	cl.e.livenessCheck(n.now, ns)
	cl.e.schedule(ns)
	n.apply(cl, cl.e.take())
	n.run(10*time.Second, func() bool { return ns.win.pending == nil })
	if ns.win.pending != nil || cl.hasEvent(EventDeleted) != nil || gw.hasEvent(EventDeleted) != nil {
		t.Fatal("the new IKE SA does not work")
	}
	quiesce(n, makeBeforeBreak(t, n, gw, cl))
	oneChildEach(t, n, gw, cl)
	noHalfSA(t, gw, cl)
}

// The gateway rekeys the IKE SA: the responder of CREATE_CHILD_SA keeps the new SA's
// SPI reserved and creates the SA only after the last IKE_FOLLOWUP_KE.
func TestFollowupIKERekeyByResponder(t *testing.T) {
	n, gw, cl := hybridPair(t, hybridIKE, nil)
	gsa := onlySA(t, gw)
	n.apply(gw, gw.e.RekeyIKE(n.now, gsa.id))
	// Deliver the CREATE_CHILD_SA request and its response only.
	for len(n.inflight) > 0 && countExchanges(cl, wire.CREATE_CHILD_SA, true) == 0 {
		n.step(n.now)
	}
	csa := onlySA(t, cl)
	f := csa.ikeFollowup()
	if f == nil || csa.rekeyedTo != nil || cl.e.store.bySPI(f.spiR) != csa || len(cl.e.store.byID) != 1 {
		t.Fatal("the client made the new IKE SA before the additional key exchange, or did not reserve its SPI")
	}
	if _, err := cl.e.Snapshot(n.now, csa.id); err == nil || !strings.Contains(err.Error(), "rekey") {
		t.Errorf("snapshot during the IKE SA rekey's additional key exchange: %v", err)
	}
	n.runChecked(20*time.Second, makeBeforeBreak(t, n, gw, cl))
	if gw.hasEvent(EventRekeyed) == nil || cl.hasEvent(EventRekeyed) == nil {
		t.Fatal("not rekeyed")
	}
	ns := onlySA(t, cl)
	if ns.spiR != f.spiR || ns.suite.String() != hybridIKE || !bytes.Equal(ns.keys.SKd, onlySA(t, gw).keys.SKd) {
		t.Fatalf("new IKE SA %016x_r (reserved %016x), suite %v", ns.spiR, f.spiR, ns.suite)
	}
	quiesce(n, makeBeforeBreak(t, n, gw, cl))
	oneChildEach(t, n, gw, cl)
	noHalfSA(t, gw, cl)
}

// Both ends rekey the IKE SA at once, with ML-KEM: one new IKE SA survives, the
// loser's exchange stops after CREATE_CHILD_SA.
func TestFollowupIKERekeyCollision(t *testing.T) {
	var winners [2]int
	for seed := byte(1); seed <= 6; seed++ {
		n, gw, cl := hybridPair(t, hybridIKE, func(g, c *Config) {
			g.Rand, c.Rand = seededRand(seed), seededRand(seed+100)
		})
		n.apply(cl, cl.e.RekeyIKE(n.now, onlySA(t, cl).id))
		n.apply(gw, gw.e.RekeyIKE(n.now, onlySA(t, gw).id))
		n.runChecked(time.Minute, makeBeforeBreak(t, n, gw, cl))
		quiesce(n, makeBeforeBreak(t, n, gw, cl))
		if requestsOf(gw, wire.CREATE_CHILD_SA) != 1 || requestsOf(cl, wire.CREATE_CHILD_SA) != 1 {
			t.Fatalf("seed %d: no collision", seed)
		}
		gf, cf := requestsOf(gw, wire.IKE_FOLLOWUP_KE), requestsOf(cl, wire.IKE_FOLLOWUP_KE)
		if gf+cf != 1 {
			t.Fatalf("seed %d: IKE_FOLLOWUP_KE requests gateway %d client %d, want 1 (the loser stops)", seed, gf, cf)
		}
		winners[gf]++
		oneChildEach(t, n, gw, cl)
		noHalfSA(t, gw, cl)
		gs, cs := onlySA(t, gw), onlySA(t, cl)
		if !bytes.Equal(gs.keys.SKd, cs.keys.SKd) || gs.suite.String() != hybridIKE || cl.hasEvent(EventDeleted) != nil {
			t.Fatalf("seed %d: the surviving IKE SA differs between the ends", seed)
		}
	}
	if winners[0] == 0 || winners[1] == 0 {
		t.Errorf("winners (client, gateway) %v: both cases should occur", winners)
	}
}

// followupRequest waits for ep's IKE_FOLLOWUP_KE request to be in flight and returns
// its IKE SA.
func followupRequest(t *testing.T, n *testNet, ep *endpoint) *IKESA {
	t.Helper()
	return pendingRequest(t, n, ep, wire.IKE_FOLLOWUP_KE)
}

// checkHybridChild checks that gw and cl end with one hybrid Child SA each, the same
// keys at both ends, nothing half made.
func checkHybridChild(t *testing.T, n *testNet, gw, cl *endpoint) {
	t.Helper()
	if _, c := checkChildPair(t, gw, cl); c.Suite.String() != hybridESP {
		t.Fatalf("suite %v", c.Suite)
	}
	quiesce(n, makeBeforeBreak(t, n, gw, cl))
	oneChildEach(t, n, gw, cl)
	noHalfSA(t, gw, cl)
}

// pendingRequest waits for a request of exchange x of ep's to be in flight and returns
// its IKE SA.
func pendingRequest(t *testing.T, n *testNet, ep *endpoint, x wire.ExchangeType) *IKESA {
	t.Helper()
	var sa *IKESA
	n.run(time.Minute, func() bool {
		for _, s := range ep.e.store.sas {
			if r := s.win.pending; r != nil && r.exchange == x {
				sa = s
				return true
			}
		}
		return false
	})
	if sa == nil {
		t.Fatalf("no %v request", x)
	}
	return sa
}

// resealPending replaces ep's pending request in flight by a copy edited by edit.
func resealPending(t *testing.T, n *testNet, ep *endpoint, sa *IKESA, edit func(r *request)) {
	t.Helper()
	r := sa.win.pending
	edit(r)
	datas, err := ep.e.sealMessage(sa, sa.header(r.exchange, r.msgID, false), r.payloads)
	if err != nil {
		t.Fatal(err)
	}
	r.data = datas
	n.inflight = slices.DeleteFunc(n.inflight, func(d datagram) bool {
		h, _ := wire.ParseHeader(d.data)
		return h.Exchange == r.exchange && !h.IsResponse()
	})
	for _, d := range datas {
		n.inflight = append(n.inflight, datagram{from: sa.local, to: sa.remote, data: d})
	}
}

// A bad ML-KEM encapsulation key in IKE_FOLLOWUP_KE is answered NO_PROPOSAL_CHOSEN (as
// strongSwan 6 answers it): the series fails, no new Child SA anywhere, the IKE SA and
// the Child SA being rekeyed stay at both ends, and the rekey is tried again later.
func TestFollowupBadMLKEMKey(t *testing.T) {
	n, gw, cl := hybridPair(t, "aes128gcm16-prfsha256-x25519", nil)
	oldIn := onlyInbound(t, cl)
	n.apply(cl, cl.e.RekeyChild(n.now, oldIn))
	sa := followupRequest(t, n, cl)
	resealPending(t, n, cl, sa, func(r *request) {
		ke := r.payloads[0].(*wire.KE)
		ke.Data[0], ke.Data[1] = 0xff, ke.Data[1]|0x0f // a coefficient not below q
	})
	everInstalled := func(ep *endpoint) int { return len(ep.inbound) + len(ep.removedIn) }
	gBefore, cBefore := everInstalled(gw), everInstalled(cl)
	// Until the client has the answer (its series ended).
	n.run(time.Minute, func() bool { return sa.addKE == nil })
	if everInstalled(gw) != gBefore || everInstalled(cl) != cBefore {
		t.Fatal("a Child SA was installed")
	}
	for _, ep := range []*endpoint{gw, cl} {
		if len(ep.e.store.sas) != 1 || ep.hasEvent(EventDeleted) != nil {
			t.Fatalf("%s: %d IKE SAs, events %v", ep.name, len(ep.e.store.sas), ep.events)
		}
		if len(onlySA(t, ep).followups) != 0 {
			t.Errorf("%s keeps a series", ep.name)
		}
	}
	if onlyInbound(t, cl) != oldIn {
		t.Fatalf("the client's Child SA changed: %08x, was %08x", onlyInbound(t, cl), oldIn)
	}
	// The rekey is tried again (retryDelay) and succeeds: a new Child SA, the old one
	// gone.
	if !n.run(10*time.Minute, func() bool { return len(cl.inbound) == 1 && onlyInbound(t, cl) != oldIn }) {
		t.Fatalf("the rekey was not retried: client inbound %v", cl.inbound)
	}
	checkChildPair(t, gw, cl)
}

// An IKE_FOLLOWUP_KE with a link the responder does not know: STATE_NOT_FOUND, not
// fatal, nothing installed.
func TestFollowupUnknownLink(t *testing.T) {
	n, gw, cl := hybridPair(t, "aes128gcm16-prfsha256-x25519", nil)
	g0, c0 := checkChildPair(t, gw, cl)
	kex, _ := ikecrypto.NewKeyExchange(wire.KE_MLKEM768, seededRand(7))
	n.inject(cl, clientAP, gwAP, wire.IKE_FOLLOWUP_KE, &wire.KE{Group: wire.KE_MLKEM768, Data: kex.PublicKey()},
		&wire.Notify{NotifyType: wire.ADDITIONAL_KEY_EXCHANGE, Data: []byte("no such link")})
	n.flush()
	if got := messagesTo(t, gw, cl, clientAP, hasNotify(wire.STATE_NOT_FOUND)); len(got) != 1 || !got[0].Header.IsResponse() ||
		got[0].Header.Exchange != wire.IKE_FOLLOWUP_KE {
		t.Fatalf("%d STATE_NOT_FOUND responses", len(got))
	}
	g, c := checkChildPair(t, gw, cl)
	if g.SPI != g0.SPI || c.SPI != c0.SPI || len(gw.inbound) != 1 || gw.hasEvent(EventDeleted) != nil {
		t.Fatal("the refused IKE_FOLLOWUP_KE changed the SAs")
	}
	// A stale link: the gateway's series of a real rekey, replayed after it ended.
	n.apply(cl, cl.e.RekeyChild(n.now, onlyInbound(t, cl)))
	sa := followupRequest(t, n, cl)
	link := slices.Clone(wire.FindNotify(sa.win.pending.payloads, wire.ADDITIONAL_KEY_EXCHANGE).Data)
	quiesce(n, nil)
	n.inject(cl, clientAP, gwAP, wire.IKE_FOLLOWUP_KE, &wire.KE{Group: wire.KE_MLKEM768, Data: kex.PublicKey()},
		&wire.Notify{NotifyType: wire.ADDITIONAL_KEY_EXCHANGE, Data: link})
	inBefore := len(gw.inbound)
	n.flush()
	if got := messagesTo(t, gw, cl, clientAP, hasNotify(wire.STATE_NOT_FOUND)); len(got) != 2 {
		t.Fatalf("%d STATE_NOT_FOUND responses, want 2", len(got))
	}
	if len(gw.inbound) != inBefore || gw.hasEvent(EventDeleted) != nil {
		t.Fatal("the stale link installed something or ended the SA")
	}
	oneChildEach(t, n, gw, cl)
	noHalfSA(t, gw, cl)
}

// The initiator's IKE_FOLLOWUP_KE is lost until the responder forgot the series
// (followupTimeout): its retransmission is answered STATE_NOT_FOUND, the rekey fails
// cleanly (no half SA, the old Child SA carries on) and is tried again, successfully.
func TestFollowupLost(t *testing.T) {
	n, gw, cl := hybridPair(t, "aes128gcm16-prfsha256-x25519", nil)
	g0, _ := checkChildPair(t, gw, cl)
	start := n.now
	lost := 0
	n.drop = func(d datagram) bool {
		h, err := wire.ParseHeader(d.data)
		if err == nil && h.Exchange == wire.IKE_FOLLOWUP_KE && !h.IsResponse() && n.now.Before(start.Add(followupTimeout)) {
			lost++
			return true
		}
		return false
	}
	n.apply(cl, cl.e.RekeyChild(n.now, onlyInbound(t, cl)))
	n.run(time.Minute, func() bool { return countExchanges(gw, wire.IKE_FOLLOWUP_KE, true) > 0 })
	if lost < 3 || n.now.Sub(start) < followupTimeout {
		t.Fatalf("%d datagrams lost, answered after %v", lost, n.now.Sub(start))
	}
	n.flush()
	if len(messagesTo(t, gw, cl, clientAP, hasNotify(wire.STATE_NOT_FOUND))) != 1 {
		t.Fatal("the late IKE_FOLLOWUP_KE was not answered STATE_NOT_FOUND")
	}
	noHalfSA(t, gw, cl)
	g, _ := checkChildPair(t, gw, cl)
	if g.SPI != g0.SPI || len(gw.inbound) != 1 || len(cl.inbound) != 1 || gw.hasEvent(EventDeleted) != nil || cl.hasEvent(EventDeleted) != nil {
		t.Fatal("the failed rekey left something, or the old Child SA went")
	}
	c := onlySA(t, cl).children[0]
	if c.state != childInstalled || c.rekeyAt.IsZero() {
		t.Fatalf("the Child SA is %v, retry at %v", c.state, c.rekeyAt)
	}
	n.runChecked(retryDelay+10*time.Second, makeBeforeBreak(t, n, gw, cl))
	if g, _ := checkChildPair(t, gw, cl); g.SPI == g0.SPI || g.Suite.String() != hybridESP {
		t.Fatalf("not rekeyed on the retry: %08x %v", g.SPI, g.Suite)
	}
	quiesce(n, makeBeforeBreak(t, n, gw, cl))
	oneChildEach(t, n, gw, cl)
	noHalfSA(t, gw, cl)
}

// A snapshot while a Child SA's additional key exchange runs: the initiator's carries
// its IKE_FOLLOWUP_KE as the pending request, the responder's leaves the series out;
// both encode and decode.
func TestFollowupSnapshot(t *testing.T) {
	n, gw, cl := hybridPair(t, "aes128gcm16-prfsha256-x25519", func(g, c *Config) { g.Exportable, c.Exportable = true, true })
	n.apply(cl, cl.e.RekeyChild(n.now, onlyInbound(t, cl)))
	csa := followupRequest(t, n, cl)
	gsa := onlySA(t, gw)
	if len(gsa.followups) != 1 {
		t.Fatalf("gateway series %d", len(gsa.followups))
	}
	st, err := cl.e.Snapshot(n.now, csa.id)
	if err != nil || st.Pending == nil || wire.ExchangeType(st.Pending.Exchange) != wire.IKE_FOLLOWUP_KE {
		t.Fatalf("client snapshot: %v %+v", err, st.Pending)
	}
	roundTrip(t, st)
	st, err = gw.e.Snapshot(n.now, gsa.id)
	if err != nil || len(st.Children) != 1 {
		t.Fatalf("gateway snapshot: %v, %d Child SAs", err, len(st.Children))
	}
	roundTrip(t, st)
	if _, err := gw.e.Export(n.now, gsa.id); err == nil || !strings.Contains(err.Error(), "IKE_FOLLOWUP_KE") {
		t.Errorf("export during the series: %v", err)
	}
}

// A peer that loses every series (STATE_NOT_FOUND each time): after maxStateNotFound
// attempts in a row the initiator deletes the IKE SA (RFC 9370 2.2.4).
func TestFollowupStateNotFoundRepeated(t *testing.T) {
	n, gw, cl := hybridPair(t, "aes128gcm16-prfsha256-x25519", nil)
	forget := func() {
		for _, sa := range gw.e.store.byID {
			for len(sa.followups) > 0 {
				gw.e.dropFollowup(sa, sa.followups[0])
			}
		}
	}
	n.apply(cl, cl.e.RekeyChild(n.now, onlyInbound(t, cl)))
	n.runChecked(time.Duration(maxStateNotFound)*retryDelay+5*time.Second, forget)
	// (The answers, STATE_NOT_FOUND, cannot be opened any more: the SA is gone.)
	if got := countExchanges(gw, wire.IKE_FOLLOWUP_KE, true); got != maxStateNotFound {
		t.Errorf("%d IKE_FOLLOWUP_KE answers", got)
	}
	if requestsOf(cl, wire.CREATE_CHILD_SA) != maxStateNotFound {
		t.Errorf("%d rekey attempts, want %d", requestsOf(cl, wire.CREATE_CHILD_SA), maxStateNotFound)
	}
	ev := cl.hasEvent(EventDeleted)
	if ev == nil || !strings.Contains(ev.Reason, "STATE_NOT_FOUND") {
		t.Fatalf("client events %v", cl.events)
	}
}

// The peer asks to rekey a Child SA whose rekey of ours is in its IKE_FOLLOWUP_KE
// exchange (our CREATE_CHILD_SA done): TEMPORARY_FAILURE (RFC 9370 2.2.4), and ours
// completes.
func TestFollowupRekeyDuringSeries(t *testing.T) {
	n, gw, cl := hybridPair(t, "aes128gcm16-prfsha256-x25519", nil)
	n.apply(cl, cl.e.RekeyChild(n.now, onlyInbound(t, cl)))
	followupRequest(t, n, cl)
	held := n.inflight
	n.inflight = nil
	gsa := onlySA(t, gw)
	c := gsa.children[0]
	cr, ps, err := gw.e.newChildRequest(gsa, c.cfg, wire.DH_X25519, c, c.localTS, c.remoteTS)
	if err != nil {
		t.Fatal(err)
	}
	gw.e.releaseSPI(gsa, cr.spi)
	n.inject(gw, gwAP, clientAP, wire.CREATE_CHILD_SA, ps...)
	n.flush()
	if got := messagesTo(t, cl, gw, netip.AddrPort{}, hasNotify(wire.TEMPORARY_FAILURE)); len(got) != 1 {
		t.Fatalf("%d TEMPORARY_FAILURE answers", len(got))
	}
	n.inflight = held
	n.runChecked(20*time.Second, makeBeforeBreak(t, n, gw, cl))
	checkHybridChild(t, n, gw, cl)
}

// An SA with additional key exchanges keeps them through its state (a cluster's move or
// take-over): the state names them (add_ke), and the importing node shows the same
// proposals as the exporting one.
func TestHybridStateKeepsAdditionalKE(t *testing.T) {
	node := func() Config {
		cfg := gatewayConfig(t, hybridIKE, hybridESP)
		cfg.Connections[0].LocalAddrs = []netip.Addr{gwAddr, gwAddr2}
		cfg.Exportable = true
		return cfg
	}
	n := newTestNet(t)
	a := n.add("gateway-a", gwAddr, node())
	cl := n.add("client", clientAddr, clientConfig(t, hybridIKE, hybridESP))
	b := n.add("gateway-b", gwAddr2, node())
	n.apply(cl, cl.e.StartAll(n.now))
	if !n.run(time.Minute, established(a, cl)) {
		t.Fatalf("not established: %v %v", cl.events, a.events)
	}
	// The Child SA of IKE_AUTH has no key exchange of its own: rekey it with PFS and
	// ML-KEM.
	n.apply(cl, cl.e.RekeyChild(n.now, onlyInbound(t, cl)))
	if !n.run(time.Minute, func() bool {
		s := a.e.Status(n.now)
		return len(s) == 1 && len(s[0].Children) == 1 && s[0].Children[0].Proposal == hybridESP
	}) {
		t.Fatalf("the Child SA was not rekeyed: %+v", a.e.Status(n.now))
	}
	st, err := a.e.Snapshot(n.now, onlySA(t, a).id)
	if err != nil {
		t.Fatal(err)
	}
	st = roundTrip(t, st)
	if !slices.Equal(st.Suite.AddKE, []uint16{uint16(wire.KE_MLKEM768)}) || len(st.Children) != 1 ||
		!slices.Equal(st.Children[0].Suite.AddKE, []uint16{uint16(wire.KE_MLKEM768)}) {
		t.Fatalf("state suites: IKE %+v, Child SAs %+v", st.Suite, st.Children)
	}
	// A state of more methods than RFC 9370 has is refused.
	bad := st
	bad.Suite.AddKE = make([]uint16, 8)
	if _, _, err := b.e.Import(n.now, bad); err == nil || !strings.Contains(err.Error(), "additional key exchanges") {
		t.Errorf("import of 8 additional key exchanges: %v", err)
	}
	if _, acts, err := b.e.Import(n.now, st); err != nil {
		t.Fatal(err)
	} else {
		n.apply(b, acts)
	}
	for _, ep := range []*endpoint{a, b} {
		s := ep.e.Status(n.now)
		if len(s) != 1 || s[0].Proposal != hybridIKE || len(s[0].Children) != 1 || s[0].Children[0].Proposal != hybridESP {
			t.Errorf("%s status: %+v", ep.name, s)
		}
	}
}
