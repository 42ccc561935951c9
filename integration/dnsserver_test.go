package integration

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
)

// dnsserverMain is a tiny DNS server for tests (MOBIKEVPN_HELPER=dnsserver LISTEN
// NAME ADDR): it answers A (or AAAA) queries for NAME with ADDR, anything else with
// NXDOMAIN, and prints "query NAME TYPE from SOURCE" for every query.
func dnsserverMain(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: dnsserver LISTEN NAME ADDR")
		return 2
	}
	pc, err := net.ListenPacket("udp", args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	name := dnsmessage.MustNewName(strings.TrimSuffix(args[1], ".") + ".")
	addr := netip.MustParseAddr(args[2])
	fmt.Println("listening")
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return 1
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		fmt.Printf("query %s %s from %s\n", q.Name, q.Type, from)
		resp := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired})
		resp.EnableCompression()
		found := q.Name.String() == name.String() && ((q.Type == dnsmessage.TypeA && addr.Is4()) || (q.Type == dnsmessage.TypeAAAA && addr.Is6()))
		if !found && q.Name.String() != name.String() {
			resp = dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RCode: dnsmessage.RCodeNameError})
		}
		if resp.StartQuestions() != nil || resp.Question(q) != nil || resp.StartAnswers() != nil {
			continue
		}
		if found {
			rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
			if addr.Is4() {
				resp.AResource(rh, dnsmessage.AResource{A: addr.As4()})
			} else {
				resp.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: addr.As16()})
			}
		}
		out, err := resp.Finish()
		if err != nil {
			continue
		}
		pc.WriteTo(out, from)
	}
}
