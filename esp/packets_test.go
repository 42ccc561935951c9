package esp

import (
	"encoding/binary"
	"net/netip"
)

// ipv4Packet builds an IPv4 packet of protocol proto with a valid header checksum;
// for UDP and TCP the payload is preceded by the ports (and a UDP length).
func ipv4Packet(src, dst string, proto uint8, sport, dport uint16, payload []byte) []byte {
	l4 := l4Header(proto, sport, dport, payload)
	p := make([]byte, 20, 20+len(l4))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(20+len(l4)))
	binary.BigEndian.PutUint16(p[4:], 0x1234)
	p[8] = 64
	p[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(p[10:], ^uint16(sum))
	return append(p, l4...)
}

// ipv6Packet builds an IPv6 packet like ipv4Packet.
func ipv6Packet(src, dst string, proto uint8, sport, dport uint16, payload []byte) []byte {
	l4 := l4Header(proto, sport, dport, payload)
	p := make([]byte, 40, 40+len(l4))
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], uint16(len(l4)))
	p[6] = proto
	p[7] = 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(p[8:], s[:])
	copy(p[24:], d[:])
	return append(p, l4...)
}

func l4Header(proto uint8, sport, dport uint16, payload []byte) []byte {
	switch proto {
	case protoUDP:
		h := make([]byte, 8, 8+len(payload))
		binary.BigEndian.PutUint16(h[0:], sport)
		binary.BigEndian.PutUint16(h[2:], dport)
		binary.BigEndian.PutUint16(h[4:], uint16(8+len(payload)))
		return append(h, payload...)
	case protoTCP:
		h := make([]byte, 20, 20+len(payload))
		binary.BigEndian.PutUint16(h[0:], sport)
		binary.BigEndian.PutUint16(h[2:], dport)
		h[12] = 5 << 4
		return append(h, payload...)
	case protoICMP, protoICMPv6:
		// sport carries type<<8|code.
		h := []byte{byte(sport >> 8), byte(sport), 0, 0, 0, 1, 0, 1}
		return append(h, payload...)
	}
	return append([]byte(nil), payload...)
}
