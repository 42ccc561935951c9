// Package crypto implements the IKEv2 cryptographic suite: PRFs and key derivation,
// key exchange methods, SK payload protection, proposal parsing and selection, and
// the AUTH and NAT detection computations (RFC 7296, RFC 4868, RFC 5282, RFC 7634).
package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/mobikevpn/mobikevpn/wire"
)

// This file holds the one table of algorithms the package implements. Every other
// part (proposal parsing and selection, suites, key lengths for IKE and ESP, the SK
// cipher) looks transforms up here. The tables are read-only.

// encrAlg is an encryption transform: Transform ID plus Key Length attribute.
type encrAlg struct {
	id      uint16
	keyBits uint16 // Key Length attribute in the transform; 0 = no attribute
	name    string // strongSwan keyword
	keyLen  int    // cipher key octets
	saltLen int    // AEAD salt octets taken from the keying material after the key
	aead    bool
	ivLen   int // explicit IV octets in the SK payload or ESP packet
	icvLen  int // AEAD tag octets (0 for CBC: the ICV comes from the integrity algorithm)
	block   int // padding alignment of the plaintext including the Pad Length octet
}

var encrAlgs = [...]encrAlg{
	{id: wire.ENCR_AES_GCM_16, keyBits: 128, name: "aes128gcm16", keyLen: 16, saltLen: 4, aead: true, ivLen: 8, icvLen: 16, block: 1},
	{id: wire.ENCR_AES_GCM_16, keyBits: 192, name: "aes192gcm16", keyLen: 24, saltLen: 4, aead: true, ivLen: 8, icvLen: 16, block: 1},
	{id: wire.ENCR_AES_GCM_16, keyBits: 256, name: "aes256gcm16", keyLen: 32, saltLen: 4, aead: true, ivLen: 8, icvLen: 16, block: 1},
	// RFC 7634 section 2: the Key Length attribute MUST NOT be sent.
	{id: wire.ENCR_CHACHA20_POLY1305, keyBits: 0, name: "chacha20poly1305", keyLen: 32, saltLen: 4, aead: true, ivLen: 8, icvLen: 16, block: 1},
	{id: wire.ENCR_AES_CBC, keyBits: 128, name: "aes128", keyLen: 16, ivLen: 16, block: aes.BlockSize},
	{id: wire.ENCR_AES_CBC, keyBits: 192, name: "aes192", keyLen: 24, ivLen: 16, block: aes.BlockSize},
	{id: wire.ENCR_AES_CBC, keyBits: 256, name: "aes256", keyLen: 32, ivLen: 16, block: aes.BlockSize},
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
// laid out as key | salt (RFC 5282 section 7.1, RFC 7634 section 3).
func (a *encrAlg) newSaltedAEAD(keymat []byte) (*saltedAEAD, error) {
	if !a.aead {
		return nil, fmt.Errorf("ikecrypto: %s is not an AEAD", a.name)
	}
	if len(keymat) != a.keymatLen() {
		return nil, fmt.Errorf("ikecrypto: %s needs %d octets of keying material, got %d", a.name, a.keymatLen(), len(keymat))
	}
	var aead cipher.AEAD
	switch a.id {
	case wire.ENCR_AES_GCM_16:
		b, err := aes.NewCipher(keymat[:a.keyLen])
		if err != nil {
			return nil, err
		}
		aead, err = cipher.NewGCM(b)
		if err != nil {
			return nil, err
		}
	case wire.ENCR_CHACHA20_POLY1305:
		var err error
		aead, err = chacha20poly1305.New(keymat[:a.keyLen])
		if err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("ikecrypto: no AEAD for %s", a.name)
	}
	s := &saltedAEAD{aead: aead}
	copy(s.salt[:], keymat[a.keyLen:])
	return s, nil
}

// saltedAEAD is the AEAD construction shared by the SK payload and ESP: the 12-octet
// nonce is the 4-octet salt from the keying material followed by the 8-octet IV that
// travels in the packet.
type saltedAEAD struct {
	aead cipher.AEAD
	salt [4]byte
}

func (s *saltedAEAD) nonce(iv []byte) [12]byte {
	var n [12]byte
	copy(n[:4], s.salt[:])
	copy(n[4:], iv)
	return n
}

// seal appends ciphertext|tag of plaintext to dst. iv must be 8 octets.
func (s *saltedAEAD) seal(dst, iv, plaintext, aad []byte) []byte {
	n := s.nonce(iv)
	return s.aead.Seal(dst, n[:], plaintext, aad)
}

// open authenticates and decrypts ciphertext|tag, appending the plaintext to dst.
func (s *saltedAEAD) open(dst, iv, ciphertext, aad []byte) ([]byte, error) {
	n := s.nonce(iv)
	return s.aead.Open(dst, n[:], ciphertext, aad)
}

// NewAEAD returns the AEAD of an AEAD encryption transform (ENCR_AES_GCM_16 with a
// 128/192/256-bit key, ENCR_CHACHA20_POLY1305) keyed from keymat = key | 4-octet salt,
// together with the salt. The nonce of every message is salt | 8-octet IV (RFC 4106,
// RFC 5282, RFC 7634). It serves ESP as well as IKE.
func NewAEAD(encr uint16, encrKeyBits int, keymat []byte) (cipher.AEAD, []byte, error) {
	a := lookupEncr(encr, encrKeyBits)
	if a == nil {
		return nil, nil, fmt.Errorf("ikecrypto: unsupported encryption transform %d with key length %d", encr, encrKeyBits)
	}
	s, err := a.newSaltedAEAD(keymat)
	if err != nil {
		return nil, nil, err
	}
	return s.aead, append([]byte(nil), s.salt[:]...), nil
}

// integAlg is an integrity transform: HMAC-SHA2 truncated (RFC 4868).
type integAlg struct {
	id     uint16
	name   string
	hash   func() hash.Hash
	keyLen int
	icvLen int
	prf    uint16 // the PRF of the same hash, for IKE proposals without an explicit PRF
}

var integAlgs = [...]integAlg{
	{id: wire.AUTH_HMAC_SHA2_256_128, name: "sha256", hash: sha256.New, keyLen: 32, icvLen: 16, prf: wire.PRF_HMAC_SHA2_256},
	{id: wire.AUTH_HMAC_SHA2_384_192, name: "sha384", hash: sha512.New384, keyLen: 48, icvLen: 24, prf: wire.PRF_HMAC_SHA2_384},
	{id: wire.AUTH_HMAC_SHA2_512_256, name: "sha512", hash: sha512.New, keyLen: 64, icvLen: 32, prf: wire.PRF_HMAC_SHA2_512},
}

func lookupInteg(id uint16) *integAlg {
	for i := range integAlgs {
		if integAlgs[i].id == id {
			return &integAlgs[i]
		}
	}
	return nil
}

// prfAlg is a PRF transform (RFC 4868 HMAC-SHA2).
type prfAlg struct {
	id   uint16
	name string
	hash func() hash.Hash
}

var prfAlgs = [...]prfAlg{
	{id: wire.PRF_HMAC_SHA2_256, name: "prfsha256", hash: sha256.New},
	{id: wire.PRF_HMAC_SHA2_384, name: "prfsha384", hash: sha512.New384},
	{id: wire.PRF_HMAC_SHA2_512, name: "prfsha512", hash: sha512.New},
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
	id    uint16
	name  string
	keLen int // octets of Key Exchange Data
}

var dhAlgs = [...]dhAlg{
	{id: wire.DH_X25519, name: "x25519", keLen: 32},
	{id: wire.DH_ECP256, name: "ecp256", keLen: 64},
	{id: wire.DH_ECP384, name: "ecp384", keLen: 96},
	{id: wire.DH_MODP2048, name: "modp2048", keLen: 256},
	{id: wire.DH_MODP3072, name: "modp3072", keLen: 384},
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
	return false
}
