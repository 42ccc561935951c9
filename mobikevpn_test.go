package mobikevpn

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/tun/memtun"
)

const testGateway = `
tun: { name: gw0, mtu: 1400 }
secrets:
  - ids: [gw.example.org, alice@example.org]
    psk: "test secret"
connections:
  rw:
    local_addrs: [198.51.100.1]
    remote_addrs: ["%any"]
    local: { auth: psk, id: gw.example.org }
    remote: { auth: psk, id: "%any" }
    children:
      net:
        local_ts: [198.18.0.0/24]
        remote_ts: [dynamic]
`

// The API refuses what it cannot run, names the problem, and says ErrClosed once the
// VPN has stopped.
func TestVPNErrors(t *testing.T) {
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New without a configuration: no error")
	}
	cfg, err := ParseConfig([]byte(testGateway), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseConfig([]byte("tun: { mtu: 10 }\n"), "bad.yaml"); err == nil || !strings.Contains(err.Error(), "bad.yaml") {
		t.Errorf("a bad configuration: %v", err)
	}
	host := NewMemNetwork().Host(netip.MustParseAddr("198.51.100.1"))
	if _, err := New(cfg, Options{Host: host}); err == nil || !strings.Contains(err.Error(), "Options.TUN") {
		t.Errorf("Host without TUN: %v", err)
	}
	if _, err := New(cfg, Options{TUN: memtun.New("x", 1400)}); err == nil || !strings.Contains(err.Error(), "Options.Host") {
		t.Errorf("TUN without Host: %v", err)
	}
	vpn, err := New(cfg, Options{Host: host, TUN: memtun.New("gw0", 1400)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := vpn.Up(ctx, "nowhere"); err == nil || !strings.Contains(err.Error(), `no connection named "nowhere"`) {
		t.Errorf("Up of an unknown connection: %v", err)
	}
	if _, err := vpn.Switch(ctx, Switch{To: netip.MustParseAddr("198.51.100.1")}); err == nil {
		t.Error("a switch without a selection: no error")
	}
	st, err := vpn.Status(ctx)
	if err != nil || len(st.IKESAs) != 0 {
		t.Errorf("status: %v %+v", err, st)
	}
	if err := vpn.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case <-vpn.Done():
	default:
		t.Error("Done is not closed after Close")
	}
	if err := vpn.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
	if _, err := vpn.Status(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Status after Close: %v, want ErrClosed", err)
	}
	// The sockets went with it: the ports are free for a new VPN on the host.
	vpn, err = New(cfg, Options{Host: host, TUN: memtun.New("gw0", 1400)})
	if err != nil {
		t.Fatalf("a second VPN on the host after the first closed: %v", err)
	}
	vpn.Close()
}
