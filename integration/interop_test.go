package integration

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// Interop with strongSwan 5.9 (charon with kernel-libipsec): see strongswan_test.go for
// the harness and the topology.

// interopFamily is a proposal family with what each side should report once negotiated.
type interopFamily struct {
	name      string
	ike       string   // both sides' IKE proposal
	mvESP     []string // our ESP proposals
	swESP     string   // strongSwan's ESP proposal
	mvIKEName string   // our status proposal for the IKE SA
	mvESPName string   // ... and for the Child SA
	swIKEName string   // strongSwan's list-sas view
	swESPName string
	// swLogMVClient are lines strongSwan's log must contain when it is the responder
	// to our client (what it received from us and chose).
	swLogMVClient []string
}

var interopFamilies = []interopFamily{
	{
		name: "aes128gcm16", ike: "aes128gcm16-prfsha256-x25519",
		mvESP: []string{"aes128gcm16"}, swESP: "aes128gcm16",
		mvIKEName: "aes128gcm16-prfsha256-x25519", mvESPName: "aes128gcm16",
		swIKEName: "AES_GCM_16_128/PRF_HMAC_SHA2_256/CURVE_25519", swESPName: "AES_GCM_16_128",
	},
	{
		name: "aes256cbc", ike: "aes256-sha256-modp2048",
		mvESP: []string{"aes256-sha256"}, swESP: "aes256-sha256",
		mvIKEName: "aes256-sha256-prfsha256-modp2048", mvESPName: "aes256-sha256",
		swIKEName: "AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048", swESPName: "AES_CBC_256/HMAC_SHA2_256_128",
	},
	{
		name: "chacha", ike: "chacha20poly1305-prfsha256-ecp256",
		mvESP: []string{"chacha20poly1305"}, swESP: "chacha20poly1305",
		mvIKEName: "chacha20poly1305-prfsha256-ecp256", mvESPName: "chacha20poly1305",
		swIKEName: "CHACHA20_POLY1305/PRF_HMAC_SHA2_256/ECP_256", swESPName: "CHACHA20_POLY1305",
	},
	{
		// strongSwan's libipsec refuses ESN: we offer both, it must pick "no ESN".
		name: "aes256gcm16-noesn", ike: "aes256gcm16-prfsha384-ecp384",
		mvESP: []string{"aes256gcm16-esn-noesn"}, swESP: "aes256gcm16",
		mvIKEName: "aes256gcm16-prfsha384-ecp384", mvESPName: "aes256gcm16",
		swIKEName: "AES_GCM_16_256/PRF_HMAC_SHA2_384/ECP_384", swESPName: "AES_GCM_16_256",
		swLogMVClient: []string{
			"received proposals: ESP:AES_GCM_16_256/EXT_SEQ/NO_EXT_SEQ",
			"selected proposal: ESP:AES_GCM_16_256/NO_EXT_SEQ",
		},
	},
}

// TestInteropProposals: each proposal family, with mobikevpn as the client of a
// strongSwan gateway and as the gateway of a strongSwan client: traffic both ways and
// both sides agree on what was negotiated.
func TestInteropProposals(t *testing.T) {
	for _, f := range interopFamilies {
		t.Run(f.name+"/mv-client", func(t *testing.T) {
			l := newInteropLab(t)
			sw := l.swGateway(swGatewayOpts([]string{f.ike}, []string{f.swESP}))
			l.mvClient(mvOpts{Proposals: []string{f.ike}, ESPProposals: f.mvESP})
			start := time.Now()
			if out, err := l.mvUp(l.clSock, "home"); err != nil {
				t.Fatalf("mobikevpn up home: %v\n%s", err, out)
			}
			t.Logf("handshake %v", time.Since(start).Round(time.Millisecond))
			l.checkInteropTraffic(t, sw, l.cl, l.gw, l.clSock, "198.18.200.")
			l.checkNegotiated(t, f, sw, l.clSock, "initiator", "rw")
			for _, want := range f.swLogMVClient {
				if !strings.Contains(sw.log(), want) {
					t.Errorf("strongSwan's log lacks %q", want)
				}
			}
		})
		t.Run(f.name+"/sw-client", func(t *testing.T) {
			l := newInteropLab(t)
			l.mvGateway(mvOpts{Proposals: []string{f.ike}, ESPProposals: f.mvESP})
			sw := l.swClient(swClientOpts("198.51.100.1", []string{f.ike}, []string{f.swESP}))
			took := sw.mustInitiate("home", "net")
			t.Logf("handshake %v", took.Round(time.Millisecond))
			l.checkInteropTraffic(t, sw, l.cl, l.gw, l.gwSock, "198.18.100.")
			l.checkNegotiated(t, f, sw, l.gwSock, "responder", "home")
		})
	}
}

// TestInteropIPv6Outer: the default family over IPv6 outer addresses, both roles.
func TestInteropIPv6Outer(t *testing.T) {
	f := interopFamilies[0]
	t.Run("mv-client", func(t *testing.T) {
		l := newInteropLab(t)
		sw := l.swGateway(swGatewayOpts([]string{f.ike}, []string{f.swESP}))
		l.mvClient(mvOpts{Gateway: "2001:db8:2::1", Proposals: []string{f.ike}, ESPProposals: f.mvESP})
		if out, err := l.mvUp(l.clSock, "home"); err != nil {
			t.Fatalf("mobikevpn up home: %v\n%s", err, out)
		}
		l.checkInteropTraffic(t, sw, l.cl, l.gw, l.clSock, "198.18.200.")
		l.checkNegotiated(t, f, sw, l.clSock, "initiator", "rw")
		if sa := mvSA(t, l.clSock); sa["local"] != "[2001:db8:1::10]:4500" || sa["remote"] != "[2001:db8:2::1]:4500" {
			t.Errorf("endpoints %v -> %v", sa["local"], sa["remote"])
		}
	})
	t.Run("sw-client", func(t *testing.T) {
		l := newInteropLab(t)
		l.mvGateway(mvOpts{Proposals: []string{f.ike}, ESPProposals: f.mvESP})
		sw := l.swClient(swClientOpts("2001:db8:2::1", []string{f.ike}, []string{f.swESP}))
		sw.mustInitiate("home", "net")
		l.checkInteropTraffic(t, sw, l.cl, l.gw, l.gwSock, "198.18.100.")
		l.checkNegotiated(t, f, sw, l.gwSock, "responder", "home")
		if sa := mvSA(t, l.gwSock); sa["local"] != "[2001:db8:2::1]:4500" || sa["remote"] != "[2001:db8:1::10]:4500" {
			t.Errorf("endpoints %v -> %v", sa["local"], sa["remote"])
		}
	})
}

// checkInteropTraffic pings both ways through the tunnel and moves TCP data both ways,
// checked byte for byte. The client's virtual IP, read from strongSwan or from our
// status (whichever is the client), must start with vipPrefix; it is returned.
func (l *interopLab) checkInteropTraffic(t *testing.T, sw *strongswan, clNS, gwNS, mvSock, vipPrefix string) string {
	t.Helper()
	var vip string
	sas := sw.listSAs()
	if len(sas) != 1 {
		t.Fatalf("strongSwan has %d IKE SAs, want 1", len(sas))
	}
	for _, k := range []string{"local-vips", "remote-vips"} {
		if v := sas[0].Lists[k]; len(v) > 0 {
			vip = v[0]
		}
	}
	if !strings.HasPrefix(vip, vipPrefix) {
		t.Fatalf("client virtual IP %q, want one from %s0/24 (strongSwan SA %v)", vip, vipPrefix, sas[0].Lists)
	}
	l.ping(clNS, "198.18.0.1", 5)
	l.ping(gwNS, vip, 5)
	mbps := l.tcpTransfer(clNS, gwNS, "198.18.0.1:5001", "198.18.0.1:5001", 4<<20)
	l.tcpTransfer(gwNS, clNS, vip+":5002", vip+":5002", 1<<20)
	t.Logf("client virtual IP %s; TCP 4 MiB client to gateway: %.0f Mbit/s", vip, mbps)
	return vip
}

// checkNegotiated compares both sides' view of the SAs with the family's expectations.
// role is our role; swName is strongSwan's connection name.
func (l *interopLab) checkNegotiated(t *testing.T, f interopFamily, sw *strongswan, mvSock, role, swName string) {
	t.Helper()
	sa := mvSA(t, mvSock)
	if sa == nil {
		t.Fatal("mobikevpn has no IKE SA")
	}
	// strongSwan supports MOBIKE but not the R extension: our gateway must not think a
	// strongSwan client advertised 'R'.
	want := map[string]any{"role": role, "state": "established", "proposal": f.mvIKEName, "encap": true, "mobike": true}
	if role == "responder" {
		want["rmobike"] = false
	} else if !strings.Contains(sw.log(), "peer supports MOBIKE") {
		// Our MOBIKE_SUPPORTED carries the 'R' byte; strongSwan must still take it.
		t.Errorf("strongSwan did not accept our MOBIKE_SUPPORTED")
	}
	for k, want := range want {
		if sa[k] != want {
			t.Errorf("mobikevpn IKE SA %s = %v, want %v", k, sa[k], want)
		}
	}
	cs := mvChildren(sa)
	if len(cs) != 1 {
		t.Fatalf("mobikevpn has %d Child SAs, want 1: %v", len(cs), cs)
	}
	c := cs[0]
	if c["state"] != "installed" || c["proposal"] != f.mvESPName {
		t.Errorf("mobikevpn Child SA state %v proposal %v, want installed %s", c["state"], c["proposal"], f.mvESPName)
	}
	for _, k := range []string{"bytes_in", "bytes_out", "packets_in", "packets_out"} {
		if v, _ := c[k].(float64); v <= 0 {
			t.Errorf("mobikevpn Child SA %s = %v after traffic", k, c[k])
		}
	}

	sas := sw.listSAs()
	if len(sas) != 1 {
		t.Fatalf("strongSwan has %d IKE SAs", len(sas))
	}
	s := sas[0]
	if s.Name != swName || s.KV["state"] != "ESTABLISHED" || s.Proposal() != f.swIKEName {
		t.Errorf("strongSwan IKE SA %s state %s proposal %s, want %s ESTABLISHED %s", s.Name, s.KV["state"], s.Proposal(), swName, f.swIKEName)
	}
	// Same outer endpoints, on the NAT-T port, seen from both ends.
	swLocal := net.JoinHostPort(s.KV["local-host"], s.KV["local-port"])
	swRemote := net.JoinHostPort(s.KV["remote-host"], s.KV["remote-port"])
	if sa["local"] != swRemote || sa["remote"] != swLocal || !strings.HasSuffix(swLocal, ":4500") || !strings.HasSuffix(swRemote, ":4500") {
		t.Errorf("endpoints: mobikevpn %v -> %v, strongSwan %s -> %s", sa["local"], sa["remote"], swLocal, swRemote)
	}
	// No NAT in the lab, but both ends force UDP encapsulation with a NAT-D that cannot
	// match (we with encap, strongSwan because kernel-libipsec needs it): each sees the
	// other as behind a NAT, neither itself.
	if sa["nat_local"] != false || sa["nat_remote"] != true || s.KV["nat-local"] == "yes" || s.KV["nat-remote"] != "yes" {
		t.Errorf("NAT detection: mobikevpn local %v remote %v, strongSwan local %q remote %q", sa["nat_local"], sa["nat_remote"], s.KV["nat-local"], s.KV["nat-remote"])
	}
	// Same SPIs on both sides.
	if s.KV["initiator-spi"] != sa["spi_i"] || s.KV["responder-spi"] != sa["spi_r"] {
		t.Errorf("IKE SPIs: strongSwan %s/%s, mobikevpn %v/%v", s.KV["initiator-spi"], s.KV["responder-spi"], sa["spi_i"], sa["spi_r"])
	}
	if len(s.Children) != 1 {
		t.Fatalf("strongSwan has %d Child SAs: %+v", len(s.Children), s.Children)
	}
	sc := s.Children[0]
	if sc.KV["state"] != "INSTALLED" || sc.Proposal() != f.swESPName || sc.KV["encap"] != "yes" {
		t.Errorf("strongSwan Child SA state %s proposal %s encap %s, want INSTALLED %s yes", sc.KV["state"], sc.Proposal(), sc.KV["encap"], f.swESPName)
	}
	if sc.KV["spi-in"] != c["spi_out"] || sc.KV["spi-out"] != c["spi_in"] {
		t.Errorf("ESP SPIs: strongSwan in %s out %s, mobikevpn in %v out %v", sc.KV["spi-in"], sc.KV["spi-out"], c["spi_in"], c["spi_out"])
	}
	for _, k := range []string{"bytes-in", "bytes-out", "packets-in", "packets-out"} {
		if sc.KV[k] == "" || sc.KV[k] == "0" {
			t.Errorf("strongSwan Child SA %s = %q after traffic", k, sc.KV[k])
		}
	}
	// Traffic selectors: the same pair seen from both ends.
	mvL, mvR := fmt.Sprint(c["local_ts"]), fmt.Sprint(c["remote_ts"])
	swL, swR := fmt.Sprint(sc.Lists["local-ts"]), fmt.Sprint(sc.Lists["remote-ts"])
	if mvL != swR || mvR != swL {
		t.Errorf("traffic selectors: mobikevpn %s === %s, strongSwan %s === %s", mvL, mvR, swL, swR)
	}
	if !slices.Contains(append(sc.Lists["local-ts"], sc.Lists["remote-ts"]...), "198.18.0.0/24") {
		t.Errorf("strongSwan selectors lack 198.18.0.0/24: %s === %s", swL, swR)
	}
}

// TestInteropVirtualIPs: our client takes its address (and DNS server) from a
// strongSwan pool, strongSwan's client takes IPv4 and IPv6 addresses from ours.
func TestInteropVirtualIPs(t *testing.T) {
	t.Run("mv-client", func(t *testing.T) {
		l := newInteropLab(t)
		sw := l.swGateway(swGatewayOpts(nil, nil))
		// We ask for both families; strongSwan's pool has IPv4 only.
		l.mvClient(mvOpts{VIPs: []string{"0.0.0.0", "::"}})
		if out, err := l.mvUp(l.clSock, "home"); err != nil {
			t.Fatalf("mobikevpn up home: %v\n%s", err, out)
		}
		sa := mvSA(t, l.clSock)
		if vips := fmt.Sprint(sa["virtual_ips"]); vips != "[198.18.200.1]" {
			t.Errorf("mobikevpn virtual_ips %s, want [198.18.200.1]", vips)
		}
		if c := mvChildren(sa); len(c) != 1 || fmt.Sprint(c[0]["local_ts"]) != "[198.18.200.1/32]" {
			t.Errorf("mobikevpn Child SA: %v", c)
		}
		if out := l.exec(l.cl, "ip", "-o", "addr", "show", "dev", "mvpn0"); !strings.Contains(out, "198.18.200.1/32") {
			t.Errorf("the virtual IP is not on our TUN device:\n%s", out)
		}
		sas := sw.listSAs()
		if len(sas) != 1 || fmt.Sprint(sas[0].Lists["remote-vips"]) != "[198.18.200.1]" {
			t.Fatalf("strongSwan SAs: %+v", sas)
		}
		// We asked for an address and a DNS server of each family; strongSwan answered
		// with what its pool has.
		log := sw.log()
		for _, want := range []string{
			"CPRQ(ADDR DNS ADDR6 DNS6)",
			"assigning virtual IP 198.18.200.1 to peer 'alice@example.org'",
			"building INTERNAL_IP4_DNS attribute",
			"CPRP(ADDR DNS)",
		} {
			if !strings.Contains(log, want) {
				t.Errorf("strongSwan's log lacks %q", want)
			}
		}
		if leases := l.swLeases(sw); !strings.Contains(leases, "198.18.200.1") || !strings.Contains(leases, "online") {
			t.Errorf("strongSwan pool leases:\n%s", leases)
		}
		l.ping(l.cl, "198.18.0.1", 3)
		l.ping(l.gw, "198.18.200.1", 3)

		// Down: the lease goes offline and our address goes away; up again: the same
		// address comes back (strongSwan keeps the lease for the identity).
		if out, err := l.mvDown(l.clSock, "home"); err != nil {
			t.Fatalf("mobikevpn down: %v\n%s", err, out)
		}
		if !waitFor(3*time.Second, func() bool { return strings.Contains(l.swLeases(sw), "offline") }) {
			t.Errorf("strongSwan's lease is still online after down:\n%s", l.swLeases(sw))
		}
		if !waitFor(3*time.Second, func() bool {
			return !strings.Contains(l.exec(l.cl, "ip", "-o", "addr", "show", "dev", "mvpn0"), "198.18.200.1")
		}) {
			t.Errorf("the virtual IP stays on our TUN device after down")
		}
		if out, err := l.mvUp(l.clSock, "home"); err != nil {
			t.Fatalf("second up: %v\n%s", err, out)
		}
		if vips := fmt.Sprint(mvSA(t, l.clSock)["virtual_ips"]); vips != "[198.18.200.1]" {
			t.Errorf("after a second up: virtual_ips %s", vips)
		}
		l.ping(l.cl, "198.18.0.1", 3)
	})
	t.Run("sw-client", func(t *testing.T) {
		l := newInteropLab(t)
		l.mvGateway(mvOpts{})
		o := swClientOpts("198.51.100.1", nil, nil)
		o.Conns[0].VIPs = []string{"0.0.0.0", "::"}
		o.Conns[0].Children[0].RemoteTS = []string{"198.18.0.0/24", "2001:db8:ff::/64"}
		sw := l.swClient(o)
		sw.mustInitiate("home", "net")
		sas := sw.listSAs()
		if len(sas) != 1 {
			t.Fatalf("strongSwan has %d IKE SAs", len(sas))
		}
		if v := fmt.Sprint(sas[0].Lists["local-vips"]); v != "[198.18.100.1 2001:db8:100::1]" {
			t.Errorf("strongSwan's virtual IPs %s, want [198.18.100.1 2001:db8:100::1]", v)
		}
		if len(sas[0].Children) != 1 {
			t.Fatalf("strongSwan Child SAs: %+v", sas[0].Children)
		}
		c := sas[0].Children[0]
		if l, r := fmt.Sprint(c.Lists["local-ts"]), fmt.Sprint(c.Lists["remote-ts"]); l != "[198.18.100.1/32 2001:db8:100::1/128]" || r != "[198.18.0.0/24 2001:db8:ff::/64]" {
			t.Errorf("strongSwan selectors %s === %s", l, r)
		}
		sa := mvSA(t, l.gwSock)
		if v := fmt.Sprint(sa["virtual_ips"]); v != "[198.18.100.1 2001:db8:100::1]" {
			t.Errorf("mobikevpn virtual_ips %s", v)
		}
		// strongSwan received both addresses and the DNS server (it has no resolve
		// plugin here, so it only logs that nobody handled the DNS attribute).
		log := sw.log()
		for _, want := range []string{
			"CPRP(ADDR ADDR6 DNS)",
			"installing new virtual IP 198.18.100.1",
			"installing new virtual IP 2001:db8:100::1",
			"handling INTERNAL_IP4_DNS attribute failed",
		} {
			if !strings.Contains(log, want) {
				t.Errorf("strongSwan's log lacks %q", want)
			}
		}
		// Both families through the tunnel, both ways.
		l.ping(l.cl, "198.18.0.1", 3)
		l.ping(l.cl, "2001:db8:ff::1", 3)
		l.ping(l.gw, "198.18.100.1", 3)
		l.ping(l.gw, "2001:db8:100::1", 3)
		l.tcpTransfer(l.cl, l.gw, "[2001:db8:ff::1]:5003", "[2001:db8:ff::1]:5003", 1<<20)

		// A terminate releases our lease: the next client gets the same address.
		if out, err := sw.terminateIKE("home"); err != nil {
			t.Fatalf("swanctl --terminate: %v\n%s", err, out)
		}
		if !waitFor(3*time.Second, func() bool { ike, _ := mvCount(t, l.gwSock); return ike == 0 }) {
			t.Fatalf("our gateway keeps the SA after strongSwan's delete")
		}
		if out := l.exec(l.gw, "ip", "route"); strings.Contains(out, "198.18.100.1") {
			t.Errorf("our gateway still routes the released address:\n%s", out)
		}
		sw.mustInitiate("home", "net")
		if v := fmt.Sprint(sw.listSAs()[0].Lists["local-vips"]); v != "[198.18.100.1 2001:db8:100::1]" {
			t.Errorf("after re-initiating, strongSwan's virtual IPs %s", v)
		}
		l.ping(l.cl, "198.18.0.1", 3)
	})
}

// swLeases is strongSwan's pool view.
func (l *interopLab) swLeases(sw *strongswan) string {
	out, err := sw.swanctl("--list-pools", "--leases")
	if err != nil {
		l.t.Fatalf("swanctl --list-pools: %v\n%s", err, out)
	}
	return out
}

// TestInteropDelete: deletes in both directions, of IKE SAs and of a Child SA alone.
func TestInteropDelete(t *testing.T) {
	t.Run("mv-client", func(t *testing.T) {
		l := newInteropLab(t)
		sw := l.swGateway(swGatewayOpts(nil, nil))
		l.mvClient(mvOpts{})
		if out, err := l.mvUp(l.clSock, "home"); err != nil {
			t.Fatalf("up: %v\n%s", err, out)
		}
		// Our delete: strongSwan forgets the SA.
		if out, err := l.mvDown(l.clSock, "home"); err != nil {
			t.Fatalf("down: %v\n%s", err, out)
		}
		if !waitFor(3*time.Second, func() bool { return len(sw.listSAs()) == 0 }) {
			t.Errorf("strongSwan keeps the SA after our delete: %+v", sw.listSAs())
		}
		if !strings.Contains(sw.log(), "received DELETE for IKE_SA rw[1]") {
			t.Errorf("strongSwan did not log our DELETE")
		}
		if ike, _ := mvCount(t, l.clSock); ike != 0 {
			t.Errorf("our client keeps %d IKE SAs after down", ike)
		}
		// strongSwan's delete: we forget the SA, our routes and address go.
		if out, err := l.mvUp(l.clSock, "home"); err != nil {
			t.Fatalf("second up: %v\n%s", err, out)
		}
		l.ping(l.cl, "198.18.0.1", 2)
		start := time.Now()
		if out, err := sw.terminateIKE("rw"); err != nil || !strings.Contains(out, "terminate completed successfully") {
			t.Fatalf("swanctl --terminate --ike rw: %v\n%s", err, out)
		}
		if !waitFor(3*time.Second, func() bool { ike, _ := mvCount(t, l.clSock); return ike == 0 }) {
			t.Fatalf("our client keeps the SA after strongSwan's delete: %+v", status(t, l.clSock))
		}
		t.Logf("our client dropped the SA %v after strongSwan's terminate", time.Since(start).Round(time.Millisecond))
		if out := l.exec(l.cl, "ip", "route"); strings.Contains(out, "198.18.0.0/24") {
			t.Errorf("our client still routes the remote selector:\n%s", out)
		}
		if out := l.exec(l.cl, "ip", "-o", "addr"); strings.Contains(out, "198.18.200.") {
			t.Errorf("our client keeps the virtual IP:\n%s", out)
		}
		if !strings.Contains(sw.log(), "IKE_SA deleted") {
			t.Errorf("strongSwan did not see its delete confirmed")
		}
	})
	t.Run("sw-client", func(t *testing.T) {
		l := newInteropLab(t)
		l.mvGateway(mvOpts{})
		sw := l.swClient(swClientOpts("198.51.100.1", nil, nil))
		sw.mustInitiate("home", "net")
		// strongSwan deletes the Child SA only: the IKE SA stays on both sides.
		if out, err := sw.terminateChild("net"); err != nil {
			t.Fatalf("swanctl --terminate --child net: %v\n%s", err, out)
		}
		if !waitFor(3*time.Second, func() bool { ike, child := mvCount(t, l.gwSock); return ike == 1 && child == 0 }) {
			t.Fatalf("after strongSwan's Child SA delete our gateway has %+v", status(t, l.gwSock))
		}
		if sas := sw.listSAs(); len(sas) != 1 || len(sas[0].Children) != 0 || sas[0].KV["state"] != "ESTABLISHED" {
			t.Errorf("strongSwan after its Child SA delete: %+v", sas)
		}
		// A new Child SA on the same IKE SA (CREATE_CHILD_SA from strongSwan).
		sw.mustInitiate("home", "net")
		if ike, child := mvCount(t, l.gwSock); ike != 1 || child != 1 {
			t.Fatalf("after CREATE_CHILD_SA our gateway has %d IKE and %d Child SAs", ike, child)
		}
		l.ping(l.cl, "198.18.0.1", 3)
		l.ping(l.gw, "198.18.100.1", 3)
		// Our gateway deletes (down on the responder's connection).
		if out, err := l.mvDown(l.gwSock, "rw"); err != nil {
			t.Fatalf("mobikevpn down rw on the gateway: %v\n%s", err, out)
		}
		if !waitFor(3*time.Second, func() bool { return len(sw.listSAs()) == 0 }) {
			t.Errorf("strongSwan keeps the SA after our gateway's delete: %+v", sw.listSAs())
		}
		if ike, _ := mvCount(t, l.gwSock); ike != 0 {
			t.Errorf("our gateway keeps %d IKE SAs after down", ike)
		}
		// strongSwan's IKE delete.
		sw.mustInitiate("home", "net")
		if out, err := sw.terminateIKE("home"); err != nil || !strings.Contains(out, "terminate completed successfully") {
			t.Fatalf("swanctl --terminate --ike home: %v\n%s", err, out)
		}
		if !waitFor(3*time.Second, func() bool { ike, _ := mvCount(t, l.gwSock); return ike == 0 }) {
			t.Fatalf("our gateway keeps the SA after strongSwan's delete: %+v", status(t, l.gwSock))
		}
		if out := l.exec(l.gw, "ip", "route"); strings.Contains(out, "198.18.100.1") {
			t.Errorf("our gateway still routes the client's address:\n%s", out)
		}
	})
}

// TestInteropRefusals: what we cannot accept from strongSwan is refused with the
// right notification and leaves no state behind, and our client reports strongSwan's
// refusals.
func TestInteropRefusals(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ike, esp []string
		remoteTS []string
		notify   string // what strongSwan must have received
		ikeKept  bool   // RFC 7296 1.2: a failed first Child SA leaves the IKE SA
		ourLog   string // what our gateway logs
	}{
		{name: "ike-3des", ike: []string{"3des-sha1-modp1024"}, notify: "received NO_PROPOSAL_CHOSEN notify error",
			ourLog: "no acceptable IKE proposal"},
		{name: "ike-ccm", ike: []string{"aes128ccm16-prfsha256-ecp256"}, notify: "received NO_PROPOSAL_CHOSEN notify error",
			ourLog: "no acceptable IKE proposal"},
		{name: "esp-3des", esp: []string{"3des-sha1"}, notify: "received NO_PROPOSAL_CHOSEN notify, no CHILD_SA built", ikeKept: true,
			ourLog: `msg="Child SA refused" part=ike sa=1 reason=NO_PROPOSAL_CHOSEN`},
		{name: "esp-ccm", esp: []string{"aes128ccm16"}, notify: "received NO_PROPOSAL_CHOSEN notify, no CHILD_SA built", ikeKept: true,
			ourLog: `msg="Child SA refused" part=ike sa=1 reason=NO_PROPOSAL_CHOSEN`},
		{name: "ts", remoteTS: []string{"203.0.113.0/24"}, notify: "received TS_UNACCEPTABLE notify, no CHILD_SA built", ikeKept: true,
			ourLog: `msg="Child SA refused" part=ike sa=1 reason=TS_UNACCEPTABLE`},
	} {
		t.Run("sw-client/"+tc.name, func(t *testing.T) {
			l := newInteropLab(t)
			gw := l.mvGateway(mvOpts{})
			o := swClientOpts("198.51.100.1", tc.ike, tc.esp)
			if tc.remoteTS != nil {
				o.Conns[0].Children[0].RemoteTS = tc.remoteTS
			}
			sw := l.swClient(o)
			out, err := sw.initiate("home", "net")
			if err == nil || strings.Contains(out, "initiate completed successfully") {
				t.Fatalf("initiate succeeded:\n%s", out)
			}
			if !strings.Contains(sw.log(), tc.notify) {
				t.Errorf("strongSwan's log lacks %q", tc.notify)
			}
			// No Child SA anywhere; the IKE SA exists on both sides or on neither.
			time.Sleep(300 * time.Millisecond)
			sas := sw.listSAs()
			ike, child := mvCount(t, l.gwSock)
			if child != 0 {
				t.Errorf("our gateway keeps %d Child SAs", child)
			}
			for _, s := range sas {
				if len(s.Children) != 0 {
					t.Errorf("strongSwan has a Child SA: %+v", s.Children)
				}
			}
			if ike != len(sas) {
				t.Errorf("our gateway has %d IKE SAs, strongSwan %d", ike, len(sas))
			}
			if tc.ikeKept && ike != 1 || !tc.ikeKept && ike != 0 {
				t.Errorf("our gateway has %d IKE SAs (want IKE SA kept: %v)", ike, tc.ikeKept)
			}
			if out := l.exec(l.gw, "ip", "route"); strings.Contains(out, "198.18.100.") {
				t.Errorf("our gateway routes a client address:\n%s", out)
			}
			if !strings.Contains(gw.output(), tc.ourLog) {
				t.Errorf("our gateway's log lacks %q", tc.ourLog)
			}
		})
	}
	for _, tc := range []struct {
		name     string
		ike      []string
		remoteTS []string
		want     string // in the output of mobikevpn up
	}{
		{name: "ike", ike: []string{"aes256gcm16-prfsha384-ecp384"}, want: "NO_PROPOSAL_CHOSEN"},
		{name: "ts", remoteTS: []string{"203.0.113.0/24"}, want: "TS_UNACCEPTABLE"},
	} {
		t.Run("mv-client/"+tc.name, func(t *testing.T) {
			l := newInteropLab(t)
			sw := l.swGateway(swGatewayOpts([]string{"aes128gcm16-prfsha256-x25519"}, nil))
			l.mvClient(mvOpts{Proposals: tc.ike, RemoteTS: tc.remoteTS})
			out, err := l.mvUp(l.clSock, "home")
			if err == nil || !strings.Contains(out, tc.want) {
				t.Fatalf("mobikevpn up: err %v, output %q; want a failure naming %s", err, out, tc.want)
			}
			// No Child SA anywhere; whatever happens to the IKE SA (RFC 7296 1.2 lets
			// it live on after the first Child SA failed), both ends agree.
			var ike, child int
			var sas []swIKESA
			waitFor(2*time.Second, func() bool {
				ike, child = mvCount(t, l.clSock)
				sas = sw.listSAs()
				return ike == len(sas)
			})
			if child != 0 {
				t.Errorf("our client keeps %d Child SAs", child)
			}
			if ike != len(sas) {
				t.Errorf("our client has %d IKE SAs, strongSwan %d", ike, len(sas))
			}
			t.Logf("after the refusal: %d IKE SAs on each side", ike)
			for _, s := range sas {
				if len(s.Children) != 0 {
					t.Errorf("strongSwan has a Child SA: %+v", s.Children)
				}
			}
			if out := l.exec(l.cl, "ip", "route"); strings.Contains(out, "203.0.113.") || strings.Contains(out, "198.18.0.0/24") {
				t.Errorf("our client routes a selector:\n%s", out)
			}
		})
	}
}
