package crypto

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"hash"
)

// PRF is an IKEv2 pseudorandom function, HMAC with a SHA-2 hash (RFC 4868) or, as a
// legacy algorithm, with SHA-1 (RFC 2104). Its
// preferred key size, which sizes SK_d, SK_pi and SK_pr, is its output size.
// A PRF holds no secret and is safe for concurrent use.
type PRF struct {
	id   uint16
	hash func() hash.Hash
	size int
}

// NewPRF returns the PRF with transform ID id (PRF_HMAC_SHA2_256/384/512, or the
// legacy PRF_HMAC_SHA1).
func NewPRF(id uint16) (*PRF, error) {
	a := lookupPRF(id)
	if a == nil {
		return nil, fmt.Errorf("ikecrypto: unsupported PRF %d", id)
	}
	return newPRFFromHash(id, a.hash), nil
}

// newPRFFromHash builds an HMAC PRF from any hash, e.g. SHA-1 for the ACVP vector.
func newPRFFromHash(id uint16, h func() hash.Hash) *PRF {
	return &PRF{id: id, hash: h, size: h().Size()}
}

// ID returns the PRF's transform ID.
func (p *PRF) ID() uint16 { return p.id }

// Size returns the output length in octets, which is also its preferred key length.
func (p *PRF) Size() int { return p.size }

// Compute returns prf(key, data[0] | data[1] | ...).
func (p *PRF) Compute(key []byte, data ...[]byte) []byte {
	m := hmac.New(p.hash, key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(make([]byte, 0, p.size))
}

// Plus returns the first n octets of prf+(key, seed) (RFC 7296 section 2.13):
// T1 = prf(K, S | 0x01), Ti = prf(K, Ti-1 | S | i). At most 255 blocks exist.
func (p *PRF) Plus(key, seed []byte, n int) ([]byte, error) {
	if n < 0 {
		return nil, errors.New("ikecrypto: prf+ length is negative")
	}
	if n > 255*p.size {
		return nil, fmt.Errorf("ikecrypto: prf+ cannot produce %d octets (at most %d)", n, 255*p.size)
	}
	blocks := (n + p.size - 1) / p.size
	out := make([]byte, 0, blocks*p.size)
	m := hmac.New(p.hash, key)
	var t []byte
	for i := 1; i <= blocks; i++ {
		m.Reset()
		m.Write(t)
		m.Write(seed)
		m.Write([]byte{byte(i)})
		out = m.Sum(out)
		t = out[len(out)-p.size:]
	}
	return out[:n:n], nil
}

// SKEYSEED returns prf(Ni | Nr, g^ir), the IKE SA's seed (RFC 7296 section 2.14).
// ni and nr are the nonce data without payload headers.
func (p *PRF) SKEYSEED(ni, nr, gir []byte) []byte {
	key := make([]byte, 0, len(ni)+len(nr))
	key = append(append(key, ni...), nr...)
	return p.Compute(key, gir)
}

// RekeySKEYSEED returns prf(SK_d (old), g^ir (new) | Ni | Nr), the seed of an IKE SA
// created by rekeying (RFC 7296 section 2.18). p must be the OLD IKE SA's PRF; the
// new SA's keys are then derived with DeriveIKEKeys and the new SA's PRF. With the
// shared secrets of additional key exchanges (RFC 9370 2.2.4: IKE_FOLLOWUP_KE after the
// CREATE_CHILD_SA that rekeys) it is prf(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n)),
// gir being SK(0) and addKE SK(1) to SK(n) in order.
//
// The same form, prf(SK_d(n-1), SK(n) | Ni | Nr), is SKEYSEED(n) after an additional
// key exchange in IKE_INTERMEDIATE (RFC 9370 2.2.2).
func (p *PRF) RekeySKEYSEED(skdOld, gir, ni, nr []byte, addKE ...[]byte) []byte {
	return p.Compute(skdOld, append([][]byte{gir, ni, nr}, addKE...)...)
}

// IKEKeys are the keys of an IKE SA. SKai and SKar are empty with an AEAD; SKei and
// SKer then include the salt at their end (4 octets, 3 for AES-CCM), as they include
// the 4-octet nonce with AES-CTR.
type IKEKeys struct {
	SKd, SKai, SKar, SKei, SKer, SKpi, SKpr []byte
}

// DeriveIKEKeys computes {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} =
// prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) (RFC 7296 section 2.14). prf is the PRF of
// suite s; its Size gives the lengths of SK_d, SK_pi and SK_pr, while s gives the
// encryption and integrity key lengths (RFC 5282 section 7.1 and RFC 7634 section 3
// for the salt, RFC 5930 section 3 for the AES-CTR nonce).
func DeriveIKEKeys(prf *PRF, s IKESuite, skeyseed, ni, nr []byte, spii, spir uint64) (IKEKeys, error) {
	encrLen, integLen, err := s.keyLengths()
	if err != nil {
		return IKEKeys{}, err
	}
	seed := make([]byte, 0, len(ni)+len(nr)+16)
	seed = append(append(seed, ni...), nr...)
	seed = appendUint64(seed, spii)
	seed = appendUint64(seed, spir)
	total := 3*prf.Size() + 2*integLen + 2*encrLen
	km, err := prf.Plus(skeyseed, seed, total)
	if err != nil {
		return IKEKeys{}, err
	}
	var k IKEKeys
	take := func(n int) []byte {
		if n == 0 {
			return nil
		}
		b := km[:n:n]
		km = km[n:]
		return b
	}
	k.SKd = take(prf.Size())
	k.SKai = take(integLen)
	k.SKar = take(integLen)
	k.SKei = take(encrLen)
	k.SKer = take(encrLen)
	k.SKpi = take(prf.Size())
	k.SKpr = take(prf.Size())
	return k, nil
}

// ChildKeys are a Child SA's keys. EncrI and IntegI protect traffic from the
// initiator to the responder, EncrR and IntegR the other direction. With an AEAD the
// integrity keys are empty and the encryption keys end with the salt (4 octets, 3 for
// AES-CCM: RFC 4309 section 7.1); with AES-CTR they end with the 4-octet nonce (RFC
// 3686 section 5.1).
type ChildKeys struct {
	EncrI, IntegI, EncrR, IntegR []byte
}

// ChildKeymat computes KEYMAT = prf+(SK_d, [g^ir (new)] | Ni | Nr) and splits it as
// RFC 7296 section 2.17 says: initiator-to-responder encryption key, its integrity
// key, then the responder-to-initiator keys. gir is nil without PFS. With additional
// key exchanges (RFC 9370 2.2.4, IKE_FOLLOWUP_KE) it is prf+(SK_d, SK(0) | Ni | Nr |
// SK(1) | ... | SK(n)): gir is SK(0), addKE SK(1) to SK(n) in order.
func ChildKeymat(prf *PRF, skd, gir, ni, nr []byte, s ESPSuite, addKE ...[]byte) (ChildKeys, error) {
	encrLen, integLen, err := s.keyLengths()
	if err != nil {
		return ChildKeys{}, err
	}
	n := len(gir) + len(ni) + len(nr)
	for _, k := range addKE {
		n += len(k)
	}
	seed := make([]byte, 0, n)
	seed = append(append(append(seed, gir...), ni...), nr...)
	for _, k := range addKE {
		seed = append(seed, k...)
	}
	km, err := prf.Plus(skd, seed, 2*(encrLen+integLen))
	clear(seed)
	if err != nil {
		return ChildKeys{}, err
	}
	take := func(n int) []byte {
		if n == 0 {
			return nil
		}
		b := km[:n:n]
		km = km[n:]
		return b
	}
	var k ChildKeys
	k.EncrI = take(encrLen)
	k.IntegI = take(integLen)
	k.EncrR = take(encrLen)
	k.IntegR = take(integLen)
	return k, nil
}

func appendUint64(b []byte, v uint64) []byte {
	return append(b, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32),
		byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// Zero overwrites the keys (best effort: Go may have copied them while the SA lived,
// e.g. when a slice grew; this clears the ones the SA still holds).
func (k *IKEKeys) Zero() {
	for _, b := range [][]byte{k.SKd, k.SKai, k.SKar, k.SKei, k.SKer, k.SKpi, k.SKpr} {
		clear(b)
	}
}
