package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Snapshot is what the daemon reports at each scrape. Labels stay bounded: the
// connection names of the configuration, IKE SA states, drop and failure reasons
// (fixed sets or, for failures, the first words of a reason, capped), never a peer's
// address or identity.
type Snapshot struct {
	// IKESAs counts the IKE SAs by connection and state.
	IKESAs   map[ConnState]int
	HalfOpen int
	ChildSAs int
	// Bytes and packets through ESP since the start, by direction ("in", "out").
	Bytes, Packets map[string]uint64
	// Drops are the drop counters by reason (IKE and ESP, as in `status`).
	Drops map[string]uint64
	// Events counts what happened since the start: handshakes, failures, rekeys,
	// moves, switches, cookies (see eventHelp for the names).
	Events map[string]uint64
	// Failures are the failed handshakes by reason.
	Failures map[string]uint64
	// Cluster is this node's part in its gateway cluster; nil without one.
	Cluster *Cluster
}

// ConnState is a label pair of the IKE SA gauge.
type ConnState struct{ Conn, State string }

// Cluster is a node's view of its cluster.
type Cluster struct {
	Node       string
	NodesAlive int
	Owned      int               // IKE SAs this node owns
	Moves      map[string]uint64 // SAs moved: "out" (handed to another node), "in" (taken), "failover" (taken from a dead node)
}

// eventHelp names the event counters and says what they count.
var eventHelp = map[string]string{
	"handshakes_established": "IKE SAs established (with their first Child SA)",
	"handshakes_failed":      "IKE SA establishments that failed (by reason in mobikevpn_handshake_failures_total)",
	"ike_sas_deleted":        "established IKE SAs that went away",
	"ike_rekeys":             "IKE SAs replaced by a rekey",
	"child_rekeys":           "Child SAs rekeyed",
	"mobike_moves":           "MOBIKE moves of an SA to other addresses",
	"mobike_moves_failed":    "moves that did not work: the SA stayed on its path",
	"switches_sent":          "SWITCH_TO_IP_ADDRESS requests sent (R-MOBIKE, as gateway)",
	"switches_completed":     "peers that moved where our switch request asked",
	"switches_refused":       "switch requests of a gateway we refused (as client)",
	"cookies_sent":           "IKE_SA_INIT answered with a COOKIE demand",
	"liveness_checks":        "liveness checks (DPD) sent",
}

// collector turns a Snapshot into metrics at each scrape.
type collector struct {
	gather  func(ctx context.Context) (*Snapshot, error)
	timeout time.Duration
	log     *slog.Logger

	ikeSAs, halfOpen, childSAs, up *prometheus.Desc
	bytes, packets, drops, fails   *prometheus.Desc
	events                         map[string]*prometheus.Desc
	owned, alive, moves            *prometheus.Desc
}

func newCollector(gather func(context.Context) (*Snapshot, error), log *slog.Logger) *collector {
	c := &collector{
		gather: gather, timeout: 5 * time.Second, log: log,
		up:       prometheus.NewDesc("mobikevpn_up", "1 when the daemon answered this scrape", nil, nil),
		ikeSAs:   prometheus.NewDesc("mobikevpn_ike_sas", "IKE SAs by connection and state (half-open ones apart)", []string{"conn", "state"}, nil),
		halfOpen: prometheus.NewDesc("mobikevpn_ike_sas_half_open", "half-open IKE SAs (responder, before IKE_AUTH)", nil, nil),
		childSAs: prometheus.NewDesc("mobikevpn_child_sas", "Child SAs", nil, nil),
		bytes:    prometheus.NewDesc("mobikevpn_esp_bytes_total", "ESP payload bytes by direction", []string{"direction"}, nil),
		packets:  prometheus.NewDesc("mobikevpn_esp_packets_total", "ESP packets by direction", []string{"direction"}, nil),
		drops:    prometheus.NewDesc("mobikevpn_drops_total", "packets and messages dropped, by reason", []string{"reason"}, nil),
		fails:    prometheus.NewDesc("mobikevpn_handshake_failures_total", "failed IKE SA establishments by reason", []string{"reason"}, nil),
		owned:    prometheus.NewDesc("mobikevpn_cluster_owned_ike_sas", "IKE SAs this cluster node owns", []string{"node"}, nil),
		alive:    prometheus.NewDesc("mobikevpn_cluster_nodes_alive", "live nodes of the cluster, as this node sees them", []string{"node"}, nil),
		moves:    prometheus.NewDesc("mobikevpn_cluster_moves_total", "SAs moved between nodes: out, in, failover", []string{"node", "kind"}, nil),
		events:   map[string]*prometheus.Desc{},
	}
	for name, help := range eventHelp {
		c.events[name] = prometheus.NewDesc("mobikevpn_"+name+"_total", help, nil, nil)
	}
	return c
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.ikeSAs, c.halfOpen, c.childSAs, c.bytes, c.packets, c.drops, c.fails, c.owned, c.alive, c.moves} {
		ch <- d
	}
	for _, d := range c.events {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	s, err := c.gather(ctx)
	if err != nil {
		c.log.Debug("metrics: the daemon did not answer", "err", err)
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	for k, n := range s.IKESAs {
		ch <- prometheus.MustNewConstMetric(c.ikeSAs, prometheus.GaugeValue, float64(n), k.Conn, k.State)
	}
	ch <- prometheus.MustNewConstMetric(c.halfOpen, prometheus.GaugeValue, float64(s.HalfOpen))
	ch <- prometheus.MustNewConstMetric(c.childSAs, prometheus.GaugeValue, float64(s.ChildSAs))
	counters := func(d *prometheus.Desc, m map[string]uint64) {
		for _, k := range sortedKeys(m) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(m[k]), k)
		}
	}
	counters(c.bytes, s.Bytes)
	counters(c.packets, s.Packets)
	counters(c.drops, s.Drops)
	counters(c.fails, s.Failures)
	for name, d := range c.events {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(s.Events[name]))
	}
	if cl := s.Cluster; cl != nil {
		ch <- prometheus.MustNewConstMetric(c.owned, prometheus.GaugeValue, float64(cl.Owned), cl.Node)
		ch <- prometheus.MustNewConstMetric(c.alive, prometheus.GaugeValue, float64(cl.NodesAlive), cl.Node)
		for _, k := range sortedKeys(cl.Moves) {
			ch <- prometheus.MustNewConstMetric(c.moves, prometheus.CounterValue, float64(cl.Moves[k]), cl.Node, k)
		}
	}
}

func sortedKeys(m map[string]uint64) []string { return slices.Sorted(maps.Keys(m)) }

// Handler is the /metrics handler for gather: the daemon's metrics plus the Go
// runtime's and the process's.
func Handler(gather func(context.Context) (*Snapshot, error), log *slog.Logger) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(gather, log), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: nil}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "mobikevpn: metrics at /metrics")
	})
	return mux
}

// Serve serves Handler on listen until ctx ends; ready is closed once it listens.
func Serve(ctx context.Context, listen string, gather func(context.Context) (*Snapshot, error), log *slog.Logger, ready chan<- struct{}) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	srv := &http.Server{Handler: Handler(gather, log), ReadHeaderTimeout: 10 * time.Second}
	close(ready)
	log.Info("metrics served", "listen", ln.Addr().String(), "path", "/metrics")
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		<-done
		return nil
	case err := <-done:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("metrics: %w", err)
	}
}
