package ike

import (
	"crypto/rand"
	"net/netip"
	"testing"
	"time"
)

// The gate before authentication on its own: verdicts at each limit, the counts, the
// cookies across secret rotations, the source blocks.

func TestAdmissionVerdicts(t *testing.T) {
	a, err := newAdmission(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{CookieThreshold: 3, BlockThreshold: 2, HalfOpenLimit: 5, PreauthMemory: 10000}
	victim := netip.MustParsePrefix("192.0.2.10/32")
	other := netip.MustParsePrefix("198.51.100.7/32")
	if v := a.decide(&cfg, victim, false, 500); v != admitted {
		t.Fatalf("first request: %d", v)
	}
	// BlockThreshold unproven half-open SAs from a source: it must return a cookie,
	// never be dropped (forged requests cannot lock it out).
	a.opened(victim, false)
	a.opened(victim, false)
	if v := a.decide(&cfg, victim, false, 500); v != demandCookie {
		t.Errorf("third unproven request from one source: %d, want a cookie", v)
	}
	if v := a.decide(&cfg, victim, true, 500); v != admitted {
		t.Errorf("the same source with a cookie: %d, want admitted", v)
	}
	if v := a.decide(&cfg, other, false, 500); v != admitted {
		t.Errorf("another source: %d", v)
	}
	// Past CookieThreshold everyone returns a cookie.
	a.opened(other, false)
	if v := a.decide(&cfg, netip.MustParsePrefix("203.0.113.1/32"), false, 500); v != demandCookie {
		t.Errorf("above the cookie threshold: %d", v)
	}
	// Sources that proved they receive are limited per source.
	a.opened(victim, true)
	a.opened(victim, true)
	if v := a.decide(&cfg, victim, true, 500); v != blockedSource {
		t.Errorf("proven source at BlockThreshold: %d", v)
	}
	if v := a.decide(&cfg, other, true, 500); v != halfOpenFull {
		t.Errorf("5 half-open SAs, limit 5: %d", v)
	}
	a.closed(victim, true)
	a.preauth = 9000
	if v := a.decide(&cfg, other, true, 501); v != preauthFull {
		t.Errorf("two copies of 501 bytes on 9000 of 10000: %d", v)
	}
	if a.room(10000) != 1000 || a.room(8000) != 0 {
		t.Errorf("room: %d, %d", a.room(10000), a.room(8000))
	}
	a.closed(victim, true)
	a.closed(victim, false)
	a.closed(victim, false)
	a.closed(other, false)
	if a.nHalf != 0 || len(a.proved)+len(a.unproved) != 0 {
		t.Errorf("after closing all: %d half-open, %d sources", a.nHalf, len(a.proved)+len(a.unproved))
	}
}

func TestCookieJar(t *testing.T) {
	var j cookieJar
	if err := j.init(rand.Reader); err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1e9, 0)
	ni, ip, spi := []byte("nonce of the initiator"), netip.MustParseAddr("2001:db8::10"), uint64(0xabcdef)
	c := j.make(t0, ni, ip, spi)
	if !j.valid(t0, c, ni, ip, spi) {
		t.Fatal("our own cookie refused")
	}
	for name, ok := range map[string]bool{
		"other nonce":   j.valid(t0, c, []byte("another nonce"), ip, spi),
		"other address": j.valid(t0, c, ni, netip.MustParseAddr("2001:db8::11"), spi),
		"other SPI":     j.valid(t0, c, ni, ip, spi+1),
		"truncated":     j.valid(t0, c[:len(c)-1], ni, ip, spi),
		"other version": j.valid(t0, append([]byte{c[0] + 1}, c[1:]...), ni, ip, spi),
	} {
		if ok {
			t.Errorf("cookie accepted with %s", name)
		}
	}
	// One rotation: the previous secret still counts; two: it does not.
	if !j.valid(t0.Add(j.each), c, ni, ip, spi) {
		t.Error("cookie of the previous secret refused")
	}
	c2 := j.make(t0.Add(j.each), ni, ip, spi)
	if c2[0] == c[0] {
		t.Error("the version did not change with the secret")
	}
	if j.valid(t0.Add(2*j.each), c, ni, ip, spi) {
		t.Error("cookie two secrets old accepted")
	}
	// An IPv4-mapped address is the IPv4 address.
	v4 := netip.MustParseAddr("192.0.2.10")
	if !j.valid(t0.Add(2*j.each), j.make(t0.Add(2*j.each), ni, v4, spi), ni, netip.AddrFrom16(v4.As16()), spi) {
		t.Error("cookie for 192.0.2.10 refused from ::ffff:192.0.2.10")
	}
}

func TestSourceBlock(t *testing.T) {
	for _, c := range []struct {
		addr string
		bits int
		want string
	}{
		{"192.0.2.10", 64, "192.0.2.10/32"},
		{"::ffff:192.0.2.10", 64, "192.0.2.10/32"},
		{"2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"},
		{"2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::/48"},
		{"2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6/128"},
	} {
		if got := sourceBlock(netip.MustParseAddr(c.addr), c.bits); got != netip.MustParsePrefix(c.want) {
			t.Errorf("%s /%d: %v, want %s", c.addr, c.bits, got, c.want)
		}
	}
}
