package mobikevpn_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"log"
	"net/netip"
	"strings"
	"time"

	"github.com/mobikevpn/mobikevpn"
	"github.com/mobikevpn/mobikevpn/tun/memtun"
)

const gatewayYAML = `
tun: { name: gw0, mtu: 1400, addrs: [198.18.0.1/24] }
secrets:
  - ids: [gw.example.org, alice@example.org]
    psk: "example secret"
pools:
  - name: rw
    addrs: 198.18.100.0/24
connections:
  rw:
    local_addrs: [198.51.100.1, 203.0.113.1]
    remote_addrs: ["%any"]
    pools: [rw]
    local: { auth: psk, id: gw.example.org }
    remote: { auth: psk, id: "%any" }
    children:
      net:
        local_ts: [198.18.0.0/24]
        remote_ts: [dynamic]
`

const clientYAML = `
tun: { name: cl0, mtu: 1400 }
secrets:
  - ids: [gw.example.org, alice@example.org]
    psk: "example secret"
connections:
  home:
    remote_addrs: [198.51.100.1]
    vips: [0.0.0.0]
    local: { auth: psk, id: alice@example.org }
    remote: { auth: psk, id: gw.example.org }
    children:
      net:
        local_ts: [dynamic]
        remote_ts: [198.18.0.0/24]
`

// A gateway and a client in one process, on an in-memory network with in-memory TUN
// devices: the client brings its connection up, a packet goes through the tunnel, and
// the gateway asks the client to move to its second address.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	network := mobikevpn.NewMemNetwork()

	start := func(yaml, name string, host *mobikevpn.MemHost, dev *memtun.Device) *mobikevpn.VPN {
		cfg, err := mobikevpn.ParseConfig([]byte(yaml), name)
		if err != nil {
			log.Fatal(err)
		}
		vpn, err := mobikevpn.New(cfg, mobikevpn.Options{Host: host, TUN: dev})
		if err != nil {
			log.Fatal(err)
		}
		return vpn
	}
	gwDev, clDev := memtun.New("gw0", 1400), memtun.New("cl0", 1400)
	gw := start(gatewayYAML, "gateway.yaml", network.Host(netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("203.0.113.1")), gwDev)
	defer gw.Close()
	cl := start(clientYAML, "client.yaml", network.Host(netip.MustParseAddr("192.0.2.10")), clDev)
	defer cl.Close()

	if err := cl.Up(ctx, "home"); err != nil {
		log.Fatal(err)
	}
	st, err := cl.Status(ctx)
	if err != nil {
		log.Fatal(err)
	}
	sa := st.IKESAs[0]
	fmt.Println("client:", sa.State, "with", sa.RemoteID, "virtual IP", sa.VirtualIPs[0])

	// A UDP datagram from the client's virtual IP to the gateway's side comes out of
	// the gateway's TUN device.
	vip := netip.MustParseAddr(sa.VirtualIPs[0])
	if err := clDev.Inject(udpPacket(vip, netip.MustParseAddr("198.18.0.1"), "hello")); err != nil {
		log.Fatal(err)
	}
	select {
	case p := <-gwDev.Written():
		fmt.Printf("gateway's TUN: %q from %v\n", p[28:], netip.AddrFrom4([4]byte(p[12:16])))
	case <-ctx.Done():
		log.Fatal("the packet did not come through")
	}

	// The gateway moves the client to its second address and waits for the move.
	out, err := gw.Switch(ctx, mobikevpn.Switch{To: netip.MustParseAddr("203.0.113.1"), All: true, Wait: 10 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	lines := strings.Split(out, "\n") // what was asked, then each move and its time
	fmt.Println(lines[0])
	fmt.Println(len(lines) == 2 && strings.HasPrefix(lines[1], "moved: alice@example.org (SA #1) after "))
	// The gateway saw the client's UPDATE_SA_ADDRESSES; the client moves once the
	// answer is back.
	for {
		st, err = cl.Status(ctx)
		if err != nil {
			log.Fatal(err)
		}
		if r := st.IKESAs[0].Remote; r != sa.Remote || ctx.Err() != nil {
			fmt.Println("client now talks to", r)
			break
		}
		time.Sleep(time.Millisecond)
	}
	// Output:
	// client: established with gw.example.org virtual IP 198.18.100.1
	// gateway's TUN: "hello" from 198.18.100.1
	// asked to move to 203.0.113.1: alice@example.org (SA #1)
	// true
	// client now talks to 203.0.113.1:4500
}

// udpPacket is an IPv4 UDP datagram (checksum left out) carrying payload.
func udpPacket(src, dst netip.Addr, payload string) []byte {
	b := make([]byte, 28+len(payload))
	b[0], b[8], b[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	copy(b[12:16], src.AsSlice())
	copy(b[16:20], dst.AsSlice())
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(b[20:], 5000)
	binary.BigEndian.PutUint16(b[22:], 5001)
	binary.BigEndian.PutUint16(b[24:], uint16(8+len(payload)))
	copy(b[28:], payload)
	return b
}
