package ike

import (
	"time"
)

// Child SA volume limits: the datapath reports a crossed threshold, the engine rekeys
// (soft) or replaces (hard) the Child SA.

// VolumeLimit is the datapath's report that one direction of a Child SA crossed one of
// its volume limits (ChildLimits), or neared or reached the end of its sequence numbers.
type VolumeLimit struct {
	// Inbound: the inbound SA with our SPI SPI. Otherwise the outbound SA of flow
	// Policy (InstallOutbound.Policy) with the peer's SPI SPI.
	Inbound bool
	SPI     uint32
	Policy  uint64
	// Hard: the SA must not be used any more (a hard limit, or sequence numbers used
	// up); otherwise it should be rekeyed (a soft limit).
	Hard bool
}

// ChildVolume acts on the datapath's report of a crossed volume limit: at a soft limit
// it starts rekeying the Child SA; at a hard one it replaces it by a rekey, or, should
// the peer refuse that, deletes it and creates a new one. Reports about SAs that are
// gone or being replaced already change nothing.
func (e *Engine) ChildVolume(now time.Time, v VolumeLimit) []Action {
	sa, c := e.childForVolume(v)
	if c == nil {
		return e.take()
	}
	what := "soft"
	if v.Hard {
		what = "hard"
	}
	if v.Hard {
		// Set even while a rekey is under way: should the peer refuse that rekey,
		// the Child SA is replaced at once instead of waiting to try again (the
		// datapath sends nothing more on it, and reports each limit once).
		c.expired = true
	}
	if c.state != childInstalled {
		// Being rekeyed or deleted already: its replacement is on its way.
		e.log.Debug("Child SA volume limit reached while it is being replaced", "sa", sa.id, "child", c.cfg.Name, "spi_in", spiHex(c.spiIn), "limit", what, "state", c.state.String())
		return e.take()
	}
	e.log.Info("Child SA reached a volume limit; rekeying it", "sa", sa.id, "child", c.cfg.Name, "spi_in", spiHex(c.spiIn), "inbound", v.Inbound, "limit", what)
	e.rekeyChild(now, sa, c, 0)
	if c.state == childInstalled && (c.rekeyAt.IsZero() || c.rekeyAt.After(now.Add(time.Second))) {
		// Not now (the IKE SA is being rekeyed, say): soon, by the timer.
		c.rekeyAt = now.Add(time.Second)
	}
	e.schedule(sa)
	return e.take()
}

// childForVolume finds the Child SA a VolumeLimit is about.
func (e *Engine) childForVolume(v VolumeLimit) (*IKESA, *ChildSA) {
	for sa := range e.store.all() {
		if v.Inbound {
			if c := sa.childBySPIIn(v.SPI); c != nil {
				return sa, c
			}
			continue
		}
		for _, c := range sa.children {
			if c.policy == v.Policy && c.spiOut == v.SPI && c.outActive {
				return sa, c
			}
		}
	}
	return nil, nil
}

// replaceExpired asks for a new Child SA of c's configuration to carry c's flow on, c
// being past a hard volume limit and its rekey refused; c is deleted once the new one
// is installed, so that the flow's routes never go away (see replacementRefused).
func (e *Engine) replaceExpired(now time.Time, sa *IKESA, c *ChildSA) {
	e.log.Info("Child SA past its hard volume limit could not be rekeyed; creating a new one to replace it", "sa", sa.id, "child", c.cfg.Name, "spi_in", spiHex(c.spiIn))
	c.state = childRekeying // nothing else replaces it meanwhile
	if !e.createChild(now, sa, c.cfg, 0, c) {
		c.state = childInstalled
		c.rekeyAt = now.Add(retryDelay)
	}
}
