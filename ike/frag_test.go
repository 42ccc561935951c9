package ike

import (
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/wire"
)

// countFragments returns how many SKF datagrams ep sent and the largest datagram.
func countFragments(t *testing.T, ep *endpoint) (frags, largest int) {
	for _, d := range ep.sent {
		m, err := wire.ParseMessage(d.data)
		if err != nil {
			t.Fatalf("%s sent an unparseable datagram: %v", ep.name, err)
		}
		if _, ok := m.Payloads[len(m.Payloads)-1].(*wire.SKF); ok {
			frags++
		}
		largest = max(largest, len(d.data))
	}
	return frags, largest
}

func TestFragmentedIKEAuth(t *testing.T) {
	for _, suite := range []string{"aes128gcm16-prfsha256-x25519", "aes256-sha256-modp2048"} {
		t.Run(suite, func(t *testing.T) {
			n, gw, cl := pair(t, suite, "aes128gcm16", func(g, c *Config) {
				g.FragmentSize, c.FragmentSize = 200, 200
			})
			n.reorder = true
			if !n.run(time.Minute, established(gw, cl)) {
				t.Fatalf("not established: %v %v", cl.events, gw.events)
			}
			checkChildPair(t, gw, cl)
			cf, cmax := countFragments(t, cl)
			gf, gmax := countFragments(t, gw)
			if cf < 2 || gf < 2 {
				t.Errorf("fragments: client %d gateway %d, want IKE_AUTH fragmented both ways", cf, gf)
			}
			// IKE_SA_INIT is never fragmented; every other datagram fits 200 octets of IP.
			for _, ep := range []*endpoint{cl, gw} {
				for _, d := range ep.sent[1:] {
					if h, _ := wire.ParseHeader(d.data); h.Exchange != wire.IKE_SA_INIT && len(d.data)+20+8+4 > 200 {
						t.Errorf("%s sent a %d-octet %v datagram", ep.name, len(d.data), h.Exchange)
					}
				}
			}
			t.Logf("client sent %d fragments (largest datagram %d), gateway %d (%d)", cf, cmax, gf, gmax)
		})
	}
}

func TestFragmentLossAndRetransmission(t *testing.T) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		g.FragmentSize, c.FragmentSize = 200, 200
	})
	// Lose the gateway's second fragment of the IKE_AUTH response once, and the
	// client's first fragment of the request once.
	lostResp, lostReq := false, false
	n.drop = func(d datagram) bool {
		m, err := wire.ParseMessage(d.data)
		if err != nil {
			return false
		}
		skf, ok := m.Payloads[len(m.Payloads)-1].(*wire.SKF)
		if !ok {
			return false
		}
		if d.from.Addr() == gwAddr && skf.Number == 2 && !lostResp {
			lostResp = true
			return true
		}
		if d.from.Addr() == clientAddr && skf.Number == 1 && !lostReq {
			lostReq = true
			return true
		}
		return false
	}
	if !n.run(2*time.Minute, established(gw, cl)) {
		t.Fatalf("not established: %v %v", cl.events, gw.events)
	}
	if !lostResp || !lostReq {
		t.Fatal("nothing was lost")
	}
	checkChildPair(t, gw, cl)
	if gw.e.Drops().Retransmits.Load() != 1 {
		t.Errorf("gateway answered %d retransmissions from its cache, want 1 (triggered by fragment 1 only)", gw.e.Drops().Retransmits.Load())
	}
}

func TestNoFragmentationWithoutNegotiation(t *testing.T) {
	// A peer that does not announce IKEV2_FRAGMENTATION_SUPPORTED gets whole messages.
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		g.FragmentSize, c.FragmentSize = 200, 200
	})
	// Strip the notify from the client's IKE_SA_INIT on the wire.
	n.inflight = nil
	cl.e = mustNew(t, cl.e.cfg)
	n.nat = func(d *datagram) {
		m, err := wire.ParseMessage(d.data)
		if err != nil || m.Header.Exchange != wire.IKE_SA_INIT || m.Header.IsResponse() {
			return
		}
		var keep []wire.Payload
		for _, p := range m.Payloads {
			if nt, ok := p.(*wire.Notify); ok && nt.NotifyType == wire.IKEV2_FRAGMENTATION_SUPPORTED {
				continue
			}
			keep = append(keep, p)
		}
		m.Payloads = keep
		d.data = m.Append(nil)
	}
	n.apply(cl, cl.e.StartAll(n.now))
	// The client's AUTH covers its original IKE_SA_INIT, which the rewrite changed:
	// the gateway refuses it. What matters here is that no fragment was sent.
	n.run(time.Minute, nil)
	if f, _ := countFragments(t, gw); f != 0 {
		t.Errorf("gateway sent %d fragments to a peer that did not negotiate fragmentation", f)
	}
}
