package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Defaults of `mobikevpn pki`.
const (
	DefaultCAName   = "mobikevpn CA"
	DefaultCADays   = 3650 // ten years
	DefaultLeafDays = 825  // the most Apple clients accept for a server certificate
	MaxDays         = 36500
)

// Backdate is how long before now a certificate becomes valid, so that a peer whose
// clock is a little behind accepts it at once.
const Backdate = time.Hour

// OIDIPsecIKE is the ipsecIKE extended key usage (RFC 4945 5.1.3.12).
var OIDIPsecIKE = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 17}

// Issued is a certificate and its private key.
type Issued struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// CertPEM is Cert as a PEM "CERTIFICATE" block, KeyPEM the key as a PKCS#8 PEM
	// "PRIVATE KEY" block (nil for a CA loaded from files).
	CertPEM, KeyPEM []byte
}

// InputError is an error in what the caller asked for (a name, a number of days), as
// opposed to a failure to do it.
type InputError struct{ Msg string }

func (e *InputError) Error() string { return e.Msg }

func inputErr(format string, args ...any) error {
	return &InputError{Msg: fmt.Sprintf(format, args...)}
}

// NewCA makes a self-signed CA certificate with a new ECDSA P-256 key: subject CN=cn,
// valid for days from now (less Backdate), key usage certSign and cRLSign, basic
// constraints CA with path length 0 (it signs end-entity certificates only).
func NewCA(rnd io.Reader, now time.Time, cn string, days int) (*Issued, error) {
	if strings.TrimSpace(cn) == "" {
		return nil, inputErr("the CA's common name is empty")
	}
	tmpl, err := template(rnd, now, cn, days)
	if err != nil {
		return nil, err
	}
	tmpl.IsCA = true
	tmpl.MaxPathLen = 0
	tmpl.MaxPathLenZero = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	return issue(rnd, tmpl, nil)
}

// NewGateway makes a gateway certificate signed by ca, with a new ECDSA P-256 key:
// subject CN=name; subjectAltNames name (a DNS name, or an IP address when name is one)
// and ips; extended key usages serverAuth (which Windows and macOS clients require) and
// ipsecIKE; key usage digitalSignature. Its validity ends days from now, or with the
// CA's when that comes first.
func NewGateway(rnd io.Reader, now time.Time, ca *Issued, name string, ips []netip.Addr, days int) (*Issued, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	tmpl, err := template(rnd, now, name, days)
	if err != nil {
		return nil, err
	}
	if ip, err := netip.ParseAddr(name); err == nil {
		if ip.Zone() != "" {
			return nil, inputErr("gateway name %q: an address with a zone cannot go into a certificate", name)
		}
		ips = append([]netip.Addr{ip}, ips...)
	} else if err := checkHost(name); err != nil {
		return nil, inputErr("gateway name %q: neither an IP address nor a host name: %v", name, err)
	} else {
		tmpl.DNSNames = []string{name}
	}
	seen := map[netip.Addr]bool{}
	for _, ip := range ips {
		ip = ip.Unmap()
		if !ip.IsValid() || ip.Zone() != "" {
			return nil, inputErr("gateway address %q: not an IP address without a zone", ip)
		}
		if !seen[ip] {
			seen[ip] = true
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(ip.AsSlice()))
		}
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	tmpl.UnknownExtKeyUsage = []asn1.ObjectIdentifier{OIDIPsecIKE}
	return issue(rnd, tmpl, ca)
}

// NewClient makes a client certificate signed by ca, with a new ECDSA P-256 key:
// subject CN=name; subjectAltName name as an email address when it holds an '@', else
// as a DNS name; extended key usage clientAuth; key usage digitalSignature. Its validity
// ends days from now, or with the CA's when that comes first.
func NewClient(rnd io.Reader, now time.Time, ca *Issued, name string, days int) (*Issued, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	tmpl, err := template(rnd, now, name, days)
	if err != nil {
		return nil, err
	}
	if local, domain, ok := strings.Cut(name, "@"); ok {
		if err := checkEmail(local, domain); err != nil {
			return nil, inputErr("client name %q: not an email address: %v", name, err)
		}
		tmpl.EmailAddresses = []string{name}
	} else if err := checkHost(name); err != nil {
		return nil, inputErr("client name %q: neither an email address nor a host name: %v", name, err)
	} else {
		tmpl.DNSNames = []string{name}
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return issue(rnd, tmpl, ca)
}

// CheckName refuses names that cannot name a certificate's files in a folder: empty,
// holding a path separator or a control character, starting with a dot or a dash, or
// "ca" (the CA's own files).
func CheckName(name string) error {
	switch {
	case name == "":
		return inputErr("the name is empty")
	case strings.ContainsAny(name, `/\`):
		return inputErr("name %q: holds a path separator", name)
	case strings.HasPrefix(name, ".") || strings.HasPrefix(name, "-"):
		return inputErr("name %q: starts with %q", name, name[:1])
	case strings.EqualFold(name, "ca"):
		return inputErr("name %q: ca.pem and ca.key are the CA's files", name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == ' ' {
			return inputErr("name %q: holds a space or a control character", name)
		}
	}
	return nil
}

// checkHost accepts a DNS host name: labels of letters, digits and inner hyphens, at
// most 63 characters each and 253 in all.
func checkHost(s string) error {
	if len(s) > 253 {
		return errors.New("longer than 253 characters")
	}
	for _, label := range strings.Split(s, ".") {
		switch {
		case label == "":
			return errors.New("empty label")
		case len(label) > 63:
			return fmt.Errorf("label %q is longer than 63 characters", label)
		case label[0] == '-' || label[len(label)-1] == '-':
			return fmt.Errorf("label %q starts or ends with a hyphen", label)
		}
		for _, r := range label {
			if !isAlnum(r) && r != '-' {
				return fmt.Errorf("%q is not a letter, digit or hyphen", r)
			}
		}
	}
	return nil
}

// checkEmail accepts local@domain with a domain checkHost accepts and a local part of
// letters, digits and ".+_-=" (what a configuration file takes unquoted).
func checkEmail(local, domain string) error {
	if local == "" || len(local) > 64 {
		return errors.New("the part before '@' must have 1 to 64 characters")
	}
	for _, r := range local {
		if !isAlnum(r) && !strings.ContainsRune(".+_-=", r) {
			return fmt.Errorf("%q before '@' is not supported (letters, digits and .+_-= are)", r)
		}
	}
	if err := checkHost(domain); err != nil {
		return fmt.Errorf("domain %q: %v", domain, err)
	}
	return nil
}

func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

// template is a certificate with subject CN=cn, a random 128-bit serial number and a
// validity of days from now (less Backdate).
func template(rnd io.Reader, now time.Time, cn string, days int) (*x509.Certificate, error) {
	if days < 1 || days > MaxDays {
		return nil, inputErr("%d days: the validity must be 1 to %d days", days, MaxDays)
	}
	b := make([]byte, 16)
	if _, err := io.ReadFull(rnd, b); err != nil {
		return nil, fmt.Errorf("random serial number: %w", err)
	}
	serial := new(big.Int).SetBytes(b)
	if serial.Sign() == 0 {
		return nil, errors.New("random serial number: the random source gave zero")
	}
	now = now.UTC().Truncate(time.Second)
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.AddDate(0, 0, days),
		BasicConstraintsValid: true,
	}, nil
}

// issue makes a new P-256 key and the certificate tmpl for it, signed by ca (nil:
// self-signed).
func issue(rnd io.Reader, tmpl *x509.Certificate, ca *Issued) (*Issued, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rnd)
	if err != nil {
		return nil, fmt.Errorf("new key: %w", err)
	}
	parent, signer := tmpl, crypto.Signer(key)
	if ca != nil {
		if ca.Cert == nil || ca.Key == nil {
			return nil, errors.New("no CA certificate and key to sign with")
		}
		parent, signer = ca.Cert, ca.Key
		if tmpl.NotAfter.After(ca.Cert.NotAfter) {
			tmpl.NotAfter = ca.Cert.NotAfter
		}
	}
	der, err := x509.CreateCertificate(rnd, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("signing the certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("the new certificate does not parse: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding the key: %w", err)
	}
	return &Issued{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
	}, nil
}

// SANs describes the certificate's subjectAltNames, e.g. "DNS gw.example.org, IP
// 198.51.100.1" ("" when it has none).
func SANs(c *x509.Certificate) string {
	var out []string
	for _, n := range c.DNSNames {
		out = append(out, "DNS "+n)
	}
	for _, ip := range c.IPAddresses {
		out = append(out, "IP "+ip.String())
	}
	for _, e := range c.EmailAddresses {
		out = append(out, "email "+e)
	}
	return strings.Join(out, ", ")
}
