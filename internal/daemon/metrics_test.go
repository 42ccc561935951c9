package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/clock/clocktest"
	"github.com/mobikevpn/mobikevpn/ike"
	"github.com/mobikevpn/mobikevpn/internal/config"
	"github.com/mobikevpn/mobikevpn/internal/metrics"
	"github.com/mobikevpn/mobikevpn/udp/memnet"
)

func TestFailureReason(t *testing.T) {
	for in, want := range map[string]string{
		"AUTHENTICATION_FAILED":                 "authentication_failed",
		"timeout: no response from peer":        "timeout",
		"NO_PROPOSAL_CHOSEN (the peer refused)": "no_proposal_chosen",
		"":                                      "unknown",
		"weird \x00 ünïcode-thing: x":           "weird__ncode_thing",
		"a very long reason with many many words that goes on and on": "a_very_long_reason_with_many_many_words_that_goe",
	} {
		if got := failureReason(in); got != want {
			t.Errorf("failureReason(%q) = %q, want %q", in, got, want)
		}
	}
	var s eventStats
	for i := range 100 {
		s.count(ikeFailed(string(rune('A'+i%26)) + string(rune('a'+i/26)) + ": x"))
	}
	if len(s.failures) > maxFailureReasons+1 || s.failures["other"] == 0 || s.events["handshakes_failed"] != 100 {
		t.Errorf("failure reasons not capped: %d reasons, other %d", len(s.failures), s.failures["other"])
	}
}

// TestMetricsInProcess: the snapshot a scrape shows for a gateway and a client after
// a handshake and some traffic: SAs by state, events, ESP totals.
func TestMetricsInProcess(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := clocktest.New(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC))
	net := memnet.New()
	gwCfg, err := config.Parse([]byte(inprocessGateway), "in-process.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var gather func(context.Context) (*metrics.Snapshot, error)
	gw := startNodeWith(t, ctx, gwCfg, net.Host(netip.MustParseAddr("198.51.100.1")), clk, Options{}, func(d *Deps) {
		d.Metrics = func(ctx context.Context, g func(context.Context) (*metrics.Snapshot, error), ready chan<- struct{}) error {
			gather = g
			close(ready)
			<-ctx.Done()
			return nil
		}
	})
	cl := startNode(t, ctx, inprocessClient, net.Host(netip.MustParseAddr("192.0.2.10")), clk)
	var vip netip.Addr
	waitFor(t, "established", func() bool {
		st := cl.status(t)
		if len(st) != 1 || len(st[0].ChildSAs) != 1 || len(st[0].VirtualIPs) != 1 {
			return false
		}
		vip = netip.MustParseAddr(st[0].VirtualIPs[0])
		return true
	})
	through(t, cl, gw, vip, netip.MustParseAddr("198.18.0.1"), 1)
	through(t, gw, cl, netip.MustParseAddr("198.18.0.1"), vip, 2)
	s, err := gather(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.IKESAs[metrics.ConnState{Conn: "rw", State: "established"}]; n != 1 || s.ChildSAs != 1 {
		t.Errorf("IKE SAs %v, Child SAs %d", s.IKESAs, s.ChildSAs)
	}
	if s.Events["handshakes_established"] != 1 || s.Events["handshakes_failed"] != 0 {
		t.Errorf("events %v", s.Events)
	}
	if s.Packets["in"] != 1 || s.Packets["out"] != 1 || s.Bytes["in"] == 0 {
		t.Errorf("ESP totals: packets %v bytes %v", s.Packets, s.Bytes)
	}
	if _, ok := s.Drops["esp_replay"]; !ok || s.Cluster != nil {
		t.Errorf("drops %v cluster %v", s.Drops, s.Cluster)
	}
}

func ikeFailed(reason string) ike.Event { return ike.Event{Kind: ike.EventFailed, Reason: reason} }

// TestLogEvent: one structured line per SA state change, with the SA's id, connection,
// peer identity and address and the reason.
func TestLogEvent(t *testing.T) {
	var buf bytes.Buffer
	d := &daemon{log: slog.New(slog.NewJSONHandler(&buf, nil))}
	d.logEvent(ike.Event{IKESA: 7, Conn: "rw", Kind: ike.EventDeleted, Reason: "deleted by peer", PeerID: "alice@example.org",
		Peer: netip.MustParseAddrPort("192.0.2.10:4500")})
	d.logEvent(ike.Event{IKESA: 8, Conn: "rw", Kind: ike.EventVIPWanted})
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%q: %v", buf.String(), err)
	}
	want := map[string]any{"msg": "sa event", "event": "deleted", "sa": float64(7), "conn": "rw",
		"peer_id": "alice@example.org", "peer": "192.0.2.10:4500", "reason": "deleted by peer"}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("%s = %v, want %v (%s)", k, rec[k], v, buf.String())
		}
	}
}
