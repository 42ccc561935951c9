package integration

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The switch lab: the gateway has a second address, 203.0.113.1, on a second link to
// the router; optionally the router masquerades the client (a NAT in front of it).
func newSwitchLab(t *testing.T, nat bool, gwExtra, clExtra string) (*tunnelLab, *proc, *proc) {
	l := newTunnelLab(t)
	l.link(l.gw, "eth1", []string{"203.0.113.1/24"}, l.rt, "eth3", []string{"203.0.113.254/24"})
	l.exec(l.gw, "ip", "route", "add", "192.0.2.0/24", "via", "203.0.113.254", "dev", "eth1", "metric", "200")
	if nat {
		l.exec(l.rt, "nft", "add table ip nat; add chain ip nat post { type nat hook postrouting priority 100; }; add rule ip nat post ip saddr 192.0.2.0/24 oifname { eth1, eth3 } masquerade")
	}
	l.exec(l.cl, "ping", "-c", "1", "-W", "5", "203.0.113.1")
	l.gwCfg = filepath.Join(l.dir, "gw.yaml")
	l.clCfg = filepath.Join(l.dir, "cl.yaml")
	gwc := strings.Replace(l.gatewayConfig(""), `local_addrs: [198.51.100.1, "2001:db8:2::1"]`, `local_addrs: [198.51.100.1, 203.0.113.1, "2001:db8:2::1"]`, 1)
	gwc = strings.Replace(gwc, "    dpd_delay: 5s\n", "    dpd_delay: 5s\n"+gwExtra, 1)
	writeFile(t, l.gwCfg, gwc)
	writeFile(t, l.clCfg, strings.Replace(l.clientConfig("198.51.100.1", ""), "    start_action: none\n", "    start_action: none\n"+clExtra, 1))
	gw, cl := l.runDaemons()
	l.up(cl, gw)
	return l, gw, cl
}

func (l *tunnelLab) switchCmd(args ...string) (string, int) {
	out, err := exec.Command(binary(l.t), append([]string{"switch", "--control", l.gwSock}, args...)...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		l.t.Fatal(err)
	}
	return string(out), code
}

func TestSwitchWithWait(t *testing.T)        { testSwitch(t, false) }
func TestSwitchClientBehindNAT(t *testing.T) { testSwitch(t, true) }

func testSwitch(t *testing.T, nat bool) {
	// It switches back within seconds: no hysteresis on either side for this test.
	l, gw, cl := newSwitchLab(t, nat, "    switch_hold: 0s\n", "    switch_hold: 0s\n")
	st := status(t, l.clSock).IKESAs[0]
	if len(st.PeerAdditionalAddrs) == 0 || st.PeerAdditionalAddrs[0] != "203.0.113.1" || !st.RMobike || st.NATLocal != nat {
		t.Fatalf("client status before the switch: %+v", st)
	}
	f := l.startFlow(l.cl, "198.18.0.1", 20*time.Millisecond)
	tcp := make(chan float64, 1)
	go func() { tcp <- l.tcpTransfer(l.cl, l.gw, "198.18.0.1:5005", "198.18.0.1:5005", 48<<20) }()
	time.Sleep(time.Second)
	at := time.Now()
	// No selection: every SA (interface.md's selection is optional).
	out, code := l.switchCmd("--to", "203.0.113.1", "--wait", "5s")
	took := time.Since(at)
	if code != 0 || !strings.Contains(out, "moved: alice@example.org (SA #1)") {
		t.Fatalf("switch exit %d:\n%s\n%s", code, out, gw.output())
	}
	time.Sleep(time.Second)
	mbps := <-tcp
	rs := f.stop()
	gap, lost := gapAndLoss(rs, at)
	t.Logf("switch (nat=%v): `switch --wait` returned after %v (%s); longest reply gap %v; %d of %d pings lost; TCP %.0f Mbit/s intact",
		nat, took.Round(time.Millisecond), strings.TrimSpace(out[strings.Index(out, "moved"):]), gap.Round(time.Millisecond), lost, len(rs)+lost, mbps)
	if lost != 0 {
		t.Errorf("%d packets lost during the switch", lost)
	}
	cs, gs := status(t, l.clSock).IKESAs[0], status(t, l.gwSock).IKESAs[0]
	if cs.Remote != "203.0.113.1:4500" || gs.Local != "203.0.113.1:4500" {
		t.Errorf("endpoints after the switch: client remote %s, gateway local %s", cs.Remote, gs.Local)
	}
	// A switch to where it already is returns at once.
	if out, code := l.switchCmd("--to", "203.0.113.1", "--all", "--wait", "2s"); code != 0 || !strings.Contains(out, "already at") {
		t.Errorf("switch to the current address: %d %s", code, out)
	}
	// Refusals: not our address, nothing selected.
	if out, code := l.switchCmd("--to", "203.0.113.99", "--all"); code != 2 || !strings.Contains(out, "not one of this daemon's local addresses") {
		t.Errorf("switch to a foreign address: %d %s", code, out)
	}
	if out, code := l.switchCmd("--to", "198.51.100.1", "--sa", "42"); code != 2 || !strings.Contains(out, "matches the selection") {
		t.Errorf("switch of a missing SA: %d %s", code, out)
	}
	// And back, by draining the address.
	if out, code := l.switchCmd("--to", "198.51.100.1", "--from", "203.0.113.1", "--wait", "5s"); code != 0 {
		t.Errorf("switch back: %d %s", code, out)
	}
	_ = cl
}

func TestSwitchRefusedByPolicy(t *testing.T) {
	l, gw, cl := newSwitchLab(t, false, "    additional_addrs: none\n", "    switch_accept: [additional]\n")
	if st := status(t, l.clSock).IKESAs[0]; len(st.PeerAdditionalAddrs) != 0 {
		t.Fatalf("gateway announced %v with additional_addrs none", st.PeerAdditionalAddrs)
	}
	out, code := l.switchCmd("--to", "203.0.113.1", "--all", "--wait", "2s")
	if code != 1 || !strings.Contains(out, "not moved: alice@example.org (SA #1)") {
		t.Fatalf("refused switch: exit %d\n%s", code, out)
	}
	if !strings.Contains(cl.output(), "refusing to switch") {
		t.Errorf("client log does not say it refused:\n%s", cl.output())
	}
	if gs := status(t, l.gwSock).IKESAs[0]; gs.Local != "198.51.100.1:4500" {
		t.Errorf("gateway moved anyway: %s", gs.Local)
	}
	l.ping(l.cl, "198.18.0.1", 3)
	_ = gw
}

func TestAutomaticFailoverAddressRemoved(t *testing.T) {
	l, gw, cl := newSwitchLab(t, false, "", "")
	f := l.startFlow(l.cl, "198.18.0.1", 20*time.Millisecond)
	time.Sleep(time.Second)
	at := time.Now()
	l.exec(l.gw, "ip", "addr", "del", "198.51.100.1/24", "dev", "eth0")
	if !waitFor(5*time.Second, func() bool {
		st := status(t, l.clSock)
		return st != nil && len(st.IKESAs) == 1 && st.IKESAs[0].Remote == "203.0.113.1:4500"
	}) {
		t.Fatalf("client did not follow the gateway:\n%s\n%s", cl.output(), gw.output())
	}
	took := time.Since(at)
	time.Sleep(500 * time.Millisecond)
	rs := f.stop()
	gap, lost := gapAndLoss(rs, at)
	t.Logf("automatic failover: client moved after %v; longest reply gap %v; %d of %d pings lost", took.Round(time.Millisecond), gap.Round(time.Millisecond), lost, len(rs)+lost)
	if took > time.Second {
		t.Errorf("failover took %v", took)
	}
}
