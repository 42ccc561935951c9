package ike

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"net/netip"
	"testing"
	"time"
)

// No key material or secret reaches the log, even at debug level, through a whole life:
// handshake, rekeys, MOBIKE moves, delete.
func TestNoSecretsInLogs(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n, gw, cl := mobikePair(t, func(g, c *Config) {
		g.Logger, c.Logger = log, log
		c.Connections[0].Children[0].RekeyTime = 10 * time.Second
		c.Connections[0].RekeyTime = 25 * time.Second
		c.Connections[0].Children[0].ESPProposals = mustESP(t, "aes128gcm16-x25519")
	})
	secrets := [][]byte{[]byte(testPSK)}
	collect := func() {
		for _, ep := range []*endpoint{gw, cl} {
			for _, in := range ep.inbound {
				secrets = append(secrets, in.Keys.Encr, in.Keys.Integ)
			}
			for _, out := range ep.outbound {
				secrets = append(secrets, out.Keys.Encr, out.Keys.Integ)
			}
			for _, sa := range ep.e.store.byID {
				secrets = append(secrets, sa.keys.SKd, sa.keys.SKpi, sa.keys.SKpr)
			}
		}
	}
	for i := 0; i < 8; i++ {
		n.run(5*time.Second, nil)
		collect()
	}
	cl.addrs = []netip.Addr{clientAddr2}
	cl.src = clientAddr2
	n.apply(cl, cl.e.SetLocalAddrs(n.now, cl.addrs))
	n.run(5*time.Second, nil)
	collect()
	n.apply(cl, cl.e.DeleteAll(n.now))
	n.run(time.Minute, nil)
	if logs.Len() == 0 {
		t.Fatal("nothing was logged")
	}
	for _, ep := range []*endpoint{gw, cl} {
		for _, k := range ep.keylogs {
			secrets = append(secrets, k.SKei, k.SKer, k.SKai, k.SKar)
		}
	}
	text := logs.String()
	checked := 0
	for _, s := range secrets {
		if len(s) < 8 {
			continue
		}
		checked++
		for _, form := range []string{string(s), hex.EncodeToString(s), hex.EncodeToString(s[:8]), base64.StdEncoding.EncodeToString(s)} {
			if bytes.Contains(logs.Bytes(), []byte(form)) {
				t.Errorf("a secret appears in the log (%d bytes, as %.16q...)", len(s), form)
			}
		}
	}
	if checked < 10 {
		t.Errorf("only %d secrets checked", checked)
	}
	t.Logf("%d secrets checked against %d bytes of debug log", checked, len(text))
}

// SPIs and nonces come from the configured randomness source, which is crypto/rand
// unless a test injects another.
func TestDefaultRandomnessIsCryptoRand(t *testing.T) {
	e, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if e.rand == nil || e.rand != cryptoRandReader() {
		t.Fatal("the engine does not default to crypto/rand")
	}
	a, _ := e.store.newSPI(e.rand)
	b, _ := e.store.newSPI(e.rand)
	n1, _ := e.nonce()
	n2, _ := e.nonce()
	if a == b || bytes.Equal(n1, n2) || len(n1) < 16 {
		t.Error("SPIs or nonces repeat")
	}
}

// Key hygiene (issue 11): when an IKE SA ends, the keys it held are overwritten.
func TestKeysZeroedWhenSAEnds(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", nil)
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	sa := cl.e.store.byID[cl.e.Status(n.now)[0].ID]
	keys := sa.keys
	n.apply(cl, cl.e.DeleteAll(n.now))
	n.run(10*time.Second, nil)
	if len(cl.e.store.byID) != 0 {
		t.Fatal("not deleted")
	}
	for i, k := range [][]byte{keys.SKd, keys.SKai, keys.SKar, keys.SKei, keys.SKer, keys.SKpi, keys.SKpr} {
		if len(k) > 0 && !bytes.Equal(k, make([]byte, len(k))) {
			t.Errorf("key %d not zeroed: %x", i, k)
		}
	}
}

// The engine overwrites its copies of the PSK once used, never the configuration's.
func TestPSKCopiesOnly(t *testing.T) {
	secret := []byte(testPSK)
	shared := func(string, string) ([]byte, bool) { return secret, true }
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) { g.PSK, c.PSK = shared, shared })
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	if string(secret) != testPSK {
		t.Fatalf("the configured PSK was overwritten: %q", secret)
	}
}
