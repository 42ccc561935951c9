package eap

import (
	"crypto/des"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	//lint:ignore SA1019 MS-CHAPv2 is defined on MD4 (RFC 2759 8.3); interoperating is the point.
	"golang.org/x/crypto/md4"
)

// EAP-MSCHAPv2: the MS-CHAP-V2 algorithm of RFC 2759 in the EAP framing of
// draft-kamath-pppext-eap-mschapv2-02. The type data of every packet starts with
// OpCode; Challenge, Success and Failure requests and the Response then carry
// MS-CHAPv2-ID and MS-Length (the length from OpCode to the end), the peer's Success
// and Failure responses are OpCode alone. The MSK is the one of RFC 3079's MPPE keys
// laid out as strongSwan's eap-mschapv2 plugin does it (see msMSK).

// MS-CHAPv2 OpCodes.
const (
	msOpChallenge = 1
	msOpResponse  = 2
	msOpSuccess   = 3
	msOpFailure   = 4
)

const (
	msHeaderLen        = 4  // OpCode, MS-CHAPv2-ID, MS-Length
	msChallengeLen     = 16 // the authenticator's and the peer's challenge
	msNTResponseLen    = 24
	msResponseValueLen = 49 // peer challenge 16, reserved 8, NT-Response 24, flags 1
	msAuthResponseLen  = 20 // the authenticator response, "S=" and 40 hex digits on the wire
	msMaxPasswordChars = 256
	msDefaultName      = "mobikevpn"
)

// The magic constants of RFC 2759 8.7 and RFC 3079 3.4.
const (
	msAuthMagic1 = "Magic server to client signing constant"
	msAuthMagic2 = "Pad to make it do more than one iteration"
	msKeyMagic1  = "This is the MPPE Master Key"
	msKeyMagic2  = "On the client side, this is the send key; on the server side, it is the receive key."
	msKeyMagic3  = "On the client side, this is the receive key; on the server side, it is the send key."
)

// msPassword turns a UTF-8 password into the UTF-16LE octets that MS-CHAPv2 hashes.
// The caller wipes the result.
func msPassword(password []byte) ([]byte, error) {
	if !utf8.Valid(password) {
		return nil, errors.New("the password is not valid UTF-8")
	}
	if n := utf8.RuneCount(password); n > msMaxPasswordChars {
		return nil, fmt.Errorf("the password has %d characters, more than %d", n, msMaxPasswordChars)
	}
	u := make([]byte, 0, 4*len(password))
	for rest := password; len(rest) > 0; {
		r, size := utf8.DecodeRune(rest)
		rest = rest[size:]
		if r >= 0x10000 {
			hi, lo := utf16.EncodeRune(r)
			u = binary.LittleEndian.AppendUint16(u, uint16(hi))
			u = binary.LittleEndian.AppendUint16(u, uint16(lo))
			continue
		}
		u = binary.LittleEndian.AppendUint16(u, uint16(r))
	}
	return u, nil
}

// msMD4 is MD4 of b.
func msMD4(b []byte) [16]byte {
	var out [16]byte
	h := md4.New()
	h.Write(b)
	h.Sum(out[:0])
	return out
}

// msNTPasswordHash is NtPasswordHash (RFC 2759 8.3).
func msNTPasswordHash(password []byte) ([16]byte, error) {
	u, err := msPassword(password)
	if err != nil {
		return [16]byte{}, err
	}
	defer clear(u)
	return msMD4(u), nil
}

// msUserPart is the user name without a "DOMAIN\" in front: what the challenge hash
// takes (RFC 2759 4).
func msUserPart(name string) string {
	if i := strings.IndexByte(name, '\\'); i >= 0 {
		return name[i+1:]
	}
	return name
}

// msChallengeHash is ChallengeHash (RFC 2759 8.2).
func msChallengeHash(peerChallenge, authChallenge []byte, user string) [8]byte {
	h := sha1.New()
	h.Write(peerChallenge)
	h.Write(authChallenge)
	h.Write([]byte(user))
	var out [8]byte
	copy(out[:], h.Sum(nil))
	return out
}

// msDESEncrypt is DesEncrypt (RFC 2759 8.6): one DES block under a 7-octet key,
// spread over the 8 octets DES takes (its parity bits are ignored).
func msDESEncrypt(clear, key7 []byte) [8]byte {
	var v uint64
	for i, b := range key7[:7] {
		v |= uint64(b) << (56 - 8*i)
	}
	var key [8]byte
	for i := range key {
		key[i] = byte(v>>(57-7*i)) << 1
	}
	c, err := des.NewCipher(key[:])
	if err != nil {
		panic(err) // cannot happen: the key has 8 octets
	}
	var out [8]byte
	c.Encrypt(out[:], clear)
	return out
}

// msChallengeResponse is ChallengeResponse (RFC 2759 8.5): the NT-Response.
func msChallengeResponse(challenge [8]byte, passwordHash [16]byte) [msNTResponseLen]byte {
	var z [21]byte
	copy(z[:], passwordHash[:])
	defer clear(z[:])
	var out [msNTResponseLen]byte
	for i := range 3 {
		b := msDESEncrypt(challenge[:], z[7*i:7*i+7])
		copy(out[8*i:], b[:])
	}
	return out
}

// msAuthenticatorResponse is GenerateAuthenticatorResponse (RFC 2759 8.7), as octets.
func msAuthenticatorResponse(hashHash [16]byte, ntResponse []byte, challenge [8]byte) [msAuthResponseLen]byte {
	h := sha1.New()
	h.Write(hashHash[:])
	h.Write(ntResponse)
	h.Write([]byte(msAuthMagic1))
	digest := h.Sum(nil)
	h.Reset()
	h.Write(digest)
	h.Write(challenge[:])
	h.Write([]byte(msAuthMagic2))
	var out [msAuthResponseLen]byte
	copy(out[:], h.Sum(nil))
	return out
}

// msMasterKey is GetMasterKey (RFC 3079 3.4).
func msMasterKey(hashHash [16]byte, ntResponse []byte) [16]byte {
	h := sha1.New()
	h.Write(hashHash[:])
	h.Write(ntResponse)
	h.Write([]byte(msKeyMagic1))
	var out [16]byte
	copy(out[:], h.Sum(nil))
	return out
}

// msStartKey is GetAsymmetricStartKey (RFC 3079 3.4) for 128-bit keys, with the magic
// chosen by the caller.
func msStartKey(master [16]byte, magic string) [16]byte {
	var pad [40]byte
	h := sha1.New()
	h.Write(master[:])
	h.Write(pad[:]) // SHSpad1: 40 zero octets
	h.Write([]byte(magic))
	for i := range pad {
		pad[i] = 0xf2 // SHSpad2
	}
	h.Write(pad[:])
	var out [16]byte
	copy(out[:], h.Sum(nil))
	return out
}

// msMSK is the 64-octet MSK both sides derive, laid out as strongSwan's eap-mschapv2
// plugin (GenerateMSK) does: the key of Magic2 (the server's MasterReceiveKey, the
// client's MasterSendKey), the key of Magic3 (the server's MasterSendKey, the client's
// MasterReceiveKey), then 32 zero octets. Peer and server produce the same octets.
func msMSK(hashHash [16]byte, ntResponse []byte) []byte {
	master := msMasterKey(hashHash, ntResponse)
	recv := msStartKey(master, msKeyMagic2)
	send := msStartKey(master, msKeyMagic3)
	msk := make([]byte, 64)
	copy(msk, recv[:])
	copy(msk[16:], send[:])
	clear(master[:])
	clear(recv[:])
	clear(send[:])
	return msk
}

// msKeys are what one NT-Response computation yields on either side.
type msKeys struct {
	ntResponse [msNTResponseLen]byte
	authResp   [msAuthResponseLen]byte
	msk        []byte
}

// msCompute runs RFC 2759's computation for one exchange: user is the name as sent
// (a "DOMAIN\" in front is left out of the challenge hash).
func msCompute(password []byte, authChallenge, peerChallenge []byte, user string) (msKeys, error) {
	hash, err := msNTPasswordHash(password)
	if err != nil {
		return msKeys{}, err
	}
	hashHash := msMD4(hash[:])
	ch := msChallengeHash(peerChallenge, authChallenge, msUserPart(user))
	var k msKeys
	k.ntResponse = msChallengeResponse(ch, hash)
	k.authResp = msAuthenticatorResponse(hashHash, k.ntResponse[:], ch)
	k.msk = msMSK(hashHash, k.ntResponse[:])
	clear(hash[:])
	clear(hashHash[:])
	return k, nil
}

// msPacket builds MS-CHAPv2 type data with the long header.
func msPacket(op, id byte, body ...[]byte) []byte {
	n := msHeaderLen
	for _, b := range body {
		n += len(b)
	}
	out := make([]byte, msHeaderLen, n)
	out[0], out[1] = op, id
	binary.BigEndian.PutUint16(out[2:], uint16(n))
	for _, b := range body {
		out = append(out, b...)
	}
	return out
}

// msPrintable replaces what is not printable in a name from the wire, for errors.
func msPrintable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, s)
}

// msPeerState is where the peer's side of MSCHAPv2 stands.
type msPeerState int

const (
	msPeerWaitChallenge msPeerState = iota
	msPeerWaitSuccess               // the Response is sent
	msPeerSucceeded                 // the authenticator response checked out
	msPeerFailed
)

// msPeer is the peer's side of EAP-MSCHAPv2.
type msPeer struct {
	username string
	password []byte
	rand     io.Reader
	state    msPeerState
	keys     msKeys
}

// NewMSCHAPv2Peer returns the peer's side of EAP-MSCHAPv2 for username (sent as it
// is, "DOMAIN\user" included, at most 253 octets) and password (UTF-8, at most 256
// characters; the method keeps a copy and wipes it on Close). rand gives the peer
// challenge. Password change and retries are not supported: a Failure request ends
// the method.
func NewMSCHAPv2Peer(username string, password []byte, rand io.Reader) PeerMethod {
	return &msPeer{username: username, password: append([]byte(nil), password...), rand: rand}
}

func (m *msPeer) Type() Type { return TypeMSCHAPv2 }

// Respond answers the Challenge with the Response, a Success request whose
// authenticator response checks out with a Success response, and a Failure request
// with a Failure response (the method has then failed, the authenticator's
// EAP-Failure follows).
func (m *msPeer) Respond(req []byte) ([]byte, error) {
	if len(req) < msHeaderLen {
		m.state = msPeerFailed
		return nil, fmt.Errorf("mschapv2: request of %d octets, shorter than the header", len(req))
	}
	op, id, body := req[0], req[1], req[msHeaderLen:]
	switch {
	case op == msOpChallenge && m.state == msPeerWaitChallenge:
		return m.answerChallenge(id, body)
	case op == msOpSuccess && m.state == msPeerWaitSuccess:
		return m.answerSuccess(body)
	case op == msOpFailure && m.state == msPeerWaitSuccess:
		m.state = msPeerFailed
		return []byte{msOpFailure}, nil
	}
	m.state = msPeerFailed
	return nil, fmt.Errorf("mschapv2: unexpected OpCode %d", op)
}

func (m *msPeer) answerChallenge(id byte, body []byte) ([]byte, error) {
	m.state = msPeerFailed // until the Response is built
	if len(body) < 1+msChallengeLen || body[0] != msChallengeLen {
		return nil, errors.New("mschapv2: malformed Challenge")
	}
	if len(m.username) > maxIdentity {
		return nil, fmt.Errorf("mschapv2: user name of %d octets, more than %d", len(m.username), maxIdentity)
	}
	var peerChallenge [msChallengeLen]byte
	if _, err := io.ReadFull(m.rand, peerChallenge[:]); err != nil {
		return nil, fmt.Errorf("mschapv2: peer challenge: %w", err)
	}
	k, err := msCompute(m.password, body[1:1+msChallengeLen], peerChallenge[:], m.username)
	if err != nil {
		return nil, fmt.Errorf("mschapv2: %w", err)
	}
	m.keys = k
	var reserved [8]byte
	resp := msPacket(msOpResponse, id, []byte{msResponseValueLen}, peerChallenge[:], reserved[:],
		k.ntResponse[:], []byte{0}, []byte(m.username))
	m.state = msPeerWaitSuccess
	return resp, nil
}

// answerSuccess checks the Success request's message, "S=<authenticator response>"
// and optionally " M=<text>" (strongSwan ends it with a NUL octet).
func (m *msPeer) answerSuccess(msg []byte) ([]byte, error) {
	m.state = msPeerFailed
	const n = 2 + 2*msAuthResponseLen
	if len(msg) < n || string(msg[:2]) != "S=" || (len(msg) > n && msg[n] != ' ' && msg[n] != 0) {
		return nil, errors.New("mschapv2: Success request without an authenticator response")
	}
	var got [msAuthResponseLen]byte
	if _, err := hex.Decode(got[:], msg[2:n]); err != nil {
		return nil, errors.New("mschapv2: Success request with a malformed authenticator response")
	}
	if subtle.ConstantTimeCompare(got[:], m.keys.authResp[:]) != 1 {
		return nil, errors.New("mschapv2: wrong authenticator response: the server does not know the password")
	}
	m.state = msPeerSucceeded
	return []byte{msOpSuccess}, nil
}

func (m *msPeer) Succeeded() bool { return m.state == msPeerSucceeded }

func (m *msPeer) MSK() []byte {
	if m.state != msPeerSucceeded {
		return nil
	}
	return append([]byte(nil), m.keys.msk...)
}

func (m *msPeer) Close() {
	clear(m.password)
	clear(m.keys.msk)
	m.keys = msKeys{}
	m.state = msPeerFailed
}

// msServerState is where the authenticator's side of MSCHAPv2 stands.
type msServerState int

const (
	msServerNew          msServerState = iota
	msServerWaitResponse               // the Challenge is sent
	msServerWaitSuccess                // the Success request is sent
	msServerWaitFailure                // the Failure request is sent
	msServerDone
)

// msServer is the authenticator's side of EAP-MSCHAPv2.
type msServer struct {
	name      string
	password  func(user string) ([]byte, bool)
	rand      io.Reader
	state     msServerState
	id        byte
	challenge [msChallengeLen]byte
	user      string
	msk       []byte
	ok        bool
	failErr   error
}

// NewMSCHAPv2Server returns the authenticator's side of EAP-MSCHAPv2. name is sent in
// the Challenge (at most 253 octets; empty means "mobikevpn"). password returns the
// password (UTF-8) of the user named in the peer's Response, as sent ("DOMAIN\user"
// included); ok false means the user is unknown. The method does not keep or wipe
// what password returns. rand gives the challenges. A wrong password or an unknown
// user get the same Failure request (E=691, no retry), then the method fails.
// The name the peer authenticated is AuthenticatedName (see NameAuthenticator).
func NewMSCHAPv2Server(name string, password func(user string) ([]byte, bool), rand io.Reader) ServerMethod {
	if name == "" {
		name = msDefaultName
	}
	return &msServer{name: name, password: password, rand: rand}
}

func (m *msServer) Type() Type { return TypeMSCHAPv2 }

// Start returns the Challenge: a random MS-CHAPv2-ID, 16 random octets and the name.
func (m *msServer) Start(identity string) ([]byte, error) {
	if m.state != msServerNew {
		return nil, errors.New("mschapv2: started twice")
	}
	if len(m.name) > maxIdentity {
		return nil, fmt.Errorf("mschapv2: server name of %d octets, more than %d", len(m.name), maxIdentity)
	}
	var id [1]byte
	if _, err := io.ReadFull(m.rand, id[:]); err != nil {
		return nil, fmt.Errorf("mschapv2: identifier: %w", err)
	}
	if _, err := io.ReadFull(m.rand, m.challenge[:]); err != nil {
		return nil, fmt.Errorf("mschapv2: challenge: %w", err)
	}
	m.id = id[0]
	m.state = msServerWaitResponse
	return msPacket(msOpChallenge, m.id, []byte{msChallengeLen}, m.challenge[:], []byte(m.name)), nil
}

// Next takes the peer's Response (answered with a Success or a Failure request), its
// Success response (done, success) or its Failure response (done, failure).
func (m *msServer) Next(resp []byte) ([]byte, bool, error) {
	if m.state == msServerNew || m.state == msServerDone {
		return nil, true, errors.New("mschapv2: no request outstanding")
	}
	if len(resp) < 1 {
		return m.end(errors.New("mschapv2: empty response"))
	}
	op := resp[0]
	switch {
	case m.state == msServerWaitResponse && op == msOpResponse:
		return m.checkResponse(resp)
	case m.state == msServerWaitSuccess && op == msOpSuccess:
		m.ok = true
		return m.end(nil)
	case m.state == msServerWaitFailure:
		return m.end(m.failErr)
	case op == msOpFailure:
		return m.end(errors.New("mschapv2: the peer gave up"))
	}
	return m.end(fmt.Errorf("mschapv2: unexpected OpCode %d", op))
}

// end finishes the method: success when err is nil and the peer authenticated.
func (m *msServer) end(err error) ([]byte, bool, error) {
	if err == nil && !m.ok {
		err = errors.New("mschapv2: not authenticated")
	}
	if err != nil {
		m.ok = false
		clear(m.msk)
		m.msk = nil
	}
	m.state = msServerDone
	return nil, true, err
}

// checkResponse checks the NT-Response of the peer's Response.
func (m *msServer) checkResponse(resp []byte) ([]byte, bool, error) {
	const nameAt = msHeaderLen + 1 + msResponseValueLen
	if len(resp) < nameAt || resp[msHeaderLen] != msResponseValueLen {
		return m.end(errors.New("mschapv2: malformed Response"))
	}
	name := resp[nameAt:]
	if len(name) > maxIdentity {
		return m.end(fmt.Errorf("mschapv2: user name of %d octets, more than %d", len(name), maxIdentity))
	}
	value := resp[msHeaderLen+1 : nameAt]
	peerChallenge, ntResponse := value[:msChallengeLen], value[msChallengeLen+8:msChallengeLen+8+msNTResponseLen]
	user := string(name)
	var password []byte
	known := false
	if m.password != nil && user != "" {
		password, known = m.password(user)
	}
	if !known {
		password = nil // compute all the same, so that an unknown user takes as long
	}
	k, err := msCompute(password, m.challenge[:], peerChallenge, user)
	if err != nil {
		clear(k.msk)
		return m.fail(fmt.Errorf("mschapv2: the password of user %s is unusable: %w", msPrintable(user), err))
	}
	match := subtle.ConstantTimeCompare(k.ntResponse[:], ntResponse) == 1
	switch {
	case !known:
		clear(k.msk)
		return m.fail(fmt.Errorf("mschapv2: unknown user %s", msPrintable(user)))
	case !match:
		clear(k.msk)
		return m.fail(fmt.Errorf("mschapv2: wrong password for user %s", msPrintable(user)))
	}
	m.user, m.msk = user, k.msk
	msg := "S=" + strings.ToUpper(hex.EncodeToString(k.authResp[:])) + " M=Welcome"
	m.state = msServerWaitSuccess
	return msPacket(msOpSuccess, m.id, []byte(msg)), false, nil
}

// fail sends the Failure request (the same for every reason, so that it tells nothing
// about which users exist) and remembers why, for the end.
func (m *msServer) fail(why error) ([]byte, bool, error) {
	var challenge [msChallengeLen]byte
	if _, err := io.ReadFull(m.rand, challenge[:]); err != nil {
		return m.end(fmt.Errorf("%w (and no challenge for the Failure request: %v)", why, err))
	}
	msg := "E=691 R=0 C=" + strings.ToUpper(hex.EncodeToString(challenge[:])) + " V=3 M=Authentication failed"
	m.failErr = why
	m.state = msServerWaitFailure
	return msPacket(msOpFailure, m.id, []byte(msg)), false, nil
}

func (m *msServer) MSK() []byte {
	if !m.ok {
		return nil
	}
	return append([]byte(nil), m.msk...)
}

// AuthenticatedName is the user name of the peer's Response, as sent, once the
// method succeeded ("" before).
func (m *msServer) AuthenticatedName() string {
	if !m.ok {
		return ""
	}
	return m.user
}

func (m *msServer) Close() {
	clear(m.msk)
	m.msk = nil
	m.ok = false
	m.state = msServerDone
}
