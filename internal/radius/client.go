// Package radius is the RADIUS client behind EAP-RADIUS on an IKEv2 gateway: it
// passes a client's EAP packets to a RADIUS server in Access-Requests and brings
// back the server's Access-Challenge, Access-Accept (with the MSK from the
// MS-MPPE keys) or Access-Reject (RFC 2865, RFC 3579, RFC 2869, RFC 2548).
//
// Every request carries a Message-Authenticator; every answer must carry a valid
// one and a valid Response Authenticator, come from the server's address and match
// an outstanding request, or it is dropped and counted. Requests are retransmitted
// with the same Identifier and authenticator (RFC 5080) and go to the next server
// when one does not answer. Many Exchanges may run at once: each server has its own
// socket with up to 255 outstanding requests, matched by Identifier.
//
// A shared secret never appears in an error or a log record.
package radius

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Server is one RADIUS authentication server.
type Server struct {
	Addr   netip.AddrPort // e.g. 198.18.0.5:1812
	Secret []byte         // the shared secret: never logged, never in an error
}

// String is the server's address only, so that printing a Server never shows
// its secret.
func (s Server) String() string { return s.Addr.String() }

// GoString keeps %#v from printing the secret.
func (s Server) GoString() string { return "radius.Server{Addr: " + s.Addr.String() + "}" }

// LogValue keeps slog from printing the secret.
func (s Server) LogValue() slog.Value { return slog.StringValue(s.Addr.String()) }

// Config configures a Client.
type Config struct {
	Servers       []Server      // tried in order; the next one when one does not answer
	Timeout       time.Duration // per try (default 2s)
	Tries         int           // per server (default 3)
	NASIdentifier string        // default "mobikevpn"
	Source        netip.Addr    // optional local address of the sockets
	Logger        *slog.Logger  // debug logs for dropped answers and retransmissions
}

// Request is what one Access-Request carries besides the attributes every
// request has (NAS-Identifier, NAS-Port-Type Virtual, Service-Type Framed,
// Message-Authenticator), as strongSwan's eap-radius sends them.
type Request struct {
	UserName string // User-Name: the EAP identity (omitted when empty)
	// EAP is one EAP packet, split into EAP-Message attributes of at most 253
	// octets; empty, it is sent as an empty EAP-Message (EAP-Start, RFC 3579 3.1).
	EAP   []byte
	State []byte // the State of the previous Access-Challenge, if any
	// CallingStationID is the client's address, CalledStationID the gateway's, in
	// strongSwan's form "203.0.113.5[4500]" (see StationID); omitted when empty.
	CallingStationID string
	CalledStationID  string
	// NASAddress is the gateway's IKE address, sent as NAS-IP-Address or
	// NAS-IPv6-Address; when unset, Config.Source if set.
	NASAddress    netip.Addr
	NASPort       uint32 // NAS-Port, e.g. the IKE SA's unique number (omitted when 0)
	NASPortID     string // NAS-Port-Id, e.g. the connection's name (omitted when empty)
	AcctSessionID string // Acct-Session-Id (omitted when empty)
}

// StationID formats an address and port as strongSwan's eap-radius does for
// Called-Station-Id and Calling-Station-Id: "203.0.113.5[4500]".
func StationID(ap netip.AddrPort) string {
	return ap.Addr().Unmap().String() + "[" + strconv.Itoa(int(ap.Port())) + "]"
}

// Answer is a server's verified answer.
type Answer struct {
	Code         Code
	EAP          []byte // the EAP-Message attributes joined
	State        []byte
	MSK          []byte // on Access-Accept: MS-MPPE-Recv-Key || MS-MPPE-Send-Key, zero-padded to 64 octets
	ReplyMessage string // the Reply-Message attributes joined
	Server       netip.AddrPort
	Attributes   []Attribute // all attributes, in order
}

// Stats are a Client's counters.
type Stats struct {
	Sent        uint64 // Access-Requests sent, retransmissions included
	Retransmits uint64 // retransmissions
	Answers     uint64 // valid answers accepted
	Drops       uint64 // answers dropped: wrong source, Identifier, authenticator, framing, duplicates
	Failures    uint64 // Exchanges that got no valid answer from any server
}

// ErrNoAnswer is wrapped by Exchange's error when no server gave a valid answer.
var ErrNoAnswer = errors.New("no valid answer")

// ErrClosed is wrapped by Exchange's error when the Client was closed.
var ErrClosed = errors.New("radius: client closed")

// ServerError says how the requests to one server ended.
type ServerError struct {
	Addr  netip.AddrPort
	Tries int   // Access-Requests sent to it (retransmissions included)
	Err   error // ErrNoAnswer, a send error, the context's error or ErrClosed
}

// Error is Exchange's error when no valid answer came: the servers tried, in order.
type Error struct {
	Servers []ServerError
	Err     error // ErrNoAnswer, the context's error, or ErrClosed
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("radius: ")
	b.WriteString(e.Err.Error())
	b.WriteString(": ")
	for i, s := range e.Servers {
		if i > 0 {
			b.WriteString(", ")
		}
		tries := "tries"
		if s.Tries == 1 {
			tries = "try"
		}
		fmt.Fprintf(&b, "%s (%d %s: %v)", s.Addr, s.Tries, tries, s.Err)
	}
	if len(e.Servers) == 0 {
		b.WriteString("no server tried")
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// maxOutstanding bounds the requests waiting for an answer on one socket: the
// Identifier has 256 values and one stays free.
const maxOutstanding = 255

// Client sends Access-Requests. It is safe for concurrent use.
type Client struct {
	timeout time.Duration
	tries   int
	nasID   string
	source  netip.Addr
	log     *slog.Logger
	socks   []*sock

	closed    chan struct{}
	closeOnce sync.Once
	readers   sync.WaitGroup

	sent, retransmits, answers, drops, failures atomic.Uint64
}

// sock is the socket of one server and its outstanding requests by Identifier.
type sock struct {
	addr   netip.AddrPort // unmapped
	secret []byte
	conn   *net.UDPConn
	slots  chan struct{} // one per outstanding request

	mu      sync.Mutex
	pending [256]*pending
	next    uint8
}

// pending is an outstanding request.
type pending struct {
	auth     [authLen]byte // its Request Authenticator
	answer   chan result   // buffered: the reader never blocks
	answered bool
}

type result struct {
	a   Answer
	err error
}

// New checks cfg, applies its defaults and opens one UDP socket per server.
func New(cfg Config) (*Client, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("radius: no server")
	}
	c := &Client{
		timeout: cfg.Timeout, tries: cfg.Tries, nasID: cfg.NASIdentifier,
		source: cfg.Source.Unmap(), log: cfg.Logger, closed: make(chan struct{}),
	}
	if c.timeout <= 0 {
		c.timeout = 2 * time.Second
	}
	if c.tries <= 0 {
		c.tries = 3
	}
	if c.nasID == "" {
		c.nasID = "mobikevpn"
	}
	if len(c.nasID) > maxValue {
		return nil, fmt.Errorf("radius: NAS-Identifier of %d octets (at most %d)", len(c.nasID), maxValue)
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	for i, srv := range cfg.Servers {
		s, err := c.open(srv)
		if err != nil {
			for _, s := range c.socks {
				s.conn.Close()
			}
			return nil, fmt.Errorf("radius: server %d (%s): %w", i+1, srv.Addr, err)
		}
		c.socks = append(c.socks, s)
	}
	for _, s := range c.socks {
		c.readers.Add(1)
		go c.read(s)
	}
	return c, nil
}

// open checks one server and opens its socket.
func (c *Client) open(srv Server) (*sock, error) {
	addr := netip.AddrPortFrom(srv.Addr.Addr().Unmap(), srv.Addr.Port())
	if !addr.Addr().IsValid() || addr.Port() == 0 || addr.Addr().IsUnspecified() {
		return nil, errors.New("no address or port")
	}
	if len(srv.Secret) == 0 {
		return nil, errors.New("empty shared secret")
	}
	network := "udp6"
	if addr.Addr().Is4() {
		network = "udp4"
	}
	var laddr *net.UDPAddr
	if c.source.IsValid() {
		if c.source.Is4() != addr.Addr().Is4() {
			return nil, fmt.Errorf("source address %s is not of the server's family", c.source)
		}
		laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(c.source, 0))
	}
	conn, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	s := &sock{addr: addr, secret: bytes.Clone(srv.Secret), conn: conn, slots: make(chan struct{}, maxOutstanding)}
	var b [1]byte
	rand.Read(b[:])
	s.next = b[0]
	return s, nil
}

// Close closes the sockets; Exchanges under way return ErrClosed.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.closed)
		for _, s := range c.socks {
			if e := s.conn.Close(); e != nil && err == nil {
				err = e
			}
		}
		c.readers.Wait()
	})
	return err
}

func (c *Client) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// Drops is the number of answers dropped so far.
func (c *Client) Drops() uint64 { return c.drops.Load() }

// Stats returns the counters.
func (c *Client) Stats() Stats {
	return Stats{
		Sent: c.sent.Load(), Retransmits: c.retransmits.Load(), Answers: c.answers.Load(),
		Drops: c.drops.Load(), Failures: c.failures.Load(),
	}
}

// Exchange sends one Access-Request and waits for its answer, with retries and
// fail-over: Tries tries of Timeout each per server, the servers in order. ctx
// cancels. When no valid answer comes the error is an *Error naming the servers
// tried and the tries sent to each. An Access-Accept whose MS-MPPE keys cannot be
// decrypted gives an error wrapping ErrMalformed (and no Answer).
func (c *Client) Exchange(ctx context.Context, req Request) (Answer, error) {
	if err := req.check(); err != nil {
		return Answer{}, err
	}
	// What cannot be encoded fails here, not once per server: the size does not
	// depend on the Identifier, authenticator or secret.
	if _, err := c.encode(req, 0, [authLen]byte{}, []byte{0}); err != nil {
		return Answer{}, err
	}
	e := &Error{Err: ErrNoAnswer}
	for _, s := range c.socks {
		a, tries, err := c.exchangeWith(ctx, s, req)
		if a.Code != 0 && err != nil {
			return Answer{}, err // an answer that cannot be used: fail closed, no fail-over
		}
		if a.Code != 0 {
			return a, nil
		}
		e.Servers = append(e.Servers, ServerError{Addr: s.addr, Tries: tries, Err: err})
		if ctx.Err() != nil || errors.Is(err, ErrClosed) {
			e.Err = err
			break
		}
	}
	c.failures.Add(1)
	return Answer{}, e
}

// exchangeWith sends the request to one server, Tries times at most, and returns
// its verified answer (Code non-zero) or why there is none, with the tries sent.
func (c *Client) exchangeWith(ctx context.Context, s *sock, req Request) (Answer, int, error) {
	if c.isClosed() {
		return Answer{}, 0, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return Answer{}, 0, err
	}
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return Answer{}, 0, ctx.Err()
	case <-c.closed:
		return Answer{}, 0, ErrClosed
	}
	defer func() { <-s.slots }()
	p := &pending{answer: make(chan result, 1)}
	rand.Read(p.auth[:])
	id := s.add(p)
	defer s.remove(id, p)
	pkt, err := c.encode(req, id, p.auth, s.secret)
	if err != nil {
		return Answer{}, 0, err
	}
	timer := time.NewTimer(c.timeout)
	defer timer.Stop()
	for try := 1; try <= c.tries; try++ {
		if try > 1 {
			c.retransmits.Add(1)
			c.log.Debug("radius: retransmitting", "server", s.addr, "id", id, "try", try)
		}
		c.sent.Add(1)
		if _, err := s.conn.WriteToUDPAddrPort(pkt, s.addr); err != nil {
			if c.isClosed() {
				err = ErrClosed
			}
			return Answer{}, try, err
		}
		timer.Reset(c.timeout)
		select {
		case r := <-p.answer:
			return r.a, try, r.err
		case <-timer.C:
		case <-ctx.Done():
			return Answer{}, try, ctx.Err()
		case <-c.closed:
			return Answer{}, try, ErrClosed
		}
	}
	return Answer{}, c.tries, ErrNoAnswer
}

// add registers p under a free Identifier (there is one: at most 255 are taken).
func (s *sock) add(p *pending) uint8 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range 256 {
		id := s.next + uint8(i)
		if s.pending[id] == nil {
			s.pending[id] = p
			s.next = id + 1
			return id
		}
	}
	panic("radius: no free Identifier") // cannot happen: slots bounds the outstanding requests
}

func (s *sock) remove(id uint8, p *pending) {
	s.mu.Lock()
	if s.pending[id] == p {
		s.pending[id] = nil
	}
	s.mu.Unlock()
}

// check rejects what cannot be sent.
func (r *Request) check() error {
	if len(r.EAP) == 0 {
		return nil
	}
	if len(r.EAP) < 4 || int(binary.BigEndian.Uint16(r.EAP[2:4])) != len(r.EAP) {
		return fmt.Errorf("radius: EAP packet of %d octets is malformed (its Length does not match)", len(r.EAP))
	}
	return nil
}

// encode builds the Access-Request, attributes in strongSwan's order.
func (c *Client) encode(req Request, id uint8, auth [authLen]byte, secret []byte) ([]byte, error) {
	e := newEncoder(AccessRequest, id, auth)
	if req.UserName != "" {
		e.addString(attrUserName, req.UserName)
	}
	e.addUint32(attrNASPortType, nasPortTypeVirtual)
	e.addUint32(attrServiceType, serviceTypeFramed)
	if req.NASPort != 0 {
		e.addUint32(attrNASPort, req.NASPort)
	}
	if req.NASPortID != "" {
		e.addString(attrNASPortID, req.NASPortID)
	}
	nas := req.NASAddress.Unmap()
	if !nas.IsValid() {
		nas = c.source
	}
	if nas.IsValid() && !nas.IsUnspecified() {
		if nas.Is4() {
			e.add(attrNASIPAddress, nas.AsSlice())
		} else {
			e.add(attrNASIPv6Address, nas.AsSlice())
		}
	}
	if req.CalledStationID != "" {
		e.addString(attrCalledStationID, req.CalledStationID)
	}
	if req.CallingStationID != "" {
		e.addString(attrCallingStationID, req.CallingStationID)
	}
	if req.AcctSessionID != "" {
		e.addString(attrAcctSessionID, req.AcctSessionID)
	}
	eap := req.EAP
	for len(eap) > maxValue {
		e.add(attrEAPMessage, eap[:maxValue])
		eap = eap[maxValue:]
	}
	e.add(attrEAPMessage, eap)
	e.addString(attrNASIdentifier, c.nasID)
	if req.State != nil {
		e.add(attrState, req.State)
	}
	return e.finish(secret)
}

// read receives the answers of one socket until it is closed.
func (c *Client) read(s *sock) {
	defer c.readers.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if c.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			c.log.Debug("radius: receive error", "server", s.addr, "err", err)
			time.Sleep(10 * time.Millisecond) // no busy loop on a persistent error
			continue
		}
		c.handle(s, buf[:n], from)
	}
}

// handle checks one datagram and hands a valid answer to its request.
func (c *Client) handle(s *sock, d []byte, from netip.AddrPort) {
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	if from != s.addr {
		c.drop(s, from, -1, "not from the server's address")
		return
	}
	pkt, err := header(d)
	if err != nil {
		c.drop(s, from, -1, err.Error())
		return
	}
	pkt = bytes.Clone(pkt) // the buffer is reused; the answer keeps slices of it
	id := pkt[1]
	s.mu.Lock()
	p := s.pending[id]
	s.mu.Unlock()
	if p == nil {
		c.drop(s, from, int(id), "no outstanding request with this Identifier")
		return
	}
	attrs, err := verifyAnswer(pkt, p.auth[:], s.secret)
	if err != nil {
		c.drop(s, from, int(id), err.Error())
		return
	}
	a, err := answerOf(Code(pkt[0]), attrs, p.auth[:], s.secret)
	a.Server = s.addr
	if err != nil {
		err = fmt.Errorf("radius: %v from %s: %w", a.Code, s.addr, err)
	}
	s.mu.Lock()
	ok := s.pending[id] == p && !p.answered
	if ok {
		p.answered = true
		p.answer <- result{a, err}
	}
	s.mu.Unlock()
	if !ok {
		c.drop(s, from, int(id), "duplicate answer")
		return
	}
	c.answers.Add(1)
}

// drop counts a dropped datagram and logs it once, at debug level.
func (c *Client) drop(s *sock, from netip.AddrPort, id int, reason string) {
	c.log.Debug("radius: answer dropped", "server", s.addr, "from", from, "id", id, "reason", reason)
	c.drops.Add(1)
}
