// Package cert does IKEv2 certificate authentication: it loads our certificate chain and
// private key, signs and verifies AUTH payload data (RFC 7296 2.15, RFC 4754, RFC 7427,
// RFC 8420), validates the peer's chain and matches its identity.
package cert

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/mobikevpn/mobikevpn/wire"
)

// Credential is our certificate chain and private key.
type Credential struct {
	// Chain is the certificate chain, leaf first, then any intermediate CAs to send.
	Chain []*x509.Certificate
	// Key is the leaf's private key: *rsa.PrivateKey, *ecdsa.PrivateKey (P-256, P-384 or
	// P-521), ed25519.PrivateKey, or any crypto.Signer with one of those public keys.
	Key crypto.Signer
	// RSAPSS makes Sign use RSASSA-PSS rather than RSASSA-PKCS1-v1_5 for an RSA key under
	// RFC 7427 (strongSwan's charon.rsa_pss = yes). Without RFC 7427 RSA is always
	// PKCS#1 v1.5 with SHA-1 (method 1).
	RSAPSS bool
}

// LoadCredential reads a certificate chain and its private key. Each certificate file
// holds PEM "CERTIFICATE" blocks or DER; the leaf is the certificate whose public key
// matches the key and goes first, the others follow in the order given. The key file is
// PEM (PKCS#8 "PRIVATE KEY", PKCS#1 "RSA PRIVATE KEY" or SEC1 "EC PRIVATE KEY",
// unencrypted) or DER in one of those formats.
func LoadCredential(certFiles []string, keyFile string) (*Credential, error) {
	if len(certFiles) == 0 {
		return nil, errors.New("cert: no certificate file given")
	}
	var certs []*x509.Certificate
	for _, f := range certFiles {
		cs, err := loadCertFile(f)
		if err != nil {
			return nil, err
		}
		certs = append(certs, cs...)
	}
	key, err := loadKeyFile(keyFile)
	if err != nil {
		return nil, err
	}
	leaf := -1
	for i, c := range certs {
		if samePublicKey(key.Public(), c.PublicKey) {
			leaf = i
			break
		}
	}
	if leaf < 0 {
		return nil, fmt.Errorf("cert: private key %s matches none of the certificates in %v", keyFile, certFiles)
	}
	chain := make([]*x509.Certificate, 0, len(certs))
	chain = append(chain, certs[leaf])
	chain = append(chain, certs[:leaf]...)
	chain = append(chain, certs[leaf+1:]...)
	return &Credential{Chain: chain, Key: key}, nil
}

// LoadCAs reads trusted CA certificates, each file PEM (one or more "CERTIFICATE"
// blocks) or DER. A self-signed end-entity certificate may be given too, to trust
// exactly that certificate.
func LoadCAs(files []string) ([]*x509.Certificate, error) {
	var cas []*x509.Certificate
	for _, f := range files {
		cs, err := loadCertFile(f)
		if err != nil {
			return nil, err
		}
		cas = append(cas, cs...)
	}
	return cas, nil
}

// ID returns the leaf's subject DN as an ID_DER_ASN1_DN identity, or an empty
// ID_DER_ASN1_DN when the chain is empty.
func (c *Credential) ID() wire.ID {
	if len(c.Chain) == 0 || c.Chain[0] == nil {
		return wire.ID{IDType: wire.ID_DER_ASN1_DN}
	}
	return wire.ID{IDType: wire.ID_DER_ASN1_DN, Data: bytes.Clone(c.Chain[0].RawSubject)}
}

func loadCertFile(name string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("cert: %w", err)
	}
	certs, err := parseCertFile(b)
	if err != nil {
		return nil, fmt.Errorf("cert: %s: %w", name, err)
	}
	return certs, nil
}

// parseCertFile decodes PEM "CERTIFICATE" blocks, or DER when the data holds no PEM.
func parseCertFile(b []byte) ([]*x509.Certificate, error) {
	ders, sawPEM, err := pemBlocks(b, "CERTIFICATE", "no PEM CERTIFICATE block")
	if err != nil {
		return nil, err
	}
	if !sawPEM {
		certs, err := x509.ParseCertificates(b)
		if err != nil {
			return nil, fmt.Errorf("neither PEM nor DER certificates: %w", err)
		}
		if len(certs) == 0 {
			return nil, errors.New("empty file")
		}
		return certs, nil
	}
	var certs []*x509.Certificate
	for _, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// pemBlocks returns the contents of the PEM blocks of type typ in b (an error with
// missing when b holds PEM but none of that type), or, when b holds no PEM at all, b
// itself as one DER object (sawPEM false; an error when b is empty).
func pemBlocks(b []byte, typ, missing string) (ders [][]byte, sawPEM bool, err error) {
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		sawPEM = true
		if blk.Type == typ {
			ders = append(ders, blk.Bytes)
		}
	}
	switch {
	case sawPEM && len(ders) == 0:
		return nil, true, errors.New(missing)
	case !sawPEM && len(bytes.TrimSpace(b)) == 0:
		return nil, false, errors.New("empty file")
	case !sawPEM:
		return [][]byte{b}, false, nil
	}
	return ders, true, nil
}

func loadKeyFile(name string) (crypto.Signer, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("cert: %w", err)
	}
	key, err := parseKey(b)
	if err != nil {
		return nil, fmt.Errorf("cert: private key %s: %w", name, err)
	}
	return key, nil
}

// parseKey decodes a private key; its errors never quote the key material.
func parseKey(b []byte) (crypto.Signer, error) {
	sawPEM := false
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		sawPEM = true
		if _, enc := blk.Headers["DEK-Info"]; enc || blk.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, errors.New("encrypted private keys are not supported")
		}
		var (
			k   any
			err error
		)
		switch blk.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(blk.Bytes)
		default:
			continue // e.g. "EC PARAMETERS" before the key
		}
		if err != nil {
			return nil, fmt.Errorf("PEM %q block does not parse: %w", blk.Type, err)
		}
		return signerOf(k)
	}
	if sawPEM {
		return nil, errors.New("no PEM private key block")
	}
	if k, err := x509.ParsePKCS8PrivateKey(b); err == nil {
		return signerOf(k)
	}
	if k, err := x509.ParsePKCS1PrivateKey(b); err == nil {
		return signerOf(k)
	}
	if k, err := x509.ParseECPrivateKey(b); err == nil {
		return signerOf(k)
	}
	return nil, errors.New("not a PEM or DER (PKCS#8, PKCS#1, SEC1) private key")
}

func signerOf(k any) (crypto.Signer, error) {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		if _, err := ecdsaParams(&k.PublicKey); err != nil {
			return nil, err
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("unsupported private key type %T", k)
}

func samePublicKey(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && b != nil && eq.Equal(b)
}
