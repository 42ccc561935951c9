// Package metrics serves the daemon's counters and gauges to Prometheus
// (metrics: { listen: ADDR }, the text format at /metrics).
package metrics
