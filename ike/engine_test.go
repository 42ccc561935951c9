package ike

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/wire"
)

// checkChildPair asserts that the two sides installed matching halves of one Child SA.
// childView is one side's installed Child SA: its outbound half and the inbound half
// that pairs with the peer's outbound.
type childView struct {
	InstallOutbound
	In InstallInbound
}

// checkChildPair asserts that each side has one flow and that each side's outbound SA
// is installed inbound at the other with the same keys.
func checkChildPair(t *testing.T, gw, cl *endpoint) (childView, childView) {
	t.Helper()
	if len(gw.outbound) != 1 || len(cl.outbound) != 1 {
		t.Fatalf("outbound flows: gateway %d, client %d; want 1 each", len(gw.outbound), len(cl.outbound))
	}
	var g, c childView
	for _, x := range gw.outbound {
		g.InstallOutbound = x
	}
	for _, x := range cl.outbound {
		c.InstallOutbound = x
	}
	var ok1, ok2 bool
	g.In, ok1 = gw.inbound[c.SPI]
	c.In, ok2 = cl.inbound[g.SPI]
	if !ok1 || !ok2 {
		t.Fatalf("outbound SPIs not installed inbound at the peer: gw out %08x, client out %08x", g.SPI, c.SPI)
	}
	if !bytes.Equal(g.In.Keys.Encr, c.Keys.Encr) || !bytes.Equal(c.In.Keys.Encr, g.Keys.Encr) ||
		!bytes.Equal(g.In.Keys.Integ, c.Keys.Integ) || !bytes.Equal(c.In.Keys.Integ, g.Keys.Integ) {
		t.Fatal("Child SA keys do not match between the peers")
	}
	if bytes.Equal(g.In.Keys.Encr, g.Keys.Encr) {
		t.Fatal("inbound and outbound keys are equal")
	}
	if g.Suite != c.Suite || g.In.Suite != c.Suite {
		t.Fatalf("suites differ: %v vs %v", g.Suite, c.Suite)
	}
	return g, c
}

func TestEstablishEveryProposalFamily(t *testing.T) {
	cases := []struct{ ike, esp, wantIKE, wantESP string }{
		{"aes128gcm16-prfsha256-x25519", "aes128gcm16", "aes128gcm16-prfsha256-x25519", "aes128gcm16"},
		{"aes256-sha256-modp2048", "aes256-sha256", "aes256-sha256-prfsha256-modp2048", "aes256-sha256"},
		{"chacha20poly1305-prfsha256-ecp256", "chacha20poly1305", "chacha20poly1305-prfsha256-ecp256", "chacha20poly1305"},
		{"aes256gcm16-prfsha384-ecp384", "aes256gcm16-esn", "aes256gcm16-prfsha384-ecp384", "aes256gcm16-esn"},
		{"aes128-sha512-prfsha512-modp3072", "aes128-sha256", "aes128-sha512-prfsha512-modp3072", "aes128-sha256"},
		{"aes128gcm16-prfsha256-x25519", "aes256gcm16", "aes128gcm16-prfsha256-x25519", "aes256gcm16"},
	}
	for _, tc := range cases {
		t.Run(tc.ike+"/"+tc.esp, func(t *testing.T) {
			n, gw, cl := pair(t, tc.ike, tc.esp, nil)
			if !n.run(time.Minute, established(gw, cl)) {
				t.Fatalf("not established; client events %v, gateway events %v", cl.events, gw.events)
			}
			g, c := checkChildPair(t, gw, cl)
			if got := c.Suite.String(); got != tc.wantESP {
				t.Errorf("ESP suite %q, want %q", got, tc.wantESP)
			}
			if c.Suite.ESN != strings.Contains(tc.esp, "esn") {
				t.Errorf("ESN %v", c.Suite.ESN)
			}
			cs := cl.e.Status(n.now)
			gs := gw.e.Status(n.now)
			if len(cs) != 1 || len(gs) != 1 {
				t.Fatalf("status: %d client SAs, %d gateway SAs", len(cs), len(gs))
			}
			if cs[0].Proposal != tc.wantIKE || gs[0].Proposal != tc.wantIKE {
				t.Errorf("IKE proposal client %q gateway %q, want %q", cs[0].Proposal, gs[0].Proposal, tc.wantIKE)
			}
			// The client got the first address of the pool, narrowed into its TSi.
			vip := netip.MustParseAddr("198.18.100.1")
			if !slices.Equal(cl.vips, []netip.Addr{vip}) {
				t.Errorf("client virtual IPs %v, want %v", cl.vips, vip)
			}
			if got := tsStrings(c.LocalTS); !slices.Equal(got, []string{"198.18.100.1/32"}) {
				t.Errorf("client local TS %v", got)
			}
			// The gateway narrowed the client's 198.18.0.0/16 to its own /24.
			if got := tsStrings(c.RemoteTS); !slices.Equal(got, []string{"198.18.0.0/24"}) {
				t.Errorf("client remote TS %v", got)
			}
			if got := tsStrings(g.RemoteTS); !slices.Equal(got, []string{"198.18.100.1/32"}) {
				t.Errorf("gateway remote TS %v", got)
			}
			// ESP runs on the NAT-T port on both sides.
			if c.Remote != netip.AddrPortFrom(gwAddr, 4500) || c.Local != netip.AddrPortFrom(clientAddr, 4500) {
				t.Errorf("client ESP endpoints %v -> %v", c.Local, c.Remote)
			}
			if g.Remote != netip.AddrPortFrom(clientAddr, 4500) || g.Local != netip.AddrPortFrom(gwAddr, 4500) {
				t.Errorf("gateway ESP endpoints %v -> %v", g.Local, g.Remote)
			}
			if cs[0].Role != "initiator" || gs[0].Role != "responder" || !cs[0].Mobike || !gs[0].Mobike || !gs[0].RMobike || !cs[0].RMobike {
				t.Errorf("roles/mobike: client %+v gateway %+v", cs[0], gs[0])
			}
			if gs[0].RemoteID != "alice@example.org" || cs[0].RemoteID != "gw.example.org" {
				t.Errorf("identities: gateway sees %q, client sees %q", gs[0].RemoteID, cs[0].RemoteID)
			}
			if len(cl.keylogs) != 1 || len(gw.keylogs) != 1 || !bytes.Equal(cl.keylogs[0].SKei, gw.keylogs[0].SKei) {
				t.Error("key log entries missing or different")
			}
		})
	}
}

func TestPortFloatAndForcedEncapsulation(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", nil)
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	if len(cl.sent) < 2 {
		t.Fatalf("client sent %d datagrams", len(cl.sent))
	}
	if cl.sent[0].from.Port() != 500 || cl.sent[0].to.Port() != 500 {
		t.Errorf("IKE_SA_INIT went %v -> %v, want port 500", cl.sent[0].from, cl.sent[0].to)
	}
	if cl.sent[1].from.Port() != 4500 || cl.sent[1].to.Port() != 4500 {
		t.Errorf("IKE_AUTH went %v -> %v, want port 4500", cl.sent[1].from, cl.sent[1].to)
	}
	// Without a NAT, the fake NAT_DETECTION_SOURCE_IP makes each side see the other
	// behind a NAT; neither is behind one itself, so neither sends keepalives.
	cs, gs := cl.e.Status(n.now)[0], gw.e.Status(n.now)[0]
	if !cs.NATRemote || !gs.NATRemote || cs.NATLocal || gs.NATLocal || !cs.Encap || !gs.Encap {
		t.Errorf("NAT flags client %v/%v gateway %v/%v encap %v/%v", cs.NATLocal, cs.NATRemote, gs.NATLocal, gs.NATRemote, cs.Encap, gs.Encap)
	}
	for _, ep := range []*endpoint{cl, gw} {
		for _, c := range ep.outbound {
			if c.Keepalive {
				t.Errorf("%s sends NAT keepalives without a NAT", ep.name)
			}
		}
	}
}

func TestNoEncapNoNAT(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		g.Connections[0].Encap = false
		c.Connections[0].Encap = false
	})
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	cs, gs := cl.e.Status(n.now)[0], gw.e.Status(n.now)[0]
	if cs.NATRemote || gs.NATRemote || cs.NATLocal || gs.NATLocal {
		t.Errorf("NAT detected without a NAT: client %v/%v gateway %v/%v", cs.NATLocal, cs.NATRemote, gs.NATLocal, gs.NATRemote)
	}
}

func TestNATDetectedBehindMasquerade(t *testing.T) {
	public := netip.MustParseAddr("203.0.113.7")
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		g.Connections[0].Encap = false
		c.Connections[0].Encap = false
	})
	// The client's datagrams leave from public:(port+10000); replies are mapped back.
	n.nat = func(d *datagram) {
		if d.from.Addr() == clientAddr {
			d.from = netip.AddrPortFrom(public, d.from.Port()+10000)
		} else if d.to.Addr() == public {
			d.to = netip.AddrPortFrom(clientAddr, d.to.Port()-10000)
		}
	}
	// Start over now that the NAT is in place.
	n.inflight = nil
	cl.e = mustNew(t, cl.e.cfg)
	n.apply(cl, cl.e.StartAll(n.now))
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatalf("not established: %v %v", cl.events, gw.events)
	}
	cs, gs := cl.e.Status(n.now)[0], gw.e.Status(n.now)[0]
	if !cs.NATLocal || cs.NATRemote || gs.NATLocal || !gs.NATRemote {
		t.Errorf("NAT flags client local=%v remote=%v, gateway local=%v remote=%v", cs.NATLocal, cs.NATRemote, gs.NATLocal, gs.NATRemote)
	}
	if gs.Remote != netip.AddrPortFrom(public, 14500) {
		t.Errorf("gateway sees the client at %v, want the NAT's 4500 mapping", gs.Remote)
	}
	var c InstallOutbound
	for _, x := range cl.outbound {
		c = x
	}
	if !c.Keepalive {
		t.Error("client behind a NAT does not send keepalives")
	}
}

func TestInvalidKERetry(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-ecp256", "aes128gcm16", func(g, c *Config) {
		// The client's first choice of group is x25519, the gateway only takes ecp256.
		c.Connections[0].Proposals = mustIKE(t, "aes128gcm16-prfsha256-x25519-ecp256")
	})
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatalf("not established: %v", cl.events)
	}
	if got := cl.e.Status(n.now)[0].Proposal; got != "aes128gcm16-prfsha256-ecp256" {
		t.Errorf("proposal %q", got)
	}
	// Two IKE_SA_INIT requests went out: x25519 then ecp256.
	inits := 0
	for _, d := range cl.sent {
		h, _ := wire.ParseHeader(d.data)
		if h.Exchange == wire.IKE_SA_INIT {
			inits++
		}
	}
	if inits != 2 {
		t.Errorf("%d IKE_SA_INIT requests, want 2", inits)
	}
	if gw.e.gate.nHalf != 0 || len(gw.e.store.initIndex) != 1 {
		t.Errorf("gateway keeps half-open state: %d (%d indexed)", gw.e.gate.nHalf, len(gw.e.store.initIndex))
	}
}

func TestCookieUnderHalfOpenFlood(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		g.CookieThreshold = 5
		g.HalfOpenTimeout = 10 * time.Second
	})
	// Five other initiators leave half-open SAs behind.
	n.inflight = nil
	for i := 0; i < 5; i++ {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(10 + i)}), 500)
		acts := gw.e.HandleDatagram(n.now, netip.AddrPortFrom(gwAddr, 500), src, initRequest(t, uint64(1000+i)))
		if len(acts) != 1 {
			t.Fatalf("flood request %d: %d actions", i, len(acts))
		}
	}
	if gw.e.gate.nHalf != 5 {
		t.Fatalf("half-open %d, want 5", gw.e.gate.nHalf)
	}
	// The sixth gets a COOKIE and no state.
	src := netip.AddrPortFrom(netip.MustParseAddr("203.0.113.99"), 500)
	acts := gw.e.HandleDatagram(n.now, netip.AddrPortFrom(gwAddr, 500), src, initRequest(t, 77))
	m, err := wire.ParseMessage(acts[0].(Send).Data)
	if err != nil || wire.FindNotify(m.Payloads, wire.COOKIE) == nil || len(m.Payloads) != 1 {
		t.Fatalf("flood answer is not a lone COOKIE: %v %v", m, err)
	}
	if gw.e.gate.nHalf != 5 {
		t.Fatalf("COOKIE answer created state")
	}
	// A cookie made for another SPI does not pass.
	cookie := wire.FindNotify(m.Payloads, wire.COOKIE).Data
	acts = gw.e.HandleDatagram(n.now, netip.AddrPortFrom(gwAddr, 500), src, initRequest(t, 78, &wire.Notify{NotifyType: wire.COOKIE, Data: cookie}))
	if m2, _ := wire.ParseMessage(acts[0].(Send).Data); wire.Find[*wire.SA](m2.Payloads) != nil {
		t.Fatal("cookie accepted for another SPI")
	}
	// The real client restarts and gets through with a cookie.
	n.apply(cl, cl.e.StartAll(n.now))
	if !n.run(5*time.Second, established(gw, cl)) {
		t.Fatalf("client did not get through the cookie: %v", cl.events)
	}
	cookies := 0
	for _, d := range cl.sent {
		m, _ := wire.ParseMessage(d.data)
		if m != nil && len(m.Payloads) > 0 {
			if nt, ok := m.Payloads[0].(*wire.Notify); ok && nt.NotifyType == wire.COOKIE {
				cookies++
			}
		}
	}
	if cookies == 0 {
		t.Error("client never echoed a COOKIE")
	}
	// The half-open SAs of the flood expire.
	n.run(time.Minute, func() bool { return gw.e.gate.nHalf == 0 })
	if gw.e.gate.nHalf != 0 || len(gw.e.store.initIndex) != 1 {
		t.Errorf("half-open SAs did not expire: %d", gw.e.gate.nHalf)
	}
	if len(gw.e.Status(n.now)) != 1 {
		t.Errorf("gateway has %d SAs, want the client's only", len(gw.e.Status(n.now)))
	}
}

func TestAuthenticationFailure(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		c.PSK = pskFunc("not the gateway's secret")
	})
	n.run(time.Minute, func() bool { return cl.hasEvent(EventFailed) != nil })
	ev := cl.hasEvent(EventFailed)
	if ev == nil || ev.Reason != "AUTHENTICATION_FAILED" {
		t.Fatalf("client events %v, want failure AUTHENTICATION_FAILED", cl.events)
	}
	if len(gw.outbound) != 0 || len(cl.outbound) != 0 {
		t.Error("a Child SA was installed despite the failure")
	}
	if len(gw.e.store.byID) != 0 || len(cl.e.store.byID) != 0 || gw.e.gate.nHalf != 0 {
		t.Errorf("state left: gateway %d SAs (%d half-open), client %d", len(gw.e.store.byID), gw.e.gate.nHalf, len(cl.e.store.byID))
	}
}

func TestResponderAuthFailureSeenByInitiator(t *testing.T) {
	// The gateway uses another secret for its own AUTH: the client refuses it and
	// tells the gateway.
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", nil)
	gw.e.cfg.PSK = func(local, remote string) ([]byte, bool) { return []byte(testPSK), true }
	realAuth := cl.e.cfg.PSK
	calls := 0
	cl.e.cfg.PSK = func(local, remote string) ([]byte, bool) {
		calls++
		if calls == 1 {
			return realAuth(local, remote)
		}
		return []byte("wrong"), true
	}
	n.run(time.Minute, func() bool { return cl.hasEvent(EventFailed) != nil && len(gw.e.store.byID) == 0 })
	ev := cl.hasEvent(EventFailed)
	if ev == nil || !strings.HasPrefix(ev.Reason, "AUTHENTICATION_FAILED") {
		t.Fatalf("client events %v", cl.events)
	}
	if len(gw.e.store.byID) != 0 {
		t.Errorf("gateway kept the SA after AUTHENTICATION_FAILED")
	}
}

func TestNoProposalChosen(t *testing.T) {
	n, gw, cl := pair(t, "aes256gcm16-prfsha384-ecp384", "aes128gcm16", func(g, c *Config) {
		c.Connections[0].Proposals = mustIKE(t, "aes128-sha256-modp2048")
	})
	n.run(time.Minute, func() bool { return cl.hasEvent(EventFailed) != nil })
	if ev := cl.hasEvent(EventFailed); ev == nil || ev.Reason != "NO_PROPOSAL_CHOSEN" {
		t.Fatalf("client events %v", cl.events)
	}
	if len(gw.e.store.byID) != 0 {
		t.Error("gateway kept state")
	}
}

func TestChildFailures(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(g, c *Config)
		reason string
	}{
		{"ts", func(g, c *Config) {
			g.Connections[0].Children[0].LocalTS = []TSConfig{prefixTS("10.0.0.0/8")}
		}, "TS_UNACCEPTABLE"},
		{"esp", func(g, c *Config) {
			g.Connections[0].Children[0].ESPProposals = mustESP(t, "chacha20poly1305")
		}, "NO_PROPOSAL_CHOSEN"},
		{"pool", func(g, c *Config) {
			g.Pools[0].Addrs = []netip.Prefix{netip.MustParsePrefix("2001:db8:100::/64")}
		}, "INTERNAL_ADDRESS_FAILURE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", tc.mutate)
			n.run(time.Minute, func() bool {
				return cl.hasEvent(EventChildFailed) != nil && len(gw.e.store.byID) == 0 && len(cl.e.store.byID) == 0
			})
			ev := cl.hasEvent(EventChildFailed)
			if ev == nil || !strings.HasPrefix(ev.Reason, tc.reason) {
				t.Fatalf("client events %v, want %s", cl.events, tc.reason)
			}
			if len(gw.outbound) != 0 || len(cl.outbound) != 0 {
				t.Error("Child SA installed")
			}
			// The client deletes the useless IKE SA; nothing stays behind.
			if len(gw.e.store.byID) != 0 || len(cl.e.store.byID) != 0 {
				t.Errorf("state left: gateway %d, client %d", len(gw.e.store.byID), len(cl.e.store.byID))
			}
			for _, p := range gw.e.pools {
				if len(p.inUse) != 0 {
					t.Error("virtual IP not released")
				}
			}
		})
	}
}

func TestLossAndReordering(t *testing.T) {
	for _, loss := range []float64{0.1, 0.3} {
		t.Run("", func(t *testing.T) {
			n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", nil)
			n.reorder = true
			n.drop = func(datagram) bool { return n.rng.Float64() < loss }
			if !n.run(10*time.Minute, established(gw, cl)) {
				t.Fatalf("loss %.0f%%: not established: client %v gateway %v", loss*100, cl.events, gw.events)
			}
			checkChildPair(t, gw, cl)
		})
	}
}

func TestRetransmittedRequestGetsCachedResponse(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", nil)
	// Lose the gateway's first IKE_AUTH response.
	lost := 0
	n.drop = func(d datagram) bool {
		h, _ := wire.ParseHeader(d.data)
		if d.from.Addr() == gwAddr && h.Exchange == wire.IKE_AUTH && lost == 0 {
			lost++
			return true
		}
		return false
	}
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	var auths [][]byte
	for _, d := range gw.sent {
		if h, _ := wire.ParseHeader(d.data); h.Exchange == wire.IKE_AUTH {
			auths = append(auths, d.data)
		}
	}
	if len(auths) != 2 || !bytes.Equal(auths[0], auths[1]) {
		t.Fatalf("gateway sent %d IKE_AUTH responses; retransmission must repeat the first byte for byte", len(auths))
	}
	if gw.e.Drops().Retransmits.Load() != 1 {
		t.Errorf("retransmits counter %d", gw.e.Drops().Retransmits.Load())
	}
	if len(gw.outbound) != 1 {
		t.Error("the retransmitted request was processed twice")
	}
	// The IKE_SA_INIT response is also cached byte for byte.
	h := cl.sent[0]
	acts := gw.e.HandleDatagram(n.now, h.to, h.from, h.data)
	if len(acts) != 0 || len(gw.e.store.byID) != 1 {
		// Once IKE_AUTH arrived the initiator has the response: a late duplicate is
		// dropped and creates nothing.
		t.Errorf("late IKE_SA_INIT duplicate produced %d actions, %d SAs", len(acts), len(gw.e.store.byID))
	}
}

func TestInitRetransmitBackoff(t *testing.T) {
	n, _, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		c.Retransmit = Retransmit{Timeout: 2 * time.Second, Tries: 3, Base: 2}
	})
	n.drop = func(datagram) bool { return true }
	n.run(time.Hour, func() bool { return cl.hasEvent(EventFailed) != nil })
	// Sends at 0, 2, 6, 14 s; failure at 30 s.
	if len(cl.sent) != 4 {
		t.Fatalf("%d transmissions, want 4", len(cl.sent))
	}
	for i := 1; i < len(cl.sent); i++ {
		if !bytes.Equal(cl.sent[i].data, cl.sent[0].data) {
			t.Error("retransmission differs from the original")
		}
	}
	ev := cl.hasEvent(EventFailed)
	if ev == nil || !strings.Contains(ev.Reason, "timeout") {
		t.Fatalf("events %v", cl.events)
	}
	if got := n.now.Sub(t0); got != 30*time.Second {
		t.Errorf("gave up after %v, want 30s (2+4+8+16)", got)
	}
}

func TestDeleteFromClient(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", nil)
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	n.apply(cl, cl.e.DeleteAll(n.now))
	if !cl.e.Deleting() {
		t.Error("client not waiting for the Delete response")
	}
	n.run(time.Minute, func() bool { return len(cl.e.store.byID) == 0 && len(gw.e.store.byID) == 0 })
	if len(cl.e.store.byID) != 0 || len(gw.e.store.byID) != 0 {
		t.Fatalf("SAs left: client %d gateway %d", len(cl.e.store.byID), len(gw.e.store.byID))
	}
	if len(cl.e.store.byPeer) != 0 || len(gw.e.store.byPeer) != 0 {
		t.Errorf("peer index not emptied: client %d gateway %d", len(cl.e.store.byPeer), len(gw.e.store.byPeer))
	}
	if len(gw.removedOut) != 1 || len(cl.removedOut) != 1 || len(gw.outbound) != 0 || len(gw.inbound) != 0 || len(cl.inbound) != 0 {
		t.Errorf("removed: gateway %d/%d client %d/%d", len(gw.removedIn), len(gw.removedOut), len(cl.removedIn), len(cl.removedOut))
	}
	if ev := gw.hasEvent(EventDeleted); ev == nil || ev.Reason != "deleted by peer" {
		t.Errorf("gateway events %v", gw.events)
	}
	for _, p := range gw.e.pools {
		if len(p.inUse) != 0 {
			t.Error("virtual IP not released")
		}
	}
}

func TestDPDDetectsDeadPeer(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		g.Connections[0].DPDDelay = 10 * time.Second
		g.Retransmit = Retransmit{Timeout: time.Second, Tries: 2, Base: 2}
		c.Connections[0].DPDDelay = 0
	})
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	start := n.now
	// Liveness checks are answered while the client is there.
	n.run(35*time.Second, nil)
	if len(gw.e.store.byID) != 1 {
		t.Fatal("gateway dropped a live peer")
	}
	dpds := 0
	for _, d := range gw.sent {
		if h, _ := wire.ParseHeader(d.data); h.Exchange == wire.INFORMATIONAL && !h.IsResponse() {
			dpds++
		}
	}
	if dpds < 3 {
		t.Errorf("%d liveness checks in 35 s with dpd_delay 10s", dpds)
	}
	// The client vanishes.
	n.eps = n.eps[:1]
	n.run(time.Minute, func() bool { return len(gw.e.store.byID) == 0 })
	if len(gw.e.store.byID) != 0 {
		t.Fatal("dead peer not detected")
	}
	if ev := gw.hasEvent(EventDeleted); ev == nil || !strings.Contains(ev.Reason, "timeout") {
		t.Errorf("gateway events %v", gw.events)
	}
	if took := n.now.Sub(start); took > 35*time.Second+10*time.Second+time.Second+2*time.Second+4*time.Second+time.Second {
		t.Errorf("took %v", took)
	}
}

// While ESP arrives on its Child SA, the peer is alive: no liveness check goes out
// (RFC 7296 2.4); once ESP stops for dpd_delay, the check is sent again.
func TestDPDSkippedWhileESPArrives(t *testing.T) {
	espSeen := map[uint32]time.Time{}
	asked := map[uint32]int{}
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		g.Connections[0].DPDDelay = 10 * time.Second
		g.InboundActivity = func(spi uint32) time.Time { asked[spi]++; return espSeen[spi] }
		c.Connections[0].DPDDelay = 0
	})
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	checks := func() int {
		k := 0
		for _, d := range gw.sent {
			if h, _ := wire.ParseHeader(d.data); h.Exchange == wire.INFORMATIONAL && !h.IsResponse() {
				k++
			}
		}
		return k
	}
	g, _ := checkChildPair(t, gw, cl)
	spiIn := g.In.SPI
	// until runs the network up to the instant at.
	until := func(at time.Time) {
		n.run(at.Sub(n.now), nil)
		n.now = at
	}
	start := n.now
	// ESP arrives every 4 s for a minute: no check, and only our inbound SPI is asked.
	for at := start; !at.After(start.Add(time.Minute)); at = at.Add(4 * time.Second) {
		until(at)
		espSeen[spiIn] = at
	}
	last := espSeen[spiIn]
	if k := checks(); k != 0 {
		t.Errorf("%d liveness checks while ESP arrived", k)
	}
	if len(asked) != 1 || asked[spiIn] == 0 {
		t.Errorf("activity asked for %v, want only the inbound SPI %08x", asked, spiIn)
	}
	// ESP stops: a check goes out dpd_delay after the last packet, and is answered.
	until(last.Add(10*time.Second - time.Millisecond))
	if k := checks(); k != 0 {
		t.Errorf("%d checks before dpd_delay passed without ESP", k)
	}
	if at, ok := gw.e.NextDeadline(); !ok || !at.Equal(last.Add(10*time.Second)) {
		t.Errorf("next wake-up %v (%v), want dpd_delay after the last packet, %v", at, ok, last.Add(10*time.Second))
	}
	until(last.Add(10 * time.Second))
	if k := checks(); k != 1 || gw.e.Count().LivenessChecks != 1 {
		t.Errorf("%d checks (%d counted) once ESP stopped for dpd_delay, want 1", k, gw.e.Count().LivenessChecks)
	}
	n.run(time.Second, nil)
	if len(gw.e.store.byID) != 1 {
		t.Fatal("gateway dropped a live peer")
	}
}

func TestDPDRestartReestablishes(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		c.Connections[0].DPDDelay = 5 * time.Second
		c.Retransmit = Retransmit{Timeout: time.Second, Tries: 2, Base: 2}
	})
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	// The gateway restarts: it forgets everything.
	gw2 := n.add("gateway2", gwAddr, gatewayConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16"))
	n.eps = []*endpoint{gw2, cl}
	cl.events = nil
	if !n.run(time.Minute, established(cl, gw2)) {
		t.Fatalf("client did not re-establish: %v", cl.events)
	}
	if cl.hasEvent(EventDeleted) == nil {
		t.Error("no deletion event for the dead SA")
	}
}

func TestUnsupportedCriticalPayload(t *testing.T) {
	n := newTestNet(t)
	gw := n.add("gateway", gwAddr, gatewayConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16"))
	req := initRequest(t, 42, &wire.Unknown{PayloadType: 200, Critical: true, Body: []byte{1, 2, 3}})
	acts := gw.e.HandleDatagram(n.now, netip.AddrPortFrom(gwAddr, 500), netip.AddrPortFrom(clientAddr, 500), req)
	if len(acts) != 1 {
		t.Fatalf("%d actions", len(acts))
	}
	m, err := wire.ParseMessage(acts[0].(Send).Data)
	if err != nil {
		t.Fatal(err)
	}
	nt := wire.FindNotify(m.Payloads, wire.UNSUPPORTED_CRITICAL_PAYLOAD)
	if nt == nil || !bytes.Equal(nt.Data, []byte{200}) {
		t.Fatalf("response %+v", m.Payloads)
	}
	if len(gw.e.store.byID) != 0 {
		t.Error("state created")
	}
	// Not critical: skipped, the SA proceeds.
	req = initRequest(t, 43, &wire.Unknown{PayloadType: 200, Body: []byte{1, 2, 3}})
	acts = gw.e.HandleDatagram(n.now, netip.AddrPortFrom(gwAddr, 500), netip.AddrPortFrom(clientAddr, 500), req)
	m, _ = wire.ParseMessage(acts[0].(Send).Data)
	if wire.Find[*wire.SA](m.Payloads) == nil {
		t.Fatal("non-critical unknown payload was not skipped")
	}
}

func TestGarbageIsDroppedAndCounted(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", nil)
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	la, ra := netip.AddrPortFrom(gwAddr, 4500), netip.AddrPortFrom(clientAddr, 4500)
	inputs := [][]byte{nil, {1}, bytes.Repeat([]byte{0}, 27), bytes.Repeat([]byte{0xff}, 28), bytes.Repeat([]byte{0x20}, 100)}
	for _, in := range inputs {
		if acts := gw.e.HandleDatagram(n.now, la, ra, in); len(acts) != 0 {
			t.Errorf("garbage %x answered", in)
		}
	}
	// A valid-looking INFORMATIONAL with a bad ICV for the real SA.
	var good []byte
	for _, d := range cl.sent {
		if h, _ := wire.ParseHeader(d.data); h.Exchange == wire.IKE_AUTH {
			good = bytes.Clone(d.data)
		}
	}
	good[len(good)-1] ^= 1
	if acts := gw.e.HandleDatagram(n.now, la, ra, good); len(acts) != 0 {
		t.Error("tampered message answered")
	}
	d := gw.e.Drops()
	if d.Malformed.Load() < 4 {
		t.Errorf("malformed counter %d", d.Malformed.Load())
	}
	// The tampered IKE_AUTH copy has the message ID of an answered request, but is not
	// the same request: not answered, counted, never processed.
	if d.Decrypt.Load() != 1 || d.Retransmits.Load() != 0 {
		t.Errorf("decrypt %d retransmits %d", d.Decrypt.Load(), d.Retransmits.Load())
	}
	if len(gw.outbound) != 1 {
		t.Error("tampered message changed state")
	}
}

func TestIPv6Outer(t *testing.T) {
	gw6 := netip.MustParseAddr("2001:db8::1")
	cl6 := netip.MustParseAddr("2001:db8:1::10")
	n := newTestNet(t)
	gc := gatewayConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
	gc.Connections[0].LocalAddrs = []netip.Addr{gw6}
	gc.Pools[0].Addrs = append(gc.Pools[0].Addrs, netip.MustParsePrefix("2001:db8:100::/64"))
	gc.Connections[0].Children[0].LocalTS = append(gc.Connections[0].Children[0].LocalTS, prefixTS("2001:db8:200::/64"))
	cc := clientConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
	cc.Connections[0].RemoteAddrs = []netip.Addr{gw6}
	cc.Connections[0].VIPs = []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}
	cc.Connections[0].Children[0].RemoteTS = append(cc.Connections[0].Children[0].RemoteTS, prefixTS("2001:db8:200::/48"))
	gw := n.add("gateway", gw6, gc)
	cl := n.add("client", cl6, cc)
	n.apply(cl, cl.e.StartAll(n.now))
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatalf("not established: %v %v", cl.events, gw.events)
	}
	_, c := checkChildPair(t, gw, cl)
	if got := tsStrings(c.LocalTS); !slices.Equal(got, []string{"198.18.100.1/32", "2001:db8:100::1/128"}) {
		t.Errorf("client local TS %v", got)
	}
	if got := tsStrings(c.RemoteTS); !slices.Equal(got, []string{"198.18.0.0/24", "2001:db8:200::/64"}) {
		t.Errorf("client remote TS %v", got)
	}
	if c.Remote != netip.AddrPortFrom(gw6, 4500) {
		t.Errorf("remote %v", c.Remote)
	}
	if len(cl.vips) != 2 {
		t.Errorf("vips %v", cl.vips)
	}
}

func TestTwoClientsDistinctAddresses(t *testing.T) {
	n := newTestNet(t)
	gw := n.add("gateway", gwAddr, gatewayConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16"))
	c1 := n.add("c1", clientAddr, clientConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16"))
	cc := clientConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
	cc.Connections[0].LocalID = "bob@example.org"
	c2 := n.add("c2", netip.MustParseAddr("192.0.2.11"), cc)
	n.apply(c1, c1.e.StartAll(n.now))
	n.apply(c2, c2.e.StartAll(n.now))
	if !n.run(time.Minute, func() bool { return c1.hasEvent(EventEstablished) != nil && c2.hasEvent(EventEstablished) != nil }) {
		t.Fatal("not established")
	}
	if c1.vips[0] == c2.vips[0] {
		t.Errorf("both clients got %v", c1.vips[0])
	}
	if len(gw.e.Status(n.now)) != 2 {
		t.Error("gateway does not have two SAs")
	}
	c := gw.e.Count()
	if c.IKESAs != 2 || c.Established != 2 || c.ChildSAs != 2 || c.IKESAsCreated != 2 || c.ChildSAsCreated != 2 ||
		c.LivenessChecks != 0 || c.ChildRekeys != 0 || c.CookiesSent != 0 || c.SwitchesSent != 0 ||
		len(c.ByState) != 1 || c.ByState[[2]string{"rw", "established"}] != 2 {
		t.Errorf("gateway counts %+v", c)
	}
}

func TestInitialContactReplacesOldSA(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", nil)
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	// The client restarts (forgets its SA) and connects again.
	cl2 := n.add("client2", clientAddr, clientConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16"))
	n.eps = []*endpoint{gw, cl2}
	n.apply(cl2, cl2.e.StartAll(n.now))
	if !n.run(time.Minute, established(cl2)) {
		t.Fatal("not re-established")
	}
	if got := len(gw.e.Status(n.now)); got != 1 {
		t.Errorf("gateway has %d SAs after INITIAL_CONTACT, want 1", got)
	}
	if len(gw.outbound) != 1 {
		t.Errorf("gateway has %d Child SAs installed", len(gw.outbound))
	}
	// The index of peers by identity holds the new SA only.
	for _, l := range gw.e.store.byPeer {
		if len(gw.e.store.byPeer) != 1 || len(l) != 1 || l[0].state != stateEstablished {
			t.Errorf("peer index: %d identities, %d SAs", len(gw.e.store.byPeer), len(l))
		}
	}
}

func TestHalfOpenLimits(t *testing.T) {
	n := newTestNet(t)
	gc := gatewayConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
	gc.CookieThreshold = 100
	gc.BlockThreshold = 2
	gc.HalfOpenLimit = 5
	gw := n.add("gateway", gwAddr, gc)
	local := netip.AddrPortFrom(gwAddr, 500)
	// One address: two half-open SAs, then it must return a COOKIE; with it, two more,
	// then it is ignored.
	src := netip.AddrPortFrom(netip.MustParseAddr("203.0.113.50"), 500)
	for i := 0; i < 2; i++ {
		if !answered(gw.e.HandleDatagram(n.now, local, src, initRequest(t, uint64(100+i)))) {
			t.Errorf("request %d from one address not answered", i)
		}
	}
	for i := 0; i < 3; i++ {
		spi := uint64(110 + i)
		req := cookieFor(t, gw.e.HandleDatagram(n.now, local, src, initRequest(t, spi)), spi)
		if req == nil {
			t.Fatalf("request %d past the threshold: no COOKIE demanded", i)
		}
		if got := answered(gw.e.HandleDatagram(n.now, local, src, req)); got != (i < 2) {
			t.Errorf("request %d with a cookie: answered %v", i, got)
		}
	}
	if gw.e.Drops().Blocked.Load() != 1 || gw.e.gate.nHalf != 4 {
		t.Errorf("blocked counter %d, half-open %d", gw.e.Drops().Blocked.Load(), gw.e.gate.nHalf)
	}
	// Other addresses: one more fits under the global limit of 5, then nothing.
	for i := 0; i < 3; i++ {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(60 + i)}), 500)
		acts := gw.e.HandleDatagram(n.now, local, src, initRequest(t, uint64(200+i)))
		if want := i < 1; answered(acts) != want {
			t.Errorf("request %d: %d actions", i, len(acts))
		}
	}
	if gw.e.gate.nHalf != 5 || gw.e.Drops().HalfOpenLimit.Load() != 2 {
		t.Errorf("half-open %d, limit drops %d", gw.e.gate.nHalf, gw.e.Drops().HalfOpenLimit.Load())
	}
	// They expire and the counts go back to zero.
	n.run(time.Minute, nil)
	if gw.e.gate.nHalf != 0 || len(gw.e.gate.proved)+len(gw.e.gate.unproved) != 0 || gw.e.PreauthBytes() != 0 {
		t.Errorf("after expiry: %d half-open, %d sources, %d bytes", gw.e.gate.nHalf, len(gw.e.gate.proved)+len(gw.e.gate.unproved), gw.e.PreauthBytes())
	}
}

func TestPoolKeepsLeasesPerFamily(t *testing.T) {
	pl, err := newPool(&PoolConfig{Name: "rw", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.100.0/24"), netip.MustParsePrefix("2001:db8:100::/64")}})
	if err != nil {
		t.Fatal(err)
	}
	a4, _ := pl.allocate("alice", true, netip.Addr{})
	a6, _ := pl.allocate("alice", false, netip.Addr{})
	b4, _ := pl.allocate("bob", true, netip.Addr{})
	pl.release(a4)
	pl.release(a6)
	pl.release(b4)
	// Someone else takes addresses meanwhile; alice and bob get theirs back.
	pl.allocate("carol", true, netip.Addr{})
	r4, _ := pl.allocate("alice", true, netip.Addr{})
	r6, _ := pl.allocate("alice", false, netip.Addr{})
	rb, _ := pl.allocate("bob", true, netip.Addr{})
	if r4 != a4 || r6 != a6 || rb != b4 {
		t.Errorf("leases: alice %v/%v -> %v/%v, bob %v -> %v", a4, a6, r4, r6, b4, rb)
	}
	// Network and broadcast addresses are never handed out.
	small, _ := newPool(&PoolConfig{Name: "s", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.1.0/30")}})
	x, ok1 := small.allocate("a", true, netip.Addr{})
	y, ok2 := small.allocate("b", true, netip.Addr{})
	_, ok3 := small.allocate("c", true, netip.Addr{})
	if !ok1 || !ok2 || ok3 || x.String() != "198.18.1.1" || y.String() != "198.18.1.2" {
		t.Errorf("/30: %v %v %v %v %v", x, ok1, y, ok2, ok3)
	}
}

func TestRestartKeepsTryingWhilePeerIsAway(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		c.Connections[0].DPDDelay = 5 * time.Second
		c.Retransmit = Retransmit{Timeout: time.Second, Tries: 2, Base: 2}
	})
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	// The gateway goes away for two minutes: several restart attempts time out.
	n.eps = []*endpoint{cl}
	n.run(2*time.Minute, nil)
	fails := 0
	for _, ev := range cl.events {
		if ev.Kind == EventFailed {
			fails++
		}
	}
	if fails < 3 {
		t.Fatalf("%d failed restart attempts in two minutes: the client gave up", fails)
	}
	// It comes back: the next attempt succeeds.
	gw2 := n.add("gateway2", gwAddr, gatewayConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16"))
	cl.events = nil
	if !n.run(time.Minute, established(cl, gw2)) {
		t.Fatalf("no re-establishment after the gateway returned: %v", cl.events)
	}
}

// Issue 11: a reload that changes a pool's prefixes must not hand a live SA's virtual
// IP to a second client; one that drops the prefix of a live lease is refused.
func TestReloadKeepsLiveLeases(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", nil)
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	first := cl.vips[0]
	// The pool grows: rebuilt, but the lease stays.
	cfg := gw.e.cfg
	cfg.Pools = []*PoolConfig{{Name: "rw", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.100.0/23")}}}
	if err := gw.e.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	bob := n.add("bob", netip.MustParseAddr("192.0.2.30"), func() Config {
		c := clientConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
		c.Connections[0].LocalID = "bob@example.org"
		return c
	}())
	n.apply(bob, bob.e.StartAll(n.now))
	if !n.run(time.Minute, established(bob)) {
		t.Fatalf("bob not established: %v", bob.events)
	}
	if bob.vips[0] == first {
		t.Fatalf("after the reload %v went to a second client", first)
	}
	// A pool that no longer contains a live lease: refused, the old pools stay.
	cfg.Pools = []*PoolConfig{{Name: "rw", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.200.0/24")}}}
	err := gw.e.Reload(cfg)
	if err == nil || !strings.Contains(err.Error(), first.String()) || !strings.Contains(err.Error(), "alice@example.org") {
		t.Fatalf("reload dropping a live lease: %v", err)
	}
	if !gw.e.pools["rw"].contains(first) {
		t.Error("the refused reload replaced the pools anyway")
	}
}
