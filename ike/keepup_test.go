package ike

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/wire"
)

// initsSent counts the IKE SAs ep started (IKE_SA_INIT requests with distinct SPIs).
func initsSent(t *testing.T, ep *endpoint) int {
	t.Helper()
	spis := map[uint64]bool{}
	for _, d := range ep.sent {
		h, err := wire.ParseHeader(d.data)
		if err != nil {
			continue
		}
		if h.Exchange == wire.IKE_SA_INIT && h.Flags&wire.FlagResponse == 0 {
			spis[h.SPIi] = true
		}
	}
	return len(spis)
}

func countEvents(ep *endpoint, k EventKind) int {
	n := 0
	for _, e := range ep.events {
		if e.Kind == k {
			n++
		}
	}
	return n
}

// shortRetransmit makes the client give an exchange up after 1+2+4 s.
func shortRetransmit(gw, cl *Config) {
	cl.Retransmit = Retransmit{Timeout: time.Second, Tries: 2, Base: 2}
}

// TestStartRetriesWithBackoff: a client whose gateway does not answer tries again
// after 2, 4, 8... s (start_action start), and is up once the gateway answers.
func TestStartRetriesWithBackoff(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", shortRetransmit)
	away := true
	n.drop = func(d datagram) bool { return away && d.to.Addr() == gwAddr }
	var delays []time.Duration
	for len(delays) < 3 {
		before := countEvents(cl, EventFailed)
		n.run(time.Minute, func() bool { return countEvents(cl, EventFailed) > before })
		r := cl.e.retries["home"]
		if r == nil || r.at.IsZero() {
			t.Fatalf("attempt %d failed, but no retry is armed", len(delays)+1)
		}
		delays = append(delays, r.at.Sub(n.now))
		// Nothing is sent until the retry is due.
		sent := initsSent(t, cl)
		n.run(r.at.Sub(n.now)-time.Millisecond, nil)
		if initsSent(t, cl) != sent {
			t.Fatalf("a new attempt went out before its retry was due")
		}
	}
	if want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second}; delays[0] != want[0] || delays[1] != want[1] || delays[2] != want[2] {
		t.Fatalf("retry delays %v, want %v", delays, want)
	}
	away = false
	if !n.run(time.Minute, established(cl, gw)) {
		t.Fatal("not established once the gateway answered")
	}
	if len(cl.e.retries) != 0 {
		t.Fatalf("retries left after the connection came up: %v", cl.e.retries)
	}
	if got := initsSent(t, cl); got != 4 {
		t.Fatalf("%d IKE SAs started, want 4 (3 failed, 1 up)", got)
	}
}

// TestStartWithoutRouteWaitsForNetwork: a client started without any route to its
// gateway tries again by itself, at once when the network appears.
func TestStartWithoutRouteWaitsForNetwork(t *testing.T) {
	n := newTestNet(t)
	gw := n.add("gateway", gwAddr, gatewayConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16"))
	cl := n.add("client", clientAddr, clientConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16"))
	online := false
	cl.e.cfg.SourceAddr = func(netip.Addr) (netip.Addr, error) {
		if !online {
			return netip.Addr{}, errors.New("network is unreachable")
		}
		return clientAddr, nil
	}
	n.apply(cl, cl.e.StartAll(n.now))
	if initsSent(t, cl) != 0 || cl.e.retries["home"] == nil {
		t.Fatalf("offline start: %d attempts sent, retry %v", initsSent(t, cl), cl.e.retries["home"])
	}
	n.run(5*time.Minute, nil) // retries keep failing, without a panic or a send
	if initsSent(t, cl) != 0 {
		t.Fatal("sent while offline")
	}
	if d := cl.e.retries["home"].delay; d != retryMax {
		t.Fatalf("backoff after 5 minutes: %v, want the cap %v", d, retryMax)
	}
	online = true
	start := n.now
	n.apply(cl, cl.e.SetLocalAddrs(n.now, []netip.Addr{clientAddr}))
	if !n.run(time.Minute, established(cl, gw)) {
		t.Fatal("not established after the network came")
	}
	if n.now.Sub(start) > 0 {
		t.Fatalf("came up %v after the network, want at once", n.now.Sub(start))
	}
}

// goOffline takes the client's network away: no route, nothing delivered either way.
func goOffline(n *testNet, cl *endpoint) (back func()) {
	offline := true
	cl.e.cfg.SourceAddr = func(netip.Addr) (netip.Addr, error) {
		if offline {
			return netip.Addr{}, errors.New("network is unreachable")
		}
		return clientAddr, nil
	}
	n.drop = func(datagram) bool { return offline }
	return func() {
		offline = false
		n.apply(cl, cl.e.SetLocalAddrs(n.now, []netip.Addr{clientAddr}))
	}
}

// TestOfflineResumesSA: a client offline for 10 minutes keeps its SA (the liveness
// check is held, not lost), and when the network is back it tells the gateway, which
// kept the SA, where it is: the same IKE SA and Child SA carry on, no new IKE_SA_INIT.
func TestOfflineResumesSA(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		g.Connections[0].DPDDelay = 0 // the gateway keeps the SA
	})
	if !n.run(time.Minute, established(cl, gw)) {
		t.Fatal("not established")
	}
	sa := onlySA(t, cl)
	back := goOffline(n, cl)
	n.run(10*time.Minute, nil)
	if countEvents(cl, EventDeleted) != 0 || !cl.e.store.live(sa) || !sa.held {
		t.Fatalf("offline 10 minutes: SA live %v held %v, events %v", cl.e.store.live(sa), sa.held, cl.events)
	}
	inits := initsSent(t, cl)
	start := n.now
	back()
	if !n.run(time.Minute, func() bool { return !sa.held && sa.win.pending == nil && len(sa.win.queue) == 0 }) {
		t.Fatal("the SA did not resume")
	}
	if n.now.Sub(start) > time.Second {
		t.Fatalf("resumed after %v, want at once", n.now.Sub(start))
	}
	if initsSent(t, cl) != inits || countEvents(cl, EventDeleted) != 0 || onlySA(t, cl) != sa {
		t.Fatalf("a new SA instead of the old one resumed (inits %d -> %d)", inits, initsSent(t, cl))
	}
	if len(messagesTo(t, cl, gw, gwAP, hasNotify(wire.UPDATE_SA_ADDRESSES))) == 0 {
		t.Fatal("no UPDATE_SA_ADDRESSES told the gateway where the client is")
	}
}

// TestOfflineGatewayForgotRestarts: the gateway deleted the SA while the client was
// offline: after the resumed exchange fails, dpd_action restart makes a new SA.
func TestOfflineGatewayForgotRestarts(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		g.Retransmit = Retransmit{Timeout: time.Second, Tries: 2, Base: 2}
	})
	if !n.run(time.Minute, established(cl, gw)) {
		t.Fatal("not established")
	}
	back := goOffline(n, cl)
	n.run(5*time.Minute, nil)
	if countEvents(gw, EventDeleted) == 0 {
		t.Fatal("the gateway kept the SA; the test needs it gone")
	}
	back()
	if !n.run(10*time.Minute, func() bool { return countEvents(cl, EventEstablished) == 2 }) {
		t.Fatalf("no new SA after the gateway forgot the old one: %v", cl.events)
	}
}

// TestDeleteStopsRetries: a person's delete of a connection being retried ends the
// retries.
func TestDeleteStopsRetries(t *testing.T) {
	n, _, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", shortRetransmit)
	n.drop = func(d datagram) bool { return d.to.Addr() == gwAddr }
	n.run(time.Minute, func() bool { return countEvents(cl, EventFailed) > 0 })
	n.run(3*time.Second, func() bool { return len(cl.e.Status(n.now)) > 0 }) // the retry is under way
	if got, acts := cl.e.DeleteConn(n.now, "home"); got != 1 {
		t.Fatalf("DeleteConn: %d SAs", got)
	} else {
		n.apply(cl, acts)
	}
	inits := initsSent(t, cl)
	n.run(10*time.Minute, nil)
	if initsSent(t, cl) != inits || len(cl.e.retries) != 0 {
		t.Fatalf("retried after delete: %d -> %d attempts", inits, initsSent(t, cl))
	}
}
