package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/internal/control"
)

// With 10% and 30% of the underlay's packets lost at random (nftables numgen), the
// handshake completes through retransmissions, rekeys complete, a MOBIKE move
// completes, and TCP through the tunnel keeps going.
func TestUnderLoss(t *testing.T) {
	for _, pct := range []int{10, 30} {
		t.Run(fmt.Sprintf("%d%%", pct), func(t *testing.T) {
			clExtra := "    dpd_delay: 2s\n    rekey_time: 20s\n"
			// An exchange fails when every copy of the request or its answer is lost:
			// at 30% each way a round trip fails with 1-0.7*0.7 = 0.51, and with 10
			// retransmissions an exchange with 0.51^11 = 6e-4 (over the ~25 exchanges of
			// a run, one run in 70 failed; one did, its IKE_SA_INIT never answered in
			// time). 30 retransmissions 400 ms apart: 0.51^31 = 9e-10, 12.4 s each.
			top := "retransmit: { timeout: 400ms, tries: 30, base: 1 }\n"
			l := newTunnelLab(t)
			l.link(l.cl, "eth1", []string{"192.0.2.138/25"}, l.rt, "eth2", []string{"192.0.2.129/25"})
			l.exec(l.cl, "ip", "route", "add", "default", "via", "192.0.2.129", "metric", "100")
			l.exec(l.cl, "ping", "-c", "1", "-W", "5", "-I", "192.0.2.138", "198.51.100.1")
			// IPv4 outer only: under heavy loss a liveness check often goes unanswered,
			// path probing then lets whichever pair answers first win, and with an IPv6
			// pair in the race the SA would also hop families and the move below
			// would not have one expected end.
			l.exec(l.cl, "ip", "-6", "addr", "del", "2001:db8:1::10/64", "dev", "eth0")
			l.gwCfg, l.clCfg = l.dir+"/gw.yaml", l.dir+"/cl.yaml"
			writeFile(t, l.gwCfg, top+l.gatewayConfig(""))
			clc := strings.Replace(l.clientConfig("198.51.100.1", ""), "    start_action: none\n", "    start_action: none\n"+clExtra, 1)
			clc = strings.Replace(clc, "        esp_proposals: [aes128gcm16]\n", "        esp_proposals: [aes128gcm16]\n        rekey_time: 5s\n", 1)
			writeFile(t, l.clCfg, top+clc)
			// Random loss on everything the router forwards, both ways.
			l.exec(l.rt, "nft", fmt.Sprintf("add table inet loss; add chain inet loss fw { type filter hook forward priority 0; }; add rule inet loss fw numgen random mod 100 < %d drop", pct))
			gw, cl := l.runDaemons()
			took := l.up(cl, gw)
			// TCP keeps going across rekeys and a move.
			// At 30% loss each way half of all segment/ACK round trips fail and TCP
			// crawls through retransmission timeouts with exponential backoff: a small
			// transfer shows that it still makes progress to the end.
			size := int64(4 << 20)
			if pct >= 30 {
				size = 16 << 10
			}
			done := make(chan float64, 1)
			go func() { done <- l.tcpTransfer(l.cl, l.gw, "198.18.0.1:5010", "198.18.0.1:5010", size) }()
			time.Sleep(6 * time.Second)
			moveAt := time.Now()
			l.exec(l.cl, "ip", "addr", "del", "192.0.2.10/24", "dev", "eth0")
			if !waitFor(30*time.Second, func() bool {
				st := status(t, l.gwSock)
				return st != nil && len(st.IKESAs) == 1 && st.IKESAs[0].Remote == "192.0.2.138:4500"
			}) {
				t.Fatalf("MOBIKE move did not complete under %d%% loss:\n%s", pct, cl.output())
			}
			moved := time.Since(moveAt)
			var mbps float64
			select {
			case mbps = <-done:
			case <-time.After(240 * time.Second): // TCP's own backoff reaches minutes at 30%
				t.Fatalf("TCP transfer stalled under %d%% loss", pct)
			}
			// Child SAs rekey every ~5 s (jittered, each exchange retransmitted through
			// the loss): at least two complete within 20 s of the transfer's end.
			rekeys := 0
			waitFor(20*time.Second, func() bool {
				rekeys = strings.Count(cl.output(), "Child SA rekeyed")
				return rekeys >= 2
			})
			if rekeys < 2 {
				t.Errorf("%d Child SA rekeys completed under %d%% loss", rekeys, pct)
			}
			// One IKE SA, established. The IKE SA rekeys every 20 s, and under the loss
			// the old one's Delete takes a second or more (30 tries 400 ms apart at
			// most), during which the client has two: about one run in twenty looked
			// in that window. Either moment is fine; the state must get there.
			var st *control.Status
			if !waitFor(30*time.Second, func() bool {
				st = status(t, l.clSock)
				return st != nil && len(st.IKESAs) == 1 && st.IKESAs[0].State == "established"
			}) {
				t.Errorf("client state after the run: %+v", st)
			}
			t.Logf("%d%% loss: handshake %v; MOBIKE move %v; %d Child SA rekeys; TCP %d KiB intact",
				pct, took.Round(time.Millisecond), moved.Round(time.Millisecond), rekeys, size>>10)
			_ = mbps
		})
	}
}
