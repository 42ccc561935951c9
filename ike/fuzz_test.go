package ike

import (
	"net/netip"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/wire"
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
		if len(gw.e.store.byID) > 1000 {
			t.Fatalf("%d SAs", len(gw.e.store.byID))
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

// FuzzAuthenticatedRequest sends the gateway requests that decrypt and authenticate
// (sealed with the real SA keys) but carry arbitrary payload chains: every handler
// behind the SK payload must cope with authentic nonsense.
func FuzzAuthenticatedRequest(f *testing.F) {
	seeds := [][]wire.Payload{
		{&wire.Delete{Protocol: wire.ProtoIKE}},
		{&wire.Delete{Protocol: wire.ProtoESP, SPIs: []uint32{1, 2, 3}}},
		{&wire.Notify{NotifyType: wire.UPDATE_SA_ADDRESSES}, &wire.Notify{NotifyType: wire.COOKIE2, Data: make([]byte, 16)}},
		{&wire.Notify{NotifyType: wire.SWITCH_TO_IP_ADDRESS, Data: []byte{203, 0, 113, 1}}},
		{wire.NewAddressNotify(wire.ADDITIONAL_IP4_ADDRESS, gwAddr2), &wire.Notify{NotifyType: wire.NO_ADDITIONAL_ADDRESSES}},
		{&wire.Notify{Protocol: wire.ProtoESP, SPI: []byte{0, 0, 1, 0}, NotifyType: wire.REKEY_SA}, &wire.SA{}, &wire.Nonce{Data: make([]byte, 32)}},
		{&wire.SA{Proposals: mustIKE(f, "aes128gcm16-prfsha256-x25519")}, &wire.Nonce{Data: make([]byte, 32)}, &wire.KE{Group: 31, Data: make([]byte, 32)}},
		{&wire.TS{Initiator: true}, &wire.TS{}, &wire.CP{CfgType: wire.CFG_REQUEST}},
	}
	for _, s := range seeds {
		f.Add(uint8(37), uint8(s[0].Type()), wire.AppendPayloads(nil, s))
		f.Add(uint8(36), uint8(s[0].Type()), wire.AppendPayloads(nil, s))
	}
	var n *testNet
	var gw, cl *endpoint
	f.Fuzz(func(t *testing.T, ex, first uint8, body []byte) {
		if n == nil || len(gw.e.store.byID) != 1 || len(cl.e.store.byID) != 1 || len(gw.e.store.byID) > 100 {
			n, gw, cl = mobikePair(&testing.T{}, nil)
		}
		var gsa, csa *IKESA
		for _, sa := range gw.e.store.byID {
			gsa = sa
		}
		for _, sa := range cl.e.store.byID {
			csa = sa
		}
		if gsa == nil || csa == nil || gsa.state != stateEstablished {
			n = nil
			return
		}
		h := csa.header(wire.ExchangeType(34+ex%4), gsa.win.peerReqID, false)
		bodyLen := csa.skOut.SealedLen(len(body))
		data := wire.AppendSKHeader(nil, h, wire.PayloadType(first), bodyLen)
		data, err := csa.skOut.Seal(data, body)
		if err != nil {
			t.Fatal(err)
		}
		n.apply(gw, gw.e.HandleDatagram(n.now, gsa.local, gsa.remote, data))
		n.run(time.Second, nil)
		if len(gw.e.store.byID) > 4 || len(gw.e.store.spisIn) > 16 {
			t.Fatalf("state grows: %d SAs, %d SPIs", len(gw.e.store.byID), len(gw.e.store.spisIn))
		}
	})
}
