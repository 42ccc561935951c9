package cert

import (
	"bytes"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/mobikevpn/mobikevpn/wire"
)

// MaxChain is the most certificates ParseCerts accepts from one peer.
const MaxChain = 16

// Validator validates a peer's certificate chain against trusted CAs.
type Validator struct {
	Roots []*x509.Certificate
	Now   func() time.Time // nil means time.Now
	// EKUs, when not empty, are the extended key usages of which the leaf must carry
	// at least one (PeerPolicy.EKUs).
	EKUs []asn1.ObjectIdentifier
	// CRLs are checked for each certificate of the chain but the trust anchor: the
	// newest CRL its issuer signed (see Validate).
	CRLs []*x509.RevocationList
	// Warn, if set, receives warnings that do not refuse the chain (an expired CRL).
	Warn func(msg string)
}

// Validate builds a chain from the peer's leaf (chain[0], as received in the first CERT
// payload) through the other received certificates, as intermediates, to one of Roots,
// and returns the leaf. Without EKUs any extended key usage is accepted, because IKE
// certificates rarely carry one; with EKUs the leaf must carry one of them. A CA
// certificate is refused as leaf, and so is a leaf whose key usage extension allows
// neither digitalSignature nor nonRepudiation (as strongSwan does). With CRLs, a chain
// with a revoked certificate is refused (see checkRevocation).
func (v *Validator) Validate(chain []*x509.Certificate) (*x509.Certificate, error) {
	if len(chain) == 0 || chain[0] == nil {
		return nil, errors.New("cert: the peer sent no certificate")
	}
	leaf := chain[0]
	name := certName(leaf)
	if len(v.Roots) == 0 {
		return nil, fmt.Errorf("cert: cannot validate %s: no trusted CA configured", name)
	}
	if leaf.BasicConstraintsValid && leaf.IsCA {
		return nil, fmt.Errorf("cert: %s is a CA certificate, not an end-entity certificate", name)
	}
	if leaf.KeyUsage != 0 && leaf.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		return nil, fmt.Errorf("cert: %s: key usage allows neither digitalSignature nor nonRepudiation", name)
	}
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	opts := x509.VerifyOptions{
		Roots:         x509.NewCertPool(),
		Intermediates: x509.NewCertPool(),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	for _, r := range v.Roots {
		if r != nil {
			opts.Roots.AddCert(r)
		}
	}
	for _, c := range chain[1:] {
		if c != nil {
			opts.Intermediates.AddCert(c)
		}
	}
	chains, err := leaf.Verify(opts)
	if err != nil {
		return nil, explain(name, now, err)
	}
	if err := v.checkEKU(leaf); err != nil {
		return nil, err
	}
	if len(v.CRLs) == 0 {
		return leaf, nil
	}
	// Revocation: one chain to a trusted CA without a revoked certificate will do.
	var firstErr error
	for _, ch := range chains {
		warnings, err := v.checkRevocation(ch, now)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if v.Warn != nil {
			for _, w := range warnings {
				v.Warn(w)
			}
		}
		return leaf, nil
	}
	return nil, firstErr
}

// checkEKU: with v.EKUs, leaf must carry one of them (anyExtendedKeyUsage counts only
// when listed).
func (v *Validator) checkEKU(leaf *x509.Certificate) error {
	if len(v.EKUs) == 0 {
		return nil
	}
	want := make([]string, len(v.EKUs))
	for i, o := range v.EKUs {
		want[i] = EKUName(o)
	}
	have, ok := extKeyUsages(leaf)
	if !ok {
		return fmt.Errorf("cert: %s has no extended key usage extension; the connection requires one of %s", certName(leaf), strings.Join(want, ", "))
	}
	names := make([]string, len(have))
	for i, h := range have {
		names[i] = EKUName(h)
		for _, w := range v.EKUs {
			if h.Equal(w) {
				return nil
			}
		}
	}
	return fmt.Errorf("cert: %s has extended key usages %s; the connection requires one of %s", certName(leaf), strings.Join(names, ", "), strings.Join(want, ", "))
}

// checkRevocation checks each certificate of a verified chain (leaf first, the trust
// anchor last and unchecked) against the newest CRL its issuer signed: the one with the
// highest CRL number, else the latest thisUpdate. A CRL whose signature does not verify
// with the issuer's key is ignored (with a warning). A listed certificate is refused
// whatever the CRL's dates: revocation is final, and a newer CRL always lists it too.
// A CRL past its nextUpdate (or before its thisUpdate) still serves, with a warning:
// operators renew CRL files, and strongSwan too accepts what a stale CRL does not list
// unless told to be strict.
func (v *Validator) checkRevocation(chain []*x509.Certificate, now time.Time) (warnings []string, err error) {
	for i := 0; i+1 < len(chain); i++ {
		c, issuer := chain[i], chain[i+1]
		var newest *x509.RevocationList
		for _, crl := range v.CRLs {
			if crl == nil || !sameDN(crl.RawIssuer, issuer.RawSubject) {
				continue
			}
			if err := crl.CheckSignatureFrom(issuer); err != nil {
				warnings = append(warnings, fmt.Sprintf("CRL %s of %q does not verify with the key of %s; ignored: %v",
					crlNumber(crl), crl.Issuer.String(), certName(issuer), err))
				continue
			}
			if newest == nil || newerCRL(crl, newest) {
				newest = crl
			}
		}
		if newest == nil {
			continue
		}
		for _, e := range newest.RevokedCertificateEntries {
			if e.SerialNumber != nil && e.SerialNumber.Cmp(c.SerialNumber) == 0 {
				return nil, fmt.Errorf("cert: %s (serial %s) is revoked since %s%s, by CRL %s of %q",
					certName(c), c.SerialNumber.Text(16), e.RevocationTime.UTC().Format(time.RFC3339),
					reasonText(e.ReasonCode), crlNumber(newest), newest.Issuer.String())
			}
		}
		switch {
		case !newest.NextUpdate.IsZero() && now.After(newest.NextUpdate):
			warnings = append(warnings, fmt.Sprintf("CRL %s of %q expired at %s (its nextUpdate); %s is not listed in it and is accepted; install a current CRL",
				crlNumber(newest), newest.Issuer.String(), newest.NextUpdate.UTC().Format(time.RFC3339), certName(c)))
		case now.Before(newest.ThisUpdate):
			warnings = append(warnings, fmt.Sprintf("CRL %s of %q is not valid before %s (its thisUpdate; is the clock right?); %s is not listed in it and is accepted",
				crlNumber(newest), newest.Issuer.String(), newest.ThisUpdate.UTC().Format(time.RFC3339), certName(c)))
		}
	}
	return warnings, nil
}

// sameDN compares two DER names as IKE identities are compared: attribute by attribute,
// whatever the string types.
func sameDN(a, b []byte) bool {
	x, y := wire.ID{IDType: wire.ID_DER_ASN1_DN, Data: a}, wire.ID{IDType: wire.ID_DER_ASN1_DN, Data: b}
	return bytes.Equal(a, b) || x.Equal(&y)
}

// newerCRL reports whether a is newer than b: a higher CRL number, or without numbers
// on both, a later thisUpdate.
func newerCRL(a, b *x509.RevocationList) bool {
	if a.Number != nil && b.Number != nil {
		if c := a.Number.Cmp(b.Number); c != 0 {
			return c > 0
		}
	}
	return a.ThisUpdate.After(b.ThisUpdate)
}

func crlNumber(crl *x509.RevocationList) string {
	if crl.Number == nil {
		return "(unnumbered)"
	}
	return crl.Number.String()
}

// reasonText names a CRL reason code (RFC 5280 5.3.1), "" for unspecified.
func reasonText(code int) string {
	reasons := map[int]string{1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged", 4: "superseded",
		5: "cessationOfOperation", 6: "certificateHold", 8: "removeFromCRL", 9: "privilegeWithdrawn", 10: "aACompromise"}
	if r, ok := reasons[code]; ok {
		return " (" + r + ")"
	}
	return ""
}

// explain turns a crypto/x509 verification error into a message naming the problem.
func explain(name string, now time.Time, err error) error {
	var (
		ua  x509.UnknownAuthorityError
		inv x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &ua):
		issuer := "unknown issuer"
		if ua.Cert != nil {
			issuer = fmt.Sprintf("issuer %q", ua.Cert.Issuer.String())
		}
		return fmt.Errorf("cert: %s does not chain to a trusted CA (%s): %w", name, issuer, err)
	case errors.As(err, &inv) && inv.Reason == x509.Expired && inv.Cert != nil:
		c := inv.Cert
		return fmt.Errorf("cert: %s is not valid at %s (valid from %s to %s): %w", certName(c),
			now.UTC().Format(time.RFC3339), c.NotBefore.UTC().Format(time.RFC3339),
			c.NotAfter.UTC().Format(time.RFC3339), err)
	case errors.As(err, &inv) && inv.Reason == x509.NotAuthorizedToSign && inv.Cert != nil:
		return fmt.Errorf("cert: %s chains through %s, which is not a CA: %w", name, certName(inv.Cert), err)
	}
	return fmt.Errorf("cert: %s does not validate: %w", name, err)
}

func certName(c *x509.Certificate) string {
	return fmt.Sprintf("certificate %q", c.Subject.String())
}

// IDMatches reports whether the identity id is one the certificate vouches for: an
// ID_DER_ASN1_DN equal to its subject (compared attribute by attribute as wire.ID.Equal
// does), an ID_FQDN among its subjectAltName dNSNames, an ID_RFC822_ADDR among its
// rfc822Names (both case-insensitive), an ID_IPV4_ADDR or ID_IPV6_ADDR among its
// iPAddresses. Other identity types match nothing.
func IDMatches(id *wire.ID, leaf *x509.Certificate) bool {
	if id == nil || leaf == nil {
		return false
	}
	switch id.IDType {
	case wire.ID_DER_ASN1_DN:
		subject := wire.ID{IDType: wire.ID_DER_ASN1_DN, Data: leaf.RawSubject}
		return len(id.Data) > 0 && subject.Equal(id)
	case wire.ID_FQDN:
		for _, n := range leaf.DNSNames {
			if strings.EqualFold(n, string(id.Data)) {
				return true
			}
		}
	case wire.ID_RFC822_ADDR:
		for _, n := range leaf.EmailAddresses {
			if strings.EqualFold(n, string(id.Data)) {
				return true
			}
		}
	case wire.ID_IPV4_ADDR, wire.ID_IPV6_ADDR:
		want, ok := netip.AddrFromSlice(id.Data)
		if !ok || (id.IDType == wire.ID_IPV4_ADDR) != want.Is4() {
			return false
		}
		for _, ip := range leaf.IPAddresses {
			a, ok := netip.AddrFromSlice(ip)
			if ok && a.Unmap() == want.Unmap() {
				return true
			}
		}
	}
	return false
}

// CertReqData returns CERTREQ data (encoding 4, RFC 7296 3.7): the SHA-1 hashes of each
// CA's SubjectPublicKeyInfo, concatenated.
func CertReqData(cas []*x509.Certificate) []byte {
	out := make([]byte, 0, sha1.Size*len(cas))
	for _, c := range cas {
		h := sha1.Sum(c.RawSubjectPublicKeyInfo)
		out = append(out, h[:]...)
	}
	return out
}

// MatchCertReq reports whether received CERTREQ data names one of the CAs. Data that is
// empty or not a whole number of SHA-1 hashes names none.
func MatchCertReq(data []byte, cas []*x509.Certificate) bool {
	if len(data) == 0 || len(data)%sha1.Size != 0 {
		return false
	}
	for _, c := range cas {
		h := sha1.Sum(c.RawSubjectPublicKeyInfo)
		for i := 0; i < len(data); i += sha1.Size {
			if bytes.Equal(data[i:i+sha1.Size], h[:]) {
				return true
			}
		}
	}
	return false
}

// ParseCerts decodes the data of CERT payloads of encoding 4 (X.509 certificate,
// signature: one DER certificate each), in the order received. At most MaxChain.
func ParseCerts(payloads [][]byte) ([]*x509.Certificate, error) {
	if len(payloads) == 0 {
		return nil, errors.New("cert: no CERT payload")
	}
	if len(payloads) > MaxChain {
		return nil, fmt.Errorf("cert: %d CERT payloads, at most %d accepted", len(payloads), MaxChain)
	}
	certs := make([]*x509.Certificate, 0, len(payloads))
	for i, p := range payloads {
		c, err := x509.ParseCertificate(p)
		if err != nil {
			return nil, fmt.Errorf("cert: CERT payload %d: %w", i+1, err)
		}
		certs = append(certs, c)
	}
	return certs, nil
}
