package integration

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestForgedFloodDoesNotLockOutVictim (issue 11): IKE_SA_INITs forged with the client's
// own address, from elsewhere (the load generator's namespace puts 192.0.2.10 on its
// packets), used to lock that address out for the half-open timeout once five were
// half-open. Now the forged source is asked for COOKIEs it cannot return, and the real
// client, which can, connects at once.
func TestForgedFloodDoesNotLockOutVictim(t *testing.T) {
	// A busy gateway's cookie_threshold: COOKIEs for everyone do not mask the per-source
	// limit.
	l, gw := newLoadLab(t, "half_open_timeout: 30s\ncookie_threshold: 5000\n")
	// The flood's packets carry the victim's address; the router lets them through
	// (no reverse path filter) and routes the answers to the victim, who drops them.
	// (The generator sends from the hosts of a prefix: 192.0.2.9-14, the client's
	// 192.0.2.10 among them.)
	l.exec(l.prefix+"-lg", "ip", "route", "add", "local", "192.0.2.8/29", "dev", "lo")
	l.exec(l.rt, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
	for _, dev := range []string{"eth0", "eth1", "eth4"} {
		l.exec(l.rt, "sh", "-c", "sysctl -qw net.ipv4.conf."+dev+".rp_filter=0 2>/dev/null || true")
	}
	l.clCfg = l.dir + "/cl.yaml"
	writeFile(t, l.clCfg, l.clientConfig("198.51.100.1", ""))
	cl := l.start("client", l.cl, binary(t), "run", "-c", l.clCfg)
	if !waitFor(10*time.Second, func() bool { return status(t, l.clSock) != nil }) {
		t.Fatal("client did not start")
	}
	cmd := []string{"ip", "netns", "exec", l.prefix + "-lg", binary(t), "bench", "handshake", "--json",
		"--target", "198.51.100.1", "--sources", "192.0.2.8/29", "--psk", "bench secret", "--flood", "--rate", "200", "--duration", "4s"}
	done := make(chan string, 1)
	go func() {
		out, _ := exec.Command(cmd[0], cmd[1:]...).CombinedOutput()
		done <- string(out)
	}()
	time.Sleep(time.Second) // the forged requests are there first
	half := status(t, l.gwSock).HalfOpen
	took := l.up(cl, gw)
	out := <-done
	st := status(t, l.gwSock)
	t.Logf("forged flood with the client's address (200/s): %d half-open SAs when the client started; the client connected in %v; gateway drops %v; flood: %s",
		half, took.Round(time.Millisecond), st.Drops, strings.TrimSpace(out))
	if half == 0 {
		t.Fatal("the forged requests made no half-open SA: the test did not forge anything")
	}
	if took > 3*time.Second {
		t.Errorf("the client whose address was forged needed %v to connect", took)
	}
	l.ping(l.cl, "198.18.0.1", 3)
}
