package eap

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"runtime"
)

// EAP-TLS (RFC 5216; TLS 1.3 per RFC 9190) on crypto/tls.
//
// Both sides run crypto/tls in a goroutine on an in-memory connection (see tlsPipe):
// a complete flight of the other side goes in, the goroutine runs until it waits for
// more or is done, and what it wrote goes out, in fragments of FragmentSize octets of
// TLS data, each acknowledged by an empty EAP-TLS packet. Incoming messages are
// reassembled up to 64 KiB, and a side processes at most 50 EAP-TLS packets.
//
// The server ends after its last flight is acknowledged: with TLS 1.2 that flight is
// its ChangeCipherSpec and Finished; with TLS 1.3 it carries the protected success
// indication (one octet 0x00 of application data, RFC 9190 2.5) after the handshake,
// and the peer succeeds only once it has received it. The MSK is described at
// deriveMSK.
//
// Session resumption is not supported (the server turns session tickets off). The
// server requires a client certificate whatever cfg.ClientAuth says: a handshake without
// one fails.
//
// strongSwan 5.9.8 (libtls) speaks TLS 1.2 only unless charon.tls.version_max says
// otherwise, and without Extended Master Secret, which is why the TLS 1.2 MSK does not
// rely on Go's exporter alone. Its TLS 1.3 predates RFC 9190 (other MSK label, no
// protected success indication; both came with 5.9.10) and does not interoperate.
//
// The methods are not safe for concurrent use; Close must be called to end the TLS
// goroutine (a method that is dropped unclosed is closed when it is collected).

// TLSPeer is the peer's side of EAP-TLS. NewTLSPeer returns one (as a PeerMethod).
type TLSPeer struct {
	// FragmentSize is the most TLS data per EAP-TLS response (0:
	// DefaultTLSFragmentSize; at most what fits MaxPacket). Set it before the first
	// Respond.
	FragmentSize int

	cfg    *tls.Config
	pipe   *tlsPipe
	rx     tlsReassembler
	tx     tlsFragmenter
	rounds int
	err    error // sticky: the method has failed
	done   bool  // succeeded
	closed bool
	noEKM  bool // tests: see tlsPipeOptions
}

// NewTLSPeer is the client side of EAP-TLS. cfg is used as given (the caller sets
// Certificates, RootCAs or VerifyPeerCertificate/InsecureSkipVerify, ServerName,
// Rand, Time, MinVersion/MaxVersion), but for its KeyLogWriter, which is wrapped (see
// deriveMSK) and still receives every line. The concrete type is *TLSPeer.
func NewTLSPeer(cfg *tls.Config) PeerMethod {
	return &TLSPeer{cfg: cfg}
}

// Type is TypeTLS.
func (m *TLSPeer) Type() Type { return TypeTLS }

// Respond answers one EAP-TLS request.
func (m *TLSPeer) Respond(req []byte) ([]byte, error) {
	if m.err != nil {
		return nil, m.err
	}
	if m.closed {
		return nil, errTLSClosed
	}
	resp, err := m.respond(req)
	if err != nil {
		m.fail(err)
		return nil, err
	}
	return resp, nil
}

func (m *TLSPeer) respond(req []byte) ([]byte, error) {
	if m.rounds++; m.rounds > maxTLSRounds {
		return nil, fmt.Errorf("%w: more than %d requests", ErrTLSProtocol, maxTLSRounds)
	}
	h, err := parseTLSData(req)
	if err != nil {
		return nil, err
	}
	switch {
	case h.start():
		if m.pipe != nil {
			return nil, fmt.Errorf("%w: a second Start", ErrTLSProtocol)
		}
		if m.cfg == nil {
			return nil, errors.New("eap-tls: no TLS configuration")
		}
		m.pipe = startTLSPipe(m.cfg, tlsPipeOptions{noEKM: m.noEKM})
		runtime.AddCleanup(m, (*tlsPipe).shutdown, m.pipe)
		return m.flight(nil)
	case m.pipe == nil:
		return nil, fmt.Errorf("%w: a request before Start", ErrTLSProtocol)
	case m.done:
		return nil, fmt.Errorf("%w: a request after the method succeeded", ErrTLSProtocol)
	case m.tx.pending():
		if !h.ack() {
			return nil, fmt.Errorf("%w: data while fragments of the response are pending (an acknowledgement expected)", ErrTLSProtocol)
		}
		return m.tx.next(), nil
	case h.ack():
		return nil, fmt.Errorf("%w: an acknowledgement with no fragment outstanding", ErrTLSProtocol)
	}
	complete, err := m.rx.add(h)
	if err != nil {
		return nil, err
	}
	if !complete {
		return tlsAck(), nil
	}
	return m.flight(m.rx.take())
}

// flight feeds the server's flight to TLS and answers with the first packet of the
// peer's flight, or, when TLS has nothing to send, an empty response (after the
// handshake, or with TLS 1.3 the protected success indication: the final one).
func (m *TLSPeer) flight(in []byte) ([]byte, error) {
	out, ended, err := m.pipe.exchange(in)
	if err != nil {
		return nil, err
	}
	if ended {
		ok, msk := m.pipe.succeeded()
		clear(msk)
		if !ok {
			return nil, errors.New("eap-tls: TLS ended without success")
		}
		m.done = true
	}
	if len(out) == 0 {
		return tlsAck(), nil
	}
	return m.tx.begin(out, m.FragmentSize), nil
}

func (m *TLSPeer) fail(err error) {
	if m.err == nil {
		m.err = err
	}
	m.done = false
}

// Succeeded reports whether the handshake completed with the server's certificate
// verified and, with TLS 1.3, the protected success indication received.
func (m *TLSPeer) Succeeded() bool { return m.done && m.err == nil }

// MSK is the 64-octet MSK once Succeeded, else (and after Close) nil.
func (m *TLSPeer) MSK() []byte {
	if !m.Succeeded() || m.closed {
		return nil
	}
	_, msk := m.pipe.succeeded()
	return msk
}

// PeerCertificate is the server's leaf certificate once the handshake is done (verified
// as cfg says), else nil; nil after a failure. Close keeps it.
func (m *TLSPeer) PeerCertificate() *x509.Certificate {
	if m.pipe == nil || m.err != nil {
		return nil
	}
	_, _, cert := m.pipe.state()
	return cert
}

// Version is the negotiated TLS version (tls.VersionTLS12, ...) once the handshake is
// done, else 0.
func (m *TLSPeer) Version() uint16 {
	if m.pipe == nil {
		return 0
	}
	_, v, _ := m.pipe.state()
	return v
}

// Close ends the TLS goroutine (it waits for it) and wipes the keys. The outcome
// (Succeeded, PeerCertificate) stays; Respond fails from then on.
func (m *TLSPeer) Close() {
	m.closed = true
	if m.pipe != nil {
		m.pipe.shutdown()
	}
}

// TLSServer is the authenticator's side of EAP-TLS. NewTLSServer returns one (as a
// ServerMethod).
type TLSServer struct {
	// FragmentSize is the most TLS data per EAP-TLS request (0:
	// DefaultTLSFragmentSize; at most what fits MaxPacket). Set it before Start.
	FragmentSize int

	cfg        *tls.Config
	pipe       *tlsPipe
	rx         tlsReassembler
	tx         tlsFragmenter
	rounds     int
	started    bool
	ended      bool  // the TLS goroutine has returned successfully: the last flight is out
	result     error // sticky outcome once done (errTLSSucceeded for success)
	indication []byte
	noEKM      bool // tests: see tlsPipeOptions
}

// errTLSSucceeded marks a server that is done with success.
var errTLSSucceeded = errors.New("eap-tls: succeeded")

// NewTLSServer is the authenticator side of EAP-TLS (cfg: Certificates, ClientAuth
// RequireAndVerifyClientCert, or RequireAnyClientCert and VerifyPeerCertificate,
// ClientCAs, ...). cfg is used as given but for its KeyLogWriter, which is wrapped
// (see deriveMSK), and SessionTicketsDisabled, which is set. The concrete type is
// *TLSServer.
func NewTLSServer(cfg *tls.Config) ServerMethod {
	return &TLSServer{cfg: cfg, indication: []byte{0}}
}

// Type is TypeTLS.
func (m *TLSServer) Type() Type { return TypeTLS }

// Start returns the EAP-TLS Start request.
func (m *TLSServer) Start(identity string) ([]byte, error) {
	if m.started || m.result != nil {
		return nil, fmt.Errorf("%w: Start called twice", ErrTLSProtocol)
	}
	if m.cfg == nil {
		return nil, errors.New("eap-tls: no TLS configuration")
	}
	m.started = true
	return []byte{tlsFlagStart}, nil
}

// Next takes one EAP-TLS response.
func (m *TLSServer) Next(resp []byte) ([]byte, bool, error) {
	if m.result == nil {
		req, err := m.next(resp)
		switch {
		case err != nil:
			m.result = err
		case req != nil:
			return req, false, nil
		}
	}
	if m.result == errTLSSucceeded {
		return nil, true, nil
	}
	return nil, true, m.result
}

// next returns the next request, or nil and errTLSSucceeded or an error.
func (m *TLSServer) next(resp []byte) ([]byte, error) {
	if !m.started {
		return nil, fmt.Errorf("%w: a response before Start", ErrTLSProtocol)
	}
	if m.rounds++; m.rounds > maxTLSRounds {
		return nil, fmt.Errorf("%w: more than %d responses", ErrTLSProtocol, maxTLSRounds)
	}
	h, err := parseTLSData(resp)
	if err != nil {
		return nil, err
	}
	switch {
	case h.start():
		return nil, fmt.Errorf("%w: the peer sent a Start", ErrTLSProtocol)
	case m.tx.pending():
		if !h.ack() {
			return nil, fmt.Errorf("%w: data while fragments of the request are pending (an acknowledgement expected)", ErrTLSProtocol)
		}
		return m.tx.next(), nil
	case h.ack() && !m.rx.pending():
		if m.ended {
			return nil, errTLSSucceeded
		}
		return nil, fmt.Errorf("%w: an acknowledgement with no fragment outstanding", ErrTLSProtocol)
	case m.ended:
		return nil, fmt.Errorf("%w: data after the final flight", ErrTLSProtocol)
	}
	complete, err := m.rx.add(h)
	if err != nil {
		return nil, err
	}
	if !complete {
		return tlsAck(), nil
	}
	return m.flight(m.rx.take())
}

// flight feeds the peer's flight to TLS and returns the first packet of the server's.
func (m *TLSServer) flight(in []byte) ([]byte, error) {
	if m.pipe == nil {
		m.pipe = startTLSPipe(m.cfg, tlsPipeOptions{isServer: true, indication: m.indication, noEKM: m.noEKM})
		runtime.AddCleanup(m, (*tlsPipe).shutdown, m.pipe)
	}
	out, ended, err := m.pipe.exchange(in)
	if err != nil {
		return nil, err
	}
	if ended {
		ok, msk := m.pipe.succeeded()
		clear(msk)
		if !ok {
			return nil, errors.New("eap-tls: TLS ended without success")
		}
		m.ended = true
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: the peer's flight left TLS with nothing to send", ErrTLSProtocol)
	}
	return m.tx.begin(out, m.FragmentSize), nil
}

// MSK is the 64-octet MSK once Next returned done without error, else nil.
func (m *TLSServer) MSK() []byte {
	if m.result != errTLSSucceeded {
		return nil
	}
	_, msk := m.pipe.succeeded()
	return msk
}

// PeerCertificate is the peer's (client's) leaf certificate once the handshake is done
// (verified as cfg says), else nil; nil after a failure. Close keeps it after success.
// The IKE layer checks it against the EAP identity.
func (m *TLSServer) PeerCertificate() *x509.Certificate {
	if m.pipe == nil || (m.result != nil && m.result != errTLSSucceeded) {
		return nil
	}
	_, _, cert := m.pipe.state()
	return cert
}

// Version is the negotiated TLS version once the handshake is done, else 0.
func (m *TLSServer) Version() uint16 {
	if m.pipe == nil {
		return 0
	}
	_, v, _ := m.pipe.state()
	return v
}

// Close ends the TLS goroutine (it waits for it) and wipes the keys. A server not
// done is done with an error from then on; after success, Next and PeerCertificate
// still say so (MSK is nil).
func (m *TLSServer) Close() {
	if m.result == nil {
		m.result = errTLSClosed
	}
	if m.pipe != nil {
		m.pipe.shutdown()
	}
}

// PeerCertificate returns the other side's leaf certificate of an EAP-TLS method
// (a *TLSPeer or *TLSServer, as NewTLSPeer and NewTLSServer return them) once its
// handshake is done; nil before, after a failure, or for any other method.
func PeerCertificate(m any) *x509.Certificate {
	if c, ok := m.(interface{ PeerCertificate() *x509.Certificate }); ok {
		return c.PeerCertificate()
	}
	return nil
}
