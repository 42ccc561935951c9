package integration

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// IKE fragmentation (RFC 7383) against strongSwan (issue 3): certificates on both sides
// (an RSA-3072 gateway, an ECDSA client sending its intermediate CA too) make both
// IKE_AUTH messages larger than the 1280-byte path between them; the router drops IP
// fragments during the handshake, so only IKE fragments can cross.

// newFragLab is the interop lab with the gateway's link at MTU 1280 and a router that
// drops IP fragments (until allowIPFragments).
func newFragLab(t *testing.T) *interopLab {
	l := newInteropLab(t)
	l.exec(l.rt, "ip", "link", "set", "eth1", "mtu", "1280")
	l.exec(l.gw, "ip", "link", "set", "eth0", "mtu", "1280")
	l.exec(l.rt, "nft", "add table inet ipfrag; add chain inet ipfrag fw { type filter hook forward priority 0; }; "+
		"add rule inet ipfrag fw ip frag-off & 0x3fff != 0 counter drop; add rule inet ipfrag fw exthdr frag exists counter drop")
	return l
}

// allowIPFragments removes the router's fragment filter and returns how many IP
// fragments it dropped.
func (l *interopLab) allowIPFragments() int {
	out := l.exec(l.rt, "nft", "list chain inet ipfrag fw")
	n := 0
	for _, m := range regexp.MustCompile(`packets (\d+)`).FindAllStringSubmatch(out, -1) {
		k, _ := strconv.Atoi(m[1])
		n += k
	}
	l.exec(l.rt, "nft", "delete table inet ipfrag")
	return n
}

// TestInteropFragmentation: IKE_AUTH with certificates across the 1280-byte path, our
// client with strongSwan's gateway and strongSwan's client with ours.
func TestInteropFragmentation(t *testing.T) {
	gw := certEnd{credRSA, "gw.example.org"}
	cl := certEnd{credECDSA, "carol@example.org"}
	t.Run("mv-client", func(t *testing.T) {
		l := newFragLab(t)
		sw := l.swGateway(swCertOpts(t, swGatewayOpts(nil, nil), gw, cl.id, cl.cred.ca))
		l.mvClient(mvOpts{Local: cl.mvLocal(t, l.dir), Remote: mvRemoteCert(t, l.dir, gw.id, gw.cred.ca)})
		c := l.startCapture("frag", l.rt, "eth1", "udp")
		if out, err := l.mvUp(l.clSock, "home"); err != nil {
			t.Fatalf("mobikevpn up home: %v\n%s", err, out)
		}
		c.stop()
		checkFragmented(t, l, sw, c, "198.51.100.1")
		l.trafficCheck(t, sw, "198.18.200.")
	})
	t.Run("sw-client", func(t *testing.T) {
		l := newFragLab(t)
		l.mvGateway(mvOpts{Local: gw.mvLocal(t, l.dir), Remote: mvRemoteCert(t, l.dir, "%any", cl.cred.ca)})
		sw := l.swClient(swCertOpts(t, swClientOpts("198.51.100.1", nil, nil), cl, gw.id, gw.cred.ca))
		c := l.startCapture("frag", l.rt, "eth1", "udp")
		sw.mustInitiate("home", "net")
		c.stop()
		checkFragmented(t, l, sw, c, "198.51.100.1")
		l.trafficCheck(t, sw, "198.18.100.")
	})
}

// checkFragmented checks the capture of a handshake across the 1280-byte link: both
// IKE_AUTH messages went as IKE fragments (Encrypted Fragment payloads, each datagram
// within 1280 bytes), no IP fragment was needed, and strongSwan reassembled ours.
func checkFragmented(t *testing.T, l *interopLab, sw *strongswan, c *capture, gwAddr string) {
	t.Helper()
	if n := l.allowIPFragments(); n != 0 {
		t.Errorf("the router dropped %d IP fragments during the handshake", n)
	}
	out := c.tshark("-Y", "isakmp.exchangetype == 35", "-T", "fields", "-E", "separator=|",
		"-e", "ip.src", "-e", "ip.len", "-e", "ip.flags.mf", "-e", "ip.frag_offset", "-e", "isakmp.nextpayload", "-e", "isakmp.frag.number", "-e", "isakmp.frag.total")
	frags := map[string]int{} // by sender: "client", "gateway"
	for _, ln := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(ln, "|")
		if len(f) != 7 {
			t.Fatalf("tshark line %q", ln)
		}
		who := "client"
		if f[0] == gwAddr {
			who = "gateway"
		}
		size, _ := strconv.Atoi(f[1])
		total, _ := strconv.Atoi(f[6])
		if size > 1280 || f[2] != "0" || f[3] != "0" {
			t.Errorf("%s sent an IKE_AUTH datagram of %d bytes (MF %s, offset %s)", who, size, f[2], f[3])
		}
		if !strings.HasPrefix(f[4], "53") || total < 2 {
			t.Errorf("%s sent IKE_AUTH without IKE fragments: next payload %s, fragment %s of %s", who, f[4], f[5], f[6])
		}
		frags[who]++
	}
	if frags["client"] < 2 || frags["gateway"] < 2 {
		t.Errorf("IKE fragments seen on the link: %v; want at least 2 each way\n%s", frags, out)
	}
	log := sw.log()
	for _, want := range []string{"received fragment #1 of", "reassembled fragmented IKE message", "into 2 fragments"} {
		if !strings.Contains(log, want) {
			t.Errorf("strongSwan's log lacks %q:\n%s", want, grepLines(log, "fragment"))
		}
	}
	t.Logf("IKE_AUTH across MTU 1280: %d fragments from the client, %d from the gateway, no IP fragment; strongSwan: %s",
		frags["client"], frags["gateway"], strings.ReplaceAll(grepLines(log, "reassembled", "splitting"), "\n", "; "))
}
