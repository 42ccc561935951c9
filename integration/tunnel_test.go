package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const labPSK = "integration test secret, not for production"

// tunnelLab is a client and a gateway with a router between them:
//
//	client 192.0.2.10 / 2001:db8:1::10 -- router -- 198.51.100.1 / 2001:db8:2::1 gateway
//
// The gateway hands out 198.18.100.0/24 and 2001:db8:100::/64 and owns 198.18.0.1/24
// and 2001:db8:ff::1/64 on its TUN device.
type tunnelLab struct {
	*lab
	cl, rt, gw   string
	gwSock       string
	clSock       string
	gwCfg, clCfg string
}

func newTunnelLab(t *testing.T) *tunnelLab {
	l := &tunnelLab{lab: newLab(t)}
	l.cl, l.rt, l.gw = l.ns("cl"), l.ns("rt"), l.ns("gw")
	l.link(l.cl, "eth0", []string{"192.0.2.10/24", "2001:db8:1::10/64"}, l.rt, "eth0", []string{"192.0.2.1/24", "2001:db8:1::1/64"})
	l.link(l.gw, "eth0", []string{"198.51.100.1/24", "2001:db8:2::1/64"}, l.rt, "eth1", []string{"198.51.100.254/24", "2001:db8:2::254/64"})
	l.exec(l.rt, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	l.exec(l.cl, "ip", "route", "add", "default", "via", "192.0.2.1")
	l.exec(l.cl, "ip", "-6", "route", "add", "default", "via", "2001:db8:1::1")
	l.exec(l.gw, "ip", "route", "add", "default", "via", "198.51.100.254")
	l.exec(l.gw, "ip", "-6", "route", "add", "default", "via", "2001:db8:2::254")
	// Resolve the neighbours once: the first IPv6 packet across the router otherwise
	// waits about a second for neighbour discovery, which is not ours to measure.
	l.exec(l.cl, "ping", "-c", "1", "-W", "5", "198.51.100.1")
	l.exec(l.cl, "ping", "-c", "1", "-W", "5", "2001:db8:2::1")
	l.gwSock = filepath.Join(l.dir, "gw.sock")
	l.clSock = filepath.Join(l.dir, "cl.sock")
	return l
}

func (l *tunnelLab) gatewayConfig(extra string) string {
	return fmt.Sprintf(`control: %s
log_level: debug
tun: { name: mvpn0, mtu: 1400, addrs: [198.18.0.1/24, "2001:db8:ff::1/64"] }
secrets:
  - ids: [gw.example.org, alice@example.org]
    psk: %q
pools:
  - name: rw
    addrs: [198.18.100.0/24, "2001:db8:100::/64"]
    dns: [198.18.0.53]
connections:
  rw:
    local_addrs: [198.51.100.1, "2001:db8:2::1"]
    remote_addrs: ["%%any"]
    proposals: [aes128gcm16-prfsha256-x25519]
    pools: [rw]
    dpd_delay: 5s
    local: { auth: psk, id: gw.example.org }
    remote: { auth: psk, id: "%%any" }
    children:
      net:
        local_ts: [198.18.0.0/24, "2001:db8:ff::/64"]
        remote_ts: [dynamic]
        esp_proposals: [aes128gcm16]
%s`, l.gwSock, labPSK, extra)
}

func (l *tunnelLab) clientConfig(gateway, extra string) string {
	return fmt.Sprintf(`control: %s
log_level: debug
tun: { name: mvpn0, mtu: 1400 }
secrets:
  - ids: [gw.example.org, alice@example.org]
    psk: %q
connections:
  home:
    remote_addrs: [%q]
    proposals: [aes128gcm16-prfsha256-x25519]
    vips: [0.0.0.0, "::"]
    local: { auth: psk, id: alice@example.org }
    remote: { auth: psk, id: gw.example.org }
    start_action: none
    children:
      net:
        local_ts: [dynamic]
        remote_ts: [198.18.0.0/24, "2001:db8:ff::/64"]
        esp_proposals: [aes128gcm16]
%s`, l.clSock, labPSK, gateway, extra)
}

// startDaemons writes the default configurations, starts the gateway and the client
// and waits for both control sockets.
func (l *tunnelLab) startDaemons(gateway string) (gw, cl *proc) {
	t := l.t
	l.gwCfg = filepath.Join(l.dir, "gw.yaml")
	l.clCfg = filepath.Join(l.dir, "cl.yaml")
	writeFile(t, l.gwCfg, l.gatewayConfig(""))
	writeFile(t, l.clCfg, l.clientConfig(gateway, ""))
	return l.runDaemons()
}

// runDaemons starts the gateway and the client with l.gwCfg and l.clCfg and waits for
// both control sockets.
func (l *tunnelLab) runDaemons() (gw, cl *proc) {
	t := l.t
	bin := binary(t)
	gw = l.start("gateway", l.gw, bin, "run", "-c", l.gwCfg)
	cl = l.start("client", l.cl, bin, "run", "-c", l.clCfg)
	// A failure explains itself: both ends' exchanges, addresses and timings.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("client log, last lines without control requests:\n%s\n\ngateway log, last lines without control requests:\n%s",
				lastLines(withoutControl(cl.output()), 150), lastLines(withoutControl(gw.output()), 150))
		}
	})
	for _, s := range []struct {
		sock string
		p    *proc
	}{{l.gwSock, gw}, {l.clSock, cl}} {
		if !waitFor(10*time.Second, func() bool { return status(t, s.sock) != nil }) {
			t.Fatalf("%s did not open its control socket:\n%s", s.p.name, s.p.output())
		}
	}
	return gw, cl
}

// up runs `mobikevpn up home` on the client and returns how long it took.
func (l *tunnelLab) up(cl, gw *proc) time.Duration {
	t := l.t
	start := time.Now()
	out, err := exec.Command(binary(t), "up", "home", "--control", l.clSock).CombinedOutput()
	took := time.Since(start)
	if err != nil {
		// The drop counters say what neither log shows (IKE_SA_INIT retransmissions and
		// their cached answers are not logged).
		var drops []string
		for _, side := range []struct{ name, sock string }{{"client", l.clSock}, {"gateway", l.gwSock}} {
			if st := status(t, side.sock); st != nil {
				drops = append(drops, fmt.Sprintf("%s drops: %v", side.name, st.Drops))
			}
		}
		t.Fatalf("mobikevpn up home: %v\n%s\n%s\nclient log:\n%s\ngateway log:\n%s", err, out, strings.Join(drops, "\n"), cl.output(), gw.output())
	}
	return took
}

var rttRe = regexp.MustCompile(`= ([0-9.]+)/([0-9.]+)/([0-9.]+)/`)
var countsRe = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// pingAnswered reports whether ping's output shows want answers. With -c and -w, ping
// sends until want replies have come back, or the deadline: when replies are slow it
// sends a few more than want, and its "packet loss" counts those still on their way
// when it stopped as lost (one run: 6 transmitted, 5 received, RTT 340 ms). What
// matters is that every one of the want requests was answered.
func pingAnswered(out string, want int) bool {
	m := countsRe.FindStringSubmatch(out)
	if m == nil {
		return false
	}
	rx, _ := strconv.Atoi(m[2])
	return rx >= want
}

// ping pings from ns and returns the average RTT; it fails the test on any loss.
func (l *tunnelLab) ping(ns, dst string, count int) float64 {
	l.t.Helper()
	// -w: wait for every answer up to the deadline (with -W alone ping waits only two
	// round trips for the last one once any has come back: one answer slower than
	// 2 ms on a loaded machine counted as a lost packet).
	deadline := strconv.Itoa(5 + count/20)
	out, err := exec.Command("ip", "netns", "exec", ns, "ping", "-c", strconv.Itoa(count), "-i", "0.05", "-W", "2", "-w", deadline, dst).CombinedOutput()
	if err != nil {
		l.t.Fatalf("ping %s: %v\n%s", dst, err, out)
	}
	if !pingAnswered(string(out), count) {
		l.t.Fatalf("ping %s lost packets:\n%s", dst, out)
	}
	m := rttRe.FindStringSubmatch(string(out))
	if m == nil {
		l.t.Fatalf("no RTT in ping output:\n%s", out)
	}
	avg, _ := strconv.ParseFloat(m[2], 64)
	return avg
}

func TestTunnelIPv4Outer(t *testing.T) {
	testTunnel(t, "198.51.100.1", "192.0.2.10:4500", "198.51.100.1:4500")
}

func TestTunnelIPv6Outer(t *testing.T) {
	testTunnel(t, "2001:db8:2::1", "[2001:db8:1::10]:4500", "[2001:db8:2::1]:4500")
}

func testTunnel(t *testing.T, gateway, clientEnd, gatewayEnd string) {
	l := newTunnelLab(t)
	gw, cl := l.startDaemons(gateway)
	took := l.up(cl, gw)
	t.Logf("handshake (mobikevpn up): %v", took)
	// up is idempotent; an unknown name is bad usage.
	if again := l.up(cl, gw); again > time.Second {
		t.Errorf("second up took %v", again)
	}
	if out, err := exec.Command(binary(t), "up", "nosuch", "--control", l.clSock).CombinedOutput(); err == nil ||
		err.(*exec.ExitError).ExitCode() != 2 || !strings.Contains(string(out), "nosuch") {
		t.Errorf("up nosuch: %v %s", err, out)
	}
	if st := status(t, l.clSock); st == nil || len(st.IKESAs) != 1 {
		t.Errorf("client has %d IKE SAs after two ups", len(st.IKESAs))
	}
	if took > 500*time.Millisecond {
		t.Logf("slow handshake; client log:\n%s\ngateway log:\n%s", cl.output(), gw.output())
	}

	// Inner IPv4 and IPv6 through the tunnel.
	rtt4 := l.ping(l.cl, "198.18.0.1", 20)
	rtt6 := l.ping(l.cl, "2001:db8:ff::1", 20)
	t.Logf("ping RTT through the tunnel: IPv4 %.3f ms, IPv6 %.3f ms", rtt4, rtt6)
	// And from the gateway to the client's virtual IP.
	l.ping(l.gw, "198.18.100.1", 5)

	// A TCP transfer, checked byte for byte.
	mbps := l.tcpTransfer(l.cl, l.gw, "198.18.0.1:5001", "198.18.0.1:5001", 32<<20)
	t.Logf("TCP 32 MiB through the tunnel: %.0f Mbit/s (sender side)", mbps)
	l.tcpTransfer(l.gw, l.cl, "[2001:db8:100::1]:5002", "[2001:db8:100::1]:5002", 4<<20)

	// status --json on both sides, by field name.
	checkStatus(t, statusJSON(t, l.clSock), "initiator", "home", clientEnd, gatewayEnd, "alice@example.org", "gw.example.org")
	checkStatus(t, statusJSON(t, l.gwSock), "responder", "rw", gatewayEnd, clientEnd, "gw.example.org", "alice@example.org")

	// The control sockets are private.
	for _, sock := range []string{l.clSock, l.gwSock} {
		if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
			t.Errorf("control socket %s: %v %v", sock, fi.Mode(), err)
		}
	}

	// The human table mentions the SA.
	out, err := exec.Command(binary(t), "status", "--control", l.clSock).CombinedOutput()
	if err != nil || !contains(string(out), "home", "established", "198.18.100.1") {
		t.Errorf("status table: %v\n%s", err, out)
	}

	// SIGTERM on the client: it deletes its SA at the gateway, which forgets it within
	// seconds; the client exits 0 and its TUN device is gone.
	cl.signal(syscall.SIGTERM)
	start := time.Now()
	if !waitFor(5*time.Second, func() bool {
		st := status(t, l.gwSock)
		return st != nil && len(st.IKESAs) == 0
	}) {
		t.Fatalf("gateway still has the SA 5 s after the client's SIGTERM:\n%s", gw.output())
	}
	t.Logf("gateway cleared the SA %v after the client's SIGTERM", time.Since(start).Round(time.Millisecond))
	code, exited := cl.wait(5 * time.Second)
	if !exited || code != 0 {
		t.Fatalf("client exit: exited=%v code=%d\n%s", exited, code, cl.output())
	}
	if out := l.exec(l.cl, "ip", "-o", "link"); strings.Contains(out, "mvpn0") {
		t.Errorf("client TUN device still there:\n%s", out)
	}
	// The gateway removed the route to the client's virtual IP.
	if out := l.exec(l.gw, "ip", "route"); strings.Contains(out, "198.18.100.1") {
		t.Errorf("gateway still routes the client's address:\n%s", out)
	}
}

func checkStatus(t *testing.T, m map[string]any, role, name, local, remote, localID, remoteID string) {
	t.Helper()
	sas, _ := m["ike_sas"].([]any)
	if len(sas) != 1 {
		t.Fatalf("%s: %d IKE SAs in status: %v", role, len(sas), m)
	}
	sa := sas[0].(map[string]any)
	want := map[string]any{
		"name": name, "role": role, "state": "established", "local": local, "remote": remote,
		"local_id": localID, "remote_id": remoteID, "proposal": "aes128gcm16-prfsha256-x25519",
		"mobike": true, "rmobike": true, "nat_local": false, "encap": true,
		"udp_encap": "forced", // no NAT on the path: forced by encap, not "behind NAT"
	}
	for k, v := range want {
		if sa[k] != v {
			t.Errorf("%s: %s = %v, want %v", role, k, sa[k], v)
		}
	}
	for _, k := range []string{"id", "spi_i", "spi_r", "nat_local", "nat_remote", "peer_additional_addrs", "virtual_ips", "established_s", "child_sas"} {
		if _, ok := sa[k]; !ok {
			t.Errorf("%s: status lacks %q", role, k)
		}
	}
	if spi, _ := sa["spi_i"].(string); len(spi) != 16 {
		t.Errorf("%s: spi_i %q", role, spi)
	}
	vips, _ := sa["virtual_ips"].([]any)
	if len(vips) != 2 || vips[0] != "198.18.100.1" || vips[1] != "2001:db8:100::1" {
		t.Errorf("%s: virtual_ips %v", role, vips)
	}
	children, _ := sa["child_sas"].([]any)
	if len(children) != 1 {
		t.Fatalf("%s: %d child SAs", role, len(children))
	}
	c := children[0].(map[string]any)
	if c["name"] != "net" || c["state"] != "installed" || c["proposal"] != "aes128gcm16" {
		t.Errorf("%s: child %v", role, c)
	}
	for _, k := range []string{"bytes_in", "bytes_out", "packets_in", "packets_out"} {
		if v, _ := c[k].(float64); v <= 0 {
			t.Errorf("%s: child %s = %v after traffic", role, k, c[k])
		}
	}
	if spi, _ := c["spi_in"].(string); len(spi) != 8 {
		t.Errorf("%s: spi_in %q", role, spi)
	}
	lts := fmt.Sprint(c["local_ts"])
	rts := fmt.Sprint(c["remote_ts"])
	if role == "initiator" {
		if lts != "[198.18.100.1/32 2001:db8:100::1/128]" || rts != "[198.18.0.0/24 2001:db8:ff::/64]" {
			t.Errorf("client TS %s === %s", lts, rts)
		}
	} else if rts != "[198.18.100.1/32 2001:db8:100::1/128]" || lts != "[198.18.0.0/24 2001:db8:ff::/64]" {
		t.Errorf("gateway TS %s === %s", lts, rts)
	}
}
