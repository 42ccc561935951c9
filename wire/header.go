package wire

import (
	"encoding/binary"
	"fmt"
)

// ParseHeader decodes the fixed IKE header at the start of b (which may hold more than
// the header; Length is not compared with len(b)). A major version other than 2 gives an
// *Error with Notify INVALID_MAJOR_VERSION; the Header is then filled in all the same,
// so that the caller can answer with the request's SPIs and Message ID.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, syntaxErr(PayloadNone, "header is %d octets, want at least %d", len(b), HeaderLen)
	}
	h := Header{
		SPIi:        binary.BigEndian.Uint64(b[0:8]),
		SPIr:        binary.BigEndian.Uint64(b[8:16]),
		NextPayload: PayloadType(b[16]),
		Version:     b[17],
		Exchange:    ExchangeType(b[18]),
		Flags:       Flags(b[19]),
		MessageID:   binary.BigEndian.Uint32(b[20:24]),
		Length:      binary.BigEndian.Uint32(b[24:28]),
	}
	if major := h.Version >> 4; major != 2 {
		return h, &Error{Notify: INVALID_MAJOR_VERSION, Reason: fmt.Sprintf("major version %d", major)}
	}
	if h.Length < HeaderLen {
		return h, syntaxErr(PayloadNone, "header length field %d is less than %d", h.Length, HeaderLen)
	}
	return h, nil
}

// Append appends the 28-octet header to b, with every field as it is in h (a zero
// Version is written as the Version constant, 2.0).
func (h *Header) Append(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, h.SPIi)
	b = binary.BigEndian.AppendUint64(b, h.SPIr)
	v := h.Version
	if v == 0 {
		v = Version
	}
	b = append(b, byte(h.NextPayload), v, byte(h.Exchange), byte(h.Flags))
	b = binary.BigEndian.AppendUint32(b, h.MessageID)
	return binary.BigEndian.AppendUint32(b, h.Length)
}

// appendGeneric appends a generic payload header.
func appendGeneric(b []byte, next PayloadType, critical bool, length int) []byte {
	var c byte
	if critical {
		c = 0x80
	}
	return append(b, byte(next), c, byte(length>>8), byte(length))
}

// AppendSKHeader starts a protected message: it appends h (with NextPayload SK and
// Length 28+4+bodyLen; h's own NextPayload and Length are ignored) and the SK payload's
// generic header (Next Payload innerNext, Payload Length 4+bodyLen). The caller then
// appends the bodyLen octets of IV, ciphertext and ICV. Everything appended here is the
// associated data that RFC 5282 AEAD and the RFC 7296 ICV cover in front of the IV.
func AppendSKHeader(b []byte, h Header, innerNext PayloadType, bodyLen int) []byte {
	h.NextPayload = PayloadSK
	h.Length = uint32(HeaderLen + GenericHeaderLen + bodyLen)
	b = h.Append(b)
	return appendGeneric(b, innerNext, false, GenericHeaderLen+bodyLen)
}

// SKFHeaderLen is the length of the Encrypted Fragment payload's header: the generic
// header, Fragment Number and Total Fragments (RFC 7383 2.5).
const SKFHeaderLen = GenericHeaderLen + 4

// AppendSKFHeader starts one fragment message (RFC 7383): h with NextPayload SKF and
// Length 28+8+bodyLen, then the SKF payload's generic header (Next Payload innerNext,
// which RFC 7383 wants non-zero only in fragment 1; Payload Length 8+bodyLen), Fragment
// Number and Total Fragments. The caller appends IV, ciphertext and ICV.
func AppendSKFHeader(b []byte, h Header, innerNext PayloadType, number, total uint16, bodyLen int) []byte {
	h.NextPayload = PayloadSKF
	h.Length = uint32(HeaderLen + SKFHeaderLen + bodyLen)
	b = h.Append(b)
	b = appendGeneric(b, innerNext, false, SKFHeaderLen+bodyLen)
	b = binary.BigEndian.AppendUint16(b, number)
	return binary.BigEndian.AppendUint16(b, total)
}
