package config

import (
	"strings"
	"testing"
)

// TestLegacyWarnings: proposals that name legacy algorithms load, with one warning
// each that names the key and the algorithms; the defaults warn about nothing.
func TestLegacyWarnings(t *testing.T) {
	files := map[string]string{"gw.yaml": `
secrets: [{ ids: [gw.example.org], psk: s }]
connections:
  old:
    local: { auth: psk, id: gw.example.org }
    remote: { auth: psk }
    proposals: [aes128-sha1-modp1024, default]
    children:
      net:
        esp_proposals: [aes128gcm16, aes128ccm8-modp1536, aes256ctr-sha256]
`}
	cfg := mustLoad(t, writeFiles(t, files))
	// In the order the file is read: a connection's children before its proposals.
	want := []string{
		`connections.old.children.net.esp_proposals[1]: "aes128ccm8-modp1536" uses legacy algorithms (aes128ccm8, modp1536)`,
		`connections.old.children.net.esp_proposals[2]: "aes256ctr-sha256" uses legacy algorithms (aes256ctr)`,
		`connections.old.proposals[0]: "aes128-sha1-modp1024" uses legacy algorithms (prfsha1, sha1, modp1024)`,
	}
	if len(cfg.Warnings) != len(want) {
		t.Fatalf("warnings %q", cfg.Warnings)
	}
	for i, w := range want {
		if !strings.HasPrefix(cfg.Warnings[i], w) {
			t.Errorf("warning %d: %q, want it to start with %q", i, cfg.Warnings[i], w)
		}
	}
	files["gw.yaml"] = minimal
	if cfg := mustLoad(t, writeFiles(t, files)); len(cfg.Warnings) != 0 {
		t.Errorf("the defaults warn: %q", cfg.Warnings)
	}
}

// TestHybridProposals: an IKE proposal with ML-KEM-768 as an additional key exchange
// loads (no warning), and so does an ESP one (IKE_FOLLOWUP_KE) with a KE before it;
// without one, or with "none" (optional PFS), it is refused, naming the key.
func TestHybridProposals(t *testing.T) {
	files := map[string]string{"gw.yaml": strings.Replace(minimal, "    children:", "    proposals: [aes256gcm16-prfsha384-x25519-ke1_mlkem768, default]\n    children:", 1)}
	cfg := mustLoad(t, writeFiles(t, files))
	if len(cfg.Warnings) != 0 || len(cfg.Connection("rw").IKEProposals) < 2 {
		t.Fatalf("warnings %q, proposals %v", cfg.Warnings, cfg.Connection("rw").IKEProposals)
	}
	esp := func(p string) string {
		return strings.Replace(minimal, "      net: {}", "      net:\n        esp_proposals: [aes128gcm16, "+p+"] #<", 1)
	}
	files["gw.yaml"] = esp("aes128gcm16-x25519-ke1_mlkem768")
	cfg = mustLoad(t, writeFiles(t, files))
	if len(cfg.Warnings) != 0 {
		t.Fatalf("warnings %q", cfg.Warnings)
	}
	expectConfigError(t, esp("aes128gcm16-ke1_mlkem768"), nil, "connections.rw.children.net.esp_proposals[1]", "need a key exchange method")
	expectConfigError(t, esp("aes128gcm16-x25519-none-ke1_mlkem768"), nil, "connections.rw.children.net.esp_proposals[1]", `"none"`)
}
