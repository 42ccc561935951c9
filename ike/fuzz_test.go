package ike

import (
	"net/netip"
	"testing"
	"time"
)

// FuzzResponderDatagram feeds arbitrary datagrams to a gateway that has one established
// SA and one half-open SA: it must never panic, and its SA table must stay bounded.
func FuzzResponderDatagram(f *testing.F) {
	n, gw, cl := pair(&testing.T{}, "aes128gcm16-prfsha256-x25519", "aes128gcm16", nil)
	n.run(time.Minute, established(gw, cl))
	for _, d := range cl.sent {
		f.Add(d.data)
	}
	f.Add(initRequest(f, 99))
	f.Fuzz(func(t *testing.T, data []byte) {
		local := netip.AddrPortFrom(gwAddr, 4500)
		remote := netip.AddrPortFrom(clientAddr, 4500)
		gw.e.HandleDatagram(n.now, local, remote, data)
		gw.e.HandleDatagram(n.now, netip.AddrPortFrom(gwAddr, 500), netip.AddrPortFrom(clientAddr, 500), data)
		if len(gw.e.byID) > 1000 {
			t.Fatalf("%d SAs", len(gw.e.byID))
		}
	})
}

// FuzzInitiatorDatagram feeds arbitrary responses to a client waiting for its
// IKE_SA_INIT and IKE_AUTH responses.
func FuzzInitiatorDatagram(f *testing.F) {
	n, gw, cl := pair(&testing.T{}, "aes128gcm16-prfsha256-x25519", "aes128gcm16", nil)
	n.run(time.Minute, established(gw, cl))
	for _, d := range gw.sent {
		f.Add(d.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n2, _, c2 := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", nil)
		c2.e.HandleDatagram(n2.now, netip.AddrPortFrom(clientAddr, 500), netip.AddrPortFrom(gwAddr, 500), data)
		cl.e.HandleDatagram(n.now, netip.AddrPortFrom(clientAddr, 4500), netip.AddrPortFrom(gwAddr, 4500), data)
	})
}
