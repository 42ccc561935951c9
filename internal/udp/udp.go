// Package udp provides the batched UDP sockets that carry IKE and ESP-in-UDP, with the
// local address of every datagram (IP_PKTINFO / IPV6_PKTINFO) so that replies and moved
// SAs leave from the right address.
package udp

import "net/netip"

// Message is one datagram in a batch.
//
// On read, Buffer is the space to fill; after the call N is the number of bytes
// received, Local is the local address and port the datagram arrived at, Remote its
// source, and Truncated reports a datagram larger than Buffer (its content must be
// dropped).
//
// On write, Buffer[:N] is the payload, Remote the destination and Local the source
// address to send from (an invalid Addr lets the kernel choose; the port is always the
// socket's own).
type Message struct {
	Buffer    []byte
	N         int
	Local     netip.AddrPort
	Remote    netip.AddrPort
	Truncated bool
}

// Conn is one UDP socket of one address family, bound to a wildcard address and a port.
// ReadBatch and WriteBatch may be called concurrently with each other; ReadBatch is
// called by one goroutine at a time.
type Conn interface {
	// LocalAddr is the bound wildcard address and port (0.0.0.0:P or [::]:P).
	LocalAddr() netip.AddrPort
	// ReadBatch blocks until at least one datagram is available and fills up to
	// len(msgs) of them, returning how many.
	ReadBatch(msgs []Message) (int, error)
	// WriteBatch sends msgs in order and returns how many were sent.
	WriteBatch(msgs []Message) (int, error)
	// BatchSize is the preferred number of messages per call.
	BatchSize() int
	// Close unblocks readers with net.ErrClosed.
	Close() error
}
