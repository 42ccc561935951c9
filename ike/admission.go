package ike

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"io"
	"net/netip"
	"time"
)

// admission is a responder's gate before authentication (RFC 7296 2.6): it counts the
// half-open SAs, globally and per source block (an IPv4 address, an IPv6 prefix), apart
// for those whose initiator returned a valid COOKIE; it counts the memory they hold;
// and it makes and checks the cookies. It decides whether a new IKE_SA_INIT is
// answered; the engine carries the decision out.
type admission struct {
	nHalf            int                  // half-open SAs
	proved, unproved map[netip.Prefix]int // half-open SAs per source block, by whether they returned a COOKIE
	preauth          int                  // bytes held by SAs not authenticated (messages, fragments)
	cookies          cookieJar
}

func newAdmission(rand io.Reader) (admission, error) {
	a := admission{proved: make(map[netip.Prefix]int), unproved: make(map[netip.Prefix]int)}
	err := a.cookies.init(rand)
	return a, err
}

// admitVerdict is what admission says about a new IKE_SA_INIT request.
type admitVerdict uint8

const (
	admitted      admitVerdict = iota
	demandCookie               // answer with a COOKIE to return
	blockedSource              // the source block has too many half-open SAs that returned cookies
	halfOpenFull               // the global limit of half-open SAs
	preauthFull                // the memory before authentication
)

// decide applies cfg's limits to a request of size bytes from source block blk that
// returned a valid COOKIE (proved) or not. Cookies are demanded above the threshold of
// half-open SAs, and from a source that already has BlockThreshold half-open SAs it did
// not prove it can receive for: forged requests from a victim's address then cost the
// victim one round trip, never a lockout. Only sources that returned a cookie are
// limited (dropped past BlockThreshold), and everyone past the global limits.
func (a *admission) decide(cfg *Config, blk netip.Prefix, proved bool, size int) admitVerdict {
	switch {
	case !proved && (a.nHalf >= cfg.CookieThreshold || a.unproved[blk] >= cfg.BlockThreshold):
		return demandCookie
	case proved && a.proved[blk] >= cfg.BlockThreshold:
		return blockedSource
	case a.nHalf >= cfg.HalfOpenLimit:
		return halfOpenFull
	case a.preauth+2*size > cfg.PreauthMemory:
		return preauthFull
	}
	return admitted
}

// opened counts a new half-open SA of source block blk; closed takes it off again.
func (a *admission) opened(blk netip.Prefix, proved bool) {
	a.nHalf++
	a.counts(proved)[blk]++
}

func (a *admission) closed(blk netip.Prefix, proved bool) {
	a.nHalf--
	counts := a.counts(proved)
	if counts[blk] <= 1 {
		delete(counts, blk)
	} else {
		counts[blk]--
	}
}

func (a *admission) counts(proved bool) map[netip.Prefix]int {
	if proved {
		return a.proved
	}
	return a.unproved
}

// room is how many more bytes SAs before authentication may hold under limit.
func (a *admission) room(limit int) int { return max(limit-a.preauth, 0) }

// sourceBlock is the source a peer address counts as for the half-open limits: an
// IPv4 address, or the IPv6 prefix of length v6Bits it is in.
func sourceBlock(a netip.Addr, v6Bits int) netip.Prefix {
	a = a.Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(v6Bits)
	return p
}

// cookieJar makes and checks cookies: <version> | SHA-256(Ni | IPi | SPIi | secret)
// (RFC 7296 2.6). The secret changes every few minutes; the previous one is still
// accepted.
type cookieJar struct {
	rand      io.Reader
	secret    [2][32]byte
	version   uint8
	rotatedAt time.Time
	each      time.Duration // how often the secret changes
}

// init fills both secrets: the one before the first rotation is accepted too (version
// 255 while the version is 0), and an unfilled one would be all zeros, a secret anyone
// knows.
func (j *cookieJar) init(rand io.Reader) error {
	j.rand, j.each = rand, 2*time.Minute
	for i := range j.secret {
		if _, err := io.ReadFull(rand, j.secret[i][:]); err != nil {
			return err
		}
	}
	return nil
}

// make returns the cookie for an initiator with nonce ni, address ip and SPI spiI.
func (j *cookieJar) make(now time.Time, ni []byte, ip netip.Addr, spiI uint64) []byte {
	j.rotate(now)
	return j.compute(ni, ip, spiI, j.version)
}

func (j *cookieJar) compute(ni []byte, ip netip.Addr, spiI uint64, version uint8) []byte {
	h := sha256.New()
	h.Write(ni)
	h.Write(ip.Unmap().AsSlice())
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], spiI)
	h.Write(s[:])
	h.Write(j.secret[version&1][:])
	return h.Sum([]byte{version})
}

// valid reports whether cookie is one we made (with the current or the previous
// secret) for that initiator, compared in constant time.
func (j *cookieJar) valid(now time.Time, cookie, ni []byte, ip netip.Addr, spiI uint64) bool {
	j.rotate(now)
	if len(cookie) != 1+sha256.Size {
		return false
	}
	v := cookie[0]
	if v != j.version && v != j.version-1 {
		return false
	}
	return subtle.ConstantTimeCompare(cookie, j.compute(ni, ip, spiI, v)) == 1
}

func (j *cookieJar) rotate(now time.Time) {
	if j.rotatedAt.IsZero() {
		j.rotatedAt = now
		return
	}
	if now.Sub(j.rotatedAt) < j.each {
		return
	}
	var next [32]byte
	if _, err := io.ReadFull(j.rand, next[:]); err != nil {
		return // keep the current secret until randomness comes back
	}
	j.rotatedAt = now
	j.version++
	j.secret[j.version&1] = next
}
