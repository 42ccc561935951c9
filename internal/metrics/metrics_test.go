package metrics

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	return string(b)
}

// TestHandler: a snapshot becomes the documented metrics, in the text format; a
// daemon that does not answer gives mobikevpn_up 0 and nothing else of ours.
func TestHandler(t *testing.T) {
	snap := &Snapshot{
		IKESAs:   map[ConnState]int{{"rw", "established"}: 3, {"rw", "connecting"}: 1},
		HalfOpen: 2, ChildSAs: 4,
		Bytes:    map[string]uint64{"in": 1000, "out": 2000},
		Packets:  map[string]uint64{"in": 10, "out": 20},
		Drops:    map[string]uint64{"esp_replay": 5},
		Events:   map[string]uint64{"handshakes_established": 7, "mobike_moves": 2},
		Failures: map[string]uint64{"authentication_failed": 1},
		Cluster:  &Cluster{Node: "gw-a", NodesAlive: 3, Owned: 12, Moves: map[string]uint64{"out": 4}},
	}
	out := scrape(t, Handler(func(context.Context) (*Snapshot, error) { return snap, nil }, slog.New(slog.DiscardHandler)))
	for _, want := range []string{
		"mobikevpn_up 1",
		`mobikevpn_ike_sas{conn="rw",state="established"} 3`,
		`mobikevpn_ike_sas{conn="rw",state="connecting"} 1`,
		"mobikevpn_ike_sas_half_open 2",
		"mobikevpn_child_sas 4",
		`mobikevpn_esp_bytes_total{direction="in"} 1000`,
		`mobikevpn_esp_packets_total{direction="out"} 20`,
		`mobikevpn_drops_total{reason="esp_replay"} 5`,
		"mobikevpn_handshakes_established_total 7",
		"mobikevpn_mobike_moves_total 2",
		"mobikevpn_switches_sent_total 0",
		`mobikevpn_handshake_failures_total{reason="authentication_failed"} 1`,
		`mobikevpn_cluster_owned_ike_sas{node="gw-a"} 12`,
		`mobikevpn_cluster_nodes_alive{node="gw-a"} 3`,
		`mobikevpn_cluster_moves_total{kind="out",node="gw-a"} 4`,
		"# TYPE mobikevpn_esp_bytes_total counter",
		"go_goroutines",
	} {
		if !strings.Contains(out, want+"\n") && !strings.Contains(out, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	down := scrape(t, Handler(func(context.Context) (*Snapshot, error) { return nil, errors.New("busy") }, slog.New(slog.DiscardHandler)))
	if !strings.Contains(down, "mobikevpn_up 0") || strings.Contains(down, "mobikevpn_ike_sas") {
		t.Errorf("scrape of a daemon that did not answer:\n%s", down)
	}
}

// TestServe: Serve listens, answers, and stops with its context.
func TestServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, "127.0.0.1:0", func(context.Context) (*Snapshot, error) { return &Snapshot{}, nil }, slog.New(slog.DiscardHandler), ready)
	}()
	<-ready
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := Serve(context.Background(), "256.0.0.1:1", nil, slog.New(slog.DiscardHandler), make(chan struct{})); err == nil || !strings.Contains(err.Error(), "metrics:") {
		t.Errorf("a bad address: %v", err)
	}
}
