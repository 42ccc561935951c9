package integration

import (
	"fmt"
	"maps"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestHybridMLKEM (issue 18): our client and our gateway with x25519 plus ML-KEM-768
// as an additional key exchange (RFC 9370) in IKE_INTERMEDIATE (RFC 9242): the SA comes
// up, traffic flows, and the capture shows IKE_SA_INIT, IKE_INTERMEDIATE (fragmented:
// the encapsulation key is 1184 octets), IKE_AUTH; tshark decrypts IKE_AUTH and ESP with
// our key log (the final keys; IKE_INTERMEDIATE was protected with the first ones,
// which Wireshark's table, one key set per SPI pair, cannot hold too).
func TestHybridMLKEM(t *testing.T) {
	const hybrid = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
	l := newInteropLab(t)
	keys := filepath.Join(l.dir, "keys")
	c := l.startCapture("hybrid", l.rt, "eth1", "udp")
	l.mvGateway(mvOpts{Proposals: []string{hybrid}})
	l.mvClient(mvOpts{Proposals: []string{hybrid}, Top: []string{"keylog: " + keys}})
	if out, err := l.mvUp(l.clSock, "home"); err != nil {
		t.Fatalf("mobikevpn up home: %v\n%s", err, out)
	}
	l.mvEAPTraffic(t, "198.18.100.")
	for _, sock := range []string{l.clSock, l.gwSock} {
		if p := mvSA(t, sock)["proposal"]; p != hybrid {
			t.Errorf("negotiated %v, want %s", p, hybrid)
		}
	}
	c.stop()
	exchanges := c.tshark("-T", "fields", "-e", "isakmp.exchangetype", "-Y", "isakmp")
	var seq []string
	for _, x := range strings.Fields(exchanges) {
		if len(seq) == 0 || seq[len(seq)-1] != x {
			seq = append(seq, x)
		}
	}
	// 34 IKE_SA_INIT, 43 IKE_INTERMEDIATE, 35 IKE_AUTH (then INFORMATIONAL, 37, maybe).
	if got := strings.Join(seq, " "); got != "34 43 35" && !strings.HasPrefix(got, "34 43 35 37") {
		t.Errorf("exchanges on the wire: %v, want IKE_SA_INIT, IKE_INTERMEDIATE, IKE_AUTH", seq)
	}
	if frags := c.tshark("-Y", "isakmp.exchangetype == 43 && isakmp.frag.total > 1"); strings.Count(frags, "\n") < 2 {
		t.Errorf("the IKE_INTERMEDIATE request was not fragmented:\n%s", frags)
	}
	installKeyLog(t, keys, c.home)
	auth := c.tshark("-o", "esp.enable_encryption_decode:TRUE", "-V", "-Y", "isakmp.exchangetype == 35")
	for _, want := range []string{"alice@example.org", "Payload: Authentication (39)", "Payload: Traffic Selector - Initiator (44)"} {
		if !strings.Contains(auth, want) {
			t.Errorf("tshark did not decrypt IKE_AUTH (%q missing):\n%.2000s", want, auth)
		}
	}
	if icmp := c.tshark("-o", "esp.enable_encryption_decode:TRUE", "-Y", "icmp"); strings.Count(icmp, "Echo (ping)") < 6 {
		t.Errorf("tshark decrypted too few ICMP messages:\n%s", icmp)
	}
}

// TestHybridHandshakeCost measures (for the record, asserts only that every handshake
// succeeds) the cost of the hybrid exchange against x25519 alone on the same gateway:
// `mobikevpn bench handshake` with each proposal in turn, handshakes per second, the
// gateway's CPU per handshake, and the IKE bytes on the wire per handshake.
func TestHybridHandshakeCost(t *testing.T) {
	const plain, hybrid = "aes128gcm16-prfsha256-x25519", "aes128gcm16-prfsha256-x25519-ke1_mlkem768"
	n := scaleN(300)
	l, gw := newLoadLab(t, "", "dpd_delay: 5s", "dpd_delay: 120s",
		"proposals: [aes128gcm16-prfsha256-x25519]", "proposals: ["+hybrid+", "+plain+"]")
	pid := gw.cmd.Process.Pid
	for _, p := range []string{plain, hybrid} {
		c := l.startCapture("cost", l.rt, "eth1", "udp port 500 or udp port 4500")
		cpu0 := cpuSeconds(pid)
		r, out, err := l.bench("--count", strconv.Itoa(n), "--concurrency", "20", "--proposal", p)
		cpu := cpuSeconds(pid) - cpu0
		c.stop()
		if err != nil || r.Established != n {
			t.Fatalf("%s: established %d of %d: %v\n%s", p, r.Established, n, err, out)
		}
		// IKE bytes per handshake (the deletes at the end included) and fragments.
		lens := strings.Fields(c.tshark("-T", "fields", "-e", "udp.length", "-Y", "isakmp"))
		total := 0
		for _, s := range lens {
			v, _ := strconv.Atoi(s)
			total += v
		}
		frags := strings.Count(c.tshark("-Y", "isakmp.frag.total > 1"), "\n")
		t.Logf("%s: %.0f handshakes/s, gateway CPU %.2f ms per handshake, %.0f UDP bytes and %.1f datagrams of IKE per SA (setup and delete), %.1f fragments per SA",
			p, r.PerSecond, cpu/float64(n)*1000, float64(total)/float64(n), float64(len(lens))/float64(n), float64(frags)/float64(n))
	}
}

// TestHybridMLKEMRekeys: the Child SA rekeyed with PFS and the IKE SA rekeyed, both
// with x25519 plus ML-KEM-768 (CREATE_CHILD_SA, then IKE_FOLLOWUP_KE, RFC 9370 2.2.4),
// between our client and our gateway, traffic through every generation; tshark
// decrypts every IKE message after IKE_SA_INIT (the follow-ups, on the old IKE SA, and
// what runs on the new one) and the ESP of each Child SA from the client's key log.
func TestHybridMLKEMRekeys(t *testing.T) {
	const hybrid, espHybrid = "aes256gcm16-prfsha384-x25519-ke1_mlkem768", "aes256gcm16-x25519-ke1_mlkem768"
	l := newInteropLab(t)
	keys := filepath.Join(l.dir, "keys")
	l.mvGateway(mvOpts{Proposals: []string{hybrid}, ESPProposals: []string{espHybrid}})
	l.mvClient(mvOpts{Proposals: []string{hybrid}, ESPProposals: []string{espHybrid}, Top: []string{"keylog: " + keys},
		Conn: []string{"rekey_time: 7s"}, Child: []string{"rekey_time: 3s"}})
	if out, err := l.mvUp(l.clSock, "home"); err != nil {
		t.Fatalf("mobikevpn up home: %v\n%s", err, out)
	}
	// The capture starts after the initial exchange: Wireshark reassembles IKE fragments
	// by message ID and addresses only, and would take the new IKE SA's first
	// IKE_FOLLOWUP_KE (message ID 1, fragmented) for more of the first IKE SA's
	// IKE_INTERMEDIATE (message ID 1, fragmented, under keys the key log does not hold).
	c := l.startCapture("hybrid-rekey", l.rt, "eth1", "udp")
	first := mvSA(t, l.clSock)
	firstChild := mvChildren(first)[0]["spi_in"]
	seenChild := map[any]bool{}
	var beforeIKERekey map[any]bool // the Child SAs seen until the IKE SA was rekeyed
	// Traffic through each generation until the IKE SA was rekeyed and, after that, the
	// Child SA rekeyed over the new IKE SA (about 10 s).
	deadline := time.Now().Add(30 * time.Second)
	for {
		l.mvEAPTraffic(t, "198.18.100.")
		sa := mvSA(t, l.clSock)
		if sa["spi_i"] != first["spi_i"] && beforeIKERekey == nil {
			beforeIKERekey = maps.Clone(seenChild)
		}
		for _, ch := range mvChildren(sa) {
			seenChild[ch["spi_in"]] = true
		}
		if beforeIKERekey != nil && len(seenChild) > len(beforeIKERekey)+1 && len(seenChild) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: IKE SA %v/%v (first %v/%v), Child SAs seen %v", sa["spi_i"], sa["spi_r"], first["spi_i"], first["spi_r"], seenChild)
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, sock := range []string{l.clSock, l.gwSock} {
		sa := mvSA(t, sock)
		if p := sa["proposal"]; p != hybrid {
			t.Errorf("%s: IKE SA %v after the rekey, want %s", sock, p, hybrid)
		}
		for _, ch := range mvChildren(sa) {
			if p := ch["proposal"]; p != espHybrid {
				t.Errorf("%s: Child SA %v %v, want %s", sock, ch["spi_in"], p, espHybrid)
			}
		}
	}
	c.stop()
	// IKE messages by exchange type (a fragmented one once: its fragments share SPIs,
	// message ID and flags).
	n, msgs := map[string]int{}, map[string]bool{}
	for _, ln := range strings.Split(strings.TrimSpace(c.tshark("-T", "fields", "-e", "isakmp.exchangetype", "-e", "isakmp.ispi", "-e", "isakmp.messageid", "-e", "isakmp.flags", "-Y", "isakmp")), "\n") {
		if f := strings.Fields(ln); len(f) == 4 && !msgs[ln] {
			msgs[ln] = true
			n[f[0]]++
		}
	}
	// CREATE_CHILD_SA (36) and IKE_FOLLOWUP_KE (44), requests and responses: at least one
	// IKE SA rekey and two Child SA rekeys, each followed by one follow-up exchange.
	if n["36"] < 6 || n["44"] < 6 || n["44"] != n["36"] {
		t.Errorf("IKE messages on the wire by exchange type: %v (want CREATE_CHILD_SA each followed by IKE_FOLLOWUP_KE)", n)
	}
	installKeyLog(t, keys, c.home)
	// Every follow-up decrypted: its Key Exchange payload carries ML-KEM-768 (36): the
	// initiator's 1184-octet encapsulation key or the responder's 1088-octet ciphertext.
	fu := c.tshark("-T", "fields", "-e", "frame.number", "-e", "isakmp.ispi", "-e", "isakmp.messageid", "-e", "isakmp.flags", "-e", "isakmp.key_exchange.dh_group", "-e", "isakmp.key_exchange.data", "-Y", "isakmp.exchangetype == 44")
	kem := 0
	var summary []string
	for _, ln := range strings.Split(strings.TrimSpace(fu), "\n") {
		f := strings.Fields(ln)
		if len(f) == 6 && f[4] == "36" && (len(f[5]) == 2*1184 || len(f[5]) == 2*1088) {
			kem++
		}
		summary = append(summary, fmt.Sprintf("%.80s (%d fields)", ln, len(f)))
	}
	if kem != n["44"] || kem == 0 {
		t.Errorf("tshark decrypted %d of %d IKE_FOLLOWUP_KE messages with an ML-KEM-768 key exchange:\n%s", kem, n["44"], strings.Join(summary, "\n"))
	}
	// The CREATE_CHILD_SAs (on the first and on the new IKE SA) decrypted too: their KE is
	// x25519 (31).
	cc := c.tshark("-T", "fields", "-e", "isakmp.key_exchange.dh_group", "-Y", "isakmp.exchangetype == 36")
	if got := strings.Count(cc, "31"); got != n["36"] {
		t.Errorf("tshark decrypted %d of %d CREATE_CHILD_SA messages (x25519 KE):\n%s", got, n["36"], cc)
	}
	// ESP of every Child SA generation decrypted: the pings of each round.
	icmp := c.tshark("-o", "esp.enable_encryption_decode:TRUE", "-T", "fields", "-e", "esp.spi", "-Y", "icmp")
	spis := map[string]bool{}
	for _, s := range strings.Fields(icmp) {
		spis[s] = true
	}
	if len(spis) < 6 { // three generations, both directions
		t.Errorf("tshark decrypted ICMP in ESP of %d SPIs, want those of at least three Child SAs both ways: %v", len(spis), spis)
	}
	// The cost of a rekey on the wire: the UDP payload octets of CREATE_CHILD_SA and of
	// IKE_FOLLOWUP_KE (fragments included), per rekey.
	octets := map[string]int{}
	for _, ln := range strings.Split(strings.TrimSpace(c.tshark("-T", "fields", "-e", "isakmp.exchangetype", "-e", "udp.length", "-Y", "isakmp.exchangetype == 36 || isakmp.exchangetype == 44")), "\n") {
		if f := strings.Fields(ln); len(f) == 2 {
			v, _ := strconv.Atoi(f[1])
			octets[f[0]] += v - 8
		}
	}
	rekeys := n["36"] / 2
	t.Logf("IKE SA rekeyed (%v -> %v), %d Child SAs (first inbound SPI %v); IKE messages by exchange type %v; tshark decrypted %d IKE_FOLLOWUP_KE with ML-KEM-768 and ICMP in %d ESP SPIs; per rekey on the wire: CREATE_CHILD_SA %d octets, IKE_FOLLOWUP_KE %d octets",
		first["spi_i"], mvSA(t, l.clSock)["spi_i"], len(seenChild), firstChild, n, kem, len(spis), octets["36"]/max(rekeys, 1), octets["44"]/max(rekeys, 1))
}
