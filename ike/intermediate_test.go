package ike

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha512"
	"encoding/binary"
	"slices"
	"strings"
	"testing"
	"time"

	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/wire"
)

const hybridIKE = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"

// exchanges lists the exchange types of the datagrams ep sent (fragments once each
// message ID) and their total octets.
func exchanges(t *testing.T, ep *endpoint) ([]wire.ExchangeType, map[wire.ExchangeType]int) {
	t.Helper()
	var out []wire.ExchangeType
	size := map[wire.ExchangeType]int{}
	seen := map[uint32]bool{}
	for _, d := range ep.sent {
		h, err := wire.ParseHeader(d.data)
		if err != nil {
			t.Fatal(err)
		}
		size[h.Exchange] += len(d.data)
		if !seen[h.MessageID] {
			seen[h.MessageID] = true
			out = append(out, h.Exchange)
		}
	}
	return out, size
}

func TestHybridMLKEMEstablish(t *testing.T) {
	for _, frag := range []int{1500, 1280} {
		n, gw, cl := pair(t, hybridIKE, "aes256gcm16", func(g, c *Config) {
			g.FragmentSize, c.FragmentSize = frag, frag
		})
		if !n.run(time.Minute, established(gw, cl)) {
			t.Fatalf("fragment size %d: not established; client %v, gateway %v", frag, cl.events, gw.events)
		}
		checkChildPair(t, gw, cl)
		for _, ep := range []*endpoint{gw, cl} {
			if s := ep.e.Status(n.now); len(s) != 1 || s[0].Proposal != hybridIKE {
				t.Fatalf("%s status %+v", ep.name, s)
			}
		}
		want := []wire.ExchangeType{wire.IKE_SA_INIT, wire.IKE_INTERMEDIATE, wire.IKE_AUTH}
		ce, cs := exchanges(t, cl)
		ge, gs := exchanges(t, gw)
		if !slices.Equal(ce, want) || !slices.Equal(ge, want) {
			t.Fatalf("exchanges client %v gateway %v", ce, ge)
		}
		// The encapsulation key (1184) and the ciphertext (1088) in their KE payloads.
		if cs[wire.IKE_INTERMEDIATE] < 1184+28+8 || gs[wire.IKE_INTERMEDIATE] < 1088+28+8 ||
			cs[wire.IKE_INTERMEDIATE] > 1184+200 || gs[wire.IKE_INTERMEDIATE] > 1088+200 {
			t.Errorf("IKE_INTERMEDIATE sizes %d / %d", cs[wire.IKE_INTERMEDIATE], gs[wire.IKE_INTERMEDIATE])
		}
		nFrag := 0
		for _, d := range cl.sent {
			if h, _ := wire.ParseHeader(d.data); h.Exchange == wire.IKE_INTERMEDIATE {
				nFrag++
				if len(d.data)+28 > frag {
					t.Errorf("datagram of %d octets beyond the fragment size", len(d.data))
				}
			}
		}
		if frag == 1280 && nFrag < 2 || frag == 1500 && nFrag != 1 {
			t.Errorf("fragment size %d: IKE_INTERMEDIATE in %d datagrams", frag, nFrag)
		}
		// IKE_AUTH is protected with the final keys, the ones the key log has.
		auths := 0
		for _, m := range decrypted(t, cl, gw) {
			if m.Header.Exchange == wire.IKE_AUTH {
				auths++
			}
		}
		if auths != 1 {
			t.Errorf("%d IKE_AUTH requests open with the final keys", auths)
		}
		var sa *IKESA
		for _, s := range cl.e.store.sas {
			sa = s
		}
		if len(cl.keylogs) != 1 || sa == nil || string(cl.keylogs[0].SKei) != string(sa.keys.SKei) {
			t.Errorf("key log %d entries", len(cl.keylogs))
		}
		t.Logf("fragment size %d: client sent %v octets, gateway %v", frag, cs, gs)
	}
}

// TestHybridKeyUpdateMatters: a side that skips the key update after ML-KEM cannot
// even open IKE_AUTH: nothing is established.
func TestHybridKeyUpdateMatters(t *testing.T) {
	n, gw, cl := pair(t, hybridIKE, "aes256gcm16", nil)
	gw.e.testSkipKeyUpdate = true
	if n.run(time.Minute, established(gw, cl)) || cl.hasEvent(EventEstablished) != nil || gw.hasEvent(EventEstablished) != nil {
		t.Fatal("established although the gateway skipped the key update")
	}
}

func TestHybridOptionalAndRequired(t *testing.T) {
	// The peer without ADDKE support: a plain x25519 proposal.
	n, gw, cl := pair(t, hybridIKE+"-ke1_none", "aes256gcm16", func(g, c *Config) {
		c.Connections[0].Proposals = mustIKE(t, "aes256gcm16-prfsha384-x25519")
	})
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatalf("optional ML-KEM: not established; client %v, gateway %v", cl.events, gw.events)
	}
	if s := gw.e.Status(n.now)[0].Proposal; s != "aes256gcm16-prfsha384-x25519" {
		t.Errorf("proposal %q", s)
	}
	if ce, _ := exchanges(t, cl); slices.Contains(ce, wire.IKE_INTERMEDIATE) {
		t.Errorf("exchanges %v", ce)
	}
	n, gw, cl = pair(t, hybridIKE, "aes256gcm16", func(g, c *Config) {
		c.Connections[0].Proposals = mustIKE(t, "aes256gcm16-prfsha384-x25519")
	})
	if n.run(time.Minute, established(gw, cl)) {
		t.Fatal("required ML-KEM: established with a plain peer")
	}
	found := false
	for _, d := range gw.sent {
		if m, err := wire.ParseMessage(d.data); err == nil && wire.FindNotify(m.Payloads, wire.NO_PROPOSAL_CHOSEN) != nil {
			found = true
		}
	}
	if !found {
		t.Error("no NO_PROPOSAL_CHOSEN")
	}
}

// TestHybridTamperedKey: an encapsulation key with a coefficient not below q is
// answered with INVALID_SYNTAX; nothing is established.
func TestHybridTamperedKey(t *testing.T) {
	n, gw, cl := pair(t, hybridIKE, "aes256gcm16", nil)
	sa := pendingRequest(t, n, cl, wire.IKE_INTERMEDIATE)
	// The first coefficient, 12 bits, becomes 0xfff (not below q = 3329); the request
	// is sealed again in place of the one in flight.
	r := sa.win.pending
	ke := r.payloads[0].(*wire.KE)
	ke.Data[0], ke.Data[1] = 0xff, ke.Data[1]|0x0f
	datas, err := cl.e.sealMessage(sa, sa.header(r.exchange, r.msgID, false), r.payloads)
	if err != nil {
		t.Fatal(err)
	}
	r.data = datas
	before := len(n.inflight)
	n.inflight = slices.DeleteFunc(n.inflight, func(d datagram) bool {
		h, _ := wire.ParseHeader(d.data)
		return h.Exchange == wire.IKE_INTERMEDIATE
	})
	if before-len(n.inflight) != len(datas) {
		t.Fatalf("%d datagrams in flight replaced by %d", before-len(n.inflight), len(datas))
	}
	for _, d := range datas {
		n.inflight = append(n.inflight, datagram{from: sa.local, to: sa.remote, data: d})
	}
	// The client fails this attempt (a new one, which keep-up may start, is not ours).
	if !n.run(time.Minute, func() bool { return cl.hasEvent(EventFailed) != nil }) {
		t.Fatal("the attempt did not fail")
	}
	if gw.hasEvent(EventEstablished) != nil || cl.hasEvent(EventEstablished) != nil {
		t.Fatal("established with a tampered encapsulation key")
	}
	if cl.e.store.sas[sa.spiI] != nil || len(gw.e.store.sas) != 0 {
		t.Errorf("SAs left: gateway %d", len(gw.e.store.sas))
	}
	if ev := cl.hasEvent(EventFailed); ev == nil || !strings.Contains(ev.Reason, "INVALID_SYNTAX") {
		t.Errorf("client failure %+v", ev)
	}
}

// TestHybridCost measures handshakes (both engines, PSK, one Child SA) per second and
// octets on the wire, with and without ML-KEM; only with -v does it say.
func TestHybridCost(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	for _, ike := range []string{"aes256gcm16-prfsha384-x25519", hybridIKE} {
		const rounds = 50
		start := time.Now()
		octets := 0
		for range rounds {
			n, gw, cl := pair(t, ike, "aes256gcm16", nil)
			if !n.run(time.Minute, established(gw, cl)) {
				t.Fatal("not established")
			}
			for _, ep := range []*endpoint{gw, cl} {
				for _, d := range ep.sent {
					octets += len(d.data)
				}
			}
		}
		el := time.Since(start)
		t.Logf("%s: %.0f handshakes/s (one core, both ends), %d octets of IKE per handshake",
			ike, rounds/el.Seconds(), octets/rounds)
	}
}

// TestHybridIntAuthByHand recomputes IntAuth (RFC 9242 3.3.2) from the IKE_INTERMEDIATE
// datagrams on the wire, independently of the engine's code: each message decrypted by
// hand (AES-256-GCM, RFC 5282) with the keys of IKE_SA_INIT, A = the IKE header and the
// Encrypted payload's generic header with the lengths adjusted to count the inner
// payloads only, P = the inner payloads; IntAuth_i1 = prf(SK_pi1, A | P) with
// HMAC-SHA-384. Both ends must hold exactly these values (no published vector exists).
func TestHybridIntAuthByHand(t *testing.T) {
	n, gw, cl := pair(t, hybridIKE, "aes256gcm16", func(g, c *Config) { g.FragmentSize, c.FragmentSize = 1500, 1500 })
	sentIntermediate := func() bool {
		for _, d := range cl.sent {
			if h, err := wire.ParseHeader(d.data); err == nil && h.Exchange == wire.IKE_INTERMEDIATE {
				return true
			}
		}
		return false
	}
	if !n.run(time.Minute, sentIntermediate) {
		t.Fatal("the client sent no IKE_INTERMEDIATE")
	}
	var first ikecrypto.IKEKeys // the keys of IKE_SA_INIT, before the key update
	for _, s := range cl.e.store.sas {
		k := s.keys
		first = ikecrypto.IKEKeys{SKei: slices.Clone(k.SKei), SKer: slices.Clone(k.SKer), SKpi: slices.Clone(k.SKpi), SKpr: slices.Clone(k.SKpr)}
	}
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	intAuth := func(ep *endpoint, ske, skp []byte) []byte {
		t.Helper()
		var d []byte
		for _, x := range ep.sent {
			if h, _ := wire.ParseHeader(x.data); h.Exchange == wire.IKE_INTERMEDIATE {
				if d != nil {
					t.Fatalf("%s sent more than one IKE_INTERMEDIATE datagram", ep.name)
				}
				d = x.data
			}
		}
		if len(d) < 28+4+8+16 || d[16] != byte(wire.PayloadSK) {
			t.Fatalf("%s: IKE_INTERMEDIATE %x", ep.name, d)
		}
		block, err := aes.NewCipher(ske[:32])
		if err != nil {
			t.Fatal(err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			t.Fatal(err)
		}
		nonce := append(slices.Clone(ske[32:36]), d[32:40]...)
		pt, err := aead.Open(nil, nonce, d[40:], d[:32])
		if err != nil {
			t.Fatalf("%s: the IKE_INTERMEDIATE does not open with the keys of IKE_SA_INIT: %v", ep.name, err)
		}
		p := pt[:len(pt)-1-int(pt[len(pt)-1])] // without Padding and Pad Length
		a := slices.Clone(d[:32])
		binary.BigEndian.PutUint32(a[24:28], uint32(32+len(p)))
		binary.BigEndian.PutUint16(a[30:32], uint16(4+len(p)))
		mac := hmac.New(sha512.New384, skp)
		mac.Write(a)
		mac.Write(p)
		return mac.Sum(nil)
	}
	wantI := intAuth(cl, first.SKei, first.SKpi)
	wantR := intAuth(gw, first.SKer, first.SKpr)
	for _, ep := range []*endpoint{cl, gw} {
		for _, s := range ep.e.store.sas {
			if !bytes.Equal(s.im.authI, wantI) || !bytes.Equal(s.im.authR, wantR) {
				t.Errorf("%s: IntAuth_i %x, IntAuth_r %x; by hand %x, %x", ep.name, s.im.authI, s.im.authR, wantI, wantR)
			}
			// IntAuth = IntAuth_iN | IntAuth_rN | IKE_AUTH_MID (2: after IKE_SA_INIT, 0,
			// and one IKE_INTERMEDIATE, 1).
			want := binary.BigEndian.AppendUint32(append(slices.Clone(wantI), wantR...), 2)
			if !bytes.Equal(s.im.intAuth, want) {
				t.Errorf("%s: IntAuth %x, want %x", ep.name, s.im.intAuth, want)
			}
		}
	}
}
