package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	cryptorand "crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"sync/atomic"

	"github.com/mobikevpn/mobikevpn/wire"
)

// SKCipher protects the SK (and SKF) payloads sent in one direction of an IKE SA
// (RFC 7296 section 3.14, RFC 5282, RFC 7634, RFC 7383, RFC 5930). The body of an SK
// payload is IV | ciphertext | ICV, where the ciphertext covers the inner payloads,
// padding and the Pad Length octet. Implementations are safe for concurrent use.
type SKCipher interface {
	// SealedLen returns the length of the SK payload body (IV, ciphertext including
	// padding and Pad Length, ICV) that protects plainLen octets of inner payloads.
	SealedLen(plainLen int) int
	// Seal appends the SK payload body to aad and returns the whole message. aad is
	// everything from the IKE header through the SK (or SKF) generic header, with
	// their final lengths: the AEAD's associated data, or what the ICV covers with
	// the IV and ciphertext for a classic cipher.
	Seal(aad, plaintext []byte) ([]byte, error)
	// Open checks and decrypts an SK payload body received after aad and returns the
	// inner payloads with the padding removed.
	Open(aad, body []byte) ([]byte, error)
}

// ErrSKAuth is returned by Open when the ICV does not verify.
var ErrSKAuth = errors.New("ikecrypto: SK payload integrity check failed")

// NewSKCipher returns the SKCipher for one direction: the encryption transform encr
// with key length encrKeyBits (0 for ChaCha20-Poly1305), the integrity transform
// integ (AUTH_NONE with an AEAD), and the keys SK_e (with the salt of an AEAD or the
// nonce of AES-CTR at its end) and SK_a (empty with an AEAD).
func NewSKCipher(encr uint16, encrKeyBits int, integ uint16, encKey, integKey []byte) (SKCipher, error) {
	enc := lookupEncr(encr, encrKeyBits)
	if enc == nil {
		return nil, fmt.Errorf("ikecrypto: unsupported encryption transform %d with key length %d", encr, encrKeyBits)
	}
	if len(encKey) != enc.keymatLen() {
		return nil, fmt.Errorf("ikecrypto: %s needs a %d-octet key, got %d", enc.name, enc.keymatLen(), len(encKey))
	}
	if enc.aead {
		if integ != wire.AUTH_NONE || len(integKey) != 0 {
			return nil, fmt.Errorf("ikecrypto: AEAD %s takes no integrity algorithm", enc.name)
		}
		if _, err := enc.newSaltedAEAD(encKey); err != nil {
			return nil, err
		}
		return &aeadSK{alg: enc, key: append([]byte(nil), encKey...)}, nil
	}
	in := lookupInteg(integ)
	if in == nil {
		return nil, fmt.Errorf("ikecrypto: unsupported integrity transform %d", integ)
	}
	if len(integKey) != in.keyLen {
		return nil, fmt.Errorf("ikecrypto: %s needs a %d-octet key, got %d", in.name, in.keyLen, len(integKey))
	}
	b, err := aes.NewCipher(encKey[:enc.keyLen])
	if err != nil {
		return nil, err
	}
	c := &cbcSK{alg: enc, block: b, integ: in, integKey: append([]byte(nil), integKey...)}
	copy(c.nonce[:], encKey[enc.keyLen:])
	return c, nil
}

// ivSealer is implemented by the SK ciphers for known-answer tests that need a
// chosen IV.
type ivSealer interface {
	sealWithIV(aad, plaintext, iv []byte) []byte
}

// grow returns b extended by n octets, reusing b's spare capacity, and the new part.
func grow(b []byte, n int) (all, tail []byte) {
	total := len(b) + n
	if cap(b) >= total {
		all = b[:total]
	} else {
		all = make([]byte, total)
		copy(all, b)
	}
	return all, all[len(b):]
}

// aeadSK is the SK payload with AES-GCM, AES-CCM or ChaCha20-Poly1305. The 8-octet IV
// is a per-cipher counter, so it never repeats under one key (RFC 5282 section 3.1,
// RFC 7634 section 2); no padding is added beyond the Pad Length octet.
//
// It keeps only the key and builds the AEAD for each message: IKE messages are rare,
// and a gateway with many IKE SAs saves the expanded key schedules (about 750 octets
// per direction for AES-GCM).
type aeadSK struct {
	alg *encrAlg
	key []byte
	ctr atomic.Uint64 // last IV used
}

func (c *aeadSK) aead() *saltedAEAD {
	a, err := c.alg.newSaltedAEAD(c.key)
	if err != nil {
		panic("ikecrypto: key checked at construction: " + err.Error())
	}
	return a
}

func (c *aeadSK) SealedLen(plainLen int) int {
	return c.alg.ivLen + plainLen + 1 + c.alg.icvLen
}

func (c *aeadSK) Seal(aad, plaintext []byte) ([]byte, error) {
	iv, err := nextIV(&c.ctr)
	if err != nil {
		return nil, err
	}
	return c.sealWithIV(aad, plaintext, iv[:]), nil
}

// nextIV takes the next 8-octet IV of a counter: each value once, the first being 1.
func nextIV(ctr *atomic.Uint64) ([8]byte, error) {
	var iv [8]byte
	for {
		v := ctr.Load()
		if v == math.MaxUint64 {
			return iv, errors.New("ikecrypto: SK IV counter exhausted; rekey the IKE SA")
		}
		if ctr.CompareAndSwap(v, v+1) {
			appendUint64(iv[:0], v+1)
			return iv, nil
		}
	}
}

func (c *aeadSK) sealWithIV(aad, plaintext, iv []byte) []byte {
	msg, body := grow(aad, c.SealedLen(len(plaintext)))
	pt := body[c.alg.ivLen : c.alg.ivLen+len(plaintext)+1]
	copy(pt, plaintext) // first: plaintext may sit where the IV goes (copy is memmove)
	copy(body, iv)
	pt[len(plaintext)] = 0 // Pad Length
	// In place: dst is pt[:0]; the associated data precedes it in msg.
	c.aead().seal(pt[:0], iv, pt, msg[:len(aad)])
	return msg
}

func (c *aeadSK) Open(aad, body []byte) ([]byte, error) {
	if len(body) < c.alg.ivLen+1+c.alg.icvLen {
		return nil, fmt.Errorf("ikecrypto: SK payload body of %d octets is too short", len(body))
	}
	iv := body[:c.alg.ivLen]
	pt, err := c.aead().open(make([]byte, 0, len(body)-c.alg.ivLen-c.alg.icvLen), iv, body[c.alg.ivLen:], aad)
	if err != nil {
		return nil, ErrSKAuth
	}
	return stripPadding(pt)
}

// stripPadding removes the padding and the Pad Length octet.
func stripPadding(pt []byte) ([]byte, error) {
	padLen := int(pt[len(pt)-1])
	if padLen+1 > len(pt) {
		return nil, fmt.Errorf("ikecrypto: SK pad length %d exceeds the %d-octet plaintext", padLen, len(pt))
	}
	return pt[: len(pt)-1-padLen : len(pt)-1-padLen], nil
}

// cbcSK is the SK payload with a cipher and a separate integrity algorithm (RFC 7296
// section 3.14), AES-CBC or AES-CTR (the name is the first of them, which the ike
// package's constant-time check refers to): the ICV is the truncated HMAC of
// everything from the IKE header through the ciphertext. AES-CBC takes its 16-octet
// IVs from crypto/rand, so they are unpredictable; AES-CTR (RFC 5930) needs IVs that
// never repeat under a key, not unpredictable ones, and takes its 8-octet IVs from a
// counter, with the counter block nonce | IV | block counter from 1 (RFC 3686 section
// 4) and no padding.
type cbcSK struct {
	alg      *encrAlg
	block    cipher.Block
	nonce    [4]byte // AES-CTR: the nonce from the end of SK_e
	integ    *integAlg
	integKey []byte
	ctr      atomic.Uint64 // AES-CTR: last IV used
}

func (c *cbcSK) SealedLen(plainLen int) int {
	return c.alg.ivLen + c.paddedLen(plainLen) + c.integ.icvLen
}

// paddedLen is the ciphertext length: plaintext plus Pad Length octet, rounded up to
// the block size (1 for AES-CTR).
func (c *cbcSK) paddedLen(plainLen int) int {
	b := c.alg.block
	return (plainLen + 1 + b - 1) / b * b
}

func (c *cbcSK) Seal(aad, plaintext []byte) ([]byte, error) {
	if c.alg.mode == modeCTR {
		iv, err := nextIV(&c.ctr)
		if err != nil {
			return nil, err
		}
		return c.sealWithIV(aad, plaintext, iv[:]), nil
	}
	var iv [aes.BlockSize]byte
	if _, err := cryptorand.Read(iv[:]); err != nil {
		return nil, err
	}
	return c.sealWithIV(aad, plaintext, iv[:]), nil
}

func (c *cbcSK) sealWithIV(aad, plaintext, iv []byte) []byte {
	n := c.paddedLen(len(plaintext))
	msg, body := grow(aad, c.alg.ivLen+n+c.integ.icvLen)
	ct := body[c.alg.ivLen : c.alg.ivLen+n]
	copy(ct, plaintext) // first: plaintext may sit where the IV goes (copy is memmove)
	copy(body, iv)
	clear(ct[len(plaintext):]) // padding octets are zero; the last one is the Pad Length
	ct[n-1] = byte(n - 1 - len(plaintext))
	c.crypt(ct, iv, true)
	icvAt := len(aad) + c.alg.ivLen + n
	copy(msg[icvAt:], c.mac(msg[:icvAt]))
	return msg
}

// crypt encrypts or decrypts buf in place with the IV iv.
func (c *cbcSK) crypt(buf, iv []byte, encrypt bool) {
	switch {
	case c.alg.mode == modeCTR:
		var cb [aes.BlockSize]byte
		copy(cb[:4], c.nonce[:])
		copy(cb[4:12], iv)
		cb[15] = 1
		cipher.NewCTR(c.block, cb[:]).XORKeyStream(buf, buf)
	case encrypt:
		cipher.NewCBCEncrypter(c.block, iv).CryptBlocks(buf, buf)
	default:
		cipher.NewCBCDecrypter(c.block, iv).CryptBlocks(buf, buf)
	}
}

// mac returns the truncated HMAC of data.
func (c *cbcSK) mac(data ...[]byte) []byte {
	return integMAC(c.integ, c.integKey, data...)
}

// integMAC computes an integrity algorithm's ICV: HMAC truncated to icvLen (RFC 4868,
// RFC 2404).
func integMAC(in *integAlg, key []byte, data ...[]byte) []byte {
	m := hmac.New(in.hash, key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(nil)[:in.icvLen]
}

func (c *cbcSK) Open(aad, body []byte) ([]byte, error) {
	ivLen, icvLen, bs := c.alg.ivLen, c.integ.icvLen, c.alg.block
	ctLen := len(body) - ivLen - icvLen
	if ctLen < bs {
		return nil, fmt.Errorf("ikecrypto: SK payload body of %d octets is too short", len(body))
	}
	if ctLen%bs != 0 {
		return nil, fmt.Errorf("ikecrypto: SK ciphertext of %d octets is not a multiple of the %d-octet block", ctLen, bs)
	}
	icv := body[ivLen+ctLen:]
	if subtle.ConstantTimeCompare(icv, c.mac(aad, body[:ivLen+ctLen])) != 1 {
		return nil, ErrSKAuth
	}
	pt := make([]byte, ctLen)
	copy(pt, body[ivLen:ivLen+ctLen])
	c.crypt(pt, body[:ivLen], false)
	return stripPadding(pt)
}

// ZeroSK overwrites the key material an SKCipher keeps (best effort: an AES block
// cipher's expanded key schedule, inside crypto/aes, cannot be reached). Use it when the
// IKE SA ends; the cipher must not be used afterwards.
func ZeroSK(c SKCipher) {
	switch c := c.(type) {
	case *aeadSK:
		clear(c.key)
	case *cbcSK:
		clear(c.integKey)
		clear(c.nonce[:])
	}
}

// ivCounter returns the IV counter of a cipher whose IVs are a counter (the AEADs,
// AES-CTR), or nil for one with random IVs (AES-CBC).
func ivCounter(c SKCipher) *atomic.Uint64 {
	switch c := c.(type) {
	case *aeadSK:
		return &c.ctr
	case *cbcSK:
		if c.alg.mode == modeCTR {
			return &c.ctr
		}
	}
	return nil
}

// SealCounter returns the last IV counter an SKCipher's Seal used, for a cipher whose
// IVs are a counter (AES-GCM, AES-CCM, ChaCha20-Poly1305, AES-CTR); ok is false for
// one with random IVs (AES-CBC), which has nothing to carry over. An IKE SA that
// moves to another engine takes the counter along (ResumeSealCounter), so that no IV
// repeats under its key.
func SealCounter(c SKCipher) (last uint64, ok bool) {
	if ctr := ivCounter(c); ctr != nil {
		return ctr.Load(), true
	}
	return 0, false
}

// ResumeSealCounter makes c's next Seal use an IV beyond last: the counter of the
// engine c's IKE SA came from (SealCounter). It never moves the counter back, and does
// nothing for a cipher with random IVs.
func ResumeSealCounter(c SKCipher, last uint64) {
	ctr := ivCounter(c)
	if ctr == nil {
		return
	}
	for {
		v := ctr.Load()
		if v >= last || ctr.CompareAndSwap(v, last) {
			return
		}
	}
}
