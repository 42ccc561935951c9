package ike

import (
	"net/netip"
	"time"
)

// Before authentication: what a peer can make us hold (messages, fragments) and
// answer (cached responses), and the sources the half-open limits count.

// maxPreauthMessage caps a message, whole or reassembled from fragments, before the
// peer is authenticated (strongSwan's max_packet).
const maxPreauthMessage = 10000

// authenticated reports whether sa's peer is authenticated (IKE_AUTH completed).
func (sa *IKESA) authenticated() bool {
	return sa.state == stateEstablished || sa.state == stateDeleting
}

// preauthHeld is what sa holds while its peer is not authenticated: the IKE_SA_INIT
// messages and fragments being reassembled.
func (sa *IKESA) preauthHeld() int {
	if sa.authenticated() || sa.state == stateDead {
		return 0
	}
	n := len(sa.initReq) + len(sa.initResp)
	for _, c := range sa.initCopies {
		n += len(c.data)
	}
	return n + sa.win.fragBytes()
}

// charge brings the pre-authentication count (admission.preauth) up to date with what sa holds now.
func (e *Engine) charge(sa *IKESA) {
	held := 0
	if e.store.live(sa) {
		held = sa.preauthHeld()
	}
	e.gate.preauth += held - sa.charged
	sa.charged = held
}

// PreauthBytes is what SAs that are not authenticated hold, in bytes.
func (e *Engine) PreauthBytes() int { return e.gate.preauth }

type replayStamp struct {
	to netip.AddrPort
	at time.Time
}
