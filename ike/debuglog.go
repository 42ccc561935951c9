package ike

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/mobikevpn/mobikevpn/wire"
)

// payloadSummary lists payloads as strongSwan's logs do: "SA KE No N(NATD_S_IP)".
func payloadSummary(ps []wire.Payload) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(' ')
		}
		switch p := p.(type) {
		case *wire.Notify:
			b.WriteString("N(" + p.NotifyType.String() + ")")
		case *wire.Delete:
			b.WriteString("D(" + p.Protocol.String() + ")")
		default:
			b.WriteString(p.Type().String())
		}
	}
	return b.String()
}

// logMessage logs one IKE message at debug level (never its keys or contents beyond
// the payload types).
func (e *Engine) logMessage(dir string, sa *IKESA, h wire.Header, local, remote netip.AddrPort, ps []wire.Payload) {
	if !e.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	kind := "request"
	if h.IsResponse() {
		kind = "response"
	}
	id := uint64(0)
	if sa != nil {
		id = sa.id
	}
	e.log.Debug(dir+" "+h.Exchange.String()+" "+kind, "sa", id, "msgid", h.MessageID, "local", local, "remote", remote, "payloads", payloadSummary(ps))
}
