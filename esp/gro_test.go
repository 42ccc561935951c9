package esp

import (
	"bytes"
	"testing"
	"unsafe"
)

// tcp4 is an IPv4 TCP packet of the given payload length and flags.
func tcp4(src string, sport uint16, payload int, flags byte) []byte {
	p := ipv4Packet(src, "10.1.0.1", protoTCP, sport, 80, seqBytes(payload))
	p[20+13] = flags
	return p
}

const (
	flagACK = 0x10
	flagPSH = 0x08
	flagSYN = 0x02
)

// TestGROHeads checks which packets get a head buffer and how much room: the groups
// follow the TUN device's coalescing rules (same flow, nothing after a shorter packet
// or PSH, at most 64 KiB), other packets stay where they are, and every buffer's
// capacity is its own.
func TestGROHeads(t *testing.T) {
	type pk struct {
		p    []byte
		head int // the coalesced length if p starts a group that others join, else 0
	}
	a := func(n int, f byte) []byte { return tcp4("10.0.0.2", 1000, n, f) }
	b := func(n int, f byte) []byte { return tcp4("10.0.0.3", 1000, n, f) }
	big := make([]pk, 0, 64)
	big = append(big, pk{a(1000, flagACK), 40 + 65*1000})
	for range 64 {
		big = append(big, pk{a(1000, flagACK), 0})
	}
	// 40+66*1000 > 65535: the 66th starts a new group, alone.
	big = append(big, pk{a(1000, flagACK), 0})
	for _, tc := range []struct {
		name string
		pks  []pk
	}{
		{"one flow, short end", []pk{
			{a(1000, flagACK), 40 + 4*1000 + 500}, {a(1000, flagACK), 0}, {a(1000, flagACK), 0}, {a(1000, flagACK), 0}, {a(500, flagACK), 0},
			{a(1000, flagACK), 40 + 2000}, {a(1000, flagACK), 0}, // after the shorter one: a new group
		}},
		{"two flows interleaved, PSH ends", []pk{
			{a(1000, flagACK), 40 + 3000}, {b(1000, flagACK), 40 + 2000}, {a(1000, flagACK), 0}, {b(1000, flagACK|flagPSH), 0},
			{a(1000, flagACK|flagPSH), 0}, {b(1000, flagACK), 0}, // b's group ended with PSH: this one is alone
		}},
		{"not candidates", []pk{
			{a(1000, flagSYN), 0}, {ipv4Packet("10.0.0.2", "10.1.0.1", protoICMP, 8<<8, 0, seqBytes(100)), 0},
			{a(1000, flagACK), 0}, {a(1200, flagACK), 0}, // larger after smaller: new group, each alone
			{ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 5, 6, seqBytes(300)), 8 + 20 + 600}, {ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 5, 6, seqBytes(300)), 0},
			{ipv6Packet("fd00::2", "fd00:1::1", protoUDP, 5, 6, seqBytes(300)), 0},
		}},
		{"64 KiB limit", big},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var g groHeads
			g.init(groArenaLen, 256)
			bufs := make([][]byte, len(tc.pks))
			orig := make([][]byte, len(tc.pks))
			for i, x := range tc.pks {
				b := make([]byte, tunWriteOffset+len(x.p))
				copy(b[tunWriteOffset:], x.p)
				bufs[i], orig[i] = b, b
			}
			g.prepare(bufs)
			type span struct{ lo, hi uintptr }
			var spans []span
			for i, x := range tc.pks {
				if !bytes.Equal(bufs[i][tunWriteOffset:], x.p) {
					t.Fatalf("packet %d changed", i)
				}
				moved := &bufs[i][0] != &orig[i][0]
				if moved != (x.head > 0) {
					t.Fatalf("packet %d: moved %v, want a head of %d", i, moved, x.head)
				}
				if x.head > 0 && cap(bufs[i])-2*tunWriteOffset < x.head {
					t.Fatalf("packet %d: room for %d, want %d", i, cap(bufs[i])-2*tunWriteOffset, x.head)
				}
				lo := uintptr(unsafe.Pointer(&bufs[i][:1][0]))
				spans = append(spans, span{lo, lo + uintptr(cap(bufs[i]))})
			}
			for i := range spans {
				for j := range i {
					if spans[i].lo < spans[j].hi && spans[j].lo < spans[i].hi {
						t.Fatalf("buffers %d and %d overlap", j, i)
					}
				}
			}
		})
	}
}

// FuzzGROKey checks that groKeyOf never reads past a packet and that its header length
// fits the packet.
func FuzzGROKey(f *testing.F) {
	f.Add(tcp4("10.0.0.2", 1, 10, flagACK))
	f.Add(ipv6Packet("fd00::2", "fd00:1::1", protoTCP, 5, 6, seqBytes(30)))
	f.Add(ipv4Packet("10.0.0.2", "10.1.0.1", protoUDP, 5, 6, nil))
	f.Fuzz(func(t *testing.T, p []byte) {
		_, hl, _, ok := groKeyOf(p)
		if ok && (hl > len(p) || hl < 28) {
			t.Fatalf("header length %d of a %d-byte packet", hl, len(p))
		}
	})
}
