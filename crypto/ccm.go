package crypto

import (
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"math"
)

// This file holds the AEAD constructions Go's standard library lacks: AES-CCM (RFC
// 3610, NIST SP 800-38C), for ENCR_AES_CCM_8/12/16 (RFC 4309, RFC 5282), and AES-GCM
// with an 8-octet tag, below crypto/cipher's minimum of 12, for ENCR_AES_GCM_8 (RFC
// 4106, RFC 5282).

// errAEADOpen is returned by the AEADs of this file when a message does not
// authenticate.
var errAEADOpen = errors.New("ikecrypto: message authentication failed")

// ccm is CCM mode over a 128-bit block cipher as a cipher.AEAD (RFC 3610 section 2).
// The nonce has 15-L octets, where L is the size of the length field; the tag has M
// octets. It keeps no secret beyond the block cipher and is safe for concurrent use.
type ccm struct {
	b         cipher.Block
	nonceSize int // 15 - L: 7 to 13
	tagSize   int // M: 4, 6, ..., 16
}

// newCCM returns CCM over b with the given nonce and tag sizes, which RFC 3610 limits
// to 7..13 and 4, 6, ..., 16 octets. IPsec uses 11-octet nonces (3-octet salt | 8-octet
// IV) and 8, 12 or 16-octet tags (RFC 4309 section 4, RFC 5282 section 4).
func newCCM(b cipher.Block, nonceSize, tagSize int) (cipher.AEAD, error) {
	if b.BlockSize() != 16 {
		return nil, errors.New("ikecrypto: CCM needs a 128-bit block cipher")
	}
	if nonceSize < 7 || nonceSize > 13 {
		return nil, errors.New("ikecrypto: CCM nonce must have 7 to 13 octets")
	}
	if tagSize < 4 || tagSize > 16 || tagSize%2 != 0 {
		return nil, errors.New("ikecrypto: CCM tag must have 4, 6, 8, 10, 12, 14 or 16 octets")
	}
	return &ccm{b: b, nonceSize: nonceSize, tagSize: tagSize}, nil
}

func (c *ccm) NonceSize() int { return c.nonceSize }
func (c *ccm) Overhead() int  { return c.tagSize }

// maxLen is the longest message the L-octet length field can encode.
func (c *ccm) maxLen() uint64 {
	l := 15 - c.nonceSize
	if l >= 8 {
		return math.MaxUint64
	}
	return 1<<(8*l) - 1
}

// counter returns the counter block A_i = flags | nonce | i (RFC 3610 section 2.3).
func (c *ccm) counter(nonce []byte, i byte) [16]byte {
	var a [16]byte
	a[0] = byte(15 - c.nonceSize - 1) // L-1
	copy(a[1:], nonce)
	a[15] = i
	return a
}

// tag returns the encrypted authentication value U (RFC 3610 sections 2.2 and 2.3):
// the CBC-MAC of B_0, the encoded additional data and the message, XORed with S_0.
func (c *ccm) tag(nonce, plaintext, aad []byte) [16]byte {
	m := cbcMAC{b: c.b}
	var b0 [16]byte
	b0[0] = byte((c.tagSize-2)/2)<<3 | byte(15-c.nonceSize-1)
	if len(aad) > 0 {
		b0[0] |= 0x40
	}
	copy(b0[1:], nonce)
	n := uint64(len(plaintext))
	for i := 15; i > c.nonceSize; i-- {
		b0[i] = byte(n)
		n >>= 8
	}
	m.write(b0[:])
	if len(aad) > 0 {
		var hdr [10]byte
		var h []byte
		switch a := uint64(len(aad)); {
		case a < 0xff00:
			h = binary.BigEndian.AppendUint16(hdr[:0], uint16(a))
		case a <= math.MaxUint32:
			h = binary.BigEndian.AppendUint32(append(hdr[:0], 0xff, 0xfe), uint32(a))
		default:
			h = binary.BigEndian.AppendUint64(append(hdr[:0], 0xff, 0xff), a)
		}
		m.write(h)
		m.write(aad)
		m.pad()
	}
	m.write(plaintext)
	m.pad()
	s0 := c.counter(nonce, 0)
	c.b.Encrypt(s0[:], s0[:])
	subtle.XORBytes(m.x[:], m.x[:], s0[:])
	return m.x
}

// crypt XORs src with the key stream S_1, S_2, ... into dst. The counter field has L
// octets and a message of at most maxLen octets never overflows it, so incrementing
// the whole block (cipher.NewCTR) is the same.
func (c *ccm) crypt(dst, src, nonce []byte) {
	a1 := c.counter(nonce, 1)
	cipher.NewCTR(c.b, a1[:]).XORKeyStream(dst, src)
}

// Seal appends the encrypted plaintext and the tag to dst. To encrypt in place, use
// plaintext[:0] as dst.
func (c *ccm) Seal(dst, nonce, plaintext, aad []byte) []byte {
	if len(nonce) != c.nonceSize {
		panic("ikecrypto: incorrect nonce length given to CCM")
	}
	if uint64(len(plaintext)) > c.maxLen() {
		panic("ikecrypto: message too large for CCM")
	}
	t := c.tag(nonce, plaintext, aad) // before out, which may be plaintext, is written
	ret, out := grow(dst, len(plaintext)+c.tagSize)
	c.crypt(out[:len(plaintext)], plaintext, nonce)
	copy(out[len(plaintext):], t[:c.tagSize])
	return ret
}

// Open decrypts and authenticates ciphertext|tag and appends the plaintext to dst; on
// failure the output is zeroed and nothing is appended. To decrypt in place, use
// ciphertext[:0] as dst.
func (c *ccm) Open(dst, nonce, ciphertext, aad []byte) ([]byte, error) {
	if len(nonce) != c.nonceSize {
		panic("ikecrypto: incorrect nonce length given to CCM")
	}
	if len(ciphertext) < c.tagSize || uint64(len(ciphertext)-c.tagSize) > c.maxLen() {
		return nil, errAEADOpen
	}
	n := len(ciphertext) - c.tagSize
	var got [16]byte
	copy(got[:], ciphertext[n:])
	ret, out := grow(dst, n)
	c.crypt(out, ciphertext[:n], nonce)
	want := c.tag(nonce, out, aad)
	if subtle.ConstantTimeCompare(want[:c.tagSize], got[:c.tagSize]) != 1 {
		clear(out)
		return nil, errAEADOpen
	}
	return ret, nil
}

// cbcMAC is the CBC-MAC of a stream of octets, each part padded with zeros to the
// block size where pad is called.
type cbcMAC struct {
	b cipher.Block
	x [16]byte
	n int // octets of the current block absorbed
}

func (m *cbcMAC) write(p []byte) {
	for len(p) > 0 {
		k := subtle.XORBytes(m.x[m.n:], m.x[m.n:], p)
		m.n += k
		p = p[k:]
		if m.n == 16 {
			m.b.Encrypt(m.x[:], m.x[:])
			m.n = 0
		}
	}
}

func (m *cbcMAC) pad() {
	if m.n > 0 {
		m.b.Encrypt(m.x[:], m.x[:])
		m.n = 0
	}
}

// gcmShortTag is AES-GCM with a tag shorter than the 12 octets crypto/cipher accepts:
// the leftmost octets of the full tag (NIST SP 800-38D section 5.2.1.2), as RFC 4106's
// 8-octet ICV. It seals with the full GCM and cuts the tag; it opens by decrypting in
// counter mode, sealing the result again and comparing the truncated tags in
// constant time. Both copy through a buffer of their own, so they are slower than
// GCM with a full tag, which is fine for a legacy algorithm.
type gcmShortTag struct {
	b       cipher.Block
	gcm     cipher.AEAD // 16-octet tag, 12-octet nonce
	tagSize int
}

func newGCMShortTag(b cipher.Block, tagSize int) (cipher.AEAD, error) {
	if tagSize < 4 || tagSize > 16 {
		return nil, errors.New("ikecrypto: GCM tag must have 4 to 16 octets")
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	return &gcmShortTag{b: b, gcm: g, tagSize: tagSize}, nil
}

func (g *gcmShortTag) NonceSize() int { return g.gcm.NonceSize() }
func (g *gcmShortTag) Overhead() int  { return g.tagSize }

func (g *gcmShortTag) Seal(dst, nonce, plaintext, aad []byte) []byte {
	full := g.gcm.Seal(nil, nonce, plaintext, aad)
	ret, out := grow(dst, len(plaintext)+g.tagSize)
	copy(out, full)
	return ret
}

func (g *gcmShortTag) Open(dst, nonce, ciphertext, aad []byte) ([]byte, error) {
	if len(nonce) != g.gcm.NonceSize() {
		panic("ikecrypto: incorrect nonce length given to GCM")
	}
	if len(ciphertext) < g.tagSize {
		return nil, errAEADOpen
	}
	n := len(ciphertext) - g.tagSize
	if uint64(n) > (1<<32-2)*16 { // SP 800-38D: at most 2^39-256 bits of plaintext
		return nil, errAEADOpen
	}
	// With a 96-bit IV, J0 = IV | 0^31 | 1 and the plaintext is encrypted from inc32(J0).
	var ctr [16]byte
	copy(ctr[:], nonce)
	ctr[15] = 2
	pt := make([]byte, n)
	cipher.NewCTR(g.b, ctr[:]).XORKeyStream(pt, ciphertext[:n])
	full := g.gcm.Seal(nil, nonce, pt, aad)
	if subtle.ConstantTimeCompare(full[n:n+g.tagSize], ciphertext[n:]) != 1 {
		clear(pt)
		return nil, errAEADOpen
	}
	ret, out := grow(dst, n)
	copy(out, pt)
	return ret, nil
}
