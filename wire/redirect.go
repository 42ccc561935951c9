package wire

import (
	"net/netip"
)

// The gateway identity types of REDIRECT and REDIRECTED_FROM (RFC 5685 9.2).
const (
	GWIdentIPv4 = 1
	GWIdentIPv6 = 2
	GWIdentFQDN = 3
)

// NewRedirect returns a REDIRECT notify naming the gateway at gw (RFC 5685 8.1), with
// nonce, the initiator's Ni, in an IKE_SA_INIT response (nil elsewhere).
func NewRedirect(gw netip.Addr, nonce []byte) *Notify {
	return &Notify{NotifyType: REDIRECT, Data: append(gwIdent(gw), nonce...)}
}

// NewRedirectedFrom returns a REDIRECTED_FROM notify naming the gateway at gw that
// redirected us (RFC 5685 8.2).
func NewRedirectedFrom(gw netip.Addr) *Notify {
	return &Notify{NotifyType: REDIRECTED_FROM, Data: gwIdent(gw)}
}

func gwIdent(gw netip.Addr) []byte {
	gw = gw.Unmap()
	t := byte(GWIdentIPv6)
	if gw.Is4() {
		t = GWIdentIPv4
	}
	a := gw.AsSlice()
	return append([]byte{t, byte(len(a))}, a...)
}

// Redirect returns what a REDIRECT or REDIRECTED_FROM notify carries: the gateway's
// address, or its name for an FQDN identity, and the nonce data after it (REDIRECT in
// an IKE_SA_INIT response). A malformed one gives an INVALID_SYNTAX *Error.
func (n *Notify) Redirect() (gw netip.Addr, fqdn string, nonce []byte, err error) {
	if n.NotifyType != REDIRECT && n.NotifyType != REDIRECTED_FROM {
		return netip.Addr{}, "", nil, syntaxErr(PayloadNotify, "%s carries no gateway identity", n.NotifyType)
	}
	d := n.Data
	if len(d) < 2 || len(d) < 2+int(d[1]) {
		return netip.Addr{}, "", nil, syntaxErr(PayloadNotify, "%s: %d octets of data, too short for its gateway identity", n.NotifyType, len(d))
	}
	id, rest := d[2:2+int(d[1])], d[2+int(d[1]):]
	switch d[0] {
	case GWIdentIPv4, GWIdentIPv6:
		want := 4
		if d[0] == GWIdentIPv6 {
			want = 16
		}
		if len(id) != want {
			return netip.Addr{}, "", nil, syntaxErr(PayloadNotify, "%s: an address of type %d in %d octets", n.NotifyType, d[0], len(id))
		}
		gw, _ = netip.AddrFromSlice(id)
	case GWIdentFQDN:
		if len(id) == 0 {
			return netip.Addr{}, "", nil, syntaxErr(PayloadNotify, "%s: an empty FQDN", n.NotifyType)
		}
		fqdn = string(id)
	default:
		return netip.Addr{}, "", nil, syntaxErr(PayloadNotify, "%s: gateway identity type %d", n.NotifyType, d[0])
	}
	if n.NotifyType == REDIRECTED_FROM && len(rest) > 0 {
		return netip.Addr{}, "", nil, syntaxErr(PayloadNotify, "REDIRECTED_FROM: %d octets after the gateway identity", len(rest))
	}
	return gw, fqdn, rest, nil
}
