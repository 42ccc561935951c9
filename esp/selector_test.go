package esp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
)

func ts(proto uint8, start, end string, ports ...uint16) Selector {
	s := Selector{Proto: proto, Start: netip.MustParseAddr(start), End: netip.MustParseAddr(end), StartPort: 0, EndPort: 65535}
	if len(ports) == 2 {
		s.StartPort, s.EndPort = ports[0], ports[1]
	}
	return s
}

func mustSel(t testing.TB, ss ...Selector) []sel {
	t.Helper()
	c, err := compileSelectors(ss)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCompileSelectorsErrors(t *testing.T) {
	for i, s := range []Selector{
		{Start: netip.MustParseAddr("10.0.0.2"), End: netip.MustParseAddr("10.0.0.1"), EndPort: 65535},
		{Start: netip.MustParseAddr("10.0.0.1"), End: netip.MustParseAddr("::1"), EndPort: 65535},
		{Start: netip.MustParseAddr("10.0.0.1"), EndPort: 65535},
		{Start: netip.MustParseAddr("10.0.0.1"), End: netip.MustParseAddr("10.0.0.1"), StartPort: 10, EndPort: 9},
		{Start: netip.MustParseAddr("fe80::1%eth0"), End: netip.MustParseAddr("fe80::2%eth0"), EndPort: 65535},
	} {
		if _, err := compileSelectors([]Selector{s}); err == nil {
			t.Errorf("%d: %s accepted", i, s)
		}
	}
	if _, err := compileSelectors(nil); err == nil {
		t.Error("empty selector list accepted")
	}
	// v4-mapped addresses are unmapped: they select IPv4 packets.
	c := mustSel(t, ts(0, "::ffff:10.0.0.1", "::ffff:10.0.0.9"))
	var f flow
	f.parseIP(ipv4Packet("10.0.0.5", "10.0.0.1", protoUDP, 1, 2, nil), false)
	if !matchSrc(c, &f, false) {
		t.Error("v4-mapped selector does not match IPv4")
	}
}

func TestParseIP(t *testing.T) {
	for i, tc := range []struct {
		pkt   []byte
		ok    bool
		n     int
		proto uint8
		kind  uint8
		sp    uint16
		dp    uint16
	}{
		{ipv4Packet("1.2.3.4", "5.6.7.8", protoUDP, 1000, 53, []byte("abc")), true, 31, protoUDP, portsTwo, 1000, 53},
		{ipv4Packet("1.2.3.4", "5.6.7.8", protoTCP, 40000, 443, nil), true, 40, protoTCP, portsTwo, 40000, 443},
		{ipv4Packet("1.2.3.4", "5.6.7.8", protoICMP, 0x0800, 0, nil), true, 28, protoICMP, portsOne, 0x0800, 0},
		{ipv4Packet("1.2.3.4", "5.6.7.8", 47, 0, 0, []byte("gre")), true, 23, 47, portsNone, 0, 0},
		{ipv6Packet("2001:db8::1", "2001:db8::2", protoUDP, 5, 6, []byte("x")), true, 49, protoUDP, portsTwo, 5, 6},
		{ipv6Packet("2001:db8::1", "2001:db8::2", protoICMPv6, 0x8000, 0, nil), true, 48, protoICMPv6, portsOne, 0x8000, 0},
		{append(ipv4Packet("1.2.3.4", "5.6.7.8", protoUDP, 1, 2, nil), 0, 0, 0), true, 28, protoUDP, portsTwo, 1, 2}, // TFC padding after
		{ipv4Packet("1.2.3.4", "5.6.7.8", protoUDP, 1, 2, nil)[:27], false, 0, 0, 0, 0, 0},                           // shorter than total length
		{[]byte{0x45}, false, 0, 0, 0, 0, 0},
		{[]byte{}, false, 0, 0, 0, 0, 0},
		{make([]byte, 60), false, 0, 0, 0, 0, 0}, // version 0
		{ipv6Packet("::1", "::2", protoUDP, 1, 2, nil)[:39], false, 0, 0, 0, 0, 0},
	} {
		var f flow
		n, ok := f.parseIP(tc.pkt, true)
		if ok != tc.ok || ok && (n != tc.n || f.proto != tc.proto || f.kind != tc.kind || f.sport != tc.sp || f.kind == portsTwo && f.dport != tc.dp) {
			t.Errorf("%d: parseIP = %d %v %+v", i, n, ok, f)
		}
	}

	// A non-initial IPv4 fragment has no ports; the first fragment has them.
	p := ipv4Packet("1.2.3.4", "5.6.7.8", protoUDP, 1, 2, nil)
	binary.BigEndian.PutUint16(p[6:], 0x2000|5) // MF, offset 5
	var f flow
	if _, ok := f.parseIP(p, true); !ok || f.kind != portsNone || f.proto != protoUDP {
		t.Errorf("fragment: %+v", f)
	}
	binary.BigEndian.PutUint16(p[6:], 0x2000) // MF, offset 0
	if _, ok := f.parseIP(p, true); !ok || f.kind != portsTwo {
		t.Errorf("first fragment: %+v", f)
	}

	// IPv6: hop-by-hop, then fragment (offset 0), then UDP; and a later fragment.
	ext := []byte{44, 0, 0, 0, 0, 0, 0, 0, protoUDP, 0, 0, 0, 0, 0, 0, 1}
	udpHdr := []byte{0, 7, 0, 9, 0, 8, 0, 0}
	p6 := ipv6Packet("2001:db8::1", "2001:db8::2", 0, 0, 0, append(ext, udpHdr...))
	if _, ok := f.parseIP(p6, true); !ok || f.proto != protoUDP || f.kind != portsTwo || f.sport != 7 || f.dport != 9 {
		t.Errorf("ipv6 ext headers: %+v", f)
	}
	binary.BigEndian.PutUint16(p6[40+8+2:], 8<<3) // fragment offset 8
	if _, ok := f.parseIP(p6, true); !ok || f.proto != protoUDP || f.kind != portsNone {
		t.Errorf("ipv6 later fragment: %+v", f)
	}
	// A truncated extension header chain stops at that header.
	p6 = ipv6Packet("2001:db8::1", "2001:db8::2", 0, 0, 0, []byte{60, 5, 0, 0})
	if _, ok := f.parseIP(p6, true); !ok || f.proto != 0 || f.kind != portsNone {
		t.Errorf("ipv6 truncated ext: %+v", f)
	}
}

func TestSelectorMatch(t *testing.T) {
	v4 := func(src, dst string, proto uint8, sp, dp uint16) []byte {
		return ipv4Packet(src, dst, proto, sp, dp, nil)
	}
	v6 := func(src, dst string, proto uint8, sp, dp uint16) []byte {
		return ipv6Packet(src, dst, proto, sp, dp, nil)
	}
	for i, tc := range []struct {
		local, remote Selector
		pkt           []byte
		out, in       bool // match as an outbound packet (src local), as an inbound one (src remote)
	}{
		{ts(0, "10.0.0.0", "10.0.0.255"), ts(0, "0.0.0.0", "255.255.255.255"), v4("10.0.0.7", "8.8.8.8", protoUDP, 1, 53), true, false},
		{ts(0, "10.0.0.0", "10.0.0.255"), ts(0, "0.0.0.0", "255.255.255.255"), v4("8.8.8.8", "10.0.0.7", protoUDP, 53, 1), false, true},
		{ts(0, "10.0.0.0", "10.0.0.255"), ts(0, "0.0.0.0", "255.255.255.255"), v4("10.0.1.7", "8.8.8.8", protoUDP, 1, 53), false, false},
		{ts(0, "10.0.0.0", "10.0.0.255"), ts(0, "0.0.0.0", "255.255.255.255"), v6("::1", "::2", protoUDP, 1, 53), false, false},
		{ts(0, "fd00::", "fd00::ffff"), ts(0, "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), v6("fd00::5", "2001:db8::1", protoTCP, 1, 2), true, false},
		// Protocol and ports.
		{ts(protoUDP, "10.0.0.1", "10.0.0.1", 5000, 5010), ts(protoUDP, "10.0.0.2", "10.0.0.2", 53, 53), v4("10.0.0.1", "10.0.0.2", protoUDP, 5005, 53), true, false},
		{ts(protoUDP, "10.0.0.1", "10.0.0.1", 5000, 5010), ts(protoUDP, "10.0.0.2", "10.0.0.2", 53, 53), v4("10.0.0.2", "10.0.0.1", protoUDP, 53, 5010), false, true},
		{ts(protoUDP, "10.0.0.1", "10.0.0.1", 5000, 5010), ts(protoUDP, "10.0.0.2", "10.0.0.2", 53, 53), v4("10.0.0.1", "10.0.0.2", protoUDP, 5011, 53), false, false},
		{ts(protoUDP, "10.0.0.1", "10.0.0.1", 5000, 5010), ts(protoUDP, "10.0.0.2", "10.0.0.2", 53, 53), v4("10.0.0.1", "10.0.0.2", protoTCP, 5005, 53), false, false},
		// ICMP: the type/code is checked against the sender's selector only.
		{ts(protoICMP, "10.0.0.1", "10.0.0.1", 0x0800, 0x0800), ts(protoICMP, "10.0.0.2", "10.0.0.2", 65535, 0), v4("10.0.0.1", "10.0.0.2", protoICMP, 0x0800, 0), true, false},
		{ts(protoICMP, "10.0.0.1", "10.0.0.1", 0x0800, 0x0800), ts(protoICMP, "10.0.0.2", "10.0.0.2", 65535, 0), v4("10.0.0.2", "10.0.0.1", protoICMP, 0x0000, 0), false, false},
		{ts(protoICMP, "10.0.0.1", "10.0.0.1", 65535, 0), ts(protoICMP, "10.0.0.2", "10.0.0.2", 0x0000, 0x00ff), v4("10.0.0.2", "10.0.0.1", protoICMP, 0x0000, 0), false, true},
		{ts(protoICMP, "10.0.0.1", "10.0.0.1", 0x0800, 0x0800), ts(0, "10.0.0.2", "10.0.0.2"), v4("10.0.0.1", "10.0.0.2", protoICMP, 0x0300, 0), false, false},
		// OPAQUE matches only packets without ports.
		{ts(0, "10.0.0.1", "10.0.0.1", 65535, 0), ts(0, "10.0.0.2", "10.0.0.2"), v4("10.0.0.1", "10.0.0.2", 47, 0, 0), true, false},
		{ts(0, "10.0.0.1", "10.0.0.1", 65535, 0), ts(0, "10.0.0.2", "10.0.0.2"), v4("10.0.0.1", "10.0.0.2", protoUDP, 1, 2), false, false},
		// A port range never matches a protocol without ports.
		{ts(0, "10.0.0.1", "10.0.0.1", 1, 100), ts(0, "10.0.0.2", "10.0.0.2"), v4("10.0.0.1", "10.0.0.2", 47, 0, 0), false, false},
	} {
		l, r := mustSel(t, tc.local), mustSel(t, tc.remote)
		l4 := needsL4(l) || needsL4(r)
		var f flow
		if _, ok := f.parseIP(tc.pkt, l4); !ok {
			t.Fatalf("%d: parse", i)
		}
		out := matchSrc(l, &f, l4) && matchDst(r, &f, l4)
		in := matchSrc(r, &f, l4) && matchDst(l, &f, l4)
		if out != tc.out || in != tc.in {
			t.Errorf("%d: local %s remote %s: out %v in %v, want %v %v", i, tc.local, tc.remote, out, in, tc.out, tc.in)
		}
	}
}

// TestOutboundLookup checks the lookup order (host selectors by destination first,
// then installation order) and scales to many host SAs.
func TestOutboundLookup(t *testing.T) {
	any4 := ts(0, "0.0.0.0", "255.255.255.255")
	mk := func(child uint64, local, remote []Selector) *outSA {
		sa := &outSA{child: child, local: mustSel(t, local...), remote: mustSel(t, remote...)}
		sa.l4 = needsL4(sa.local) || needsL4(sa.remote)
		return sa
	}
	var all []*outSA
	// A gateway: one SA per client virtual IP 10.8.x.y, local side anything.
	for i := range 5000 {
		a := fmt.Sprintf("10.8.%d.%d", i/250, i%250+1)
		all = append(all, mk(uint64(i+1), []Selector{any4}, []Selector{ts(0, a, a)}))
	}
	all = append(all,
		mk(9001, []Selector{any4}, []Selector{ts(0, "10.9.0.0", "10.9.255.255")}),
		mk(9002, []Selector{any4}, []Selector{ts(0, "10.0.0.0", "10.255.255.255")}),
		mk(9003, []Selector{ts(protoTCP, "0.0.0.0", "255.255.255.255", 22, 22)}, []Selector{ts(0, "10.10.0.0", "10.10.0.255")}),
	)
	tb := buildOutTable(all)
	if len(tb.scan) != 3 || tb.nHosts != 5000 || !tb.l4 {
		t.Fatalf("table: %d scanned, %d hosts, l4 %v", len(tb.scan), tb.nHosts, tb.l4)
	}
	for _, tc := range []struct {
		pkt  []byte
		want uint64
	}{
		{ipv4Packet("192.168.1.1", "10.8.0.1", protoUDP, 1, 2, nil), 1},
		{ipv4Packet("192.168.1.1", "10.8.19.250", protoUDP, 1, 2, nil), 5000},
		{ipv4Packet("192.168.1.1", "10.8.20.1", protoUDP, 1, 2, nil), 9002},   // no such client: the /8
		{ipv4Packet("192.168.1.1", "10.9.3.3", protoUDP, 1, 2, nil), 9001},    // first in order
		{ipv4Packet("192.168.1.1", "10.10.0.9", protoTCP, 22, 80, nil), 9002}, // 9003 matches too, but 10/8 was installed first
		{ipv4Packet("192.168.1.1", "11.0.0.1", protoUDP, 1, 2, nil), 0},
		{ipv6Packet("::1", "::2", protoUDP, 1, 2, nil), 0},
	} {
		var f flow
		f.parseIP(tc.pkt, tb.l4)
		got := uint64(0)
		if sa := tb.lookup(&f); sa != nil {
			got = sa.child
		}
		if got != tc.want {
			t.Errorf("%x: child %d, want %d", tc.pkt[12:20], got, tc.want)
		}
	}
}
