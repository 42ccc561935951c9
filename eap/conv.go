package eap

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxIdentity bounds identities and user names (octets), as RADIUS bounds User-Name.
const maxIdentity = 253

// Status is where a conversation stands after a packet.
type Status int

// The statuses of a conversation.
const (
	StatusContinue Status = iota // more packets to come
	StatusSuccess                // the authenticator sent/accepted EAP-Success
	StatusFailure                // EAP-Failure
)

// String names the status for logs.
func (s Status) String() string {
	switch s {
	case StatusContinue:
		return "continue"
	case StatusSuccess:
		return "success"
	case StatusFailure:
		return "failure"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// NameAuthenticator is implemented by server methods that authenticate a name of
// their own, which can differ from the EAP identity (EAP-MSCHAPv2: the user name in
// the peer's Response). Server.Identity returns that name after success.
type NameAuthenticator interface {
	// AuthenticatedName is the name the method authenticated ("" before success).
	AuthenticatedName() string
}

// Peer is the client's side of one EAP conversation (RFC 3748 as RFC 7296 2.16 carries it).
type Peer struct {
	identity string
	methods  []PeerMethod
	cur      PeerMethod // the method in use, nil before one started
	over     bool       // Success, Failure or given up
	ok       bool       // ended in Success

	// The last request answered and its answer, for retransmissions.
	lastReq, lastResp []byte
}

// NewPeer returns the peer's side of a conversation: identity (at most 253 octets)
// answers EAP-Identity requests, methods are the methods it accepts, in order of
// preference.
func NewPeer(identity string, methods ...PeerMethod) *Peer {
	return &Peer{identity: identity, methods: methods}
}

// Handle takes one EAP packet from the authenticator and returns the packet to answer
// with (nil after Success or Failure) and the status. Identity requests are answered
// with the identity, Notification requests with an empty Notification response. A
// request of a method the peer has goes to that method (the first such request starts
// it); a request of a type it does not have, before a method started, is answered with
// a Legacy Nak listing the types of its methods in order. EAP-Success is only accepted
// once the method in use Succeeded (the authenticator authenticated itself too);
// EAP-Failure gives StatusFailure. A request that repeats the last one answered
// (same identifier and octets) is answered with the same answer again.
//
// An error with StatusContinue means the packet was malformed or out of place and
// was dropped: nothing changed. An error with StatusFailure means the peer gives up:
// the method failed, the authenticator switched methods or claimed success without
// authenticating itself.
func (p *Peer) Handle(pkt []byte) (resp []byte, st Status, err error) {
	in, err := Parse(pkt)
	if err != nil {
		return nil, StatusContinue, err
	}
	if p.over {
		return nil, StatusContinue, fmt.Errorf("eap: %s after the conversation ended", in.Code)
	}
	switch in.Code {
	case CodeRequest:
		return p.request(in, pkt)
	case CodeSuccess:
		if p.cur == nil || !p.cur.Succeeded() {
			p.over = true
			return nil, StatusFailure, errors.New("eap: EAP-Success before the method authenticated the authenticator")
		}
		p.over, p.ok = true, true
		return nil, StatusSuccess, nil
	case CodeFailure:
		p.over = true
		return nil, StatusFailure, nil
	}
	return nil, StatusContinue, fmt.Errorf("eap: unexpected %s", in.Code)
}

// request answers one request; raw is the packet as received.
func (p *Peer) request(in Packet, raw []byte) ([]byte, Status, error) {
	if p.lastReq != nil && bytes.Equal(raw, p.lastReq) {
		return bytes.Clone(p.lastResp), StatusContinue, nil
	}
	out := Packet{Code: CodeResponse, ID: in.ID, Type: in.Type}
	switch in.Type {
	case TypeIdentity:
		if len(p.identity) > maxIdentity {
			p.over = true
			return nil, StatusFailure, fmt.Errorf("eap: identity of %d octets, more than %d", len(p.identity), maxIdentity)
		}
		out.Data = []byte(p.identity)
	case TypeNotification:
		// An empty Notification response acknowledges it (RFC 3748 5.2).
	case TypeNak:
		return nil, StatusContinue, errors.New("eap: Nak in a request")
	default:
		m, nak, err := p.method(in.Type)
		if err != nil {
			p.over = true
			return nil, StatusFailure, err
		}
		if nak != nil {
			out.Type, out.Data = TypeNak, nak
			break
		}
		data, err := m.Respond(in.Data)
		if err != nil {
			p.over = true
			return nil, StatusFailure, fmt.Errorf("eap %s: %w", in.Type, err)
		}
		if 5+len(data) > MaxPacket {
			p.over = true
			return nil, StatusFailure, fmt.Errorf("eap %s: response of %d octets, more than %d", in.Type, 5+len(data), MaxPacket)
		}
		out.Data = data
	}
	resp := out.Marshal()
	p.lastReq, p.lastResp = bytes.Clone(raw), resp
	return bytes.Clone(resp), StatusContinue, nil
}

// method returns the method for a request of type t, starting it if none is in use,
// or the data of the Legacy Nak to answer with when the peer does not have t.
func (p *Peer) method(t Type) (PeerMethod, []byte, error) {
	if p.cur != nil {
		if p.cur.Type() != t {
			return nil, nil, fmt.Errorf("eap: %s request during %s", t, p.cur.Type())
		}
		return p.cur, nil, nil
	}
	for _, m := range p.methods {
		if m.Type() == t {
			p.cur = m
			return m, nil, nil
		}
	}
	var nak []byte
	for _, m := range p.methods {
		if mt := m.Type(); mt > TypeNak && mt < 254 && !bytes.Contains(nak, []byte{byte(mt)}) {
			nak = append(nak, byte(mt))
		}
	}
	if len(nak) == 0 {
		nak = []byte{0} // no acceptable method (RFC 3748 5.3.1)
	}
	return nil, nak, nil
}

// MSK is the method's Master Session Key after success, nil otherwise.
func (p *Peer) MSK() []byte {
	if !p.ok || p.cur == nil {
		return nil
	}
	return p.cur.MSK()
}

// Method is the method in use (0 before one started).
func (p *Peer) Method() Type {
	if p.cur == nil {
		return 0
	}
	return p.cur.Type()
}

// Close closes every method; the conversation is over.
func (p *Peer) Close() {
	for _, m := range p.methods {
		m.Close()
	}
	p.over, p.ok = true, false
}

// Server is the local authenticator's side of one EAP conversation: it asks for the
// peer's identity (EAP-Identity), then runs the method newMethod returns for that
// identity.
type Server struct {
	newMethod func(identity string) (ServerMethod, error)
	rand      io.Reader
	started   bool
	over      bool
	ok        bool
	id        uint8 // the outstanding request's identifier
	identity  string
	m         ServerMethod
}

// NewServer returns the authenticator's side of a conversation; rand gives the first
// identifier.
func NewServer(newMethod func(identity string) (ServerMethod, error), rand io.Reader) *Server {
	return &Server{newMethod: newMethod, rand: rand}
}

// Start returns the EAP-Identity request, with a random identifier.
func (s *Server) Start() ([]byte, error) {
	if s.started {
		return nil, errors.New("eap: conversation started twice")
	}
	var id [1]byte
	if _, err := io.ReadFull(s.rand, id[:]); err != nil {
		return nil, fmt.Errorf("eap: identifier: %w", err)
	}
	s.started, s.id = true, id[0]
	return Packet{Code: CodeRequest, ID: s.id, Type: TypeIdentity}.Marshal(), nil
}

// Handle takes the peer's response and returns the next request, or, when st is not
// StatusContinue, the EAP-Success or EAP-Failure packet to send. A packet that is
// malformed, not a Response, or whose identifier is not the outstanding request's
// gives an error with StatusContinue and changes nothing (the caller drops it). A
// Legacy Nak of the method ends in failure with an error naming the types the peer
// wants. With StatusFailure, err says why (for the log; never a secret).
func (s *Server) Handle(pkt []byte) (out []byte, st Status, err error) {
	in, err := Parse(pkt)
	if err != nil {
		return nil, StatusContinue, err
	}
	switch {
	case !s.started || s.over:
		return nil, StatusContinue, errors.New("eap: no request outstanding")
	case in.Code != CodeResponse:
		return nil, StatusContinue, fmt.Errorf("eap: %s from the peer", in.Code)
	case in.ID != s.id:
		return nil, StatusContinue, fmt.Errorf("eap: response with identifier %d, the outstanding request has %d", in.ID, s.id)
	}
	if s.m == nil {
		return s.identityResponse(in)
	}
	return s.methodResponse(in)
}

// identityResponse takes the peer's identity and starts its method.
func (s *Server) identityResponse(in Packet) ([]byte, Status, error) {
	if in.Type != TypeIdentity {
		return s.fail(in, fmt.Errorf("eap: %s response to the identity request", in.Type))
	}
	if len(in.Data) > maxIdentity {
		return s.fail(in, fmt.Errorf("eap: identity of %d octets, more than %d", len(in.Data), maxIdentity))
	}
	identity := string(in.Data)
	m, err := s.newMethod(identity)
	if err == nil && m == nil {
		err = errors.New("no method")
	}
	if err != nil {
		if m != nil {
			m.Close()
		}
		return s.fail(in, fmt.Errorf("eap: identity %q: %w", identity, err))
	}
	s.m, s.identity = m, identity
	data, err := m.Start(identity)
	if err != nil {
		return s.fail(in, fmt.Errorf("eap %s: %w", m.Type(), err))
	}
	return s.request(in, data)
}

// methodResponse passes the peer's response to the method.
func (s *Server) methodResponse(in Packet) ([]byte, Status, error) {
	t := s.m.Type()
	if in.Type == TypeNak {
		return s.fail(in, fmt.Errorf("eap: the peer declined %s; it wants %s", t, nakTypes(in.Data)))
	}
	if in.Type != t {
		return s.fail(in, fmt.Errorf("eap: %s response during %s", in.Type, t))
	}
	data, done, err := s.m.Next(in.Data)
	switch {
	case err != nil:
		return s.fail(in, err)
	case done:
		s.over, s.ok = true, true
		return Packet{Code: CodeSuccess, ID: in.ID}.Marshal(), StatusSuccess, nil
	}
	return s.request(in, data)
}

// nakTypes names the types of a Legacy Nak's data.
func nakTypes(data []byte) string {
	var names []string
	for _, b := range data {
		if b != 0 {
			names = append(names, Type(b).String())
		}
	}
	if len(names) == 0 {
		return "no other method"
	}
	return strings.Join(names, ", ")
}

// request sends the method's next request.
func (s *Server) request(in Packet, data []byte) ([]byte, Status, error) {
	if 5+len(data) > MaxPacket {
		return s.fail(in, fmt.Errorf("eap %s: request of %d octets, more than %d", s.m.Type(), 5+len(data), MaxPacket))
	}
	s.id++
	return Packet{Code: CodeRequest, ID: s.id, Type: s.m.Type(), Data: data}.Marshal(), StatusContinue, nil
}

// fail ends the conversation with EAP-Failure, which answers in.
func (s *Server) fail(in Packet, why error) ([]byte, Status, error) {
	s.over, s.ok = true, false
	return Packet{Code: CodeFailure, ID: in.ID}.Marshal(), StatusFailure, why
}

// Identity is the identity the peer gave in its EAP-Identity response; after success,
// if the method authenticated a name of its own (see NameAuthenticator), that name.
func (s *Server) Identity() string {
	if s.ok {
		if na, ok := s.m.(NameAuthenticator); ok {
			if name := na.AuthenticatedName(); name != "" {
				return name
			}
		}
	}
	return s.identity
}

// Method is the method in use (0 before the peer's identity came).
func (s *Server) Method() Type {
	if s.m == nil {
		return 0
	}
	return s.m.Type()
}

// MSK is the method's Master Session Key after success, nil otherwise.
func (s *Server) MSK() []byte {
	if !s.ok {
		return nil
	}
	return s.m.MSK()
}

// Close closes the method; the conversation is over.
func (s *Server) Close() {
	if s.m != nil {
		s.m.Close()
	}
	s.over, s.ok = true, false
}
