package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/mobikevpn/mobikevpn/ike"
	"github.com/mobikevpn/mobikevpn/internal/radius"
)

// AAA passes EAP to the RADIUS servers of EAP-RADIUS (a *radius.Client): Exchange
// sends one Access-Request and returns the answer, or why none came after its own
// retries and fail-over.
type AAA interface {
	Exchange(ctx context.Context, req radius.Request) (radius.Answer, error)
}

// aaaRequest runs the engine's AAARequest in the background and hands the answer to
// the engine.
func (d *daemon) aaaRequest(a ike.AAARequest) {
	h := &d.client
	if d.deps.AAA == nil || h.ctx == nil {
		d.apply(d.engine.AAAAnswered(d.clock.Now(), a.IKESA, a.Seq, ike.AAAAnswer{Err: errors.New("no RADIUS servers configured")}))
		return
	}
	req := radius.Request{
		UserName: a.Identity, EAP: a.EAP, State: a.State,
		// As strongSwan's eap-radius writes them: address[port].
		CallingStationID: radius.StationID(a.Peer),
		CalledStationID:  radius.StationID(a.Local),
		NASAddress:       a.Local.Addr().Unmap(),
	}
	d.background(func(ctx context.Context) func(time.Time) {
		ans, err := d.deps.AAA.Exchange(ctx, req)
		out := ike.AAAAnswer{Err: err, EAP: ans.EAP, State: ans.State, MSK: ans.MSK}
		switch ans.Code {
		case radius.AccessAccept:
			out.Code = ike.AAAAccept
		case radius.AccessReject:
			out.Code = ike.AAAReject
		case radius.AccessChallenge:
			out.Code = ike.AAAChallenge
		}
		return func(now time.Time) { d.apply(d.engine.AAAAnswered(now, a.IKESA, a.Seq, out)) }
	})
}
