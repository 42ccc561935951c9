package ike

import (
	"bytes"
	"net/netip"

	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/wire"
)

// Action is something the engine asks its caller to do, in order.
//
//sumtype:decl
type Action interface{ action() }

// Send asks for a datagram to be sent from Local to Remote. Data is the IKE message
// without the non-ESP marker: the caller adds it when Local's port is the NAT-T port.
type Send struct {
	Local, Remote netip.AddrPort
	Data          []byte
	// Persist is the IKE SA (of ours as gateway) whose state this message shows the
	// peer for the first time (a response, or a request's first transmission; not a
	// retransmission): a cluster node writes the SA's Snapshot before it sends it, so
	// that whoever continues the SA knows everything the peer saw. 0: nothing new.
	Persist uint64
}

// ChildKeys are the keys of one direction of a Child SA.
type ChildKeys struct {
	Encr, Integ []byte
}

func (k ChildKeys) clone() ChildKeys {
	return ChildKeys{Encr: bytes.Clone(k.Encr), Integ: bytes.Clone(k.Integ)}
}

// wipe overwrites keys the engine holds and will not hand out any more.
func (k *ChildKeys) wipe() {
	clear(k.Encr)
	clear(k.Integ)
	*k = ChildKeys{}
}

// InstallInbound asks for inbound ESP with SPI to be accepted and decrypted with Keys;
// decrypted packets must lie within the selectors (RemoteTS = their source, LocalTS =
// their destination). Local and Remote are the SA's outer endpoints (for the key log).
type InstallInbound struct {
	IKESA    uint64
	Child    uint64
	Name     string
	SPI      uint32
	Suite    ikecrypto.ESPSuite
	Keys     ChildKeys
	LocalTS  []wire.TrafficSelector
	RemoteTS []wire.TrafficSelector
	Local    netip.AddrPort
	Remote   netip.AddrPort
	Limits   ChildLimits // volume limits to report through Engine.ChildVolume
	// Seq (an SA imported from another engine, Engine.Import) is the highest sequence
	// number the previous owner authenticated: the replay window starts there. 0: a new
	// SA.
	Seq uint64
}

// InstallOutbound asks for traffic within the selectors to be sent with SPI from Local
// to Remote. Policy names the flow across rekeys: installing for a Policy that exists
// replaces its SA atomically (make-before-break).
type InstallOutbound struct {
	IKESA     uint64
	Child     uint64
	Policy    uint64
	Name      string
	SPI       uint32
	Suite     ikecrypto.ESPSuite
	Keys      ChildKeys
	LocalTS   []wire.TrafficSelector
	RemoteTS  []wire.TrafficSelector
	Local     netip.AddrPort
	Remote    netip.AddrPort
	Keepalive bool        // a NAT is in front of us: send NAT keepalives
	Limits    ChildLimits // volume limits to report through Engine.ChildVolume
	// Seq (an SA imported from another engine, Engine.Import) is the last sequence
	// number the previous owner used or reserved: the next packet must go beyond it, or
	// an AEAD nonce repeats under the SA's key. 0: a new SA.
	Seq uint64
	// Lease (ChildSAState.OutLease of an imported SA) is the last sequence number its
	// owner reserved for it in a cluster: the datapath sends no further until the
	// caller reserves more. 0: none.
	Lease uint64
}

// RemoveInbound asks for inbound SPI to be forgotten.
type RemoveInbound struct {
	IKESA uint64
	Child uint64
	SPI   uint32
}

// RemoveOutbound asks for the flow Policy to be removed (no SA sends it any more).
type RemoveOutbound struct {
	IKESA  uint64
	Policy uint64
}

// VirtualIPs reports the virtual addresses assigned to us (initiator) or to the peer
// (responder) for an IKE SA; Remove is set when they are released.
type VirtualIPs struct {
	IKESA  uint64
	Conn   string // the SA's connection
	Local  bool   // the addresses are ours (put them on the TUN device)
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
	EventEstablished   EventKind = iota + 1 // IKE SA and first Child SA are up
	EventFailed                             // establishment failed (Reason says why)
	EventDeleted                            // an established SA went away (Reason says why)
	EventChildFailed                        // the SA is up but its Child SA was refused
	EventRekeyed                            // a new IKE SA replaces an old one
	EventMoved                              // the SA's addresses changed (MOBIKE)
	EventSwitched                           // the initiator moved to where we asked it to
	EventSwitchRefused                      // we refused the responder's switch request
	EventMoveFailed                         // a new path did not answer or was refused: the SA stays on the old one
	EventPeerStayed                         // the peer of an SA handed over (Handoff) stays here: see Engine.HandBack
	EventVIPWanted                          // an IKE_AUTH waits for a leased pool's address: see Engine.WantedVIPs
)

func (k EventKind) String() string {
	//exhaustive:enforce
	switch k {
	case EventEstablished:
		return "established"
	case EventFailed:
		return "failed"
	case EventDeleted:
		return "deleted"
	case EventChildFailed:
		return "child-failed"
	case EventRekeyed:
		return "rekeyed"
	case EventMoved:
		return "moved"
	case EventSwitched:
		return "switched"
	case EventSwitchRefused:
		return "switch-refused"
	case EventMoveFailed:
		return "move-failed"
	case EventPeerStayed:
		return "peer-stayed"
	case EventVIPWanted:
		return "vip-wanted"
	}
	return "unknown"
}

// Event reports a change of an IKE SA's state.
type Event struct {
	IKESA  uint64
	Conn   string
	Kind   EventKind
	Reason string
	// Replaces (EventRekeyed) is the IKE SA the new one replaces.
	Replaces uint64
	// PeerID and Peer are the SA's peer identity (once authenticated) and address, for
	// the event log.
	PeerID string
	Peer   netip.AddrPort
}

func (Send) action()            {}
func (InstallInbound) action()  {}
func (InstallOutbound) action() {}
func (RemoveInbound) action()   {}
func (RemoveOutbound) action()  {}
func (VirtualIPs) action()      {}
func (IKEKeysLog) action()      {}
func (Event) action()           {}
