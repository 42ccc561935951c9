package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestInteropSpoofedSourceAddressUpdate is TestSpoofedSourceAddressUpdate against
// strongSwan's gateway: our client, charon (kernel-libipsec) as the responder with
// MOBIKE.
//
// charon as a responder sends an address list update by itself: an address appearing
// on, or leaving, one of its interfaces makes kernel-netlink fire a roam event
// ("198.51.100.2 appeared on eth0"), and ike_sa_t.roam() on an IKE SA whose path still
// works queues an ike_mobike task that only carries the address list ("sending address
// list update using MOBIKE"): an INFORMATIONAL request with N(ADD_4_ADDR)/N(ADD_6_ADDR)
// or N(NO_ADDR), whoever initiated the IKE SA. The router re-sources it, as every
// packet from 198.51.100.1:4500, to 203.0.113.77. Our client must not move there
// (RFC 4555 3.8; design.md): strongSwan's fake NAT-D makes us see the gateway as behind
// a NAT (nat_remote), which changes nothing for an initiator that is not behind one.
func TestInteropSpoofedSourceAddressUpdate(t *testing.T) {
	const oldEnd = "198.51.100.1:4500"
	l := newInteropLab(t)
	sw := l.swGateway(swGatewayOpts(nil, nil))
	cl := l.mvClient(mvOpts{})
	if out, err := l.mvUp(l.clSock, "home"); err != nil {
		t.Fatalf("mobikevpn up home: %v\n%s", err, out)
	}
	sa := mvSA(t, l.clSock)
	if sa["mobike"] != true || sa["remote"] != oldEnd || sa["nat_local"] != false {
		t.Fatalf("our client's SA with strongSwan: mobike %v remote %v nat_local %v; want true %s false", sa["mobike"], sa["remote"], sa["nat_local"], oldEnd)
	}
	var r *spoofRun
	var timings strings.Builder
	swMark, clMark := sw.mark(), len(cl.output())
	t.Cleanup(func() {
		if t.Failed() {
			s := timings.String()
			if r != nil {
				s += r.w.timelines()
			}
			t.Logf("lab: client 192.0.2.10 -- router -- strongSwan gateway 198.51.100.1 (eth0)\n%s\nstrongSwan's IKE lines since the rewrite:\n%s\nour client's messages since the rewrite:\n%s",
				s, grepLines(sw.logSince(swMark), "[IKE]", "[ENC]", "[NET]", "[KNL]"), grepLines(withoutControl(cl.outputSince(clMark)), "msg="))
		}
	})
	r = l.spoofedUpdate(cl, false, &timings, func() {
		l.exec(l.gw, "ip", "addr", "add", "198.51.100.2/24", "dev", "eth0")
		fmt.Fprintf(&timings, "+0.2s strongSwan's gateway: 198.51.100.2 added\n")
	}, func() {
		l.exec(l.gw, "ip", "addr", "del", "198.51.100.2/24", "dev", "eth0")
		fmt.Fprintf(&timings, "+1.0s strongSwan's gateway: 198.51.100.2 removed\n")
	}, 5*time.Second)
	swl := sw.logSince(swMark)
	updates := strings.Count(swl, "sending address list update using MOBIKE")
	t.Logf("spoofed source, strongSwan's gateway (it logged %d address list updates): %s", updates, r.summary())
	t.Logf("strongSwan's address list updates:\n%s", grepLines(swl, "appeared on", "disappeared from", "address list update", "ADD_4_ADDR", "ADD_6_ADDR", "NO_ADDR", "INFORMATIONAL"))
	if updates == 0 {
		t.Fatalf("strongSwan sent no address list update for the address change")
	}
	r.check(t, l.tunnelLab, oldEnd)
	if t.Failed() {
		t.FailNow()
	}
	// strongSwan still has the SA at the old addresses, and the tunnel works both ways.
	if sws := sw.listSAs(); len(sws) != 1 || sws[0].KV["local-host"] != "198.51.100.1" || sws[0].KV["remote-host"] != "192.0.2.10" {
		t.Errorf("strongSwan's SA afterwards: %+v", sws)
	}
	l.trafficCheck(t, sw, "198.18.200.")
}
