package integration

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestInteropKeylog: our key log (Wireshark's ikev2_decryption_table and esp_sa) lets
// tshark decrypt a capture of a handshake and traffic with strongSwan: IKE_AUTH (the
// identities show) and ESP (the inner ICMP shows), with AES-GCM as our client and with
// AES-CBC/HMAC as our gateway. (tshark 4.0 cannot decrypt ChaCha20-Poly1305.)
func TestInteropKeylog(t *testing.T) {
	for _, tc := range []struct {
		role     string
		ike, esp string
	}{
		{"mv-client", "aes128gcm16-prfsha256-x25519", "aes128gcm16"},
		{"sw-client", "aes256-sha256-modp2048", "aes256-sha256"},
	} {
		t.Run(tc.role+"/"+tc.esp, func(t *testing.T) {
			l := newInteropLab(t)
			keys := filepath.Join(l.dir, "keys")
			mo := mvOpts{Proposals: []string{tc.ike}, ESPProposals: []string{tc.esp}, Top: []string{"keylog: " + keys}}
			var vip string
			c := l.startCapture("keylog", l.rt, "eth1", "udp")
			if tc.role == "mv-client" {
				l.swGateway(swGatewayOpts([]string{tc.ike}, []string{tc.esp}))
				l.mvClient(mo)
				if out, err := l.mvUp(l.clSock, "home"); err != nil {
					t.Fatalf("mobikevpn up home: %v\n%s", err, out)
				}
				vip = "198.18.200.1"
			} else {
				l.mvGateway(mo)
				sw := l.swClient(swClientOpts("198.51.100.1", []string{tc.ike}, []string{tc.esp}))
				sw.mustInitiate("home", "net")
				vip = "198.18.100.1"
			}
			l.ping(l.cl, "198.18.0.1", 3)
			l.ping(l.gw, vip, 3)
			c.stop()

			installKeyLog(t, keys, c.home)
			icmp := c.tshark("-o", "esp.enable_encryption_decode:TRUE", "-Y", "icmp")
			for _, want := range []string{vip + " → 198.18.0.1", "198.18.0.1 → " + vip, "Echo (ping) request", "Echo (ping) reply"} {
				if !strings.Contains(icmp, want) {
					t.Errorf("tshark did not decrypt the ESP payloads (%q missing):\n%s", want, icmp)
				}
			}
			if n := strings.Count(icmp, "Echo (ping)"); n < 12 {
				t.Errorf("tshark decrypted %d ICMP messages, want 12", n)
			}
			auth := c.tshark("-o", "esp.enable_encryption_decode:TRUE", "-V", "-Y", "isakmp.exchangetype == 35")
			for _, want := range []string{"alice@example.org", "gw.example.org", "Payload: Authentication (39)", "Payload: Traffic Selector - Initiator (44)", "Payload: Identification - Responder (36)"} {
				if !strings.Contains(auth, want) {
					t.Errorf("tshark did not decrypt IKE_AUTH (%q missing):\n%.3000s", want, auth)
				}
			}
			t.Logf("tshark decrypted IKE_AUTH and %d ICMP messages in ESP (%s)", strings.Count(icmp, "Echo (ping)"), tc.esp)
		})
	}
}
