package daemon

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/esp"
	"github.com/mobikevpn/mobikevpn/tun/memtun"
	"github.com/mobikevpn/mobikevpn/udp"
	"github.com/mobikevpn/mobikevpn/udp/memnet"
)

type ikeRecv struct {
	pkt           []byte
	local, remote netip.AddrPort
}

// ikeSide is one host's IKE sockets: the IKE port read by ikeSockets.run, the NAT-T
// port by a datapath, both delivering to in.
type ikeSide struct {
	s    *ikeSockets
	dp   *esp.Datapath
	natt []udp.Conn
	in   chan ikeRecv
}

func newIKESide(t *testing.T, n *memnet.Network, addrs ...netip.Addr) *ikeSide {
	t.Helper()
	h := n.Host(addrs...)
	ikeConns, err := h.Listen(500)
	if err != nil {
		t.Fatal(err)
	}
	natt, err := h.Listen(4500)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sd := &ikeSide{natt: natt, in: make(chan ikeRecv, 16)}
	if sd.s, err = newIKESockets(500, ikeConns, 4500, natt, log); err != nil {
		t.Fatal(err)
	}
	deliver := func(pkt []byte, local, remote netip.AddrPort) { sd.in <- ikeRecv{pkt, local, remote} }
	if sd.dp, err = esp.New(esp.Config{TUN: memtun.New("mvpn0", 1400), Conns: natt, OnIKE: deliver, Logger: log, Workers: 1}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := sd.s.run(ctx, deliver); err != nil {
			t.Errorf("IKE readers: %v", err)
		}
	})
	wg.Go(func() {
		if err := sd.dp.Run(ctx); err != nil {
			t.Errorf("datapath: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return sd
}

func (sd *ikeSide) recv(t *testing.T) ikeRecv {
	t.Helper()
	select {
	case r := <-sd.in:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no IKE message")
		return ikeRecv{}
	}
}

// TestIKESockets: IKE goes out on the socket of the local port and the remote's family,
// from the local address, behind the non-ESP marker on the NAT-T port only, and comes
// back to the engine's callback from the IKE port's reader or the datapath.
func TestIKESockets(t *testing.T) {
	aV4, bV4 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")
	aV6, bV6 := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	n := memnet.New()
	var raw sync.Map // the last datagram to b, by port
	n.SetFilter(func(p *memnet.Packet) []memnet.Packet {
		if p.Dst.Addr() == bV4 {
			raw.Store(p.Dst.Port(), bytes.Clone(p.Data))
		}
		return []memnet.Packet{*p}
	})
	a, b := newIKESide(t, n, aV4, aV6), newIKESide(t, n, bV4, bV6)
	ap := netip.AddrPortFrom
	for _, port := range []uint16{4500, 500} {
		for _, size := range []int{28, 1500, esp.MaxIKEMessage} {
			msg := bytes.Repeat([]byte{byte(size)}, size)
			if err := a.s.send(ap(aV4, port), ap(bV4, port), msg); err != nil {
				t.Fatal(err)
			}
			m := b.recv(t)
			if !bytes.Equal(m.pkt, msg) || m.local != ap(bV4, port) || m.remote != ap(aV4, port) {
				t.Fatalf("port %d size %d: got %d bytes %s <- %s", port, size, len(m.pkt), m.local, m.remote)
			}
			r, _ := raw.Load(port)
			wantLen := size
			if port == 4500 {
				wantLen += 4
			}
			if rb := r.([]byte); len(rb) != wantLen || port == 4500 && !bytes.Equal(rb[:4], []byte{0, 0, 0, 0}) {
				t.Fatalf("port %d: on the wire %x...", port, rb[:8])
			}
		}
		// One byte too many is truncated and dropped, by the datapath or the reader.
		if err := a.s.send(ap(aV4, port), ap(bV4, port), make([]byte, esp.MaxIKEMessage+1)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.dp.Drops().Truncated != 1 || b.s.truncated.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("truncated: datapath %d, IKE port %d", b.dp.Drops().Truncated, b.s.truncated.Load())
		}
		time.Sleep(time.Millisecond)
	}

	// IPv6, kernel-chosen source, on both ports; an IPv4-mapped remote is IPv4.
	for _, port := range []uint16{500, 4500} {
		if err := a.s.send(ap(netip.IPv6Unspecified(), port), ap(bV6, port), []byte("v6")); err != nil {
			t.Fatal(err)
		}
		if m := b.recv(t); string(m.pkt) != "v6" || m.remote != ap(aV6, port) || m.local != ap(bV6, port) {
			t.Fatalf("v6 port %d: %+v", port, m)
		}
	}
	if err := a.s.send(ap(aV4, 500), ap(netip.AddrFrom16(bV4.As16()), 500), []byte("mapped")); err != nil {
		t.Fatal(err)
	}
	if m := b.recv(t); string(m.pkt) != "mapped" || m.remote != ap(aV4, 500) {
		t.Fatalf("mapped: %+v", m)
	}

	// Errors: no socket for the port, family mismatch, no destination.
	for _, tc := range [][2]netip.AddrPort{
		{ap(aV4, 501), ap(bV4, 500)},
		{ap(aV4, 500), ap(bV6, 500)},
		{ap(aV4, 500), {}},
	} {
		if err := a.s.send(tc[0], tc[1], []byte("x")); err == nil {
			t.Errorf("send(%s, %s) accepted", tc[0], tc[1])
		}
	}
	m := map[string]uint64{}
	b.s.drops(m)
	if m["ike_truncated"] != 1 || m["ike_read_error"] != 0 {
		t.Errorf("drops %v", m)
	}
}

// TestIKESocketsShareNATT: IKE sent on the NAT-T socket while the datapath sends
// keepalives on it; the writes share the socket's lock (run with -race).
func TestIKESocketsShareNATT(t *testing.T) {
	aV4, bV4 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")
	n := memnet.New()
	a, b := newIKESide(t, n, aV4), newIKESide(t, n, bV4)
	from, to := netip.AddrPortFrom(aV4, 4500), netip.AddrPortFrom(bV4, 4500)
	const count = 200
	var wg sync.WaitGroup
	wg.Go(func() {
		for range count {
			if err := a.dp.SendKeepalive(from, to); err != nil {
				t.Error(err)
				return
			}
		}
	})
	got := 0
	for i := range count {
		if err := a.s.send(from, to, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		if len(b.recv(t).pkt) == 1 {
			got++
		}
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for b.dp.Drops().Keepalives != count && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got != count || b.dp.Drops().Keepalives != count {
		t.Errorf("%d IKE messages, %d keepalives; want %d each", got, b.dp.Drops().Keepalives, count)
	}
}

// TestIKESocketsConfig: the sockets must be on the configured ports, one per family
// and port, with at least one on the NAT-T port.
func TestIKESocketsConfig(t *testing.T) {
	h := memnet.New().Host(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1"))
	c500, err := h.Listen(500)
	if err != nil {
		t.Fatal(err)
	}
	c4500, err := h.Listen(4500)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	for i, tc := range []struct{ ike, natt []udp.Conn }{
		{c500, nil},                     // no NAT-T socket
		{c4500, c500},                   // swapped ports
		{c500, []udp.Conn{nil}},         // nil
		{c500, append(c4500, c4500[0])}, // two IPv4 sockets on 4500
	} {
		if _, err := newIKESockets(500, tc.ike, 4500, tc.natt, log); err == nil {
			t.Errorf("%d: accepted", i)
		}
	}
	// The IKE port is optional, as it was for the datapath before.
	if _, err := newIKESockets(500, nil, 4500, c4500, log); err != nil {
		t.Fatal(err)
	}
}
