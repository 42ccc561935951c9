package loadgen

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/wire"

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
	runInMemory(t, gatewayYAML, 24, 5, 200*time.Millisecond)
}

// TestDeletesDuringRekeys deletes while the gateway rekeys IKE SAs and Child SAs and
// checks liveness all the time (TestTimersAtScale's timers, shrunk): Deletes cross
// IKE SA rekeys, Child SA rekeys and liveness checks, and an SA the gateway rekeyed is
// deleted as its successor. Every SA goes, on both ends.
func TestDeletesDuringRekeys(t *testing.T) {
	yaml := strings.Replace(gatewayYAML, "remote: { auth: psk }", "remote: { auth: psk }\n    dpd_delay: 100ms\n    rekey_time: 150ms", 1)
	yaml = strings.Replace(yaml, "esp_proposals: [aes128gcm16]", "esp_proposals: [aes128gcm16]\n        rekey_time: 120ms", 1)
	for i := range 3 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			runInMemory(t, yaml, 40, 3, 400*time.Millisecond)
		})
	}
}

// TestDeleteRetransmitted loses the first four copies of one Delete: it gets through
// with the fourth retransmission, 16.25 s after the first copy, and the generator
// must wait for it (it gave such Deletes up after 10 s without progress, leaving the
// gateway with their SAs).
func TestDeleteRetransmitted(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for retransmissions on the system clock")
	}
	var mu sync.Mutex
	var victim uint64
	lost := 0
	runInMemory(t, gatewayYAML, 6, 3, 100*time.Millisecond, func(p *memnet.Packet) []memnet.Packet {
		data := p.Data
		if p.Dst.Port() == 4500 && len(data) >= 4 {
			data = data[4:] // the non-ESP marker
		}
		h, err := wire.ParseHeader(data)
		if err != nil || h.Exchange != wire.INFORMATIONAL || h.IsResponse() || !h.IsInitiator() || p.Dst.Port() != 4500 && p.Dst.Port() != 500 {
			return []memnet.Packet{*p}
		}
		mu.Lock()
		defer mu.Unlock()
		if victim == 0 {
			victim = h.SPIi
		}
		if h.SPIi == victim && lost < 4 {
			lost++
			return nil
		}
		return []memnet.Packet{*p}
	})
	if lost != 4 {
		t.Errorf("%d copies of the Delete lost, want 4", lost)
	}
}

func runInMemory(t *testing.T, yaml string, count, concurrency int, hold time.Duration, filter ...memnet.Filter) {
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
	cfg, err := config.Parse([]byte(yaml), "gw.yaml")
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
		Concurrency: concurrency,
		PSK:         []byte("bench secret"),
		RemoteID:    "gw.example.org",
		Hold:        hold,
		Timeout:     time.Minute,
	}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	var srcs []netip.Addr
	for i := range count {
		srcs = append(srcs, source(o.Sources, i))
	}
	if len(filter) > 0 {
		// Only the deletes are filtered: the generator's first Delete goes out after
		// the hold, and the client sends no other INFORMATIONAL request.
		net.SetFilter(filter[0])
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
	var states []string
	for _, sa := range st.IKESAs {
		states = append(states, sa.State)
	}
	if len(st.IKESAs) != 0 {
		t.Errorf("gateway keeps %d IKE SAs after the deletes: %v", len(st.IKESAs), states)
	}
	cancel()
	if err := <-gwDone; err != nil {
		t.Errorf("gateway: %v", err)
	}
}
