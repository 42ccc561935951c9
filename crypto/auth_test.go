package crypto

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strconv"
	"testing"
)

// PSK AUTH (RFC 7296 2.15) against values computed with Python's hmac.
func TestPSKAuthIndependent(t *testing.T) {
	n := 0
	for _, r := range readRecords(t, "independent_vectors.txt") {
		if r["kind"] != "psk_auth" {
			continue
		}
		id, _ := strconv.Atoi(r["prf"])
		prf, err := NewPRF(uint16(id))
		if err != nil {
			t.Fatal(err)
		}
		so := SignedOctets(prf, r.hex(t, "real_message"), r.hex(t, "peer_nonce"), r.hex(t, "sk_p"), r.hex(t, "id_body"))
		if !bytes.Equal(so, r.hex(t, "signed_octets")) {
			t.Errorf("PRF %d: signed octets differ", id)
		}
		auth := PSKAuth(prf, r.hex(t, "psk"), so)
		if !bytes.Equal(auth, r.hex(t, "auth")) || !AuthEqual(auth, r.hex(t, "auth")) {
			t.Errorf("PRF %d: AUTH = %x, want %s", id, auth, r["auth"])
		}
		if AuthEqual(PSKAuth(prf, []byte("wrong"), so), auth) {
			t.Errorf("PRF %d: AUTH does not depend on the PSK", id)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("%d vectors", n)
	}
}

func TestNATDetectionHashIndependent(t *testing.T) {
	n := 0
	for _, r := range readRecords(t, "independent_vectors.txt") {
		if r["kind"] != "natd" {
			continue
		}
		ap := netip.MustParseAddrPort(r["addr"])
		spii := binary.BigEndian.Uint64(r.hex(t, "spi_i"))
		spir := binary.BigEndian.Uint64(r.hex(t, "spi_r"))
		got := NATDetectionHash(spii, spir, ap)
		if !bytes.Equal(got, r.hex(t, "hash")) {
			t.Errorf("%s: %x, want %s", r["addr"], got, r["hash"])
		}
		if ap.Addr().Is4() {
			mapped := netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port())
			if !bytes.Equal(NATDetectionHash(spii, spir, mapped), got) {
				t.Errorf("%s: IPv4-mapped form hashes differently", r["addr"])
			}
		}
		if bytes.Equal(NATDetectionHash(spii, spir, netip.AddrPortFrom(ap.Addr(), ap.Port()+1)), got) {
			t.Errorf("%s: hash ignores the port", r["addr"])
		}
		n++
	}
	if n != 3 {
		t.Fatalf("%d vectors", n)
	}
}

func TestAuthEqual(t *testing.T) {
	for _, c := range []struct {
		a, b string
		eq   bool
	}{{"abc", "abc", true}, {"abc", "abd", false}, {"abc", "ab", false}, {"", "", true}, {"a", "", false}} {
		if AuthEqual([]byte(c.a), []byte(c.b)) != c.eq {
			t.Errorf("AuthEqual(%q, %q) != %v", c.a, c.b, c.eq)
		}
	}
}
