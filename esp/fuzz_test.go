package esp

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/mobikevpn/mobikevpn/udp"
)

// captureTUN keeps the last batch written.
type captureTUN struct {
	loopTUN
	last [][]byte
}

func (c *captureTUN) Write(bufs [][]byte, offset int) (int, error) {
	c.last = c.last[:0]
	for _, b := range bufs {
		c.last = append(c.last, append([]byte(nil), b[offset:]...))
	}
	return c.loopTUN.Write(bufs, offset)
}

func outcomes(d DropCounters) uint64 {
	return d.Malformed + d.UnknownSPI + d.AuthFailed + d.Replay + d.BadTrailer + d.Dummy + d.Selector + d.NoPolicy +
		d.SeqExhausted + d.Truncated + d.TooBig + d.SendError + d.TUNWrite + d.TUNRead + d.ReadError + d.NoIKEHandler + d.HandQueue + d.Keepalives
}

// FuzzInbound feeds one datagram to the NAT-T socket's receive path of a datapath with
// one inbound SA. With encrypt set, data is taken as the ESP plaintext (inner packet,
// padding, pad length, next header) and sealed with the SA's key first, so that the
// fuzzer reaches the trailer, IP and selector checks. Every datagram has exactly one
// outcome (one drop counter, a keepalive, an IKE message, or one inner packet within
// the selectors), and nothing panics.
func FuzzInbound(f *testing.F) {
	k := testSuites[0].keys
	for _, s := range espStream(f, k, 2, 100) {
		f.Add(s, false)
	}
	f.Add([]byte{0xff}, false)
	f.Add(append([]byte{0, 0, 0, 0}, seqBytes(28)...), false)
	f.Add([]byte{1, 2, 3}, false)
	f.Add(make([]byte, 9000), false)
	inner := ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 1, 2, []byte("abc"))
	f.Add(append(append([]byte(nil), inner...), 1, 2, 3, 3, protoIPv4), true)
	inner6 := ipv6Packet("fd00::2", "fd00:1::1", protoTCP, 1, 2, nil)
	f.Add(append(append([]byte(nil), inner6...), 0, protoIPv6), true)
	f.Add(append(append([]byte(nil), inner6...), 0, protoNoNxt), true)
	f.Add(append(ipv4Packet("10.0.0.9", "10.1.0.1", protoUDP, 1, 2, nil), 0, protoIPv4), true)

	lt := &captureTUN{loopTUN: loopTUN{pkts: make([][]byte, 1)}}
	sc := &sinkConn{local: ap(netip.IPv4Unspecified(), nattPort), batch: 1}
	ikes, ikeLen := 0, 0
	d, err := New(Config{TUN: lt, Conns: []udp.Conn{sc}, MTU: testMTU,
		OnIKE: func(pkt []byte, local, remote netip.AddrPort) {
			ikes++
			ikeLen = len(pkt)
		}})
	must(f, err)
	must(f, d.AddInbound(SAConfig{SPI: 0x1001, Keys: k, LocalTS: netTS,
		RemoteTS: []Selector{ts(0, "10.0.0.2", "10.0.0.2"), ts(protoTCP, "fd00::2", "fd00::2", 1, 100)}}))
	sa := d.in.Load().get(0x1001)
	s := mustSuite(f, k)
	w := d.newInWorker(d.conns[0])
	var scr scratch
	l, r := mustSel(f, netTS...), sa.remote

	f.Fuzz(func(t *testing.T, data []byte, encrypt bool) {
		sa.win.top = 0
		clear(sa.win.blocks)
		dgram := data
		if encrypt {
			if len(data) > 2*testMTU {
				return
			}
			b := make([]byte, 16+len(data)+16)
			copy(b[16:], data)
			n := s.sealRaw(&scr, b, 0x1001, 7, false, binary.BigEndian.AppendUint64(nil, 7), len(data))
			dgram = b[:n]
		}
		before, ikesBefore, writtenBefore := outcomes(d.Drops()), ikes, lt.written
		if err := w.step(func(msgs []udp.Message) int {
			m := &msgs[0]
			m.N = copy(m.Buffer, dgram)
			m.Truncated = len(dgram) > len(m.Buffer)
			return 1
		}); err != nil {
			t.Fatal(err)
		}
		got := outcomes(d.Drops()) - before + uint64(ikes-ikesBefore) + uint64(lt.written-writtenBefore)
		if got != 1 {
			t.Fatalf("%d outcomes for one datagram", got)
		}
		if ikes > ikesBefore && (ikeLen > MaxIKEMessage || ikeLen >= len(dgram)) {
			t.Fatalf("IKE message of %d bytes from a datagram of %d", ikeLen, len(dgram))
		}
		if lt.written > writtenBefore {
			var fl flow
			p := lt.last[0]
			n, ok := fl.parseIP(p, true)
			if !ok || n != len(p) || !matchSrc(r, &fl, true) || !matchDst(l, &fl, true) {
				t.Fatalf("delivered %x outside the selectors", p)
			}
		}
	})
}
