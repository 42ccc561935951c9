package ike

import (
	"encoding/binary"
	"time"

	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/wire"
)

// Child SAs, however they were negotiated (IKE_AUTH: authchild.go; CREATE_CHILD_SA:
// rekey.go): what the engine keeps of each, its limits, and installing it in the
// datapath, activating its outbound half, retiring it.

// childState is a Child SA's position in its life.
//
//	installed -> rekeying (we asked to rekey it) -> rekeyed (a successor carries its
//	traffic; it waits for its Delete) -> removed
type childState int

//go:generate stringer -type=childState -linecomment

const (
	childInstalled childState = iota + 1 // installed
	childRekeying                        // rekeying
	childRekeyed                         // rekeyed
	childDeleting                        // deleting
)

// lingerGrace is how long the inbound half of a replaced Child SA keeps accepting
// packets that were already in flight (strongSwan's delete_rekeyed_delay is 5 s).
const lingerGrace = 5 * time.Second

// activateGrace bounds how long a rekey responder keeps sending on the old SA while it
// waits for the initiator to delete it.
const activateGrace = 5 * time.Second

// ChildSA is one Child SA of an IKE SA.
type ChildSA struct {
	id     uint64
	policy uint64 // the flow it carries, shared by its rekeyed predecessors and successors
	cfg    *ChildConfig
	state  childState

	spiIn    uint32
	spiOut   uint32
	suite    ikecrypto.ESPSuite
	localTS  []wire.TrafficSelector
	remoteTS []wire.TrafficSelector
	created  time.Time

	// outActive: our outbound traffic of policy uses this SA. outKeys is kept only until
	// then (a rekey responder waits for the old SA's Delete).
	outActive  bool
	outKeys    ChildKeys
	activateAt time.Time
	// heldIn and heldOut are copies of its keys kept for Export (Config.Exportable
	// only), overwritten when it goes.
	heldIn, heldOut ChildKeys

	// nonces of the exchange that created it, for collisions (RFC 7296 2.8.1).
	ni, nr []byte

	rekeyAt   time.Time
	successor *ChildSA // the SA that replaces it once it is deleted
	collision *ChildSA // an SA the peer created by rekeying this one while we did too

	// limits are its volume limits in the datapath (both directions); expired says
	// that one of its hard limits was reached: it is replaced, by a rekey or, should
	// that fail, by a new Child SA.
	limits  ChildLimits
	expired bool
}

// ChildLimits are the volume limits of one direction of a Child SA (0: none). The
// datapath counts the SA's traffic and reports crossing them to Engine.ChildVolume: at
// a soft limit the Child SA is rekeyed, at a hard one it must go. Whatever they say,
// the datapath also reports a soft limit before an SA's sequence numbers run out, and
// a hard one when they have.
type ChildLimits struct {
	SoftBytes, SoftPackets uint64
	HardBytes, HardPackets uint64
}

// childLimits returns the volume limits of a new Child SA of cfg: the hard ones as
// configured, the soft ones less a random jitter of up to 10% (and less than the gap to
// the hard limit, as swanctl's rand_bytes), so that both ends do not rekey at once
// (RFC 7296 2.8.1).
func (e *Engine) childLimits(cfg *ChildConfig) ChildLimits {
	return ChildLimits{
		SoftBytes:   e.volumeJitter(cfg.RekeyBytes, cfg.LifeBytes),
		SoftPackets: e.volumeJitter(cfg.RekeyPackets, cfg.LifePackets),
		HardBytes:   cfg.LifeBytes,
		HardPackets: cfg.LifePackets,
	}
}

func (e *Engine) volumeJitter(soft, hard uint64) uint64 {
	spread := soft / 10
	if hard > soft && hard-soft < spread {
		spread = hard - soft
	}
	if spread == 0 {
		return soft
	}
	var b [8]byte
	if _, err := e.rand.Read(b[:]); err != nil {
		return soft
	}
	return soft - binary.LittleEndian.Uint64(b[:])%spread
}

// DefaultMaxChildren is the Child SAs one IKE SA may have when its connection does not
// say (Conn.MaxChildren).
const DefaultMaxChildren = 32

func (c *Conn) maxChildren() int {
	if c == nil || c.MaxChildren <= 0 {
		return DefaultMaxChildren
	}
	return c.MaxChildren
}

// liveChildren counts the Child SAs of sa that are not on their way out (replaced by a
// rekey, or being deleted).
func (sa *IKESA) liveChildren() int {
	n := 0
	for _, c := range sa.children {
		if c.state == childInstalled || c.state == childRekeying {
			n++
		}
	}
	return n
}

type lingerSPI struct {
	spi   uint32
	child uint64
	at    time.Time
}

func (sa *IKESA) childByOutSPI(spi uint32) *ChildSA {
	for _, c := range sa.children {
		if c.spiOut == spi {
			return c
		}
	}
	return nil
}

func (sa *IKESA) childBySPIIn(spi uint32) *ChildSA {
	for _, c := range sa.children {
		if c.spiIn == spi {
			return c
		}
	}
	return nil
}

func (sa *IKESA) dropChild(c *ChildSA) {
	for i, x := range sa.children {
		if x == c {
			sa.children = append(sa.children[:i], sa.children[i+1:]...)
			return
		}
	}
}

// childKeys splits KEYMAT into our inbound and outbound keys; exchInitiator says
// whether we initiated the exchange that created the SA.
func childKeys(k ikecrypto.ChildKeys, exchInitiator bool) (in, out ChildKeys) {
	in = ChildKeys{Encr: k.EncrR, Integ: k.IntegR}
	out = ChildKeys{Encr: k.EncrI, Integ: k.IntegI}
	if !exchInitiator {
		in, out = out, in
	}
	return in, out
}

// negotiatedChild is a Child SA just agreed on, before installChild: its
// configuration, our inbound SPI, the proposal with the peer's SPI, the suite, the
// selectors (ours, the peer's) and the nonces its keys come from (nil for IKE_AUTH's).
func negotiatedChild(cfg *ChildConfig, spiIn uint32, chosen wire.Proposal, suite ikecrypto.ESPSuite, local, remote []wire.TrafficSelector, ni, nr []byte) *ChildSA {
	return &ChildSA{cfg: cfg, spiIn: spiIn, spiOut: binary.BigEndian.Uint32(chosen.SPI), suite: suite,
		localTS: local, remoteTS: remote, ni: ni, nr: nr}
}

// installChild records c on sa and installs its inbound half; the outbound half too
// unless deferOut (a rekey responder keeps sending on the old SA until it is deleted).
func (e *Engine) installChild(now time.Time, sa *IKESA, c *ChildSA, k ikecrypto.ChildKeys, exchInitiator, deferOut bool) {
	c.id = e.store.newChildID()
	if c.policy == 0 {
		c.policy = c.id
	}
	c.state = childInstalled
	c.created = now
	sa.children = append(sa.children, c)
	e.store.claimInbound(c.spiIn, c)
	in, out := childKeys(k, exchInitiator)
	if e.cfg.Exportable {
		c.heldIn, c.heldOut = in.clone(), out.clone()
	}
	p := e.espPath(sa)
	c.limits = e.childLimits(c.cfg)
	e.emit(InstallInbound{
		IKESA: sa.id, Child: c.id, Name: c.cfg.Name, SPI: c.spiIn, Suite: c.suite, Keys: in,
		LocalTS: c.localTS, RemoteTS: c.remoteTS, Local: p.Local, Remote: p.Remote, Limits: c.limits,
	})
	c.outKeys = out
	if deferOut {
		c.activateAt = now.Add(activateGrace)
	} else {
		e.activateOutbound(sa, c)
	}
	if c.cfg.RekeyTime > 0 {
		c.rekeyAt = now.Add(e.jitter(c.cfg.RekeyTime))
	}
	e.log.Info("Child SA installed", "sa", sa.id, "child", c.cfg.Name, "spi_in", spiHex(c.spiIn), "spi_out", spiHex(c.spiOut),
		"local_ts", tsStrings(c.localTS), "remote_ts", tsStrings(c.remoteTS), "proposal", c.suite.String())
}

// activateOutbound makes c the SA that carries its policy's outbound traffic.
func (e *Engine) activateOutbound(sa *IKESA, c *ChildSA) {
	if c.outActive {
		return
	}
	// ESP goes where the path manager says: never to a peer address that is not
	// verified (RFC 4555 5.2), even while the IKE SA already uses it.
	p := e.espPath(sa)
	e.emit(InstallOutbound{
		IKESA: sa.id, Child: c.id, Policy: c.policy, Name: c.cfg.Name, SPI: c.spiOut, Suite: c.suite,
		Keys: c.outKeys, LocalTS: c.localTS, RemoteTS: c.remoteTS, Local: p.Local, Remote: p.Remote,
		Keepalive: sa.natLocal, Limits: c.limits,
	})
	c.outActive = true
	c.outKeys = ChildKeys{}
	c.activateAt = time.Time{}
	// Whoever carried the policy before no longer does.
	for _, x := range sa.children {
		if x != c && x.policy == c.policy {
			x.outActive = false
		}
	}
}

// retireChild removes c: its inbound half after lingerGrace (packets already in flight
// are still accepted), its outbound half at once unless another SA carries the policy.
func (e *Engine) retireChild(now time.Time, sa *IKESA, c *ChildSA, linger bool) {
	sa.dropChild(c)
	c.outKeys.wipe() // never activated: its outbound keys were never handed out
	c.heldIn.wipe()
	c.heldOut.wipe()
	if c.outActive {
		// A successor waiting for this SA's deletion takes over the flow; without one
		// the flow ends.
		if s := c.successor; s != nil && s.state != childDeleting && sa.childBySPIIn(s.spiIn) == s {
			e.activateOutbound(sa, s)
		} else {
			e.emit(RemoveOutbound{IKESA: sa.id, Policy: c.policy})
		}
		c.outActive = false
	}
	if linger {
		sa.lingering = append(sa.lingering, lingerSPI{spi: c.spiIn, child: c.id, at: now.Add(lingerGrace)})
	} else {
		e.emit(RemoveInbound{IKESA: sa.id, Child: c.id, SPI: c.spiIn})
		e.store.freeInbound(c.spiIn)
	}
}

// expireLingering removes the inbound halves whose grace is over (all with force).
func (e *Engine) expireLingering(now time.Time, sa *IKESA, force bool) {
	kept := sa.lingering[:0]
	for _, l := range sa.lingering {
		if force || !l.at.After(now) {
			e.emit(RemoveInbound{IKESA: sa.id, Child: l.child, SPI: l.spi})
			e.store.freeInbound(l.spi)
			continue
		}
		kept = append(kept, l)
	}
	sa.lingering = kept
}

// jitter returns d shortened by up to 10%, so that both peers do not rekey at once
// (RFC 7296 2.8.1 asks for jitter).
func (e *Engine) jitter(d time.Duration) time.Duration {
	var b [8]byte
	if _, err := e.rand.Read(b[:]); err != nil {
		return d
	}
	n := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24
	return d - time.Duration(n%uint64(d/10+1))
}
