package eap

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// tlsTestPKI is a root CA with an intermediate below it, which issued the server's
// certificate and a client CA, which issued the client's (long chains: flights over
// 1024 octets); and a second root with a client certificate of its own.
type tlsTestPKI struct {
	roots      *x509.CertPool
	server     tls.Certificate // server leaf + intermediate
	client     tls.Certificate
	rogue      tls.Certificate // a client certificate of another CA
	rogueRoots *x509.CertPool
}

var (
	tlsPkiOnce sync.Once
	tlsPki     tlsTestPKI
)

// tlsTestNow is the time every certificate check of these tests runs at.
var tlsTestNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

type tlsTestCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var tlsSerial int64

func tlsIssue(tb testing.TB, parent *tlsTestCA, tmpl *x509.Certificate) *tlsTestCA {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tlsSerial++
	tmpl.SerialNumber = big.NewInt(tlsSerial)
	tmpl.NotBefore, tmpl.NotAfter = tlsTestNow.Add(-time.Hour), tlsTestNow.Add(24*time.Hour)
	signer, signerCert := key, tmpl
	if parent != nil {
		signer, signerCert = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, &key.PublicKey, signer)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return &tlsTestCA{cert, key}
}

func tlsCaTemplate(name string) *x509.Certificate {
	return &x509.Certificate{
		Subject: pkix.Name{CommonName: name}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
}

func tlsLeafTemplate(name string, eku x509.ExtKeyUsage) *x509.Certificate {
	t := &x509.Certificate{
		Subject: pkix.Name{CommonName: name}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{eku},
	}
	if eku == x509.ExtKeyUsageServerAuth {
		t.DNSNames = []string{name}
	} else {
		t.EmailAddresses = []string{name}
	}
	return t
}

func tlsChain(leaf *tlsTestCA, extra ...*tlsTestCA) tls.Certificate {
	c := tls.Certificate{Certificate: [][]byte{leaf.cert.Raw}, PrivateKey: leaf.key, Leaf: leaf.cert}
	for _, e := range extra {
		c.Certificate = append(c.Certificate, e.cert.Raw)
	}
	return c
}

func tlsGetPKI(tb testing.TB) tlsTestPKI {
	tlsPkiOnce.Do(func() {
		root := tlsIssue(tb, nil, tlsCaTemplate("Test Root CA"))
		inter := tlsIssue(tb, root, tlsCaTemplate("Test Intermediate CA"))
		srv := tlsIssue(tb, inter, tlsLeafTemplate("vpn.example.org", x509.ExtKeyUsageServerAuth))
		cliCA := tlsIssue(tb, inter, tlsCaTemplate("Test Client CA"))
		cli := tlsIssue(tb, cliCA, tlsLeafTemplate("alice@example.org", x509.ExtKeyUsageClientAuth))
		rogueRoot := tlsIssue(tb, nil, tlsCaTemplate("Rogue CA"))
		rogue := tlsIssue(tb, rogueRoot, tlsLeafTemplate("mallory@example.org", x509.ExtKeyUsageClientAuth))
		tlsPki.roots = x509.NewCertPool()
		tlsPki.roots.AddCert(root.cert)
		tlsPki.rogueRoots = x509.NewCertPool()
		tlsPki.rogueRoots.AddCert(rogueRoot.cert)
		tlsPki.server = tlsChain(srv, inter)
		tlsPki.client = tlsChain(cli, cliCA, inter) // more than 1024 octets in a flight
		tlsPki.rogue = tlsChain(rogue)
	})
	return tlsPki
}

func tlsTestNowFunc() time.Time { return tlsTestNow }

func tlsServerConfig(tb testing.TB, version uint16) *tls.Config {
	p := tlsGetPKI(tb)
	return &tls.Config{
		Certificates: []tls.Certificate{p.server}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: p.roots, MinVersion: tls.VersionTLS12, MaxVersion: version, Time: tlsTestNowFunc,
	}
}

func tlsPeerConfig(tb testing.TB, version uint16) *tls.Config {
	p := tlsGetPKI(tb)
	return &tls.Config{
		Certificates: []tls.Certificate{p.client}, RootCAs: p.roots, ServerName: "vpn.example.org",
		MinVersion: tls.VersionTLS12, MaxVersion: version, Time: tlsTestNowFunc,
	}
}

// tlsConversation is the record of one EAP-TLS conversation run by tlsConverse.
type tlsConversation struct {
	peerErr, srvErr error
	reqs, resps     [][]byte
	// succeededAt is the index of the request after whose response the peer first
	// reported Succeeded (-1: never).
	succeededAt int
}

// tlsConverse runs peer and server against each other on EAP-TLS type data, checking
// every packet's size and that each fits an EAP packet.
func tlsConverse(t testing.TB, peer PeerMethod, srv ServerMethod, frag int) tlsConversation {
	t.Helper()
	c := tlsConversation{succeededAt: -1}
	req, err := srv.Start("alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 * maxTLSRounds {
		tlsCheckPacket(t, CodeRequest, req, frag)
		c.reqs = append(c.reqs, req)
		resp, err := peer.Respond(req)
		if err != nil {
			c.peerErr = err
			return c
		}
		if peer.Succeeded() && c.succeededAt < 0 {
			c.succeededAt = len(c.reqs) - 1
		}
		tlsCheckPacket(t, CodeResponse, resp, frag)
		c.resps = append(c.resps, resp)
		var done bool
		req, done, err = srv.Next(resp)
		if done {
			if err == nil && req != nil {
				t.Errorf("server done with a request")
			}
			c.srvErr = err
			return c
		}
		if err != nil {
			t.Fatalf("server not done, but error %v", err)
		}
	}
	t.Fatal("the tlsConversation did not end")
	return c
}

func tlsCheckPacket(t testing.TB, code Code, data []byte, frag int) {
	t.Helper()
	if frag == 0 {
		frag = DefaultTLSFragmentSize
	}
	if len(data) > frag+5 {
		t.Errorf("%s of %d octets of type data, fragment size %d", code, len(data), frag)
	}
	b := Packet{Code: code, ID: 1, Type: TypeTLS, Data: data}.Marshal()
	if _, err := Parse(b); err != nil {
		t.Errorf("%s does not parse: %v", code, err)
	}
}

// tlsFragmented reports whether any of the packets has the M flag.
func tlsFragmented(pkts [][]byte) bool {
	for _, p := range pkts {
		if len(p) > 0 && p[0]&tlsFlagMore != 0 {
			return true
		}
	}
	return false
}

func tlsVersionName(v uint16) string { return tls.VersionName(v) }

// tlsCheckNoGoroutines fails unless every TLS goroutine has ended.
func tlsCheckNoGoroutines(t *testing.T) {
	t.Helper()
	if n := tlsGoroutines.Load(); n != 0 {
		t.Errorf("%d TLS goroutines still running", n)
	}
}

func TestTLSHandshake(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, frag := range []int{0, 200} {
			t.Run(fmt.Sprintf("%s/frag%d", tlsVersionName(v), frag), func(t *testing.T) {
				peer := NewTLSPeer(tlsPeerConfig(t, v)).(*TLSPeer)
				srv := NewTLSServer(tlsServerConfig(t, v)).(*TLSServer)
				peer.FragmentSize, srv.FragmentSize = frag, frag
				c := tlsConverse(t, peer, srv, frag)
				if c.peerErr != nil || c.srvErr != nil {
					t.Fatalf("peer error %v, server error %v", c.peerErr, c.srvErr)
				}
				tlsCheckSuccess(t, peer, srv, v)
				if !tlsFragmented(c.reqs) || !tlsFragmented(c.resps) {
					t.Errorf("not tlsFragmented both ways (requests %v, responses %v)", tlsFragmented(c.reqs), tlsFragmented(c.resps))
				}
				if last := len(c.reqs) - 1; c.succeededAt != last {
					t.Errorf("peer succeeded after request %d, want the last, %d", c.succeededAt, last)
				}
				if last := c.resps[len(c.resps)-1]; !bytes.Equal(last, []byte{0}) {
					t.Errorf("peer's last response %x, want the empty EAP-TLS response 00", last)
				}
				t.Logf("%d requests, %d responses", len(c.reqs), len(c.resps))
				peer.Close()
				srv.Close()
				if peer.MSK() != nil || srv.MSK() != nil {
					t.Error("an MSK survives Close")
				}
				if !peer.Succeeded() || PeerCertificate(peer) == nil || PeerCertificate(srv) == nil {
					t.Error("the outcome is lost by Close")
				}
				if _, done, err := srv.Next([]byte{0}); !done || err != nil {
					t.Errorf("server after Close: done %v, %v", done, err)
				}
				if _, err := peer.Respond([]byte{0}); !errors.Is(err, net.ErrClosed) {
					t.Errorf("peer after Close: %v", err)
				}
				tlsCheckNoGoroutines(t)
			})
		}
	}
}

func tlsCheckSuccess(t *testing.T, peer *TLSPeer, srv *TLSServer, v uint16) {
	t.Helper()
	if !peer.Succeeded() {
		t.Error("peer did not succeed")
	}
	pm, sm := peer.MSK(), srv.MSK()
	if len(pm) != 64 || !bytes.Equal(pm, sm) {
		t.Errorf("MSKs differ or are not 64 octets:\npeer   %x\nserver %x", pm, sm)
	}
	if peer.Version() != v || srv.Version() != v {
		t.Errorf("versions %x/%x, want %x", peer.Version(), srv.Version(), v)
	}
	if c := PeerCertificate(srv); c == nil || c.EmailAddresses[0] != "alice@example.org" {
		t.Errorf("server's PeerCertificate %v", c)
	}
	if c := PeerCertificate(peer); c == nil || c.DNSNames[0] != "vpn.example.org" {
		t.Errorf("peer's PeerCertificate %v", c)
	}
}

// TestTLS12MSKWithoutEMS: the MSK computed from the key log's master secret and the
// randoms (what a TLS 1.2 session without Extended Master Secret, as with strongSwan
// 5.9.8, needs) equals Go's exporter's, for a SHA-256 and a SHA-384 PRF.
func TestTLS12MSKWithoutEMS(t *testing.T) {
	for _, suite := range []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256} {
		for _, side := range []string{"server", "peer"} {
			t.Run(tls.CipherSuiteName(suite)+"/"+side, func(t *testing.T) {
				pc, sc := tlsPeerConfig(t, tls.VersionTLS12), tlsServerConfig(t, tls.VersionTLS12)
				sc.CipherSuites = []uint16{suite}
				peer := NewTLSPeer(pc).(*TLSPeer)
				srv := NewTLSServer(sc).(*TLSServer)
				defer peer.Close()
				defer srv.Close()
				if side == "server" {
					srv.noEKM = true
				} else {
					peer.noEKM = true
				}
				c := tlsConverse(t, peer, srv, 0)
				if c.peerErr != nil || c.srvErr != nil {
					t.Fatalf("peer error %v, server error %v", c.peerErr, c.srvErr)
				}
				tlsCheckSuccess(t, peer, srv, tls.VersionTLS12)
			})
		}
	}
}

// TestTLSKeyLogPassedOn: the caller's KeyLogWriter still gets the key log.
func TestTLSKeyLogPassedOn(t *testing.T) {
	var log bytes.Buffer
	pc := tlsPeerConfig(t, tls.VersionTLS12)
	pc.KeyLogWriter = &log
	peer, srv := NewTLSPeer(pc), NewTLSServer(tlsServerConfig(t, tls.VersionTLS12))
	defer peer.Close()
	defer srv.Close()
	if c := tlsConverse(t, peer, srv, 0); c.peerErr != nil || c.srvErr != nil {
		t.Fatalf("peer error %v, server error %v", c.peerErr, c.srvErr)
	}
	if !strings.HasPrefix(log.String(), "CLIENT_RANDOM ") {
		t.Errorf("key log %q", log.String())
	}
}

func TestTLSClientOfAnotherCA(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tlsVersionName(v), func(t *testing.T) {
			pc := tlsPeerConfig(t, v)
			rogue := tlsGetPKI(t).rogue // sent although the server asks for another CA's
			pc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &rogue, nil }
			peer, srv := NewTLSPeer(pc), NewTLSServer(tlsServerConfig(t, v))
			c := tlsConverse(t, peer, srv, 0)
			if c.peerErr != nil || c.srvErr == nil {
				t.Fatalf("peer error %v, server error %v; want the server to fail", c.peerErr, c.srvErr)
			}
			if !strings.Contains(c.srvErr.Error(), "certificate signed by unknown authority") {
				t.Errorf("server error %q does not say why", c.srvErr)
			}
			if peer.Succeeded() || peer.MSK() != nil || srv.MSK() != nil || PeerCertificate(srv) != nil {
				t.Error("success, an MSK or a certificate after the failure")
			}
			if _, done, err := srv.Next([]byte{0}); !done || err != c.srvErr {
				t.Errorf("Next after the failure: done %v, %v", done, err)
			}
			peer.Close()
			srv.Close()
			tlsCheckNoGoroutines(t)
		})
	}
}

func TestTLSServerUntrusted(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tlsVersionName(v), func(t *testing.T) {
			pc := tlsPeerConfig(t, v)
			pc.RootCAs = tlsGetPKI(t).rogueRoots
			peer, srv := NewTLSPeer(pc), NewTLSServer(tlsServerConfig(t, v))
			c := tlsConverse(t, peer, srv, 0)
			if c.peerErr == nil {
				t.Fatalf("peer did not fail (server error %v)", c.srvErr)
			}
			if !strings.Contains(c.peerErr.Error(), "certificate signed by unknown authority") {
				t.Errorf("peer error %q does not say why", c.peerErr)
			}
			if _, err := peer.Respond([]byte{0}); err != c.peerErr {
				t.Errorf("Respond after the failure: %v", err)
			}
			if peer.Succeeded() || peer.MSK() != nil || PeerCertificate(peer) != nil {
				t.Error("success, an MSK or a certificate after the failure")
			}
			peer.Close()
			srv.Close()
			tlsCheckNoGoroutines(t)
		})
	}
}

// TestTLSClientWithoutCertificate: a server configured not to ask still fails a
// handshake without a client certificate.
func TestTLSClientWithoutCertificate(t *testing.T) {
	sc := tlsServerConfig(t, tls.VersionTLS13)
	sc.ClientAuth = tls.NoClientCert
	peer, srv := NewTLSPeer(tlsPeerConfig(t, tls.VersionTLS13)), NewTLSServer(sc)
	defer peer.Close()
	defer srv.Close()
	c := tlsConverse(t, peer, srv, 0)
	if c.srvErr == nil || !strings.Contains(c.srvErr.Error(), "no certificate") {
		t.Errorf("peer error %v, server error %v; want the server to fail for the missing certificate", c.peerErr, c.srvErr)
	}
}

// TestTLS13WrongIndication: TLS 1.3 application data other than 0x00 fails the peer.
func TestTLS13WrongIndication(t *testing.T) {
	peer := NewTLSPeer(tlsPeerConfig(t, tls.VersionTLS13))
	srv := NewTLSServer(tlsServerConfig(t, tls.VersionTLS13)).(*TLSServer)
	srv.indication = []byte{1}
	defer peer.Close()
	defer srv.Close()
	c := tlsConverse(t, peer, srv, 0)
	if c.peerErr == nil || !strings.Contains(c.peerErr.Error(), "protected success indication") {
		t.Errorf("peer error %v", c.peerErr)
	}
	if peer.Succeeded() || peer.MSK() != nil {
		t.Error("peer succeeded")
	}
}

// TestTLS13SuccessOnlyAfterIndication: with TLS 1.3 the handshake is done (the
// server's certificate known) before the final request, but the peer only succeeds
// with the indication in that request.
func TestTLS13SuccessOnlyAfterIndication(t *testing.T) {
	peer := NewTLSPeer(tlsPeerConfig(t, tls.VersionTLS13)).(*TLSPeer)
	srv := NewTLSServer(tlsServerConfig(t, tls.VersionTLS13))
	defer peer.Close()
	defer srv.Close()
	req, _ := srv.Start("alice")
	var final []byte
	for range maxTLSRounds {
		resp, err := peer.Respond(req)
		if err != nil {
			t.Fatal(err)
		}
		var done bool
		if req, done, err = srv.Next(resp); done {
			t.Fatalf("server done early: %v", err)
		}
		if peer.PeerCertificate() != nil && !peer.tx.pending() && req[0]&tlsFlagLength != 0 {
			final = req // the server's flight after the peer's Finished
			break
		}
	}
	if final == nil || peer.Succeeded() || peer.MSK() != nil {
		t.Fatalf("before the final request: final %v, succeeded %v", final != nil, peer.Succeeded())
	}
	resp, err := peer.Respond(final)
	if err != nil || !peer.Succeeded() || !bytes.Equal(resp, []byte{0}) {
		t.Fatalf("final request: response %x, %v, succeeded %v", resp, err, peer.Succeeded())
	}
	if _, done, err := srv.Next(resp); !done || err != nil {
		t.Fatalf("server: done %v, %v", done, err)
	}
}

func tlsLenData(flags byte, total uint32, data []byte) []byte {
	b := []byte{flags | tlsFlagLength}
	b = binary.BigEndian.AppendUint32(b, total)
	return append(b, data...)
}

// TestTLSServerMalformed: malformed and unexpected responses end the server with an
// error, never a panic, and leave no goroutine behind.
func TestTLSServerMalformed(t *testing.T) {
	big := bytes.Repeat([]byte{0x16}, 16000)
	cases := map[string][][]byte{
		"empty":                {{}},
		"short length":         {{tlsFlagLength, 0, 0}},
		"length over 64 KiB":   {tlsLenData(tlsFlagMore, maxTLSMessage+1, []byte{1})},
		"length below data":    {tlsLenData(0, 2, []byte{1, 2, 3})},
		"length above data":    {tlsLenData(0, 10, []byte{1, 2, 3})},
		"length without data":  {tlsLenData(0, 10, nil)},
		"M without data":       {{tlsFlagMore}},
		"start from the peer":  {{tlsFlagStart}},
		"ack without fragment": {{0}},
		"length changed":       {tlsLenData(tlsFlagMore, 10, []byte{1}), tlsLenData(0, 11, []byte{2})},
		"ack inside message":   {tlsLenData(tlsFlagMore, 10, []byte{1}), {0}},
		"M after the length":   {tlsLenData(tlsFlagMore, 2, []byte{1}), {tlsFlagMore, 2}},
		"over 64 KiB unannounced": {
			append([]byte{tlsFlagMore}, big...), append([]byte{tlsFlagMore}, big...),
			append([]byte{tlsFlagMore}, big...), append([]byte{tlsFlagMore}, big...),
			append([]byte{tlsFlagMore}, big...),
		},
		"not TLS":          {{0, 1, 2, 3, 4, 5, 6, 7, 8}},
		"truncated record": {{0, 0x16, 3, 1, 0, 200, 1}},
		"garbage record":   {append([]byte{0, 0x16, 3, 1, 0, 50}, make([]byte, 50)...)},
	}
	for name, resps := range cases {
		t.Run(name, func(t *testing.T) {
			srv := NewTLSServer(tlsServerConfig(t, tls.VersionTLS13))
			if _, err := srv.Start("alice"); err != nil {
				t.Fatal(err)
			}
			var err error
			done := false
			for _, r := range resps {
				if _, done, err = srv.Next(r); done {
					break
				}
			}
			if !done || err == nil {
				t.Errorf("done %v, error %v; want a failure", done, err)
			} else {
				t.Logf("%v", err)
			}
			srv.Close()
			tlsCheckNoGoroutines(t)
		})
	}
}

// TestTLSPeerMalformed: malformed and unexpected requests fail the peer, never panic.
func TestTLSPeerMalformed(t *testing.T) {
	type tc struct {
		frag int
		reqs [][]byte
	}
	one := maxTLSFragmentSize // the ClientHello fits one response
	cases := map[string]tc{
		"empty":               {one, [][]byte{{}}},
		"before Start":        {one, [][]byte{tlsLenData(0, 1, []byte{1})}},
		"ack before Start":    {one, [][]byte{{0}}},
		"second Start":        {one, [][]byte{{tlsFlagStart}, {tlsFlagStart}}},
		"ack without pending": {one, [][]byte{{tlsFlagStart}, {0}}},
		"length over 64 KiB":  {one, [][]byte{{tlsFlagStart}, tlsLenData(0, maxTLSMessage+1, []byte{1})}},
		"length mismatch":     {one, [][]byte{{tlsFlagStart}, tlsLenData(0, 5, []byte{1})}},
		"data while pending":  {300, [][]byte{{tlsFlagStart}, tlsLenData(0, 1, []byte{1})}},
		"not TLS":             {one, [][]byte{{tlsFlagStart}, {0, 1, 2, 3, 4, 5, 6, 7, 8}}},
		"alert":               {one, [][]byte{{tlsFlagStart}, {0, 21, 3, 3, 0, 2, 2, 40}}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			peer := NewTLSPeer(tlsPeerConfig(t, tls.VersionTLS13)).(*TLSPeer)
			peer.FragmentSize = c.frag
			var err error
			for _, r := range c.reqs {
				if _, err = peer.Respond(r); err != nil {
					break
				}
			}
			if err == nil {
				t.Error("no error")
			} else {
				t.Logf("%v", err)
			}
			peer.Close()
			tlsCheckNoGoroutines(t)
		})
	}
}

// TestTLSRoundBound: a side gives up after maxTLSRounds packets.
func TestTLSRoundBound(t *testing.T) {
	srv := NewTLSServer(tlsServerConfig(t, tls.VersionTLS13))
	defer srv.Close()
	srv.Start("alice")
	n := 0
	for ; n < 2*maxTLSRounds; n++ {
		if _, done, err := srv.Next([]byte{tlsFlagMore, 0x16}); done {
			if !errors.Is(err, ErrTLSProtocol) || !strings.Contains(err.Error(), "more than 50") {
				t.Errorf("error %v", err)
			}
			break
		}
	}
	if n != maxTLSRounds {
		t.Errorf("server gave up after %d responses, want %d", n+1, maxTLSRounds+1)
	}
	peer := NewTLSPeer(tlsPeerConfig(t, tls.VersionTLS13)).(*TLSPeer)
	peer.FragmentSize = maxTLSFragmentSize
	defer peer.Close()
	peer.Respond([]byte{tlsFlagStart})
	for n = 1; n < 2*maxTLSRounds; n++ {
		if _, err := peer.Respond([]byte{tlsFlagMore, 0x16}); err != nil {
			break
		}
	}
	if n != maxTLSRounds {
		t.Errorf("peer gave up after %d requests, want %d", n+1, maxTLSRounds+1)
	}
}

// TestTLSCloseMidHandshake: Close ends the TLS goroutines wherever they wait, at every
// step of a conversation.
func TestTLSCloseMidHandshake(t *testing.T) {
	base := runtime.NumGoroutine()
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for stop := 1; tlsCloseAfter(t, v, stop); stop++ {
		}
	}
	// Goroutines of the runtime and of earlier tests (cleanups run by the garbage
	// collector) come and go: wait with a wide margin, never by a count of yields.
	for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > base && time.Now().Before(deadline); {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Errorf("%d goroutines, %d before", n, base)
	}
}

// tlsCloseAfter runs a conversation for stop rounds and closes both sides. It reports
// false when the conversation ended before.
func tlsCloseAfter(t *testing.T, v uint16, stop int) bool {
	peer := NewTLSPeer(tlsPeerConfig(t, v)).(*TLSPeer)
	srv := NewTLSServer(tlsServerConfig(t, v)).(*TLSServer)
	peer.FragmentSize, srv.FragmentSize = 400, 400
	req, _ := srv.Start("alice")
	ended := false
	for i := 0; i < stop && !ended; i++ {
		resp, err := peer.Respond(req)
		if err != nil {
			t.Fatal(err)
		}
		if req, ended, err = srv.Next(resp); err != nil {
			t.Fatalf("%s, round %d: %v", tlsVersionName(v), i, err)
		}
	}
	running := tlsGoroutines.Load()
	peer.Close()
	srv.Close()
	peer.Close() // twice is fine
	tlsCheckNoGoroutines(t)
	if _, err := peer.Respond(req); err == nil {
		t.Error("Respond after Close")
	}
	if _, done, err := srv.Next([]byte{0}); !done || (err == nil) != ended {
		t.Errorf("Next after Close: done %v, %v", done, err)
	}
	if ended {
		t.Logf("%s: ended after %d rounds", tlsVersionName(v), stop)
	} else if running == 0 && stop > 1 {
		t.Errorf("%s, stop %d: no TLS goroutine running mid-handshake", tlsVersionName(v), stop)
	}
	return !ended
}

// TestTLSCleanupUnclosed: a method dropped without Close still ends its goroutine when
// it is collected.
func TestTLSCleanupUnclosed(t *testing.T) {
	func() {
		peer := NewTLSPeer(tlsPeerConfig(t, tls.VersionTLS13))
		if _, err := peer.Respond([]byte{tlsFlagStart}); err != nil {
			t.Fatal(err)
		}
	}()
	// The cleanup runs on the runtime's own goroutine after a collection: wait for it
	// with a wide margin (a count of yields was once too few under the race detector).
	for deadline := time.Now().Add(10 * time.Second); tlsGoroutines.Load() != 0 && time.Now().Before(deadline); {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
	tlsCheckNoGoroutines(t)
}

func TestTLSPeerCertificateOther(t *testing.T) {
	if PeerCertificate(nil) != nil || PeerCertificate(42) != nil {
		t.Error("a certificate of no EAP-TLS method")
	}
	p := NewTLSPeer(tlsPeerConfig(t, tls.VersionTLS13))
	if PeerCertificate(p) != nil || p.MSK() != nil || p.Succeeded() {
		t.Error("results before the handshake")
	}
	p.Close()
	if _, err := NewTLSPeer(nil).Respond([]byte{tlsFlagStart}); err == nil {
		t.Error("a peer without configuration started")
	}
	if _, err := NewTLSServer(nil).Start("x"); err == nil {
		t.Error("a server without configuration started")
	}
}

// tlsFuzzChunks splits fuzz input into packets: each a two-octet length and that many
// octets.
func tlsFuzzChunks(b []byte) [][]byte {
	var out [][]byte
	for len(b) >= 2 && len(out) < 2*maxTLSRounds {
		n := min(int(binary.BigEndian.Uint16(b)), len(b)-2)
		out = append(out, b[2:2+n])
		b = b[2+n:]
	}
	return out
}

func tlsFuzzJoin(chunks ...[]byte) []byte {
	var b []byte
	for _, c := range chunks {
		b = binary.BigEndian.AppendUint16(b, uint16(len(c)))
		b = append(b, c...)
	}
	return b
}

// FuzzTLSTypeData feeds arbitrary EAP-TLS type data to a server (after its Start) and
// to a peer (after a Start): no panic, and Close ends every goroutine.
func FuzzTLSTypeData(f *testing.F) {
	// Seeds: real conversations' packets, and malformed ones.
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		peer, srv := NewTLSPeer(tlsPeerConfig(f, v)), NewTLSServer(tlsServerConfig(f, v))
		c := tlsConverse(f, peer, srv, 0)
		peer.Close()
		srv.Close()
		f.Add(tlsFuzzJoin(c.resps...))
		f.Add(tlsFuzzJoin(c.reqs[1:]...))
	}
	f.Add(tlsFuzzJoin([]byte{tlsFlagStart}, []byte{0}))
	f.Add(tlsFuzzJoin(tlsLenData(tlsFlagMore, 10, []byte{1}), []byte{0, 2}))
	f.Add(tlsFuzzJoin(tlsLenData(0, 5, []byte{0x16, 3, 1, 0, 0})))
	sc, pc := tlsServerConfig(f, tls.VersionTLS13), tlsPeerConfig(f, tls.VersionTLS13)
	f.Fuzz(func(t *testing.T, b []byte) {
		chunks := tlsFuzzChunks(b)
		srv := NewTLSServer(sc)
		srv.Start("alice")
		for _, c := range chunks {
			if _, done, _ := srv.Next(c); done {
				break
			}
		}
		srv.Close()
		peer := NewTLSPeer(pc)
		peer.Respond([]byte{tlsFlagStart})
		for _, c := range chunks {
			if _, err := peer.Respond(c); err != nil {
				break
			}
		}
		peer.Close()
		if n := tlsGoroutines.Load(); n != 0 {
			t.Fatalf("%d TLS goroutines after Close", n)
		}
	})
}
