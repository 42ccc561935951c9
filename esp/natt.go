package esp

// UDP encapsulation (RFC 3948): on the NAT-T port a datagram is a NAT keepalive (one
// 0xFF byte), an IKE message behind the 4-byte non-ESP marker (zeros, where ESP has
// its SPI, which is never zero), or ESP. These two functions are the only place that
// knows the framing; the load generator uses them too.

// NATTKind is what a datagram on the NAT-T port carries.
type NATTKind int

// The kinds of NAT-T datagrams.
const (
	NATTESP       NATTKind = iota // ESP, or too short to be anything (ESP's checks drop it)
	NATTIKE                       // IKE behind the non-ESP marker
	NATTKeepalive                 // a NAT keepalive
)

// SplitNATT says what the NAT-T datagram p carries; for IKE it also returns the
// message without the marker (a subslice of p).
func SplitNATT(p []byte) (NATTKind, []byte) {
	switch {
	case len(p) == 1 && p[0] == 0xff:
		return NATTKeepalive, nil
	case len(p) >= 4 && p[0]|p[1]|p[2]|p[3] == 0:
		return NATTIKE, p[4:]
	}
	return NATTESP, nil
}

// FrameIKE returns the IKE message pkt behind the non-ESP marker, for the NAT-T port.
func FrameIKE(pkt []byte) []byte {
	b := make([]byte, 4+len(pkt))
	copy(b[4:], pkt)
	return b
}
