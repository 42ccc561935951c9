package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
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
// and Type 3 "Integrity Algorithm"); ESP uses the same numbers. This package may not
// import wire, so it names them itself.
const (
	EncrAESCBC           uint16 = 12 // ENCR_AES_CBC, RFC 3602, with an HMAC integrity transform
	EncrAESCTR           uint16 = 13 // ENCR_AES_CTR, RFC 3686, with an HMAC integrity transform
	EncrAESCCM8          uint16 = 14 // ENCR_AES_CCM_8, RFC 4309, 8-octet ICV
	EncrAESCCM12         uint16 = 15 // ENCR_AES_CCM_12, RFC 4309, 12-octet ICV
	EncrAESCCM16         uint16 = 16 // ENCR_AES_CCM_16, RFC 4309, 16-octet ICV
	EncrAESGCM8          uint16 = 18 // ENCR_AES_GCM_8, RFC 4106, 8-octet ICV
	EncrAESGCM12         uint16 = 19 // ENCR_AES_GCM_12, RFC 4106, 12-octet ICV
	EncrAESGCM16         uint16 = 20 // ENCR_AES_GCM_16, RFC 4106, 16-octet ICV
	EncrChaCha20Poly1305 uint16 = 28 // ENCR_CHACHA20_POLY1305, RFC 7634

	IntegNone            uint16 = 0
	IntegHMACSHA1_96     uint16 = 2  // AUTH_HMAC_SHA1_96, RFC 2404
	IntegHMACSHA2_256128 uint16 = 12 // AUTH_HMAC_SHA2_256_128, RFC 4868
	IntegHMACSHA2_384192 uint16 = 13
	IntegHMACSHA2_512256 uint16 = 14
)

const (
	espHeaderLen = 8 // SPI + sequence number
	saltLen      = 4 // RFC 4106 / RFC 7634 salt at the end of the AEAD key; RFC 3686 nonce
	ccmSaltLen   = 3 // RFC 4309 section 7.1 salt at the end of the AES-CCM key
	aeadIVLen    = 8 // explicit IV of the AEAD transforms and of AES-CTR
	cbcIVLen     = aes.BlockSize
	maxICVLen    = 32 // HMAC-SHA-512-256
	maxHeadLen   = espHeaderLen + cbcIVLen
	// maxTailLen bounds what seal adds after the payload: padding (at most 15 for a
	// 16-byte block), pad length, next header and the ICV.
	maxTailLen = 15 + 2 + maxICVLen
)

// Keys are the transforms and key material of one Child SA direction.
type Keys struct {
	// Encr is the ENCR transform ID: one of the EncrAESGCM*, EncrAESCCM*,
	// EncrChaCha20Poly1305, EncrAESCTR or EncrAESCBC.
	Encr uint16
	// EncrKeyBits is the key length attribute (128, 192 or 256 for AES, 256 or 0 for
	// ChaCha20-Poly1305). Zero takes the length from EncrKey.
	EncrKeyBits int
	// Integ is the INTEG transform ID: IntegNone for the AEAD transforms, one of the
	// IntegHMAC* for AES-CBC and AES-CTR.
	Integ uint16
	// EncrKey is the encryption key as taken from the KEYMAT, followed by a salt for
	// some transforms: 4 bytes for AES-GCM and ChaCha20-Poly1305 (RFC 4106 section 8.1,
	// RFC 7634 section 2), the 4-byte nonce for AES-CTR (RFC 3686 section 5.1), 3 bytes
	// for AES-CCM (RFC 4309 section 7.1); nothing for AES-CBC.
	EncrKey []byte
	// IntegKey is the integrity key (AES-CBC and AES-CTR only).
	IntegKey []byte
}

// suite is the per-SA cryptographic state: it seals and opens ESP packets in place.
// It is safe for concurrent use.
//
// Key material (issue 11): the only raw key bytes a suite keeps are the HMAC key of the
// AES-CBC and AES-CTR suites (cbcStates.key), zeroed by wipe when the SA is removed, and
// the salt (AEAD salt, AES-CTR nonce), which is not secret (RFC 4106 section 4). The
// rest lives in Go's cipher states (AES key schedules, GCM tables, the
// ChaCha20-Poly1305 key, HMAC pads), which have no way to be zeroed: they stay in memory
// until the garbage collector reuses it. The Keys passed at installation are not
// retained; zeroing them is the caller's job.
type suite struct {
	aead  cipher.AEAD   // AES-GCM with a 16 or 12-byte ICV, ChaCha20-Poly1305
	gcm8  cipher.AEAD   // AES-GCM with an 8-byte ICV: GCM with a 16-byte tag (sealGCM8)
	salt  [saltLen]byte // AEAD salt, AES-CTR nonce, AES-CCM salt (its first 3 bytes)
	ccm   *ccm          // AES-CCM
	block cipher.Block  // AES-CBC and AES-CTR: the data key
	ctr   *ctrStream    // AES-CTR
	ivGen cipher.Block  // AES-CBC: a random key, IV = AES(ivKey, 0^64 || seq)
	cbc   cbcStates     // AES-CBC and AES-CTR: per-goroutine state, reused
	ivLen int
	icv   int
	align int // the padded plaintext plus the 2 trailer bytes is a multiple of this
}

// cbcState is the non-thread-safe part of an AES-CBC/HMAC or AES-CTR/HMAC suite, pooled
// per SA. AES-CTR uses only mac.
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
	cb    [16]byte // AES-CTR and AES-CCM: the counter block
	ks    [32]byte // AES-CTR and AES-CCM: keystream blocks
	save  [16]byte // AES-CTR and AES-CCM: the bytes GCM's tag lands on (ctrStream.xor)
	x     [16]byte // AES-CCM: the CBC-MAC
	s0    [16]byte // AES-CCM: the keystream block that encrypts the tag
}

// newSuite validates k and builds the cipher state. The key bytes are copied into the
// cipher state, not retained.
func newSuite(k Keys) (*suite, error) {
	switch k.Encr {
	case EncrAESGCM8, EncrAESGCM12, EncrAESGCM16:
		return newGCMSuite(k)
	case EncrChaCha20Poly1305:
		return newChaChaSuite(k)
	case EncrAESCCM8, EncrAESCCM12, EncrAESCCM16:
		return newCCMSuite(k)
	case EncrAESCBC, EncrAESCTR:
		return newHMACSuite(k)
	default:
		return nil, fmt.Errorf("esp: unsupported encryption transform %d", k.Encr)
	}
}

// aeadOnly refuses an integrity transform next to the AEAD name.
func aeadOnly(name string, k Keys) error {
	if k.Integ != IntegNone {
		return fmt.Errorf("esp: %s takes no integrity transform (got %d)", name, k.Integ)
	}
	return nil
}

// aesKey splits k.EncrKey into an AES key and the salt bytes after it, checking their
// lengths against each other and the key length attribute.
func aesKey(name string, k Keys, salt int) (key, rest []byte, err error) {
	n := len(k.EncrKey) - salt
	if n != 16 && n != 24 && n != 32 {
		if salt == 0 {
			return nil, nil, fmt.Errorf("esp: %s key is %d bytes, want 16, 24 or 32", name, n)
		}
		return nil, nil, fmt.Errorf("esp: %s key with salt is %d bytes, want %d, %d or %d",
			name, len(k.EncrKey), 16+salt, 24+salt, 32+salt)
	}
	if k.EncrKeyBits != 0 && k.EncrKeyBits != n*8 {
		return nil, nil, fmt.Errorf("esp: %s key length %d bits does not match %d key bytes", name, k.EncrKeyBits, n)
	}
	return k.EncrKey[:n], k.EncrKey[n:], nil
}

// newGCMSuite is AES-GCM with a 16, 12 or 8-byte ICV (RFC 4106). crypto/cipher makes
// no GCM with a tag under 12 bytes: the 8-byte one is a 16-byte one cut (sealGCM8).
func newGCMSuite(k Keys) (*suite, error) {
	icv := 16 - 4*int(EncrAESGCM16-k.Encr) // 18, 19, 20: 8, 12, 16
	if err := aeadOnly("AES-GCM", k); err != nil {
		return nil, err
	}
	key, salt, err := aesKey("AES-GCM", k, saltLen)
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	a, err := cipher.NewGCMWithTagSize(b, max(icv, 12))
	if err != nil {
		return nil, err
	}
	s := &suite{aead: a, ivLen: aeadIVLen, icv: icv, align: 4}
	if icv == 8 {
		s.aead, s.gcm8 = nil, a
	}
	copy(s.salt[:], salt)
	return s, nil
}

func newChaChaSuite(k Keys) (*suite, error) {
	if err := aeadOnly("ChaCha20-Poly1305", k); err != nil {
		return nil, err
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
}

// newCCMSuite is AES-CCM with a 16, 12 or 8-byte ICV (RFC 4309).
func newCCMSuite(k Keys) (*suite, error) {
	tag := 16 - 4*int(EncrAESCCM16-k.Encr) // 14, 15, 16: 8, 12, 16
	if err := aeadOnly("AES-CCM", k); err != nil {
		return nil, err
	}
	key, salt, err := aesKey("AES-CCM", k, ccmSaltLen)
	if err != nil {
		return nil, err
	}
	c, err := newCCM(key, tag)
	if err != nil {
		return nil, err
	}
	s := &suite{ccm: c, ivLen: aeadIVLen, icv: tag, align: 4}
	copy(s.salt[:], salt)
	return s, nil
}

// integAlg is the HMAC of an integrity transform: hash, key and ICV lengths.
func integAlg(id uint16) (func() hash.Hash, int, int, error) {
	switch id {
	case IntegHMACSHA1_96:
		return sha1.New, 20, 12, nil
	case IntegHMACSHA2_256128:
		return sha256.New, 32, 16, nil
	case IntegHMACSHA2_384192:
		return sha512.New384, 48, 24, nil
	case IntegHMACSHA2_512256:
		return sha512.New, 64, 32, nil
	case IntegNone:
		return nil, 0, 0, errors.New("esp: AES-CBC and AES-CTR need an integrity transform")
	}
	return nil, 0, 0, fmt.Errorf("esp: unsupported integrity transform %d", id)
}

// newHMACSuite is AES-CBC (RFC 3602) or AES-CTR (RFC 3686) with an HMAC (RFC 2404, RFC
// 4868).
func newHMACSuite(k Keys) (*suite, error) {
	name, salt := "AES-CBC", 0
	if k.Encr == EncrAESCTR {
		name, salt = "AES-CTR", saltLen
	}
	key, nonce, err := aesKey(name, k, salt)
	if err != nil {
		return nil, err
	}
	newHash, keyLen, icv, err := integAlg(k.Integ)
	if err != nil {
		return nil, err
	}
	if len(k.IntegKey) != keyLen {
		return nil, fmt.Errorf("esp: integrity key is %d bytes, want %d", len(k.IntegKey), keyLen)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	s := &suite{block: block, icv: icv}
	s.cbc.key = append([]byte(nil), k.IntegKey...)
	if k.Encr == EncrAESCTR {
		gcm, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		s.ctr = &ctrStream{block: block, gcm: gcm}
		s.ivLen, s.align = aeadIVLen, 4 // RFC 3686 section 3.2: no padding but to 4 bytes
		copy(s.salt[:], nonce)
		s.cbc.make = func(integKey []byte) *cbcState {
			return &cbcState{mac: hmac.New(newHash, integKey)}
		}
		return s, nil
	}
	var ivKey [16]byte
	rand.Read(ivKey[:]) // never fails (crypto/rand panics instead)
	if s.ivGen, err = aes.NewCipher(ivKey[:]); err != nil {
		return nil, err
	}
	s.ivLen, s.align = cbcIVLen, aes.BlockSize
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
// transforms and AES-CTR it is the sequence number itself (unique per SA and key, RFC
// 4106 section 3.1, RFC 4309 section 3.1, RFC 3686 section 3.1); for AES-CBC it is the
// sequence number encrypted under a random per-SA key, so it is unpredictable (RFC 3602
// section 3) without a system call per packet.
func (s *suite) nextIV(sc *scratch, seq uint64) []byte {
	if s.ivGen == nil {
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
	if s.ccm != nil {
		s.ccm.seal(sc, pt[:ptLen+s.icv], ptLen, s.ccmNonce(sc, iv), s.aad(sc, b, seq, esn))
		return hl + ptLen + s.icv
	}
	if s.gcm8 != nil {
		copy(sc.nonce[:saltLen], s.salt[:])
		copy(sc.nonce[saltLen:], iv)
		s.sealGCM8(b[:hl+ptLen+s.icv], sc.nonce[:], s.aad(sc, b, seq, esn))
		copy(b[espHeaderLen:hl], iv)
		return hl + ptLen + s.icv
	}
	st := s.cbc.get()
	if st == nil {
		return 0 // the SA was removed
	}
	if s.ctr != nil {
		s.ctr.xor(sc, s.ctrBlock(sc, iv), pt)
	} else {
		st.encIV.SetIV(iv)
		st.enc.CryptBlocks(pt, pt)
	}
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

// ccmNonce is salt || IV, RFC 4309 section 4.
func (s *suite) ccmNonce(sc *scratch, iv []byte) []byte {
	copy(sc.nonce[:ccmSaltLen], s.salt[:])
	copy(sc.nonce[ccmSaltLen:], iv)
	return sc.nonce[:ccmSaltLen+aeadIVLen]
}

// ctrBlock is the first counter block but its count, nonce || IV || 0, RFC 3686
// section 4.
func (s *suite) ctrBlock(sc *scratch, iv []byte) *[16]byte {
	copy(sc.cb[:saltLen], s.salt[:])
	copy(sc.cb[saltLen:], iv)
	clear(sc.cb[saltLen+aeadIVLen:])
	return &sc.cb
}

// aad is SPI || seq (8 bytes) or, with ESN, SPI || seq_hi || seq_lo (12 bytes), RFC
// 4106 section 5, RFC 4309 section 5 and RFC 7634 section 4. SPI and seq_lo are those
// in b's header.
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
	if s.ccm != nil {
		pt, ok := s.ccm.open(sc, b[hl:], s.ccmNonce(sc, b[espHeaderLen:hl]), s.aad(sc, b, seq, esn))
		if !ok {
			return nil, dropAuth
		}
		return pt, dropNone
	}
	if s.gcm8 != nil {
		copy(sc.nonce[:saltLen], s.salt[:])
		copy(sc.nonce[saltLen:], b[espHeaderLen:hl])
		pt, ok := s.openGCM8(b, sc.nonce[:], s.aad(sc, b, seq, esn))
		if !ok {
			return nil, dropAuth
		}
		return pt, dropNone
	}
	end := len(b) - s.icv
	ct := b[hl:end]
	if s.ctr == nil && len(ct)%aes.BlockSize != 0 {
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
	if s.ctr != nil {
		s.ctr.xor(sc, s.ctrBlock(sc, b[espHeaderLen:hl]), ct)
	} else {
		st.decIV.SetIV(b[espHeaderLen:hl])
		st.dec.CryptBlocks(ct, ct)
	}
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

// sealGCM8 encrypts the plaintext of the ESP packet b (8-byte header, 8-byte IV,
// plaintext, 8 bytes for the ICV) in place and writes the ICV, the first 8 bytes of the
// GCM tag (SP 800-38D section 7.1, T = MSB_t). GCM writes all 16 tag bytes after the
// ciphertext, 8 more than the packet has, so the plaintext moves down over the IV while
// GCM works on it, and the ciphertext back up; the caller writes the IV again.
func (s *suite) sealGCM8(b []byte, nonce, aad []byte) {
	const lo, hi = espHeaderLen, espHeaderLen + aeadIVLen
	n := len(b) - hi - 8
	copy(b[lo:lo+n], b[hi:hi+n])
	s.gcm8.Seal(b[lo:lo], nonce, b[lo:lo+n], aad)
	var icv [8]byte
	copy(icv[:], b[lo+n:])
	copy(b[hi:hi+n], b[lo:lo+n])
	copy(b[hi+n:], icv[:])
}

// openGCM8 authenticates and decrypts the ESP packet b with an 8-byte ICV in place,
// the data again moved over the IV (sealGCM8). GCM opens only with its whole tag, so
// this decrypts, encrypts again to learn the tag of the ciphertext, compares its first
// 8 bytes with the ICV, and decrypts: three passes of GCM.
func (s *suite) openGCM8(b []byte, nonce, aad []byte) ([]byte, bool) {
	const lo, hi = espHeaderLen, espHeaderLen + aeadIVLen
	n := len(b) - hi - 8
	var icv [8]byte
	copy(icv[:], b[hi+n:])
	copy(b[lo:lo+n], b[hi:hi+n])
	s.gcm8.Seal(b[lo:lo], nonce, b[lo:lo+n], aad) // the plaintext, and a tag of no use
	s.gcm8.Seal(b[lo:lo], nonce, b[lo:lo+n], aad) // the ciphertext again, and its tag
	if subtle.ConstantTimeCompare(b[lo+n:lo+n+8], icv[:]) != 1 {
		clear(b[lo:])
		return nil, false
	}
	s.gcm8.Seal(b[lo:lo], nonce, b[lo:lo+n], aad)
	copy(b[hi:hi+n], b[lo:lo+n])
	return b[hi : hi+n], true
}

// ctrStream is AES in counter mode (SP 800-38A section 6.5) over counter blocks whose
// first 12 bytes are fixed per packet and whose last 4 count blocks: RFC 3686's
// nonce || IV || counter, and CCM's A_i with an 11-byte nonce (RFC 4309). It allocates
// nothing, where cipher.NewCTR allocates a stream per packet.
//
// Past the first block it takes the keystream from AES-GCM on the same key, whose
// encryption with a 12-byte nonce N is exactly that: the counter blocks N || 2,
// N || 3, ... (SP 800-38D section 7.1, J0 = N || 1). The GCM tag is not used; computing
// it is the price of Go's fast GCM code. The first block and the last 16 bytes (where
// GCM writes its tag) are made with single AES calls.
type ctrStream struct {
	block cipher.Block
	gcm   cipher.AEAD // the same key, 12-byte nonce, 16-byte tag
}

// xor XORs data in place with the keystream of the counter blocks cb[:12] || c+1,
// c+2, ..., where c is the big-endian count in cb[12:16] on entry. It uses sc.ks and
// sc.save and leaves cb[12:16] changed.
func (c *ctrStream) xor(sc *scratch, cb *[16]byte, data []byte) {
	base := binary.BigEndian.Uint32(cb[12:])
	n := len(data)
	if base != 0 || n <= 32 {
		// GCM counts from 2 in the last 4 bytes only when the count starts at 0 there;
		// and short data has no middle to hand it.
		for off := 0; off < n; off += 16 {
			binary.BigEndian.PutUint32(cb[12:], base+1+uint32(off/16))
			c.block.Encrypt(sc.ks[:16], cb[:])
			subtle.XORBytes(data[off:], data[off:], sc.ks[:16])
		}
		return
	}
	binary.BigEndian.PutUint32(cb[12:], 1)
	c.block.Encrypt(sc.ks[:16], cb[:])
	subtle.XORBytes(data[:16], data[:16], sc.ks[:16])
	// data[16:n-16] with the counts 2, 3, ...; its 16-byte tag lands on data[n-16:n],
	// kept in sc.save. The tag fits in data, so Seal works in place and allocates nothing.
	copy(sc.save[:], data[n-16:])
	c.gcm.Seal(data[16:16], cb[:12], data[16:n-16], nil)
	off := n - 16
	k, r := uint32(off/16), off%16 // the last 16 bytes start r bytes into block k (count k+1)
	binary.BigEndian.PutUint32(cb[12:], k+1)
	c.block.Encrypt(sc.ks[:16], cb[:])
	if r != 0 {
		binary.BigEndian.PutUint32(cb[12:], k+2)
		c.block.Encrypt(sc.ks[16:], cb[:])
	}
	subtle.XORBytes(data[off:], sc.save[:], sc.ks[r:r+16])
}

// ccm is AES-CCM (RFC 3610, SP 800-38C) in place, for ESP (RFC 4309: an 11-byte nonce,
// salt || IV). The standard library has none. Nonces of 7 to 13 bytes work (the tests
// use RFC 3610's 13-byte ones); additional data must be shorter than 0xff00 bytes (ESP
// has 8 or 12).
type ccm struct {
	ctr    ctrStream
	tagLen int // 4, 6, ..., 16
}

func newCCM(key []byte, tagLen int) (*ccm, error) {
	if tagLen < 4 || tagLen > 16 || tagLen%2 != 0 {
		return nil, fmt.Errorf("esp: AES-CCM tag of %d bytes", tagLen)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	return &ccm{ctr: ctrStream{block: b, gcm: g}, tagLen: tagLen}, nil
}

// seal encrypts b[:n] in place and writes the tag to b[n:n+tagLen].
func (c *ccm) seal(sc *scratch, b []byte, n int, nonce, aad []byte) {
	c.mac(sc, nonce, aad, b[:n])
	c.counter0(sc, nonce)
	subtle.XORBytes(b[n:n+c.tagLen], sc.x[:c.tagLen], sc.s0[:c.tagLen])
	c.ctr.xor(sc, &sc.cb, b[:n])
}

// open decrypts and authenticates b (ciphertext || tag) in place and returns the
// plaintext. On failure it returns false and clears the would-be plaintext.
func (c *ccm) open(sc *scratch, b []byte, nonce, aad []byte) ([]byte, bool) {
	n := len(b) - c.tagLen
	if n < 0 {
		return nil, false
	}
	c.counter0(sc, nonce)
	c.ctr.xor(sc, &sc.cb, b[:n])
	c.mac(sc, nonce, aad, b[:n])
	subtle.XORBytes(sc.x[:c.tagLen], sc.x[:c.tagLen], sc.s0[:c.tagLen])
	if subtle.ConstantTimeCompare(sc.x[:c.tagLen], b[n:]) != 1 {
		clear(b[:n])
		return nil, false
	}
	return b[:n], true
}

// counter0 sets sc.cb to A_0 = flags || nonce || 0 and sc.s0 to its encryption
// (RFC 3610 section 2.3).
func (c *ccm) counter0(sc *scratch, nonce []byte) {
	clear(sc.cb[:])
	sc.cb[0] = byte(14 - len(nonce)) // L-1, the counter taking the L = 15-len(nonce) bytes left
	copy(sc.cb[1:], nonce)
	c.ctr.block.Encrypt(sc.s0[:], sc.cb[:])
}

// mac computes the CBC-MAC T of RFC 3610 section 2.2 into sc.x: over B_0 (flags, nonce,
// l(m)), l(a) || a, and the message, each padded with zeros to whole blocks.
func (c *ccm) mac(sc *scratch, nonce, aad, msg []byte) {
	x := &sc.x
	x[0] = byte((c.tagLen-2)/2<<3 | (14 - len(nonce)))
	if len(aad) > 0 {
		x[0] |= 0x40
	}
	copy(x[1:], nonce)
	m := len(msg)
	for i := 15; i > len(nonce); i-- {
		x[i] = byte(m)
		m >>= 8
	}
	c.ctr.block.Encrypt(x[:], x[:])
	if len(aad) > 0 {
		x[0] ^= byte(len(aad) >> 8)
		x[1] ^= byte(len(aad))
		k := subtle.XORBytes(x[2:], x[2:], aad)
		c.ctr.block.Encrypt(x[:], x[:])
		c.cbcMAC(x, aad[k:])
	}
	c.cbcMAC(x, msg)
}

// cbcMAC goes on with the CBC-MAC x over data, its last block padded with zeros.
func (c *ccm) cbcMAC(x *[16]byte, data []byte) {
	for len(data) > 0 {
		k := subtle.XORBytes(x[:], x[:], data)
		c.ctr.block.Encrypt(x[:], x[:])
		data = data[k:]
	}
}
