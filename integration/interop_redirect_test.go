package integration

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// strongSwan's gateway redirects our client (`swanctl --redirect`, RFC 5685 6) to our
// gateway at another address: the client builds a new IKE SA there, saying where it came
// from (REDIRECTED_FROM), and deletes the one with strongSwan.
func TestInteropRedirectedByStrongSwan(t *testing.T) {
	l := newInteropLab(t)
	sw := l.swGateway(swGatewayOpts(nil, nil))
	gw2 := l.ns("gw2")
	l.link(gw2, "eth0", []string{"203.0.113.1/24"}, l.rt, "eth2", []string{"203.0.113.254/24"})
	l.exec(gw2, "ip", "route", "add", "default", "via", "203.0.113.254")
	gw2Sock := filepath.Join(l.dir, "gw2.sock")
	cfg := strings.Replace(l.mvGatewayConfig(mvOpts{GatewayAddrs: []string{"203.0.113.1"}}), l.gwSock, gw2Sock, 1)
	gp := l.startMV("gateway2", gw2, gw2Sock, cfg)
	cp := l.mvClient(mvOpts{})
	if out, err := l.mvUp(l.clSock, "home"); err != nil {
		t.Fatalf("up: %v\n%s", err, out)
	}
	l.ping(l.cl, "198.18.0.1", 2)
	if out, err := sw.swanctl("--redirect", "--ike", "rw", "--gateway", "203.0.113.1"); err != nil {
		t.Fatalf("swanctl --redirect: %v\n%s", err, out)
	}
	if !waitFor(10*time.Second, func() bool {
		st := status(t, l.clSock)
		return st != nil && len(st.IKESAs) == 1 && st.IKESAs[0].Remote == "203.0.113.1:4500" && len(st.IKESAs[0].ChildSAs) == 1
	}) {
		t.Fatalf("our client did not follow strongSwan's redirect: %+v\n%s", status(t, l.clSock), lastLines(withoutControl(cp.output()), 40))
	}
	if !waitFor(5*time.Second, func() bool { return len(sw.listSAs()) == 0 }) {
		t.Errorf("strongSwan keeps the redirected SA: %+v", sw.listSAs())
	}
	if !strings.Contains(gp.output(), "REDIRECTED_FROM") {
		t.Error("the IKE_SA_INIT at our gateway did not say where the client came from (REDIRECTED_FROM)")
	}
	l.ping(l.cl, "198.18.0.1", 2)
	t.Logf("redirected by strongSwan to our gateway at 203.0.113.1: %+v", status(t, l.clSock).IKESAs[0].Remote)
}
