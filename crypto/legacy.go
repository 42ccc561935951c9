package crypto

import (
	"slices"

	"github.com/mobikevpn/mobikevpn/wire"
)

// LegacyAlgorithms returns the strongSwan names of the legacy transforms in p, in
// transform order and each once, e.g. ["aes128ctr", "prfsha1", "sha1", "modp1024"]; it
// is empty when p has none. The configuration layer uses it to warn about a proposal
// that names them.
//
// Legacy algorithms are implemented for gateways that still ask for them. They are
// never part of "default" and are accepted only when a proposal names them:
//
//   - sha1 (AUTH_HMAC_SHA1_96, RFC 2404) and prfsha1 (PRF_HMAC_SHA1): HMAC-SHA-1 is
//     still sound as a MAC and a PRF, but RFC 8247 (sections 2.2 and 2.3) downgrades
//     both from MUST to MUST- because of the industry-wide trend to deprecate SHA-1,
//     RFC 8221 lists AUTH_HMAC_SHA1_96 as MUST- for ESP, and its ICV is cut to 96 bits.
//   - modp1024 (group 2, RFC 2409 section 6.2) and modp1536 (group 5, RFC 3526
//     section 2): both SHOULD NOT in RFC 8247 (section 2.4). They are well below
//     128-bit strength; a 1024-bit group is within reach of well-funded attackers and
//     nation states, who can precompute for the few primes everyone shares (Logjam),
//     and RFC 8247 expects it to become MUST NOT. The 1536-bit group's margin is
//     considered too narrow.
//   - aes128gcm8, aes128gcm12 (ENCR_AES_GCM_8/12), aes128ccm8, aes128ccm12 (ENCR_AES_CCM_8/12)
//     and the 192 and 256-bit variants: an 8 or 12-octet ICV gives an attacker a better
//     chance of forgery than the 16 octets of the defaults, and with GCM the forgery
//     bound degrades further with message length. RFC 8247 keeps the short GCM ICVs at
//     MAY; ENCR_AES_CCM_8 is a SHOULD only for IoT interoperability (RFC 8247 section
//     2.1, RFC 8221).
//   - aes128ccm16 and aes128ctr (ENCR_AES_CCM_16, ENCR_AES_CTR; RFC 4309, RFC 5282,
//     RFC 3686, RFC 5930) and their 192 and 256-bit variants: sound, but uncommon
//     outside IoT, and RFC 8247 section 2.1 does not list them among the IKEv2
//     ciphers it asks for; AES-CTR also needs a separate integrity algorithm, and
//     neither is what strongSwan or this package proposes by default.
func LegacyAlgorithms(p wire.Proposal) []string {
	var out []string
	for i := range p.Transforms {
		t := &p.Transforms[i]
		if !transformKnown(t) || !isLegacy(t) {
			continue
		}
		if name := transformName(*t); !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// isLegacy reports whether t, a transform of this package's tables, is a legacy
// algorithm.
func isLegacy(t *wire.Transform) bool {
	switch t.Type {
	case wire.TransformENCR:
		a := lookupEncr(t.ID, int(t.KeyLength()))
		return a != nil && a.legacy
	case wire.TransformINTEG:
		a := lookupInteg(t.ID)
		return a != nil && a.legacy
	case wire.TransformPRF:
		a := lookupPRF(t.ID)
		return a != nil && a.legacy
	case wire.TransformDH:
		a := lookupDH(t.ID)
		return a != nil && a.legacy
	}
	return false
}
