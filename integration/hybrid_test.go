package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHybridMLKEM (issue 18): our client and our gateway with x25519 plus ML-KEM-768
// as an additional key exchange (RFC 9370) in IKE_INTERMEDIATE (RFC 9242): the SA comes
// up, traffic flows, and the capture shows IKE_SA_INIT, IKE_INTERMEDIATE (fragmented:
// the encapsulation key is 1184 octets), IKE_AUTH; tshark decrypts IKE_AUTH and ESP with
// our key log (the final keys; IKE_INTERMEDIATE was protected with the first ones,
// which Wireshark's table, one key set per SPI pair, cannot hold too).
func TestHybridMLKEM(t *testing.T) {
	const hybrid = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
	l := newInteropLab(t)
	keys := filepath.Join(l.dir, "keys")
	c := l.startCapture("hybrid", l.rt, "eth1", "udp")
	l.mvGateway(mvOpts{Proposals: []string{hybrid}})
	l.mvClient(mvOpts{Proposals: []string{hybrid}, Top: []string{"keylog: " + keys}})
	if out, err := l.mvUp(l.clSock, "home"); err != nil {
		t.Fatalf("mobikevpn up home: %v\n%s", err, out)
	}
	l.mvEAPTraffic(t, "198.18.100.")
	for _, sock := range []string{l.clSock, l.gwSock} {
		if p := mvSA(t, sock)["proposal"]; p != hybrid {
			t.Errorf("negotiated %v, want %s", p, hybrid)
		}
	}
	c.stop()
	exchanges := c.tshark("-T", "fields", "-e", "isakmp.exchangetype", "-Y", "isakmp")
	var seq []string
	for _, x := range strings.Fields(exchanges) {
		if len(seq) == 0 || seq[len(seq)-1] != x {
			seq = append(seq, x)
		}
	}
	// 34 IKE_SA_INIT, 43 IKE_INTERMEDIATE, 35 IKE_AUTH (then INFORMATIONAL, 37, maybe).
	if got := strings.Join(seq, " "); got != "34 43 35" && !strings.HasPrefix(got, "34 43 35 37") {
		t.Errorf("exchanges on the wire: %v, want IKE_SA_INIT, IKE_INTERMEDIATE, IKE_AUTH", seq)
	}
	if frags := c.tshark("-Y", "isakmp.exchangetype == 43 && isakmp.frag.total > 1"); strings.Count(frags, "\n") < 2 {
		t.Errorf("the IKE_INTERMEDIATE request was not fragmented:\n%s", frags)
	}
	wsDir := filepath.Join(c.home, "wireshark")
	if err := os.MkdirAll(wsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ikev2_decryption_table", "esp_sa"} {
		b, err := os.ReadFile(filepath.Join(keys, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(wsDir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	auth := c.tshark("-o", "esp.enable_encryption_decode:TRUE", "-V", "-Y", "isakmp.exchangetype == 35")
	for _, want := range []string{"alice@example.org", "Payload: Authentication (39)", "Payload: Traffic Selector - Initiator (44)"} {
		if !strings.Contains(auth, want) {
			t.Errorf("tshark did not decrypt IKE_AUTH (%q missing):\n%.2000s", want, auth)
		}
	}
	if icmp := c.tshark("-o", "esp.enable_encryption_decode:TRUE", "-Y", "icmp"); strings.Count(icmp, "Echo (ping)") < 6 {
		t.Errorf("tshark decrypted too few ICMP messages:\n%s", icmp)
	}
}
