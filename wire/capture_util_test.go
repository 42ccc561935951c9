package wire

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
)

// hx decodes hex written with spaces, line breaks and "//" comments to the end of a line.
func hx(s string) []byte {
	var sb strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if i := strings.Index(line, "//"); i >= 0 {
			line = line[:i]
		}
		sb.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(sb.String())
	if err != nil {
		panic(fmt.Sprintf("bad hex in test: %v", err))
	}
	return b
}

// udpDatagram is one UDP payload read from a capture.
type udpDatagram struct {
	frame            int // 1-based frame number, as tcpdump prints it
	srcPort, dstPort uint16
	payload          []byte
}

// ikeKind classifies a datagram on the IKE ports.
type ikeKind int

const (
	kindIKE ikeKind = iota
	kindESP
	kindKeepalive
)

// ike returns the IKE message inside d (stripping the non-ESP marker on port 4500), or
// the kind of non-IKE datagram it is.
func (d udpDatagram) ike() ([]byte, ikeKind) {
	if d.srcPort != 4500 && d.dstPort != 4500 {
		return d.payload, kindIKE
	}
	if len(d.payload) == 1 && d.payload[0] == 0xff {
		return nil, kindKeepalive
	}
	if len(d.payload) >= 4 && binary.BigEndian.Uint32(d.payload) == 0 {
		return d.payload[4:], kindIKE
	}
	return nil, kindESP
}

// readUDP returns the UDP datagrams of a pcap or pcapng capture (frames that are not
// UDP over IPv4/IPv6 are skipped; a truncated frame gives what was captured).
func readUDP(t testing.TB, path string) []udpDatagram {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	frames, err := readFrames(raw)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []udpDatagram
	for i, f := range frames {
		if d, ok := frameUDP(f.linkType, f.data); ok {
			d.frame = i + 1
			out = append(out, d)
		}
	}
	return out
}

type frame struct {
	linkType uint32
	data     []byte
}

func readFrames(raw []byte) ([]frame, error) {
	if len(raw) >= 4 && binary.BigEndian.Uint32(raw) == 0x0a0d0d0a {
		return readPcapng(raw)
	}
	return readPcap(raw)
}

func readPcap(raw []byte) ([]frame, error) {
	if len(raw) < 24 {
		return nil, fmt.Errorf("short pcap header")
	}
	var bo binary.ByteOrder
	switch binary.LittleEndian.Uint32(raw) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		bo = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		bo = binary.BigEndian
	default:
		return nil, fmt.Errorf("not a pcap file")
	}
	link := bo.Uint32(raw[20:24])
	var frames []frame
	for b := raw[24:]; len(b) > 0; {
		if len(b) < 16 {
			return nil, fmt.Errorf("truncated record header")
		}
		n := int(bo.Uint32(b[8:12]))
		if n > len(b)-16 {
			return nil, fmt.Errorf("truncated record")
		}
		frames = append(frames, frame{link, b[16 : 16+n]})
		b = b[16+n:]
	}
	return frames, nil
}

func readPcapng(raw []byte) ([]frame, error) {
	var bo binary.ByteOrder = binary.LittleEndian
	var links []uint32
	var frames []frame
	for b := raw; len(b) > 0; {
		if len(b) < 12 {
			return nil, fmt.Errorf("truncated block")
		}
		typ := binary.LittleEndian.Uint32(b[0:4]) // SHB type reads the same both ways
		if typ == 0x0a0d0d0a {
			switch binary.LittleEndian.Uint32(b[8:12]) {
			case 0x1a2b3c4d:
				bo = binary.LittleEndian
			case 0x4d3c2b1a:
				bo = binary.BigEndian
			default:
				return nil, fmt.Errorf("bad byte-order magic")
			}
			links = links[:0]
		} else {
			typ = bo.Uint32(b[0:4])
		}
		n := int(bo.Uint32(b[4:8]))
		if n < 12 || n%4 != 0 || n > len(b) {
			return nil, fmt.Errorf("bad block length %d", n)
		}
		body := b[8 : n-4]
		switch typ {
		case 1: // Interface Description Block
			if len(body) < 8 {
				return nil, fmt.Errorf("short IDB")
			}
			links = append(links, uint32(bo.Uint16(body[0:2])))
		case 6: // Enhanced Packet Block
			if len(body) < 20 {
				return nil, fmt.Errorf("short EPB")
			}
			ifc := int(bo.Uint32(body[0:4]))
			capLen := int(bo.Uint32(body[12:16]))
			if ifc >= len(links) || capLen > len(body)-20 {
				return nil, fmt.Errorf("bad EPB")
			}
			frames = append(frames, frame{links[ifc], body[20 : 20+capLen]})
		case 3: // Simple Packet Block
			if len(links) == 0 || len(body) < 4 {
				return nil, fmt.Errorf("bad SPB")
			}
			capLen := min(int(bo.Uint32(body[0:4])), len(body)-4)
			frames = append(frames, frame{links[0], body[4 : 4+capLen]})
		}
		b = b[n:]
	}
	return frames, nil
}

// frameUDP strips the link, IP and UDP headers.
func frameUDP(link uint32, b []byte) (udpDatagram, bool) {
	switch link {
	case 0: // BSD loopback: 4-octet address family in host order
		if len(b) < 4 {
			return udpDatagram{}, false
		}
		b = b[4:]
	case 1: // Ethernet
		if len(b) < 14 {
			return udpDatagram{}, false
		}
		et := binary.BigEndian.Uint16(b[12:14])
		b = b[14:]
		if et == 0x8100 && len(b) >= 4 {
			et = binary.BigEndian.Uint16(b[2:4])
			b = b[4:]
		}
		if et != 0x0800 && et != 0x86dd {
			return udpDatagram{}, false
		}
	case 12, 101: // raw IP
	case 113: // Linux cooked
		if len(b) < 16 {
			return udpDatagram{}, false
		}
		b = b[16:]
	default:
		return udpDatagram{}, false
	}
	if len(b) < 1 {
		return udpDatagram{}, false
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return udpDatagram{}, false
		}
		ihl := int(b[0]&0x0f) * 4
		if b[9] != 17 || ihl < 20 || len(b) < ihl || binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 {
			return udpDatagram{}, false
		}
		b = b[ihl:]
	case 6:
		if len(b) < 40 || b[6] != 17 {
			return udpDatagram{}, false
		}
		b = b[40:]
	default:
		return udpDatagram{}, false
	}
	if len(b) < 8 {
		return udpDatagram{}, false
	}
	d := udpDatagram{srcPort: binary.BigEndian.Uint16(b[0:2]), dstPort: binary.BigEndian.Uint16(b[2:4])}
	payload := b[8:]
	if ul := int(binary.BigEndian.Uint16(b[4:6])); ul >= 8 && ul-8 < len(payload) {
		payload = payload[:ul-8] // drop link-layer padding
	}
	d.payload = payload
	return d, true
}

// captureMessages returns the IKE messages of the capture files that the tests and the
// fuzz seeds use.
func captureMessages(t testing.TB) [][]byte {
	t.Helper()
	var msgs [][]byte
	for _, f := range []string{"ikev2four.pcap", "ikev2pI2.pcap", "ikev2-id-normal.pcap", "ikev2-id-short.pcap",
		"isakmp4500.pcap", "ikev2pI2-segfault.pcapng", "isakmp-no-none-np.pcapng"} {
		for _, d := range readUDP(t, "testdata/"+f) {
			if m, k := d.ike(); k == kindIKE {
				msgs = append(msgs, m)
			}
		}
	}
	return msgs
}

// rawPayload is one payload of a chain as found on the wire, for seeding body fuzzers.
type rawPayload struct {
	typ  PayloadType
	body []byte
}

// rawChain walks a payload chain without decoding bodies, stopping at the first
// inconsistency.
func rawChain(first PayloadType, b []byte) []rawPayload {
	var out []rawPayload
	for t := first; t != PayloadNone && len(b) >= 4 && len(out) < MaxPayloads; {
		n := int(binary.BigEndian.Uint16(b[2:4]))
		if n < 4 || n > len(b) {
			break
		}
		out = append(out, rawPayload{t, b[4:n]})
		if t == PayloadSK || t == PayloadSKF {
			break
		}
		t = PayloadType(b[0])
		b = b[n:]
	}
	return out
}
