package integration

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/internal/loadgen"
)

// handshakeRun is what one gateway did for a run of the load generator.
type handshakeRun struct {
	name    string
	r       loadgen.Result
	took    time.Duration // until the gateway had every SA
	cpuMS   float64       // gateway CPU per handshake
	rssKiB  float64       // gateway RSS growth per SA
	summary string
}

// runHandshakes runs the generator with args against a gateway (process pid) until
// the gateway reports n established IKE SAs (established polls it), and returns the
// figures; the generator then holds the SAs briefly and deletes them.
func runHandshakes(t *testing.T, l *tunnelLab, name string, pid, n int, established func() int, args ...string) handshakeRun {
	t.Helper()
	cpu0, rss0 := cpuSeconds(pid), rssKiB(pid)
	start := time.Now()
	resCh := make(chan loadgen.Result, 1)
	go func() {
		r, out, err := l.bench(append([]string{"--count", strconv.Itoa(n), "--hold", "2s"}, args...)...)
		if err != nil {
			t.Errorf("bench against %s: %v %s", name, err, out)
		}
		resCh <- r
	}()
	var r loadgen.Result
	got, finished := 0, false
	if !waitFor(3*time.Minute, func() bool {
		select {
		case r = <-resCh:
			finished = true
			return true
		default:
		}
		time.Sleep(100 * time.Millisecond)
		got = established()
		return got >= n
	}) || finished {
		t.Fatalf("%s has %d of %d IKE SAs established (generator: %+v)", name, got, n, r)
	}
	h := handshakeRun{name: name, took: time.Since(start)}
	h.cpuMS = (cpuSeconds(pid) - cpu0) / float64(n) * 1000
	h.rssKiB = float64(rssKiB(pid)-rss0) / float64(n)
	h.r = <-resCh
	if h.r.Established != n || h.r.Failed != 0 {
		t.Errorf("%s: established %d, failed %d of %d", name, h.r.Established, h.r.Failed, n)
	}
	h.summary = fmt.Sprintf("%-10s %d IKE SAs + Child SAs in %v: %.0f handshakes/s; gateway CPU %.2f ms per handshake; RSS +%.1f KiB per SA",
		name, n, h.took.Round(time.Millisecond), h.r.PerSecond, h.cpuMS, h.rssKiB)
	t.Log(h.summary)
	return h
}

var swStatsRe = regexp.MustCompile(`IKE_SAs: (\d+) total, (\d+) half-open`)

// swEstablished is charon's number of IKE SAs that are not half-open (swanctl --stats).
func (s *strongswan) swEstablished() int {
	out, err := s.swanctl("--stats")
	if err != nil {
		return -1
	}
	m := swStatsRe.FindStringSubmatch(out)
	if m == nil {
		return -1
	}
	total, _ := strconv.Atoi(m[1])
	half, _ := strconv.Atoi(m[2])
	return total - half
}

// The same load generator, the same N, concurrency and proposals against our gateway
// and then against strongSwan's charon in the same namespace: handshakes per second and
// gateway CPU per handshake of both. Each client asks for a virtual IP, so that both
// gateways do the same work per client (a lease and a route through their TUN device;
// charon with kernel-libipsec cannot accept a Child SA whose remote selector is the
// peer's own address). Both gateways demand no COOKIEs (threshold above the
// concurrency) and log at their basic level. MOBIKEVPN_SWAN_N sets N (default 2000).
// The figures are logged, not asserted.
func TestManyHandshakesVsStrongSwan(t *testing.T) {
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("MOBIKEVPN_SWAN_N")); err == nil && v > 0 {
		n = v
	}
	const conc = "100"
	l := newLoadNet(t)
	// Ours.
	gw := startLoadGateway(t, l, "cookie_threshold: 1000\n",
		"dpd_delay: 5s", "dpd_delay: 120s",
		`addrs: [198.18.100.0/24, "2001:db8:100::/64"]`, `addrs: [198.18.128.0/17]`)
	ours := runHandshakes(t, l, "mobikevpn", gw.cmd.Process.Pid, n, func() int {
		if st := briefStatus(t, l.gwSock, false); st != nil {
			return st.Counts.Established
		}
		return -1
	}, "--concurrency", conc, "--vip")
	if !waitFor(30*time.Second, func() bool { st := briefStatus(t, l.gwSock, false); return st != nil && st.Counts.IKESAs == 0 }) {
		t.Errorf("our gateway still has SAs: %s", countsOf(briefStatus(t, l.gwSock, false)))
	}
	gw.kill()

	// charon, configured alike: the IKE SA table hashed (its default is one bucket, a
	// list), COOKIEs above the same threshold, 16 threads (its default), logging at
	// level 1 for IKE and Child SAs (one line per SA up, as ours at info) and 0 else.
	l.exec(l.gw, "ip", "addr", "add", "198.18.0.1/32", "dev", "lo")
	sw := startStrongSwan(l.lab, l.gw, "gateway", swOpts{
		Conns: []swConn{{
			Name:       "rw",
			LocalAddrs: []string{"198.51.100.1"},
			Proposals:  []string{"aes128gcm16-prfsha256-x25519"},
			Pools:      []string{"bench"},
			DPDDelay:   120 * time.Second,
			Local:      swAuth{Auth: "psk", ID: "gw.example.org"},
			Remote:     swAuth{Auth: "psk"},
			Children: []swChild{{
				Name:         "net",
				LocalTS:      []string{"198.18.0.0/24"},
				ESPProposals: []string{"aes128gcm16"},
			}},
		}},
		Pools:   []swPool{{Name: "bench", Addrs: "198.18.128.0/17"}},
		Secrets: []swSecret{{PSK: "bench secret"}},
		Charon: []string{
			"ikesa_table_size = 4096", "ikesa_table_segments = 16",
			"cookie_threshold = 1000", "threads = 16",
		},
		LogLevels: map[string]int{"dmn": 1, "mgr": 0, "ike": 1, "chd": 1, "job": 0, "cfg": 0, "knl": 0, "net": 0,
			"asn": 0, "enc": 0, "lib": 0, "esp": 0, "tls": 0},
	})
	theirs := runHandshakes(t, l, "strongSwan", sw.p.cmd.Process.Pid, n, sw.swEstablished, "--concurrency", conc, "--vip")
	if !waitFor(30*time.Second, func() bool { return sw.swEstablished() == 0 }) {
		t.Errorf("charon still has %d SAs", sw.swEstablished())
	}
	t.Logf("mobikevpn / strongSwan: %.2fx the handshakes per second, %.2fx the CPU per handshake (strongSwan %.2f ms, ours %.2f ms)",
		ours.r.PerSecond/theirs.r.PerSecond, ours.cpuMS/theirs.cpuMS, theirs.cpuMS, ours.cpuMS)
}

// 10,000 SAs with short liveness check and rekey intervals: the gateway runs every
// timer from its one engine goroutine (no goroutine or runtime timer per SA), so its
// goroutines do not grow with the SAs; the test samples the gateway's CPU each second
// while checks and rekeys fire, logs the peak, and checks that every SA survives them
// and that they all happened. MOBIKEVPN_SCALE_N sets how many SAs (default 10,000).
func TestTimersAtScale(t *testing.T) {
	n := scaleN(10000)
	const (
		// The intervals keep the exchanges at about 1,900 per second with 10,000 SAs
		// (half of what 5 s/10 s/14 s made): the generator answers all of them from one
		// engine goroutine, and at twice this rate a machine busy with anything else
		// starved it, the gateway's requests went unanswered, and SAs died of it (one
		// run: 161 IKE SA rekeys never answered, 9,775 of 10,000 done).
		dpd        = 10 * time.Second
		childRekey = 20 * time.Second // jittered by up to 10%
		ikeRekey   = 28 * time.Second
		// The generator holds the SAs this long once all are up: every SA sees its
		// checks, one or two Child SA rekeys and one IKE SA rekey. The last SA up is
		// due its IKE SA rekey within ikeRekey of the moment all are up; the rest of
		// the hold is margin for a loaded machine, where the generator (one engine
		// goroutine answering for 10,000 SAs) is slow to answer: one CI run that
		// shared the machine with fuzzing took 8 s to bring the SAs up and had only
		// 8,109 IKE SA rekeys complete 2 s after the last was due. A few of the first
		// SAs may start their second IKE SA rekey while the generator deletes them.
		hold = ikeRekey + 8*time.Second
	)
	l, gw := newLoadLab(t, "",
		"dpd_delay: 5s", fmt.Sprintf("dpd_delay: %v\n    rekey_time: %v", dpd, ikeRekey),
		"esp_proposals: [aes128gcm16]", fmt.Sprintf("esp_proposals: [aes128gcm16]\n        rekey_time: %v", childRekey))
	pid := gw.cmd.Process.Pid
	st0 := briefStatus(t, l.gwSock, false)
	if st0 == nil {
		t.Fatal("no status from the gateway")
	}
	resCh := make(chan loadgen.Result, 1)
	var benchOut string
	start := time.Now()
	go func() {
		r, out, err := l.bench("--count", strconv.Itoa(n), "--concurrency", "100", "--hold", hold.String())
		if err != nil {
			t.Errorf("bench: %v %s", err, out)
		}
		benchOut = out
		resCh <- r
	}()
	type sample struct {
		at         time.Duration
		cpu        float64 // CPU seconds in the last second
		goroutines int
		est        int
	}
	var samples []sample
	var upAt time.Duration
	var stUp, stEnd = briefStatus(t, l.gwSock, false), briefStatus(t, l.gwSock, false)
	var stEndAt time.Duration
	cpuPrev := cpuSeconds(pid)
	tick := time.NewTicker(time.Second)
	// The last sample comes up to a second after this check, and the generator's
	// hold began up to a second before upAt (after the previous sample, which still
	// showed fewer than n): stop 3 s early, so that no sample sees its deletes even
	// when a status answer is slow (a CI run stopping 1 s early sampled 7,333 left).
	// That is still 5 s after the last SA's IKE SA rekey was due.
	for upAt == 0 || time.Since(start) < upAt+hold-3*time.Second {
		if time.Since(start) > 2*time.Minute {
			t.Fatalf("the gateway never had all %d SAs established: %s", n, countsOf(stEnd))
		}
		<-tick.C
		st := briefStatus(t, l.gwSock, false)
		cpu := cpuSeconds(pid)
		if st == nil {
			t.Fatalf("gateway not answering after %v", time.Since(start))
		}
		samples = append(samples, sample{time.Since(start), cpu - cpuPrev, st.Runtime.Goroutines, st.Counts.Established})
		cpuPrev = cpu
		if upAt == 0 && st.Counts.Established >= n {
			upAt, stUp = time.Since(start), st
		}
		stEnd, stEndAt = st, time.Since(start)
	}
	tick.Stop()
	r := <-resCh
	if r.Established != n || r.Failed != 0 {
		t.Fatalf("established %d, failed %d of %d", r.Established, r.Failed, n)
	}
	if upAt == 0 {
		t.Fatalf("the gateway never had all %d SAs established", n)
	}
	var line []string
	peakCPU, peakG, sumCPU := 0.0, 0, 0.0
	after := 0
	for _, s := range samples {
		line = append(line, fmt.Sprintf("%.0fs:%.0f%%/%d/%d", s.at.Seconds(), s.cpu*100, s.goroutines, s.est))
		peakG = max(peakG, s.goroutines)
		if s.at > upAt {
			peakCPU = max(peakCPU, s.cpu)
			sumCPU += s.cpu
			after++
		}
	}
	rekeysIKE := stEnd.Counts.IKESAsCreated - stUp.Counts.IKESAsCreated
	rekeysChild := stEnd.Counts.ChildSAsCreated - stUp.Counts.ChildSAsCreated
	checks := stEnd.Counts.LivenessChecks
	t.Logf("%d SAs up after %v; then in %v: %d liveness checks (all along), %d Child SA rekeys, %d IKE SA rekeys; gateway CPU after establishment: peak %.0f%% of a core, mean %.0f%%, %.3f ms per check or rekey; goroutines %d idle, peak %d",
		n, upAt.Round(time.Millisecond), (stEndAt - upAt).Round(time.Second), checks, rekeysChild, rekeysIKE,
		peakCPU*100, sumCPU/float64(max(after, 1))*100, sumCPU*1000/float64(max(checks+rekeysChild+rekeysIKE, 1)), st0.Runtime.Goroutines, peakG)
	t.Logf("per second (time: CPU/goroutines/established): %v", line)
	t.Logf("the generator deleted %d IKE SAs in %v (%d given up)", r.Deleted, r.DeleteElapsed.Round(time.Millisecond), r.NotDeleted)
	if peakG > st0.Runtime.Goroutines+16 {
		t.Errorf("goroutines grew from %d to %d with %d SAs and their timers", st0.Runtime.Goroutines, peakG, n)
	}
	// Every SA survived its checks and rekeys, and they all happened.
	if slices.ContainsFunc(samples, func(s sample) bool { return s.at > upAt+time.Second && s.est < n }) {
		t.Errorf("established SAs dropped below %d after all were up", n)
	}
	if checks < uint64(n) || rekeysChild < uint64(n) || rekeysIKE < uint64(n) {
		t.Errorf("%d liveness checks, %d Child SA rekeys, %d IKE SA rekeys with %d SAs: want at least one of each per SA", checks, rekeysChild, rekeysIKE, n)
	}
	// None is left up. (A Delete or rekey the gateway sent while the generator deleted
	// and left may still wait for its retransmissions to time out.)
	if !waitFor(30*time.Second, func() bool { st := briefStatus(t, l.gwSock, false); return st != nil && st.Counts.Established == 0 }) {
		t.Errorf("gateway still has SAs up after the clients deleted theirs: %s\ngenerator: %s\n%s",
			countsOf(briefStatus(t, l.gwSock, false)), benchOut, leftoverSAs(t, l.gwSock, gw.output()))
	}
}

// leftoverSAs describes the IKE SAs a gateway still has: how many in each state, and
// the gateway's log lines about the first few established ones and the SAs they
// replaced, so that a failure shows which exchanges they went through.
func leftoverSAs(t *testing.T, sock, log string) string {
	st := statusJSON(t, sock)
	sas, _ := st["ike_sas"].([]any)
	states := map[string]int{}
	var ids []string
	for _, v := range sas {
		sa, _ := v.(map[string]any)
		state, _ := sa["state"].(string)
		states[state]++
		if id, ok := sa["id"].(float64); ok && state == "established" && len(ids) < 3 {
			ids = append(ids, strconv.Itoa(int(id)))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "IKE SAs by state: %v\n", states)
	lines := strings.Split(log, "\n")
	for _, id := range ids {
		// Follow the SA back through the rekeys that made it (new=ID names old=...).
		chain := map[string]bool{id: true}
		for changed := true; changed; {
			changed = false
			for _, ln := range lines {
				if !strings.Contains(ln, "IKE SA rekeyed") {
					continue
				}
				old, nw := logValue(ln, "old"), logValue(ln, "new")
				if chain[nw] && !chain[old] && old != "" {
					chain[old], changed = true, true
				}
			}
		}
		fmt.Fprintf(&b, "SA %s (and the SAs it replaced):\n", id)
		for _, ln := range lines {
			for _, k := range []string{"sa", "old", "new", "ours", "theirs"} {
				if chain[logValue(ln, k)] {
					b.WriteString("  " + ln + "\n")
					break
				}
			}
		}
	}
	return b.String()
}

// logValue is the value of key in a log line of key=value pairs ("" if absent).
func logValue(line, key string) string {
	i := strings.Index(line, " "+key+"=")
	if i < 0 {
		return ""
	}
	v := line[i+len(key)+2:]
	if j := strings.IndexByte(v, ' '); j >= 0 {
		v = v[:j]
	}
	return v
}
