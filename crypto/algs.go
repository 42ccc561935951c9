// Package crypto implements the IKEv2 cryptographic suite: PRFs and key derivation,
// key exchange methods, SK payload protection, proposal parsing and selection, and
// the AUTH and NAT detection computations (RFC 7296, RFC 4868, RFC 5282, RFC 7634;
// legacy algorithms, accepted only when named: RFC 2404, RFC 3686, RFC 4309, RFC 5930).
package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
	"slices"
	"strconv"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/mobikevpn/mobikevpn/wire"
)

// This file holds the one table of algorithms the package implements. Every other
// part (proposal parsing and selection, suites, key lengths for IKE and ESP, the SK
// cipher) looks transforms up here. The tables are read-only.

// encrMode is how an encryption transform protects a message.
type encrMode uint8

const (
	modeCBC    encrMode = iota // AES-CBC, with an integrity transform
	modeCTR                    // AES-CTR (RFC 3686, RFC 5930), with an integrity transform
	modeGCM                    // AES-GCM (RFC 4106, RFC 5282)
	modeCCM                    // AES-CCM (RFC 4309, RFC 5282)
	modeChaCha                 // ChaCha20-Poly1305 (RFC 7634)
)

// encrAlg is an encryption transform: Transform ID plus Key Length attribute.
type encrAlg struct {
	id      uint16
	keyBits uint16 // Key Length attribute in the transform; 0 = no attribute
	name    string // strongSwan keyword
	mode    encrMode
	keyLen  int  // cipher key octets
	saltLen int  // salt (AEAD) or nonce (AES-CTR) octets taken from the keying material after the key
	aead    bool // no integrity transform
	ivLen   int  // explicit IV octets in the SK payload or ESP packet
	icvLen  int  // AEAD tag octets (0 otherwise: the ICV comes from the integrity algorithm)
	block   int  // padding alignment of the plaintext including the Pad Length octet
	legacy  bool // accepted only when named, never in "default" (see LegacyAlgorithms)
}

var encrAlgs = slices.Concat(
	aesAlgs(wire.ENCR_AES_GCM_16, modeGCM, "gcm16", 16, false),
	// RFC 7634 section 2: the Key Length attribute MUST NOT be sent.
	[]encrAlg{{id: wire.ENCR_CHACHA20_POLY1305, keyBits: 0, name: "chacha20poly1305", mode: modeChaCha, keyLen: 32, saltLen: 4, aead: true, ivLen: 8, icvLen: 16, block: 1}},
	aesAlgs(wire.ENCR_AES_CBC, modeCBC, "", 0, false),
	aesAlgs(wire.ENCR_AES_CTR, modeCTR, "ctr", 0, true),
	aesAlgs(wire.ENCR_AES_CCM_8, modeCCM, "ccm8", 8, true),
	aesAlgs(wire.ENCR_AES_CCM_12, modeCCM, "ccm12", 12, true),
	aesAlgs(wire.ENCR_AES_CCM_16, modeCCM, "ccm16", 16, true),
	aesAlgs(wire.ENCR_AES_GCM_8, modeGCM, "gcm8", 8, true),
	aesAlgs(wire.ENCR_AES_GCM_12, modeGCM, "gcm12", 12, true),
)

// aesAlgs returns the 128, 192 and 256-bit variants of an AES transform, named
// "aes<bits><suffix>". The AEADs and AES-CTR carry an 8-octet IV in each message; the
// nonce is salt | IV, with a 4-octet salt for GCM (RFC 4106 section 4), a 3-octet one
// for CCM (RFC 4309 section 4), and for CTR the counter block is the 4-octet nonce |
// IV | 32-bit block counter (RFC 3686 section 4). They need no padding in the SK
// payload; CBC pads to its block and sends a 16-octet IV.
func aesAlgs(id uint16, mode encrMode, suffix string, icvLen int, legacy bool) []encrAlg {
	var out []encrAlg
	for _, bits := range []uint16{128, 192, 256} {
		a := encrAlg{id: id, keyBits: bits, name: "aes" + strconv.Itoa(int(bits)) + suffix, mode: mode,
			keyLen: int(bits) / 8, ivLen: 8, icvLen: icvLen, block: 1, legacy: legacy}
		switch mode {
		case modeCBC:
			a.ivLen, a.block = aes.BlockSize, aes.BlockSize
		case modeCTR, modeGCM:
			a.saltLen = 4
		case modeCCM:
			a.saltLen = 3
		}
		a.aead = mode == modeGCM || mode == modeCCM
		out = append(out, a)
	}
	return out
}

func lookupEncr(id uint16, keyBits int) *encrAlg {
	for i := range encrAlgs {
		if encrAlgs[i].id == id && int(encrAlgs[i].keyBits) == keyBits {
			return &encrAlgs[i]
		}
	}
	return nil
}

// keymatLen is the length of the encryption keying material: key plus salt.
func (a *encrAlg) keymatLen() int { return a.keyLen + a.saltLen }

// transform returns the wire transform naming this algorithm.
func (a *encrAlg) transform() wire.Transform {
	t := wire.Transform{Type: wire.TransformENCR, ID: a.id}
	if a.keyBits != 0 {
		t.Attrs = []wire.Attribute{{Type: wire.AttrKeyLength, TV: true, Value: a.keyBits}}
	}
	return t
}

// newSaltedAEAD builds the AEAD of an AEAD encryption algorithm from keying material
// laid out as key | salt (RFC 4106 section 8.1, RFC 4309 section 7.1, RFC 5282
// section 7.1, RFC 7634 section 3).
func (a *encrAlg) newSaltedAEAD(keymat []byte) (*saltedAEAD, error) {
	if !a.aead {
		return nil, fmt.Errorf("ikecrypto: %s is not an AEAD", a.name)
	}
	if len(keymat) != a.keymatLen() {
		return nil, fmt.Errorf("ikecrypto: %s needs %d octets of keying material, got %d", a.name, a.keymatLen(), len(keymat))
	}
	var aead cipher.AEAD
	var err error
	switch a.mode {
	case modeGCM, modeCCM:
		var b cipher.Block
		if b, err = aes.NewCipher(keymat[:a.keyLen]); err != nil {
			return nil, err
		}
		switch {
		case a.mode == modeCCM:
			aead, err = newCCM(b, a.saltLen+a.ivLen, a.icvLen)
		case a.icvLen == 16:
			aead, err = cipher.NewGCM(b)
		case a.icvLen >= 12:
			aead, err = cipher.NewGCMWithTagSize(b, a.icvLen)
		default: // below crypto/cipher's minimum tag size
			aead, err = newGCMShortTag(b, a.icvLen)
		}
	case modeChaCha:
		aead, err = chacha20poly1305.New(keymat[:a.keyLen])
	default:
		return nil, fmt.Errorf("ikecrypto: no AEAD for %s", a.name)
	}
	if err != nil {
		return nil, err
	}
	s := &saltedAEAD{aead: aead, saltLen: a.saltLen}
	copy(s.salt[:], keymat[a.keyLen:])
	return s, nil
}

// saltedAEAD is the AEAD construction shared by the SK payload and ESP: the nonce is
// the salt from the keying material (4 octets, 3 for CCM) followed by the 8-octet IV
// that travels in the packet.
type saltedAEAD struct {
	aead    cipher.AEAD
	salt    [4]byte
	saltLen int
}

func (s *saltedAEAD) nonce(iv []byte) ([12]byte, int) {
	var n [12]byte
	copy(n[:s.saltLen], s.salt[:])
	copy(n[s.saltLen:], iv)
	return n, s.saltLen + len(iv)
}

// seal appends ciphertext|tag of plaintext to dst. iv must be 8 octets.
func (s *saltedAEAD) seal(dst, iv, plaintext, aad []byte) []byte {
	n, l := s.nonce(iv)
	return s.aead.Seal(dst, n[:l], plaintext, aad)
}

// open authenticates and decrypts ciphertext|tag, appending the plaintext to dst.
func (s *saltedAEAD) open(dst, iv, ciphertext, aad []byte) ([]byte, error) {
	n, l := s.nonce(iv)
	return s.aead.Open(dst, n[:l], ciphertext, aad)
}

// NewAEAD returns the AEAD of an AEAD encryption transform (ENCR_AES_GCM_16 with a
// 128/192/256-bit key, ENCR_CHACHA20_POLY1305, and the legacy ENCR_AES_GCM_8/12 and
// ENCR_AES_CCM_8/12/16) keyed from keymat = key | salt, together with the salt: 4
// octets, 3 for CCM. The nonce of every message is salt | 8-octet IV (RFC 4106, RFC
// 4309, RFC 5282, RFC 7634); its Overhead is the ICV length. It serves ESP as well as
// IKE.
func NewAEAD(encr uint16, encrKeyBits int, keymat []byte) (cipher.AEAD, []byte, error) {
	a := lookupEncr(encr, encrKeyBits)
	if a == nil {
		return nil, nil, fmt.Errorf("ikecrypto: unsupported encryption transform %d with key length %d", encr, encrKeyBits)
	}
	s, err := a.newSaltedAEAD(keymat)
	if err != nil {
		return nil, nil, err
	}
	return s.aead, append([]byte(nil), s.salt[:s.saltLen]...), nil
}

// integAlg is an integrity transform: a truncated HMAC (RFC 4868 for SHA-2, RFC 2404
// for SHA-1).
type integAlg struct {
	id     uint16
	name   string
	hash   func() hash.Hash
	keyLen int
	icvLen int
	prf    uint16 // the PRF of the same hash, for IKE proposals without an explicit PRF
	legacy bool
}

var integAlgs = [...]integAlg{
	{id: wire.AUTH_HMAC_SHA2_256_128, name: "sha256", hash: sha256.New, keyLen: 32, icvLen: 16, prf: wire.PRF_HMAC_SHA2_256},
	{id: wire.AUTH_HMAC_SHA2_384_192, name: "sha384", hash: sha512.New384, keyLen: 48, icvLen: 24, prf: wire.PRF_HMAC_SHA2_384},
	{id: wire.AUTH_HMAC_SHA2_512_256, name: "sha512", hash: sha512.New, keyLen: 64, icvLen: 32, prf: wire.PRF_HMAC_SHA2_512},
	{id: wire.AUTH_HMAC_SHA1_96, name: "sha1", hash: sha1.New, keyLen: 20, icvLen: 12, prf: wire.PRF_HMAC_SHA1, legacy: true},
}

func lookupInteg(id uint16) *integAlg {
	for i := range integAlgs {
		if integAlgs[i].id == id {
			return &integAlgs[i]
		}
	}
	return nil
}

// prfAlg is a PRF transform: HMAC-SHA2 (RFC 4868) or HMAC-SHA1 (RFC 2104).
type prfAlg struct {
	id     uint16
	name   string
	hash   func() hash.Hash
	legacy bool
}

var prfAlgs = [...]prfAlg{
	{id: wire.PRF_HMAC_SHA2_256, name: "prfsha256", hash: sha256.New},
	{id: wire.PRF_HMAC_SHA2_384, name: "prfsha384", hash: sha512.New384},
	{id: wire.PRF_HMAC_SHA2_512, name: "prfsha512", hash: sha512.New},
	{id: wire.PRF_HMAC_SHA1, name: "prfsha1", hash: sha1.New, legacy: true},
}

func lookupPRF(id uint16) *prfAlg {
	for i := range prfAlgs {
		if prfAlgs[i].id == id {
			return &prfAlgs[i]
		}
	}
	return nil
}

// dhAlg is a key exchange method.
type dhAlg struct {
	id     uint16
	name   string
	keLen  int // octets of Key Exchange Data
	legacy bool
}

var dhAlgs = [...]dhAlg{
	{id: wire.DH_X25519, name: "x25519", keLen: 32},
	{id: wire.DH_ECP256, name: "ecp256", keLen: 64},
	{id: wire.DH_ECP384, name: "ecp384", keLen: 96},
	{id: wire.DH_MODP2048, name: "modp2048", keLen: 256},
	{id: wire.DH_MODP3072, name: "modp3072", keLen: 384},
	{id: wire.DH_MODP1024, name: "modp1024", keLen: 128, legacy: true},
	{id: wire.DH_MODP1536, name: "modp1536", keLen: 192, legacy: true},
}

func lookupDH(id uint16) *dhAlg {
	for i := range dhAlgs {
		if dhAlgs[i].id == id {
			return &dhAlgs[i]
		}
	}
	return nil
}

// GroupSupported reports whether NewKeyExchange implements the key exchange method g.
func GroupSupported(g uint16) bool { return lookupDH(g) != nil }

// transformKnown reports whether t is a transform this package implements, with no
// attribute it does not understand. ESN and DH_NONE count as known.
func transformKnown(t *wire.Transform) bool {
	for _, a := range t.Attrs {
		if a.Type != wire.AttrKeyLength || !a.TV {
			return false
		}
	}
	nAttr := len(t.Attrs)
	switch t.Type {
	case wire.TransformENCR:
		if nAttr > 1 {
			return false
		}
		return lookupEncr(t.ID, int(t.KeyLength())) != nil
	case wire.TransformPRF:
		return nAttr == 0 && lookupPRF(t.ID) != nil
	case wire.TransformINTEG:
		return nAttr == 0 && (t.ID == wire.AUTH_NONE || lookupInteg(t.ID) != nil)
	case wire.TransformDH:
		return nAttr == 0 && (t.ID == wire.DH_NONE || lookupDH(t.ID) != nil)
	case wire.TransformESN:
		return nAttr == 0 && (t.ID == wire.ESN_NO || t.ID == wire.ESN_YES)
	}
	if isAddKE(t.Type) { // RFC 9370: NONE, ML-KEM-768 or a DH group
		return nAttr == 0 && (t.ID == 0 || t.ID == wire.KE_MLKEM768 || lookupDH(t.ID) != nil)
	}
	return false
}
