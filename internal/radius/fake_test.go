package radius

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
)

// The test's own RADIUS server side, written apart from the package's code: it
// parses requests, checks their Message-Authenticator and builds signed answers,
// with MS-MPPE keys encrypted by its own RFC 2548 implementation.

type tattr struct {
	typ uint8
	val []byte
}

// treq is a request as the fake server received it.
type treq struct {
	code  uint8
	id    uint8
	auth  []byte
	attrs []tattr
	raw   []byte
	from  netip.AddrPort
	reply func(d []byte) // sends an answer later
}

func (r *treq) all(typ uint8) [][]byte {
	var vs [][]byte
	for _, a := range r.attrs {
		if a.typ == typ {
			vs = append(vs, a.val)
		}
	}
	return vs
}

func (r *treq) one(typ uint8) []byte {
	if vs := r.all(typ); len(vs) == 1 {
		return vs[0]
	}
	return nil
}

// parseTestRequest parses a request and checks its Message-Authenticator: HMAC-MD5
// over the packet with the attribute's value zeroed (RFC 3579 3.2).
func parseTestRequest(b []byte, secret []byte) (*treq, error) {
	if len(b) < 20 || int(binary.BigEndian.Uint16(b[2:4])) != len(b) {
		return nil, fmt.Errorf("bad framing (%d octets)", len(b))
	}
	r := &treq{code: b[0], id: b[1], auth: b[4:20], raw: b}
	zeroed := bytes.Clone(b)
	var mac []byte
	for i := 20; i < len(b); {
		if i+2 > len(b) || b[i+1] < 2 || i+int(b[i+1]) > len(b) {
			return nil, fmt.Errorf("bad attribute at %d", i)
		}
		t, v := b[i], b[i+2:i+int(b[i+1])]
		if t == 80 {
			if mac != nil || len(v) != 16 {
				return nil, fmt.Errorf("Message-Authenticator repeated or of %d octets", len(v))
			}
			mac = v
			clear(zeroed[i+2 : i+18])
		}
		r.attrs = append(r.attrs, tattr{t, v})
		i += int(b[i+1])
	}
	if mac == nil {
		return nil, fmt.Errorf("no Message-Authenticator")
	}
	h := hmac.New(md5.New, secret)
	h.Write(zeroed)
	if !hmac.Equal(h.Sum(nil), mac) {
		return nil, fmt.Errorf("wrong Message-Authenticator")
	}
	return r, nil
}

// testAnswer builds a signed answer: Message-Authenticator (unless noMA) computed
// with the Request Authenticator in the header, then the Response Authenticator.
func testAnswer(code uint8, id uint8, reqAuth []byte, secret []byte, attrs []tattr, noMA bool) []byte {
	b := []byte{code, id, 0, 0}
	b = append(b, reqAuth...)
	for _, a := range attrs {
		b = append(b, a.typ, byte(len(a.val)+2))
		b = append(b, a.val...)
	}
	ma := len(b) + 2
	if !noMA {
		b = append(b, 80, 18)
		b = append(b, make([]byte, 16)...)
	}
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	if !noMA {
		h := hmac.New(md5.New, secret)
		h.Write(b)
		copy(b[ma:], h.Sum(nil))
	}
	sum := md5.Sum(append(bytes.Clone(b), secret...))
	copy(b[4:20], sum[:])
	return b
}

// eapAttrs splits an EAP packet into EAP-Message attributes.
func eapAttrs(eap []byte) []tattr {
	var as []tattr
	for len(eap) > 253 {
		as = append(as, tattr{79, eap[:253]})
		eap = eap[253:]
	}
	return append(as, tattr{79, eap})
}

// mppeAttr is a Microsoft Vendor-Specific attribute holding an MS-MPPE key
// (vendor type 16 Send, 17 Recv) encrypted as RFC 2548 2.4.2 says: the plaintext is
// the key's length, the key and zero padding to a multiple of 16; the salt's high
// bit is set.
func mppeAttr(vtype uint8, key, reqAuth, secret []byte, salt uint16) tattr {
	p := append([]byte{byte(len(key))}, key...)
	for len(p)%16 != 0 {
		p = append(p, 0)
	}
	s := []byte{byte(salt>>8) | 0x80, byte(salt)}
	var c []byte
	prev := append(bytes.Clone(reqAuth), s...)
	for i := 0; i < len(p); i += 16 {
		b := md5.Sum(append(bytes.Clone(secret), prev...))
		blk := make([]byte, 16)
		for j := range blk {
			blk[j] = p[i+j] ^ b[j]
		}
		c = append(c, blk...)
		prev = blk
	}
	v := binary.BigEndian.AppendUint32(nil, 311)
	v = append(v, vtype, byte(2+2+len(c)))
	v = append(v, s...)
	v = append(v, c...)
	return tattr{26, v}
}

// fakeServer is a RADIUS server on 127.0.0.1 whose answers a test decides.
type fakeServer struct {
	t      *testing.T
	conn   *net.UDPConn
	secret []byte
	// answer returns the datagrams to send back for a request (nil: silence).
	answer func(r *treq) [][]byte

	mu   sync.Mutex
	reqs []*treq
	errs []error
	done chan struct{}
}

func newFakeServer(t *testing.T, secret string, answer func(r *treq) [][]byte) *fakeServer {
	t.Helper()
	return newFakeServerOn(t, netip.MustParseAddr("127.0.0.1"), secret, answer)
}

func newFakeServerOn(t *testing.T, ip netip.Addr, secret string, answer func(r *treq) [][]byte) *fakeServer {
	t.Helper()
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		t.Skipf("no socket on %v: %v", ip, err)
	}
	f := &fakeServer{t: t, conn: conn, secret: []byte(secret), answer: answer, done: make(chan struct{})}
	go f.serve()
	t.Cleanup(func() {
		conn.Close()
		<-f.done
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, err := range f.errs {
			t.Errorf("fake server %s: %v", f.addr(), err)
		}
	})
	return f
}

func (f *fakeServer) addr() netip.AddrPort { return f.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (f *fakeServer) server() Server { return Server{Addr: f.addr(), Secret: f.secret} }

func (f *fakeServer) serve() {
	defer close(f.done)
	buf := make([]byte, 8192)
	for {
		n, from, err := f.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		r, err := parseTestRequest(bytes.Clone(buf[:n]), f.secret)
		if err == nil && r.code != 1 {
			err = fmt.Errorf("code %d, not Access-Request", r.code)
		}
		f.mu.Lock()
		if err != nil {
			f.errs = append(f.errs, err)
		} else {
			r.from = from
			r.reply = func(d []byte) { f.conn.WriteToUDPAddrPort(d, from) }
			f.reqs = append(f.reqs, r)
		}
		f.mu.Unlock()
		if err != nil || f.answer == nil {
			continue
		}
		for _, d := range f.answer(r) {
			f.conn.WriteToUDPAddrPort(d, from)
		}
	}
}
