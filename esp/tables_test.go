package esp

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"testing"

	"github.com/mobikevpn/mobikevpn/tun/memtun"
	"github.com/mobikevpn/mobikevpn/udp/memnet"
)

// naiveLookup is the documented outbound lookup over the SAs in installation order:
// the first matching SA with a host selector for the destination, else the first
// matching SA with a range.
func naiveLookup(all []*outSA, f *flow) *outSA {
	for _, sa := range all {
		for _, s := range sa.remote {
			if s.host && s.lo == f.d && sa.match(f) {
				return sa
			}
		}
	}
	for _, sa := range all {
		for _, s := range sa.remote {
			if !s.host && sa.match(f) {
				return sa
			}
		}
	}
	return nil
}

// Installing, replacing (with other selectors) and removing SAs one at a time gives
// the same lookups, in the same order, as the whole list of SAs would; the inbound
// table finds exactly the SAs installed.
func TestTablesIncremental(t *testing.T) {
	h := memnet.New().Host(aV4)
	cs, err := h.Listen(nattPort)
	must(t, err)
	d, err := New(Config{TUN: memtun.New("test", testMTU), Conns: cs})
	must(t, err)
	rng := rand.New(rand.NewPCG(7, 7))
	addr := func() string { return fmt.Sprintf("10.0.%d.%d", rng.IntN(4), rng.IntN(8)) }
	remoteTS := func() []Selector {
		var out []Selector
		for range 1 + rng.IntN(3) {
			switch rng.IntN(4) {
			case 0:
				out = append(out, ts(0, "10.0.0.0", fmt.Sprintf("10.0.%d.255", rng.IntN(4))))
			case 1:
				a := addr()
				out = append(out, ts(protoUDP, a, a, 53, 53))
			default:
				a := addr()
				out = append(out, ts(0, a, a))
			}
		}
		return out
	}
	var all []uint64 // children in installation order
	remotes := map[uint64][]Selector{}
	inSPIs := map[uint32]bool{}
	keys := testSuites[0].keys
	var flows []flow
	for i := range 64 {
		var f flow
		f.parseIP(ipv4Packet("10.1.0.1", fmt.Sprintf("10.0.%d.%d", i/8%4, i%8), protoUDP, 53, 53, nil), true)
		flows = append(flows, f)
		f.parseIP(ipv4Packet("10.1.0.1", fmt.Sprintf("10.0.%d.%d", i/8%4, i%8), protoTCP, 80, 80, nil), true)
		flows = append(flows, f)
	}
	for step := range 3000 {
		child := uint64(1 + rng.IntN(40))
		switch op := rng.IntN(5); {
		case op < 3: // install or replace
			r := remoteTS()
			must(t, d.InstallOutbound(child, SAConfig{SPI: 0x1000 + uint32(step), Keys: keys, LocalTS: []Selector{ts(0, "0.0.0.0", "255.255.255.255")}, RemoteTS: r},
				ap(aV4, nattPort), ap(bV4, nattPort)))
			if _, ok := remotes[child]; !ok {
				all = append(all, child)
			}
			remotes[child] = r
		case op == 3:
			d.RemoveOutbound(child)
			if _, ok := remotes[child]; ok {
				all = slices.DeleteFunc(all, func(c uint64) bool { return c == child })
				delete(remotes, child)
			}
		default:
			spi := 0x100 + uint32(rng.IntN(64))
			if inSPIs[spi] {
				d.RemoveInbound(spi)
				delete(inSPIs, spi)
			} else {
				must(t, d.AddInbound(SAConfig{SPI: spi, Keys: keys, LocalTS: clientTS, RemoteTS: netTS}))
				inSPIs[spi] = true
			}
		}
		tb := d.out.Load()
		var list []*outSA
		for _, c := range all {
			sa := tb.child(c)
			if sa == nil {
				t.Fatalf("step %d: child %d not in the table", step, c)
			}
			list = append(list, sa)
		}
		if tb.nSAs != len(all) {
			t.Fatalf("step %d: %d SAs in the table, want %d", step, tb.nSAs, len(all))
		}
		for i := range flows {
			if got, want := tb.lookup(&flows[i]), naiveLookup(list, &flows[i]); got != want {
				t.Fatalf("step %d: flow to %v proto %d: lookup %p, want %p", step, flows[i].d, flows[i].proto, got, want)
			}
		}
		if step%100 == 0 {
			n := 0
			tb.each(func(*outSA) { n++ })
			if n != len(all) {
				t.Fatalf("step %d: each visits %d SAs, want %d", step, n, len(all))
			}
			for spi := uint32(0x100); spi < 0x140; spi++ {
				if sa := d.in.Load().get(spi); (sa != nil) != inSPIs[spi] || (sa != nil && sa.spi != spi) {
					t.Fatalf("step %d: inbound SPI %x: %v, want %v", step, spi, sa != nil, inSPIs[spi])
				}
			}
		}
	}
}

// A change of the tables costs the same with 20,000 SAs as with a few: it copies one
// shard, not the table.
func TestTablesChangeCostDoesNotGrow(t *testing.T) {
	h := memnet.New().Host(aV4)
	cs, err := h.Listen(nattPort)
	must(t, err)
	d, err := New(Config{TUN: memtun.New("test", testMTU), Conns: cs})
	must(t, err)
	keys := testSuites[0].keys
	local := []Selector{ts(0, "198.18.0.0", "198.18.0.255")}
	install := func(i int) {
		a := netip.AddrFrom4([4]byte{10, 8, byte(i >> 8), byte(i)}).String()
		must(t, d.AddInbound(SAConfig{SPI: 0x10000 + uint32(i), Keys: keys, LocalTS: local, RemoteTS: []Selector{ts(0, a, a)}}))
		must(t, d.InstallOutbound(uint64(i+1), SAConfig{SPI: 0x10000 + uint32(i), Keys: keys, LocalTS: local, RemoteTS: []Selector{ts(0, a, a)}},
			ap(aV4, nattPort), ap(bV4, nattPort)))
	}
	// The cost is measured in bytes allocated (what a copy costs, whatever else the
	// machine is doing), not in time, which made this test fail under load.
	cost := func(from, n int) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := from; i < from+n; i++ {
			install(i)
		}
		runtime.ReadMemStats(&after)
		return (after.TotalAlloc - before.TotalAlloc) / uint64(n)
	}
	small := cost(0, 500)
	for i := 500; i < 20000; i++ {
		install(i)
	}
	big := cost(20000, 500)
	t.Logf("install of an SA pair allocates %d bytes with 500 SAs, %d with 20,000", small, big)
	// A copy of the whole table would cost 40 times more.
	if big > 4*small {
		t.Errorf("installing an SA pair allocates %d bytes with 20,000 SAs, %d with 500", big, small)
	}
	if got := d.out.Load().nHosts; got != 20500 {
		t.Errorf("%d host addresses, want 20500", got)
	}
}
