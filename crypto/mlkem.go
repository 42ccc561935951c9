package crypto

import (
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	cryptorand "crypto/rand"
	"fmt"
	"io"

	"github.com/mobikevpn/mobikevpn/wire"
)

// ML-KEM-768 (FIPS 203) as an IKEv2 key exchange method, after
// draft-ietf-ipsecme-ikev2-mlkem-08:
//   - Transform Type 4 ID 36, "ml-kem-768" (section 4); strongSwan 6 names it mlkem768,
//     and ke1_mlkem768 as the first additional key exchange (RFC 9370).
//   - The initiator's Key Exchange Data is the 1184-octet encapsulation key, the
//     responder's the 1088-octet ciphertext; the shared secret is the 32-octet ML-KEM
//     shared secret, used like g^ir without padding (section 2, 2.1).
//   - The responder checks the encapsulation key as FIPS 203 section 7.2 says (length,
//     then every coefficient reduced mod q) before encapsulating, and refuses it, with
//     INVALID_SYNTAX, if a check fails; the initiator checks the ciphertext's length
//     (FIPS 203 section 7.3) before decapsulating. A tampered ciphertext of the right
//     length decapsulates, by implicit rejection, to an unrelated secret, which the
//     exchange's later authentication detects (section 2.2).
//   - Key pair and ciphertext are fresh for every exchange (section 3).
const (
	mlkem768EKLen = mlkem.EncapsulationKeySize768 // 1184
	mlkem768CTLen = mlkem.CiphertextSize768       // 1088
)

// mlkemKE is the initiator's side of ML-KEM-768: PublicKey is the encapsulation key,
// SharedSecret decapsulates the responder's ciphertext.
type mlkemKE struct {
	dk *mlkem.DecapsulationKey768
	ek []byte
}

// newMLKEM768 draws the 64-octet seed d || z from rand (FIPS 203 section 7.1:
// ML-KEM.KeyGen draws d, then z) and expands the decapsulation key from it.
func newMLKEM768(rand io.Reader) (KeyExchange, error) {
	seed := make([]byte, mlkem.SeedSize)
	defer clear(seed)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, fmt.Errorf("ikecrypto: reading randomness: %w", err)
	}
	dk, err := mlkem.NewDecapsulationKey768(seed)
	if err != nil { // only for a seed of another length
		return nil, fmt.Errorf("ikecrypto: mlkem768: %w", err)
	}
	return &mlkemKE{dk: dk, ek: dk.EncapsulationKey().Bytes()}, nil
}

func (k *mlkemKE) Group() uint16 { return wire.KE_MLKEM768 }

// PublicKey returns the encapsulation key ek, ByteEncode12(t) || rho (FIPS 203
// section 7.1), 1184 octets.
func (k *mlkemKE) PublicKey() []byte { return append([]byte(nil), k.ek...) }

// SharedSecret decapsulates the responder's ciphertext to the 32-octet shared secret.
// Only a wrong length is an error: any 1088 octets decapsulate, a ciphertext that was
// not made for our key to a pseudorandom secret (implicit rejection, FIPS 203 section
// 6.3).
func (k *mlkemKE) SharedSecret(peer []byte) ([]byte, error) {
	if len(peer) != mlkem768CTLen {
		return nil, fmt.Errorf("ikecrypto: mlkem768 ciphertext is %d octets, want %d", len(peer), mlkem768CTLen)
	}
	s, err := k.dk.Decapsulate(peer)
	if err != nil {
		return nil, fmt.Errorf("ikecrypto: mlkem768: %w", err)
	}
	return s, nil
}

// encapsulateMLKEM768 is the responder's side: it checks the initiator's encapsulation
// key and encapsulates a fresh secret to it. The 32-octet message m is drawn from rand;
// with crypto/rand.Reader, crypto/mlkem draws it itself (the same source), and
// with any other reader (tests, reproducible runs) m is read from it and the
// derandomized ML-KEM.Encaps_internal of crypto/mlkem/mlkemtest is used, which
// FIPS 140-only mode refuses.
func encapsulateMLKEM768(peer []byte, rand io.Reader) (ct, shared []byte, err error) {
	if len(peer) != mlkem768EKLen {
		return nil, nil, fmt.Errorf("%w: mlkem768 encapsulation key is %d octets, want %d", ErrInvalidKEData, len(peer), mlkem768EKLen)
	}
	// The modulus check of FIPS 203 section 7.2: ByteEncode12(ByteDecode12(ek)) = ek,
	// that is, every coefficient is below q = 3329.
	ek, err := mlkem.NewEncapsulationKey768(peer)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: mlkem768 encapsulation key: %w", ErrInvalidKEData, err)
	}
	if rand == cryptorand.Reader {
		shared, ct = ek.Encapsulate()
		return ct, shared, nil
	}
	m := make([]byte, 32)
	defer clear(m)
	if _, err := io.ReadFull(rand, m); err != nil {
		return nil, nil, fmt.Errorf("ikecrypto: reading randomness: %w", err)
	}
	shared, ct, err = mlkemtest.Encapsulate768(ek, m)
	if err != nil {
		return nil, nil, fmt.Errorf("ikecrypto: mlkem768: %w", err)
	}
	return ct, shared, nil
}
