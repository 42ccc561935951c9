package wire

import "encoding/binary"

// Nonce length bounds (RFC 7296 3.9).
const (
	MinNonceLen = 16
	MaxNonceLen = 256
)

// Type returns PayloadKE.
func (*KE) Type() PayloadType { return PayloadKE }

// ParseKE decodes a Key Exchange payload body: Group (2 octets), RESERVED (2), data.
// Whether the data length suits the group is checked by the crypto layer.
func ParseKE(body []byte) (*KE, error) {
	if len(body) < 4 {
		return nil, syntaxErr(PayloadKE, "body is %d octets, want at least 4", len(body))
	}
	return &KE{Group: binary.BigEndian.Uint16(body[0:2]), Data: clone(body[4:])}, nil
}

// AppendBody appends the KE payload body.
func (ke *KE) AppendBody(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, ke.Group)
	b = append(b, 0, 0)
	return append(b, ke.Data...)
}

// Type returns PayloadCERT.
func (*Cert) Type() PayloadType { return PayloadCERT }

// ParseCert decodes a Certificate payload body: Cert Encoding (1 octet), data.
func ParseCert(body []byte) (*Cert, error) {
	if len(body) < 1 {
		return nil, syntaxErr(PayloadCERT, "empty body")
	}
	return &Cert{Encoding: CertEncoding(body[0]), Data: clone(body[1:])}, nil
}

// AppendBody appends the CERT payload body.
func (c *Cert) AppendBody(b []byte) []byte {
	return append(append(b, byte(c.Encoding)), c.Data...)
}

// Type returns PayloadCERTREQ.
func (*CertReq) Type() PayloadType { return PayloadCERTREQ }

// ParseCertReq decodes a Certificate Request payload body: Cert Encoding (1 octet),
// Certification Authority (for X.509, concatenated 20-octet SHA-1 key hashes).
func ParseCertReq(body []byte) (*CertReq, error) {
	if len(body) < 1 {
		return nil, syntaxErr(PayloadCERTREQ, "empty body")
	}
	return &CertReq{Encoding: CertEncoding(body[0]), Data: clone(body[1:])}, nil
}

// AppendBody appends the CERTREQ payload body.
func (c *CertReq) AppendBody(b []byte) []byte {
	return append(append(b, byte(c.Encoding)), c.Data...)
}

// Type returns PayloadAUTH.
func (*Auth) Type() PayloadType { return PayloadAUTH }

// ParseAuth decodes an Authentication payload body: Auth Method (1 octet), RESERVED (3),
// authentication data.
func ParseAuth(body []byte) (*Auth, error) {
	if len(body) < 4 {
		return nil, syntaxErr(PayloadAUTH, "body is %d octets, want at least 4", len(body))
	}
	return &Auth{Method: AuthMethod(body[0]), Data: clone(body[4:])}, nil
}

// AppendBody appends the AUTH payload body.
func (a *Auth) AppendBody(b []byte) []byte {
	return append(append(b, byte(a.Method), 0, 0, 0), a.Data...)
}

// Type returns PayloadNonce.
func (*Nonce) Type() PayloadType { return PayloadNonce }

// ParseNonce decodes a Nonce payload body, which must be 16 to 256 octets.
func ParseNonce(body []byte) (*Nonce, error) {
	if len(body) < MinNonceLen || len(body) > MaxNonceLen {
		return nil, syntaxErr(PayloadNonce, "nonce is %d octets, want %d to %d", len(body), MinNonceLen, MaxNonceLen)
	}
	return &Nonce{Data: clone(body)}, nil
}

// AppendBody appends the nonce.
func (n *Nonce) AppendBody(b []byte) []byte { return append(b, n.Data...) }

// Type returns PayloadVendor.
func (*Vendor) Type() PayloadType { return PayloadVendor }

// ParseVendor decodes a Vendor ID payload body (opaque).
func ParseVendor(body []byte) (*Vendor, error) { return &Vendor{Data: clone(body)}, nil }

// AppendBody appends the vendor ID.
func (v *Vendor) AppendBody(b []byte) []byte { return append(b, v.Data...) }

// Type returns PayloadEAP.
func (*EAP) Type() PayloadType { return PayloadEAP }

// ParseEAP decodes an EAP payload body: one EAP message, at least its 4-octet header
// (Code, Identifier, Length), whose Length field must not exceed the body (RFC 3748 4).
func ParseEAP(body []byte) (*EAP, error) {
	if len(body) < 4 {
		return nil, syntaxErr(PayloadEAP, "body is %d octets, want at least 4", len(body))
	}
	if n := int(binary.BigEndian.Uint16(body[2:4])); n < 4 || n > len(body) {
		return nil, syntaxErr(PayloadEAP, "EAP length %d, body is %d octets", n, len(body))
	}
	return &EAP{Data: clone(body)}, nil
}

// AppendBody appends the EAP message.
func (e *EAP) AppendBody(b []byte) []byte { return append(b, e.Data...) }

// Type returns PayloadSK.
func (*SK) Type() PayloadType { return PayloadSK }

// ParseSK decodes an Encrypted payload body (IV, ciphertext, ICV; opaque here). The
// InnerNext field lives in the generic header: ParsePayloads fills it in.
func ParseSK(body []byte) (*SK, error) { return &SK{Body: clone(body)}, nil }

// AppendBody appends the SK payload body.
func (sk *SK) AppendBody(b []byte) []byte { return append(b, sk.Body...) }

// Type returns PayloadSKF.
func (*SKF) Type() PayloadType { return PayloadSKF }

// ParseSKF decodes an Encrypted Fragment payload body (RFC 7383 2.5): Fragment Number
// (2 octets), Total Fragments (2), then IV, ciphertext and ICV. Both numbers must be
// non-zero and Number <= Total. InnerNext is filled in by ParsePayloads.
func ParseSKF(body []byte) (*SKF, error) {
	if len(body) < 4 {
		return nil, syntaxErr(PayloadSKF, "body is %d octets, want at least 4", len(body))
	}
	f := &SKF{
		Number: binary.BigEndian.Uint16(body[0:2]),
		Total:  binary.BigEndian.Uint16(body[2:4]),
		Body:   clone(body[4:]),
	}
	if f.Number == 0 || f.Total == 0 || f.Number > f.Total {
		return nil, syntaxErr(PayloadSKF, "fragment %d of %d", f.Number, f.Total)
	}
	return f, nil
}

// AppendBody appends the SKF payload body: Fragment Number, Total Fragments, Body.
func (f *SKF) AppendBody(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, f.Number)
	b = binary.BigEndian.AppendUint16(b, f.Total)
	return append(b, f.Body...)
}

// Type returns the unknown payload's type.
func (u *Unknown) Type() PayloadType { return u.PayloadType }

// AppendBody appends the payload body as it was received.
func (u *Unknown) AppendBody(b []byte) []byte { return append(b, u.Body...) }
