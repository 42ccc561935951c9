package ike

import (
	"net/netip"

	ikecrypto "github.com/mobikevpn/mobikevpn/ike/crypto"
	"github.com/mobikevpn/mobikevpn/ike/wire"
)

// Action is something the engine asks its caller to do, in order.
type Action interface{ action() }

// Send asks for a datagram to be sent from Local to Remote. Data is the IKE message
// without the non-ESP marker: the caller adds it when Local's port is the NAT-T port.
type Send struct {
	Local, Remote netip.AddrPort
	Data          []byte
}

// ChildKeys are the keys of one direction of a Child SA.
type ChildKeys struct {
	Encr, Integ []byte
}

// InstallChild asks for a Child SA to be installed in the datapath: inbound SPIIn with
// InKeys, outbound SPIOut with OutKeys, sending from Local to Remote.
type InstallChild struct {
	IKESA     uint64
	Child     uint64
	Name      string
	Initiator bool // we initiated the IKE SA that created it (for the key log's direction)
	SPIIn     uint32
	SPIOut    uint32
	Suite     ikecrypto.ESPSuite
	InKeys    ChildKeys
	OutKeys   ChildKeys
	LocalTS   []wire.TrafficSelector
	RemoteTS  []wire.TrafficSelector
	Local     netip.AddrPort
	Remote    netip.AddrPort
	Keepalive bool // a NAT is in front of us: send NAT keepalives
	// Replaces is the Child id whose datapath entry this one takes over (rekey), or 0.
	Replaces uint64
}

// RemoveChild asks for a Child SA to be removed from the datapath.
type RemoveChild struct {
	IKESA uint64
	Child uint64
	SPIIn uint32
	// Outbound is false when the outbound side was already taken over by a rekeyed SA.
	Outbound bool
}

// VirtualIPs reports the virtual addresses assigned to us (initiator) or to the peer
// (responder) for an IKE SA; Remove is set when they are released.
type VirtualIPs struct {
	IKESA  uint64
	Local  bool // the addresses are ours (put them on the TUN device)
	Addrs  []netip.Addr
	DNS    []netip.Addr
	Remove bool
}

// IKEKeysLog carries the keys of an established IKE SA for the key log.
type IKEKeysLog struct {
	IKESA      uint64
	SPIi, SPIr uint64
	Suite      ikecrypto.IKESuite
	SKei, SKer []byte
	SKai, SKar []byte
}

// EventKind says what happened to an IKE SA.
type EventKind int

// Event kinds.
const (
	EventEstablished EventKind = iota + 1 // IKE SA and first Child SA are up
	EventFailed                           // establishment failed (Reason says why)
	EventDeleted                          // an established SA went away (Reason says why)
	EventChildFailed                      // the SA is up but its Child SA was refused
)

func (k EventKind) String() string {
	switch k {
	case EventEstablished:
		return "established"
	case EventFailed:
		return "failed"
	case EventDeleted:
		return "deleted"
	case EventChildFailed:
		return "child-failed"
	}
	return "unknown"
}

// Event reports a change of an IKE SA's state.
type Event struct {
	IKESA  uint64
	Conn   string
	Kind   EventKind
	Reason string
}

func (Send) action()         {}
func (InstallChild) action() {}
func (RemoveChild) action()  {}
func (VirtualIPs) action()   {}
func (IKEKeysLog) action()   {}
func (Event) action()        {}
