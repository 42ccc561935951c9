package daemon

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/clock/clocktest"
	"github.com/mobikevpn/mobikevpn/internal/config"
	"github.com/mobikevpn/mobikevpn/udp/memnet"
)

// TestReloadReport: `mobikevpn reload` applies what it can and says so: a connection
// added with start_action: start is started, a changed MTU needs a restart, an
// unchanged file reports no changes, and an invalid file is refused with the old
// configuration left in force.
func TestReloadReport(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := clocktest.New(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC))
	net := memnet.New()
	startNode(t, ctx, inprocessGateway, net.Host(netip.MustParseAddr("198.51.100.1")), clk)
	path := filepath.Join(t.TempDir(), "client.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := strings.Replace(inprocessClient, "start_action: start", "start_action: none", 1)
	write(base)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	cl := startNodeWith(t, ctx, cfg, net.Host(netip.MustParseAddr("192.0.2.10")), clk, Options{})
	msg, err := cl.d.Reload(ctx)
	if err != nil || !strings.HasSuffix(msg, ": no changes") {
		t.Fatalf("reload of the same file: %q %v", msg, err)
	}
	// A second connection that starts by itself, and another MTU.
	second := strings.Replace(strings.SplitN(base, "connections:\n", 2)[1], "  home:", "  second:", 1)
	second = strings.Replace(second, "start_action: none", "start_action: start", 1)
	changed := strings.Replace(base, "mtu: 1400", "mtu: 1300", 1) + second
	write(changed)
	msg, err = cl.d.Reload(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"connections added second", "started (start_action: start): second", "needs a restart to take effect (the old values stay in force): tun"} {
		if !strings.Contains(msg, want) {
			t.Errorf("report lacks %q:\n%s", want, msg)
		}
	}
	waitFor(t, "the new connection up", func() bool {
		st := cl.status(t)
		return len(st) == 1 && st[0].Name == "second" && len(st[0].ChildSAs) == 1
	})
	write("connections: [\n")
	if msg, err := cl.d.Reload(ctx); err == nil || !strings.Contains(err.Error(), "reload failed; the running configuration stays") {
		t.Fatalf("reload of a broken file: %q %v", msg, err)
	}
	// The running configuration is still the changed one: reloading it is no change.
	write(changed)
	if msg, err := cl.d.Reload(ctx); err != nil || !strings.HasSuffix(msg, ": no changes") {
		t.Errorf("after the broken file, reloading the good one: %q %v", msg, err)
	}
}
