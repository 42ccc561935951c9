package esp

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestKeepalives runs two datapaths on a fake clock: a NAT keepalive goes out when the
// SA sent nothing for the interval, and traffic postpones it.
func TestKeepalives(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, testSuites[0].keys, false, 20*time.Second)
		p.start(t)
		keepalives := func() uint64 {
			synctest.Wait()
			return p.b.d.Drops().Keepalives
		}
		time.Sleep(19 * time.Second)
		if k := keepalives(); k != 0 {
			t.Fatalf("%d keepalives after 19s", k)
		}
		time.Sleep(2 * time.Second)
		if k := keepalives(); k != 1 {
			t.Fatalf("%d keepalives after 21s", k)
		}
		time.Sleep(20 * time.Second)
		if k := keepalives(); k != 2 {
			t.Fatalf("%d keepalives after 41s", k)
		}
		// Traffic every 10 s: no keepalive.
		pkt := ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, nil)
		for range 6 {
			through(t, p.a, p.b, pkt)
			time.Sleep(10 * time.Second)
		}
		if k := keepalives(); k != 2 {
			t.Fatalf("%d keepalives with traffic", k)
		}
		// A rekeyed SA keeps the interval; a second SA gets its own.
		must(t, p.a.d.InstallOutbound(1, SAConfig{SPI: 0x1001, Keys: p.kAB, LocalTS: clientTS, RemoteTS: netTS, Keepalive: 5 * time.Second}, ap(aV4, nattPort), ap(bV4, nattPort)))
		must(t, p.a.d.InstallOutbound(2, SAConfig{SPI: 0x1005, Keys: p.kAB, LocalTS: clientTS, RemoteTS: netTS, Keepalive: 7 * time.Second}, ap(aV6, nattPort), ap(bV6, nattPort)))
		time.Sleep(36 * time.Second) // 7 from child 1 (every 5s), 5 from child 2 (every 7s)
		if k := keepalives(); k != 2+7+5 {
			t.Fatalf("%d keepalives with two SAs", k)
		}
		p.a.d.RemoveOutbound(1)
		p.a.d.RemoveOutbound(2)
		time.Sleep(time.Minute)
		if k := keepalives(); k != 14 {
			t.Fatalf("%d keepalives after removal", k)
		}
		// b's outbound SA has no keepalive.
		if k := p.a.d.Drops().Keepalives; k != 0 {
			t.Fatalf("a received %d keepalives", k)
		}
		must(t, p.a.stop())
		must(t, p.b.stop())
	})
}
