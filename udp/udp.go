// Package udp provides the batched UDP sockets that carry IKE and ESP-in-UDP, with the
// local address of every datagram (IP_PKTINFO / IPV6_PKTINFO) so that replies and moved
// SAs leave from the right address.
package udp

import (
	"fmt"
	"net/netip"
)

// Message is one datagram in a batch.
//
// On read, Buffer is the space to fill; after the call N is the number of bytes
// received, Local is the local address and port the datagram arrived at, Remote its
// source, and Truncated reports a datagram larger than Buffer (its content must be
// dropped).
//
// On a Conn with GRO on (see Offloader), Segment > 0 says that Buffer[:N] holds several
// datagrams of one flow that the kernel coalesced: each Segment bytes long but the last,
// which may be shorter. Segment is 0 for a single datagram.
//
// On write, Buffer[:N] is the payload, Remote the destination and Local the source
// address to send from (an invalid Addr lets the kernel choose; the port is always the
// socket's own). Segment is ignored: with GSO on, WriteBatch itself sends runs of
// messages with the same addresses and equal lengths as one UDP_SEGMENT send, without
// copying them.
type Message struct {
	Buffer    []byte
	N         int
	Local     netip.AddrPort
	Remote    netip.AddrPort
	Truncated bool
	Segment   int
}

// Conn is one UDP socket of one address family, bound to a wildcard address and a port.
// ReadBatch and WriteBatch may be called concurrently with each other; ReadBatch is
// called by one goroutine at a time. WriteBatch is safe for concurrent use: an
// implementation serialises the calls (a write lock per socket), so that several
// writers share one socket without a lock of their own, as the ESP datapath and the
// IKE sender share a NAT-T socket.
type Conn interface {
	// LocalAddr is the bound wildcard address and port (0.0.0.0:P or [::]:P).
	LocalAddr() netip.AddrPort
	// ReadBatch blocks until at least one datagram is available and fills up to
	// len(msgs) of them, returning how many.
	ReadBatch(msgs []Message) (int, error)
	// WriteBatch sends msgs in order and returns how many were sent. Concurrent
	// calls are serialised.
	WriteBatch(msgs []Message) (int, error)
	// BatchSize is the preferred number of messages per call.
	BatchSize() int
	// Close unblocks readers with net.ErrClosed.
	Close() error
}

// Offloader is implemented by the Conns that can use UDP segmentation offloads (Linux):
// Marker is a Conn whose packets can carry a firewall mark (Linux SO_MARK), so that
// policy routing and packet filters tell them from everything else (the daemon's
// IKE and ESP in a full tunnel).
type Marker interface {
	SetMark(mark uint32) error
}

// SetMark marks every packet c sends with mark; a Conn that cannot is an error.
func SetMark(c Conn, mark uint32) error {
	m, ok := c.(Marker)
	if !ok {
		return fmt.Errorf("udp: %T cannot mark its packets (SO_MARK is Linux only)", c)
	}
	return m.SetMark(mark)
}

// GSO lets one send carry many datagrams, GRO lets one read return many.
type Offloader interface {
	// SetOffload turns GSO on writes and GRO on reads on or off and reports which are
	// on afterwards: a kernel that lacks one keeps it off. With GRO on, every read
	// buffer must hold MaxGROSize bytes, or coalesced datagrams are truncated. Call it
	// before the first ReadBatch.
	SetOffload(gso, gro bool) (gsoOn, groOn bool)
}

// MaxGROSize is the size of a read buffer that holds any GRO batch.
const MaxGROSize = 65535

// GSODisabledError is returned by WriteBatch when the kernel refused a segmented send
// in a way that says the path cannot do it (EIO: no checksum offload on the way):
// GSO is then off for the Conn, the messages were sent again without it, and the
// count WriteBatch returns is that of the retry.
type GSODisabledError struct {
	Err error // the error of the segmented send
}

func (e *GSODisabledError) Error() string {
	return "udp: GSO turned off after a failed segmented send: " + e.Err.Error()
}

func (e *GSODisabledError) Unwrap() error { return e.Err }
