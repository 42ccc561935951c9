package integration

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// Liveness against strongSwan (issue 3): DPD both ways, in both roles; a peer that dies
// (SIGKILL: it sends nothing) and comes back is noticed by DPD and the connection is
// re-established by the side with dpd_action restart, ours or strongSwan's; a peer's
// Delete with close_action restart brings the SA straight back.

// mvRetransmitDPD makes a dead peer show within about 2.4 s of the first unanswered
// request (0.3 + 0.45 + 0.675 + 1.01 s), on our side.
const mvRetransmitDPD = "retransmit: { timeout: 300ms, tries: 3, base: 1.5 }"

// swRetransmitDPD is the same schedule for charon.
var swRetransmitDPD = []string{"retransmit_timeout = 0.3", "retransmit_base = 1.5", "retransmit_tries = 3"}

var swEmptyInfo = regexp.MustCompile(`(generating|parsed) INFORMATIONAL (request|response) \d+ \[ \]`)

// swLiveness counts the empty INFORMATIONAL messages in charon's log (DPD).
func swLiveness(log string) map[string]int {
	m := map[string]int{}
	for _, x := range swEmptyInfo.FindAllStringSubmatch(log, -1) {
		m[x[1]+" INFORMATIONAL "+x[2]]++
	}
	return m
}

// mvLiveness counts our empty INFORMATIONAL messages (DPD).
func mvLiveness(log string) map[string]int {
	m := map[string]int{}
	for _, ln := range strings.Split(grepLines(log, "INFORMATIONAL"), "\n") {
		if strings.HasSuffix(ln, `payloads=""`) {
			for _, k := range []string{"sending INFORMATIONAL request", "received INFORMATIONAL response", "received INFORMATIONAL request", "sending INFORMATIONAL response"} {
				if strings.Contains(ln, k) {
					m[k]++
				}
			}
		}
	}
	return m
}

// TestInteropDPDGateway: the gateway checks the client's liveness (dpd_delay 1 s: an
// empty INFORMATIONAL after a second without a message from the peer), ours or
// strongSwan's, and the other answers; the SA stays up.
func TestInteropDPDGateway(t *testing.T) {
	t.Run("mv-gateway", func(t *testing.T) {
		l := newInteropLab(t)
		gw := l.mvGateway(mvOpts{Conn: []string{"dpd_delay: 1s"}})
		sw := l.swClient(swClientOpts("198.51.100.1", nil, nil))
		sw.mustInitiate("home", "net")
		// A check is due a second after the last message from the peer; strongSwan
		// counts in whole seconds and a loaded machine adds its delays: wait for it.
		var ours, theirs map[string]int
		answered := waitFor(10*time.Second, func() bool {
			ours, theirs = mvLiveness(gw.output()), swLiveness(sw.log())
			return ours["sending INFORMATIONAL request"] >= 1 && ours["received INFORMATIONAL response"] >= 1 &&
				theirs["parsed INFORMATIONAL request"] >= 1 && theirs["generating INFORMATIONAL response"] >= 1
		})
		t.Logf("our gateway: %v; strongSwan: %v", ours, theirs)
		if !answered {
			t.Errorf("our liveness checks were not answered within 10 s")
		}
		l.trafficCheck(t, sw, "198.18.100.")
	})
	t.Run("sw-gateway", func(t *testing.T) {
		l := newInteropLab(t)
		o := swGatewayOpts(nil, nil)
		o.Conns[0].DPDDelay = time.Second
		sw := l.swGateway(o)
		cl := l.mvClient(mvOpts{})
		if out, err := l.mvUp(l.clSock, "home"); err != nil {
			t.Fatalf("mobikevpn up home: %v\n%s", err, out)
		}
		var ours, theirs map[string]int
		answered := waitFor(10*time.Second, func() bool {
			ours, theirs = mvLiveness(cl.output()), swLiveness(sw.log())
			return theirs["generating INFORMATIONAL request"] >= 1 && theirs["parsed INFORMATIONAL response"] >= 1 &&
				ours["received INFORMATIONAL request"] >= 1 && ours["sending INFORMATIONAL response"] >= 1
		})
		t.Logf("our client: %v; strongSwan: %v", ours, theirs)
		if !answered {
			t.Errorf("strongSwan's liveness checks were not answered within 10 s")
		}
		l.trafficCheck(t, sw, "198.18.200.")
	})
}

// TestInteropDPDRestart: the client checks liveness (dpd_delay 1 s, dpd_action
// restart); the gateway is killed and started again a second later with no memory of
// the SA; the client's DPD fails and it connects again by itself.
func TestInteropDPDRestart(t *testing.T) {
	t.Run("mv-client", func(t *testing.T) {
		l := newInteropLab(t)
		o := swGatewayOpts(nil, nil)
		sw := l.swGateway(o)
		cl := l.mvClient(mvOpts{Top: []string{mvRetransmitDPD}, Conn: []string{"dpd_delay: 1s", "dpd_action: restart", "close_action: restart"}})
		if out, err := l.mvUp(l.clSock, "home"); err != nil {
			t.Fatalf("mobikevpn up home: %v\n%s", err, out)
		}
		first := mvSA(t, l.clSock)
		// Our liveness checks, answered by strongSwan (due a second after the last
		// message: wait for them, however loaded the machine).
		var ours, theirs map[string]int
		if !waitFor(10*time.Second, func() bool {
			ours, theirs = mvLiveness(cl.output()), swLiveness(sw.log())
			return ours["sending INFORMATIONAL request"] >= 1 && ours["received INFORMATIONAL response"] >= 1 && theirs["parsed INFORMATIONAL request"] >= 1
		}) {
			t.Errorf("our liveness checks were not answered: ours %v, strongSwan's %v", ours, theirs)
		}
		mark := len(cl.output())
		killed := time.Now()
		sw.kill()
		time.Sleep(time.Second)
		sw2 := startStrongSwan(l.lab, l.gw, "gateway2", o)
		var sa map[string]any
		if !waitFor(10*time.Second, func() bool {
			sa = mvSA(t, l.clSock)
			return sa != nil && sa["spi_i"] != first["spi_i"] && sa["state"] == "established" && len(sw2.listSAs()) == 1 && installedChild(t, l.clSock)
		}) {
			t.Fatalf("our client did not connect again:\n%s", grepLines(cl.outputSince(mark), "msg=", "INFORMATIONAL"))
		}
		took := time.Since(killed)
		log := cl.outputSince(mark)
		for _, want := range []string{`msg="peer not responding"`, `msg="restarting connection after DPD failure"`, `msg="IKE SA established"`} {
			if !strings.Contains(log, want) {
				t.Errorf("our log lacks %s", want)
			}
		}
		t.Logf("strongSwan killed, back after 1 s: our client connected again %v after the kill", took.Round(time.Millisecond))
		l.trafficCheck(t, sw2, "198.18.200.")

		// close_action restart: strongSwan deletes the SA, we connect again at once.
		spi := mvSA(t, l.clSock)["spi_i"]
		at := time.Now()
		if out, err := sw2.terminateIKE("rw"); err != nil {
			t.Fatalf("swanctl --terminate: %v\n%s", err, out)
		}
		if !waitFor(5*time.Second, func() bool {
			sa := mvSA(t, l.clSock)
			return sa != nil && sa["spi_i"] != spi && installedChild(t, l.clSock) && len(sw2.listSAs()) == 1
		}) {
			t.Fatalf("close_action restart did not bring the SA back:\n%s", grepLines(cl.outputSince(mark), "msg="))
		}
		t.Logf("close_action restart: connected again %v after strongSwan's delete", time.Since(at).Round(time.Millisecond))
		l.ping(l.cl, "198.18.0.1", 3)
	})
	t.Run("sw-client", func(t *testing.T) {
		l := newInteropLab(t)
		mo := mvOpts{}
		gw := l.mvGateway(mo)
		o := swClientOpts("198.51.100.1", nil, nil)
		o.Conns[0].DPDDelay = time.Second
		o.Conns[0].Extra = []string{"keyingtries = 0"}
		o.Conns[0].Children[0].DPDAction = "restart"
		o.Charon = swRetransmitDPD
		sw := l.swClient(o)
		sw.mustInitiate("home", "net")
		first := sw.listSAs()[0].KV["initiator-spi"]
		var ours, theirs map[string]int
		if !waitFor(10*time.Second, func() bool {
			ours, theirs = mvLiveness(gw.output()), swLiveness(sw.log())
			return theirs["generating INFORMATIONAL request"] >= 1 && theirs["parsed INFORMATIONAL response"] >= 1 && ours["received INFORMATIONAL request"] >= 1
		}) {
			t.Errorf("strongSwan's liveness checks were not answered: strongSwan's %v, ours %v", theirs, ours)
		}
		mark := sw.mark()
		killed := time.Now()
		gw.cmd.Process.Kill()
		if _, ok := gw.wait(5 * time.Second); !ok {
			t.Fatal("our gateway did not die")
		}
		time.Sleep(time.Second)
		l.startMV("gateway2", l.gw, l.gwSock, l.mvGatewayConfig(mo))
		if !waitFor(10*time.Second, func() bool {
			sas := sw.listSAs()
			return len(sas) == 1 && sas[0].KV["state"] == "ESTABLISHED" && sas[0].KV["initiator-spi"] != first && len(sas[0].Children) == 1 && installedChild(t, l.gwSock)
		}) {
			t.Fatalf("strongSwan did not connect again:\n%s", grepLines(sw.logSince(mark), "[IKE]"))
		}
		took := time.Since(killed)
		log := sw.logSince(mark)
		for _, want := range []string{"giving up after 3 retransmits", "restarting CHILD_SA net", "IKE_SA home[2] established"} {
			if !strings.Contains(log, want) {
				t.Errorf("strongSwan's log lacks %q", want)
			}
		}
		t.Logf("our gateway killed, back after 1 s: strongSwan connected again %v after the kill", took.Round(time.Millisecond))
		l.trafficCheck(t, sw, "198.18.100.")
	})
}
