package integration

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	be "encoding/binary"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/wire"
)

// udpsend sends datagrams from ns (local port lport) to dst and returns the replies
// ("-" where none came).
func (l *lab) udpsend(ns string, lport int, dst string, datagrams ...[]byte) []string {
	l.t.Helper()
	self, _ := os.Executable()
	args := []string{"netns", "exec", ns, self, strconv.Itoa(lport), dst}
	for _, d := range datagrams {
		args = append(args, hex.EncodeToString(d))
	}
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(), "MOBIKEVPN_HELPER=udpsend")
	out, err := cmd.CombinedOutput()
	if err != nil {
		l.t.Fatalf("udpsend: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

// espKey is one direction of a Child SA from the key log.
type espKey struct {
	spi  uint32
	key  []byte // AES-GCM key and 4-byte salt
	from string
}

func readESPKeys(t *testing.T, dir string) []espKey {
	b, err := os.ReadFile(filepath.Join(dir, "esp_sa"))
	if err != nil {
		t.Fatal(err)
	}
	var out []espKey
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Split(line, ",")
		spi, _ := strconv.ParseUint(strings.Trim(f[3], `"`)[2:], 16, 32)
		key, _ := hex.DecodeString(strings.Trim(f[5], `"`)[2:])
		out = append(out, espKey{spi: uint32(spi), key: key, from: strings.Trim(f[1], `"`)})
	}
	return out
}

// sealESP builds an AES-GCM ESP packet (RFC 4106) carrying inner.
func sealESP(k espKey, seq uint32, inner []byte) []byte {
	block, _ := aes.NewCipher(k.key[:len(k.key)-4])
	gcm, _ := cipher.NewGCM(block)
	salt := k.key[len(k.key)-4:]
	var hdr [16]byte
	be.BigEndian.PutUint32(hdr[0:], k.spi)
	be.BigEndian.PutUint32(hdr[4:], seq)
	be.BigEndian.PutUint64(hdr[8:], uint64(seq)) // IV
	pt := append([]byte(nil), inner...)
	pad := (4 - (len(pt)+2)%4) % 4
	for i := 1; i <= pad; i++ {
		pt = append(pt, byte(i))
	}
	pt = append(pt, byte(pad), 4) // IPv4 inside
	nonce := append(append([]byte(nil), salt...), hdr[8:16]...)
	return gcm.Seal(hdr[:], nonce, pt, hdr[:8])
}

// icmpEcho is an IPv4 ICMP echo request from src to dst.
func icmpEcho(src, dst [4]byte) []byte {
	p := make([]byte, 28)
	p[0], p[2], p[3], p[8], p[9] = 0x45, 0, 28, 64, 1
	copy(p[12:], src[:])
	copy(p[16:], dst[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(be.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	be.BigEndian.PutUint16(p[10:], ^uint16(sum))
	p[20] = 8 // echo request
	return p
}

// The malformed-input catalogue: every kind of bad datagram against a running gateway
// is dropped or answered as RFC 7296 says, counted by reason in `status --json`, and
// the tunnel goes on.
func TestMalformedInputCatalogue(t *testing.T) {
	l := newTunnelLab(t)
	keys := filepath.Join(l.dir, "keys")
	l.gwCfg, l.clCfg = filepath.Join(l.dir, "gw.yaml"), filepath.Join(l.dir, "cl.yaml")
	writeFile(t, l.gwCfg, l.gatewayConfig(""))
	writeFile(t, l.clCfg, "keylog: "+keys+"\n"+l.clientConfig("198.51.100.1", ""))
	gw, cl := l.runDaemons()
	// Capture one real ESP packet from the client, to replay it later.
	pcap := filepath.Join(l.dir, "esp.pcap")
	dump := l.start("tcpdump", l.rt, "tcpdump", "--immediate-mode", "-Z", "root", "-i", "eth1", "-U", "-w", pcap, "udp dst port 4500 and greater 60")
	time.Sleep(500 * time.Millisecond)
	l.up(cl, gw)
	l.ping(l.cl, "198.18.0.1", 5)
	dump.signal(syscall.SIGINT)
	dump.wait(5 * time.Second)
	captured := firstESP(t, pcap)

	var toGW espKey
	for _, k := range readESPKeys(t, keys) {
		if k.from == "192.0.2.10" {
			toGW = k
		}
	}
	seq := uint32(status(t, l.gwSock).IKESAs[0].ChildSAs[0].PacketsIn + 100)

	// IKE port 500.
	hdr := wire.Header{SPIi: 0x1122334455667788, Version: wire.Version, Exchange: wire.IKE_SA_INIT, Flags: wire.FlagInitiator}
	longHdr := hdr
	longHdr.Length = 2000
	ikev1 := hdr
	ikev1.Version = 0x10
	unknownSPI := wire.Header{SPIi: 1, SPIr: 2, Version: wire.Version, Exchange: wire.INFORMATIONAL, Flags: wire.FlagInitiator, Length: 28 + 4 + 20}
	absurd := &wire.SA{}
	for i := 0; i < 40; i++ {
		p := wire.Proposal{Num: uint8(i + 1), Protocol: wire.ProtoIKE}
		for j := 0; j < 20; j++ {
			p.Transforms = append(p.Transforms, wire.Transform{Type: wire.TransformENCR, ID: uint16(1000 + j)})
		}
		absurd.Proposals = append(absurd.Proposals, p)
	}
	ke := &wire.KE{Group: wire.DH_X25519, Data: bytes.Repeat([]byte{9}, 32)}
	nonce := &wire.Nonce{Data: bytes.Repeat([]byte{1}, 32)}
	msg := func(ps ...wire.Payload) []byte { m := wire.Message{Header: hdr, Payloads: ps}; return m.Append(nil) }
	zeroLen := msg(absurd, ke, nonce)
	be.BigEndian.PutUint16(zeroLen[28+2:], 0) // first payload's length 0
	replies := l.udpsend(l.cl, 5500, "198.51.100.1:500",
		[]byte("truncated!"),   // shorter than a header
		longHdr.Append(nil),    // Length beyond the datagram
		ikev1.Append(nil)[:28], // IKEv1
		zeroLen,                // payload length 0
		append(unknownSPI.Append(nil), bytes.Repeat([]byte{0}, 24)...), // SK for no SA
		msg(absurd, ke, nonce), // nothing we support
		msg(&wire.SA{Proposals: absurd.Proposals[:1]}, ke, nonce, &wire.Unknown{PayloadType: 211, Critical: true, Body: []byte{1}}),
		bytes.Repeat([]byte{0xee}, 8000), // big garbage
	)
	reply := func(i int) *wire.Message {
		if replies[i] == "-" {
			return nil
		}
		b, _ := hex.DecodeString(replies[i])
		m, err := wire.ParseMessage(b)
		if err != nil {
			t.Errorf("reply %d does not parse: %v", i, err)
			return nil
		}
		return m
	}
	for _, i := range []int{0, 1, 2, 3, 4, 7} {
		if replies[i] != "-" {
			t.Errorf("datagram %d was answered: %s", i, replies[i])
		}
	}
	if m := reply(5); m == nil || wire.FindNotify(m.Payloads, wire.NO_PROPOSAL_CHOSEN) == nil {
		t.Errorf("absurd proposals: reply %v", m)
	}
	if m := reply(6); m == nil || wire.FindNotify(m.Payloads, wire.UNSUPPORTED_CRITICAL_PAYLOAD) == nil {
		t.Errorf("unknown critical payload: reply %v", m)
	}

	// NAT-T port 4500.
	badICV := sealESP(toGW, seq, icmpEcho([4]byte{198, 18, 100, 1}, [4]byte{198, 18, 0, 1}))
	badICV[len(badICV)-1] ^= 1
	outside := sealESP(toGW, seq+1, icmpEcho([4]byte{10, 9, 9, 9}, [4]byte{198, 18, 0, 1}))
	l.udpsend(l.cl, 5501, "198.51.100.1:4500",
		[]byte{0xff},    // NAT keepalive
		[]byte{1, 2, 3}, // too short for ESP
		append([]byte{0, 0, 0, 0}, []byte("not an IKE message at all")...),     // marker + garbage
		append([]byte{0x7f, 0x7f, 0x7f, 0x7f}, bytes.Repeat([]byte{0}, 60)...), // unknown SPI
		badICV,
		outside,
		captured,                          // replayed
		bytes.Repeat([]byte{0x11}, 60000), // a huge datagram (IP-fragmented on the way)
	)
	time.Sleep(300 * time.Millisecond)
	st := status(t, l.gwSock)
	want := map[string]uint64{
		"ike_malformed": 5, "ike_unknown_spi": 1,
		"esp_keepalives_in": 1, "esp_malformed": 1, "esp_unknown_spi": 1, "esp_auth_failed": 1,
		"esp_selector": 1, "esp_replay": 1,
	}
	var table strings.Builder
	for k, v := range want {
		if st.Drops[k] < v {
			t.Errorf("counter %s = %d, want at least %d", k, st.Drops[k], v)
		}
		table.WriteString(k + "=" + strconv.FormatUint(st.Drops[k], 10) + " ")
	}
	// The huge datagram is either cut short by the receive buffer or read whole and
	// refused for its SPI.
	if st.Drops["esp_truncated"]+st.Drops["esp_unknown_spi"] < 2 {
		t.Errorf("the huge datagram was not counted: truncated %d, unknown SPI %d", st.Drops["esp_truncated"], st.Drops["esp_unknown_spi"])
	}
	t.Logf("catalogue counters: %s esp_truncated=%d", table.String(), st.Drops["esp_truncated"])
	// Nothing stuck, nothing leaked: the tunnel works and memory is bounded.
	l.ping(l.cl, "198.18.0.1", 5)
	if st.HalfOpen > 2 || len(st.IKESAs) != 1 {
		t.Errorf("gateway state: %d half-open, %d IKE SAs", st.HalfOpen, len(st.IKESAs))
	}
	if rss := rssKiB(gw.cmd.Process.Pid); rss > 200<<10 {
		t.Errorf("gateway RSS %d KiB", rss)
	}
}

// firstESP returns the UDP payload of the first ESP-in-UDP packet of a capture.
func firstESP(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 24 {
		t.Fatalf("capture: %v", err)
	}
	for off := 24; off+16 <= len(b); {
		incl := int(be.LittleEndian.Uint32(b[off+8:]))
		pkt := b[off+16 : off+16+incl]
		off += 16 + incl
		// Ethernet + IPv4 (IHL) + UDP.
		if len(pkt) < 14+20+8+8 || pkt[12] != 8 || pkt[13] != 0 {
			continue
		}
		ihl := int(pkt[14]&0xf) * 4
		udp := pkt[14+ihl:]
		payload := udp[8:]
		if be.BigEndian.Uint16(udp[2:]) == 4500 && len(payload) > 8 && be.BigEndian.Uint32(payload) != 0 {
			return append([]byte(nil), payload...)
		}
	}
	t.Fatal("no ESP packet in the capture")
	return nil
}
