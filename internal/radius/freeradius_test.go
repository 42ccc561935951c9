package radius

import (
	"bytes"
	"context"
	"crypto/des"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/mobikevpn/mobikevpn/internal/radius/radiustest"

	//lint:ignore SA1019 MSCHAPv2 (RFC 2759) is built on MD4: the test derives its keys
	"golang.org/x/crypto/md4"
)

// Against a real FreeRADIUS (Debian's freeradius package), as root: EAP-MSCHAPv2
// to the end with the MSK checked against RFC 3079's derivation, EAP-MD5 after a
// Nak, a wrong password, a wrong shared secret.

func needFreeRADIUS(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the FreeRADIUS test runs FreeRADIUS with a private configuration and needs root")
	}
	if _, err := os.Stat(radiustest.Bin); err != nil {
		t.Skipf("FreeRADIUS is not installed (%v): apt-get install freeradius", err)
	}
}

// startTestFreeRADIUS runs FreeRADIUS on 127.0.0.1 and a free port, stopped when
// the test ends (its log printed if the test failed).
func startTestFreeRADIUS(t *testing.T, secret string, users map[string]string) netip.AddrPort {
	t.Helper()
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		addr := pc.LocalAddr().(*net.UDPAddr).AddrPort()
		pc.Close()
		conf := radiustest.Config{Dir: t.TempDir(), Listen: addr, Client: netip.MustParsePrefix("127.0.0.0/8"), Secret: secret, Users: users}
		srv, err := conf.Start(t.Context(), "")
		if err == nil {
			t.Cleanup(func() {
				srv.Stop()
				if t.Failed() {
					t.Logf("FreeRADIUS log:\n%s", srv.Log())
				}
			})
			return addr
		}
		var se *radiustest.StartError
		log := ""
		if errors.As(err, &se) {
			log = se.Log
		}
		if attempt == 2 || !strings.Contains(log, "in use") {
			t.Fatalf("FreeRADIUS did not start: %v\n%s", err, log)
		}
	}
}

// MS-CHAPv2 (RFC 2759) and its keys (RFC 3079), the peer's side, for the test.

func ntHash(pw string) []byte {
	h := md4.New()
	for _, u := range utf16.Encode([]rune(pw)) {
		h.Write([]byte{byte(u), byte(u >> 8)})
	}
	return h.Sum(nil)
}

// desKey spreads 7 octets over 8 DES key octets (parity bits left 0).
func desKey(k []byte) []byte {
	out := make([]byte, 8)
	v := uint64(0)
	for _, b := range k {
		v = v<<8 | uint64(b)
	}
	for i := range 8 {
		out[i] = byte(v>>(49-7*uint(i))) << 1
	}
	return out
}

func ntResponse(authChal, peerChal []byte, user, pw string) []byte {
	h := sha1.New()
	h.Write(peerChal)
	h.Write(authChal)
	h.Write([]byte(user))
	chal := h.Sum(nil)[:8]
	key := append(ntHash(pw), make([]byte, 5)...)
	var resp []byte
	for i := range 3 {
		c, err := des.NewCipher(desKey(key[7*i : 7*i+7]))
		if err != nil {
			panic(err)
		}
		out := make([]byte, 8)
		c.Encrypt(out, chal)
		resp = append(resp, out...)
	}
	return resp
}

// mschapv2MSK is the MSK of EAP-MSCHAPv2 as strongSwan's eap-mschapv2 builds it:
// the server's receive key and send key (RFC 3079 3.4, 128 bits) and 32 zeros.
func mschapv2MSK(pw string, ntResp []byte) []byte {
	const magic1 = "This is the MPPE Master Key"
	const magic2 = "On the client side, this is the send key; on the server side, it is the receive key."
	const magic3 = "On the client side, this is the receive key; on the server side, it is the send key."
	hh := md4.New()
	hh.Write(ntHash(pw))
	m := sha1.Sum(append(append(hh.Sum(nil), ntResp...), magic1...))
	key := func(magic string) []byte {
		h := sha1.New()
		h.Write(m[:16])
		h.Write(make([]byte, 40))
		h.Write([]byte(magic))
		h.Write(bytes.Repeat([]byte{0xf2}, 40))
		return h.Sum(nil)[:16]
	}
	return append(append(key(magic2), key(magic3)...), make([]byte, 32)...)
}

func eapPacket(code, id, typ uint8, data []byte) []byte {
	b := []byte{code, id, 0, 0, typ}
	b = append(b, data...)
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	return b
}

// eapMSCHAPv2 runs EAP-MSCHAPv2 from the Identity to the Access-Accept or -Reject
// and returns the last answer and the NT-Response sent.
func eapMSCHAPv2(t *testing.T, c *Client, user, pw string) (Answer, []byte) {
	t.Helper()
	ctx := context.Background()
	ex := func(eap, state []byte) Answer {
		t.Helper()
		a, err := c.Exchange(ctx, Request{UserName: user, EAP: eap, State: state,
			CallingStationID: "203.0.113.5[4500]", CalledStationID: "198.18.0.1[4500]"})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := ex(eapPacket(2, 1, 1, []byte(user)), nil)
	if a.Code != AccessChallenge || len(a.EAP) < 26 || a.EAP[0] != 1 || a.EAP[4] != 26 || a.EAP[5] != 1 || len(a.State) == 0 {
		t.Fatalf("answer to the Identity: %v EAP %x State %x; want an Access-Challenge with EAP-Request/MSCHAPv2 Challenge and a State", a.Code, a.EAP, a.State)
	}
	eapID, msID, authChal := a.EAP[1], a.EAP[6], a.EAP[10:26]
	peerChal := make([]byte, 16)
	rand.Read(peerChal)
	nt := ntResponse(authChal, peerChal, user, pw)
	resp := []byte{2, msID, 0, 0, 49}
	resp = append(resp, peerChal...)
	resp = append(resp, make([]byte, 8)...)
	resp = append(resp, nt...)
	resp = append(resp, 0)
	resp = append(resp, user...)
	binary.BigEndian.PutUint16(resp[2:4], uint16(len(resp))) // MS-Length: from the OpCode on
	a = ex(eapPacket(2, eapID, 26, resp), a.State)
	if a.Code != AccessChallenge {
		return a, nt
	}
	if len(a.EAP) < 6 || a.EAP[4] != 26 || a.EAP[5] != 3 || !bytes.Contains(a.EAP, []byte("S=")) {
		t.Fatalf("answer to the Response: EAP %x, want MSCHAPv2 Success", a.EAP)
	}
	return ex(eapPacket(2, a.EAP[1], 26, []byte{3}), a.State), nt
}

func TestFreeRADIUS(t *testing.T) {
	needFreeRADIUS(t)
	const secret = "fr-Secret-123"
	users := map[string]string{"alice": "wonderland", "bob": "builder"}
	addr := startTestFreeRADIUS(t, secret, users)
	c := newTestClient(t, Config{Servers: []Server{{Addr: addr, Secret: []byte(secret)}}, Timeout: time.Second, Tries: 2})

	t.Run("mschapv2", func(t *testing.T) {
		a, nt := eapMSCHAPv2(t, c, "alice", "wonderland")
		if a.Code != AccessAccept || len(a.EAP) != 4 || a.EAP[0] != 3 {
			t.Fatalf("got %v EAP %x, want Access-Accept with EAP-Success", a.Code, a.EAP)
		}
		if want := mschapv2MSK("wonderland", nt); !bytes.Equal(a.MSK, want) {
			t.Errorf("MSK\n%x, want (RFC 3079, as strongSwan's eap-mschapv2)\n%x", a.MSK, want)
		}
	})
	t.Run("wrong-password", func(t *testing.T) {
		a, _ := eapMSCHAPv2(t, c, "bob", "wrong")
		if a.Code != AccessReject && !(a.Code == AccessChallenge && len(a.EAP) > 5 && a.EAP[5] == 4) {
			t.Errorf("got %v EAP %x, want Access-Reject or an MSCHAPv2 Failure", a.Code, a.EAP)
		}
		if a.MSK != nil {
			t.Error("MSK without Access-Accept")
		}
	})
	t.Run("md5", func(t *testing.T) {
		ctx := context.Background()
		a, err := c.Exchange(ctx, Request{UserName: "bob", EAP: eapPacket(2, 1, 1, []byte("bob"))})
		if err != nil || a.Code != AccessChallenge || len(a.EAP) < 5 {
			t.Fatalf("%v %x %v", a.Code, a.EAP, err)
		}
		// Nak, asking for MD5-Challenge (type 4).
		a, err = c.Exchange(ctx, Request{UserName: "bob", EAP: eapPacket(2, a.EAP[1], 3, []byte{4}), State: a.State})
		if err != nil || a.Code != AccessChallenge || len(a.EAP) < 6 || a.EAP[4] != 4 || int(a.EAP[5]) > len(a.EAP)-6 {
			t.Fatalf("answer to the Nak: %v %x %v; want an MD5-Challenge", a.Code, a.EAP, err)
		}
		chal := a.EAP[6 : 6+int(a.EAP[5])]
		sum := md5.Sum(append(append([]byte{a.EAP[1]}, "builder"...), chal...))
		a, err = c.Exchange(ctx, Request{UserName: "bob", EAP: eapPacket(2, a.EAP[1], 4, append([]byte{16}, sum[:]...)), State: a.State})
		if err != nil || a.Code != AccessAccept || a.MSK != nil {
			t.Fatalf("got %v MSK %x, %v; want Access-Accept without MSK", a.Code, a.MSK, err)
		}
	})
	t.Run("wrong-secret", func(t *testing.T) {
		bad := newTestClient(t, Config{Servers: []Server{{Addr: addr, Secret: []byte("not-the-secret")}}, Timeout: 300 * time.Millisecond, Tries: 2})
		_, err := bad.Exchange(context.Background(), Request{UserName: "alice", EAP: eapPacket(2, 1, 1, []byte("alice"))})
		if !errors.Is(err, ErrNoAnswer) || !strings.Contains(err.Error(), "2 tries") {
			t.Errorf("error %v, want no valid answer after 2 tries", err)
		}
	})
	if st := c.Stats(); st.Drops != 0 || st.Retransmits != 0 {
		t.Errorf("stats %+v", st)
	}
}
