package integration

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/internal/control"
)

// Mobility must not be a redirection tool (design.md; RFC 4555 section 5): a switch is
// a hint that the client follows only once the new path answered, an authenticated
// message from a new source address moves nothing, and a client does not flap between
// two addresses at a responder's request.

// newMobilityLab is newSwitchLab (the gateway has 198.51.100.1 on eth0 and 203.0.113.1
// on eth1, both its local_addrs) with top-level configuration lines as well:
// gwTop/clTop at the top of each file, gwConn/clConn inside its connection.
func newMobilityLab(t *testing.T, gwTop, gwConn, clTop, clConn string) (*tunnelLab, *proc, *proc) {
	l := newTunnelLab(t)
	l.link(l.gw, "eth1", []string{"203.0.113.1/24"}, l.rt, "eth3", []string{"203.0.113.254/24"})
	l.exec(l.gw, "ip", "route", "add", "192.0.2.0/24", "via", "203.0.113.254", "dev", "eth1", "metric", "200")
	l.exec(l.cl, "ping", "-c", "1", "-W", "5", "203.0.113.1")
	l.gwCfg = filepath.Join(l.dir, "gw.yaml")
	l.clCfg = filepath.Join(l.dir, "cl.yaml")
	gwc := strings.Replace(l.gatewayConfig(""), `local_addrs: [198.51.100.1, "2001:db8:2::1"]`, `local_addrs: [198.51.100.1, 203.0.113.1, "2001:db8:2::1"]`, 1)
	gwc = strings.Replace(gwc, "    dpd_delay: 5s\n", "    dpd_delay: 5s\n"+gwConn, 1)
	writeFile(t, l.gwCfg, gwTop+gwc)
	writeFile(t, l.clCfg, clTop+strings.Replace(l.clientConfig("198.51.100.1", ""), "    start_action: none\n", "    start_action: none\n"+clConn, 1))
	gw, cl := l.runDaemons()
	l.up(cl, gw)
	return l, gw, cl
}

// dumpOnFailure prints, when the test failed, both daemons' logs, the router's
// nftables rules and whatever more tells the story (extra is called then).
func (l *tunnelLab) dumpOnFailure(gw, cl *proc, extra func() string) {
	l.t.Cleanup(func() {
		if !l.t.Failed() {
			return
		}
		var b strings.Builder
		fmt.Fprintf(&b, "lab: client 192.0.2.10 -- router (192.0.2.1 | 198.51.100.254, 203.0.113.254) -- gateway 198.51.100.1 (eth0), 203.0.113.1 (eth1)\n")
		if extra != nil {
			b.WriteString(extra())
		}
		if out, err := exec.Command("ip", "netns", "exec", l.rt, "nft", "list", "ruleset").CombinedOutput(); err == nil {
			fmt.Fprintf(&b, "router's nftables rules:\n%s\n", out)
		}
		fmt.Fprintf(&b, "client log (last lines, without control requests):\n%s\n\ngateway log (last lines, without control requests):\n%s\n",
			lastLines(withoutControl(cl.output()), 250), lastLines(withoutControl(gw.output()), 250))
		l.t.Log(b.String())
	})
}

// withoutControl drops a daemon's log lines about control requests (the tests poll
// status every 50 ms).
func withoutControl(log string) string {
	var out []string
	for _, ln := range strings.Split(log, "\n") {
		if !strings.Contains(ln, `msg="control: `) {
			out = append(out, ln)
		}
	}
	return strings.Join(out, "\n")
}

// endpoints renders a status's IKE SAs as "local -> remote", comma-separated.
func endpoints(st *control.Status) string {
	if st == nil {
		return "no status"
	}
	if len(st.IKESAs) == 0 {
		return "no IKE SA"
	}
	var out []string
	for _, sa := range st.IKESAs {
		out = append(out, sa.Local+" -> "+sa.Remote)
	}
	return strings.Join(out, ", ")
}

// nft runs an nftables script in namespace ns.
func (l *lab) nft(ns, script string) {
	l.t.Helper()
	l.exec(ns, "nft", script)
}

var nftCounterRe = regexp.MustCompile(`counter packets (\d+) bytes \d+.*comment "([^"]+)"`)

// nftCounters returns the packet counters of the rules of table (e.g. "inet mvblk")
// in ns, by the rules' comments.
func (l *lab) nftCounters(ns, table string) map[string]int {
	l.t.Helper()
	out := l.exec(ns, append([]string{"nft", "list", "table"}, strings.Fields(table)...)...)
	m := map[string]int{}
	for _, ln := range strings.Split(out, "\n") {
		if x := nftCounterRe.FindStringSubmatch(ln); x != nil {
			n, _ := strconv.Atoi(x[1])
			m[x[2]] += n
		}
	}
	return m
}

// saSample is one look at a daemon's only IKE SA.
type saSample struct {
	at                   time.Duration // since the watch began
	n                    int           // IKE SAs in the status (-1: no answer)
	state, local, remote string        // of the first IKE SA
	mobike               string        // its mobike_state
	child                bool          // an installed Child SA
}

func (s saSample) String() string {
	if s.n < 0 {
		return "no status"
	}
	if s.n == 0 {
		return "no IKE SA"
	}
	ms := s.mobike
	if ms == "" {
		ms = `""`
	}
	return fmt.Sprintf("%s %s -> %s mobike_state=%s child=%v (%d SA)", s.state, s.local, s.remote, ms, s.child, s.n)
}

func (s saSample) key() string { s.at = 0; return s.String() }

// saWatch polls both daemons' status every interval and keeps every sample.
type saWatch struct {
	mu     sync.Mutex
	zero   time.Time
	cl, gw []saSample
	stop   chan struct{}
	done   chan struct{}
}

func sampleOf(t *testing.T, sock string, zero time.Time) saSample {
	s := saSample{at: time.Since(zero), n: -1}
	st := status(t, sock)
	if st == nil {
		return s
	}
	s.n = len(st.IKESAs)
	if s.n > 0 {
		sa := st.IKESAs[0]
		s.state, s.local, s.remote, s.mobike = sa.State, sa.Local, sa.Remote, sa.MobikeState
		for _, c := range sa.ChildSAs {
			if c.State == "installed" {
				s.child = true
			}
		}
	}
	return s
}

// watchSAs starts polling the client's status, and the gateway's if it is ours; times
// are relative to zero.
func (l *tunnelLab) watchSAs(zero time.Time, interval time.Duration, ourGateway bool) *saWatch {
	w := &saWatch{zero: zero, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tk := time.NewTicker(interval)
		defer tk.Stop()
		for {
			c := sampleOf(l.t, l.clSock, zero)
			w.mu.Lock()
			w.cl = append(w.cl, c)
			w.mu.Unlock()
			if ourGateway {
				g := sampleOf(l.t, l.gwSock, zero)
				w.mu.Lock()
				w.gw = append(w.gw, g)
				w.mu.Unlock()
			}
			select {
			case <-w.stop:
				return
			case <-tk.C:
			}
		}
	}()
	l.t.Cleanup(w.end)
	return w
}

func (w *saWatch) end() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// samples returns copies of the samples so far.
func (w *saWatch) samples() (cl, gw []saSample) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]saSample(nil), w.cl...), append([]saSample(nil), w.gw...)
}

// timeline renders the changes in a series of samples.
func timeline(name string, ss []saSample) string {
	var b strings.Builder
	prev := ""
	for _, s := range ss {
		if k := s.key(); k != prev {
			fmt.Fprintf(&b, "  %s %+8.3fs %s\n", name, s.at.Seconds(), s)
			prev = k
		}
	}
	return b.String()
}

func (w *saWatch) timelines() string {
	cl, gw := w.samples()
	return "status timeline (times from the switch or the rewrite; every change seen at 50 ms polling):\n" + timeline("client ", cl) + timeline("gateway", gw)
}

// mvLogLines returns the lines of a daemon's log with msg="..." equal to msg that
// contain every one of subs.
// moveLines are the log lines of a client's moves: decided at once ("moving IKE SA")
// or confirmed after trying the new path ("IKE SA moved").
func moveLines(log string) []string {
	return append(mvLogLines(log, "moving IKE SA"), mvLogLines(log, "IKE SA moved")...)
}

func mvLogLines(log, msg string, subs ...string) []string {
	var out []string
	for _, ln := range strings.Split(log, "\n") {
		if !strings.Contains(ln, `msg="`+msg+`"`) && !strings.Contains(ln, "msg="+msg+" ") {
			continue
		}
		if contains(ln, subs...) {
			out = append(out, ln)
		}
	}
	return out
}

// TestSwitchToUnreachableTarget: the gateway asks the client to switch to 203.0.113.1,
// which the router blackholes in both directions. A switch is a hint: the client must
// keep ESP on the old path until the new one answered, fall back after its
// UPDATE_SA_ADDRESSES went unanswered a few times, and the tunnel must pass pings the
// whole time and long after.
func TestSwitchToUnreachableTarget(t *testing.T) {
	const (
		oldEnd = "198.51.100.1:4500"
		target = "203.0.113.1"
	)
	// The client's retransmission schedule decides how fast it gives up on the target:
	// 0.5 s, then x1.5 (as scripts/switch-compare.sh).
	l, gw, cl := newMobilityLab(t, "", "", "retransmit: { timeout: 500ms, tries: 5, base: 1.5 }\n", "")
	var w *saWatch
	var timings strings.Builder
	l.dumpOnFailure(gw, cl, func() string {
		s := timings.String()
		if w != nil {
			s += w.timelines()
		}
		return s
	})
	if cs := status(t, l.clSock).IKESAs[0]; cs.Remote != oldEnd || !cs.RMobike || len(cs.PeerAdditionalAddrs) == 0 || cs.PeerAdditionalAddrs[0] != target {
		t.Fatalf("client before the switch: remote %s, rmobike %v, peer_additional_addrs %v; want %s, true, [%s ...]", cs.Remote, cs.RMobike, cs.PeerAdditionalAddrs, oldEnd, target)
	}
	f := l.startFlow(l.cl, "198.18.0.1", 20*time.Millisecond)
	time.Sleep(time.Second)

	// The target is unreachable: the router drops everything to and from it, counting
	// what the client sends there (ESP: a non-zero SPI where IKE has its zero marker).
	l.nft(l.rt, `add table inet mvblk
add chain inet mvblk fw { type filter hook forward priority -10; policy accept; }
add rule inet mvblk fw ip daddr 203.0.113.1 udp dport 4500 @th,64,32 != 0 counter drop comment "esp-to-target"
add rule inet mvblk fw ip daddr 203.0.113.1 udp dport 4500 @th,64,32 0 counter drop comment "ike-to-target"
add rule inet mvblk fw ip daddr 203.0.113.1 counter drop comment "other-to-target"
add rule inet mvblk fw ip saddr 203.0.113.1 counter drop comment "from-target"`)

	mark := len(cl.output())
	at := time.Now()
	w = l.watchSAs(at, 50*time.Millisecond, true)
	out, code := l.switchCmd("--to", target, "--all", "--wait", "3s")
	fmt.Fprintf(&timings, "switch --to %s --all --wait 3s: exit %d after %v: %s\n", target, code, time.Since(at).Round(time.Millisecond), strings.TrimSpace(out))
	if code != 1 || !strings.Contains(out, "not moved: alice@example.org (SA #1)") {
		t.Errorf("switch to the blackholed target: exit %d, want 1 naming the peer as not moved:\n%s", code, out)
	}

	// Recovery: the client's SA went through a non-stable state (it tried the target)
	// and is back to "stable" on the old path. Polled up to 60 s after the switch; the
	// ping flow runs for at least 31 s, so that the tunnel is seen working half a minute
	// after the switch.
	var recovered time.Duration
	left, reported, died := false, false, false
	recoveredBy := func() bool {
		cs, _ := w.samples()
		for _, s := range cs {
			if s.n == 0 {
				died = true
			}
			if s.n != 1 {
				continue
			}
			if s.mobike != "" {
				reported = true
			}
			if s.mobike != "" && s.mobike != "stable" {
				left = true
			}
			if left && s.mobike == "stable" && s.remote == oldEnd {
				recovered = s.at
				return true
			}
		}
		return false
	}
	for time.Since(at) < 60*time.Second && !recoveredBy() && !died {
		// Nothing to wait for when status has no mobike_state at all.
		if !reported && time.Since(at) > 31*time.Second {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	rec := "never"
	if recovered > 0 {
		rec = recovered.Round(time.Millisecond).String()
	}
	fmt.Fprintf(&timings, "recovery (client back to stable at %s): %s (mobike_state reported: %v, left stable: %v, SA died: %v)\n", oldEnd, rec, reported, left, died)
	if d := time.Until(at.Add(31 * time.Second)); d > 0 {
		time.Sleep(d)
	}
	rs := f.stop()
	w.end()
	gap, lost := gapAndLoss(rs, at)
	ctr := l.nftCounters(l.rt, "inet mvblk")
	cs, gs := status(t, l.clSock), status(t, l.gwSock)
	t.Logf("switch to an unreachable target: switch exit %d; time to recover (client back to stable at %s): %s; %d of %d pings lost; longest reply gap %v; the client sent %d IKE and %d ESP packets to %s (%d other); %d from it dropped",
		code, oldEnd, rec, lost, len(rs)+lost, gap.Round(time.Millisecond),
		ctr["ike-to-target"], ctr["esp-to-target"], target, ctr["other-to-target"], ctr["from-target"])
	fmt.Fprintf(&timings, "pings: %d of %d lost, longest reply gap %v\n", lost, len(rs)+lost, gap.Round(time.Millisecond))

	switch {
	case died:
		t.Errorf("the client's IKE SA died after the switch")
	case !reported:
		t.Errorf("the client's status never reported mobike_state (want \"stable\" | \"updating\" | \"probing\" | \"verifying\")")
	case !left:
		t.Errorf("the client's mobike_state never left \"stable\" after the switch: it did not try the target")
	case recovered == 0:
		t.Errorf("the client did not come back to mobike_state \"stable\" with remote %s within 60 s of the switch", oldEnd)
	}
	if lost > 2 {
		t.Errorf("%d pings lost through the tunnel (at most 2 allowed): the client must keep ESP on the old path until the new one answers", lost)
	}
	if ctr["esp-to-target"] != 0 {
		t.Errorf("the client sent %d ESP packets to the unverified target %s", ctr["esp-to-target"], target)
	}
	if ctr["ike-to-target"] == 0 {
		t.Errorf("the client sent no IKE message to %s: it did not try the switch target", target)
	}
	if c := endpoints(cs); c != "192.0.2.10:4500 -> "+oldEnd {
		t.Errorf("client after the failed switch: %s, want one IKE SA with remote %s", c, oldEnd)
	}
	if g := endpoints(gs); g != oldEnd+" -> 192.0.2.10:4500" {
		t.Errorf("gateway after the failed switch: %s, want one IKE SA with local %s", g, oldEnd)
	}
	_, gws := w.samples()
	for _, s := range gws {
		if s.n == 1 && s.local != oldEnd {
			t.Errorf("the gateway moved its SA to %s at %+.3fs, though no UPDATE_SA_ADDRESSES could reach it", s.local, s.at.Seconds())
			break
		}
	}
	// The same through `status --json`, by field name.
	if sa := mvSA(t, l.clSock); sa == nil || sa["mobike_state"] != "stable" || sa["remote"] != oldEnd {
		t.Errorf("client's status --json after recovery: mobike_state %v remote %v, want stable %s", sa["mobike_state"], sa["remote"], oldEnd)
	}
	fmt.Fprintf(&timings, "client's messages since the switch:\n%s\n", grepLines(withoutControl(cl.outputSince(mark)), "msg="))
	if t.Failed() {
		t.FailNow()
	}
	l.ping(l.cl, "198.18.0.1", 5)
}

// spoofRouter puts on the router the counters of what anyone sends to 203.0.113.77 (an
// address nobody in the lab has), before routing: ESP, IKE requests, IKE responses,
// anything else (each packet counted once: the first rule that matches accepts it);
// and an empty forward chain for the rewrite.
func (l *tunnelLab) spoofRouter() {
	l.nft(l.rt, `add table ip mvspoof
add chain ip mvspoof pre { type filter hook prerouting priority -300; policy accept; }
add rule ip mvspoof pre ip daddr 203.0.113.77 udp dport 4500 @th,64,32 != 0 counter accept comment "esp-to-spoofed"
add rule ip mvspoof pre ip daddr 203.0.113.77 udp dport 4500 @th,64,32 0 @th,248,8 & 0x20 == 0 counter accept comment "ike-req-to-spoofed"
add rule ip mvspoof pre ip daddr 203.0.113.77 udp dport 4500 @th,64,32 0 @th,248,8 & 0x20 == 0x20 counter accept comment "ike-resp-to-spoofed"
add rule ip mvspoof pre ip daddr 203.0.113.77 counter accept comment "other-to-spoofed"
add chain ip mvspoof fw { type filter hook forward priority 0; policy accept; }`)
}

// spoofOn makes the router rewrite the source address of every UDP packet from the
// gateway's port 4500 at 198.51.100.1 to the client into 203.0.113.77 (stateless
// payload mangling: nftables fixes the IP header checksum and, for the pseudo-header,
// the UDP checksum). IKE requests and the rest are counted apart.
func (l *tunnelLab) spoofOn() {
	l.nft(l.rt, `add rule ip mvspoof fw ip saddr 198.51.100.1 ip daddr 192.0.2.10 udp sport 4500 @th,64,32 0 @th,248,8 & 0x20 == 0 counter ip saddr set 203.0.113.77 comment "rewritten-ike-req"
add rule ip mvspoof fw ip saddr 198.51.100.1 ip daddr 192.0.2.10 udp sport 4500 counter ip saddr set 203.0.113.77 comment "rewritten-other"`)
}

// spoofOff ends the rewrite (its counters stay readable until then: read them first).
func (l *tunnelLab) spoofOff() { l.nft(l.rt, "flush chain ip mvspoof fw") }

var spoofedAddrList = regexp.MustCompile(`N\((ADDITIONAL_IP[46]_ADDRESS|NO_ADDITIONAL_ADDRESSES)\)`)

// spoofRun is what happened around a spoofed-source address update.
type spoofRun struct {
	at          time.Time      // the rewrite went on
	w           *saWatch       // our client's status (and our gateway's, if ours)
	rewritten   map[string]int // the router's counters when the rewrite went off
	sent        map[string]int // ... at the end: what was sent to 203.0.113.77
	captured    int            // packets from 203.0.113.77 seen in the client's namespace
	fromSpoof   []string       // our client's log lines of IKE requests from 203.0.113.77
	updates     []string       // ... those with an address list
	moves       []string       // our client's log lines of moves after the rewrite went on
	lost, pings int
	gap         time.Duration
}

// spoofedUpdate runs a ping flow through the tunnel and, for 2 s, makes the router
// re-source the gateway's packets to 203.0.113.77 while the gateway's addresses change
// (change1 200 ms in, change2 1 s in: each makes the gateway send an address list
// update); then it waits settle for the gateway's retransmissions on the clean path.
func (l *tunnelLab) spoofedUpdate(cl *proc, ourGateway bool, timings *strings.Builder, change1, change2 func(), settle time.Duration) *spoofRun {
	r := &spoofRun{}
	l.spoofRouter()
	capt := l.startCapture("spoofed", l.cl, "eth0", "udp and src host 203.0.113.77")
	f := l.startFlow(l.cl, "198.18.0.1", 50*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	mark := len(cl.output())
	r.at = time.Now()
	r.w = l.watchSAs(r.at, 50*time.Millisecond, ourGateway)
	l.spoofOn()
	fmt.Fprintf(timings, "+0.000s rewrite 198.51.100.1:4500 -> 203.0.113.77:4500 on\n")
	time.Sleep(200 * time.Millisecond)
	change1()
	time.Sleep(time.Until(r.at.Add(time.Second)))
	change2()
	time.Sleep(time.Until(r.at.Add(2 * time.Second)))
	r.rewritten = l.nftCounters(l.rt, "ip mvspoof")
	l.spoofOff()
	fmt.Fprintf(timings, "%+.3fs rewrite off (it rewrote %d IKE requests, %d other packets)\n", time.Since(r.at).Seconds(), r.rewritten["rewritten-ike-req"], r.rewritten["rewritten-other"])
	time.Sleep(settle)
	rs := f.stop()
	r.w.end()
	capt.stop()
	r.sent = l.nftCounters(l.rt, "ip mvspoof")
	r.gap, r.lost = gapAndLoss(rs, r.at)
	r.pings = len(rs) + r.lost
	for _, ln := range strings.Split(capt.tshark("-T", "fields", "-e", "ip.src", "-e", "udp.srcport"), "\n") {
		if strings.Join(strings.Fields(ln), " ") == "203.0.113.77 4500" {
			r.captured++
		}
	}
	clLog := cl.outputSince(mark)
	r.fromSpoof = mvLogLines(clLog, "received INFORMATIONAL request", "remote=203.0.113.77:4500")
	for _, ln := range r.fromSpoof {
		if spoofedAddrList.MatchString(ln) {
			r.updates = append(r.updates, ln)
		}
	}
	r.moves = moveLines(clLog)
	fmt.Fprintf(timings, "our client's IKE requests from 203.0.113.77:\n%s\nour client's moves:\n%s\n", strings.Join(r.fromSpoof, "\n"), strings.Join(r.moves, "\n"))
	return r
}

func (r *spoofRun) summary() string {
	return fmt.Sprintf("%d packets from 203.0.113.77:4500 reached the client (%d IKE requests rewritten), %d of them address updates it processed; the client sent to 203.0.113.77: %d ESP, %d IKE requests, %d IKE responses, %d other; %d of %d pings lost, longest reply gap %v",
		r.captured, r.rewritten["rewritten-ike-req"], len(r.updates), r.sent["esp-to-spoofed"], r.sent["ike-req-to-spoofed"], r.sent["ike-resp-to-spoofed"], r.sent["other-to-spoofed"], r.lost, r.pings, r.gap.Round(time.Millisecond))
}

// check asserts that the run tested something (spoofed packets arrived and the client
// processed an address update among them) and that the client did not follow: its
// remote stayed oldEnd, it sent no IKE request, ESP or anything else to 203.0.113.77
// and at most one response per request that came from there (RFC 7296 2.11: a response
// goes where its request came from).
func (r *spoofRun) check(t *testing.T, l *tunnelLab, oldEnd string) {
	t.Helper()
	if r.captured == 0 || r.rewritten["rewritten-ike-req"] == 0 {
		t.Fatalf("the rewrite did not work: %d packets from 203.0.113.77 captured at the client, %d IKE requests rewritten", r.captured, r.rewritten["rewritten-ike-req"])
	}
	if len(r.updates) == 0 {
		t.Fatalf("the client's debug log shows no address update received from 203.0.113.77 (a broken checksum, the gateway sent none while the rewrite was on, or the client no longer logs every IKE message it receives): its IKE requests from there:\n%s", strings.Join(r.fromSpoof, "\n"))
	}
	cs, _ := r.w.samples()
	for _, s := range cs {
		if s.n == 1 && s.remote != oldEnd {
			t.Errorf("the client followed the spoofed source: remote %s at %+.3fs (%s)", s.remote, s.at.Seconds(), s)
			break
		}
	}
	if c := endpoints(status(t, l.clSock)); !strings.HasSuffix(c, " -> "+oldEnd) {
		t.Errorf("client afterwards: %s, want one IKE SA with remote %s", c, oldEnd)
	}
	if len(r.moves) > 0 {
		t.Errorf("the client moved its SA:\n%s", strings.Join(r.moves, "\n"))
	}
	if n := r.sent["esp-to-spoofed"] + r.sent["ike-req-to-spoofed"] + r.sent["other-to-spoofed"]; n != 0 {
		t.Errorf("the client sent %d ESP packets, %d IKE requests and %d other packets to 203.0.113.77, want none", r.sent["esp-to-spoofed"], r.sent["ike-req-to-spoofed"], r.sent["other-to-spoofed"])
	}
	if r.sent["ike-resp-to-spoofed"] > r.rewritten["rewritten-ike-req"] {
		t.Errorf("the client sent %d IKE responses to 203.0.113.77 for %d requests from there", r.sent["ike-resp-to-spoofed"], r.rewritten["rewritten-ike-req"])
	}
}

// TestSpoofedSourceAddressUpdate: while the gateway announces a change of its
// addresses (an authenticated INFORMATIONAL with ADDITIONAL_*_ADDRESS), an on-path
// attacker re-sources its packets to 203.0.113.77. The client is not behind a NAT and
// must not update the gateway's address from IKE packets (RFC 4555 3.8; design.md): its
// remote stays 198.51.100.1:4500, it sends no IKE request and no ESP to 203.0.113.77
// (answers to requests that came from there are what RFC 7296 2.11 asks, and are only
// counted), and the tunnel works afterwards.
func TestSpoofedSourceAddressUpdate(t *testing.T) {
	const oldEnd = "198.51.100.1:4500"
	l, gw, cl := newMobilityLab(t, "", "    additional_addrs: auto\n", "", "")
	var r *spoofRun
	var timings strings.Builder
	l.dumpOnFailure(gw, cl, func() string {
		s := timings.String()
		if r != nil {
			s += r.w.timelines()
		}
		return s
	})
	if cs := status(t, l.clSock).IKESAs[0]; cs.Remote != oldEnd || cs.NATLocal || len(cs.PeerAdditionalAddrs) == 0 {
		t.Fatalf("client before the test: remote %s nat_local %v peer_additional_addrs %v", cs.Remote, cs.NATLocal, cs.PeerAdditionalAddrs)
	}
	gwMark := len(gw.output())
	// The gateway's address set changes twice (203.0.113.1 goes, and comes back); each
	// change is an INFORMATIONAL with the new list. Its retransmissions start at 4 s.
	r = l.spoofedUpdate(cl, true, &timings, func() {
		l.exec(l.gw, "ip", "addr", "del", "203.0.113.1/24", "dev", "eth1")
		fmt.Fprintf(&timings, "+0.2s gateway: 203.0.113.1 removed\n")
	}, func() {
		l.exec(l.gw, "ip", "addr", "add", "203.0.113.1/24", "dev", "eth1")
		fmt.Fprintf(&timings, "+1.0s gateway: 203.0.113.1 added again\n")
	}, 6*time.Second)
	announced := mvLogLines(gw.outputSince(gwMark), "sending INFORMATIONAL request", "ADDITIONAL")
	fmt.Fprintf(&timings, "the gateway's announcements:\n%s\n", strings.Join(announced, "\n"))
	t.Logf("spoofed source, our gateway: %s", r.summary())
	if len(announced) == 0 {
		t.Fatalf("the gateway announced no address change")
	}
	r.check(t, l, oldEnd)
	if t.Failed() {
		t.FailNow()
	}
	l.ping(l.cl, "198.18.0.1", 5)
}

// TestSwitchBothDirectionsNoFlap: with switch_hold: 30s the client follows a switch to
// 203.0.113.1 and refuses, at once after, a switch back to 198.51.100.1, the address
// it left less than switch_hold ago.
//
// switch_hold is a connection key being added to the configuration (ike.Conn has the
// field); until the parser accepts it, the client refuses its file ("connections.home.
// switch_hold: unknown key") and this test fails when the lab starts the daemons.
func TestSwitchBothDirectionsNoFlap(t *testing.T) {
	const (
		oldEnd = "198.51.100.1:4500"
		newEnd = "203.0.113.1:4500"
	)
	// The gateway itself would refuse to ask (its own switch_hold, 30 s by default): this
	// test is about the client's.
	l, gw, cl := newMobilityLab(t, "", "    switch_hold: 0s\n", "", "    switch_hold: 30s\n")
	var timings strings.Builder
	l.dumpOnFailure(gw, cl, func() string { return timings.String() })
	f := l.startFlow(l.cl, "198.18.0.1", 20*time.Millisecond)
	time.Sleep(time.Second)
	at := time.Now()
	out, code := l.switchCmd("--to", "203.0.113.1", "--all", "--wait", "3s")
	fmt.Fprintf(&timings, "switch --to 203.0.113.1: exit %d after %v: %s\n", code, time.Since(at).Round(time.Millisecond), strings.TrimSpace(out))
	if code != 0 || !strings.Contains(out, "moved: alice@example.org (SA #1)") {
		t.Fatalf("switch to 203.0.113.1: exit %d, want 0 and moved:\n%s", code, out)
	}
	mark := len(cl.output())
	back := time.Now()
	out, code = l.switchCmd("--to", "198.51.100.1", "--all", "--wait", "3s")
	fmt.Fprintf(&timings, "switch --to 198.51.100.1 (%v after the first began): exit %d after %v: %s\n", back.Sub(at).Round(time.Millisecond), code, time.Since(back).Round(time.Millisecond), strings.TrimSpace(out))
	if code != 1 || !strings.Contains(out, "not moved: alice@example.org (SA #1)") {
		t.Errorf("switch straight back to 198.51.100.1: exit %d, want 1 (refused by the client's switch_hold):\n%s", code, out)
	}
	refused := mvLogLines(cl.outputSince(mark), "refusing to switch", "198.51.100.1")
	holdSaid := false
	for _, ln := range refused {
		if strings.Contains(ln, "hold") {
			holdSaid = true
		}
	}
	if !holdSaid {
		t.Errorf("the client's log does not say it refused because of switch_hold; its refusals:\n%s", strings.Join(refused, "\n"))
	}
	time.Sleep(500 * time.Millisecond)
	rs := f.stop()
	gap, lost := gapAndLoss(rs, at)
	moves := moveLines(cl.outputSince(0))
	cs, gs := status(t, l.clSock).IKESAs[0], status(t, l.gwSock).IKESAs[0]
	t.Logf("switch and back: first switch exit 0, back exit %d; the client moved %d times; %d of %d pings lost, longest gap %v; refusal: %s",
		code, len(moves), lost, len(rs)+lost, gap.Round(time.Millisecond), strings.Join(refused, " | "))
	if cs.Remote != newEnd || gs.Local != newEnd {
		t.Errorf("after the refused switch back: client remote %s, gateway local %s; want both %s", cs.Remote, gs.Local, newEnd)
	}
	if len(moves) != 1 {
		t.Errorf("the client moved %d times, want once:\n%s", len(moves), strings.Join(moves, "\n"))
	}
	if lost != 0 {
		t.Errorf("%d pings lost", lost)
	}
	l.ping(l.cl, "198.18.0.1", 5)
}
