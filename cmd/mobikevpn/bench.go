package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/mobikevpn/mobikevpn/internal/loadgen"
)

// cmdBenchHandshake runs the load generator.
func (a *app) cmdBenchHandshake(c *cli.Context) error {
	if err := a.common(c); err != nil {
		return err
	}
	target := c.String("target")
	if target == "" {
		return usageErr("bench handshake needs --target ADDR[:PORT]")
	}
	ap, err := netip.ParseAddrPort(target)
	if err != nil {
		addr, err2 := netip.ParseAddr(strings.Trim(target, "[]"))
		if err2 != nil {
			return usageErr("bench handshake --target %q: not an address or address:port", target)
		}
		ap = netip.AddrPortFrom(addr, 500)
	}
	src, err := netip.ParsePrefix(c.String("sources"))
	if err != nil {
		return usageErr("bench handshake --sources %q: not a prefix (e.g. 198.19.0.0/16)", c.String("sources"))
	}
	o := loadgen.Options{
		Target: ap, Sources: src,
		Count: c.Int("count"), Concurrency: c.Int("concurrency"),
		PSK: []byte(c.String("psk")), RemoteID: c.String("remote-id"), IDPrefix: c.String("id-prefix"),
		Proposal: c.String("proposal"), ESP: c.String("esp"), VIP: c.Bool("vip"), RMobike: c.Bool("rmobike"), Hold: c.Duration("hold"),
		Flood: c.Bool("flood"), Rate: c.Int("rate"), Duration: c.Duration("duration"), EchoCookies: c.Bool("echo-cookies"),
	}
	o.DPD = c.Duration("dpd")
	if v := c.String("reconnect"); v != "" {
		for _, s := range strings.Split(v, ",") {
			a, err := netip.ParseAddr(strings.TrimSpace(s))
			if err != nil || a.Is4() != ap.Addr().Is4() {
				return usageErr("bench handshake --reconnect %q: not an address of the target's family", s)
			}
			o.Reconnect = append(o.Reconnect, a)
		}
	}
	if !o.Flood && (o.Count <= 0 || len(o.PSK) == 0) {
		return usageErr("bench handshake needs --count N and --psk SECRET (or --flood)")
	}
	if o.Flood && (o.Rate <= 0 || o.Duration <= 0) {
		return usageErr("bench handshake --flood needs --rate R and --duration D")
	}
	res, err := loadgen.Run(c.Context, o)
	if c.Bool("json") {
		b, _ := json.Marshal(res)
		fmt.Fprintln(a.stdout, string(b))
	} else if o.Flood {
		fmt.Fprintf(a.stdout, "sent %d IKE_SA_INIT in %v (%.0f/s): %d answered with an SA, %d COOKIE demands, %d repeated with the cookie\n",
			res.Sent, res.Elapsed.Round(1e6), res.PerSecond, res.Answered, res.Cookies, res.WithCookie)
	} else {
		fmt.Fprintf(a.stdout, "established %d of %d IKE SAs (with a Child SA each) in %v: %.0f handshakes/s; %d failed\n",
			res.Established, o.Count, res.Elapsed.Round(1e6), res.PerSecond, res.Failed)
	}
	if err != nil {
		return failed("bench handshake: %v", err)
	}
	return nil
}
