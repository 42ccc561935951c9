package crypto

import (
	"crypto/ecdh"
	cryptorand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/mobikevpn/mobikevpn/wire"
)

// KeyExchange is one side of an ephemeral key exchange (RFC 7296 section 3.4).
// PublicKey is the Key Exchange Data of our KE payload; SharedSecret takes the peer's
// Key Exchange Data and returns g^ir.
//
// For a Diffie-Hellman group either side may use it. For ML-KEM it is the initiator's
// side only: PublicKey is the encapsulation key and SharedSecret decapsulates the
// responder's ciphertext. A responder uses RespondKeyExchange, which serves both kinds.
type KeyExchange interface {
	Group() uint16
	PublicKey() []byte
	SharedSecret(peer []byte) ([]byte, error)
}

// ErrInvalidKEData marks a RespondKeyExchange error caused by the initiator's Key
// Exchange Data (a wrong length, a point not on the curve, a value out of range, an
// encapsulation key that fails FIPS 203's checks), which a responder answers with
// INVALID_SYNTAX (draft-ietf-ipsecme-ikev2-mlkem section 2.2). Other errors (no
// randomness, an unsupported method) are ours.
var ErrInvalidKEData = errors.New("ikecrypto: invalid key exchange data")

// RespondKeyExchange is the responder's side of a key exchange of group, given the
// initiator's Key Exchange Data peer. It returns ours, the Key Exchange Data of our KE
// payload, and the shared secret. For a Diffie-Hellman group ours is the public value
// of a fresh key pair drawn from rand and shared is g^ir; for ML-KEM-768 ours is the
// ciphertext encapsulated to the initiator's encapsulation key and shared is the
// 32-octet ML-KEM shared secret. rand nil means crypto/rand.Reader.
func RespondKeyExchange(group uint16, peer []byte, rand io.Reader) (ours, shared []byte, err error) {
	if rand == nil {
		rand = cryptorand.Reader
	}
	if group == wire.KE_MLKEM768 {
		return encapsulateMLKEM768(peer, rand)
	}
	k, err := NewKeyExchange(group, rand)
	if err != nil {
		return nil, nil, err
	}
	if shared, err = k.SharedSecret(peer); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidKEData, err)
	}
	return k.PublicKey(), shared, nil
}

// NewKeyExchange generates an ephemeral key for group: x25519 (RFC 8031), ecp256 and
// ecp384 (RFC 5903), modp2048 and modp3072 (RFC 3526), and the legacy modp1024 (RFC
// 2409 section 6.2) and modp1536 (RFC 3526 section 2); and for ML-KEM-768 (FIPS 203,
// draft-ietf-ipsecme-ikev2-mlkem) the initiator's key pair, whose PublicKey is the
// encapsulation key. The private key is drawn from rand (nil means crypto/rand.Reader),
// so a fixed reader gives a fixed key in tests.
//
// ML-KEM-768 is here for the additional key exchanges of RFC 9370 only: GroupSupported
// does not report it, so neither the configuration nor proposal parsing accepts it yet.
func NewKeyExchange(group uint16, rand io.Reader) (KeyExchange, error) {
	if rand == nil {
		rand = cryptorand.Reader
	}
	switch group {
	case wire.DH_X25519, wire.DH_ECP256, wire.DH_ECP384:
		curve, size := ecCurve(group)
		buf := make([]byte, size)
		// For the NIST curves NewPrivateKey rejects scalars that are zero or not below
		// the group order; drawing again gives a uniform key. The chance of even one
		// retry is below 2^-32.
		for range 64 {
			if _, err := io.ReadFull(rand, buf); err != nil {
				return nil, fmt.Errorf("ikecrypto: reading randomness: %w", err)
			}
			priv, err := curve.NewPrivateKey(buf)
			if err == nil {
				return &ecKE{group: group, priv: priv}, nil
			}
		}
		return nil, errors.New("ikecrypto: randomness source gives no valid private key")
	case wire.DH_MODP1024, wire.DH_MODP1536, wire.DH_MODP2048, wire.DH_MODP3072:
		return newMODP(group, rand)
	case wire.KE_MLKEM768:
		return newMLKEM768(rand)
	}
	return nil, fmt.Errorf("ikecrypto: unsupported key exchange method %d", group)
}

func ecCurve(group uint16) (ecdh.Curve, int) {
	switch group {
	case wire.DH_X25519:
		return ecdh.X25519(), 32
	case wire.DH_ECP256:
		return ecdh.P256(), 32
	case wire.DH_ECP384:
		return ecdh.P384(), 48
	}
	return nil, 0
}

// newKeyExchangeFromPrivate builds a key exchange from a fixed private key (a
// 32-octet X25519 scalar, a big-endian ECP scalar of the field size, or a MODP
// exponent) for known-answer tests.
func newKeyExchangeFromPrivate(group uint16, priv []byte) (KeyExchange, error) {
	switch group {
	case wire.DH_X25519, wire.DH_ECP256, wire.DH_ECP384:
		curve, _ := ecCurve(group)
		k, err := curve.NewPrivateKey(priv)
		if err != nil {
			return nil, err
		}
		return &ecKE{group: group, priv: k}, nil
	case wire.DH_MODP1024, wire.DH_MODP1536, wire.DH_MODP2048, wire.DH_MODP3072:
		return newMODPFromExponent(group, new(big.Int).SetBytes(priv))
	}
	return nil, fmt.Errorf("ikecrypto: unsupported key exchange method %d", group)
}

// ecKE is X25519 or ECP key exchange through crypto/ecdh.
type ecKE struct {
	group uint16
	priv  *ecdh.PrivateKey
}

func (k *ecKE) Group() uint16 { return k.group }

// PublicKey returns the u-coordinate for X25519 (RFC 8031 section 3) and x | y
// without the SEC1 0x04 prefix for ECP (RFC 5903 section 7).
func (k *ecKE) PublicKey() []byte {
	b := k.priv.PublicKey().Bytes()
	if k.group != wire.DH_X25519 {
		b = b[1:]
	}
	return b
}

// SharedSecret returns the X25519 output, or the x coordinate of the ECP shared point
// (RFC 5903 section 7). Off-curve, infinity and wrong-length values are rejected, and
// for X25519 so is an all-zero result (RFC 8031 section 2).
func (k *ecKE) SharedSecret(peer []byte) ([]byte, error) {
	want := lookupDH(k.group).keLen
	if len(peer) != want {
		return nil, fmt.Errorf("ikecrypto: %s key exchange data is %d octets, want %d", dhName(k.group), len(peer), want)
	}
	enc := peer
	if k.group != wire.DH_X25519 {
		enc = make([]byte, 1+len(peer))
		enc[0] = 4
		copy(enc[1:], peer)
	}
	pub, err := k.priv.Curve().NewPublicKey(enc)
	if err != nil {
		return nil, fmt.Errorf("ikecrypto: invalid %s public value: %w", dhName(k.group), err)
	}
	// crypto/ecdh fails on an all-zero X25519 output (a low-order peer point).
	s, err := k.priv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("ikecrypto: %s: %w", dhName(k.group), err)
	}
	return s, nil
}

// The primes of the MODP groups: RFC 2409 section 6.2 (group 2), RFC 3526 sections 2
// to 4 (groups 5, 14, 15). The generator is 2 for all of them.
const (
	modp1024Hex = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF"
	modp1536Hex = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA237327FFFFFFFFFFFFFFFF"
	modp2048Hex = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF"
	modp3072Hex = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E208E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF"
)

// modpExponentBits is the length of our private exponents: twice the 128-bit
// strength we aim for, well above RFC 3526's estimates for these groups (section 8).
// For the legacy 1024 and 1536-bit groups the modulus, not the exponent, limits the
// strength, to well below 128 bits (RFC 3526 section 8, RFC 8247 section 2.4).
const modpExponentBits = 512

func modpPrime(group uint16) *big.Int {
	var h string
	switch group {
	case wire.DH_MODP1024:
		h = modp1024Hex
	case wire.DH_MODP1536:
		h = modp1536Hex
	case wire.DH_MODP2048:
		h = modp2048Hex
	case wire.DH_MODP3072:
		h = modp3072Hex
	default:
		return nil
	}
	p, _ := new(big.Int).SetString(h, 16)
	return p
}

// modpKE is finite-field Diffie-Hellman over an RFC 2409 or RFC 3526 group with
// math/big.
// math/big is not constant time; the exponent is ephemeral (used for one exchange),
// which limits what a timing observer can learn, but prefer the elliptic curve
// groups.
type modpKE struct {
	group uint16
	p     *big.Int
	x     *big.Int // private exponent
	pub   []byte
}

func newMODP(group uint16, rand io.Reader) (KeyExchange, error) {
	buf := make([]byte, modpExponentBits/8)
	if _, err := io.ReadFull(rand, buf); err != nil {
		return nil, fmt.Errorf("ikecrypto: reading randomness: %w", err)
	}
	buf[0] |= 0x80 // full-length exponent
	return newMODPFromExponent(group, new(big.Int).SetBytes(buf))
}

func newMODPFromExponent(group uint16, x *big.Int) (KeyExchange, error) {
	p := modpPrime(group)
	if p == nil {
		return nil, fmt.Errorf("ikecrypto: %d is not a MODP group", group)
	}
	if x.Sign() <= 0 || x.Cmp(p) >= 0 {
		return nil, errors.New("ikecrypto: MODP exponent out of range")
	}
	y := new(big.Int).Exp(big.NewInt(2), x, p)
	size := lookupDH(group).keLen
	return &modpKE{group: group, p: p, x: x, pub: y.FillBytes(make([]byte, size))}, nil
}

func (k *modpKE) Group() uint16 { return k.group }

// PublicKey returns g^x mod p, left-padded with zeros to the modulus length (RFC 7296
// section 3.4).
func (k *modpKE) PublicKey() []byte { return append([]byte(nil), k.pub...) }

// SharedSecret checks 1 < y < p-1 (RFC 6989 section 2.1, enough for these safe
// primes) and returns y^x mod p padded to the modulus length.
func (k *modpKE) SharedSecret(peer []byte) ([]byte, error) {
	size := lookupDH(k.group).keLen
	if len(peer) != size {
		return nil, fmt.Errorf("ikecrypto: %s key exchange data is %d octets, want %d", dhName(k.group), len(peer), size)
	}
	y := new(big.Int).SetBytes(peer)
	pm1 := new(big.Int).Sub(k.p, big.NewInt(1))
	if y.Cmp(big.NewInt(1)) <= 0 || y.Cmp(pm1) >= 0 {
		return nil, fmt.Errorf("ikecrypto: %s public value out of range", dhName(k.group))
	}
	s := new(big.Int).Exp(y, k.x, k.p)
	if s.Cmp(big.NewInt(1)) <= 0 { // cannot happen for valid y and x; belt and braces
		return nil, fmt.Errorf("ikecrypto: %s shared secret is degenerate", dhName(k.group))
	}
	return s.FillBytes(make([]byte, size)), nil
}
