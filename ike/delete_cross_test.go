package ike

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/wire"
)

// The client deletes its IKE SA while an exchange of the gateway's crosses the Delete
// (the load generator's deletes against a gateway that rekeys and checks liveness).
// Every order of the datagrams in flight is tried, and with any one or two of them
// lost (then retransmitted by the timers; the copies sent then are not lost). Whatever the order, the SA must go on both
// ends, and the client must report it: EventDeleted (or EventFailed) for the SA it was
// asked to delete, or EventRekeyed naming it as Replaces and then that for the new one,
// within the retransmission budget.

// crossRetransmit is the retransmission of both ends: the budget (the first try and
// three more, and a last wait) is 1+2+4+8 = 15 s.
var crossRetransmit = Retransmit{Timeout: time.Second, Tries: 3, Base: 2}

const crossBudget = 15 * time.Second

// crossStep is one choice of the exploration: deliver or lose in-flight datagram idx.
type crossStep struct {
	idx  int
	drop bool
}

// crossCase sets up what is in flight when the client deletes: start runs after
// establishment and returns the id the client is asked to delete.
type crossCase struct {
	name  string
	start func(t *testing.T, n *testNet, gw, cl *endpoint) uint64
}

func (n *testNet) deliverStep(s crossStep) {
	d := n.inflight[s.idx]
	n.inflight = append(n.inflight[:s.idx:s.idx], n.inflight[s.idx+1:]...)
	if s.drop {
		return
	}
	if ep := n.endpointFor(d.to.Addr()); ep != nil {
		n.delivered++
		n.driver(ep).HandleDatagram(n.now, Datagram{Local: d.to, Remote: d.from, Data: d.data})
	}
}

// describe names the in-flight datagrams, for failure messages.
func (n *testNet) describe() string {
	var s []string
	for _, d := range n.inflight {
		h, err := wire.ParseHeader(d.data)
		if err != nil {
			s = append(s, "?")
			continue
		}
		who := "gw"
		if d.from.Addr() == clientAddr {
			who = "cl"
		}
		kind := "req"
		if h.IsResponse() {
			kind = "resp"
		}
		s = append(s, fmt.Sprintf("%s:%s-%s#%d", who, h.Exchange, kind, h.MessageID))
	}
	return "[" + strings.Join(s, " ") + "]"
}

func crossPair(t *testing.T, gwDPD time.Duration) (*testNet, *endpoint, *endpoint) {
	n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", func(g, c *Config) {
		g.Rand, c.Rand = seededRand(201), seededRand(202)
		g.Retransmit, c.Retransmit = crossRetransmit, crossRetransmit
		// Only the exchanges a case starts: no timers of their own meanwhile.
		g.Connections[0].DPDDelay, c.Connections[0].DPDDelay = gwDPD, 0
	})
	if !n.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	return n, gw, cl
}

// gwRekeyIKE starts the gateway's IKE SA rekey; deliver datagrams of it are handed
// over before the client deletes (0: the request is in flight; 1: the client's
// response; 2: the gateway's Delete of the old SA). toNew: the client is asked to
// delete the new SA (it saw EventRekeyed) instead of the one it had.
func gwRekeyIKE(deliver int, toNew bool) func(t *testing.T, n *testNet, gw, cl *endpoint) uint64 {
	return func(t *testing.T, n *testNet, gw, cl *endpoint) uint64 {
		old := onlySA(t, cl).id
		n.apply(gw, gw.e.RekeyIKE(n.now, onlySA(t, gw).id))
		for range deliver {
			n.deliverStep(crossStep{})
		}
		if len(n.inflight) != 1 {
			t.Fatalf("in flight: %s", n.describe())
		}
		if toNew {
			ev := cl.hasEvent(EventRekeyed)
			if ev == nil || ev.Replaces != old {
				t.Fatalf("client did not rekey: %+v", cl.events)
			}
			return ev.IKESA
		}
		return old
	}
}

// gwRekeyChild starts the gateway's rekey of the Child SA; deliver as gwRekeyIKE's
// (2: the gateway's Delete of the old Child SA is in flight).
func gwRekeyChild(deliver int) func(t *testing.T, n *testNet, gw, cl *endpoint) uint64 {
	return func(t *testing.T, n *testNet, gw, cl *endpoint) uint64 {
		g, _ := checkChildPair(t, gw, cl)
		n.apply(gw, gw.e.RekeyChild(n.now, g.In.SPI))
		for range deliver {
			n.deliverStep(crossStep{})
		}
		if len(n.inflight) != 1 {
			t.Fatalf("in flight: %s", n.describe())
		}
		return onlySA(t, cl).id
	}
}

// gwLiveness lets the gateway's liveness check go out.
func gwLiveness(t *testing.T, n *testNet, gw, cl *endpoint) uint64 {
	if !n.run(time.Minute, func() bool { return len(n.inflight) > 0 }) {
		t.Fatal("no liveness check")
	}
	if p := onlySA(t, gw).win.pending; p == nil || p.kind != reqDPD || len(n.inflight) != 1 {
		t.Fatalf("in flight: %s", n.describe())
	}
	return onlySA(t, cl).id
}

// clientBusy has the client's own liveness check outstanding (the Delete waits behind
// it) while the gateway's IKE SA rekey request is in flight.
func clientBusy(t *testing.T, n *testNet, gw, cl *endpoint) uint64 {
	sa := onlySA(t, cl)
	cl.e.queueRequest(n.now, sa, cl.e.dpdRequest(sa))
	n.apply(cl, cl.e.take())
	n.apply(gw, gw.e.RekeyIKE(n.now, onlySA(t, gw).id))
	if len(n.inflight) != 2 {
		t.Fatalf("in flight: %s", n.describe())
	}
	return sa.id
}

// clientRekeying has the client's own IKE SA rekey outstanding when it is asked to
// delete (the Delete waits behind it).
func clientRekeying(t *testing.T, n *testNet, gw, cl *endpoint) uint64 {
	sa := onlySA(t, cl)
	n.apply(cl, cl.e.RekeyIKE(n.now, sa.id))
	if len(n.inflight) != 1 {
		t.Fatalf("in flight: %s", n.describe())
	}
	return sa.id
}

var crossCases = []crossCase{
	{"a-ike-rekey-request", gwRekeyIKE(0, false)},
	{"b-ike-rekey-response", gwRekeyIKE(1, false)},
	{"b-ike-rekey-response-delete-new", gwRekeyIKE(1, true)},
	{"c-old-sa-delete", gwRekeyIKE(2, false)},
	{"c-old-sa-delete-delete-new", gwRekeyIKE(2, true)},
	{"d-child-rekey-request", gwRekeyChild(0)},
	{"d-child-rekey-response", gwRekeyChild(1)},
	{"d-old-child-delete", gwRekeyChild(2)},
	{"e-liveness-check", gwLiveness},
	{"queued-behind-own-request", clientBusy},
	{"queued-behind-own-ike-rekey", clientRekeying},
}

// deletedOrReplaced reports whether the client's events say IKE SA id is gone: deleted
// (or failed), or rekeyed into one that is.
func deletedOrReplaced(events []Event, id uint64) bool {
	for i := 0; i < 10; i++ {
		next := uint64(0)
		for _, ev := range events {
			if ev.IKESA == id && (ev.Kind == EventDeleted || ev.Kind == EventFailed) {
				return true
			}
			if ev.Kind == EventRekeyed && ev.Replaces == id {
				next = ev.IKESA
			}
		}
		if next == 0 {
			return false
		}
		id = next
	}
	return false
}

func liveSAs(ep *endpoint) []string {
	var s []string
	for _, sa := range ep.e.sorted() {
		if sa.state == stateEstablished && sa.rekeyedTo == nil {
			s = append(s, fmt.Sprintf("%d:%s", sa.id, sa.state))
		}
	}
	return s
}

func allSAs(ep *endpoint) []string {
	var s []string
	for _, sa := range ep.e.sorted() {
		s = append(s, fmt.Sprintf("%d:%s(rekeyed=%v expire=%v)", sa.id, sa.state, sa.rekeyedTo != nil, !sa.expireAt.IsZero()))
	}
	return s
}

// runCross plays one sequence of choices: if datagrams are still in flight after them
// it reports how many, else it lets the timers run and checks the outcome (done).
func runCross(t *testing.T, c crossCase, steps []crossStep) (inflight int, done bool) {
	var gwDPD time.Duration
	if strings.HasPrefix(c.name, "e-") {
		gwDPD = 5 * time.Second
	}
	n, gw, cl := crossPair(t, gwDPD)
	id := c.start(t, n, gw, cl)
	acts, err := cl.e.Delete(n.now, id)
	if err != nil {
		t.Fatalf("Delete(%d): %v", id, err)
	}
	n.apply(cl, acts)
	var trace []string
	for _, s := range steps {
		if s.idx >= len(n.inflight) {
			t.Fatalf("step %+v beyond %s", s, n.describe())
		}
		trace = append(trace, fmt.Sprintf("%s%d of %s", map[bool]string{false: "deliver ", true: "lose "}[s.drop], s.idx, n.describe()))
		n.deliverStep(s)
	}
	if len(n.inflight) > 0 {
		return len(n.inflight), false
	}
	deleted := n.now
	gone := func() bool {
		return deletedOrReplaced(cl.events, id) && len(liveSAs(cl)) == 0 && len(liveSAs(gw)) == 0
	}
	ok := n.run(crossBudget, gone)
	if !ok {
		t.Errorf("after %v: client events %+v, live SAs: client %v gateway %v\n  %s",
			n.now.Sub(deleted), cl.events, liveSAs(cl), liveSAs(gw), strings.Join(trace, "\n  "))
		return 0, true
	}
	// With two datagrams lost at most, every Delete is confirmed: none runs out of
	// retransmissions.
	for _, ep := range []*endpoint{cl, gw} {
		for _, ev := range ep.events {
			if ev.Kind == EventDeleted && strings.HasPrefix(ev.Reason, "timeout") {
				t.Errorf("%s: IKE SA %d timed out: %+v\n  %s", ep.name, ev.IKESA, ep.events, strings.Join(trace, "\n  "))
				return 0, true
			}
		}
	}
	// What is left goes by a bounded timer: an SA the peer rekeyed waits rekeyedSALife
	// for the peer's Delete, an SA being deleted its retransmissions.
	n.run(rekeyedSALife+crossBudget, func() bool { return len(gw.e.store.byID) == 0 && len(cl.e.store.byID) == 0 })
	if len(gw.e.store.byID) != 0 || len(cl.e.store.byID) != 0 {
		t.Errorf("SAs left: client %v gateway %v\n  %s", allSAs(cl), allSAs(gw), strings.Join(trace, "\n  "))
	}
	if len(gw.outbound)+len(gw.inbound)+len(cl.outbound)+len(cl.inbound) != 0 {
		t.Errorf("Child SAs left: gateway %d/%d client %d/%d", len(gw.inbound), len(gw.outbound), len(cl.inbound), len(cl.outbound))
	}
	return 0, true
}

func TestDeleteCrossingGatewayExchanges(t *testing.T) {
	for _, c := range crossCases {
		t.Run(c.name, func(t *testing.T) {
			leaves := 0
			var explore func(steps []crossStep, dropped int)
			explore = func(steps []crossStep, dropped int) {
				if t.Failed() {
					return
				}
				k, done := runCross(t, c, steps)
				if done {
					leaves++
					if leaves > 20000 {
						t.Fatal("too many orders")
					}
					return
				}
				for i := range k {
					explore(append(steps[:len(steps):len(steps)], crossStep{idx: i}), dropped)
					if dropped < 2 {
						explore(append(steps[:len(steps):len(steps)], crossStep{idx: i, drop: true}), dropped+1)
					}
				}
			}
			explore(nil, 0)
			t.Logf("%d orders", leaves)
		})
	}
}

// The answer kept for a Delete of a gone IKE SA goes only to byte-identical copies
// from where the Delete came, at most maxDeletedAnswers times, and is forgotten after
// deletedSALife.
func TestDeletedSAAnswerBounds(t *testing.T) {
	n, gw, cl := crossPair(t, 0)
	acts, err := cl.e.Delete(n.now, onlySA(t, cl).id)
	if err != nil {
		t.Fatal(err)
	}
	n.apply(cl, acts)
	if len(n.inflight) != 1 {
		t.Fatalf("in flight: %s", n.describe())
	}
	del := n.inflight[0]
	n.deliverStep(crossStep{})
	n.inflight = nil // the answer is lost
	if len(gw.e.store.byID) != 0 {
		t.Fatal("gateway kept the SA")
	}
	copyOf := func(d datagram) []Action {
		return gw.e.HandleDatagram(n.now, d.to, d.from, d.data)
	}
	sends := func(acts []Action) int {
		c := 0
		for _, a := range acts {
			if _, ok := a.(Send); ok {
				c++
			}
		}
		return c
	}
	altered := del
	altered.data = append([]byte(nil), del.data...)
	altered.data[len(altered.data)-1] ^= 1
	if sends(copyOf(altered)) != 0 {
		t.Error("an altered copy was answered")
	}
	elsewhere := del
	elsewhere.from = netip.AddrPortFrom(netip.MustParseAddr("203.0.113.9"), del.from.Port())
	if sends(copyOf(elsewhere)) != 0 {
		t.Error("a copy from elsewhere was answered")
	}
	if sends(copyOf(del)) != 1 {
		t.Fatal("the retransmitted Delete was not answered")
	}
	for range maxDeletedAnswers - 1 {
		copyOf(del)
	}
	if sends(copyOf(del)) != 0 {
		t.Errorf("answered more than %d times", maxDeletedAnswers)
	}
	// A fresh one is forgotten after deletedSALife.
	n2, gw2, cl2 := crossPair(t, 0)
	acts, _ = cl2.e.Delete(n2.now, onlySA(t, cl2).id)
	n2.apply(cl2, acts)
	del = n2.inflight[0]
	n2.deliverStep(crossStep{})
	n2.inflight = nil
	if len(gw2.e.deleted.bySPI) != 1 {
		t.Fatalf("%d answers kept", len(gw2.e.deleted.bySPI))
	}
	gw2.e.Tick(n2.now.Add(deletedSALife))
	if len(gw2.e.deleted.bySPI) != 0 || len(gw2.e.deleted.order) != 0 {
		t.Errorf("answers kept after deletedSALife: %d", len(gw2.e.deleted.bySPI))
	}
	if len(gw2.e.HandleDatagram(n2.now.Add(deletedSALife), del.to, del.from, del.data)) != 0 {
		t.Error("answered after deletedSALife")
	}
}
