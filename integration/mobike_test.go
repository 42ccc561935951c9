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
	sent    int
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

// stop ends the flow and returns the replies.
func (f *flow) stop() []reply {
	time.Sleep(1200 * time.Millisecond) // let the last replies in
	f.cmd.Process.Signal(interruptSignal)
	<-f.done
	f.cmd.Wait()
	return f.all
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
