package eap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// convRand is a deterministic source of randomness.
func convRand(seed byte) io.Reader {
	return rand.NewChaCha8([32]byte{seed})
}

var convUsers = map[string]string{"alice": "correct horse", `CORP\bob`: "pässwörd"}

func convPasswords(user string) ([]byte, bool) {
	pw, ok := convUsers[user]
	return []byte(pw), ok
}

func convServer(seed byte) *Server {
	return NewServer(func(identity string) (ServerMethod, error) {
		return NewMSCHAPv2Server("gw", convPasswords, convRand(seed+1)), nil
	}, convRand(seed))
}

// convResult is how a conversation between a Peer and a Server ended.
type convResult struct {
	peerSt, serverSt   Status
	peerErr, serverErr error
	wire               [][]byte // every packet, in order (server first)
}

// convRun runs a conversation to its end. tamper, when not nil, may change the
// server's packets before the peer sees them.
func convRun(t *testing.T, p *Peer, s *Server, tamper func([]byte) []byte) convResult {
	t.Helper()
	var r convResult
	out, err := s.Start()
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if tamper != nil {
			out = tamper(out)
		}
		r.wire = append(r.wire, out)
		var resp []byte
		resp, r.peerSt, r.peerErr = p.Handle(out)
		if r.peerErr != nil || r.peerSt != StatusContinue || r.serverSt != StatusContinue {
			return r
		}
		r.wire = append(r.wire, resp)
		out, r.serverSt, r.serverErr = s.Handle(resp)
		if r.serverErr != nil && r.serverSt == StatusContinue {
			return r
		}
	}
	t.Fatal("the conversation does not end")
	return r
}

func TestConversationSuccess(t *testing.T) {
	for _, tc := range []struct{ identity, user, password string }{
		{"alice", "alice", "correct horse"},
		{`CORP\bob`, `CORP\bob`, "pässwörd"},
		{"bob@corp", `CORP\bob`, "pässwörd"}, // the EAP identity need not be the MSCHAPv2 name
	} {
		p := NewPeer(tc.identity, NewMSCHAPv2Peer(tc.user, []byte(tc.password), convRand(9)))
		s := convServer(1)
		r := convRun(t, p, s, nil)
		if r.peerSt != StatusSuccess || r.serverSt != StatusSuccess || r.peerErr != nil || r.serverErr != nil {
			t.Fatalf("%s: peer %s %v, server %s %v", tc.user, r.peerSt, r.peerErr, r.serverSt, r.serverErr)
		}
		pm, sm := p.MSK(), s.MSK()
		if len(pm) != 64 || !bytes.Equal(pm, sm) || !bytes.Equal(pm[32:], make([]byte, 32)) {
			t.Errorf("%s: MSK peer %X server %X", tc.user, pm, sm)
		}
		if p.Method() != TypeMSCHAPv2 || s.Method() != TypeMSCHAPv2 {
			t.Errorf("methods %s %s", p.Method(), s.Method())
		}
		if s.Identity() != tc.user {
			t.Errorf("server identity %q, want the authenticated %q", s.Identity(), tc.user)
		}
		if len(r.wire) != 7 { // identity, challenge, success, EAP-Success
			t.Errorf("%d packets", len(r.wire))
		}
		p.Close()
		s.Close()
		if p.MSK() != nil || s.MSK() != nil {
			t.Error("MSK after Close")
		}
	}
}

// convFailureMessage is the MSCHAPv2 Failure request's message in a conversation.
func convFailureMessage(t *testing.T, wire [][]byte) string {
	t.Helper()
	for _, b := range wire {
		in, err := Parse(b)
		if err == nil && in.Code == CodeRequest && in.Type == TypeMSCHAPv2 && in.Data[0] == msOpFailure {
			return string(in.Data[msHeaderLen:])
		}
	}
	t.Fatal("no Failure request")
	return ""
}

func TestConversationFailure(t *testing.T) {
	for _, tc := range []struct{ user, password, why string }{
		{"alice", "wrong horse", "wrong password for user alice"},
		{"mallory", "correct horse", "unknown user mallory"},
		{"", "", "unknown user"},
	} {
		p := NewPeer(tc.user, NewMSCHAPv2Peer(tc.user, []byte(tc.password), convRand(9)))
		s := convServer(1)
		r := convRun(t, p, s, nil)
		if r.peerSt != StatusFailure || r.peerErr != nil {
			t.Errorf("%s: peer %s %v", tc.user, r.peerSt, r.peerErr)
		}
		if r.serverSt != StatusFailure || r.serverErr == nil || !strings.Contains(r.serverErr.Error(), tc.why) {
			t.Errorf("%s: server %s %v, want an error with %q", tc.user, r.serverSt, r.serverErr, tc.why)
		}
		if r.serverErr != nil && (strings.Contains(r.serverErr.Error(), tc.password) && tc.password != "") {
			t.Errorf("the error shows the password: %v", r.serverErr)
		}
		if p.MSK() != nil || s.MSK() != nil {
			t.Errorf("%s: MSK after failure", tc.user)
		}
		msg := convFailureMessage(t, r.wire)
		if !strings.HasPrefix(msg, "E=691 R=0 C=") || !strings.HasSuffix(msg, " V=3 M=Authentication failed") || len(msg) != 12+32+28 {
			t.Errorf("%s: Failure message %q", tc.user, msg)
		}
		if last := r.wire[len(r.wire)-1]; !bytes.Equal(last[:1], []byte{byte(CodeFailure)}) {
			t.Errorf("%s: last packet %X, want EAP-Failure", tc.user, last)
		}
	}
}

// A server that does not know the password cannot make the authenticator response:
// the peer gives up before EAP-Success.
func TestConversationBadAuthenticatorResponse(t *testing.T) {
	p := NewPeer("alice", NewMSCHAPv2Peer("alice", []byte("correct horse"), convRand(9)))
	s := convServer(1)
	r := convRun(t, p, s, func(b []byte) []byte {
		in, err := Parse(b)
		if err == nil && in.Type == TypeMSCHAPv2 && in.Data[0] == msOpSuccess {
			b = bytes.Clone(b)
			b[5+msHeaderLen+2] ^= 1 // a hex digit of S=
		}
		return b
	})
	if r.peerSt != StatusFailure || r.peerErr == nil || !strings.Contains(r.peerErr.Error(), "authenticator response") {
		t.Fatalf("peer %s %v", r.peerSt, r.peerErr)
	}
	if p.MSK() != nil {
		t.Error("MSK")
	}
	// And an EAP-Success right after the Response is refused the same way.
	p = NewPeer("alice", NewMSCHAPv2Peer("alice", []byte("correct horse"), convRand(9)))
	s = convServer(1)
	r = convRun(t, p, s, func(b []byte) []byte {
		in, err := Parse(b)
		if err == nil && in.Type == TypeMSCHAPv2 && in.Data[0] == msOpSuccess {
			return Packet{Code: CodeSuccess, ID: in.ID}.Marshal()
		}
		return b
	})
	if r.peerSt != StatusFailure || r.peerErr == nil {
		t.Fatalf("early EAP-Success: peer %s %v", r.peerSt, r.peerErr)
	}
}

// convMD5Server offers EAP-MD5, which the peers here do not have.
type convMD5Server struct{}

func (convMD5Server) Type() Type { return TypeMD5 }
func (convMD5Server) Start(string) ([]byte, error) {
	return append([]byte{16}, make([]byte, 16)...), nil
}
func (convMD5Server) Next([]byte) ([]byte, bool, error) {
	return nil, true, errors.New("md5 not implemented")
}
func (convMD5Server) MSK() []byte                    { return nil }
func (convMD5Server) Close()                         {}
func convNewMD5(string) (ServerMethod, error)        { return convMD5Server{}, nil }
func convFailingMethod(string) (ServerMethod, error) { return nil, errors.New("no such realm") }
func convMSPeer(user, password string) PeerMethod {
	return NewMSCHAPv2Peer(user, []byte(password), convRand(9))
}

func TestConversationNak(t *testing.T) {
	p := NewPeer("alice", convMSPeer("alice", "correct horse"))
	s := NewServer(convNewMD5, convRand(1))
	r := convRun(t, p, s, nil)
	nak, err := Parse(r.wire[3])
	if err != nil || nak.Code != CodeResponse || nak.Type != TypeNak || !bytes.Equal(nak.Data, []byte{26}) {
		t.Fatalf("answer to MD5: %X", r.wire[3])
	}
	if r.serverSt != StatusFailure || r.serverErr == nil || !strings.Contains(r.serverErr.Error(), "mschapv2") {
		t.Errorf("server %s %v", r.serverSt, r.serverErr)
	}
	if r.peerSt != StatusFailure || r.peerErr != nil || p.Method() != 0 {
		t.Errorf("peer %s %v, method %s", r.peerSt, r.peerErr, p.Method())
	}

	// No method at all: a Nak with 0; the server says the peer wants none.
	r = convRun(t, NewPeer("alice"), NewServer(convNewMD5, convRand(1)), nil)
	if nak, _ := Parse(r.wire[3]); !bytes.Equal(nak.Data, []byte{0}) || !strings.Contains(r.serverErr.Error(), "no other method") {
		t.Errorf("Nak %X, server %v", r.wire[3], r.serverErr)
	}

	// newMethod's refusal ends in EAP-Failure with its reason.
	r = convRun(t, NewPeer("alice"), NewServer(convFailingMethod, convRand(1)), nil)
	if r.serverSt != StatusFailure || !strings.Contains(r.serverErr.Error(), "no such realm") || r.peerSt != StatusFailure {
		t.Errorf("server %s %v, peer %s", r.serverSt, r.serverErr, r.peerSt)
	}
}

// A repeated request gets the same answer (the peer challenge is not drawn again); a
// new request that reuses the identifier is a new request.
func TestPeerRetransmission(t *testing.T) {
	p := NewPeer("alice", convMSPeer("alice", "correct horse"))
	s := convServer(1)
	req, _ := s.Start()
	id1, _, err1 := p.Handle(req)
	id2, _, err2 := p.Handle(req)
	if err1 != nil || err2 != nil || !bytes.Equal(id1, id2) {
		t.Fatalf("identity answers %X %X (%v %v)", id1, id2, err1, err2)
	}
	challenge, _, err := s.Handle(id1)
	if err != nil {
		t.Fatal(err)
	}
	r1, _, err1 := p.Handle(challenge)
	r2, _, err2 := p.Handle(challenge)
	if err1 != nil || err2 != nil || !bytes.Equal(r1, r2) {
		t.Fatalf("answers to the Challenge differ: %X %X (%v %v)", r1, r2, err1, err2)
	}
	// An identity request with the Challenge's identifier is answered as new.
	again := Packet{Code: CodeRequest, ID: challenge[1], Type: TypeIdentity}.Marshal()
	if resp, _, err := p.Handle(again); err != nil || !bytes.Equal(resp, Packet{Code: CodeResponse, ID: challenge[1], Type: TypeIdentity, Data: []byte("alice")}.Marshal()) {
		t.Errorf("identity request with a reused identifier: %X %v", resp, err)
	}
	// The server still takes the Response and the conversation succeeds.
	out, st, err := s.Handle(r2)
	if err != nil || st != StatusContinue {
		t.Fatal(st, err)
	}
	ack, _, err := p.Handle(out)
	if err != nil {
		t.Fatal(err)
	}
	if out, st, err = s.Handle(ack); st != StatusSuccess || err != nil {
		t.Fatal(st, err)
	}
	if _, st, err = p.Handle(out); st != StatusSuccess || err != nil {
		t.Fatal(st, err)
	}
}

func TestPeerOddPackets(t *testing.T) {
	p := NewPeer("alice", convMSPeer("alice", "correct horse"))
	notif := Packet{Code: CodeRequest, ID: 7, Type: TypeNotification, Data: []byte("hello")}.Marshal()
	if resp, st, err := p.Handle(notif); err != nil || st != StatusContinue || !bytes.Equal(resp, Packet{Code: CodeResponse, ID: 7, Type: TypeNotification}.Marshal()) {
		t.Errorf("notification: %X %s %v", resp, st, err)
	}
	for name, pkt := range map[string][]byte{
		"short":    {1, 2, 0},
		"length":   {1, 2, 0, 9, 1},
		"response": Packet{Code: CodeResponse, ID: 8, Type: TypeIdentity}.Marshal(),
		"nak":      Packet{Code: CodeRequest, ID: 8, Type: TypeNak, Data: []byte{26}}.Marshal(),
	} {
		if resp, st, err := p.Handle(pkt); err == nil || st != StatusContinue || resp != nil {
			t.Errorf("%s: %X %s %v", name, resp, st, err)
		}
	}
	// A method switch once MSCHAPv2 started is fatal.
	if _, _, err := p.Handle(Packet{Code: CodeRequest, ID: 9, Type: TypeMSCHAPv2, Data: rfcChallengeRequest(9)}.Marshal()); err != nil {
		t.Fatal(err)
	}
	if _, st, err := p.Handle(Packet{Code: CodeRequest, ID: 10, Type: TypeMD5, Data: []byte{1, 0}}.Marshal()); err == nil || st != StatusFailure {
		t.Errorf("method switch: %s %v", st, err)
	}
	if _, st, err := p.Handle(Packet{Code: CodeFailure, ID: 10}.Marshal()); err == nil || st != StatusContinue {
		t.Errorf("after the end: %s %v", st, err)
	}
	long := NewPeer(strings.Repeat("a", 254))
	if _, st, err := long.Handle(Packet{Code: CodeRequest, ID: 1, Type: TypeIdentity}.Marshal()); err == nil || st != StatusFailure {
		t.Errorf("identity of 254 octets: %s %v", st, err)
	}
}

// Packets with the wrong identifier or code are dropped without changing anything.
func TestServerDrops(t *testing.T) {
	s := convServer(1)
	if _, _, err := s.Handle(Packet{Code: CodeResponse, ID: 0, Type: TypeIdentity}.Marshal()); err == nil {
		t.Error("a response before Start")
	}
	req, err := s.Start()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(); err == nil {
		t.Error("started twice")
	}
	id := req[1]
	for name, pkt := range map[string][]byte{
		"identifier": Packet{Code: CodeResponse, ID: id + 1, Type: TypeIdentity, Data: []byte("alice")}.Marshal(),
		"request":    Packet{Code: CodeRequest, ID: id, Type: TypeIdentity, Data: []byte("alice")}.Marshal(),
		"success":    Packet{Code: CodeSuccess, ID: id}.Marshal(),
		"malformed":  {2, id, 0, 7, 1},
	} {
		if out, st, err := s.Handle(pkt); err == nil || st != StatusContinue || out != nil {
			t.Errorf("%s: %X %s %v", name, out, st, err)
		}
	}
	out, st, err := s.Handle(Packet{Code: CodeResponse, ID: id, Type: TypeIdentity, Data: []byte("alice")}.Marshal())
	if err != nil || st != StatusContinue || out[1] != id+1 || s.Method() != TypeMSCHAPv2 || s.Identity() != "alice" {
		t.Fatalf("%X %s %v", out, st, err)
	}
	// A response of another type ends in failure.
	out, st, err = s.Handle(Packet{Code: CodeResponse, ID: id + 1, Type: TypeMD5, Data: []byte{1}}.Marshal())
	if err == nil || st != StatusFailure || !bytes.Equal(out, Packet{Code: CodeFailure, ID: id + 1}.Marshal()) {
		t.Errorf("%X %s %v", out, st, err)
	}

	long := convServer(1)
	req, _ = long.Start()
	if _, st, err := long.Handle(Packet{Code: CodeResponse, ID: req[1], Type: TypeIdentity, Data: bytes.Repeat([]byte("a"), 254)}.Marshal()); err == nil || st != StatusFailure {
		t.Errorf("identity of 254 octets: %s %v", st, err)
	}
}

// convSplit cuts b into EAP packets by their length fields (the rest of b when a
// length field does not fit).
func convSplit(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := len(b)
		if len(b) >= 4 {
			if l := int(binary.BigEndian.Uint16(b[2:])); l >= 4 && l <= len(b) {
				n = l
			}
		}
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// convSeed records a conversation's packets: the server's (for FuzzPeer)
// and the peer's (for FuzzServer), each concatenated.
func convSeed(t testing.TB, user, password string) (fromServer, fromPeer []byte) {
	p := NewPeer(user, convMSPeer(user, password))
	s := convServer(1)
	out, _ := s.Start()
	for range 10 {
		fromServer = append(fromServer, out...)
		resp, st, err := p.Handle(out)
		if err != nil || st != StatusContinue {
			break
		}
		fromPeer = append(fromPeer, resp...)
		if out, st, err = s.Handle(resp); err != nil && st == StatusContinue {
			break
		}
	}
	return fromServer, fromPeer
}

func FuzzPeer(f *testing.F) {
	for _, c := range [][2]string{{"alice", "correct horse"}, {"alice", "wrong"}} {
		fromServer, _ := convSeed(f, c[0], c[1])
		f.Add(fromServer)
	}
	f.Add(Packet{Code: CodeRequest, ID: 1, Type: TypeMSCHAPv2, Data: rfcChallengeRequest(1)}.Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		p := NewPeer("alice", convMSPeer("alice", "correct horse"))
		defer p.Close()
		for _, pkt := range convSplit(b) {
			resp, st, err := p.Handle(pkt)
			if resp != nil {
				if _, perr := Parse(resp); perr != nil || err != nil || st != StatusContinue {
					t.Fatalf("answer %X (%v) with %s %v", resp, perr, st, err)
				}
			}
			if st == StatusSuccess && len(p.MSK()) != 64 {
				t.Fatal("success without an MSK")
			}
		}
	})
}

func FuzzServer(f *testing.F) {
	for _, c := range [][2]string{{"alice", "correct horse"}, {"alice", "wrong"}, {"nobody", "x"}} {
		_, fromPeer := convSeed(f, c[0], c[1])
		f.Add(fromPeer)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := convServer(1)
		defer s.Close()
		if _, err := s.Start(); err != nil {
			t.Fatal(err)
		}
		for _, pkt := range convSplit(b) {
			out, st, err := s.Handle(pkt)
			if out != nil {
				if _, perr := Parse(out); perr != nil {
					t.Fatalf("packet %X: %v", out, perr)
				}
			}
			if st == StatusSuccess && (err != nil || len(s.MSK()) != 64) {
				t.Fatalf("success with %v, MSK %X", err, s.MSK())
			}
		}
	})
}
