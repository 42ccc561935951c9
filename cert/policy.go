package cert

import (
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"os"
	"strings"
)

// PeerPolicy is what a connection requires of its peer's certificate beyond a chain to
// one of its trusted CAs and the identity checks.
type PeerPolicy struct {
	// AnyID lets a connection with concrete remote addresses and no remote identity
	// (%any) accept any certificate of its CAs as the peer. Without it such a connection
	// expects the peer's address as identity, carried in the certificate as an IP
	// subjectAltName. A connection that accepts any peer address (a gateway) always
	// accepts any identity its CAs vouch for.
	AnyID bool
	// EKUs, when not empty, are the extended key usages of which the peer's (leaf)
	// certificate must carry at least one.
	EKUs []asn1.ObjectIdentifier
	// CRLs are certificate revocation lists: a certificate of the peer's chain (the leaf
	// or an intermediate CA) listed as revoked in the newest CRL of its issuer is refused.
	CRLs []*x509.RevocationList
}

// Extended key usages known by name (RFC 5280 4.2.1.12, RFC 4945 5.1.3.12, and
// strongSwan's "IKE intermediate" flag).
var ekuNames = []struct {
	name string
	oid  asn1.ObjectIdentifier
}{
	{"serverAuth", asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}},
	{"clientAuth", asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}},
	{"ipsecIKE", asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 17}},
	{"ikeIntermediate", asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 8, 2, 2}},
	{"anyExtendedKeyUsage", asn1.ObjectIdentifier{2, 5, 29, 37, 0}},
}

// EKUNames are the extended key usage names ParseEKU knows, in a stable order.
func EKUNames() []string {
	out := make([]string, len(ekuNames))
	for i, e := range ekuNames {
		out[i] = e.name
	}
	return out
}

// ParseEKU returns the OID of an extended key usage given by name (serverAuth,
// clientAuth, ipsecIKE, ikeIntermediate, anyExtendedKeyUsage; case-insensitive) or in
// dotted form (1.3.6.1.5.5.7.3.17).
func ParseEKU(s string) (asn1.ObjectIdentifier, error) {
	for _, e := range ekuNames {
		if strings.EqualFold(s, e.name) {
			return e.oid, nil
		}
	}
	parts := strings.Split(s, ".")
	if len(parts) >= 2 {
		oid := make(asn1.ObjectIdentifier, 0, len(parts))
		ok := true
		for _, p := range parts {
			n := 0
			if p == "" || len(p) > 9 {
				ok = false
				break
			}
			for _, r := range p {
				if r < '0' || r > '9' {
					ok = false
					break
				}
				n = n*10 + int(r-'0')
			}
			oid = append(oid, n)
		}
		if ok && oid[0] <= 2 {
			return oid, nil
		}
	}
	return nil, fmt.Errorf("unknown extended key usage %q; use one of %s or a dotted OID", s, strings.Join(EKUNames(), ", "))
}

// EKUName is the name of oid as ParseEKU knows it, else its dotted form.
func EKUName(oid asn1.ObjectIdentifier) string {
	for _, e := range ekuNames {
		if e.oid.Equal(oid) {
			return e.name
		}
	}
	return oid.String()
}

var (
	oidExtKeyUsage       = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidDeltaCRLIndicator = asn1.ObjectIdentifier{2, 5, 29, 27}
)

// extKeyUsages returns the OIDs of c's extended key usage extension, and whether it has
// one.
func extKeyUsages(c *x509.Certificate) ([]asn1.ObjectIdentifier, bool) {
	for _, ext := range c.Extensions {
		if ext.Id.Equal(oidExtKeyUsage) {
			var oids []asn1.ObjectIdentifier
			if rest, err := asn1.Unmarshal(ext.Value, &oids); err != nil || len(rest) != 0 {
				return nil, true
			}
			return oids, true
		}
	}
	return nil, false
}

// LoadCRLs reads certificate revocation lists, each file PEM (one or more "X509 CRL"
// blocks) or one DER CRL. Delta CRLs are refused: only complete CRLs are used.
func LoadCRLs(files []string) ([]*x509.RevocationList, error) {
	var out []*x509.RevocationList
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("cert: %w", err)
		}
		crls, err := ParseCRLs(b)
		if err != nil {
			return nil, fmt.Errorf("cert: %s: %w", f, err)
		}
		out = append(out, crls...)
	}
	return out, nil
}

// ParseCRLs decodes the content of a CRL file: PEM "X509 CRL" blocks, or DER when the
// data holds no PEM.
func ParseCRLs(b []byte) ([]*x509.RevocationList, error) {
	ders, sawPEM, err := pemBlocks(b, "X509 CRL", `no PEM "X509 CRL" block`)
	if err != nil {
		return nil, err
	}
	out := make([]*x509.RevocationList, 0, len(ders))
	for i, der := range ders {
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			if sawPEM {
				return nil, fmt.Errorf("CRL %d: %w", i+1, err)
			}
			return nil, fmt.Errorf("neither a PEM nor a DER CRL: %w", err)
		}
		for _, ext := range crl.Extensions {
			if ext.Id.Equal(oidDeltaCRLIndicator) {
				return nil, fmt.Errorf("CRL %d of %q is a delta CRL; give complete CRLs only", i+1, crl.Issuer.String())
			}
		}
		out = append(out, crl)
	}
	return out, nil
}
