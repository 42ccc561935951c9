package wire

import (
	"encoding/binary"
	"net/netip"
)

// Type returns PayloadCP.
func (*CP) Type() PayloadType { return PayloadCP }

// ParseCP decodes a Configuration payload body: CFG Type (1 octet), RESERVED (3), then
// attributes, each R bit + Attribute Type (15 bits), Length (2), Value. The attributes
// must fill the body exactly. The R bit is ignored on receipt, as RFC 7296 3.15.1 says.
func ParseCP(body []byte) (*CP, error) {
	if len(body) < 4 {
		return nil, syntaxErr(PayloadCP, "body is %d octets, want at least 4", len(body))
	}
	cp := &CP{CfgType: CfgType(body[0])}
	b := body[4:]
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, syntaxErr(PayloadCP, "attribute header truncated: %d octets remain", len(b))
		}
		a := ConfigAttr{Type: binary.BigEndian.Uint16(b[0:2]) & 0x7fff}
		n := int(binary.BigEndian.Uint16(b[2:4]))
		if n > len(b)-4 {
			return nil, syntaxErr(PayloadCP, "attribute %d: length %d, %d octets remain", a.Type, n, len(b)-4)
		}
		a.Value = clone(b[4 : 4+n])
		cp.Attrs = append(cp.Attrs, a)
		b = b[4+n:]
	}
	return cp, nil
}

// AppendBody appends the CP payload body.
func (cp *CP) AppendBody(b []byte) []byte {
	b = append(b, byte(cp.CfgType), 0, 0, 0)
	for _, a := range cp.Attrs {
		b = binary.BigEndian.AppendUint16(b, a.Type&0x7fff)
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.Value)))
		b = append(b, a.Value...)
	}
	return b
}

// AddrAttr returns an attribute holding address a: 4 octets for IPv4, 16 for IPv6
// (INTERNAL_IP6_ADDRESS needs a prefix length too: use PrefixAttr).
func AddrAttr(typ uint16, a netip.Addr) ConfigAttr {
	return ConfigAttr{Type: typ, Value: a.Unmap().AsSlice()}
}

// PrefixAttr returns an attribute holding p as INTERNAL_IP4_SUBNET does (address and
// netmask, 8 octets) for IPv4, or as INTERNAL_IP6_ADDRESS and INTERNAL_IP6_SUBNET do
// (address and prefix length, 17 octets) for IPv6.
func PrefixAttr(typ uint16, p netip.Prefix) ConfigAttr {
	if !p.IsValid() {
		return ConfigAttr{Type: typ}
	}
	a := p.Addr().Unmap()
	v := a.AsSlice()
	if a.Is4() {
		bits := p.Bits()
		if p.Addr().Is4In6() {
			bits -= 96
		}
		bits = max(0, min(bits, 32))
		v = binary.BigEndian.AppendUint32(v, ^uint32(0)<<(32-bits))
	} else {
		v = append(v, byte(p.Bits()))
	}
	return ConfigAttr{Type: typ, Value: v}
}

// Addr returns the address of an INTERNAL_IP4_ADDRESS, _NETMASK, _DNS, _NBNS or _DHCP
// attribute (4 octets), an INTERNAL_IP6_DNS or _DHCP attribute (16 octets), or the
// address part of an INTERNAL_IP6_ADDRESS (17 octets). An empty value (as in a
// CFG_REQUEST) or another type or length is not an address.
func (a ConfigAttr) Addr() (netip.Addr, bool) {
	switch a.Type {
	case INTERNAL_IP4_ADDRESS, INTERNAL_IP4_NETMASK, INTERNAL_IP4_DNS, INTERNAL_IP4_NBNS, INTERNAL_IP4_DHCP:
		if len(a.Value) == 4 {
			return netip.AddrFrom4([4]byte(a.Value)), true
		}
	case INTERNAL_IP6_DNS, INTERNAL_IP6_DHCP:
		if len(a.Value) == 16 {
			return netip.AddrFrom16([16]byte(a.Value)), true
		}
	case INTERNAL_IP6_ADDRESS:
		if len(a.Value) == 17 {
			return netip.AddrFrom16([16]byte(a.Value[:16])), true
		}
	}
	return netip.Addr{}, false
}

// Prefix returns the prefix of an INTERNAL_IP4_SUBNET (address and contiguous netmask,
// 8 octets), INTERNAL_IP6_SUBNET or INTERNAL_IP6_ADDRESS (address and prefix length 0 to
// 128, 17 octets) attribute.
func (a ConfigAttr) Prefix() (netip.Prefix, bool) {
	switch a.Type {
	case INTERNAL_IP4_SUBNET:
		if len(a.Value) != 8 {
			break
		}
		m := binary.BigEndian.Uint32(a.Value[4:])
		bits := 0
		for bits < 32 && m&(1<<(31-bits)) != 0 {
			bits++
		}
		if bits < 32 && m<<bits != 0 {
			break // netmask not contiguous
		}
		return netip.PrefixFrom(netip.AddrFrom4([4]byte(a.Value[:4])), bits), true
	case INTERNAL_IP6_SUBNET, INTERNAL_IP6_ADDRESS:
		if len(a.Value) != 17 || a.Value[16] > 128 {
			break
		}
		return netip.PrefixFrom(netip.AddrFrom16([16]byte(a.Value[:16])), int(a.Value[16])), true
	}
	return netip.Prefix{}, false
}
