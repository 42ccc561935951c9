package loadgen

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/internal/config"
	"github.com/mobikevpn/mobikevpn/internal/daemon"
	"github.com/mobikevpn/mobikevpn/tun/memtun"
	"github.com/mobikevpn/mobikevpn/udp/memnet"
)

const gatewayYAML = `
tun: { name: mvpn0, mtu: 1400 }
secrets:
  - ids: [gw.example.org, "*@bench.example.org"]
    psk: "bench secret"
connections:
  rw:
    local_addrs: [198.51.100.1]
    proposals: [aes128gcm16-prfsha256-x25519]
    local: { auth: psk, id: gw.example.org }
    remote: { auth: psk }
    children:
      net:
        local_ts: [198.18.0.0/24]
        remote_ts: [dynamic]
        esp_proposals: [aes128gcm16]
`

// nullNet is a tun.Configurator that does nothing.
type nullNet struct{}

func (nullNet) Up(string) error                       { return nil }
func (nullNet) AddAddress(string, netip.Prefix) error { return nil }
func (nullNet) AddRoute(string, netip.Prefix) error   { return nil }
func (nullNet) DelAddress(string, netip.Prefix) error { return nil }
func (nullNet) DelRoute(string, netip.Prefix) error   { return nil }
func (nullNet) Close() error                          { return nil }

// TestHandshakesInMemory runs the generator's full handshakes (establish, hold,
// delete) against a daemon, both on an in-memory network.
func TestHandshakesInMemory(t *testing.T) {
	const count = 24
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	net := memnet.New()
	gwAddr := netip.MustParseAddr("198.51.100.1")
	gwHost := net.Host(gwAddr)
	ikeConns, err := gwHost.Listen(500)
	if err != nil {
		t.Fatal(err)
	}
	natt, err := gwHost.Listen(4500)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(gatewayYAML), "gw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	gw, err := daemon.New(cfg, log, daemon.Deps{TUN: memtun.New("mvpn0", 1400), Net: nullNet{}, IKEConns: ikeConns, NATTConns: natt})
	if err != nil {
		t.Fatal(err)
	}
	gwDone := make(chan error, 1)
	go func() { gwDone <- gw.Run(ctx, daemon.Options{}) }()

	o := Options{
		Target:      netip.AddrPortFrom(gwAddr, 500),
		Sources:     netip.MustParsePrefix("198.19.0.0/16"),
		Count:       count,
		Concurrency: 5,
		PSK:         []byte("bench secret"),
		RemoteID:    "gw.example.org",
		Hold:        200 * time.Millisecond,
		Timeout:     time.Minute,
	}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	var srcs []netip.Addr
	for i := range count {
		srcs = append(srcs, source(o.Sources, i))
	}
	res, err := handshakes(ctx, o, net.Host(srcs...).Listen)
	if err != nil {
		t.Fatalf("handshakes: %v (%+v)", err, res)
	}
	if res.Established != count || res.Failed != 0 || res.Deleted != count || res.NotDeleted != 0 {
		t.Errorf("result %+v, want %d established and deleted", res, count)
	}
	st, err := gw.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.IKESAs) != 0 {
		t.Errorf("gateway keeps %d IKE SAs after the deletes", len(st.IKESAs))
	}
	cancel()
	if err := <-gwDone; err != nil {
		t.Errorf("gateway: %v", err)
	}
}
