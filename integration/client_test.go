package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The client lab (issue 15): the tunnel lab plus a host on "the Internet" behind the
// router (inet: 203.0.113.180 and 2001:db8:3::80) that is in no split selector, and a
// second gateway address (203.0.113.1) for switches. The router sends the pool's
// addresses back to the gateway, which forwards between its TUN device and the
// router. inet counts what arrives from the client's virtual IPs (through the tunnel)
// and from the client's own addresses (a leak).
type clientLab struct {
	*tunnelLab
	inet string
}

const (
	inet4 = "203.0.113.180"
	inet6 = "2001:db8:3::80"
)

func newClientLab(t *testing.T) *clientLab {
	l := &clientLab{tunnelLab: newTunnelLab(t)}
	l.inet = l.ns("inet")
	l.link(l.gw, "eth1", []string{"203.0.113.1/25"}, l.rt, "eth3", []string{"203.0.113.126/25"})
	l.link(l.inet, "eth0", []string{inet4 + "/25", inet6 + "/64"}, l.rt, "eth4", []string{"203.0.113.129/25", "2001:db8:3::1/64"})
	l.exec(l.inet, "ip", "route", "add", "default", "via", "203.0.113.129")
	l.exec(l.inet, "ip", "-6", "route", "add", "default", "via", "2001:db8:3::1")
	l.exec(l.rt, "ip", "route", "add", "198.18.100.0/24", "via", "198.51.100.1")
	l.exec(l.rt, "ip", "-6", "route", "add", "2001:db8:100::/64", "via", "2001:db8:2::1")
	l.exec(l.gw, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	l.exec(l.gw, "ip", "route", "add", "192.0.2.0/24", "via", "203.0.113.126", "dev", "eth1", "metric", "200")
	l.nft(l.inet, `table inet count {
		chain in { type filter hook input priority 0;
			ip saddr 198.18.100.0/24 counter comment "tunnel4"
			ip6 saddr 2001:db8:100::/64 counter comment "tunnel6"
			ip saddr 192.0.2.0/24 counter comment "leak4"
			ip6 saddr 2001:db8:1::/64 counter comment "leak6"
		}
	}`)
	l.exec(l.cl, "ping", "-c", "1", "-W", "5", "203.0.113.1")
	l.gwSock = filepath.Join(l.dir, "gw.sock")
	l.clSock = filepath.Join(l.dir, "cl.sock")
	l.gwCfg = filepath.Join(l.dir, "gw.yaml")
	l.clCfg = filepath.Join(l.dir, "cl.yaml")
	return l
}

// fullTunnelGateway is the lab's gateway offering everything (0.0.0.0/0, ::/0) to its
// clients, on both its addresses.
func (l *clientLab) fullTunnelGateway(extra string) string {
	c := l.gatewayConfig(extra)
	c = strings.Replace(c, `local_addrs: [198.51.100.1, "2001:db8:2::1"]`, `local_addrs: [198.51.100.1, 203.0.113.1, "2001:db8:2::1"]`, 1)
	return strings.Replace(c, `local_ts: [198.18.0.0/24, "2001:db8:ff::/64"]`, `local_ts: [0.0.0.0/0, "::/0"]`, 1)
}

// fullTunnelClient is the lab's client routing everything through the gateway.
func (l *clientLab) fullTunnelClient(gateway, extra string) string {
	c := l.clientConfig(gateway, extra)
	return strings.Replace(c, `remote_ts: [198.18.0.0/24, "2001:db8:ff::/64"]`, `remote_ts: [0.0.0.0/0, "::/0"]`, 1)
}

// pingInet pings the Internet host from the client over both families and reports
// whether every ping got an answer.
func (l *clientLab) pingInet() error {
	for _, dst := range []string{inet4, inet6} {
		out, err := exec.Command("ip", "netns", "exec", l.cl, "ping", "-c", "3", "-i", "0.2", "-W", "2", dst).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ping %s: %v\n%s", dst, err, out)
		}
	}
	return nil
}

// leaks are the packets inet got from the client's own addresses, and through the
// tunnel.
func (l *clientLab) counts() (leaked, tunnelled int) {
	c := l.nftCounters(l.inet, "inet count")
	return c["leak4"] + c["leak6"], c["tunnel4"] + c["tunnel6"]
}

// TestClientFullTunnel: with remote_ts [0.0.0.0/0, ::/0] the client's traffic to a host
// in no split selector goes through the gateway (inet sees the virtual IPs, never the
// client's own addresses), and keeps doing so after a MOBIKE move to another client
// address and after the gateway switched the SA to its other address: the IKE/ESP
// sockets, marked, bypass the tunnel's routing table wherever the gateway is. On exit
// the rules and the table are gone.
func TestClientFullTunnel(t *testing.T) {
	l := newClientLab(t)
	writeFile(t, l.gwCfg, l.fullTunnelGateway("    switch_hold: 0s\n"))
	writeFile(t, l.clCfg, l.fullTunnelClient("198.51.100.1", "    switch_hold: 0s\n"))
	gw, cl := l.runDaemons()
	l.up(cl, gw)
	rules := l.exec(l.cl, "ip", "rule", "show")
	if !strings.Contains(rules, "not from all fwmark 0x11cb lookup 4555") {
		t.Fatalf("no policy rule for the tunnel's table:\n%s", rules)
	}
	if r := l.exec(l.cl, "ip", "route", "show", "table", "4555"); !strings.Contains(r, "default dev mvpn0") {
		t.Fatalf("table 4555 has no default route through the tunnel:\n%s", r)
	}
	check := func(when string) {
		t.Helper()
		_, before := l.counts()
		if err := l.pingInet(); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		leaked, through := l.counts()
		if leaked != 0 || through < before+6 {
			t.Fatalf("%s: inet got %d packets from the client's own addresses (a leak) and %d more through the tunnel, want 0 and 6",
				when, leaked, through-before)
		}
		t.Logf("%s: 6 pings to %s and %s went through the gateway, none around it", when, inet4, inet6)
	}
	check("established")

	// MOBIKE: the client's address goes; a second link takes over.
	l.link(l.cl, "eth1", []string{"192.0.2.138/25"}, l.rt, "eth2", []string{"192.0.2.129/25"})
	l.exec(l.cl, "ip", "route", "add", "default", "via", "192.0.2.129", "dev", "eth1", "metric", "100") // dev: the nexthop would be looked up through the tunnel
	l.exec(l.cl, "ip", "addr", "del", "192.0.2.10/24", "dev", "eth0")
	if !waitFor(10*time.Second, func() bool {
		st := status(t, l.gwSock)
		return st != nil && len(st.IKESAs) == 1 && strings.HasPrefix(st.IKESAs[0].Remote, "192.0.2.138:")
	}) {
		t.Fatalf("the gateway did not follow the client's move\nclient routes:\n%s\n%s\nrouter:\n%s", l.exec(l.cl, "ip", "route"), l.exec(l.cl, "ip", "neigh"), l.exec(l.rt, "ip", "route"))
	}
	check("after a MOBIKE move")

	// R-MOBIKE: the gateway switches the SA to its other address.
	out, code := l.switchCmd("--to", "203.0.113.1", "--wait", "10s")
	if code != 0 {
		t.Fatalf("switch: exit %d\n%s", code, out)
	}
	if st := status(t, l.clSock); len(st.IKESAs) != 1 || !strings.HasPrefix(st.IKESAs[0].Remote, "203.0.113.1:") {
		t.Fatalf("the client is not at the gateway's other address: %+v", st.IKESAs)
	}
	check("after a switch")

	cl.signal(syscall.SIGTERM)
	if _, ok := cl.wait(10 * time.Second); !ok {
		t.Fatal("client did not exit")
	}
	if rules := l.exec(l.cl, "ip", "rule", "show"); strings.Contains(rules, "4555") {
		t.Errorf("policy rules left after exit:\n%s", rules)
	}
	if r := l.exec(l.cl, "ip", "route", "show", "table", "4555"); strings.TrimSpace(r) != "" {
		t.Errorf("routes left in table 4555 after exit:\n%s", r)
	}
}

// underlayLeaks reads a capture of the client's underlay and returns every packet
// that is neither IKE/ESP (UDP 500/4500) nor the link's own business (ARP, ICMPv6
// neighbour and router discovery).
func underlayLeaks(c *capture) []string {
	out := c.tshark("-Y", "!(udp.port == 500 || udp.port == 4500 || arp || (icmpv6.type >= 133 && icmpv6.type <= 136) || icmpv6.type == 143 || mdns)")
	var leaks []string
	for _, ln := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.TrimSpace(ln) != "" {
			leaks = append(leaks, ln)
		}
	}
	return leaks
}

// TestClientKillSwitch: with kill_switch and the gateway unreachable (down, then back,
// then down again while established), nothing of the client's leaves through the
// underlay but IKE: a capture on the client's link shows no ping, TCP or DNS of its
// own, and inet receives nothing. Once the gateway answers, traffic flows through the
// tunnel. On exit the nftables table is gone; after SIGKILL it stays (fail closed)
// until the next start, whose exit removes it.
func TestClientKillSwitch(t *testing.T) {
	l := newClientLab(t)
	writeFile(t, l.gwCfg, l.fullTunnelGateway(""))
	writeFile(t, l.clCfg, strings.Replace(l.fullTunnelClient("198.51.100.1", "    kill_switch: true\n"), "start_action: none", "start_action: start", 1))
	// The gateway is cut off at the router: the client cannot reach it.
	cut := func() {
		l.nft(l.rt, `table inet cut { chain block { type filter hook forward priority 0;
			ip daddr { 198.51.100.0/24, 203.0.113.0/25 } drop
			ip6 daddr 2001:db8:2::/64 drop
		}
	}`)
	}
	cut()
	gw, cl := l.runDaemons()
	capt := l.startCapture("underlay", l.cl, "eth0", "")
	tryLeak := func() {
		for _, args := range [][]string{
			{"ping", "-c", "2", "-i", "0.2", "-W", "1", inet4},
			{"ping", "-c", "2", "-i", "0.2", "-W", "1", inet6},
			{"ping", "-c", "2", "-i", "0.2", "-W", "1", "192.0.2.1"}, // the LAN's router
		} {
			if exec.Command("ip", append([]string{"netns", "exec", l.cl}, args...)...).Run() == nil {
				t.Errorf("%s got an answer with the tunnel down", strings.Join(args, " "))
			}
		}
		self, _ := os.Executable()
		for _, dst := range []string{inet4 + ":53", "[" + inet6 + "]:443"} {
			cmd := exec.Command("ip", "netns", "exec", l.cl, self, "0", dst, "6d76706e")
			cmd.Env = append(os.Environ(), "MOBIKEVPN_HELPER=udpsend")
			cmd.Run()
			if exec.Command("ip", "netns", "exec", l.cl, "timeout", "2", "bash", "-c", "echo > /dev/tcp/"+inet4+"/80").Run() == nil {
				t.Errorf("a TCP connection to %s:80 went out with the tunnel down", inet4)
			}
		}
	}
	time.Sleep(2 * time.Second) // the client tries the gateway
	tryLeak()
	if st := status(t, l.clSock); len(st.IKESAs) > 0 && st.IKESAs[0].State == "ESTABLISHED" {
		t.Fatal("established with the gateway unreachable")
	}
	// The gateway is back: the client connects by itself (start_action: start retries).
	l.exec(l.rt, "nft", "delete", "table", "inet", "cut")
	if !waitFor(60*time.Second, func() bool { return installedChild(t, l.clSock) }) {
		t.Fatalf("the client did not connect once the gateway was reachable")
	}
	if err := l.pingInet(); err != nil {
		t.Fatalf("through the tunnel with the kill switch on: %v", err)
	}
	// Established, then the gateway goes away again.
	cut()
	tryLeak()
	capt.stop()
	leaks := underlayLeaks(capt)
	leaked, through := l.counts()
	t.Logf("kill switch: %d packets on the underlay besides IKE/ESP and link chatter; inet got %d from the client's addresses, %d through the tunnel",
		len(leaks), leaked, through)
	if len(leaks) > 0 || leaked > 0 {
		t.Errorf("leaks with the kill switch on (inet got %d):\n%s", leaked, strings.Join(leaks, "\n"))
	}
	if drops := l.exec(l.cl, "nft", "list", "table", "inet", "mobikevpn"); !strings.Contains(drops, "drop") {
		t.Errorf("the kill switch table:\n%s", drops)
	}
	// SIGKILL: the rules stay, failing closed.
	cl.signal(syscall.SIGKILL)
	cl.wait(5 * time.Second)
	if out, err := exec.Command("ip", "netns", "exec", l.cl, "nft", "list", "table", "inet", "mobikevpn").CombinedOutput(); err != nil {
		t.Errorf("after SIGKILL the kill switch is gone (it must stay until the next start): %v %s", err, out)
	}
	// The next start takes over; its clean exit removes everything.
	writeFile(t, l.clCfg, l.fullTunnelClient("198.51.100.1", "    kill_switch: true\n"))
	cl2 := l.start("client2", l.cl, binary(t), "run", "-c", l.clCfg)
	if !waitFor(10*time.Second, func() bool { return status(t, l.clSock) != nil }) {
		t.Fatalf("second client did not start:\n%s", cl2.output())
	}
	cl2.signal(syscall.SIGTERM)
	if _, ok := cl2.wait(10 * time.Second); !ok {
		t.Fatal("second client did not exit")
	}
	if out, err := exec.Command("ip", "netns", "exec", l.cl, "nft", "list", "table", "inet", "mobikevpn").CombinedOutput(); err == nil {
		t.Errorf("kill switch table left after a clean exit:\n%s", out)
	}
	_ = gw
}

// TestClientDNSAndHostName: the client names its gateway by a host name (resolved from
// its hosts file to two addresses, a dead one and the gateway's: both are tried), and
// applies the DNS server the gateway assigns (dns: apply, the default): a query for a
// name only that server knows is answered through the tunnel. On exit the
// resolv.conf is restored byte for byte; after SIGKILL the next start restores it.
func TestClientDNSAndHostName(t *testing.T) {
	l := newClientLab(t)
	self, _ := os.Executable()
	l.exec(l.gw, "ip", "addr", "add", "198.18.0.53/32", "dev", "lo")
	dns := l.start("dns", l.gw, "env", "MOBIKEVPN_HELPER=dnsserver", self, "198.18.0.53:53", "www.example.test", inet4)
	if !waitFor(5*time.Second, func() bool { return strings.Contains(dns.output(), "listening") }) {
		t.Fatalf("dns server: %s", dns.output())
	}
	resolvConf := "/etc/netns/" + l.cl + "/resolv.conf"
	orig, err := os.ReadFile(resolvConf)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, "/etc/netns/"+l.cl+"/hosts", "198.51.100.77 vpn.example.test\n198.51.100.1 vpn.example.test\n")
	writeFile(t, l.gwCfg, l.fullTunnelGateway(""))
	cfg := strings.Replace(l.fullTunnelClient("vpn.example.test", ""), "start_action: none", "start_action: start", 1)
	writeFile(t, l.clCfg, cfg)
	gw, cl := l.runDaemons()
	if !waitFor(30*time.Second, func() bool { return installedChild(t, l.clSock) }) {
		t.Fatalf("the client did not connect to vpn.example.test:\n%s", cl.output())
	}
	if st := status(t, l.clSock); !strings.HasPrefix(st.IKESAs[0].Remote, "198.51.100.1:") {
		t.Errorf("connected to %s, want vpn.example.test's live address 198.51.100.1", st.IKESAs[0].Remote)
	}
	if !strings.Contains(cl.output(), "resolved the gateway's host names") {
		t.Errorf("the client's log does not show the resolution")
	}
	applied, _ := os.ReadFile(resolvConf)
	if !strings.Contains(string(applied), "nameserver 198.18.0.53") {
		t.Fatalf("resolv.conf with the tunnel up:\n%s", applied)
	}
	out := l.exec(l.cl, "getent", "hosts", "www.example.test")
	if !strings.Contains(out, inet4) {
		t.Fatalf("getent hosts www.example.test: %q", out)
	}
	if !strings.Contains(dns.output(), "query www.example.test. TypeA from 198.18.100.") {
		t.Errorf("the DNS server did not get the query from the virtual IP (through the tunnel):\n%s", dns.output())
	}
	t.Logf("www.example.test resolved through the tunnel: %s", strings.TrimSpace(out))
	cl.signal(syscall.SIGTERM)
	if _, ok := cl.wait(10 * time.Second); !ok {
		t.Fatal("client did not exit")
	}
	if after, _ := os.ReadFile(resolvConf); string(after) != string(orig) {
		t.Fatalf("resolv.conf not restored on exit:\n%s\nwant:\n%s", after, orig)
	}
	// Killed: the next start puts the original back before anything else.
	cl2 := l.start("client2", l.cl, binary(t), "run", "-c", l.clCfg)
	if !waitFor(30*time.Second, func() bool {
		b, _ := os.ReadFile(resolvConf)
		return strings.Contains(string(b), "nameserver 198.18.0.53")
	}) {
		t.Fatalf("second client did not apply the DNS server:\n%s", cl2.output())
	}
	cl2.signal(syscall.SIGKILL)
	cl2.wait(5 * time.Second)
	writeFile(t, l.clCfg, strings.Replace(cfg, "    start_action: start\n", "    start_action: none\n    dns: ignore\n", 1))
	cl3 := l.start("client3", l.cl, binary(t), "run", "-c", l.clCfg)
	if !waitFor(10*time.Second, func() bool { return status(t, l.clSock) != nil }) {
		t.Fatalf("third client did not start:\n%s", cl3.output())
	}
	if after, _ := os.ReadFile(resolvConf); string(after) != string(orig) {
		t.Errorf("resolv.conf not restored at the start after SIGKILL:\n%s", after)
	}
	if !strings.Contains(cl3.output(), "restored the DNS configuration a previous run left behind") {
		t.Errorf("the third client's log does not say it restored resolv.conf")
	}
	_ = gw
}

// TestClientOfflineTwoMinutes: the laptop's only link goes down for two minutes (lid
// closed) under a ping through the full tunnel, then comes back with its routes (as
// DHCP would bring them). Nobody touches the client: its SA was held, not lost, and
// resumes by MOBIKE at once (the gateway kept it: its liveness check gives up after
// about 170 s). The figure is the time from the routes' return to the first reply.
func TestClientOfflineTwoMinutes(t *testing.T) {
	if testing.Short() {
		t.Skip("two minutes offline")
	}
	l := newClientLab(t)
	writeFile(t, l.gwCfg, l.fullTunnelGateway(""))
	writeFile(t, l.clCfg, strings.Replace(l.fullTunnelClient("198.51.100.1", ""), "start_action: none", "start_action: start", 1))
	gw, cl := l.runDaemons()
	if !waitFor(20*time.Second, func() bool { return installedChild(t, l.clSock) }) {
		t.Fatalf("the client did not connect:\n%s", cl.output())
	}
	before := status(t, l.clSock).IKESAs[0]
	f := l.startFlow(l.cl, inet4, 200*time.Millisecond)
	time.Sleep(2 * time.Second)
	// The IPv6 address stays while the link is down (as the IPv4 one does); without it
	// the test would have to play SLAAC.
	l.exec(l.cl, "sysctl", "-qw", "net.ipv6.conf.eth0.keep_addr_on_down=1")
	l.exec(l.cl, "ip", "link", "set", "eth0", "down")
	time.Sleep(2 * time.Minute)
	l.exec(l.cl, "ip", "link", "set", "eth0", "up")
	l.exec(l.cl, "ip", "route", "add", "default", "via", "192.0.2.1", "dev", "eth0")
	back := time.Now()
	// IPv6 takes a moment to put the link's prefix back.
	if !waitFor(10*time.Second, func() bool {
		return exec.Command("ip", "netns", "exec", l.cl, "ip", "-6", "route", "add", "default", "via", "2001:db8:1::1", "dev", "eth0").Run() == nil
	}) {
		t.Fatal("no IPv6 default route after the link came back")
	}
	var first time.Time
	if !waitFor(60*time.Second, func() bool {
		for _, r := range f.all {
			if r.at.After(back) {
				first = r.at
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no ping through the tunnel within 60 s of the network's return:\nclient:\n%s", lastLines(withoutControl(cl.output()), 60))
	}
	f.stop()
	after := status(t, l.clSock).IKESAs
	resumed := len(after) == 1 && after[0].SPIi == before.SPIi
	how := "re-created"
	if resumed {
		how = "resumed by MOBIKE (same IKE SA)"
	}
	t.Logf("two minutes offline: traffic through the tunnel again %v after the network came back; SA %s",
		first.Sub(back).Round(time.Millisecond), how)
	if !resumed {
		t.Errorf("the SA was %s; the gateway still had it, MOBIKE should have resumed it (before %s, after %+v)", how, before.SPIi, after)
	}
	if gs := status(t, l.gwSock).IKESAs; len(gs) != 1 {
		t.Errorf("the gateway has %d IKE SAs, want 1", len(gs))
	}
	if !strings.Contains(cl.output(), "holding the SA until the network is back") || !strings.Contains(cl.output(), "network back: resuming the SA") {
		t.Errorf("the client's log does not show the SA held and resumed")
	}
	_ = gw
}

// TestInteropFullTunnel: our full-tunnel client against a strongSwan gateway (its
// pool 198.18.200.0/24, local_ts 0.0.0.0/0): the client's traffic to a host in no
// split selector goes through strongSwan, none around it.
func TestInteropFullTunnel(t *testing.T) {
	l := newClientLab(t)
	l.exec(l.rt, "ip", "route", "add", "198.18.200.0/24", "via", "198.51.100.1")
	l.nft(l.inet, `table inet count2 {
		chain in { type filter hook input priority 0;
			ip saddr 198.18.200.0/24 counter comment "tunnel4"
		}
	}`)
	o := swGatewayOpts(nil, nil)
	o.Conns[0].Children[0].LocalTS = []string{"0.0.0.0/0"}
	startStrongSwan(l.lab, l.gw, "gateway", o)
	writeFile(t, l.clCfg, strings.Replace(l.fullTunnelClient("198.51.100.1", ""), `vips: [0.0.0.0, "::"]`, "vips: [0.0.0.0]", 1))
	cl := l.start("client", l.cl, binary(t), "run", "-c", l.clCfg)
	if !waitFor(10*time.Second, func() bool { return status(t, l.clSock) != nil }) {
		t.Fatalf("client did not start:\n%s", cl.output())
	}
	if out, err := exec.Command(binary(t), "up", "home", "--control", l.clSock).CombinedOutput(); err != nil {
		t.Fatalf("up: %v\n%s\n%s", err, out, cl.output())
	}
	out, err := exec.Command("ip", "netns", "exec", l.cl, "ping", "-c", "3", "-i", "0.2", "-W", "2", inet4).CombinedOutput()
	if err != nil {
		t.Fatalf("ping %s through strongSwan: %v\n%s", inet4, err, out)
	}
	c := l.nftCounters(l.inet, "inet count2")
	leaked, _ := l.counts()
	if c["tunnel4"] < 3 || leaked != 0 {
		t.Fatalf("inet got %d pings from strongSwan's pool and %d from the client's own addresses, want 3 and 0", c["tunnel4"], leaked)
	}
	t.Logf("full tunnel through strongSwan: %d pings to %s came from the pool, none around it", c["tunnel4"], inet4)
}
