package radius

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"testing"
)

// A known answer from FreeRADIUS 3.2.1 (captured on loopback during TestFreeRADIUS):
// the last Access-Request's authenticator and the Access-Accept that ended an
// EAP-MSCHAPv2 conversation for alice (password "wonderland"), shared secret
// "fr-Secret-123", with the NT-Response the peer had sent.
const (
	kaSecret   = "fr-Secret-123"
	kaPassword = "wonderland"
	kaReqAuth  = "5f3c7297cf3c9d3d89e789a47a645c7e"
	kaNTResp   = "7f3a0703abce6b55c790a32ca6cc48222f03dff80cd22354"
	kaAccept   = "0282009f005d64bdc649d82bc5878d1ba58752be1a0c000001370706000000011a0c000001370806000000061a2a00000137102481520619ea2e083aea715b52ccd67d54aff3ede6c8d0806a227e0ed7e75da2598acf1a2a0000013711248fb3afec15f805fa70c0ad326197d42d3efbd44686a89ccd43287d09643c9b1184c14f0603030004501275b5b051080be838658706a9ddad9e1e0107616c696365"
	// The Access-Challenge to the first request of the same run (authenticator below).
	kaReqAuth1  = "82f5d3ca43b92536812017dac89f1b2f"
	kaChallenge = "0b800064af5939fe5b3d1d54d21238b0fad243c04f2c0102002a1a01020025107bb1be7a3c46e01df020f2d2408ca949667265657261646975732d332e322e3150128747b9108bdfa12f6eb2815429478e151812c1bd772ec1bf6dea1329362bf6dd12be"
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// parseVerified runs an answer through what the client does with a datagram.
func parseVerified(d, reqAuth, secret []byte) (Answer, error) {
	pkt, err := header(d)
	if err != nil {
		return Answer{}, err
	}
	attrs, err := verifyAnswer(pkt, reqAuth, secret)
	if err != nil {
		return Answer{}, err
	}
	return answerOf(Code(pkt[0]), attrs, reqAuth, secret)
}

// TestKnownAnswerFreeRADIUS: FreeRADIUS's own Access-Accept verifies, and its
// MS-MPPE keys give the MSK that RFC 3079 derives from the password and the
// NT-Response, as strongSwan's eap-mschapv2 builds it on the client's side.
func TestKnownAnswerFreeRADIUS(t *testing.T) {
	a, err := parseVerified(unhex(kaAccept), unhex(kaReqAuth), []byte(kaSecret))
	if err != nil {
		t.Fatal(err)
	}
	want := mschapv2MSK(kaPassword, unhex(kaNTResp))
	if a.Code != AccessAccept || !bytes.Equal(a.EAP, []byte{3, 3, 0, 4}) || !bytes.Equal(a.MSK, want) {
		t.Errorf("%v EAP %x MSK\n%x, want\n%x", a.Code, a.EAP, a.MSK, want)
	}
	c, err := parseVerified(unhex(kaChallenge), unhex(kaReqAuth1), []byte(kaSecret))
	if err != nil || c.Code != AccessChallenge || len(c.State) != 16 || len(c.EAP) != 42 || c.EAP[4] != 26 {
		t.Errorf("challenge: %v State %x EAP %x, %v", c.Code, c.State, c.EAP, err)
	}
	// The wrong request or secret: no.
	if _, err := parseVerified(unhex(kaAccept), unhex(kaReqAuth1), []byte(kaSecret)); err == nil {
		t.Error("verified against another request's authenticator")
	}
	if _, err := parseVerified(unhex(kaAccept), unhex(kaReqAuth), []byte("fr-Secret-124")); err == nil {
		t.Error("verified with another secret")
	}
}

// TestMPPEKeyRoundTrip: keys encrypted by the test's own RFC 2548 code decrypt,
// whatever their length, and a wrong length octet or size is refused.
func TestMPPEKeyRoundTrip(t *testing.T) {
	reqAuth, secret := bytes.Repeat([]byte{7}, 16), []byte("secret")
	for _, n := range []int{1, 15, 16, 31, 32, 64, 100} {
		key := bytes.Repeat([]byte{byte(n)}, n)
		v := mppeAttr(16, key, reqAuth, secret, 0x4321).val
		got, err := decryptMPPEKey(v[6:], reqAuth, secret)
		if err != nil || !bytes.Equal(got, key) {
			t.Errorf("%d octets: %x, %v", n, got, err)
		}
	}
	v := mppeAttr(16, make([]byte, 16), reqAuth, secret, 1).val[6:]
	for name, bad := range map[string][]byte{"empty": {}, "salt only": v[:2], "not a multiple of 16": v[:len(v)-1]} {
		if _, err := decryptMPPEKey(bad, reqAuth, secret); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Length octet 0 and 32 (in 31 octets after it).
	for _, l := range []byte{0, 32} {
		w := bytes.Clone(v)
		w[2] ^= 16 ^ l
		if _, err := decryptMPPEKey(w, reqAuth, secret); !errors.Is(err, ErrMalformed) {
			t.Errorf("length octet %d: %v", l, err)
		}
	}
}

func TestParseAttributes(t *testing.T) {
	for _, bad := range [][]byte{{1}, {1, 0}, {1, 1}, {1, 3}, {1, 2, 1}, {1, 4, 0}} {
		if _, err := parseAttributes(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%x: %v", bad, err)
		}
	}
	as, err := parseAttributes([]byte{1, 2, 79, 4, 9, 9})
	if err != nil || len(as) != 2 || len(as[0].Value) != 0 || !bytes.Equal(as[1].Value, []byte{9, 9}) {
		t.Errorf("%v, %v", as, err)
	}
	// Octets beyond Length are padding; a Length beyond the datagram is not.
	d := append(unhex(kaAccept), 0xff, 0xff)
	if _, err := parseVerified(d, unhex(kaReqAuth), []byte(kaSecret)); err != nil {
		t.Errorf("with padding: %v", err)
	}
	if _, err := header(unhex(kaAccept)[:100]); !errors.Is(err, ErrMalformed) {
		t.Errorf("truncated: %v", err)
	}
}

// resign gives a packet a valid Message-Authenticator (if it has one of 16 octets)
// and Response Authenticator, as a server would.
func resign(pkt, reqAuth, secret []byte) []byte {
	b := bytes.Clone(pkt)
	copy(b[4:20], reqAuth)
	ma := -1
	for i := 20; i+2 <= len(b) && b[i+1] >= 2 && i+int(b[i+1]) <= len(b); i += int(b[i+1]) {
		if b[i] == 80 && b[i+1] == 18 && ma < 0 {
			ma = i + 2
			clear(b[ma : ma+16])
		}
	}
	if ma >= 0 {
		h := hmac.New(md5.New, secret)
		h.Write(b)
		copy(b[ma:], h.Sum(nil))
	}
	sum := md5.Sum(append(bytes.Clone(b), secret...))
	copy(b[4:20], sum[:])
	return b
}

// FuzzAnswer: no input makes the parser panic or accept what it must not; the seed
// corpus runs in every `go test`.
func FuzzAnswer(f *testing.F) {
	reqAuth, secret := unhex(kaReqAuth), []byte(kaSecret)
	f.Add(unhex(kaAccept))
	f.Add(unhex(kaChallenge))
	f.Add(unhex(kaAccept)[:40])
	f.Add([]byte{})
	f.Add([]byte{2, 0, 0, 20, 1, 2, 3})
	own := testAnswer(2, 5, reqAuth, secret, []tattr{{79, []byte{3, 1, 0, 4}},
		mppeAttr(16, make([]byte, 32), reqAuth, secret, 1), mppeAttr(17, make([]byte, 32), reqAuth, secret, 2),
		{26, []byte{0, 0, 1, 55, 16, 2, 17, 3, 1}}, {26, []byte{0, 0, 1}}, {18, []byte("hi")}, {24, nil}}, false)
	f.Add(own)
	f.Fuzz(func(t *testing.T, d []byte) {
		if len(d) > maxPacket+64 {
			return // a packet is cut to its Length (at most 4096): longer inputs only slow the fuzzer
		}
		a, err := parseVerified(d, reqAuth, secret)
		if err == nil && a.Code != AccessAccept && a.Code != AccessChallenge && a.Code != AccessReject {
			t.Fatalf("accepted %v", a.Code)
		}
		pkt, err := header(d)
		if err != nil {
			return
		}
		if attrs, err := parseAttributes(pkt[headerLen:]); err == nil {
			a, _ := answerOf(AccessAccept, attrs, reqAuth, secret)
			if a.MSK != nil && len(a.MSK) < minMSKLen {
				t.Fatalf("MSK of %d octets", len(a.MSK))
			}
		}
		// Signed properly, it verifies exactly when it is well formed.
		s := resign(pkt, reqAuth, secret)
		_, verr := verifyAnswer(s, reqAuth, secret)
		attrs, perr := parseAttributes(s[headerLen:])
		code := Code(s[0])
		mas := 0
		for _, at := range attrs {
			if at.Type == attrMessageAuthenticator {
				mas++
				if len(at.Value) != authLen {
					mas = 99
				}
			}
		}
		ok := perr == nil && mas == 1 && (code == AccessAccept || code == AccessChallenge || code == AccessReject)
		if ok != (verr == nil) {
			t.Fatalf("well formed %v, verified: %v", ok, verr)
		}
		if len(d) >= 2+authLen {
			decryptMPPEKey(d[:2+authLen*((len(d)-2)/authLen)], reqAuth, secret)
		}
	})
}
