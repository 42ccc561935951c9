package integration

import (
	"bufio"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// flow is a continuous ping whose replies are timestamped, to measure how long a move
// interrupts traffic and how many packets it loses.
type flow struct {
	cmd     *exec.Cmd
	replies chan reply
	all     []reply
	sent    int // from ping's summary, once stopped
	done    chan struct{}
}

type reply struct {
	seq int
	at  time.Time
}

var pingLine = regexp.MustCompile(`^\[(\d+)\.(\d+)\].*icmp_seq=(\d+)`)

// startFlow pings dst from ns every interval until stop.
func (l *lab) startFlow(ns, dst string, interval time.Duration) *flow {
	l.t.Helper()
	f := &flow{replies: make(chan reply, 100000), done: make(chan struct{})}
	f.cmd = exec.Command("ip", "netns", "exec", ns, "ping", "-D", "-n", "-i", fmt.Sprintf("%.3f", interval.Seconds()), "-W", "1", dst)
	out, _ := f.cmd.StdoutPipe()
	if err := f.cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	go func() {
		defer close(f.done)
		s := bufio.NewScanner(out)
		for s.Scan() {
			if m := countsRe.FindStringSubmatch(s.Text()); m != nil {
				f.sent, _ = strconv.Atoi(m[1])
			}
			m := pingLine.FindStringSubmatch(s.Text())
			if m == nil {
				continue
			}
			sec, _ := strconv.ParseInt(m[1], 10, 64)
			usec, _ := strconv.ParseInt((m[2] + "000000")[:6], 10, 64)
			seq, _ := strconv.Atoi(m[3])
			f.all = append(f.all, reply{seq: seq, at: time.Unix(sec, usec*1000)})
		}
	}()
	l.t.Cleanup(func() { f.cmd.Process.Kill() })
	return f
}

// stop ends the flow and returns the replies (f.sent is then how many were sent).
func (f *flow) stop() []reply {
	time.Sleep(1200 * time.Millisecond) // let the last replies in
	f.cmd.Process.Signal(interruptSignal)
	<-f.done
	f.cmd.Wait()
	return f.all
}

// missing returns the sequence numbers of the pings sent and never answered in rs (the
// replies stop returned), but for the last one sent: ping exits at the interrupt without
// waiting for its reply, which may not have had time to come back (under load, about
// one stop in ten, seen as a ping "lost" more than a second after anything under test).
func (f *flow) missing(rs []reply) []int {
	got := make(map[int]bool, len(rs))
	for _, r := range rs {
		got[r.seq] = true
	}
	var out []int
	for seq := 1; seq < f.sent; seq++ {
		if !got[seq] {
			out = append(out, seq)
		}
	}
	return out
}

// gapAndLoss reports the longest time between two consecutive replies after from, and
// how many sequence numbers between the first and the last reply never came back.
func gapAndLoss(rs []reply, from time.Time) (time.Duration, int) {
	var gap time.Duration
	lost := 0
	for i := 1; i < len(rs); i++ {
		if rs[i].at.After(from) {
			gap = max(gap, rs[i].at.Sub(rs[i-1].at))
		}
		if d := rs[i].seq - rs[i-1].seq; d > 1 {
			lost += d - 1
		}
	}
	return gap, lost
}

// The client's address goes away while traffic flows: MOBIKE moves the SA to its other
// address, without a rekey, and the TCP connection survives.
func TestMobikeClientAddressRemoval(t *testing.T) {
	l := newTunnelLab(t)
	// A second link between client and router: 192.0.2.128/25.
	l.link(l.cl, "eth1", []string{"192.0.2.138/25"}, l.rt, "eth2", []string{"192.0.2.129/25"})
	l.exec(l.cl, "ip", "route", "add", "default", "via", "192.0.2.129", "metric", "100")
	l.exec(l.cl, "ping", "-c", "1", "-W", "5", "-I", "192.0.2.138", "198.51.100.1")
	gw, cl := l.startDaemons("198.51.100.1")
	l.up(cl, gw)
	spiBefore := status(t, l.clSock).IKESAs[0].ChildSAs[0].SPIIn

	f := l.startFlow(l.cl, "198.18.0.1", 20*time.Millisecond)
	tcpDone := make(chan float64, 1)
	go func() { tcpDone <- l.tcpTransfer(l.cl, l.gw, "198.18.0.1:5004", "198.18.0.1:5004", 48<<20) }()
	time.Sleep(time.Second)
	moveAt := time.Now()
	l.exec(l.cl, "ip", "addr", "del", "192.0.2.10/24", "dev", "eth0")
	if !waitFor(5*time.Second, func() bool {
		st := status(t, l.gwSock)
		return st != nil && len(st.IKESAs) == 1 && st.IKESAs[0].Remote == "192.0.2.138:4500"
	}) {
		t.Fatalf("gateway did not follow the client:\n%s\n%s", cl.output(), gw.output())
	}
	took := time.Since(moveAt)
	time.Sleep(time.Second)
	mbps := <-tcpDone
	rs := f.stop()
	gap, lost := gapAndLoss(rs, moveAt)
	t.Logf("address removal: gateway updated after %v; longest reply gap %v, %d of %d pings lost; TCP %.0f Mbit/s intact",
		took.Round(time.Millisecond), gap.Round(time.Millisecond), lost, len(rs)+lost, mbps)
	if gap > time.Second {
		t.Errorf("traffic stopped for %v", gap)
	}
	cs, gs := status(t, l.clSock).IKESAs[0], status(t, l.gwSock).IKESAs[0]
	if cs.Local != "192.0.2.138:4500" || gs.Remote != "192.0.2.138:4500" {
		t.Errorf("endpoints after the move: client %s, gateway %s", cs.Local, gs.Remote)
	}
	if cs.ChildSAs[0].SPIIn != spiBefore {
		t.Errorf("the Child SA was rekeyed on the move (%s -> %s); MOBIKE re-points it", spiBefore, cs.ChildSAs[0].SPIIn)
	}
	if !strings.Contains(cl.output(), "moving IKE SA") {
		t.Errorf("client log does not show the move")
	}
}

// newTwoLinkClientLab is the tunnel lab with a second client link (192.0.2.128/25) and
// a client configuration tuned by clExtra.
func newTwoLinkClientLab(t *testing.T, clExtra, topExtra string) (*tunnelLab, *proc, *proc) {
	l := newTunnelLab(t)
	l.link(l.cl, "eth1", []string{"192.0.2.138/25"}, l.rt, "eth2", []string{"192.0.2.129/25"})
	l.exec(l.cl, "ip", "route", "add", "default", "via", "192.0.2.129", "metric", "100")
	l.exec(l.cl, "ping", "-c", "1", "-W", "5", "-I", "192.0.2.138", "198.51.100.1")
	l.gwCfg = l.dir + "/gw.yaml"
	l.clCfg = l.dir + "/cl.yaml"
	writeFile(t, l.gwCfg, l.gatewayConfig(""))
	writeFile(t, l.clCfg, topExtra+strings.Replace(l.clientConfig("198.51.100.1", ""), "    start_action: none\n", "    start_action: none\n"+clExtra, 1))
	gw, cl := l.runDaemons()
	l.up(cl, gw)
	return l, gw, cl
}

// measureMove runs a ping flow, does what breaks the path, waits until the gateway sees
// the client at want, and reports the interruption.
func (l *tunnelLab) measureMove(what string, breakPath func(), want string, limit time.Duration) (time.Duration, time.Duration, int) {
	t := l.t
	f := l.startFlow(l.cl, "198.18.0.1", 20*time.Millisecond)
	time.Sleep(time.Second)
	at := time.Now()
	breakPath()
	if !waitFor(limit, func() bool {
		st := status(t, l.gwSock)
		return st != nil && len(st.IKESAs) == 1 && st.IKESAs[0].Remote == want
	}) {
		t.Fatalf("%s: gateway did not follow the client to %s", what, want)
	}
	took := time.Since(at)
	time.Sleep(time.Second)
	rs := f.stop()
	gap, lost := gapAndLoss(rs, at)
	t.Logf("%s: gateway updated after %v; longest reply gap %v; %d of %d pings lost", what, took.Round(time.Millisecond), gap.Round(time.Millisecond), lost, len(rs)+lost)
	return took, gap, lost
}

func TestMobikeRouteChange(t *testing.T) {
	l, _, _ := newTwoLinkClientLab(t, "", "")
	took, _, _ := l.measureMove("route change", func() {
		l.exec(l.cl, "ip", "route", "replace", "default", "via", "192.0.2.129")
	}, "192.0.2.138:4500", 5*time.Second)
	if took > time.Second {
		t.Errorf("the move took %v", took)
	}
}

func TestMobikeSilentPathFailure(t *testing.T) {
	l, gw, cl := newTwoLinkClientLab(t, "    dpd_delay: 1s\n", "retransmit: { timeout: 500ms, tries: 5, base: 1.5 }\n")
	defer func() {
		if t.Failed() {
			t.Logf("client:\n%s\ngateway:\n%s", cl.output(), gw.output())
		}
	}()
	// The path breaks for both of eth0's addresses, so that the one working pair is
	// 192.0.2.138 -> 198.51.100.1 (with IPv6 left open, whichever family answers first
	// wins the probing race).
	took, _, _ := l.measureMove("silent path failure", func() {
		l.exec(l.rt, "nft", "add table inet flt; add chain inet flt fw { type filter hook forward priority 0; }; add rule inet flt fw ip saddr 192.0.2.10 drop; add rule inet flt fw ip daddr 192.0.2.10 drop; add rule inet flt fw ip6 saddr 2001:db8:1::10 drop; add rule inet flt fw ip6 daddr 2001:db8:1::10 drop")
	}, "192.0.2.138:4500", 10*time.Second)
	if !strings.Contains(cl.output(), "path probing") {
		t.Errorf("the client did not probe paths:\n%s", cl.output())
	}
	if took > 5*time.Second {
		t.Errorf("recovery took %v", took)
	}
}

func TestMobikeNATRebinding(t *testing.T) {
	l := newTunnelLab(t)
	l.exec(l.rt, "nft", "add table ip nat; add chain ip nat post { type nat hook postrouting priority 100; }; add rule ip nat post ip saddr 192.0.2.0/24 oifname eth1 masquerade")
	l.gwCfg = l.dir + "/gw.yaml"
	l.clCfg = l.dir + "/cl.yaml"
	writeFile(t, l.gwCfg, l.gatewayConfig(""))
	writeFile(t, l.clCfg, "retransmit: { timeout: 500ms, tries: 5, base: 1.5 }\n"+strings.Replace(l.clientConfig("198.51.100.1", ""), "    start_action: none\n", "    start_action: none\n    dpd_delay: 1s\n", 1))
	gw, cl := l.runDaemons()
	l.up(cl, gw)
	time.Sleep(1500 * time.Millisecond) // a first liveness check records the NAT mapping
	before := status(t, l.gwSock).IKESAs[0].Remote
	if !strings.HasPrefix(before, "198.51.100.254:") {
		t.Fatalf("gateway sees the client at %s, want the NAT's address", before)
	}
	// The NAT rebinds: forget its mappings and map the client to other ports.
	f := l.startFlow(l.cl, "198.18.0.1", 20*time.Millisecond)
	time.Sleep(time.Second)
	at := time.Now()
	l.exec(l.rt, "nft", "flush chain ip nat post; add rule ip nat post ip saddr 192.0.2.0/24 oifname eth1 meta l4proto udp masquerade to :40000-40100")
	l.exec(l.rt, "conntrack", "-F")
	if !waitFor(8*time.Second, func() bool {
		st := status(t, l.gwSock)
		return st != nil && len(st.IKESAs) == 1 && st.IKESAs[0].Remote != before
	}) {
		t.Fatalf("gateway did not follow the NAT rebinding:\n%s\n%s", cl.output(), gw.output())
	}
	took := time.Since(at)
	time.Sleep(time.Second)
	rs := f.stop()
	gap, lost := gapAndLoss(rs, at)
	t.Logf("NAT rebinding: gateway followed after %v (%s -> %s); longest reply gap %v; %d of %d pings lost",
		took.Round(time.Millisecond), before, status(t, l.gwSock).IKESAs[0].Remote, gap.Round(time.Millisecond), lost, len(rs)+lost)
}
