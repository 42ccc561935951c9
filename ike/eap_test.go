package ike

import (
	"crypto/x509"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/eap"
	"github.com/mobikevpn/mobikevpn/wire"
)

// eapSecrets is a secrets table of EAP passwords.
func eapSecrets(m map[string]string) func(string) ([]byte, bool) {
	return func(id string) ([]byte, bool) {
		pw, ok := m[id]
		return []byte(pw), ok
	}
}

// eapPair is a gateway with a certificate that asks its clients for EAP method
// (remote auth), and a client that authenticates with local auth clAuth.
func eapPair(t *testing.T, p *testPKI, method, clAuth string, mutate func(g, c *Config)) (*testNet, *endpoint, *endpoint) {
	t.Helper()
	gwCred := p.leaf(t, "ecdsa", "gw.example.org", []string{"gw.example.org"}, nil, nil)
	return pair(t, "aes256-sha256-prfsha256-ecp256", "aes256-sha256", func(g, c *Config) {
		gc, cc := g.Connections[0], c.Connections[0]
		gc.LocalAuth, gc.RemoteAuth, gc.LocalCred, gc.LocalID = AuthPubkey, method, gwCred, "gw.example.org"
		gc.RemoteCAs = []*x509.Certificate{p.ca}
		cc.LocalAuth, cc.RemoteAuth, cc.RemoteCAs, cc.RemoteID = clAuth, AuthPubkey, []*x509.Certificate{p.ca}, "gw.example.org"
		cc.LocalID, cc.EAPID = "", "alice"
		g.PSK, c.PSK = nil, nil
		g.EAPSecret = eapSecrets(map[string]string{"alice": "correct horse", "bob": "battery staple"})
		c.EAPSecret = eapSecrets(map[string]string{"alice": "correct horse"})
		if mutate != nil {
			mutate(g, c)
		}
	})
}

// authMessages returns the IKE_AUTH messages ep sent to peer, decrypted.
func authMessages(t *testing.T, ep, peer *endpoint) []wire.Message {
	var out []wire.Message
	for _, m := range decrypted(t, ep, peer) {
		if m.Header.Exchange == wire.IKE_AUTH {
			out = append(out, m)
		}
	}
	return out
}

// checkNothingLeft asserts that neither side kept an SA or installed anything.
func checkNothingLeft(t *testing.T, n *testNet, gw, cl *endpoint) {
	t.Helper()
	// The client (which keeps trying) goes away: what the gateway holds must go by itself.
	n.drop = func(d datagram) bool { return d.from.Addr() == clientAddr }
	n.run(time.Minute, nil)
	if len(gw.e.store.byID) != 0 || len(gw.outbound) != 0 || len(gw.inbound) != 0 || len(cl.outbound) != 0 || len(cl.inbound) != 0 {
		t.Errorf("state left behind: gateway %d SAs, %d/%d flows; client %d/%d flows",
			len(gw.e.store.byID), len(gw.outbound), len(gw.inbound), len(cl.outbound), len(cl.inbound))
	}
}

func TestEAPMSCHAPv2(t *testing.T) {
	p := newPKI(t, "mobikevpn test CA")
	n, gw, cl := eapPair(t, p, AuthEAPMSCHAPv2, AuthEAPMSCHAPv2, nil)
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatalf("not established: client %v gateway %v", cl.events, gw.events)
	}
	checkChildPair(t, gw, cl)
	if got := gw.e.Status(n.now)[0].RemoteID; got != "alice" {
		t.Errorf("the gateway sees the client as %q, want its EAP identity alice", got)
	}
	if len(cl.vips) != 1 {
		t.Errorf("client virtual IPs %v", cl.vips)
	}
	// The client's first IKE_AUTH has no AUTH; its last has AUTH from the MSK; the
	// gateway signed its first answer and sent a shared-key AUTH in its last.
	req := authMessages(t, cl, gw)
	resp := authMessages(t, gw, cl)
	if len(req) < 4 || len(resp) != len(req) {
		t.Fatalf("IKE_AUTH exchanges: %d requests, %d responses", len(req), len(resp))
	}
	if wire.Find[*wire.Auth](req[0].Payloads) != nil || wire.Find[*wire.SA](req[0].Payloads) == nil {
		t.Error("the first IKE_AUTH request carries AUTH, or no SA")
	}
	if a := wire.Find[*wire.Auth](resp[0].Payloads); a == nil || a.Method == wire.AuthSharedKey || wire.Find[*wire.EAP](resp[0].Payloads) == nil {
		t.Error("the gateway's first answer is not signed AUTH with an EAP request")
	}
	last := len(req) - 1
	if a := wire.Find[*wire.Auth](req[last].Payloads); a == nil || a.Method != wire.AuthSharedKey {
		t.Error("the client's last IKE_AUTH has no shared-key AUTH")
	}
	if a := wire.Find[*wire.Auth](resp[last].Payloads); a == nil || a.Method != wire.AuthSharedKey || wire.Find[*wire.SA](resp[last].Payloads) == nil {
		t.Error("the gateway's last answer has no shared-key AUTH or no SA")
	}
	if wire.FindID(resp[last].Payloads, false) != nil {
		t.Error("the gateway sent IDr again in its last answer")
	}
}

func TestEAPMSCHAPv2Refused(t *testing.T) {
	p := newPKI(t, "mobikevpn test CA")
	cases := map[string]func(g, c *Config){
		"wrong password": func(g, c *Config) { c.EAPSecret = eapSecrets(map[string]string{"alice": "wrong"}) },
		"unknown user": func(g, c *Config) {
			c.Connections[0].EAPID = "mallory"
			c.EAPSecret = eapSecrets(map[string]string{"mallory": "x"})
		},
		"gateway wants TLS": func(g, c *Config) { g.Connections[0].RemoteAuth = AuthEAPTLS },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			n, gw, cl := eapPair(t, p, AuthEAPMSCHAPv2, AuthEAPMSCHAPv2, mutate)
			n.run(time.Minute, func() bool { return cl.hasEvent(EventFailed) != nil })
			ev := cl.hasEvent(EventFailed)
			if ev == nil {
				t.Fatalf("client events %v", cl.events)
			}
			if !strings.Contains(ev.Reason, "EAP") && !strings.Contains(ev.Reason, "AUTHENTICATION_FAILED") {
				t.Errorf("reason %q", ev.Reason)
			}
			if gw.hasEvent(EventEstablished) != nil {
				t.Error("the gateway established an SA")
			}
			checkNothingLeft(t, n, gw, cl)
		})
	}
}

func TestEAPTLS(t *testing.T) {
	p := newPKI(t, "mobikevpn test CA")
	other := newPKI(t, "another CA")
	alice := p.leaf(t, "ecdsa", "alice", nil, []string{"alice@example.org"}, nil)
	run := func(t *testing.T, mutate func(g, c *Config)) (*testNet, *endpoint, *endpoint) {
		return eapPair(t, p, AuthEAPTLS, AuthEAPTLS, func(g, c *Config) {
			c.Connections[0].LocalCred = alice
			c.Connections[0].EAPID = "alice@example.org"
			if mutate != nil {
				mutate(g, c)
			}
		})
	}
	t.Run("accepted", func(t *testing.T) {
		n, gw, cl := run(t, nil)
		if !n.run(time.Minute, established(gw, cl)) {
			t.Fatalf("not established: client %v gateway %v", cl.events, gw.events)
		}
		checkChildPair(t, gw, cl)
		if got := gw.e.Status(n.now)[0].RemoteID; got != "alice@example.org" {
			t.Errorf("the gateway sees the client as %q", got)
		}
	})
	refusals := map[string]func(g, c *Config){
		"client certificate of another CA": func(g, c *Config) {
			c.Connections[0].LocalCred = other.leaf(t, "ecdsa", "alice", nil, []string{"alice@example.org"}, nil)
		},
		"EAP identity not in the certificate": func(g, c *Config) { c.Connections[0].EAPID = "bob@example.org" },
		"gateway not trusted by the client": func(g, c *Config) {
			c.Connections[0].RemoteCAs = []*x509.Certificate{other.ca}
		},
	}
	for name, mutate := range refusals {
		t.Run(name, func(t *testing.T) {
			n, gw, cl := run(t, mutate)
			n.run(time.Minute, func() bool { return cl.hasEvent(EventFailed) != nil })
			if cl.hasEvent(EventFailed) == nil || gw.hasEvent(EventEstablished) != nil {
				t.Fatalf("client events %v, gateway events %v", cl.events, gw.events)
			}
			// Whoever gave up told the other: the gateway holds nothing a second later
			// (long before the half-open timeout).
			n.run(time.Second, func() bool { return len(gw.e.store.byID) == 0 })
			if len(gw.e.store.byID) != 0 {
				t.Errorf("the gateway still holds %d SAs after the client gave up", len(gw.e.store.byID))
			}
			checkNothingLeft(t, n, gw, cl)
		})
	}
}

// TestEAPStalls: a client that stops in the middle of EAP-TLS leaves the gateway with
// a half-open SA that the half-open timeout removes, with its conversation (and the
// TLS goroutine).
func TestEAPStalls(t *testing.T) {
	p := newPKI(t, "mobikevpn test CA")
	alice := p.leaf(t, "ecdsa", "alice", nil, []string{"alice@example.org"}, nil)
	goroutines := runtime.NumGoroutine()
	n, gw, cl := eapPair(t, p, AuthEAPTLS, AuthEAPTLS, func(g, c *Config) {
		c.Connections[0].LocalCred = alice
		c.Connections[0].EAPID = "alice@example.org"
		c.Connections[0].StartAction = "none" // one attempt, no retries
	})
	_, acts, err := cl.e.Initiate(n.now, "home")
	if err != nil {
		t.Fatal(err)
	}
	n.apply(cl, acts)
	authSeen := 0
	n.drop = func(d datagram) bool {
		if d.from.Addr() != clientAddr {
			return false
		}
		if m, err := wire.ParseMessage(d.data); err == nil && m.Header.Exchange == wire.IKE_AUTH {
			authSeen++
			return authSeen > 3 // the identity and the first TLS round get through
		}
		return false
	}
	n.run(10*time.Second, nil)
	if len(gw.e.store.byID) != 1 || gw.e.store.byID[firstKey(gw)].eap == nil {
		t.Fatalf("the gateway has no EAP conversation under way")
	}
	n.run(40*time.Second, nil)
	if len(gw.e.store.byID) != 0 {
		t.Fatalf("the stalled conversation's SA is still there")
	}
	n.run(10*time.Minute, nil) // the client retransmits, then gives up
	if cl.hasEvent(EventFailed) == nil || len(cl.e.store.byID) != 0 {
		t.Fatalf("the client did not give up: %v", cl.events)
	}
	if gw.hasEvent(EventEstablished) != nil || cl.hasEvent(EventEstablished) != nil {
		t.Error("established")
	}
	// Both ends' TLS goroutines are gone (the client gave up after its retransmissions).
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > goroutines {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines, %d before\n%s", g, goroutines, buf[:runtime.Stack(buf, true)])
	}
}

func firstKey(ep *endpoint) uint64 {
	for k := range ep.e.store.byID {
		return k
	}
	return 0
}

// radiusServer plays RADIUS for the gateway's engine with a local EAP-MSCHAPv2
// authenticator (the test's stand-in for FreeRADIUS; internal/radius and the
// integration tests use the real one).
type radiusServer struct {
	srv   *eap.Server
	state []byte
}

func (r *radiusServer) answer(req AAARequest) AAAAnswer {
	if r.srv == nil {
		r.srv = eap.NewServer(func(string) (eap.ServerMethod, error) {
			return eap.NewMSCHAPv2Server("radius", eapSecrets(map[string]string{"alice": "correct horse"}), seededRand(7)), nil
		}, seededRand(8))
		// The gateway did the identity round itself: start ours from its answer.
		first, err := r.srv.Start()
		if err != nil {
			return AAAAnswer{Err: err}
		}
		// Re-stamp the identity response with our request's identifier.
		fp, err := eap.Parse(first)
		if err != nil {
			return AAAAnswer{Err: err}
		}
		p, err := eap.Parse(req.EAP)
		if err != nil {
			return AAAAnswer{Err: err}
		}
		p.ID = fp.ID
		req.EAP = p.Marshal()
	}
	out, st, _ := r.srv.Handle(req.EAP)
	switch st {
	case eap.StatusContinue:
		r.state = []byte("state-1")
		return AAAAnswer{Code: AAAChallenge, EAP: out, State: r.state}
	case eap.StatusSuccess:
		return AAAAnswer{Code: AAAAccept, EAP: out, MSK: r.srv.MSK()}
	}
	return AAAAnswer{Code: AAAReject, EAP: out}
}

func TestEAPRadius(t *testing.T) {
	p := newPKI(t, "mobikevpn test CA")
	t.Run("accepted", func(t *testing.T) {
		n, gw, cl := eapPair(t, p, AuthEAPRadius, AuthEAPMSCHAPv2, nil)
		rs := &radiusServer{}
		gw.aaa = rs.answer
		if !n.run(time.Minute, established(gw, cl)) {
			t.Fatalf("not established: client %v gateway %v", cl.events, gw.events)
		}
		checkChildPair(t, gw, cl)
		if len(gw.aaaReqs) < 3 || gw.aaaReqs[0].Identity != "alice" || gw.aaaReqs[0].State != nil || string(gw.aaaReqs[1].State) != "state-1" {
			t.Errorf("RADIUS requests: %+v", gw.aaaReqs)
		}
	})
	t.Run("rejected", func(t *testing.T) {
		n, gw, cl := eapPair(t, p, AuthEAPRadius, AuthEAPMSCHAPv2, func(g, c *Config) {
			c.EAPSecret = eapSecrets(map[string]string{"alice": "wrong"})
		})
		rs := &radiusServer{}
		gw.aaa = rs.answer
		n.run(time.Minute, func() bool { return cl.hasEvent(EventFailed) != nil })
		if cl.hasEvent(EventFailed) == nil || gw.hasEvent(EventEstablished) != nil {
			t.Fatalf("client events %v, gateway events %v", cl.events, gw.events)
		}
		checkNothingLeft(t, n, gw, cl)
	})
	t.Run("server down", func(t *testing.T) {
		n, gw, cl := eapPair(t, p, AuthEAPRadius, AuthEAPMSCHAPv2, nil)
		gw.aaa = func(AAARequest) AAAAnswer { return AAAAnswer{Err: errors.New("no RADIUS server answered")} }
		n.run(time.Minute, func() bool { return cl.hasEvent(EventFailed) != nil })
		ev := cl.hasEvent(EventFailed)
		if ev == nil || gw.hasEvent(EventEstablished) != nil {
			t.Fatalf("client events %v, gateway events %v", cl.events, gw.events)
		}
		if len(gw.aaaReqs) != 1 {
			t.Errorf("%d RADIUS requests", len(gw.aaaReqs))
		}
		checkNothingLeft(t, n, gw, cl)
	})
	t.Run("retransmission while waiting", func(t *testing.T) {
		n, gw, cl := eapPair(t, p, AuthEAPRadius, AuthEAPMSCHAPv2, nil)
		// RADIUS takes longer than the client's retransmission timeout: the request is
		// not passed on twice, and the answer still completes the exchange.
		var pending []func()
		rs := &radiusServer{}
		gw.aaa = nil
		n.run(30*time.Second, func() bool { return len(gw.aaaReqs) == 1 && len(cl.sent) > 3 })
		req := gw.aaaReqs[0]
		pending = append(pending, func() { n.apply(gw, gw.e.AAAAnswered(n.now, req.IKESA, req.Seq, rs.answer(req))) })
		if len(gw.aaaReqs) != 1 {
			t.Fatalf("%d RADIUS requests for one EAP packet", len(gw.aaaReqs))
		}
		gw.aaa = rs.answer
		pending[0]()
		if !n.run(time.Minute, established(gw, cl)) {
			t.Fatalf("not established: client %v gateway %v", cl.events, gw.events)
		}
	})
}

// TestEAPOnly: EAP-only authentication (RFC 5998) with EAP-TLS: when both ends want it,
// the gateway sends no AUTH before EAP and proves itself with its TLS certificate; a
// gateway that does not want it signs as usual; the client still checks the gateway's
// identity in the TLS certificate.
func TestEAPOnly(t *testing.T) {
	p := newPKI(t, "mobikevpn test CA")
	alice := p.leaf(t, "ecdsa", "alice", nil, []string{"alice@example.org"}, nil)
	run := func(t *testing.T, gwOnly bool, mutate func(g, c *Config)) (*testNet, *endpoint, *endpoint) {
		return eapPair(t, p, AuthEAPTLS, AuthEAPTLS, func(g, c *Config) {
			c.Connections[0].LocalCred, c.Connections[0].EAPID, c.Connections[0].EAPOnly = alice, "alice@example.org", true
			g.Connections[0].EAPOnly = gwOnly
			if mutate != nil {
				mutate(g, c)
			}
		})
	}
	for _, gwOnly := range []bool{true, false} {
		n, gw, cl := run(t, gwOnly, nil)
		if !n.run(time.Minute, established(gw, cl)) {
			t.Fatalf("gateway eap_only %v: not established: client %v gateway %v", gwOnly, cl.events, gw.events)
		}
		checkChildPair(t, gw, cl)
		req, resp := authMessages(t, cl, gw), authMessages(t, gw, cl)
		if wire.FindNotify(req[0].Payloads, wire.EAP_ONLY_AUTHENTICATION) == nil {
			t.Error("the client did not ask for EAP-only authentication")
		}
		signed := wire.Find[*wire.Auth](resp[0].Payloads) != nil || wire.Find[*wire.Cert](resp[0].Payloads) != nil
		if signed == gwOnly {
			t.Errorf("gateway eap_only %v: its first answer has AUTH or CERT: %v", gwOnly, signed)
		}
	}
	// The gateway claims an identity (IDr) its TLS certificate does not hold.
	n, gw, cl := run(t, true, func(g, c *Config) {
		g.Connections[0].LocalID, c.Connections[0].RemoteID = "vpn.example.org", "vpn.example.org"
	})
	n.run(time.Minute, func() bool { return cl.hasEvent(EventFailed) != nil })
	if ev := cl.hasEvent(EventFailed); ev == nil || cl.hasEvent(EventEstablished) != nil || !strings.Contains(ev.Reason, "does not carry") {
		t.Fatalf("a gateway without the expected identity was accepted: %v", cl.events)
	}
	checkNothingLeft(t, n, gw, cl)
}
