package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// httpgetMain prints the body of GET URL (MOBIKEVPN_HELPER=httpget URL), to scrape a
// daemon's metrics inside its namespace.
func httpgetMain(args []string) int {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, resp.Status)
		return 1
	}
	io.Copy(os.Stdout, resp.Body)
	return 0
}

// scrapeMetrics fetches url from inside ns.
func (l *lab) scrapeMetrics(ns, url string) string {
	l.t.Helper()
	self, _ := os.Executable()
	cmd := exec.Command("ip", "netns", "exec", ns, self, url)
	cmd.Env = append(os.Environ(), "MOBIKEVPN_HELPER=httpget")
	out, err := cmd.Output()
	if err != nil {
		l.t.Fatalf("scraping %s in %s: %v", url, ns, err)
	}
	return string(out)
}

// TestMetricsScrape: a gateway with metrics: { listen } serves Prometheus's text
// format; after a client connected and pinged through, the scrape shows the SA, the
// handshake and the traffic.
func TestMetricsScrape(t *testing.T) {
	l := newTunnelLab(t)
	l.gwCfg, l.clCfg = l.dir+"/gw.yaml", l.dir+"/cl.yaml"
	writeFile(t, l.gwCfg, "metrics: { listen: 127.0.0.1:9520 }\n"+l.gatewayConfig(""))
	writeFile(t, l.clCfg, l.clientConfig("198.51.100.1", ""))
	gw, cl := l.runDaemons()
	l.up(cl, gw)
	if out, err := exec.Command("ip", "netns", "exec", l.cl, "ping", "-c", "5", "-i", "0.2", "-W", "2", "198.18.0.1").CombinedOutput(); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	scrape := l.scrapeMetrics(l.gw, "http://127.0.0.1:9520/metrics")
	for _, want := range []string{
		"mobikevpn_up 1",
		`mobikevpn_ike_sas{conn="rw",state="established"} 1`,
		"mobikevpn_child_sas 1",
		"mobikevpn_handshakes_established_total 1",
		"mobikevpn_handshakes_failed_total 0",
		`mobikevpn_drops_total{reason="esp_replay"} 0`,
	} {
		if !strings.Contains(scrape, want) {
			t.Errorf("the scrape lacks %q", want)
		}
	}
	var ours []string
	for _, ln := range strings.Split(scrape, "\n") {
		if strings.HasPrefix(ln, "mobikevpn_") && !strings.Contains(ln, "drops_total") {
			ours = append(ours, ln)
		}
	}
	for _, ln := range ours {
		if strings.HasPrefix(ln, `mobikevpn_esp_packets_total{direction="in"}`) && strings.HasSuffix(ln, " 0") {
			t.Errorf("no ESP packets counted in: %s", ln)
		}
	}
	t.Logf("the gateway's /metrics (ours, drops left out):\n%s", strings.Join(ours, "\n"))
}
