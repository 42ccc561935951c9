package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A wrong PSK: `up` fails with AUTHENTICATION_FAILED and neither side keeps an SA.
func TestAuthenticationFailure(t *testing.T) {
	l := newTunnelLab(t)
	l.gwCfg = filepath.Join(l.dir, "gw.yaml")
	l.clCfg = filepath.Join(l.dir, "cl.yaml")
	writeFile(t, l.gwCfg, l.gatewayConfig(""))
	writeFile(t, l.clCfg, strings.Replace(l.clientConfig("198.51.100.1", ""), labPSK, "some other secret entirely", 1))
	bin := binary(t)
	gw, _ := l.runDaemons()
	out, err := exec.Command(bin, "up", "home", "--control", l.clSock).CombinedOutput()
	ee, _ := err.(*exec.ExitError)
	if ee == nil || ee.ExitCode() != 1 || !strings.Contains(string(out), "AUTHENTICATION_FAILED") {
		t.Fatalf("up with a wrong PSK: err %v, output %q", err, out)
	}
	for _, s := range []string{l.gwSock, l.clSock} {
		if st := status(t, s); st == nil || len(st.IKESAs) != 0 {
			t.Errorf("%s keeps SAs after AUTHENTICATION_FAILED: %+v", s, st)
		}
	}
	// The gateway logged why.
	if !strings.Contains(gw.output(), "AUTH payload does not verify") {
		t.Errorf("gateway log does not say why:\n%s", gw.output())
	}
}

// `down`, the key log read by tshark, and SIGHUP reloads.
func TestDownKeylogReload(t *testing.T) {
	for _, tool := range []string{"tcpdump", "tshark"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed; ./scripts/test.sh installs it", tool)
		}
	}
	l := newTunnelLab(t)
	keys := filepath.Join(l.dir, "keys")
	l.gwCfg = filepath.Join(l.dir, "gw.yaml")
	l.clCfg = filepath.Join(l.dir, "cl.yaml")
	writeFile(t, l.gwCfg, l.gatewayConfig(""))
	writeFile(t, l.clCfg, "keylog: "+keys+"\n"+l.clientConfig("198.51.100.1", ""))
	bin := binary(t)
	gw, cl := l.runDaemons()
	if !strings.Contains(cl.output(), "key log is on") {
		t.Error("no warning that the key log is on")
	}
	pcap := filepath.Join(l.dir, "capture.pcap")
	dump := l.start("tcpdump", l.rt, "tcpdump", "--immediate-mode", "-Z", "root", "-i", "eth1", "-U", "-w", pcap, "udp")
	time.Sleep(500 * time.Millisecond) // tcpdump needs a moment to attach
	l.up(cl, gw)
	l.ping(l.cl, "198.18.0.1", 3)

	// down: the client deletes its SA, the gateway confirms.
	out, err := exec.Command(bin, "down", "home", "--control", l.clSock).CombinedOutput()
	if err != nil {
		t.Fatalf("down: %v\n%s", err, out)
	}
	for _, s := range []string{l.gwSock, l.clSock} {
		if st := status(t, s); st == nil || len(st.IKESAs) != 0 {
			t.Errorf("%s keeps SAs after down", s)
		}
	}
	if out, err := exec.Command(bin, "down", "home", "--control", l.clSock).CombinedOutput(); err == nil {
		t.Errorf("down with nothing to delete succeeded: %s", out)
	}
	time.Sleep(200 * time.Millisecond)
	dump.signal(syscall.SIGINT)
	dump.wait(5 * time.Second)

	// The key files exist, are private, and decrypt the capture.
	home := filepath.Join(l.dir, "wshome")
	installKeyLog(t, keys, home)
	tshark := func(args ...string) string {
		cmd := exec.Command("tshark", append([]string{"-r", pcap, "-o", "esp.enable_encryption_decode:TRUE"}, args...)...)
		cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+home, "HOME="+home)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("tshark: %v\n%s", err, out)
		}
		return string(out)
	}
	icmp := tshark("-Y", "icmp")
	if !strings.Contains(icmp, "198.18.100.1") || !strings.Contains(icmp, "Echo (ping) request") || !strings.Contains(icmp, "Echo (ping) reply") {
		t.Errorf("tshark did not decrypt the ESP payloads to ICMP:\n%s", icmp)
	}
	ikeOut := tshark("-V", "-Y", "isakmp.exchangetype == 35")
	if !strings.Contains(ikeOut, "alice@example.org") || !strings.Contains(ikeOut, "gw.example.org") {
		t.Errorf("tshark did not decrypt IKE_AUTH (no identities in the output):\n%.3000s", ikeOut)
	}

	// SIGHUP: a good file is reloaded, a broken one is refused and the daemon goes on.
	gw.signal(syscall.SIGHUP)
	if !waitFor(5*time.Second, func() bool { return strings.Contains(gw.output(), "configuration reloaded") }) {
		t.Errorf("no reload after SIGHUP:\n%s", gw.output())
	}
	writeFile(t, l.gwCfg, l.gatewayConfig("    bogus_key: 1\n"))
	gw.signal(syscall.SIGHUP)
	if !waitFor(5*time.Second, func() bool { return strings.Contains(gw.output(), "reload failed") }) {
		t.Errorf("a broken file was not refused on SIGHUP:\n%s", gw.output())
	}
	if !strings.Contains(gw.output(), "bogus_key") {
		t.Errorf("the reload error does not name the key")
	}
	// Still serving: the client connects again.
	l.up(cl, gw)
}

// Rekeying under a continuous flow: Child SAs every few seconds, the IKE SA too, and no
// packet is lost nor the TCP connection stalled (make-before-break).
func TestRekeyUnderTraffic(t *testing.T) {
	l := newTunnelLab(t)
	l.gwCfg = filepath.Join(l.dir, "gw.yaml")
	l.clCfg = filepath.Join(l.dir, "cl.yaml")
	writeFile(t, l.gwCfg, l.gatewayConfig(""))
	cfg := l.clientConfig("198.51.100.1", "")
	cfg = strings.Replace(cfg, "    start_action: none\n", "    start_action: none\n    rekey_time: 7s\n", 1)
	cfg = strings.Replace(cfg, "        esp_proposals: [aes128gcm16]\n", "        esp_proposals: [aes128gcm16-x25519]\n        rekey_time: 3s\n", 1)
	writeFile(t, l.clCfg, cfg)
	writeFile(t, l.gwCfg, strings.Replace(l.gatewayConfig(""), "esp_proposals: [aes128gcm16]", "esp_proposals: [aes128gcm16-x25519, aes128gcm16]", 1))
	gw, cl := l.runDaemons()
	l.up(cl, gw)
	first := status(t, l.clSock).IKESAs[0]
	// The kernel's own IPv6 chatter on the new TUN device (router solicitations, MLD)
	// matches no policy; only what happens during the flow counts.
	before := map[string]map[string]uint64{l.clSock: status(t, l.clSock).Drops, l.gwSock: status(t, l.gwSock).Drops}

	// 20 s of ping at 50/s and, meanwhile, a 64 MiB TCP transfer checked byte for byte.
	done := make(chan string, 1)
	go func() {
		out, _ := exec.Command("ip", "netns", "exec", l.cl, "ping", "-c", "1000", "-i", "0.02", "-W", "1", "-w", "40", "198.18.0.1").CombinedOutput()
		done <- string(out)
	}()
	mbps := l.tcpTransfer(l.cl, l.gw, "198.18.0.1:5003", "198.18.0.1:5003", 64<<20)
	out := <-done
	if !pingAnswered(out, 1000) {
		t.Errorf("ping lost packets during rekeys:\n%s", out)
	}
	rekeys := strings.Count(cl.output(), "Child SA rekeyed")
	ikeRekeys := strings.Count(cl.output(), "IKE SA rekeyed")
	t.Logf("%d Child SA rekeys and %d IKE SA rekeys during the flow; TCP %.0f Mbit/s; ping: %s", rekeys, ikeRekeys, mbps, strings.TrimSpace(out[strings.LastIndex(out, "---"):]))
	if rekeys < 4 || ikeRekeys < 1 {
		t.Errorf("too few rekeys: %d Child, %d IKE", rekeys, ikeRekeys)
	}
	last := status(t, l.clSock)
	if len(last.IKESAs) < 1 || last.IKESAs[0].SPIi == first.SPIi {
		t.Errorf("IKE SA not rekeyed: %+v", last.IKESAs)
	}
	// The datapath never dropped a packet for a missing SA or a replay.
	for _, s := range []string{l.clSock, l.gwSock} {
		st := status(t, s)
		for _, k := range []string{"esp_unknown_spi", "esp_replay", "esp_auth_failed", "esp_no_policy"} {
			if st.Drops[k] != before[s][k] {
				t.Errorf("%s: %s went from %d to %d during the flow", s, k, before[s][k], st.Drops[k])
			}
		}
	}
}
