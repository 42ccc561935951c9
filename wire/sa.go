package wire

import "encoding/binary"

// Substructure header values (RFC 7296 3.3.1, 3.3.2).
const (
	lastSubstruc       = 0
	moreProposals      = 2
	moreTransforms     = 3
	proposalHeaderLen  = 8
	transformHeaderLen = 8
	attrFormatTV       = 0x8000
	attrTypeMask       = 0x7fff
)

// Type returns PayloadSA.
func (*SA) Type() PayloadType { return PayloadSA }

// ParseSA decodes an SA payload body. It checks every proposal and transform length
// against what remains, the Last Substruc values (0 on the last proposal, 2 before it;
// 0 on the last transform, 3 before it), the proposal numbering (1, 2, 3, ... when there
// are several; a single proposal may carry any non-zero number, as in a response), the
// SPI size for the protocol (IKE 0 or 8, AH and ESP 4), the Num Transforms count, and
// attributes in TV and TLV format.
func ParseSA(body []byte) (*SA, error) {
	sa := &SA{}
	b := body
	if len(b) == 0 {
		return nil, syntaxErr(PayloadSA, "no proposals")
	}
	for len(b) > 0 {
		if len(b) < proposalHeaderLen {
			return nil, syntaxErr(PayloadSA, "proposal header truncated: %d octets remain", len(b))
		}
		last := b[0]
		plen := int(binary.BigEndian.Uint16(b[2:4]))
		if plen < proposalHeaderLen || plen > len(b) {
			return nil, syntaxErr(PayloadSA, "proposal length %d, %d octets remain", plen, len(b))
		}
		p, err := parseProposal(b[:plen])
		if err != nil {
			return nil, err
		}
		switch {
		case p.Num == 0:
			return nil, syntaxErr(PayloadSA, "proposal number 0")
		case len(sa.Proposals) > 0 && p.Num != sa.Proposals[len(sa.Proposals)-1].Num+1:
			return nil, syntaxErr(PayloadSA, "proposal number %d follows %d", p.Num, sa.Proposals[len(sa.Proposals)-1].Num)
		case len(sa.Proposals) == 1 && sa.Proposals[0].Num != 1:
			return nil, syntaxErr(PayloadSA, "first of several proposals has number %d, want 1", sa.Proposals[0].Num)
		}
		sa.Proposals = append(sa.Proposals, p)
		b = b[plen:]
		switch last {
		case lastSubstruc:
			if len(b) != 0 {
				return nil, syntaxErr(PayloadSA, "%d octets after the last proposal", len(b))
			}
		case moreProposals:
			if len(b) == 0 {
				return nil, syntaxErr(PayloadSA, "proposal %d announces another proposal", p.Num)
			}
		default:
			return nil, syntaxErr(PayloadSA, "proposal Last Substruc %d", last)
		}
	}
	return sa, nil
}

// parseProposal decodes one proposal substructure; b is exactly the proposal.
func parseProposal(b []byte) (Proposal, error) {
	p := Proposal{Num: b[4], Protocol: ProtocolID(b[5])}
	spiSize := int(b[6])
	numTransforms := int(b[7])
	switch p.Protocol {
	case ProtoIKE:
		if spiSize != 0 && spiSize != 8 {
			return p, syntaxErr(PayloadSA, "proposal %d: IKE SPI size %d", p.Num, spiSize)
		}
	case ProtoAH, ProtoESP:
		if spiSize != 4 {
			return p, syntaxErr(PayloadSA, "proposal %d: %s SPI size %d", p.Num, p.Protocol, spiSize)
		}
	default:
		return p, syntaxErr(PayloadSA, "proposal %d: protocol ID %d", p.Num, p.Protocol)
	}
	b = b[proposalHeaderLen:]
	if spiSize > len(b) {
		return p, syntaxErr(PayloadSA, "proposal %d: SPI size %d, %d octets remain", p.Num, spiSize, len(b))
	}
	p.SPI = clone(b[:spiSize])
	b = b[spiSize:]
	if numTransforms == 0 {
		return p, syntaxErr(PayloadSA, "proposal %d has no transforms", p.Num)
	}
	p.Transforms = make([]Transform, 0, min(numTransforms, len(b)/transformHeaderLen))
	for len(b) > 0 {
		if len(p.Transforms) == numTransforms {
			return p, syntaxErr(PayloadSA, "proposal %d: more transforms than its count %d", p.Num, numTransforms)
		}
		if len(b) < transformHeaderLen {
			return p, syntaxErr(PayloadSA, "proposal %d: transform header truncated: %d octets remain", p.Num, len(b))
		}
		last := b[0]
		tlen := int(binary.BigEndian.Uint16(b[2:4]))
		if tlen < transformHeaderLen || tlen > len(b) {
			return p, syntaxErr(PayloadSA, "proposal %d: transform length %d, %d octets remain", p.Num, tlen, len(b))
		}
		t := Transform{Type: TransformType(b[4]), ID: binary.BigEndian.Uint16(b[6:8])}
		attrs, err := parseAttributes(b[transformHeaderLen:tlen])
		if err != nil {
			return p, syntaxErr(PayloadSA, "proposal %d transform %d: %s", p.Num, len(p.Transforms)+1, err.Error())
		}
		t.Attrs = attrs
		p.Transforms = append(p.Transforms, t)
		b = b[tlen:]
		switch last {
		case lastSubstruc:
			if len(b) != 0 {
				return p, syntaxErr(PayloadSA, "proposal %d: %d octets after the last transform", p.Num, len(b))
			}
		case moreTransforms:
			if len(b) == 0 {
				return p, syntaxErr(PayloadSA, "proposal %d: last transform announces another", p.Num)
			}
		default:
			return p, syntaxErr(PayloadSA, "proposal %d: transform Last Substruc %d", p.Num, last)
		}
	}
	if len(p.Transforms) != numTransforms {
		return p, syntaxErr(PayloadSA, "proposal %d: %d transforms, its count says %d", p.Num, len(p.Transforms), numTransforms)
	}
	return p, nil
}

// attrError is a plain reason from parseAttributes, wrapped by the caller.
type attrError string

func (e attrError) Error() string { return string(e) }

// parseAttributes decodes transform attributes; b is exactly the attribute area.
func parseAttributes(b []byte) ([]Attribute, error) {
	var attrs []Attribute
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, attrError("attribute truncated")
		}
		typ := binary.BigEndian.Uint16(b[0:2])
		a := Attribute{Type: typ & attrTypeMask, TV: typ&attrFormatTV != 0}
		if a.TV {
			a.Value = binary.BigEndian.Uint16(b[2:4])
			b = b[4:]
		} else {
			n := int(binary.BigEndian.Uint16(b[2:4]))
			if n > len(b)-4 {
				return nil, attrError("attribute length exceeds the transform")
			}
			a.Data = clone(b[4 : 4+n])
			b = b[4+n:]
		}
		attrs = append(attrs, a)
	}
	return attrs, nil
}

// AppendBody appends the SA payload body. Last Substruc values and lengths are computed;
// proposal numbers, SPIs and transforms are written as they are.
func (sa *SA) AppendBody(b []byte) []byte {
	for i := range sa.Proposals {
		p := &sa.Proposals[i]
		last := byte(moreProposals)
		if i == len(sa.Proposals)-1 {
			last = lastSubstruc
		}
		start := len(b)
		b = append(b, last, 0, 0, 0, p.Num, byte(p.Protocol), byte(len(p.SPI)), byte(len(p.Transforms)))
		b = append(b, p.SPI...)
		for j := range p.Transforms {
			t := &p.Transforms[j]
			last := byte(moreTransforms)
			if j == len(p.Transforms)-1 {
				last = lastSubstruc
			}
			tstart := len(b)
			b = append(b, last, 0, 0, 0, byte(t.Type), 0)
			b = binary.BigEndian.AppendUint16(b, t.ID)
			for _, a := range t.Attrs {
				if a.TV {
					b = binary.BigEndian.AppendUint16(b, a.Type&attrTypeMask|attrFormatTV)
					b = binary.BigEndian.AppendUint16(b, a.Value)
				} else {
					b = binary.BigEndian.AppendUint16(b, a.Type&attrTypeMask)
					b = binary.BigEndian.AppendUint16(b, uint16(len(a.Data)))
					b = append(b, a.Data...)
				}
			}
			binary.BigEndian.PutUint16(b[tstart+2:], uint16(len(b)-tstart))
		}
		binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	}
	return b
}

// KeyLengthAttr returns a Key Length attribute (TV format) of bits bits.
func KeyLengthAttr(bits uint16) Attribute {
	return Attribute{Type: AttrKeyLength, TV: true, Value: bits}
}
