package integration

import (
	"strings"
	"testing"
)

// The legacy suites old gateways ask for (issue 18): off by default, allowed by name,
// with a warning in our log; each negotiated with strongSwan in both roles with traffic
// both ways, and both sides agreeing on what was chosen.
var legacyFamilies = []interopFamily{
	{
		name: "aes128-sha1-modp1024", ike: "aes128-sha1-modp1024",
		mvESP: []string{"aes128-sha1"}, swESP: "aes128-sha1",
		mvIKEName: "aes128-sha1-prfsha1-modp1024", mvESPName: "aes128-sha1",
		swIKEName: "AES_CBC_128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024", swESPName: "AES_CBC_128/HMAC_SHA1_96",
	},
	{
		name: "aes256ctr-modp1536", ike: "aes256ctr-sha256-modp1536",
		mvESP: []string{"aes128ctr-sha1"}, swESP: "aes128ctr-sha1",
		mvIKEName: "aes256ctr-sha256-prfsha256-modp1536", mvESPName: "aes128ctr-sha1",
		swIKEName: "AES_CTR_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_1536", swESPName: "AES_CTR_128/HMAC_SHA1_96",
	},
	{
		name: "aes128ccm16-ccm8", ike: "aes128ccm16-prfsha256-ecp256",
		mvESP: []string{"aes128ccm8"}, swESP: "aes128ccm8",
		mvIKEName: "aes128ccm16-prfsha256-ecp256", mvESPName: "aes128ccm8",
		swIKEName: "AES_CCM_16_128/PRF_HMAC_SHA2_256/ECP_256", swESPName: "AES_CCM_8_128",
	},
	{
		name: "aes256ccm12-ccm16", ike: "aes256ccm12-prfsha384-ecp384",
		mvESP: []string{"aes256ccm16"}, swESP: "aes256ccm16",
		mvIKEName: "aes256ccm12-prfsha384-ecp384", mvESPName: "aes256ccm16",
		swIKEName: "AES_CCM_12_256/PRF_HMAC_SHA2_384/ECP_384", swESPName: "AES_CCM_16_256",
	},
	{
		name: "aes256gcm8-gcm12", ike: "aes256gcm8-prfsha256-x25519",
		mvESP: []string{"aes128gcm12"}, swESP: "aes128gcm12",
		mvIKEName: "aes256gcm8-prfsha256-x25519", mvESPName: "aes128gcm12",
		swIKEName: "AES_GCM_8_256/PRF_HMAC_SHA2_256/CURVE_25519", swESPName: "AES_GCM_12_128",
	},
	{
		name: "aes128gcm12-gcm8", ike: "aes128gcm12-prfsha256-ecp256",
		mvESP: []string{"aes256gcm8"}, swESP: "aes256gcm8",
		mvIKEName: "aes128gcm12-prfsha256-ecp256", mvESPName: "aes256gcm8",
		swIKEName: "AES_GCM_12_128/PRF_HMAC_SHA2_256/ECP_256", swESPName: "AES_GCM_8_256",
	},
}

func TestInteropLegacySuites(t *testing.T) {
	for _, f := range legacyFamilies {
		t.Run(f.name+"/mv-client", func(t *testing.T) {
			l := newInteropLab(t)
			sw := l.swGateway(swGatewayOpts([]string{f.ike}, []string{f.swESP}))
			cl := l.mvClient(mvOpts{Proposals: []string{f.ike}, ESPProposals: f.mvESP})
			if out, err := l.mvUp(l.clSock, "home"); err != nil {
				t.Fatalf("mobikevpn up home: %v\n%s", err, out)
			}
			l.checkInteropTraffic(t, sw, l.cl, l.gw, l.clSock, "198.18.200.")
			l.checkNegotiated(t, f, sw, l.clSock, "initiator", "rw")
			if !strings.Contains(cl.output(), "uses legacy algorithms") {
				t.Error("our log has no warning about the legacy algorithms")
			}
		})
		t.Run(f.name+"/sw-client", func(t *testing.T) {
			l := newInteropLab(t)
			l.mvGateway(mvOpts{Proposals: []string{f.ike}, ESPProposals: f.mvESP})
			sw := l.swClient(swClientOpts("198.51.100.1", []string{f.ike}, []string{f.swESP}))
			sw.mustInitiate("home", "net")
			l.checkInteropTraffic(t, sw, l.cl, l.gw, l.gwSock, "198.18.100.")
			l.checkNegotiated(t, f, sw, l.gwSock, "responder", "home")
		})
	}
	// Not offered unless named: our default proposals and a strongSwan that offers
	// only legacy suites find nothing in common.
	t.Run("not-by-default", func(t *testing.T) {
		l := newInteropLab(t)
		l.mvGateway(mvOpts{Proposals: []string{"default"}, ESPProposals: []string{"default"}})
		sw := l.swClient(swClientOpts("198.51.100.1", []string{"aes128-sha1-modp1024"}, []string{"aes128-sha1"}))
		out, err := sw.initiate("home", "net")
		if err == nil && strings.Contains(out, "completed successfully") {
			t.Fatal("a legacy suite was negotiated with our defaults")
		}
		if !strings.Contains(out, "NO_PROPOSAL_CHOSEN") {
			t.Errorf("strongSwan's initiate did not end with NO_PROPOSAL_CHOSEN:\n%s", lastLines(out, 20))
		}
	})
}
