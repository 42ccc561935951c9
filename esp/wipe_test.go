package esp

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/mobikevpn/mobikevpn/udp/memnet"
)

// Key material of removed SAs (issue 11). The datapath keeps raw key bytes in one
// place: the HMAC key of the AES-CBC suites, from which it makes a new HMAC state
// whenever more goroutines than its free list holds use the SA at once. Once the SA is
// removed or replaced, those bytes must be zeroed, and no state may be made from them
// any more (a state made from the zeroed key would accept packets MACed with a key of
// zeros).

// drained takes every pooled cipher state of s and one more: nil if s makes no new
// state any more.
func drained(s *suite) *cbcState {
	var st *cbcState
	for range len(s.cbc.free) + 1 {
		if st = s.cbc.get(); st == nil {
			return nil
		}
	}
	return st
}

// sealed is an ESP packet of suite k (seq 1, SPI 0x1001, no ESN).
func sealed(t *testing.T, k Keys) []byte {
	s := mustSuite(t, k)
	var sc scratch
	payload := seqBytes(100)
	b := make([]byte, s.sealedLen(len(payload)))
	copy(b[s.headLen():], payload)
	if n := s.seal(&sc, b, 0x1001, 1, false, len(payload), protoIPv4); n != len(b) {
		t.Fatalf("sealed %d bytes", n)
	}
	return b
}

func TestRemovedSAKeysWiped(t *testing.T) {
	for _, ts := range testSuites {
		if ts.keys.Encr != EncrAESCBC {
			continue // AEAD suites keep no raw key bytes but the salt, which is not secret (RFC 4106 section 4)
		}
		t.Run(ts.name, func(t *testing.T) {
			p := newPeer(t, memnet.New(), aV4)
			d := p.d
			keys := testKeys(ts.keys, 5)
			orig := testKeys(ts.keys, 5)
			must(t, d.AddInbound(SAConfig{SPI: 0x1001, Keys: keys, LocalTS: clientTS, RemoteTS: netTS}))
			in := d.in.Load().get(0x1001).suite
			inKey := in.cbc.key
			must(t, d.InstallOutbound(1, SAConfig{SPI: 0x2001, Keys: keys, LocalTS: clientTS, RemoteTS: netTS}, ap(aV4, nattPort), ap(bV4, nattPort)))
			out1 := d.out.Load().child(1).suite
			out1Key := out1.cbc.key
			// A rekey replaces the outbound SA: the old one is removed.
			must(t, d.InstallOutbound(1, SAConfig{SPI: 0x2002, Keys: keys, LocalTS: clientTS, RemoteTS: netTS}, ap(aV4, nattPort), ap(bV4, nattPort)))
			out2 := d.out.Load().child(1).suite
			out2Key := out2.cbc.key

			if !isZero(out1Key) {
				t.Errorf("the replaced outbound SA's HMAC key is not zeroed: %x", out1Key)
			}
			if drained(out1) != nil {
				t.Error("the replaced outbound SA still makes HMAC states from its key")
			}
			// The SAs in place are untouched, though they were installed from the same
			// Keys: the datapath copied what it keeps.
			if !bytes.Equal(inKey, keys.IntegKey) || !bytes.Equal(out2Key, keys.IntegKey) {
				t.Fatal("SAs in place lost their HMAC keys")
			}
			if drained(out2) == nil || drained(in) == nil {
				t.Fatal("SAs in place lost their keys")
			}
			var sc scratch
			if _, r := in.openRaw(&sc, sealed(t, keys), 1, false); r != dropNone {
				t.Fatalf("the inbound SA in place: %v", r)
			}

			d.RemoveOutbound(1)
			d.RemoveInbound(0x1001)
			for name, s := range map[string]*suite{"inbound": in, "outbound": out2} {
				if key := map[string][]byte{"inbound": inKey, "outbound": out2Key}[name]; !isZero(key) {
					t.Errorf("the removed %s SA's HMAC key is not zeroed: %x", name, key)
				}
				if drained(s) != nil {
					t.Errorf("the removed %s SA still makes HMAC states from its key", name)
				}
			}
			// With its pooled states taken, the removed inbound SA authenticates nothing.
			if _, r := in.openRaw(&sc, sealed(t, keys), 1, false); r != dropAuth {
				t.Errorf("the removed inbound SA opened a packet: %v", r)
			}
			// Nor does it authenticate with a key of zeros.
			zero := keys
			zero.IntegKey = make([]byte, len(keys.IntegKey))
			if _, r := in.openRaw(&sc, sealed(t, zero), 1, false); r != dropAuth {
				t.Errorf("the removed inbound SA accepts a packet MACed with a key of zeros: %v", r)
			}
			// The caller's Keys are the caller's: the datapath neither keeps nor zeroes them.
			if !bytes.Equal(keys.EncrKey, orig.EncrKey) || !bytes.Equal(keys.IntegKey, orig.IntegKey) {
				t.Error("the caller's key slices changed")
			}
		})
	}
}

func isZero(b []byte) bool {
	for _, v := range b {
		if v != 0 {
			return false
		}
	}
	return len(b) > 0
}

// TestWipeWhileInUse: goroutines that took an SA before its removal go on sealing and
// opening while it is wiped (go test -race checks the key is never read as it is
// zeroed); afterwards they either finish with a pooled state or drop the packet, and
// never authenticate with a key of zeros.
func TestWipeWhileInUse(t *testing.T) {
	k := testKeys(testSuites[3].keys, 9)
	zero := k
	zero.IntegKey = make([]byte, len(k.IntegKey))
	good, forged := sealed(t, k), sealed(t, zero)
	s := mustSuite(t, k)
	key := s.cbc.key
	const workers = 12 // more than the free list holds: some make new states
	start := make(chan struct{})
	done := make(chan error, workers)
	for range workers {
		go func() {
			var sc scratch
			<-start
			for i := range 300 {
				if _, r := s.openRaw(&sc, append([]byte(nil), forged...), 1, false); r != dropAuth {
					done <- fmt.Errorf("forged packet %d: %v", i, r)
					return
				}
				if _, r := s.openRaw(&sc, append([]byte(nil), good...), 1, false); r != dropNone && r != dropAuth {
					done <- fmt.Errorf("packet %d: %v", i, r)
					return
				}
				b := make([]byte, s.sealedLen(100))
				s.seal(&sc, b, 0x1001, uint64(i+1), false, 100, protoIPv4)
			}
			done <- nil
		}()
	}
	close(start)
	s.wipe()
	for range workers {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	if !isZero(key) || s.cbc.key != nil {
		t.Errorf("HMAC key not wiped: %x", key)
	}
}
