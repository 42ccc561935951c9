package radius

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const testSecret = "s3cr3t-Do-Not-Leak"

func eapIdentity(id uint8, name string) []byte {
	b := []byte{2, id, 0, 0, 1}
	b = append(b, name...)
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	return b
}

// eapOfSize is an EAP-Response of n octets (type 26 and filler).
func eapOfSize(id uint8, n int) []byte {
	b := make([]byte, n)
	b[0], b[1], b[4] = 2, id, 26
	for i := 5; i < n; i++ {
		b[i] = byte(i)
	}
	binary.BigEndian.PutUint16(b[2:4], uint16(n))
	return b
}

func newTestClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// TestRequestAttributes: an Access-Request carries what strongSwan's eap-radius
// sends, a long EAP packet split at 253 octets, and a valid Message-Authenticator
// (checked by the fake server).
func TestRequestAttributes(t *testing.T) {
	var mu sync.Mutex
	var last *treq
	srv := newFakeServer(t, testSecret, func(r *treq) [][]byte {
		mu.Lock()
		last = r
		mu.Unlock()
		return [][]byte{testAnswer(3, r.id, r.auth, []byte(testSecret), nil, false)}
	})
	c := newTestClient(t, Config{Servers: []Server{srv.server()}, Timeout: time.Second})
	eap := eapOfSize(7, 600)
	req := Request{
		UserName: "alice@example.org", EAP: eap, State: []byte("state-1"),
		CallingStationID: StationID(netip.MustParseAddrPort("203.0.113.5:4500")),
		CalledStationID:  StationID(netip.MustParseAddrPort("[2001:db8::1]:4500")),
		NASAddress:       netip.MustParseAddr("198.18.0.1"),
		NASPort:          42, NASPortID: "rw-eap", AcctSessionID: "5F3A-0001",
	}
	a, err := c.Exchange(context.Background(), req)
	if err != nil || a.Code != AccessReject {
		t.Fatalf("Exchange: %v, %v", a.Code, err)
	}
	got := latest(&mu, &last)
	want := map[uint8][]byte{
		1: []byte("alice@example.org"), 4: {198, 18, 0, 1}, 5: u32(42), 6: u32(2),
		24: []byte("state-1"), 30: []byte("2001:db8::1[4500]"), 31: []byte("203.0.113.5[4500]"),
		32: []byte("mobikevpn"), 44: []byte("5F3A-0001"), 61: u32(5), 87: []byte("rw-eap"),
	}
	for typ, v := range want {
		if g := got.one(typ); !bytes.Equal(g, v) {
			t.Errorf("attribute %d: %q, want %q (once)", typ, g, v)
		}
	}
	parts := got.all(79)
	if len(parts) != 3 || len(parts[0]) != 253 || len(parts[1]) != 253 || len(parts[2]) != 94 {
		t.Errorf("EAP-Message attributes of %d octets", lens(parts))
	}
	if !bytes.Equal(bytes.Join(parts, nil), eap) {
		t.Error("EAP-Message attributes do not join to the EAP packet")
	}
	if last := got.attrs[len(got.attrs)-1]; last.typ != 80 {
		t.Errorf("last attribute %d, want Message-Authenticator", last.typ)
	}
	if got.one(95) != nil {
		t.Error("NAS-IPv6-Address sent with an IPv4 NAS address")
	}
	// IPv6 NAS address, EAP-Start, no State, a NAS-Identifier of the configuration's.
	c2 := newTestClient(t, Config{Servers: []Server{srv.server()}, NASIdentifier: "gw1"})
	if _, err := c2.Exchange(context.Background(), Request{UserName: "bob", NASAddress: netip.MustParseAddr("2001:db8::1")}); err != nil {
		t.Fatal(err)
	}
	got = latest(&mu, &last)
	if v := got.one(95); !bytes.Equal(v, netip.MustParseAddr("2001:db8::1").AsSlice()) {
		t.Errorf("NAS-IPv6-Address %x", v)
	}
	if v := got.all(79); len(v) != 1 || len(v[0]) != 0 {
		t.Errorf("EAP-Start: %q", v)
	}
	if got.one(24) != nil || got.one(4) != nil || !bytes.Equal(got.one(32), []byte("gw1")) {
		t.Errorf("State %q, NAS-IP-Address %x, NAS-Identifier %q", got.one(24), got.one(4), got.one(32))
	}
}

func latest(mu *sync.Mutex, r **treq) *treq {
	mu.Lock()
	defer mu.Unlock()
	return *r
}

func lens(bs [][]byte) []int {
	var n []int
	for _, b := range bs {
		n = append(n, len(b))
	}
	return n
}

// TestChallengeAcceptReject: the three answers, the State carried over, and the
// MSK built from MS-MPPE keys the test encrypted itself.
func TestChallengeAcceptReject(t *testing.T) {
	sec := []byte(testSecret)
	challengeEAP := eapOfSize(8, 300) // arrives in two EAP-Message attributes
	challengeEAP[0] = 1
	recv32, send32 := bytes.Repeat([]byte{0xA1}, 32), bytes.Repeat([]byte{0xB2}, 32)
	recv16, send16 := bytes.Repeat([]byte{0xC3}, 16), bytes.Repeat([]byte{0xD4}, 16)
	srv := newFakeServer(t, testSecret, func(r *treq) [][]byte {
		switch string(r.one(1)) {
		case "challenge":
			attrs := append(eapAttrs(challengeEAP), tattr{24, []byte("st-1")}, tattr{18, []byte("Hello, ")}, tattr{18, []byte("world")})
			return [][]byte{testAnswer(11, r.id, r.auth, sec, attrs, false)}
		case "accept32", "accept16":
			recv, send := recv32, send32
			if string(r.one(1)) == "accept16" {
				recv, send = recv16, send16
			}
			attrs := []tattr{{79, []byte{3, 9, 0, 4}},
				{26, []byte{0, 0, 0, 9, 1, 6, 'x', 'y', 'z', 'w'}}, // another vendor's: ignored
				mppeAttr(16, send, r.auth, sec, 0x1234), mppeAttr(17, recv, r.auth, sec, 0x0567)}
			return [][]byte{testAnswer(2, r.id, r.auth, sec, attrs, false)}
		case "state":
			if !bytes.Equal(r.one(24), []byte("st-1")) {
				return nil
			}
		}
		return [][]byte{testAnswer(3, r.id, r.auth, sec, []tattr{{79, []byte{4, 9, 0, 4}}}, false)}
	})
	c := newTestClient(t, Config{Servers: []Server{srv.server()}, Timeout: time.Second})
	ex := func(user string, state []byte) Answer {
		t.Helper()
		a, err := c.Exchange(context.Background(), Request{UserName: user, EAP: eapIdentity(1, user), State: state})
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		if a.Server != srv.addr() {
			t.Errorf("%s: answer from %v, want %v", user, a.Server, srv.addr())
		}
		return a
	}
	a := ex("challenge", nil)
	if a.Code != AccessChallenge || !bytes.Equal(a.EAP, challengeEAP) || string(a.State) != "st-1" ||
		a.ReplyMessage != "Hello, world" || a.MSK != nil {
		t.Errorf("challenge: %v EAP %d octets State %q Reply-Message %q MSK %x", a.Code, len(a.EAP), a.State, a.ReplyMessage, a.MSK)
	}
	if a := ex("state", a.State); a.Code != AccessReject || !bytes.Equal(a.EAP, []byte{4, 9, 0, 4}) || a.MSK != nil {
		t.Errorf("reject: %v EAP %x MSK %x", a.Code, a.EAP, a.MSK)
	}
	a = ex("accept32", nil)
	if want := append(bytes.Clone(recv32), send32...); a.Code != AccessAccept || !bytes.Equal(a.MSK, want) {
		t.Errorf("accept: %v MSK %x, want %x", a.Code, a.MSK, want)
	}
	a = ex("accept16", nil)
	want := append(append(bytes.Clone(recv16), send16...), make([]byte, 32)...)
	if a.Code != AccessAccept || !bytes.Equal(a.MSK, want) || !bytes.Equal(a.EAP, []byte{3, 9, 0, 4}) {
		t.Errorf("accept (16-octet keys): %v MSK %x, want %x (zero-padded to 64)", a.Code, a.MSK, want)
	}
}

// TestBadMPPEKey: an Access-Accept whose key length octet does not fit gives an
// error, no Answer (fail closed).
func TestBadMPPEKey(t *testing.T) {
	sec := []byte(testSecret)
	srv := newFakeServer(t, testSecret, func(r *treq) [][]byte {
		bad := mppeAttr(16, make([]byte, 16), r.auth, sec, 1)
		// Re-encrypt with a length octet of 40 in a 32-octet plaintext: flip the first
		// ciphertext octet by (16 xor 40).
		bad.val[8] ^= 16 ^ 40
		attrs := []tattr{{79, []byte{3, 1, 0, 4}}, bad, mppeAttr(17, make([]byte, 16), r.auth, sec, 2)}
		return [][]byte{testAnswer(2, r.id, r.auth, sec, attrs, false)}
	})
	c := newTestClient(t, Config{Servers: []Server{srv.server()}, Timeout: time.Second})
	a, err := c.Exchange(context.Background(), Request{UserName: "x", EAP: eapIdentity(1, "x")})
	if err == nil || !errors.Is(err, ErrMalformed) || a.Code != 0 || a.MSK != nil {
		t.Fatalf("got %v MSK %x, %v; want no answer and ErrMalformed", a.Code, a.MSK, err)
	}
	if !strings.Contains(err.Error(), "MS-MPPE key length 40") {
		t.Errorf("error %q does not say what is wrong", err)
	}
}

// silentServer is a socket on 127.0.0.1 that counts the datagrams it gets and
// never answers.
type silentServer struct {
	conn *net.UDPConn
	n    atomic.Int64
	mu   sync.Mutex
	pkts [][]byte
}

func newSilentServer(t *testing.T) *silentServer {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &silentServer{conn: conn}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 8192)
		for {
			n, _, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.pkts = append(s.pkts, bytes.Clone(buf[:n]))
			s.mu.Unlock()
			s.n.Add(1)
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return s
}

func (s *silentServer) addr() netip.AddrPort { return s.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// TestNoAnswer: Tries tries of Timeout each, retransmitted with the same
// Identifier and authenticator, then an error naming the server and the tries.
func TestNoAnswer(t *testing.T) {
	s := newSilentServer(t)
	const timeout, tries = 50 * time.Millisecond, 3
	c := newTestClient(t, Config{Servers: []Server{{Addr: s.addr(), Secret: []byte(testSecret)}}, Timeout: timeout, Tries: tries})
	start := time.Now()
	_, err := c.Exchange(context.Background(), Request{UserName: "x", EAP: eapIdentity(1, "x")})
	el := time.Since(start)
	if err == nil || !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("error %v, want ErrNoAnswer", err)
	}
	if el < tries*timeout || el > tries*timeout+2*time.Second {
		t.Errorf("gave up after %v, want %v", el, tries*timeout)
	}
	want := fmt.Sprintf("%s (3 tries: no valid answer)", s.addr())
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
	var e *Error
	if !errors.As(err, &e) || len(e.Servers) != 1 || e.Servers[0].Tries != tries || e.Servers[0].Addr != s.addr() {
		t.Errorf("error %#v", err)
	}
	if !waitUntil(time.Second, func() bool { return s.n.Load() == tries }) {
		t.Fatalf("server got %d requests, want %d", s.n.Load(), tries)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range s.pkts[1:] {
		if !bytes.Equal(p, s.pkts[0]) {
			t.Errorf("retransmission %d differs from the first request (RFC 5080: same Identifier and authenticator)", i+1)
		}
	}
	if st := c.Stats(); st.Sent != tries || st.Retransmits != tries-1 || st.Failures != 1 || st.Answers != 0 {
		t.Errorf("stats %+v", st)
	}
}

func waitUntil(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// TestFailover: the first server does not answer, the second does.
func TestFailover(t *testing.T) {
	dead := newSilentServer(t)
	sec2 := "another-secret"
	srv := newFakeServer(t, sec2, func(r *treq) [][]byte {
		return [][]byte{testAnswer(11, r.id, r.auth, []byte(sec2), []tattr{{79, []byte{1, 2, 0, 4}}, {24, []byte("s")}}, false)}
	})
	c := newTestClient(t, Config{Servers: []Server{{Addr: dead.addr(), Secret: []byte(testSecret)}, srv.server()},
		Timeout: 40 * time.Millisecond, Tries: 2})
	a, err := c.Exchange(context.Background(), Request{UserName: "x", EAP: eapIdentity(1, "x")})
	if err != nil || a.Code != AccessChallenge || a.Server != srv.addr() {
		t.Fatalf("got %v from %v, %v; want Access-Challenge from %v", a.Code, a.Server, err, srv.addr())
	}
	if n := dead.n.Load(); n != 2 {
		t.Errorf("first server got %d tries, want 2", n)
	}
	// Both silent: the error names both, in order.
	c2 := newTestClient(t, Config{Servers: []Server{{Addr: dead.addr(), Secret: []byte("a")}, {Addr: dead.addr(), Secret: []byte("b")}},
		Timeout: 20 * time.Millisecond, Tries: 1})
	_, err = c2.Exchange(context.Background(), Request{EAP: eapIdentity(1, "x")})
	var e *Error
	if !errors.As(err, &e) || len(e.Servers) != 2 || !strings.Contains(err.Error(), "1 try") {
		t.Errorf("error %v", err)
	}
}

// forger answers each request with forged datagrams first and the real answer last.
func forger(t *testing.T, secret string, other *net.UDPConn) func(r *treq) [][]byte {
	sec := []byte(secret)
	return func(r *treq) [][]byte {
		eap := []tattr{{79, []byte{1, 2, 0, 4}}}
		real := testAnswer(11, r.id, r.auth, sec, eap, false)
		badAuth := bytes.Clone(real)
		badAuth[10] ^= 1
		otherSecret := testAnswer(11, r.id, r.auth, []byte("guessed"), eap, false)
		badMA := testAnswer(11, r.id, r.auth, sec, eap, false)
		badMA[len(badMA)-1] ^= 1 // the Response Authenticator covers it: re-sign
		sum := md5Resign(badMA, r.auth, sec)
		copy(badMA[4:20], sum)
		noMA := testAnswer(11, r.id, r.auth, sec, eap, true)
		wrongID := testAnswer(11, r.id+1, r.auth, sec, eap, false)
		wrongCode := testAnswer(4, r.id, r.auth, sec, eap, false)
		truncated := real[:len(real)-3]
		// From another socket on the same address: the wrong source port.
		other.WriteToUDPAddrPort(real, r.from)
		return [][]byte{badAuth, otherSecret, badMA, noMA, wrongID, wrongCode, truncated, {1, 2, 3}, real, real}
	}
}

// TestForgedAnswers: forged and malformed answers are dropped and counted, the
// real one is still accepted, and the secret appears in no log record or error.
func TestForgedAnswers(t *testing.T) {
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	srv := newFakeServer(t, testSecret, forger(t, testSecret, other))
	var logs bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&logs, &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := newTestClient(t, Config{Servers: []Server{srv.server()}, Timeout: time.Second, Logger: log})
	a, err := c.Exchange(context.Background(), Request{UserName: "x", EAP: eapIdentity(1, "x")})
	if err != nil || a.Code != AccessChallenge {
		t.Fatalf("got %v, %v", a.Code, err)
	}
	// Forged: wrong source, wrong Response Authenticator, wrong secret, wrong
	// Message-Authenticator, none, wrong Identifier, wrong Code, truncated, runt, and
	// the real answer's duplicate: 10.
	const forged = 10
	if !waitUntil(2*time.Second, func() bool { return c.Drops() == forged }) {
		t.Errorf("%d drops, want %d", c.Drops(), forged)
	}
	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	for _, reason := range []string{"not from the server", "Response Authenticator", "wrong Message-Authenticator",
		"no Message-Authenticator", "no outstanding request", "unexpected Code(4)", "Length"} {
		if !strings.Contains(out, reason) {
			t.Errorf("no drop logged for %q:\n%s", reason, out)
		}
	}
	if n := strings.Count(out, "answer dropped"); n != forged {
		t.Errorf("%d drops logged, want %d (each once)", n, forged)
	}
	checkNoSecret(t, out)
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func checkNoSecret(t *testing.T, s string) {
	t.Helper()
	for _, form := range []string{testSecret, fmt.Sprint([]byte(testSecret)), fmt.Sprintf("%x", testSecret)} {
		if strings.Contains(s, form) {
			t.Errorf("the secret (as %q) appears in:\n%s", form, s)
		}
	}
}

// TestSecretNeverShown: errors, logs and the printed configuration never show a
// secret.
func TestSecretNeverShown(t *testing.T) {
	s := newSilentServer(t)
	var logs bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&logs, &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := Config{Servers: []Server{{Addr: s.addr(), Secret: []byte(testSecret)}}, Timeout: 20 * time.Millisecond, Tries: 2, Logger: log}
	c := newTestClient(t, cfg)
	_, err := c.Exchange(context.Background(), Request{UserName: "x", EAP: eapIdentity(1, "x")})
	if err == nil {
		t.Fatal("no error")
	}
	// A datagram from elsewhere, logged.
	conn, _ := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(s.addr()))
	conn.Close()
	var all []string
	all = append(all, err.Error(), fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, cfg.Servers[0]))
	log.Info("config", "servers", cfg.Servers, "server", cfg.Servers[0])
	for _, bad := range []Config{{}, {Servers: []Server{{Addr: s.addr()}}},
		{Servers: []Server{{Secret: []byte(testSecret)}}},
		{Servers: []Server{{Addr: s.addr(), Secret: []byte(testSecret)}}, Source: netip.MustParseAddr("::1")}} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%v): no error", bad)
		} else {
			all = append(all, err.Error())
		}
	}
	logMu.Lock()
	all = append(all, logs.String())
	logMu.Unlock()
	checkNoSecret(t, strings.Join(all, "\n"))
	if !strings.Contains(logs.String(), "retransmitting") {
		t.Errorf("no debug log of the retransmission:\n%s", logs.String())
	}
}

// md5Resign recomputes an answer's Response Authenticator.
func md5Resign(b, reqAuth, secret []byte) []byte {
	c := bytes.Clone(b)
	copy(c[4:20], reqAuth)
	sum := md5.Sum(append(c, secret...))
	return sum[:]
}

// TestIPv6: a server on ::1, the request from a Source of ::1, NAS-IPv6-Address
// from the Source when the request names no NAS address.
func TestIPv6(t *testing.T) {
	var mu sync.Mutex
	var last *treq
	srv := newFakeServerOn(t, netip.MustParseAddr("::1"), testSecret, func(r *treq) [][]byte {
		mu.Lock()
		last = r
		mu.Unlock()
		return [][]byte{testAnswer(11, r.id, r.auth, []byte(testSecret), []tattr{{79, []byte{1, 1, 0, 4}}}, false)}
	})
	c := newTestClient(t, Config{Servers: []Server{srv.server()}, Source: netip.MustParseAddr("::1"), Timeout: time.Second})
	a, err := c.Exchange(context.Background(), Request{UserName: "v6", EAP: eapIdentity(1, "v6")})
	if err != nil || a.Code != AccessChallenge || a.Server != srv.addr() {
		t.Fatalf("%v from %v, %v", a.Code, a.Server, err)
	}
	r := latest(&mu, &last)
	if v := r.one(95); !bytes.Equal(v, netip.IPv6Loopback().AsSlice()) || r.from.Addr() != netip.IPv6Loopback() {
		t.Errorf("NAS-IPv6-Address %x, from %v", v, r.from)
	}
}

// TestTooLarge: a request that does not fit in 4096 octets, or an attribute over
// 253, fails at once without anything sent.
func TestTooLarge(t *testing.T) {
	s := newSilentServer(t)
	c := newTestClient(t, Config{Servers: []Server{{Addr: s.addr(), Secret: []byte(testSecret)}}})
	for name, req := range map[string]Request{
		"EAP of 4060 octets": {EAP: eapOfSize(1, 4060)},
		"long User-Name":     {UserName: strings.Repeat("u", 254), EAP: eapIdentity(1, "u")},
		"long State":         {State: make([]byte, 300), EAP: eapIdentity(1, "u")},
	} {
		if _, err := c.Exchange(context.Background(), req); err == nil || errors.Is(err, ErrNoAnswer) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if st := c.Stats(); st.Sent != 0 {
		t.Errorf("%d sent", st.Sent)
	}
}
