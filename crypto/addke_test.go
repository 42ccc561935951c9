package crypto

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/mobikevpn/mobikevpn/wire"
)

// TestESPAdditionalKE: ESP proposals with additional key exchanges (RFC 9370, run in
// IKE_FOLLOWUP_KE): parsed as strongSwan writes them, only after a KE and without
// "none", selected, checked and named like the IKE ones.
func TestESPAdditionalKE(t *testing.T) {
	hybrid, err := ParseESPProposal("aes128gcm16-x25519-ke1_mlkem768")
	if err != nil {
		t.Fatal(err)
	}
	if got := ProposalString(hybrid[0]); got != "ESP:aes128gcm16/x25519/noesn/ke1_mlkem768" {
		t.Fatalf("proposal %s", got)
	}
	for _, c := range []struct{ s, want string }{
		{"aes128gcm16-ke1_mlkem768", "need a key exchange method"},
		{"aes128gcm16-x25519-none-ke1_mlkem768", `"none"`},
		{"aes128gcm16-none-ke1_mlkem768", `"none"`},
		{"aes128gcm16-x25519-ke1_mlkem1024", "unknown additional key exchange"},
		{"aes128gcm16-x25519-mlkem768", "only allowed as an additional key exchange"},
	} {
		if _, err := ParseESPProposal(c.s); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseESPProposal(%q): %v, want %q", c.s, err, c.want)
		}
	}
	// keN_none alone asks for nothing: no KE needed.
	if _, err := ParseESPProposal("aes128gcm16-ke1_none"); err != nil {
		t.Errorf("ke1_none alone: %v", err)
	}
	optional, _ := ParseESPProposal("aes128gcm16-x25519-ke1_mlkem768-ke1_none")
	plain, _ := ParseESPProposal("aes128gcm16-x25519")
	for _, c := range []struct {
		name         string
		ours, theirs []wire.Proposal
		want         string
	}{
		{"both hybrid", hybrid, hybrid, "aes128gcm16-x25519-ke1_mlkem768"},
		{"ours optional, peer hybrid", optional, hybrid, "aes128gcm16-x25519-ke1_mlkem768"},
		{"ours optional, peer plain", optional, plain, "aes128gcm16-x25519"},
		{"ours required, peer plain", hybrid, plain, ""},
		{"ours plain, peer optional", plain, optional, "aes128gcm16-x25519"},
	} {
		checkSelect(t, c.name, c.ours, c.theirs, c.want, func(p wire.Proposal) (fmt.Stringer, error) { return ESPSuiteFromProposal(p) })
	}
	if err := CheckResponseProposal(hybrid, plain[0]); err == nil {
		t.Error("ESP response without the required ADDKE1 accepted")
	}
	s, err := ESPSuiteFromProposal(hybrid[0])
	if err != nil || s.DH != wire.DH_X25519 || s.AddKE[0] != wire.KE_MLKEM768 {
		t.Fatalf("suite %+v, %v", s, err)
	}
	if i, m := s.NextAddKE(0); i != 0 || m != wire.KE_MLKEM768 {
		t.Errorf("NextAddKE(0) = %d, %d", i, m)
	}
	if i, _ := s.NextAddKE(1); i != -1 {
		t.Errorf("NextAddKE(1) = %d", i)
	}
	// A selected proposal with an ADDKE but no KE (another implementation's) is refused.
	noKE := hybrid[0]
	noKE.Transforms = nil
	for _, tr := range hybrid[0].Transforms {
		if tr.Type != wire.TransformDH {
			noKE.Transforms = append(noKE.Transforms, tr)
		}
	}
	if _, err := ESPSuiteFromProposal(noKE); err == nil {
		t.Error("ESP suite with ADDKE1 and no KE accepted")
	}
}

// TestAddKEKeyDerivation is a known-answer check of RFC 9370 2.2.4 computed by hand
// from fixed inputs with the PRF: KEYMAT = prf+(SK_d, SK(0) | Ni | Nr | SK(1) | SK(2))
// and SKEYSEED = prf(SK_d, SK(0) | Ni | Nr | SK(1) | SK(2)), and not any other order.
func TestAddKEKeyDerivation(t *testing.T) {
	prf, err := NewPRF(wire.PRF_HMAC_SHA2_256)
	if err != nil {
		t.Fatal(err)
	}
	skd := bytes.Repeat([]byte{0xd0}, 32)
	sk0, ni, nr := bytes.Repeat([]byte{0x00}, 32), bytes.Repeat([]byte{0x11}, 32), bytes.Repeat([]byte{0x22}, 32)
	sk1, sk2 := bytes.Repeat([]byte{0x01}, 32), bytes.Repeat([]byte{0x02}, 32)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	// prf+ by hand: T1 = prf(K, S | 0x01), T2 = prf(K, T1 | S | 0x02).
	plus := func(seed []byte, n int) []byte {
		t1 := prf.Compute(skd, seed, []byte{1})
		t2 := prf.Compute(skd, t1, seed, []byte{2})
		return cat(t1, t2)[:n]
	}
	suite := ESPSuite{Encr: wire.ENCR_AES_GCM_16, EncrKeyBits: 128, DH: wire.DH_X25519, AddKE: [7]uint16{wire.KE_MLKEM768, wire.DH_ECP256}}
	k, err := ChildKeymat(prf, skd, sk0, ni, nr, suite, sk1, sk2)
	if err != nil {
		t.Fatal(err)
	}
	got := cat(k.EncrI, k.EncrR)
	if want := plus(cat(sk0, ni, nr, sk1, sk2), 40); !bytes.Equal(got, want) {
		t.Fatalf("KEYMAT %x, want %x", got, want)
	}
	for _, wrong := range [][]byte{cat(sk0, sk1, sk2, ni, nr), cat(sk0, ni, nr, sk2, sk1), cat(sk1, sk2, sk0, ni, nr), cat(sk0, ni, nr)} {
		if bytes.Equal(got, plus(wrong, 40)) {
			t.Fatalf("KEYMAT matches another order %x", wrong)
		}
	}
	seed := prf.RekeySKEYSEED(skd, sk0, ni, nr, sk1, sk2)
	if want := prf.Compute(skd, cat(sk0, ni, nr, sk1, sk2)); !bytes.Equal(seed, want) {
		t.Fatalf("SKEYSEED %x, want %x", seed, want)
	}
	if bytes.Equal(seed, prf.RekeySKEYSEED(skd, sk0, ni, nr)) {
		t.Fatal("SKEYSEED ignores the additional key exchanges")
	}
	// Without additional key exchanges: RFC 7296 as before.
	k0, _ := ChildKeymat(prf, skd, sk0, ni, nr, suite)
	if !bytes.Equal(cat(k0.EncrI, k0.EncrR), plus(cat(sk0, ni, nr), 40)) {
		t.Fatal("KEYMAT without additional key exchanges changed")
	}
}
