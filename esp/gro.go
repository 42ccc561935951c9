package esp

import "encoding/binary"

// The Linux TUN device coalesces the TCP and UDP packets of one flow in a Write (GRO)
// by appending the payload of later packets to the first packet's buffer, within that
// buffer's capacity. Decrypted packets lie in the socket's receive buffers, each with
// room for its own trailer only, so they cannot grow. groHeads predicts which packets
// the device will coalesce (the same rules: same flow, no packet after a shorter one
// or after PSH, at most 64 KiB) and copies the first packet of each such group into an
// arena with room for the whole group: one copy per group instead of a 64 KiB buffer
// per packet, and the kernel then takes tens of packets in one write. A wrong guess
// costs coalescing, never correctness: every buffer's capacity is its own.

// groArenaLen is the arena for the heads of one TUN write: a batch's packets fit in
// it whole.
const groArenaLen = groBatch*65535 + 64<<10

// groMaxFlows bounds the flows tracked per write.
const groMaxFlows = 16

type groFlow struct {
	key    groKey
	head   int  // index in heads
	gso    int  // payload length of the group's first packet
	closed bool // no packet can follow (a shorter one or PSH came)
}

type groKey struct {
	v6    bool
	proto byte
	ports uint32
	addrs [32]byte
}

type groHeads struct {
	arena []byte
	flows []groFlow
	heads []int // the packet that starts each group
	sizes []int // each group's coalesced length
}

func (g *groHeads) init(arena, maxPkts int) {
	if arena <= 0 {
		return
	}
	g.arena = make([]byte, arena)
	g.flows = make([]groFlow, 0, groMaxFlows)
	g.heads = make([]int, 0, maxPkts)
	g.sizes = make([]int, 0, maxPkts)
}

// prepare moves the first packet of each group that the TUN device can coalesce in
// bufs (packets at bufs[i][tunWriteOffset:]) into the arena, with the capacity the
// group needs.
func (g *groHeads) prepare(bufs [][]byte) {
	if len(g.arena) == 0 || len(bufs) < 2 {
		return
	}
	g.flows, g.heads, g.sizes = g.flows[:0], g.heads[:0], g.sizes[:0]
	for i, b := range bufs {
		if len(g.heads) == cap(g.heads) {
			break
		}
		pkt := b[tunWriteOffset:]
		k, hdrLen, psh, ok := groKeyOf(pkt)
		if !ok {
			continue
		}
		payload := len(pkt) - hdrLen
		j := 0
		for j < len(g.flows) && g.flows[j].key != k {
			j++
		}
		switch {
		case j < len(g.flows):
			f := &g.flows[j]
			if !f.closed && payload > 0 && payload <= f.gso && g.sizes[f.head]+payload <= 65535 {
				g.sizes[f.head] += payload
				f.closed = payload < f.gso || psh
				continue
			}
		case j == cap(g.flows):
			continue
		default:
			g.flows = append(g.flows, groFlow{key: k})
		}
		f := &g.flows[j]
		f.head, f.gso, f.closed = len(g.heads), payload, psh || payload == 0
		g.heads = append(g.heads, i)
		g.sizes = append(g.sizes, len(pkt))
	}
	off := 0
	for h, i := range g.heads {
		pkt := bufs[i][tunWriteOffset:]
		if g.sizes[h] == len(pkt) {
			continue // nothing joins it
		}
		// The device wants cap(buf)-2*offset >= the coalesced length.
		need := (g.sizes[h] + 2*tunWriteOffset + 7) &^ 7
		if off+need > len(g.arena) {
			break
		}
		dst := g.arena[off : off+tunWriteOffset+len(pkt) : off+need]
		copy(dst[tunWriteOffset:], pkt)
		bufs[i] = dst
		off += need
	}
}

// groKeyOf returns the flow of a packet that the TUN device may coalesce (TCP with
// only ACK or ACK and PSH set, or UDP, right after an IPv4 header without options that
// is not a fragment, or after the IPv6 header), the length of its IP and transport
// headers, and whether PSH is set.
func groKeyOf(p []byte) (k groKey, hdrLen int, psh, ok bool) {
	if len(p) < 20 {
		return k, 0, false, false
	}
	var l4 int
	switch p[0] >> 4 {
	case 4:
		if p[0]&0x0f != 5 || binary.BigEndian.Uint16(p[6:8])&0x3fff != 0 {
			return k, 0, false, false
		}
		k.proto = p[9]
		copy(k.addrs[:8], p[12:20])
		l4 = 20
	case 6:
		if len(p) < 40 {
			return k, 0, false, false
		}
		k.v6, k.proto = true, p[6]
		copy(k.addrs[:], p[8:40])
		l4 = 40
	default:
		return k, 0, false, false
	}
	var hl int
	switch k.proto {
	case protoTCP:
		if len(p) < l4+20 {
			return k, 0, false, false
		}
		hl = int(p[l4+12]>>4) * 4
		const ack, pshFlag = 0x10, 0x08
		switch p[l4+13] {
		case ack:
		case ack | pshFlag:
			psh = true
		default:
			return k, 0, false, false
		}
	case protoUDP:
		hl = 8
	default:
		return k, 0, false, false
	}
	if hl < 8 || len(p) < l4+hl {
		return k, 0, false, false
	}
	k.ports = binary.BigEndian.Uint32(p[l4 : l4+4])
	return k, l4 + hl, psh, true
}
