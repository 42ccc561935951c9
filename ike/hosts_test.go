package ike

import (
	"bytes"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// resolveActions takes the Resolve actions out of acts.
func resolveActions(acts []Action) (rs []Resolve, rest []Action) {
	for _, a := range acts {
		if r, ok := a.(Resolve); ok {
			rs = append(rs, r)
		} else {
			rest = append(rest, a)
		}
	}
	return rs, rest
}

// TestHostNameResolvedEachAttempt: a client whose gateway is named by a host name asks
// for it to be resolved before every attempt (start, and the retry after one failed),
// tries every address it resolved to (the first does not answer here), and a failed
// resolution is retried after the backoff.
func TestHostNameResolvedEachAttempt(t *testing.T) {
	n := newTestNet(t)
	gw := n.add("gateway", gwAddr, gatewayConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16"))
	cc := clientConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
	cc.Connections[0].RemoteAddrs, cc.Connections[0].RemoteHosts = nil, []string{"vpn.example.org"}
	cl := n.add("client", clientAddr, cc)
	rs, rest := resolveActions(cl.e.StartAll(n.now))
	if len(rs) != 1 || rs[0].Conn != "home" || !slices.Equal(rs[0].Hosts, []string{"vpn.example.org"}) || len(rest) != 0 {
		t.Fatalf("start: %v then %v, want one Resolve and nothing else", rs, rest)
	}
	// The resolver fails (offline): tried again after the backoff, resolving again.
	n.apply(cl, cl.e.Resolved(n.now, "home", nil, errors.New("no such host")))
	if r := cl.e.retries["home"]; r == nil || r.at.Sub(n.now) != retryFirst {
		t.Fatalf("failed resolution: retry %v", r)
	}
	n.now = n.now.Add(retryFirst)
	rs, _ = resolveActions(cl.e.Tick(n.now))
	if len(rs) != 1 {
		t.Fatalf("the retry did not resolve again: %v", rs)
	}
	// Two addresses: the first (a dead one) is tried, then the gateway's.
	dead := netip.MustParseAddr("198.51.100.77")
	n.apply(cl, cl.e.Resolved(n.now, "home", map[string][]netip.Addr{"vpn.example.org": {dead, gwAddr}}, nil))
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatalf("not established: %v", cl.events)
	}
	sa := onlySA(t, cl)
	if sa.remote.Addr() != gwAddr || sa.host != "vpn.example.org" {
		t.Fatalf("SA at %v (host %q), want %v via vpn.example.org", sa.remote, sa.host, gwAddr)
	}
	if requestsTo(cl, dead) == 0 {
		t.Fatal("the first address was never tried")
	}
	// Every resolved address is a candidate peer address of the path manager.
	if !slices.Contains(cl.e.mobilityPolicy(sa.conn).RemoteAddrs, dead) {
		t.Errorf("path manager candidates %v lack %v", cl.e.mobilityPolicy(sa.conn).RemoteAddrs, dead)
	}
}

// TestHostNameInCertificate: a client that reached its gateway by host name, with no
// remote id, accepts only a certificate holding that name as a DNS subjectAltName.
func TestHostNameInCertificate(t *testing.T) {
	p := newPKI(t, "mobikevpn test CA")
	for _, tc := range []struct {
		name string
		dns  []string
		ok   bool
	}{
		{"name in certificate", []string{"vpn.example.org"}, true},
		{"another name only", []string{"other.example.org"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var clLog *bytes.Buffer
			n, gw, cl := certPair(t, p, "ecdsa", "ecdsa", func(g, c *Config) {
				// The gateway's address is in the certificate either way: the name decides.
				g.Connections[0].LocalCred = p.leaf(t, "ecdsa", "gw", tc.dns, nil, []netip.Addr{gwAddr})
				cc := c.Connections[0]
				cc.RemoteID, cc.RemoteAddrs, cc.RemoteHosts = "%any", nil, []string{"vpn.example.org"}
				clLog = captureLog(c)
			})
			// pair's StartAll asked for the name: answer it.
			n.apply(cl, cl.e.Resolved(n.now, "home", map[string][]netip.Addr{"vpn.example.org": {gwAddr}}, nil))
			if !tc.ok {
				wantRefused(t, n, gw, cl)
				if !strings.Contains(clLog.String(), "does not carry the gateway's host name vpn.example.org as a DNS subjectAltName") {
					t.Errorf("the client's log does not say why:\n%s", grepLog(clLog.String(), "authentication"))
				}
				return
			}
			if !n.run(time.Minute, established(gw, cl)) {
				t.Fatalf("not established: %v\n%s", cl.events, clLog)
			}
		})
	}
}
