package eap

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// tlsGoroutines counts the running TLS goroutines of this package (the tests check
// that Close ends them).
var tlsGoroutines atomic.Int64

// errTLSClosed is what a closed method and its TLS goroutine's reads return.
var errTLSClosed = fmt.Errorf("eap-tls: method closed: %w", net.ErrClosed)

// tlsPipe runs crypto/tls in a goroutine on an in-memory connection. The method
// feeds it the other side's flight and collects its own: exchange returns once the
// goroutine blocks reading with nothing left to read (its flight is complete) or has
// returned. No I/O, no timers: the goroutine only ever waits on the pipe.
type tlsPipe struct {
	mu   sync.Mutex
	cond sync.Cond

	in, out  []byte // to the TLS goroutine, from it
	reading  bool   // the goroutine waits in Read with nothing to read
	closed   bool
	finished bool // the goroutine has returned
	exited   chan struct{}

	tlsPipeOptions
	// helloHead is the start of the server-to-client stream, where the ServerHello
	// holds the server random (the TLS 1.2 MSK without Extended Master Secret).
	helloHead []byte
	// clientRandom and master come from the key log (TLS 1.2 only).
	clientRandom, master []byte

	// Results, set by the goroutine.
	err        error
	handshaken bool
	version    uint16
	peerCert   *x509.Certificate
	msk        []byte
}

// tlsPipeOptions are what a pipe is started with.
type tlsPipeOptions struct {
	isServer   bool
	indication []byte // the server's protected success indication (TLS 1.3): 0x00
	noEKM      bool   // tests: derive the TLS 1.2 MSK from the key log even with EMS
}

// helloHeadMax bounds helloHead: the ServerHello starts the stream.
const helloHeadMax = 512

// startTLSPipe runs the handshake of cfg (a client or, o.isServer, a server) in a new
// goroutine. cfg is cloned: its KeyLogWriter is wrapped (the TLS 1.2 MSK needs the
// master secret when Go's exporter refuses it) and a server's session tickets are
// turned off (EAP-TLS resumption is not supported).
func startTLSPipe(cfg *tls.Config, o tlsPipeOptions) *tlsPipe {
	p := &tlsPipe{tlsPipeOptions: o, exited: make(chan struct{})}
	p.cond.L = &p.mu
	c := cfg.Clone()
	c.KeyLogWriter = &tlsKeyLog{p: p, next: cfg.KeyLogWriter}
	var conn *tls.Conn
	if o.isServer {
		c.SessionTicketsDisabled = true
		conn = tls.Server(tlsConn{p}, c)
	} else {
		conn = tls.Client(tlsConn{p}, c)
	}
	tlsGoroutines.Add(1)
	go p.run(conn)
	return p
}

// run is the TLS goroutine.
func (p *tlsPipe) run(conn *tls.Conn) {
	defer func() {
		p.mu.Lock()
		p.finished = true
		p.cond.Broadcast()
		p.mu.Unlock()
		tlsGoroutines.Add(-1)
		close(p.exited)
	}()
	err := p.handshake(conn)
	p.mu.Lock()
	if err != nil {
		p.err = err
		clear(p.msk)
		p.msk = nil
	}
	clear(p.master)
	p.master = nil
	p.mu.Unlock()
}

// handshake runs the TLS handshake and, with TLS 1.3, sends or awaits the protected
// success indication (RFC 9190 2.5).
func (p *tlsPipe) handshake(conn *tls.Conn) error {
	if err := conn.Handshake(); err != nil {
		return fmt.Errorf("eap-tls: TLS handshake: %w", err)
	}
	cs := conn.ConnectionState()
	if len(cs.PeerCertificates) == 0 {
		return errors.New("eap-tls: the peer presented no certificate")
	}
	msk, err := p.deriveMSK(&cs)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.handshaken, p.version, p.peerCert, p.msk = true, cs.Version, cs.PeerCertificates[0], msk
	p.mu.Unlock()
	if cs.Version < tls.VersionTLS13 {
		return nil
	}
	if p.isServer {
		if _, err := conn.Write(p.indication); err != nil {
			return fmt.Errorf("eap-tls: sending the protected success indication: %w", err)
		}
		return nil
	}
	var b [2]byte
	n, err := conn.Read(b[:])
	if n == 1 && b[0] == 0 {
		return nil // a close_notify right behind it (err io.EOF) changes nothing
	}
	if err != nil {
		return fmt.Errorf("eap-tls: awaiting the protected success indication: %w", err)
	}
	return fmt.Errorf("eap-tls: application data %x instead of the protected success indication 00", b[:n])
}

// exchange feeds msg (the other side's complete flight, or nothing to begin) to the
// TLS goroutine and returns what it wrote up to the point where it waits for more or
// has returned. ended is set once the goroutine has returned; err is its error.
func (p *tlsPipe) exchange(msg []byte) (out []byte, ended bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.finished && !p.closed {
		p.in = append(p.in, msg...)
		p.cond.Broadcast()
		for !p.finished && !(p.reading && len(p.in) == 0) {
			p.cond.Wait()
		}
	}
	out, p.out = p.out, nil
	return out, p.finished, p.err
}

// state returns the handshake's results so far: the certificate once the handshake is
// done, unless TLS failed after it (TLS 1.3: no protected success indication).
func (p *tlsPipe) state() (handshaken bool, version uint16, cert *x509.Certificate) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.handshaken || p.err != nil {
		return false, p.version, nil
	}
	return true, p.version, p.peerCert
}

// succeeded reports whether the goroutine ended with the handshake (and, with TLS 1.3,
// the protected success indication) done, and returns a copy of the MSK then.
func (p *tlsPipe) succeeded() (bool, []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.finished || p.err != nil || p.msk == nil {
		return false, nil
	}
	return true, bytes.Clone(p.msk)
}

// shutdown unblocks the goroutine, waits for it to return and wipes the keys.
func (p *tlsPipe) shutdown() {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	p.mu.Unlock()
	<-p.exited
	p.mu.Lock()
	clear(p.msk)
	p.msk = nil
	p.in, p.out = nil, nil
	p.mu.Unlock()
}

// tlsConn is the net.Conn crypto/tls runs on: Read waits on the pipe, Write appends
// to it. It does no I/O.
type tlsConn struct{ p *tlsPipe }

func (c tlsConn) Read(b []byte) (int, error) {
	p := c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.in) == 0 && !p.closed {
		p.reading = true
		p.cond.Broadcast()
		p.cond.Wait()
	}
	p.reading = false
	if p.closed {
		return 0, errTLSClosed
	}
	n := copy(b, p.in)
	p.in = p.in[n:]
	if !p.isServer {
		p.keepHelloHead(b[:n])
	}
	return n, nil
}

func (c tlsConn) Write(b []byte) (int, error) {
	p := c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, errTLSClosed
	}
	if len(p.out)+len(b) > maxTLSMessage {
		return 0, fmt.Errorf("eap-tls: outgoing flight larger than %d octets", maxTLSMessage)
	}
	p.out = append(p.out, b...)
	if p.isServer {
		p.keepHelloHead(b)
	}
	return len(b), nil
}

// keepHelloHead records the start of the server-to-client stream (p.mu held).
func (p *tlsPipe) keepHelloHead(b []byte) {
	if n := helloHeadMax - len(p.helloHead); n > 0 {
		p.helloHead = append(p.helloHead, b[:min(n, len(b))]...)
	}
}

// Close is crypto/tls's; the pipe is closed by its method.
func (c tlsConn) Close() error                     { return nil }
func (c tlsConn) LocalAddr() net.Addr              { return tlsAddr{} }
func (c tlsConn) RemoteAddr() net.Addr             { return tlsAddr{} }
func (c tlsConn) SetDeadline(time.Time) error      { return nil }
func (c tlsConn) SetReadDeadline(time.Time) error  { return nil }
func (c tlsConn) SetWriteDeadline(time.Time) error { return nil }

// tlsAddr is the address of both ends of a tlsConn.
type tlsAddr struct{}

func (tlsAddr) Network() string { return "eap" }
func (tlsAddr) String() string  { return "eap-tls" }

// tlsKeyLog takes the TLS 1.2 master secret from crypto/tls's key log (NSS format,
// "CLIENT_RANDOM <client random> <master secret>") and passes every line on to the
// caller's KeyLogWriter, if any.
type tlsKeyLog struct {
	p    *tlsPipe
	next io.Writer
}

func (k *tlsKeyLog) Write(b []byte) (int, error) {
	if f := strings.Fields(string(b)); len(f) == 3 && f[0] == "CLIENT_RANDOM" {
		cr, err1 := hex.DecodeString(f[1])
		ms, err2 := hex.DecodeString(f[2])
		if err1 == nil && err2 == nil {
			k.p.mu.Lock()
			k.p.clientRandom, k.p.master = cr, ms
			k.p.mu.Unlock()
		}
	}
	if k.next != nil {
		return k.next.Write(b)
	}
	return len(b), nil
}

// The MSK labels: RFC 5216 2.3 (TLS 1.2) and RFC 9190 2.3 (TLS 1.3).
const (
	tls12MSKLabel = "client EAP encryption"
	tls13MSKLabel = "EXPORTER_EAP_TLS_Key_Material"
)

// deriveMSK returns the MSK, the first 64 of the 128 octets of Key_Material (the
// other 64 are the EMSK, which IKEv2 does not use):
//
//	TLS 1.3 (RFC 9190 2.3): TLS-Exporter("EXPORTER_EAP_TLS_Key_Material", 0x0D, 128)
//	TLS 1.2 (RFC 5216 2.3): TLS-PRF-128(master_secret, "client EAP encryption",
//	                        client.random || server.random)
//
// Go's exporter computes the TLS 1.2 one only with Extended Master Secret (RFC 7627);
// without it (strongSwan 5.9.8 does not implement EMS) the PRF is computed here from
// the master secret of the key log and the randoms.
func (p *tlsPipe) deriveMSK(cs *tls.ConnectionState) ([]byte, error) {
	if cs.Version >= tls.VersionTLS13 {
		km, err := cs.ExportKeyingMaterial(tls13MSKLabel, []byte{byte(TypeTLS)}, 128)
		if err != nil {
			return nil, fmt.Errorf("eap-tls: deriving the MSK: %w", err)
		}
		defer clear(km)
		return bytes.Clone(km[:64]), nil
	}
	if km, err := cs.ExportKeyingMaterial(tls12MSKLabel, nil, 128); err == nil && !p.noEKM {
		defer clear(km)
		return bytes.Clone(km[:64]), nil
	}
	return p.tls12MSK(cs.CipherSuite)
}

// tls12MSK computes the TLS 1.2 MSK from the key log's master secret and the randoms.
func (p *tlsPipe) tls12MSK(suite uint16) ([]byte, error) {
	p.mu.Lock()
	cr, ms, head := p.clientRandom, p.master, p.helloHead
	p.mu.Unlock()
	sr, err := serverRandom(head)
	if err != nil {
		return nil, err
	}
	if len(cr) != 32 || len(ms) != 48 {
		return nil, errors.New("eap-tls: deriving the MSK: no TLS 1.2 master secret in the key log")
	}
	h := sha256.New
	if strings.HasSuffix(tls.CipherSuiteName(suite), "_SHA384") {
		h = sha512.New384 // RFC 5289 3: the SHA-384 suites' PRF
	}
	seed := append(append([]byte(tls12MSKLabel), cr...), sr...)
	return tlsPRF12(h, ms, seed, 64), nil
}

// serverRandom finds the server random in the ServerHello at the start of the
// server-to-client stream (whose records are still plaintext).
func serverRandom(head []byte) ([]byte, error) {
	var hs []byte
	for len(hs) < 38 && len(head) >= 5 {
		if head[0] != 22 { // handshake
			break
		}
		n := int(head[3])<<8 | int(head[4])
		body := head[5:]
		if n < len(body) {
			body = body[:n]
		}
		hs = append(hs, body...)
		head = head[len(body)+5:]
	}
	// msg_type (2: server_hello), length (3), legacy_version (2), random (32).
	if len(hs) < 38 || hs[0] != 2 {
		return nil, errors.New("eap-tls: deriving the MSK: no ServerHello to take the server random from")
	}
	return hs[6:38], nil
}

// tlsPRF12 is the TLS 1.2 PRF (RFC 5246 5), P_hash with HMAC over h; seed is label ||
// seed.
func tlsPRF12(h func() hash.Hash, secret, seed []byte, n int) []byte {
	out := make([]byte, 0, n+64)
	mac := hmac.New(h, secret)
	mac.Write(seed)
	a := mac.Sum(nil)
	for len(out) < n {
		mac.Reset()
		mac.Write(a)
		mac.Write(seed)
		out = mac.Sum(out)
		mac.Reset()
		mac.Write(a)
		a = mac.Sum(a[:0])
	}
	clear(out[n:cap(out)])
	return out[:n]
}
