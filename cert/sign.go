package cert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"

	_ "crypto/sha1" // SHA-1 for AUTH method 1 and for CERTREQ hashes
	_ "crypto/sha256"
	_ "crypto/sha512"

	"github.com/mobikevpn/mobikevpn/wire"
)

// ErrSignature is wrapped by every Verify error that means the AUTH data is well formed
// and fits the key but the signature does not verify.
var ErrSignature = errors.New("cert: signature does not verify")

// SupportedHashes returns the hash algorithms we announce in SIGNATURE_HASH_ALGORITHMS
// (RFC 7427 4, RFC 8420): SHA2-256, SHA2-384, SHA2-512 and Identity. Verify accepts
// exactly these under RFC 7427.
func SupportedHashes() []uint16 {
	return []uint16{wire.HashSHA2_256, wire.HashSHA2_384, wire.HashSHA2_512, wire.HashIdentity}
}

// sigAlg is a signature algorithm family of an RFC 7427 AlgorithmIdentifier.
type sigAlg uint8

const (
	algRSAPKCS1 sigAlg = iota + 1 // RSASSA-PKCS1-v1_5
	algRSAPSS                     // RSASSA-PSS
	algECDSA                      // ECDSA, DER ECDSA-Sig-Value as in PKIX
	algEd25519                    // Ed25519, pure (Identity hash)
)

func (a sigAlg) String() string {
	switch a {
	case algRSAPKCS1:
		return "RSASSA-PKCS1-v1_5"
	case algRSAPSS:
		return "RSASSA-PSS"
	case algECDSA:
		return "ECDSA"
	case algEd25519:
		return "Ed25519"
	}
	return "unknown"
}

// scheme is one signature scheme: algorithm, hash (0 for Ed25519) and, for PSS, the
// salt length.
type scheme struct {
	alg  sigAlg
	hash crypto.Hash
	salt int
}

func (s scheme) String() string {
	switch s.alg {
	case algEd25519:
		return s.alg.String()
	case algRSAPSS:
		return fmt.Sprintf("%v with %v, salt %d", s.alg, s.hash, s.salt)
	}
	return fmt.Sprintf("%v with %v", s.alg, s.hash)
}

// Object identifiers (RFC 3279, RFC 4055, RFC 5758, RFC 8410).
var (
	oidSHA1WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}
	oidSHA256WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSHA384WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidSHA512WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
	oidSHA224WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 14}
	oidRSAPSS        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	oidMGF1          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	oidECDSAWithSHA1 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}
	oidECDSAWith224  = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 1}
	oidECDSAWith256  = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWith384  = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSAWith512  = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidEd25519       = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidSHA1          = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA224        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 4}
	oidSHA256        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
)

// hashOIDs maps digest OIDs, as used inside RSASSA-PSS parameters, to hashes.
var hashOIDs = []struct {
	oid  asn1.ObjectIdentifier
	hash crypto.Hash
}{
	{oidSHA1, crypto.SHA1}, {oidSHA224, crypto.SHA224}, {oidSHA256, crypto.SHA256},
	{oidSHA384, crypto.SHA384}, {oidSHA512, crypto.SHA512},
}

// sigOIDs maps the signature OIDs without parameters to schemes.
var sigOIDs = []struct {
	oid asn1.ObjectIdentifier
	s   scheme
}{
	{oidSHA1WithRSA, scheme{alg: algRSAPKCS1, hash: crypto.SHA1}},
	{oidSHA224WithRSA, scheme{alg: algRSAPKCS1, hash: crypto.SHA224}},
	{oidSHA256WithRSA, scheme{alg: algRSAPKCS1, hash: crypto.SHA256}},
	{oidSHA384WithRSA, scheme{alg: algRSAPKCS1, hash: crypto.SHA384}},
	{oidSHA512WithRSA, scheme{alg: algRSAPKCS1, hash: crypto.SHA512}},
	{oidECDSAWithSHA1, scheme{alg: algECDSA, hash: crypto.SHA1}},
	{oidECDSAWith224, scheme{alg: algECDSA, hash: crypto.SHA224}},
	{oidECDSAWith256, scheme{alg: algECDSA, hash: crypto.SHA256}},
	{oidECDSAWith384, scheme{alg: algECDSA, hash: crypto.SHA384}},
	{oidECDSAWith512, scheme{alg: algECDSA, hash: crypto.SHA512}},
	{oidEd25519, scheme{alg: algEd25519}},
}

// pssParams is RSASSA-PSS-params (RFC 4055 3.1). Absent hash and mask generation
// algorithms mean SHA-1 and MGF1 with SHA-1.
type pssParams struct {
	Hash         pkix.AlgorithmIdentifier `asn1:"explicit,tag:0,optional"`
	MGF          pkix.AlgorithmIdentifier `asn1:"explicit,tag:1,optional"`
	SaltLength   int                      `asn1:"explicit,tag:2,optional,default:20"`
	TrailerField int                      `asn1:"explicit,tag:3,optional,default:1"`
}

// algorithmIdentifier returns the DER AlgorithmIdentifier of s as RFC 7427 Appendix A
// and strongSwan encode it: NULL parameters for PKCS#1 v1.5, none for ECDSA and Ed25519
// (RFC 5758, RFC 8410), and for RSASSA-PSS explicit hash and MGF1 hash (each with NULL
// parameters) and salt length, the default trailerField left out as DER requires.
func (s scheme) algorithmIdentifier() ([]byte, error) {
	ai := pkix.AlgorithmIdentifier{}
	switch s.alg {
	case algRSAPKCS1:
		for _, e := range sigOIDs {
			if e.s.alg == algRSAPKCS1 && e.s.hash == s.hash {
				ai.Algorithm = e.oid
			}
		}
		ai.Parameters = asn1.NullRawValue
	case algECDSA, algEd25519:
		for _, e := range sigOIDs {
			if e.s.alg == s.alg && e.s.hash == s.hash {
				ai.Algorithm = e.oid
			}
		}
	case algRSAPSS:
		var h pkix.AlgorithmIdentifier
		for _, e := range hashOIDs {
			if e.hash == s.hash {
				h = pkix.AlgorithmIdentifier{Algorithm: e.oid, Parameters: asn1.NullRawValue}
			}
		}
		if h.Algorithm == nil || s.hash == crypto.SHA1 {
			return nil, fmt.Errorf("cert: no RSASSA-PSS encoding for %v", s.hash)
		}
		hb, err := asn1.Marshal(h)
		if err != nil {
			return nil, err
		}
		p, err := asn1.Marshal(pssParams{
			Hash:         h,
			MGF:          pkix.AlgorithmIdentifier{Algorithm: oidMGF1, Parameters: asn1.RawValue{FullBytes: hb}},
			SaltLength:   s.salt,
			TrailerField: 1,
		})
		if err != nil {
			return nil, err
		}
		ai = pkix.AlgorithmIdentifier{Algorithm: oidRSAPSS, Parameters: asn1.RawValue{FullBytes: p}}
	}
	if ai.Algorithm == nil {
		return nil, fmt.Errorf("cert: no AlgorithmIdentifier for %v", s)
	}
	return asn1.Marshal(ai)
}

// parseAlgorithmIdentifier decodes an RFC 7427 AlgorithmIdentifier. It accepts absent
// or NULL parameters for PKCS#1 v1.5, ECDSA and Ed25519, and any DER RSASSA-PSS
// parameters (including the explicit default trailerField that RFC 7427 A.4 shows and
// strongSwan sends with charon.rsa_pss_trailerfield), whatever their hashes: the caller
// decides which hashes it accepts.
func parseAlgorithmIdentifier(der []byte) (scheme, error) {
	var ai pkix.AlgorithmIdentifier
	rest, err := asn1.Unmarshal(der, &ai)
	if err != nil {
		return scheme{}, fmt.Errorf("cert: AUTH AlgorithmIdentifier does not parse: %w", err)
	}
	if len(rest) != 0 {
		return scheme{}, errors.New("cert: AUTH AlgorithmIdentifier is followed by data inside its length")
	}
	if ai.Algorithm.Equal(oidRSAPSS) {
		return parsePSSParams(ai.Parameters)
	}
	for _, e := range sigOIDs {
		if ai.Algorithm.Equal(e.oid) {
			if !absentOrNull(ai.Parameters) {
				return scheme{}, fmt.Errorf("cert: AUTH AlgorithmIdentifier %v has unexpected parameters", e.s)
			}
			return e.s, nil
		}
	}
	return scheme{}, fmt.Errorf("cert: unsupported AUTH signature algorithm %v", ai.Algorithm)
}

func absentOrNull(p asn1.RawValue) bool {
	return len(p.FullBytes) == 0 || (len(p.FullBytes) == 2 && p.FullBytes[0] == 0x05 && p.FullBytes[1] == 0)
}

func parsePSSParams(raw asn1.RawValue) (scheme, error) {
	if len(raw.FullBytes) == 0 {
		return scheme{}, errors.New("cert: RSASSA-PSS AlgorithmIdentifier without parameters")
	}
	var p pssParams
	rest, err := asn1.Unmarshal(raw.FullBytes, &p)
	if err != nil {
		return scheme{}, fmt.Errorf("cert: RSASSA-PSS parameters do not parse: %w", err)
	}
	if len(rest) != 0 {
		return scheme{}, errors.New("cert: trailing data after RSASSA-PSS parameters")
	}
	s := scheme{alg: algRSAPSS, hash: crypto.SHA1, salt: p.SaltLength}
	if p.Hash.Algorithm != nil {
		if s.hash, err = digestOf(p.Hash); err != nil {
			return scheme{}, err
		}
	}
	mgfHash := crypto.SHA1
	if p.MGF.Algorithm != nil {
		if !p.MGF.Algorithm.Equal(oidMGF1) {
			return scheme{}, fmt.Errorf("cert: RSASSA-PSS mask generation function %v is not MGF1", p.MGF.Algorithm)
		}
		var h pkix.AlgorithmIdentifier
		rest, err := asn1.Unmarshal(p.MGF.Parameters.FullBytes, &h)
		if err != nil || len(rest) != 0 {
			return scheme{}, errors.New("cert: RSASSA-PSS MGF1 hash does not parse")
		}
		if mgfHash, err = digestOf(h); err != nil {
			return scheme{}, err
		}
	}
	switch {
	case mgfHash != s.hash:
		return scheme{}, fmt.Errorf("cert: RSASSA-PSS with %v and MGF1 with %v is not supported", s.hash, mgfHash)
	case p.TrailerField != 1:
		return scheme{}, fmt.Errorf("cert: RSASSA-PSS trailerField %d, want 1", p.TrailerField)
	case s.salt < 0 || s.salt > 1024:
		return scheme{}, fmt.Errorf("cert: RSASSA-PSS salt length %d", s.salt)
	}
	return s, nil
}

func digestOf(ai pkix.AlgorithmIdentifier) (crypto.Hash, error) {
	if !absentOrNull(ai.Parameters) {
		return 0, fmt.Errorf("cert: digest algorithm %v has unexpected parameters", ai.Algorithm)
	}
	for _, e := range hashOIDs {
		if ai.Algorithm.Equal(e.oid) {
			return e.hash, nil
		}
	}
	return 0, fmt.Errorf("cert: unsupported digest algorithm %v", ai.Algorithm)
}

// ianaHash is the SIGNATURE_HASH_ALGORITHMS identifier of the scheme's hash.
func (s scheme) ianaHash() uint16 {
	switch {
	case s.alg == algEd25519:
		return wire.HashIdentity
	case s.hash == crypto.SHA256:
		return wire.HashSHA2_256
	case s.hash == crypto.SHA384:
		return wire.HashSHA2_384
	case s.hash == crypto.SHA512:
		return wire.HashSHA2_512
	case s.hash == crypto.SHA1:
		return wire.HashSHA1
	}
	return 0
}

// ecParams describes an ECDSA curve for the methods of RFC 4754.
type ecParams struct {
	method wire.AuthMethod
	hash   crypto.Hash
	size   int // octets of r and of s
}

func ecdsaParams(pub *ecdsa.PublicKey) (ecParams, error) {
	switch pub.Curve {
	case elliptic.P256():
		return ecParams{wire.AuthECDSA256, crypto.SHA256, 32}, nil
	case elliptic.P384():
		return ecParams{wire.AuthECDSA384, crypto.SHA384, 48}, nil
	case elliptic.P521():
		return ecParams{wire.AuthECDSA521, crypto.SHA512, 66}, nil
	}
	name := "unknown"
	if pub.Curve != nil {
		name = pub.Curve.Params().Name
	}
	return ecParams{}, fmt.Errorf("cert: unsupported ECDSA curve %s", name)
}

// Sign signs the AUTH payload's signed octets (RFC 7296 2.15) with the credential's key
// and returns the AUTH method and data. peerHashes are the hash algorithms of the peer's
// SIGNATURE_HASH_ALGORITHMS notify; nil means it sent none.
//
// With peerHashes (RFC 7427, method 14) the scheme is, after strongSwan's choice: RSA
// PKCS#1 v1.5 (PSS if RSAPSS is set, salt length = hash length) with SHA2-256 for keys
// up to 3072 bits, SHA2-384 up to 7680 and SHA2-512 above; ECDSA (DER signature) with the
// curve's hash (P-256 SHA2-256, P-384 SHA2-384, P-521 SHA2-512); Ed25519 with Identity.
// If the peer does not allow that hash, the next stronger one it allows is taken, then
// a weaker SHA-2; it is an error when the peer allows none.
//
// Without (classic): RSA is method 1 (PKCS#1 v1.5 with SHA-1, RFC 7296 3.8), ECDSA is
// method 9, 10 or 11 after the curve (RFC 4754, r|s of fixed size) and Ed25519 is an
// error, as RFC 8420 allows it only under RFC 7427.
func (c *Credential) Sign(signed []byte, peerHashes []uint16) (wire.AuthMethod, []byte, error) {
	if c.Key == nil {
		return 0, nil, errors.New("cert: credential has no private key")
	}
	if peerHashes == nil {
		return c.signClassic(signed)
	}
	s, err := c.chooseScheme(peerHashes)
	if err != nil {
		return 0, nil, err
	}
	ai, err := s.algorithmIdentifier()
	if err != nil {
		return 0, nil, err
	}
	if len(ai) > 255 {
		return 0, nil, errors.New("cert: AlgorithmIdentifier longer than 255 octets")
	}
	sig, err := c.signScheme(s, signed)
	if err != nil {
		return 0, nil, err
	}
	out := make([]byte, 0, 1+len(ai)+len(sig))
	out = append(out, byte(len(ai)))
	out = append(out, ai...)
	out = append(out, sig...)
	return wire.AuthDigitalSignature, out, nil
}

func (c *Credential) signClassic(signed []byte) (wire.AuthMethod, []byte, error) {
	switch pub := c.Key.Public().(type) {
	case *rsa.PublicKey:
		sig, err := c.signScheme(scheme{alg: algRSAPKCS1, hash: crypto.SHA1}, signed)
		return wire.AuthRSASig, sig, err
	case *ecdsa.PublicKey:
		p, err := ecdsaParams(pub)
		if err != nil {
			return 0, nil, err
		}
		der, err := c.signScheme(scheme{alg: algECDSA, hash: p.hash}, signed)
		if err != nil {
			return 0, nil, err
		}
		raw, err := derToRaw(der, p.size)
		return p.method, raw, err
	case ed25519.PublicKey:
		return 0, nil, errors.New("cert: an Ed25519 key needs RFC 7427 signature authentication, and the peer did not send SIGNATURE_HASH_ALGORITHMS")
	default:
		return 0, nil, fmt.Errorf("cert: unsupported key type %T", pub)
	}
}

// chooseScheme picks our RFC 7427 scheme among the hashes the peer allows.
func (c *Credential) chooseScheme(peerHashes []uint16) (scheme, error) {
	sha2 := func(first crypto.Hash) []crypto.Hash {
		switch first {
		case crypto.SHA384:
			return []crypto.Hash{crypto.SHA384, crypto.SHA512, crypto.SHA256}
		case crypto.SHA512:
			return []crypto.Hash{crypto.SHA512, crypto.SHA384, crypto.SHA256}
		}
		return []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512}
	}
	var cands []scheme
	switch pub := c.Key.Public().(type) {
	case *rsa.PublicKey:
		alg := algRSAPKCS1
		if c.RSAPSS {
			alg = algRSAPSS
		}
		first := crypto.SHA256
		switch bits := pub.N.BitLen(); {
		case bits > 7680:
			first = crypto.SHA512
		case bits > 3072:
			first = crypto.SHA384
		}
		for _, h := range sha2(first) {
			cands = append(cands, scheme{alg: alg, hash: h, salt: h.Size()})
		}
	case *ecdsa.PublicKey:
		p, err := ecdsaParams(pub)
		if err != nil {
			return scheme{}, err
		}
		for _, h := range sha2(p.hash) {
			cands = append(cands, scheme{alg: algECDSA, hash: h})
		}
	case ed25519.PublicKey:
		cands = []scheme{{alg: algEd25519}}
	default:
		return scheme{}, fmt.Errorf("cert: unsupported key type %T", pub)
	}
	for _, s := range cands {
		if slices.Contains(peerHashes, s.ianaHash()) {
			return s, nil
		}
	}
	return scheme{}, fmt.Errorf("cert: no hash algorithm for a %v signature among those the peer allows %v", cands[0].alg, peerHashes)
}

// signScheme signs with the credential's key; an ECDSA signature is DER.
func (c *Credential) signScheme(s scheme, signed []byte) ([]byte, error) {
	var (
		digest = signed
		opts   crypto.SignerOpts
	)
	if s.alg == algEd25519 {
		opts = crypto.Hash(0)
	} else {
		h := s.hash.New()
		h.Write(signed)
		digest = h.Sum(nil)
		opts = s.hash
		if s.alg == algRSAPSS {
			opts = &rsa.PSSOptions{SaltLength: s.salt, Hash: s.hash}
		}
	}
	sig, err := c.Key.Sign(rand.Reader, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("cert: signing with %v: %w", s, err)
	}
	return sig, nil
}

// ecdsaSig is ECDSA-Sig-Value (RFC 3279 2.2.3).
type ecdsaSig struct{ R, S *big.Int }

func derToRaw(der []byte, size int) ([]byte, error) {
	var sig ecdsaSig
	rest, err := asn1.Unmarshal(der, &sig)
	if err != nil || len(rest) != 0 || sig.R.Sign() <= 0 || sig.S.Sign() <= 0 ||
		sig.R.BitLen() > 8*size || sig.S.BitLen() > 8*size {
		return nil, errors.New("cert: ECDSA signer returned a malformed signature")
	}
	raw := make([]byte, 2*size)
	sig.R.FillBytes(raw[:size])
	sig.S.FillBytes(raw[size:])
	return raw, nil
}

// Verify checks AUTH data of the given method against the signed octets (RFC 7296 2.15)
// and the public key of leaf, which the caller has validated. Accepted are:
//   - method 1: RSASSA-PKCS1-v1_5 with SHA-1 (RFC 7296);
//   - methods 9, 10, 11: ECDSA r|s with SHA2-256/384/512 on P-256/384/521 (RFC 4754);
//     the curve must be the method's;
//   - method 14 (RFC 7427) with one of the hashes of SupportedHashes: RSASSA-PKCS1-v1_5
//     and RSASSA-PSS (any salt length, MGF1 with the same hash) with SHA2-256/384/512,
//     ECDSA (DER signature, any of those hashes with any of those curves) and Ed25519.
//
// A signature that does not verify gives an error wrapping ErrSignature; malformed data
// or a method that does not fit the key gives another error.
func Verify(method wire.AuthMethod, authData, signed []byte, leaf *x509.Certificate) error {
	if leaf == nil {
		return errors.New("cert: no certificate to verify the AUTH payload with")
	}
	pub := leaf.PublicKey
	switch method {
	case wire.AuthRSASig:
		if _, ok := pub.(*rsa.PublicKey); !ok {
			return fmt.Errorf("cert: AUTH method RSA signature, but the certificate has a %s key", keyName(pub))
		}
		return verifyScheme(scheme{alg: algRSAPKCS1, hash: crypto.SHA1}, pub, signed, authData)
	case wire.AuthECDSA256, wire.AuthECDSA384, wire.AuthECDSA521:
		ec, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("cert: AUTH method %d (ECDSA), but the certificate has a %s key", method, keyName(pub))
		}
		p, err := ecdsaParams(ec)
		if err != nil {
			return err
		}
		if p.method != method {
			return fmt.Errorf("cert: AUTH method %d does not fit the certificate's %s key (method %d)", method, keyName(pub), p.method)
		}
		if len(authData) != 2*p.size {
			return fmt.Errorf("cert: ECDSA AUTH data is %d octets, want %d", len(authData), 2*p.size)
		}
		r := new(big.Int).SetBytes(authData[:p.size])
		s := new(big.Int).SetBytes(authData[p.size:])
		if !ecdsa.Verify(ec, digest(p.hash, signed), r, s) {
			return fmt.Errorf("%w (ECDSA method %d)", ErrSignature, method)
		}
		return nil
	case wire.AuthDigitalSignature:
		s, sig, err := parseAuthData(authData)
		if err != nil {
			return err
		}
		if !slices.Contains(SupportedHashes(), s.ianaHash()) {
			return fmt.Errorf("cert: AUTH uses %v, a hash we did not announce in SIGNATURE_HASH_ALGORITHMS", s)
		}
		return verifyScheme(s, pub, signed, sig)
	}
	return fmt.Errorf("cert: unsupported AUTH method %d for certificate authentication", method)
}

// parseAuthData splits RFC 7427 AUTH data into its scheme and signature value.
func parseAuthData(authData []byte) (scheme, []byte, error) {
	if len(authData) < 1 {
		return scheme{}, nil, errors.New("cert: empty AUTH data")
	}
	n := int(authData[0])
	if n == 0 || 1+n > len(authData) {
		return scheme{}, nil, fmt.Errorf("cert: AUTH ASN.1 length %d does not fit in %d octets of AUTH data", n, len(authData))
	}
	s, err := parseAlgorithmIdentifier(authData[1 : 1+n])
	if err != nil {
		return scheme{}, nil, err
	}
	sig := authData[1+n:]
	if len(sig) == 0 {
		return scheme{}, nil, errors.New("cert: AUTH data has no signature value")
	}
	return s, sig, nil
}

func verifyScheme(s scheme, pub any, signed, sig []byte) error {
	var ok bool
	switch s.alg {
	case algRSAPKCS1, algRSAPSS:
		k, isRSA := pub.(*rsa.PublicKey)
		if !isRSA {
			return fmt.Errorf("cert: AUTH uses %v, but the certificate has a %s key", s, keyName(pub))
		}
		d := digest(s.hash, signed)
		var err error
		if s.alg == algRSAPKCS1 {
			err = rsa.VerifyPKCS1v15(k, s.hash, d, sig)
		} else {
			// A declared salt length of 0 is rsa.PSSSaltLengthAuto: any salt verifies.
			err = rsa.VerifyPSS(k, s.hash, d, sig, &rsa.PSSOptions{SaltLength: s.salt, Hash: s.hash})
		}
		if err != nil && !errors.Is(err, rsa.ErrVerification) {
			return fmt.Errorf("cert: cannot verify %v with the certificate's %s key: %w", s, keyName(pub), err)
		}
		ok = err == nil
	case algECDSA:
		k, isEC := pub.(*ecdsa.PublicKey)
		if !isEC {
			return fmt.Errorf("cert: AUTH uses %v, but the certificate has a %s key", s, keyName(pub))
		}
		if _, err := ecdsaParams(k); err != nil {
			return err
		}
		ok = ecdsa.VerifyASN1(k, digest(s.hash, signed), sig)
	case algEd25519:
		k, isEd := pub.(ed25519.PublicKey)
		if !isEd || len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("cert: AUTH uses %v, but the certificate has a %s key", s, keyName(pub))
		}
		ok = len(sig) == ed25519.SignatureSize && ed25519.Verify(k, signed, sig)
	default:
		return fmt.Errorf("cert: unsupported signature scheme %v", s)
	}
	if !ok {
		return fmt.Errorf("%w (%v)", ErrSignature, s)
	}
	return nil
}

func digest(h crypto.Hash, b []byte) []byte {
	d := h.New()
	d.Write(b)
	return d.Sum(nil)
}

func keyName(pub any) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		if k.Curve != nil {
			return "ECDSA " + k.Curve.Params().Name
		}
		return "ECDSA"
	case ed25519.PublicKey:
		return "Ed25519"
	case nil:
		return "missing"
	}
	return fmt.Sprintf("%T", pub)
}
