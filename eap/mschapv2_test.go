package eap

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

// The example of RFC 2759 9.2 (also the input of RFC 3079 3.5.3).
var (
	rfcUser          = "User"
	rfcPassword      = []byte("clientPass")
	rfcAuthChallenge = msUnhex("5B5D7C7D7B3F2F3E3C2C602132262628")
	rfcPeerChallenge = msUnhex("21402324255E262A28295F2B3A337C7E")
	rfcChallenge     = msUnhex("D02E4386BCE91226")
	rfcNTResponse    = msUnhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
	rfcAuthResponse  = "S=407A5589115FD0D6209F510FE9C04566932CDA56"
	rfcPasswordHash  = msUnhex("44EBBA8D5312B8D611474411F56989AE")
	rfcHashHash      = msUnhex("41C00C584BD2D91C4017A2A12FA59F3F")
	rfcMasterKey     = msUnhex("FDECE3717A8C838CB388E527AE3CDD31") // RFC 3079 3.5.3
	// RFC 3079 3.5.3's SendStartKey128, derived from the server's side: the key of
	// Magic3 (the server's send key, the client's receive key).
	rfcServerSendKey = msUnhex("8B7CDC149B993A1BA118CB153F56DCCB")
	// The key of Magic2 (the server's receive key), which RFC 3079 does not print:
	// computed independently (Python hashlib: SHA1(MasterKey | 40 zero octets | Magic2 |
	// 40 octets 0xF2), first 16 octets).
	rfcServerRecvKey = msUnhex("D5F0E9521E3EA9589645E86051C82226")
)

func msUnhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestMSCHAPv2RFC2759(t *testing.T) {
	hash, err := msNTPasswordHash(rfcPassword)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(hash[:], rfcPasswordHash) {
		t.Errorf("PasswordHash %X, want %X", hash, rfcPasswordHash)
	}
	hashHash := msMD4(hash[:])
	if !bytes.Equal(hashHash[:], rfcHashHash) {
		t.Errorf("PasswordHashHash %X, want %X", hashHash, rfcHashHash)
	}
	ch := msChallengeHash(rfcPeerChallenge, rfcAuthChallenge, rfcUser)
	if !bytes.Equal(ch[:], rfcChallenge) {
		t.Errorf("Challenge %X, want %X", ch, rfcChallenge)
	}
	nt := msChallengeResponse(ch, hash)
	if !bytes.Equal(nt[:], rfcNTResponse) {
		t.Errorf("NT-Response %X, want %X", nt, rfcNTResponse)
	}
	ar := msAuthenticatorResponse(hashHash, nt[:], ch)
	if got := "S=" + strings.ToUpper(hex.EncodeToString(ar[:])); got != rfcAuthResponse {
		t.Errorf("AuthenticatorResponse %s, want %s", got, rfcAuthResponse)
	}
	// A domain in front of the user name is left out of the challenge hash.
	k, err := msCompute(rfcPassword, rfcAuthChallenge, rfcPeerChallenge, `EXAMPLE\User`)
	if err != nil || !bytes.Equal(k.ntResponse[:], rfcNTResponse) {
		t.Errorf(`NT-Response for EXAMPLE\User %X (%v), want %X`, k.ntResponse, err, rfcNTResponse)
	}
}

func TestMSCHAPv2RFC3079Keys(t *testing.T) {
	var hashHash [16]byte
	copy(hashHash[:], rfcHashHash)
	master := msMasterKey(hashHash, rfcNTResponse)
	if !bytes.Equal(master[:], rfcMasterKey) {
		t.Errorf("MasterKey %X, want %X", master, rfcMasterKey)
	}
	if send := msStartKey(master, msKeyMagic3); !bytes.Equal(send[:], rfcServerSendKey) {
		t.Errorf("SendStartKey128 %X, want %X", send, rfcServerSendKey)
	}
	if recv := msStartKey(master, msKeyMagic2); !bytes.Equal(recv[:], rfcServerRecvKey) {
		t.Errorf("the server's receive start key %X, want %X", recv, rfcServerRecvKey)
	}
	want := append(append(append([]byte{}, rfcServerRecvKey...), rfcServerSendKey...), make([]byte, 32)...)
	if msk := msMSK(hashHash, rfcNTResponse); !bytes.Equal(msk, want) {
		t.Errorf("MSK\n %X, want\n %X", msk, want)
	}
}

func TestMSCHAPv2Password(t *testing.T) {
	u, err := msPassword([]byte("a€\U0001D11E"))
	if err != nil {
		t.Fatal(err)
	}
	if want := msUnhex("6100AC2034D81EDD"); !bytes.Equal(u, want) {
		t.Errorf("UTF-16LE %X, want %X", u, want)
	}
	if _, err := msPassword([]byte{0xff}); err == nil {
		t.Error("invalid UTF-8 accepted")
	}
	if _, err := msPassword([]byte(strings.Repeat("é", 257))); err == nil {
		t.Error("a password of 257 characters accepted")
	}
}

// rfcChallengeRequest is the server's Challenge of the RFC example, as type data.
func rfcChallengeRequest(id byte) []byte {
	return msPacket(msOpChallenge, id, []byte{16}, rfcAuthChallenge, []byte("strongSwan"))
}

// TestMSCHAPv2PeerRFC: the peer's Response on the wire carries the RFC's NT-Response,
// and the RFC's authenticator response, in strongSwan's Success format (NUL at the end),
// makes it succeed with the MSK of the RFC's keys.
func TestMSCHAPv2PeerRFC(t *testing.T) {
	m := NewMSCHAPv2Peer(`EXAMPLE\User`, rfcPassword, bytes.NewReader(rfcPeerChallenge))
	defer m.Close()
	resp, err := m.Respond(rfcChallengeRequest(0x42))
	if err != nil {
		t.Fatal(err)
	}
	want := msPacket(msOpResponse, 0x42, []byte{49}, rfcPeerChallenge, make([]byte, 8), rfcNTResponse, []byte{0}, []byte(`EXAMPLE\User`))
	if !bytes.Equal(resp, want) {
		t.Fatalf("Response\n %X, want\n %X", resp, want)
	}
	if m.Succeeded() || m.MSK() != nil {
		t.Fatal("succeeded before the authenticator response")
	}
	resp, err = m.Respond(msPacket(msOpSuccess, 0x42, []byte(rfcAuthResponse+" M=Welcome2strongSwan\x00")))
	if err != nil || !bytes.Equal(resp, []byte{msOpSuccess}) {
		t.Fatalf("Success: %X, %v", resp, err)
	}
	wantMSK := append(append(append([]byte{}, rfcServerRecvKey...), rfcServerSendKey...), make([]byte, 32)...)
	if !m.Succeeded() || !bytes.Equal(m.MSK(), wantMSK) {
		t.Fatalf("succeeded %v, MSK %X", m.Succeeded(), m.MSK())
	}
}

func TestMSCHAPv2PeerSuccessMessages(t *testing.T) {
	lower := "S=" + strings.ToLower(rfcAuthResponse[2:])
	for _, tc := range []struct {
		msg string
		ok  bool
	}{
		{rfcAuthResponse, true},
		{rfcAuthResponse + " M=Welcome", true},
		{lower, true},
		{rfcAuthResponse[:41], false},
		{rfcAuthResponse + "0", false},
		{"S=507A5589115FD0D6209F510FE9C04566932CDA56", false},
		{"M=hello " + rfcAuthResponse, false},
		{"S=ZZ7A5589115FD0D6209F510FE9C04566932CDA56", false},
		{"", false},
	} {
		m := NewMSCHAPv2Peer(rfcUser, rfcPassword, bytes.NewReader(rfcPeerChallenge))
		if _, err := m.Respond(rfcChallengeRequest(1)); err != nil {
			t.Fatal(err)
		}
		_, err := m.Respond(msPacket(msOpSuccess, 1, []byte(tc.msg)))
		if (err == nil) != tc.ok || m.Succeeded() != tc.ok {
			t.Errorf("%q: err %v, succeeded %v", tc.msg, err, m.Succeeded())
		}
	}
}

// A Failure request, retriable or not, is answered with a Failure response; the
// method has failed.
func TestMSCHAPv2PeerFailure(t *testing.T) {
	for _, msg := range []string{"E=691 R=1 C=00112233445566778899AABBCCDDEEFF", "E=691 R=0 C=00112233445566778899AABBCCDDEEFF V=3 M=Authentication failed", "E=648"} {
		m := NewMSCHAPv2Peer(rfcUser, rfcPassword, bytes.NewReader(rfcPeerChallenge))
		if _, err := m.Respond(rfcChallengeRequest(1)); err != nil {
			t.Fatal(err)
		}
		resp, err := m.Respond(msPacket(msOpFailure, 1, []byte(msg)))
		if err != nil || !bytes.Equal(resp, []byte{msOpFailure}) || m.Succeeded() || m.MSK() != nil {
			t.Errorf("%q: %X, %v, succeeded %v", msg, resp, err, m.Succeeded())
		}
		if _, err := m.Respond(rfcChallengeRequest(2)); err == nil {
			t.Errorf("%q: a new Challenge after the Failure accepted", msg)
		}
	}
}

func TestMSCHAPv2PeerBadRequests(t *testing.T) {
	for name, req := range map[string][]byte{
		"empty":            {},
		"short":            {msOpChallenge, 1, 0},
		"success first":    msPacket(msOpSuccess, 1, []byte(rfcAuthResponse)),
		"value size":       msPacket(msOpChallenge, 1, []byte{8}, rfcAuthChallenge[:8]),
		"short challenge":  msPacket(msOpChallenge, 1, []byte{16}, rfcAuthChallenge[:15]),
		"change password":  msPacket(7, 1),
		"response request": msPacket(msOpResponse, 1, []byte{49}, make([]byte, 49)),
	} {
		m := NewMSCHAPv2Peer(rfcUser, rfcPassword, bytes.NewReader(rfcPeerChallenge))
		if resp, err := m.Respond(req); err == nil {
			t.Errorf("%s: answered %X", name, resp)
		}
	}
}

// TestMSCHAPv2ServerRFC: the server checks the RFC's Response and sends the RFC's
// authenticator response; the peer's Success response ends it with the MSK.
func TestMSCHAPv2ServerRFC(t *testing.T) {
	var asked []string
	pw := func(user string) ([]byte, bool) {
		asked = append(asked, user)
		return rfcPassword, user == `EXAMPLE\User`
	}
	rand := bytes.NewReader(append([]byte{0x42}, rfcAuthChallenge...))
	m := NewMSCHAPv2Server("", pw, rand)
	defer m.Close()
	req, err := m.Start("whoever")
	if err != nil {
		t.Fatal(err)
	}
	if want := msPacket(msOpChallenge, 0x42, []byte{16}, rfcAuthChallenge, []byte("mobikevpn")); !bytes.Equal(req, want) {
		t.Fatalf("Challenge %X, want %X", req, want)
	}
	resp := msPacket(msOpResponse, 0x42, []byte{49}, rfcPeerChallenge, make([]byte, 8), rfcNTResponse, []byte{0}, []byte(`EXAMPLE\User`))
	req, done, err := m.Next(resp)
	if err != nil || done {
		t.Fatalf("Next: done %v, %v", done, err)
	}
	if want := msPacket(msOpSuccess, 0x42, []byte(rfcAuthResponse+" M=Welcome")); !bytes.Equal(req, want) {
		t.Fatalf("Success request %q, want %q", req, want)
	}
	if m.MSK() != nil {
		t.Fatal("MSK before the peer's Success response")
	}
	if _, done, err = m.Next([]byte{msOpSuccess}); !done || err != nil {
		t.Fatalf("Success response: done %v, %v", done, err)
	}
	wantMSK := append(append(append([]byte{}, rfcServerRecvKey...), rfcServerSendKey...), make([]byte, 32)...)
	if !bytes.Equal(m.MSK(), wantMSK) {
		t.Errorf("MSK %X", m.MSK())
	}
	if got := m.(NameAuthenticator).AuthenticatedName(); got != `EXAMPLE\User` {
		t.Errorf("authenticated name %q", got)
	}
	if strings.Join(asked, ",") != `EXAMPLE\User` {
		t.Errorf("passwords asked for %q", asked)
	}
}

func TestMSCHAPv2ServerBadResponses(t *testing.T) {
	pw := func(string) ([]byte, bool) { return rfcPassword, true }
	long := strings.Repeat("u", 254)
	for name, resp := range map[string][]byte{
		"empty":       {},
		"short":       msPacket(msOpResponse, 1, []byte{49}, make([]byte, 48)),
		"value size":  msPacket(msOpResponse, 1, []byte{48}, make([]byte, 49)),
		"long name":   msPacket(msOpResponse, 1, []byte{49}, make([]byte, 49), []byte(long)),
		"success":     {msOpSuccess},
		"challenge":   rfcChallengeRequest(1),
		"peer failed": {msOpFailure},
	} {
		m := NewMSCHAPv2Server("gw", pw, bytes.NewReader(make([]byte, 64)))
		if _, err := m.Start("x"); err != nil {
			t.Fatal(err)
		}
		req, done, err := m.Next(resp)
		if !done || err == nil || m.MSK() != nil {
			t.Errorf("%s: %X, done %v, %v", name, req, done, err)
		}
	}
}
