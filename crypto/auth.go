package crypto

import (
	"crypto/sha1"
	"crypto/subtle"
	"net/netip"
)

// pskKeyPad is the pad string of RFC 7296 section 2.15.
const pskKeyPad = "Key Pad for IKEv2"

// SignedOctets returns the octets that an AUTH payload authenticates (RFC 7296
// section 2.15): RealMessage | NonceData(peer) | prf(SK_p, IDx'), where realMessage
// is our IKE_SA_INIT message as sent, peerNonce the peer's nonce data, skp our SK_pi
// (initiator) or SK_pr (responder) and idBody our ID payload body (ID Type, three
// reserved octets, identification data).
func SignedOctets(prf *PRF, realMessage, peerNonce, skp, idBody []byte) []byte {
	mac := prf.Compute(skp, idBody)
	out := make([]byte, 0, len(realMessage)+len(peerNonce)+len(mac))
	return append(append(append(out, realMessage...), peerNonce...), mac...)
}

// PSKAuth returns the AUTH data for a shared key: prf(prf(psk, "Key Pad for IKEv2"),
// signedOctets) (RFC 7296 section 2.15).
func PSKAuth(prf *PRF, psk, signedOctets []byte) []byte {
	return prf.Compute(prf.Compute(psk, []byte(pskKeyPad)), signedOctets)
}

// AuthEqual compares AUTH data (or any MAC) in constant time.
func AuthEqual(a, b []byte) bool {
	return subtle.ConstantTimeCompare(a, b) == 1
}

// NATDetectionHash returns SHA-1(SPIi | SPIr | IP | port), the data of the
// NAT_DETECTION_SOURCE_IP and NAT_DETECTION_DESTINATION_IP notifications (RFC 7296
// section 2.23). IP is 4 octets for IPv4 (an IPv4-mapped IPv6 address counts as
// IPv4) and 16 for IPv6; SPIr is zero in the IKE_SA_INIT request.
func NATDetectionHash(spii, spir uint64, addr netip.AddrPort) []byte {
	h := sha1.New()
	b := make([]byte, 0, 16+16+2)
	b = appendUint64(b, spii)
	b = appendUint64(b, spir)
	ip := addr.Addr().Unmap()
	b = append(b, ip.AsSlice()...)
	b = append(b, byte(addr.Port()>>8), byte(addr.Port()))
	h.Write(b)
	return h.Sum(nil)
}
