package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/chacha20poly1305"
)

// Transform IDs from the IANA IKEv2 registries (Transform Type 1 "Encryption Algorithm"
// and Type 3 "Integrity Algorithm"); ESP uses the same numbers.
const (
	EncrAESCBC           uint16 = 12 // RFC 3602, with one of the AUTH_HMAC_SHA2 transforms
	EncrAESGCM16         uint16 = 20 // RFC 4106, 16-byte ICV
	EncrChaCha20Poly1305 uint16 = 28 // RFC 7634

	IntegNone            uint16 = 0
	IntegHMACSHA2_256128 uint16 = 12 // RFC 4868
	IntegHMACSHA2_384192 uint16 = 13
	IntegHMACSHA2_512256 uint16 = 14
)

const (
	espHeaderLen = 8 // SPI + sequence number
	saltLen      = 4 // RFC 4106 / RFC 7634 salt at the end of the AEAD key
	aeadIVLen    = 8 // explicit IV of the AEAD transforms
	cbcIVLen     = aes.BlockSize
	maxICVLen    = 32 // HMAC-SHA-512-256
	maxHeadLen   = espHeaderLen + cbcIVLen
	// maxTailLen bounds what seal adds after the payload: padding (at most 15 for a
	// 16-byte block), pad length, next header and the ICV.
	maxTailLen = 15 + 2 + maxICVLen
)

// Keys are the transforms and key material of one Child SA direction.
type Keys struct {
	// Encr is the ENCR transform ID (EncrAESGCM16, EncrChaCha20Poly1305 or EncrAESCBC).
	Encr uint16
	// EncrKeyBits is the key length attribute (128, 192 or 256 for AES, 256 or 0 for
	// ChaCha20-Poly1305). Zero takes the length from EncrKey.
	EncrKeyBits int
	// Integ is the INTEG transform ID: IntegNone for the AEAD transforms, one of the
	// IntegHMACSHA2_* for AES-CBC.
	Integ uint16
	// EncrKey is the encryption key; for the AEAD transforms it is followed by the
	// 4-byte salt (RFC 4106 section 8.1, RFC 7634 section 2), as taken from the KEYMAT.
	EncrKey []byte
	// IntegKey is the integrity key (AES-CBC only).
	IntegKey []byte
}

// suite is the per-SA cryptographic state: it seals and opens ESP packets in place.
// It is safe for concurrent use.
//
// Key material (issue 11): the only raw key bytes a suite keeps are the AES-CBC
// suites' HMAC key (cbcStates.key), zeroed by wipe when the SA is removed, and the
// AEAD salt, which is not secret (RFC 4106 section 4). The rest lives in Go's cipher
// states (AES key schedules, GCM tables, the ChaCha20-Poly1305 key, HMAC pads), which
// have no way to be zeroed: they stay in memory until the garbage collector reuses it.
// The Keys passed at installation are not retained; zeroing them is the caller's job.
type suite struct {
	aead  cipher.AEAD // AEAD transforms
	salt  [saltLen]byte
	block cipher.Block // AES-CBC: the data key
	ivGen cipher.Block // AES-CBC: a random key, IV = AES(ivKey, 0^64 || seq)
	cbc   cbcStates    // AES-CBC: per-goroutine state, reused
	ivLen int
	icv   int
	align int // the padded plaintext plus the 2 trailer bytes is a multiple of this
}

// cbcState is the non-thread-safe part of an AES-CBC/HMAC suite, pooled per SA.
type cbcState struct {
	enc, dec cipher.BlockMode
	encIV    ivSetter
	decIV    ivSetter
	mac      hash.Hash
}

type ivSetter interface{ SetIV([]byte) }

// cbcStates is a small lock-free free list of cbcState. Unlike a sync.Pool it is not
// emptied by the garbage collector, so a steady state allocates nothing. When it is
// empty, get makes a new state from the HMAC key, under mu.
type cbcStates struct {
	free [8]atomic.Pointer[cbcState]
	mu   sync.Mutex
	key  []byte // the HMAC key; zeroed and nil once wiped. Guarded by mu
	make func(key []byte) *cbcState
}

// get returns a state, or nil if the list is empty and the key wiped: the SA was
// removed, and a packet some goroutine still handles with it is dropped.
func (c *cbcStates) get() *cbcState {
	for i := range c.free {
		if st := c.free[i].Swap(nil); st != nil {
			return st
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.key == nil {
		return nil
	}
	return c.make(c.key)
}

// wipe zeroes the HMAC key. The pooled states stay: goroutines that took the SA before
// its removal finish their packets with them.
func (c *cbcStates) wipe() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.key)
	c.key = nil
}

func (c *cbcStates) put(st *cbcState) {
	for i := range c.free {
		if c.free[i].CompareAndSwap(nil, st) {
			return
		}
	}
}

// scratch is per-goroutine working space so that sealing and opening do not allocate.
type scratch struct {
	nonce [12]byte
	aad   [12]byte
	iv    [16]byte
	ctr   [16]byte
	mac   [64]byte
	seqHi [4]byte
}

// newSuite validates k and builds the cipher state. The key bytes are copied into the
// cipher state, not retained.
func newSuite(k Keys) (*suite, error) {
	switch k.Encr {
	case EncrAESGCM16:
		if k.Integ != IntegNone {
			return nil, fmt.Errorf("esp: AES-GCM takes no integrity transform (got %d)", k.Integ)
		}
		n := len(k.EncrKey) - saltLen
		if n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("esp: AES-GCM key with salt is %d bytes, want 20, 28 or 36", len(k.EncrKey))
		}
		if k.EncrKeyBits != 0 && k.EncrKeyBits != n*8 {
			return nil, fmt.Errorf("esp: AES-GCM key length %d bits does not match %d key bytes", k.EncrKeyBits, n)
		}
		b, err := aes.NewCipher(k.EncrKey[:n])
		if err != nil {
			return nil, err
		}
		a, err := cipher.NewGCM(b)
		if err != nil {
			return nil, err
		}
		s := &suite{aead: a, ivLen: aeadIVLen, icv: a.Overhead(), align: 4}
		copy(s.salt[:], k.EncrKey[n:])
		return s, nil
	case EncrChaCha20Poly1305:
		if k.Integ != IntegNone {
			return nil, fmt.Errorf("esp: ChaCha20-Poly1305 takes no integrity transform (got %d)", k.Integ)
		}
		if len(k.EncrKey) != chacha20poly1305.KeySize+saltLen {
			return nil, fmt.Errorf("esp: ChaCha20-Poly1305 key with salt is %d bytes, want 36", len(k.EncrKey))
		}
		if k.EncrKeyBits != 0 && k.EncrKeyBits != 256 {
			return nil, fmt.Errorf("esp: ChaCha20-Poly1305 key length %d bits, want 256", k.EncrKeyBits)
		}
		a, err := chacha20poly1305.New(k.EncrKey[:chacha20poly1305.KeySize])
		if err != nil {
			return nil, err
		}
		s := &suite{aead: a, ivLen: aeadIVLen, icv: a.Overhead(), align: 4}
		copy(s.salt[:], k.EncrKey[chacha20poly1305.KeySize:])
		return s, nil
	case EncrAESCBC:
		n := len(k.EncrKey)
		if n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("esp: AES-CBC key is %d bytes, want 16, 24 or 32", n)
		}
		if k.EncrKeyBits != 0 && k.EncrKeyBits != n*8 {
			return nil, fmt.Errorf("esp: AES-CBC key length %d bits does not match %d key bytes", k.EncrKeyBits, n)
		}
		var newHash func() hash.Hash
		var keyLen, icv int
		switch k.Integ {
		case IntegHMACSHA2_256128:
			newHash, keyLen, icv = sha256.New, 32, 16
		case IntegHMACSHA2_384192:
			newHash, keyLen, icv = sha512.New384, 48, 24
		case IntegHMACSHA2_512256:
			newHash, keyLen, icv = sha512.New, 64, 32
		case IntegNone:
			return nil, errors.New("esp: AES-CBC needs an integrity transform")
		default:
			return nil, fmt.Errorf("esp: unsupported integrity transform %d", k.Integ)
		}
		if len(k.IntegKey) != keyLen {
			return nil, fmt.Errorf("esp: integrity key is %d bytes, want %d", len(k.IntegKey), keyLen)
		}
		block, err := aes.NewCipher(k.EncrKey)
		if err != nil {
			return nil, err
		}
		var ivKey [16]byte
		rand.Read(ivKey[:]) // never fails (crypto/rand panics instead)
		ivGen, err := aes.NewCipher(ivKey[:])
		if err != nil {
			return nil, err
		}
		s := &suite{block: block, ivGen: ivGen, ivLen: cbcIVLen, icv: icv, align: aes.BlockSize}
		s.cbc.key = append([]byte(nil), k.IntegKey...)
		var zero [16]byte
		s.cbc.make = func(integKey []byte) *cbcState {
			enc := cipher.NewCBCEncrypter(block, zero[:])
			dec := cipher.NewCBCDecrypter(block, zero[:])
			es, _ := enc.(ivSetter)
			ds, _ := dec.(ivSetter)
			return &cbcState{enc: enc, dec: dec, encIV: es, decIV: ds, mac: hmac.New(newHash, integKey)}
		}
		st := s.cbc.get()
		if st.encIV == nil || st.decIV == nil {
			return nil, errors.New("esp: crypto/cipher CBC modes lack SetIV")
		}
		s.cbc.put(st)
		return s, nil
	default:
		return nil, fmt.Errorf("esp: unsupported encryption transform %d", k.Encr)
	}
}

// wipe zeroes the raw key bytes s keeps, once its SA is removed: best effort (see
// suite). Packets still on their way through s may be dropped.
func (s *suite) wipe() {
	if s.block != nil {
		s.cbc.wipe()
	}
}

// headLen is the ESP header plus the explicit IV.
func (s *suite) headLen() int { return espHeaderLen + s.ivLen }

// sealedLen is the length of the ESP packet sealed from a payload of n bytes.
func (s *suite) sealedLen(n int) int {
	pt := n + 2
	pt += -pt & (s.align - 1) // align is a power of two
	return s.headLen() + pt + s.icv
}

// nextIV writes the IV for sequence number seq into sc.iv[:s.ivLen]. For the AEAD
// transforms it is the sequence number itself (unique per SA and key, RFC 4106
// section 3.1); for AES-CBC it is the sequence number encrypted under a random per-SA
// key, so it is unpredictable (RFC 3602 section 3) without a system call per packet.
func (s *suite) nextIV(sc *scratch, seq uint64) []byte {
	if s.aead != nil {
		binary.BigEndian.PutUint64(sc.iv[:8], seq)
		return sc.iv[:8]
	}
	clear(sc.ctr[:8])
	binary.BigEndian.PutUint64(sc.ctr[8:], seq)
	s.ivGen.Encrypt(sc.iv[:], sc.ctr[:])
	return sc.iv[:cbcIVLen]
}

// sealRaw encrypts b[headLen:headLen+ptLen] (payload, padding and the two trailer
// bytes already in place) and writes the ESP header and IV into b[:headLen] and the
// ICV after the ciphertext. It returns the length of the ESP packet in b. The caller
// guarantees len(b) >= headLen+ptLen+icv and, for AES-CBC, ptLen%16 == 0.
func (s *suite) sealRaw(sc *scratch, b []byte, spi uint32, seq uint64, esn bool, iv []byte, ptLen int) int {
	hl := s.headLen()
	binary.BigEndian.PutUint32(b[0:4], spi)
	binary.BigEndian.PutUint32(b[4:8], uint32(seq))
	copy(b[espHeaderLen:hl], iv)
	pt := b[hl : hl+ptLen : hl+ptLen+s.icv]
	if s.aead != nil {
		copy(sc.nonce[:saltLen], s.salt[:])
		copy(sc.nonce[saltLen:], iv)
		s.aead.Seal(pt[:0], sc.nonce[:], pt, s.aad(sc, b, seq, esn))
		return hl + ptLen + s.icv
	}
	st := s.cbc.get()
	if st == nil {
		return 0 // the SA was removed
	}
	st.encIV.SetIV(iv)
	st.enc.CryptBlocks(pt, pt)
	st.mac.Reset()
	st.mac.Write(b[:hl+ptLen])
	if esn {
		// RFC 4303 section 2.2.1 / 3.3.2.2: the high-order 32 bits take part in the ICV
		// computation but are not sent.
		binary.BigEndian.PutUint32(sc.seqHi[:], uint32(seq>>32))
		st.mac.Write(sc.seqHi[:])
	}
	sum := st.mac.Sum(sc.mac[:0])
	copy(b[hl+ptLen:hl+ptLen+s.icv], sum)
	s.cbc.put(st)
	return hl + ptLen + s.icv
}

// aad is SPI || seq (8 bytes) or, with ESN, SPI || seq_hi || seq_lo (12 bytes), RFC
// 4106 section 5 and RFC 7634 section 4. SPI and seq_lo are those in b's header.
func (s *suite) aad(sc *scratch, b []byte, seq uint64, esn bool) []byte {
	if !esn {
		return b[:espHeaderLen]
	}
	copy(sc.aad[0:4], b[0:4])
	binary.BigEndian.PutUint32(sc.aad[4:8], uint32(seq>>32))
	copy(sc.aad[8:12], b[4:8]) // the low half as on the wire
	return sc.aad[:12]
}

// openRaw authenticates and decrypts the ESP packet b in place, given the full 64-bit
// sequence number (the inferred high half only matters with ESN). It returns the
// plaintext (payload, padding and trailer), which aliases b.
func (s *suite) openRaw(sc *scratch, b []byte, seq uint64, esn bool) ([]byte, dropReason) {
	hl := s.headLen()
	if len(b) < hl+2+s.icv {
		return nil, dropMalformed
	}
	if s.aead != nil {
		copy(sc.nonce[:saltLen], s.salt[:])
		copy(sc.nonce[saltLen:], b[espHeaderLen:hl])
		pt, err := s.aead.Open(b[hl:hl], sc.nonce[:], b[hl:], s.aad(sc, b, seq, esn))
		if err != nil {
			return nil, dropAuth
		}
		return pt, dropNone
	}
	end := len(b) - s.icv
	ct := b[hl:end]
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return nil, dropMalformed
	}
	st := s.cbc.get()
	if st == nil {
		return nil, dropAuth // the SA was removed
	}
	st.mac.Reset()
	st.mac.Write(b[:end])
	if esn {
		binary.BigEndian.PutUint32(sc.seqHi[:], uint32(seq>>32))
		st.mac.Write(sc.seqHi[:])
	}
	sum := st.mac.Sum(sc.mac[:0])
	if subtle.ConstantTimeCompare(sum[:s.icv], b[end:]) != 1 {
		s.cbc.put(st)
		return nil, dropAuth
	}
	st.decIV.SetIV(b[espHeaderLen:hl])
	st.dec.CryptBlocks(ct, ct)
	s.cbc.put(st)
	return ct, dropNone
}

// seal turns the payload at b[headLen:headLen+n] into an ESP packet in place: it adds
// the RFC 4303 padding (1, 2, 3, ...), pad length and next header, then encrypts. It
// returns the packet length, or 0 if b is too short.
func (s *suite) seal(sc *scratch, b []byte, spi uint32, seq uint64, esn bool, n int, nextHeader byte) int {
	return s.sealIV(sc, b, spi, seq, esn, n, nextHeader, s.nextIV(sc, seq))
}

// sealIV is seal with a given IV; tests use it to reproduce published packets.
func (s *suite) sealIV(sc *scratch, b []byte, spi uint32, seq uint64, esn bool, n int, nextHeader byte, iv []byte) int {
	if s.sealedLen(n) > len(b) || len(iv) != s.ivLen {
		return 0
	}
	hl := s.headLen()
	ptLen := n + 2
	pad := -ptLen & (s.align - 1)
	ptLen += pad
	tr := b[hl+n : hl+ptLen]
	for i := range pad {
		tr[i] = byte(i + 1)
	}
	tr[pad] = byte(pad)
	tr[pad+1] = nextHeader
	return s.sealRaw(sc, b, spi, seq, esn, iv, ptLen)
}

// open authenticates and decrypts the ESP packet b in place and checks the trailer. It
// returns the payload (aliasing b) and the next header.
func (s *suite) open(sc *scratch, b []byte, seq uint64, esn bool) ([]byte, byte, dropReason) {
	pt, r := s.openRaw(sc, b, seq, esn)
	if r != dropNone {
		return nil, 0, r
	}
	payload, nh, ok := stripTrailer(pt)
	if !ok {
		return nil, 0, dropTrailer
	}
	return payload, nh, dropNone
}

// stripTrailer checks the pad length and the monotonic padding bytes (RFC 4303
// section 2.4) and returns the payload and the next header.
func stripTrailer(pt []byte) ([]byte, byte, bool) {
	if len(pt) < 2 {
		return nil, 0, false
	}
	padLen := int(pt[len(pt)-2])
	nh := pt[len(pt)-1]
	end := len(pt) - 2 - padLen
	if end < 0 {
		return nil, 0, false
	}
	for i, v := range pt[end : len(pt)-2] {
		if v != byte(i+1) {
			return nil, 0, false
		}
	}
	return pt[:end], nh, true
}
