package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Type returns PayloadNotify.
func (*Notify) Type() PayloadType { return PayloadNotify }

// ParseNotify decodes a Notify payload body: Protocol ID (1 octet), SPI Size (1), Notify
// Message Type (2), SPI, notification data. Only the lengths are checked here; the
// typed accessors (Address, Group, ...) check each type's data.
func ParseNotify(body []byte) (*Notify, error) {
	if len(body) < 4 {
		return nil, syntaxErr(PayloadNotify, "body is %d octets, want at least 4", len(body))
	}
	n := &Notify{Protocol: ProtocolID(body[0]), NotifyType: NotifyType(binary.BigEndian.Uint16(body[2:4]))}
	spiSize := int(body[1])
	if spiSize > len(body)-4 {
		return nil, syntaxErr(PayloadNotify, "%s: SPI size %d, %d octets remain", n.NotifyType, spiSize, len(body)-4)
	}
	n.SPI = clone(body[4 : 4+spiSize])
	n.Data = clone(body[4+spiSize:])
	return n, nil
}

// AppendBody appends the Notify payload body. SPI must be at most 255 octets.
func (n *Notify) AppendBody(b []byte) []byte {
	b = append(b, byte(n.Protocol), byte(len(n.SPI)))
	b = binary.BigEndian.AppendUint16(b, uint16(n.NotifyType))
	b = append(b, n.SPI...)
	return append(b, n.Data...)
}

// String returns the notify type followed by its data in hex, e.g. "COOKIE(0011...)".
func (n *Notify) String() string {
	if len(n.Data) == 0 {
		return n.NotifyType.String()
	}
	return fmt.Sprintf("%s(%x)", n.NotifyType, n.Data)
}

// NewNotify returns a notify of type t with no SPI (Protocol ID 0) and the given data.
func NewNotify(t NotifyType, data []byte) *Notify { return &Notify{NotifyType: t, Data: data} }

// NewAddressNotify returns an ADDITIONAL_IP4_ADDRESS, ADDITIONAL_IP6_ADDRESS or
// SWITCH_TO_IP_ADDRESS notify for a: Protocol ID 0, no SPI, and the 4 or 16 octets of
// the address (an IPv4-mapped IPv6 address is written as IPv4).
func NewAddressNotify(t NotifyType, a netip.Addr) *Notify {
	return &Notify{NotifyType: t, Data: a.Unmap().AsSlice()}
}

var errWrongNotify = errors.New("wire: wrong notify type for this accessor")

// Address returns the address carried by an ADDITIONAL_IP4_ADDRESS (exactly 4 octets),
// ADDITIONAL_IP6_ADDRESS (exactly 16) or SWITCH_TO_IP_ADDRESS notify (4 or 16 octets,
// with Protocol ID 0 and no SPI, as draft-smyslov-ipsecme-ikev2-r-mobike 3 requires).
// Any other type or shape gives an INVALID_SYNTAX *Error.
func (n *Notify) Address() (netip.Addr, error) {
	ok := false
	switch n.NotifyType {
	case ADDITIONAL_IP4_ADDRESS:
		ok = len(n.Data) == 4
	case ADDITIONAL_IP6_ADDRESS:
		ok = len(n.Data) == 16
	case SWITCH_TO_IP_ADDRESS:
		ok = (len(n.Data) == 4 || len(n.Data) == 16) && n.Protocol == ProtoNone && len(n.SPI) == 0
	default:
		return netip.Addr{}, syntaxErr(PayloadNotify, "%s carries no address", n.NotifyType)
	}
	if !ok {
		return netip.Addr{}, syntaxErr(PayloadNotify, "%s: %d octets of data, protocol %d, SPI of %d octets",
			n.NotifyType, len(n.Data), n.Protocol, len(n.SPI))
	}
	a, _ := netip.AddrFromSlice(n.Data)
	return a, nil
}

// SwitchAddress returns the address carried by a SWITCH_TO_IP_ADDRESS notify
// (draft-smyslov-ipsecme-ikev2-r-mobike 3): exactly 4 or 16 octets of data, Protocol ID
// 0 and no SPI. The Notify Message Type is not checked, since IANA never assigned one
// and the caller decides which number it uses (a 16-octet IPv4-mapped address is
// returned as it is, Is4In6). Any other shape gives an INVALID_SYNTAX *Error.
func (n *Notify) SwitchAddress() (netip.Addr, error) {
	if (len(n.Data) != 4 && len(n.Data) != 16) || n.Protocol != ProtoNone || len(n.SPI) != 0 {
		return netip.Addr{}, syntaxErr(PayloadNotify,
			"SWITCH_TO_IP_ADDRESS (notify type %d): %d octets of data, protocol %d, SPI of %d octets; want 4 or 16 octets, protocol 0, no SPI",
			uint16(n.NotifyType), len(n.Data), n.Protocol, len(n.SPI))
	}
	a, _ := netip.AddrFromSlice(n.Data)
	return a, nil
}

// NewNoNATsAllowed returns a NO_NATS_ALLOWED notify (RFC 4555 4.2.6) for a message sent
// from src to dst: Protocol ID 0, no SPI, and the source address, destination address,
// source port and destination port, 12 octets for IPv4 and 36 for IPv6. IPv4-mapped IPv6
// addresses are written as IPv4. Should the two addresses still be of different
// families (which the two ends of one datagram never are), both are written in their
// 16-octet form.
func NewNoNATsAllowed(src, dst netip.AddrPort) *Notify {
	sa, da := src.Addr().Unmap(), dst.Addr().Unmap()
	var data []byte
	if sa.Is4() && da.Is4() {
		data = make([]byte, 0, 12)
		data = append(data, sa.AsSlice()...)
		data = append(data, da.AsSlice()...)
	} else {
		s16, d16 := sa.As16(), da.As16()
		data = make([]byte, 0, 36)
		data = append(data, s16[:]...)
		data = append(data, d16[:]...)
	}
	data = binary.BigEndian.AppendUint16(data, src.Port())
	data = binary.BigEndian.AppendUint16(data, dst.Port())
	return &Notify{NotifyType: NO_NATS_ALLOWED, Data: data}
}

// NoNATsAllowed returns the source and destination of a NO_NATS_ALLOWED notify (RFC
// 4555 4.2.6): Protocol ID 0, no SPI, and source address, destination address, source
// port, destination port, 12 octets for IPv4 or 36 for IPv6, so both are of one family
// (16-octet IPv4-mapped addresses are returned as they are, Is4In6). Any other type or
// shape gives an INVALID_SYNTAX *Error.
func (n *Notify) NoNATsAllowed() (src, dst netip.AddrPort, err error) {
	if n.NotifyType != NO_NATS_ALLOWED {
		return src, dst, syntaxErr(PayloadNotify, "%s is not NO_NATS_ALLOWED", n.NotifyType)
	}
	alen := 0
	switch len(n.Data) {
	case 12:
		alen = 4
	case 36:
		alen = 16
	}
	if alen == 0 || n.Protocol != ProtoNone || len(n.SPI) != 0 {
		return src, dst, syntaxErr(PayloadNotify,
			"NO_NATS_ALLOWED: %d octets of data, protocol %d, SPI of %d octets; want 12 (IPv4) or 36 (IPv6) octets, protocol 0, no SPI",
			len(n.Data), n.Protocol, len(n.SPI))
	}
	sa, _ := netip.AddrFromSlice(n.Data[:alen])
	da, _ := netip.AddrFromSlice(n.Data[alen : 2*alen])
	ports := n.Data[2*alen:]
	src = netip.AddrPortFrom(sa, binary.BigEndian.Uint16(ports[0:2]))
	dst = netip.AddrPortFrom(da, binary.BigEndian.Uint16(ports[2:4]))
	return src, dst, nil
}

// NewMOBIKESupported returns a MOBIKE_SUPPORTED notify; with r, its data is the single
// octet 'R' by which an initiator advertises draft-smyslov-ipsecme-ikev2-r-mobike.
func NewMOBIKESupported(r bool) *Notify {
	n := &Notify{NotifyType: MOBIKE_SUPPORTED}
	if r {
		n.Data = []byte{RMOBIKEMarker}
	}
	return n
}

// RMOBIKE reports whether n is a MOBIKE_SUPPORTED notify whose data is exactly the single
// octet 0x52 ('R').
func (n *Notify) RMOBIKE() bool {
	return n.NotifyType == MOBIKE_SUPPORTED && len(n.Data) == 1 && n.Data[0] == RMOBIKEMarker
}

// NewInvalidKE returns an INVALID_KE_PAYLOAD notify naming the accepted group.
func NewInvalidKE(group uint16) *Notify {
	return &Notify{NotifyType: INVALID_KE_PAYLOAD, Data: binary.BigEndian.AppendUint16(nil, group)}
}

// Group returns the group number of an INVALID_KE_PAYLOAD notify (2 octets of data).
func (n *Notify) Group() (uint16, error) {
	if n.NotifyType != INVALID_KE_PAYLOAD {
		return 0, errWrongNotify
	}
	if len(n.Data) != 2 {
		return 0, syntaxErr(PayloadNotify, "INVALID_KE_PAYLOAD data is %d octets, want 2", len(n.Data))
	}
	return binary.BigEndian.Uint16(n.Data), nil
}

// NewSignatureHashAlgorithms returns a SIGNATURE_HASH_ALGORITHMS notify (RFC 7427 4).
func NewSignatureHashAlgorithms(algs ...uint16) *Notify {
	n := &Notify{NotifyType: SIGNATURE_HASH_ALGORITHMS}
	for _, a := range algs {
		n.Data = binary.BigEndian.AppendUint16(n.Data, a)
	}
	return n
}

// SignatureHashAlgorithms returns the 16-bit hash algorithm identifiers of a
// SIGNATURE_HASH_ALGORITHMS notify; the data must be a whole number of them.
func (n *Notify) SignatureHashAlgorithms() ([]uint16, error) {
	if n.NotifyType != SIGNATURE_HASH_ALGORITHMS {
		return nil, errWrongNotify
	}
	if len(n.Data)%2 != 0 {
		return nil, syntaxErr(PayloadNotify, "SIGNATURE_HASH_ALGORITHMS data is %d octets, not a multiple of 2", len(n.Data))
	}
	algs := make([]uint16, 0, len(n.Data)/2)
	for i := 0; i < len(n.Data); i += 2 {
		algs = append(algs, binary.BigEndian.Uint16(n.Data[i:]))
	}
	return algs, nil
}

// Type returns PayloadDelete.
func (*Delete) Type() PayloadType { return PayloadDelete }

// ParseDelete decodes a Delete payload body: Protocol ID (1 octet), SPI Size (1), Num of
// SPIs (2), SPIs. For IKE the SPI size and count are 0 and nothing follows; for ESP and
// AH the SPI size is 4 and exactly Num*4 octets follow. Anything else is INVALID_SYNTAX.
func ParseDelete(body []byte) (*Delete, error) {
	if len(body) < 4 {
		return nil, syntaxErr(PayloadDelete, "body is %d octets, want at least 4", len(body))
	}
	d := &Delete{Protocol: ProtocolID(body[0])}
	spiSize := int(body[1])
	num := int(binary.BigEndian.Uint16(body[2:4]))
	spis := body[4:]
	switch d.Protocol {
	case ProtoIKE:
		if spiSize != 0 || num != 0 || len(spis) != 0 {
			return nil, syntaxErr(PayloadDelete, "IKE: SPI size %d, %d SPIs, %d octets", spiSize, num, len(spis))
		}
	case ProtoESP, ProtoAH:
		if spiSize != 4 || len(spis) != 4*num {
			return nil, syntaxErr(PayloadDelete, "%s: SPI size %d, %d SPIs, %d octets", d.Protocol, spiSize, num, len(spis))
		}
		if num > 0 {
			d.SPIs = make([]uint32, num)
			for i := range d.SPIs {
				d.SPIs[i] = binary.BigEndian.Uint32(spis[4*i:])
			}
		}
	default:
		return nil, syntaxErr(PayloadDelete, "protocol ID %d", d.Protocol)
	}
	return d, nil
}

// AppendBody appends the Delete payload body: for ProtoIKE no SPIs, otherwise 4-octet
// SPIs.
func (d *Delete) AppendBody(b []byte) []byte {
	if d.Protocol == ProtoIKE {
		return append(b, byte(ProtoIKE), 0, 0, 0)
	}
	b = append(b, byte(d.Protocol), 4)
	b = binary.BigEndian.AppendUint16(b, uint16(len(d.SPIs)))
	for _, spi := range d.SPIs {
		b = binary.BigEndian.AppendUint32(b, spi)
	}
	return b
}
