package ike

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/wire"
)

// Denial of service before authentication (issue 11): forged sources must not lock out an
// address, one IPv6 /64 must not fill the global limits, cached responses must not be a
// reflector, and what a peer can make us hold before it authenticated is bounded.

var gwInit = netip.AddrPortFrom(gwAddr, 500)

// cookieFor answers a COOKIE demand: it returns the request with the cookie echoed, or
// nil when acts answered something else.
func cookieFor(t *testing.T, acts []Action, spi uint64) []byte {
	t.Helper()
	for _, a := range acts {
		s, ok := a.(Send)
		if !ok {
			continue
		}
		m, err := wire.ParseMessage(s.Data)
		if err != nil {
			continue
		}
		if c := wire.FindNotify(m.Payloads, wire.COOKIE); c != nil && wire.Find[*wire.SA](m.Payloads) == nil {
			return initRequest(t, spi, &wire.Notify{NotifyType: wire.COOKIE, Data: c.Data})
		}
	}
	return nil
}

func answered(acts []Action) bool {
	for _, a := range acts {
		if s, ok := a.(Send); ok {
			if m, err := wire.ParseMessage(s.Data); err == nil && wire.Find[*wire.SA](m.Payloads) != nil {
				return true
			}
		}
	}
	return false
}

// Five forged IKE_SA_INITs with a victim's source address locked the victim out for the
// half-open timeout, again and again.
func TestForgedRequestsDoNotLockOutAnAddress(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", nil)
	n.inflight = nil
	cl.e = mustNew(t, cl.e.cfg)
	victim := netip.AddrPortFrom(clientAddr, 500)
	for i := 0; i < 10; i++ {
		gw.e.HandleDatagram(n.now, gwInit, victim, initRequest(t, uint64(5000+i)))
	}
	n.apply(cl, cl.e.StartAll(n.now))
	if !n.run(5*time.Second, established(gw, cl)) {
		t.Fatalf("the victim could not connect after forged requests from its address: %v (blocked %d)", cl.events, gw.e.Drops().Blocked.Load())
	}
}

// Sources are aggregated per IPv6 /64: one /64 cannot fill the global half-open limit.
func TestIPv6SourcesAggregatedPerPrefix(t *testing.T) {
	n := newTestNet(t)
	gc := gatewayConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
	gc.CookieThreshold = 1000
	gc.BlockThreshold = 5
	gc.HalfOpenLimit = 40
	gc.Connections[0].LocalAddrs = nil // it answers on its IPv6 address too
	gw := n.add("gateway", gwAddr, gc)
	local := netip.AddrPortFrom(netip.MustParseAddr("2001:db8:2::1"), 500)
	for i := 0; i < 200; i++ {
		// The attacker owns the /64: it receives and returns every cookie.
		src := netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x0b, 0xad, 0, 0, 0, 0, 0, 0, 0, 0, byte(i >> 8), byte(i)}), 500)
		spi := uint64(9000 + i)
		acts := gw.e.HandleDatagram(n.now, local, src, initRequest(t, spi))
		if req := cookieFor(t, acts, spi); req != nil {
			gw.e.HandleDatagram(n.now, local, src, req)
		}
	}
	if gw.e.gate.nHalf == 0 {
		t.Fatal("nothing from the /64 was answered")
	}
	if max := 2 * gc.BlockThreshold; gw.e.gate.nHalf > max {
		t.Errorf("one /64 holds %d half-open SAs (at most %d: %d unproven, %d that returned a cookie)", gw.e.gate.nHalf, max, gc.BlockThreshold, gc.BlockThreshold)
	}
	// Someone else still gets in.
	acts := gw.e.HandleDatagram(n.now, gwInit, netip.AddrPortFrom(netip.MustParseAddr("192.0.2.77"), 500), initRequest(t, 1))
	if !answered(acts) {
		t.Errorf("a request from another address was not answered (half-open limit drops %d)", gw.e.Drops().HalfOpenLimit.Load())
	}
}

// A byte-identical replay of an answered request, from any source, got the whole cached
// response each time: a reflector.
func TestCachedResponseReplaysRateLimited(t *testing.T) {
	n, gw, cl := mobikePair(t, func(g, c *Config) { c.Connections[0].DPDDelay = 2 * time.Second })
	n.run(3*time.Second, nil) // a liveness check, answered
	var req []byte
	for _, d := range cl.sent {
		if h, err := wire.ParseHeader(d.data); err == nil && h.Exchange == wire.INFORMATIONAL && !h.IsResponse() {
			req = d.data
		}
	}
	if req == nil {
		t.Fatal("no INFORMATIONAL request from the client")
	}
	sent := func() int { return len(gw.sent) }
	before := sent()
	// Replayed 100 times in one second from one victim, then from 100 victims.
	for i := 0; i < 100; i++ {
		n.apply(gw, gw.e.HandleDatagram(n.now.Add(time.Duration(i)*10*time.Millisecond), gwAP, victim, req))
	}
	fromOne := sent() - before
	before = sent()
	for i := 0; i < 100; i++ {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(100 + i)}), 4500)
		n.apply(gw, gw.e.HandleDatagram(n.now.Add(time.Second+time.Duration(i)*10*time.Millisecond), gwAP, src, req))
	}
	fromMany := sent() - before
	if fromOne > 4 || fromMany > 10 {
		t.Errorf("replays answered: %d of 100 from one source, %d of 100 from 100 sources in a second each", fromOne, fromMany)
	}
	if gw.e.Drops().Map()["ike_replay_limited"] == 0 {
		t.Error("replays beyond the limit are not counted")
	}
	// A real retransmission a little later is still answered.
	before = sent()
	n.apply(gw, gw.e.HandleDatagram(n.now.Add(5*time.Second), gwAP, clientAP, req))
	if sent() == before {
		t.Error("a retransmission from the peer was not answered")
	}
}

// Before IKE_AUTH completes, a message is capped at 10000 octets (as strongSwan's
// max_packet), whether it arrives whole or in fragments.
func TestPreauthMessagesCapped(t *testing.T) {
	n := newTestNet(t)
	gw := n.add("gateway", gwAddr, gatewayConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16"))
	big := &wire.Notify{NotifyType: 50001, Data: bytes.Repeat([]byte{1}, 12000)}
	acts := gw.e.HandleDatagram(n.now, gwInit, netip.AddrPortFrom(clientAddr, 500), initRequest(t, 1, big))
	if answered(acts) || gw.e.gate.nHalf != 0 {
		t.Error("a 12 kB IKE_SA_INIT was answered")
	}
	if gw.e.Drops().Map()["ike_too_large"] == 0 {
		t.Error("not counted")
	}

	// A fragmented IKE_AUTH of 20 kB from a half-open SA.
	cc := clientConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
	cl := n.add("client", clientAddr, cc)
	n.drop = func(d datagram) bool { // keep the client's own IKE_AUTH from arriving
		h, err := wire.ParseHeader(d.data)
		return err == nil && h.Exchange == wire.IKE_AUTH
	}
	n.apply(cl, cl.e.StartAll(n.now))
	n.run(time.Millisecond, nil)
	if gw.e.gate.nHalf != 1 {
		t.Fatalf("half-open %d", gw.e.gate.nHalf)
	}
	csa := onlySA(t, cl)
	if !csa.fragment {
		t.Fatal("fragmentation not negotiated")
	}
	frags, err := cl.e.sealMessage(csa, csa.header(wire.IKE_AUTH, 1, false), []wire.Payload{&wire.Notify{NotifyType: 50001, Data: bytes.Repeat([]byte{2}, 20000)}})
	if err != nil || len(frags) < 10 {
		t.Fatalf("%d fragments: %v", len(frags), err)
	}
	for _, f := range frags {
		gw.e.HandleDatagram(n.now, gwAP, clientAP, f)
		if b := gw.e.PreauthBytes(); b > 12000+4096 {
			t.Fatalf("the gateway holds %d bytes for a half-open SA", b)
		}
	}
	if gw.e.Drops().Map()["ike_too_large"] < 2 {
		t.Error("the oversized reassembly was not counted")
	}
}

// All that half-open SAs hold is bounded, and reported.
func TestPreauthMemoryBounded(t *testing.T) {
	n := newTestNet(t)
	gc := gatewayConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
	gc.CookieThreshold = 1000
	gc.PreauthMemory = 16 << 10
	gw := n.add("gateway", gwAddr, gc)
	ok := 0
	for i := 0; i < 100; i++ {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 500)
		if answered(gw.e.HandleDatagram(n.now, gwInit, src, initRequest(t, uint64(100+i)))) {
			ok++
		}
	}
	if b := gw.e.PreauthBytes(); b > gc.PreauthMemory || b == 0 {
		t.Errorf("pre-auth bytes %d, limit %d", b, gc.PreauthMemory)
	}
	if ok == 0 || ok == 100 || gw.e.Drops().Map()["ike_preauth_memory"] == 0 {
		t.Errorf("%d of 100 answered, %d counted", ok, gw.e.Drops().Map()["ike_preauth_memory"])
	}
	n.run(time.Minute, nil) // they expire
	if b := gw.e.PreauthBytes(); b != 0 {
		t.Errorf("%d pre-auth bytes after every half-open SA expired", b)
	}
}

// CookieThreshold 0 means what cookie_threshold: 0 means in the configuration: COOKIEs
// always (issue 12: the engine used to read 0 as "the default").
func TestCookieThresholdZeroMeansAlways(t *testing.T) {
	n := newTestNet(t)
	gc := gatewayConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
	gc.CookieThreshold = 0
	gw := n.add("gateway", gwAddr, gc)
	acts := gw.e.HandleDatagram(n.now, gwInit, netip.AddrPortFrom(clientAddr, 500), initRequest(t, 1))
	if cookieFor(t, acts, 1) == nil || gw.e.gate.nHalf != 0 {
		t.Error("the first IKE_SA_INIT was not asked for a COOKIE")
	}
}
