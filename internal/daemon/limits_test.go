package daemon

import (
	"context"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/esp"
	"github.com/mobikevpn/mobikevpn/internal/config"
	"github.com/mobikevpn/mobikevpn/tun/memtun"
	"github.com/mobikevpn/mobikevpn/udp/memnet"
)

// Issue 11: max_children and the volume limits reach the engine, and the datapath's
// reports of crossed limits reach the engine through the daemon.

func TestIKEConnLimits(t *testing.T) {
	cfg, err := config.Parse([]byte(`
secrets: [{ ids: [gw.example.org], psk: "0123456789abcdef0123" }]
connections:
  rw:
    max_children: 7
    local: { auth: psk, id: gw.example.org }
    remote: { auth: psk }
    children:
      net:
        rekey_bytes: 1G
        rekey_packets: 1000
        life_packets: 5000
  other:
    local: { auth: psk, id: gw.example.org }
    remote: { auth: psk }
    children: { net: {} }
`), "gw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ikeConn(cfg.Connection("rw"))
	if err != nil {
		t.Fatal(err)
	}
	ch := c.Children[0]
	if c.MaxChildren != 7 || ch.RekeyBytes != 1<<30 || ch.LifeBytes != 1<<30+(1<<30)/10 || ch.RekeyPackets != 1000 || ch.LifePackets != 5000 {
		t.Errorf("max_children %d, child %+v", c.MaxChildren, ch)
	}
	o, err := ikeConn(cfg.Connection("other"))
	if err != nil {
		t.Fatal(err)
	}
	if o.MaxChildren != config.DefaultMaxChildren || o.Children[0].RekeyBytes != 0 || o.Children[0].LifePackets != 0 {
		t.Errorf("defaults: max_children %d, child %+v", o.MaxChildren, o.Children[0])
	}
}

// ipv4UDP is a minimal IPv4/UDP packet from src to dst.
func ipv4UDP(src, dst netip.Addr) []byte {
	p := make([]byte, 28+16)
	p[0], p[8], p[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(p[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(p[20:], 1000)
	binary.BigEndian.PutUint16(p[22:], 2000)
	binary.BigEndian.PutUint16(p[24:], 8+16)
	return p
}

// TestVolumeLimitRekeysThroughDaemon: a gateway whose Child SA has rekey_packets: 3
// sends 4 packets; the datapath reports the limit, and the daemon's hand-over makes the
// engine rekey the Child SA.
func TestVolumeLimitRekeysThroughDaemon(t *testing.T) {
	yaml := strings.Replace(scaleGatewayYAML, "esp_proposals: [aes128gcm16]", "esp_proposals: [aes128gcm16]\n        rekey_packets: 3\n        rekey_time: 0s", 1)
	g := newScaleGateway(t, yaml)
	// A datapath of our own, to inject traffic into and run.
	dev := memtun.New("mvpn0", 1400)
	host := memnet.New().Host(netip.MustParseAddr("198.51.100.1"))
	c4500, err := host.Listen(4500)
	if err != nil {
		t.Fatal(err)
	}
	dp, err := esp.New(esp.Config{TUN: dev, Conns: c4500, MTU: 1400, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	g.dp = dp
	c := newScaleClients(t, 1)
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	now = establish(t, g, c, 1, 1, now, time.Millisecond)
	st := g.engine.Status(now)
	if len(st) != 1 || len(st[0].Children) != 1 {
		t.Fatalf("status %+v", st)
	}
	before := st[0].Children[0]

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- dp.Run(ctx) }()
	defer func() { cancel(); <-done }()
	pkt := ipv4UDP(netip.MustParseAddr("198.18.0.1"), st[0].Remote.Addr())
	for range 4 {
		if err := dev.Inject(pkt); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-dp.LimitsCrossed():
	case <-time.After(10 * time.Second):
		t.Fatalf("no limit reported; outbound counters %+v", func() esp.Counters { c, _ := dp.OutboundCounters(before.Policy); return c }())
	}
	g.apply(g.volumeLimits(now))
	if len(g.sent) == 0 {
		t.Fatal("the engine sent nothing: no rekey")
	}
	pump(now, g, c)
	after := g.engine.Status(now)[0]
	var live []uint32
	for _, ch := range after.Children {
		if ch.State == "installed" {
			live = append(live, ch.SPIIn)
		}
	}
	if len(live) != 1 || live[0] == before.SPIIn {
		t.Errorf("Child SAs after the limit: %+v (before: %08x)", after.Children, before.SPIIn)
	}
}
