// Package loadgen drives many IKEv2 initiators, or a flood of IKE_SA_INIT requests,
// against a gateway from many source addresses, for load and denial-of-service tests.
package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mobikevpn/mobikevpn/clock"
	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/esp"
	"github.com/mobikevpn/mobikevpn/ike"
	"github.com/mobikevpn/mobikevpn/mobike"
	"github.com/mobikevpn/mobikevpn/udp"
	"github.com/mobikevpn/mobikevpn/wire"
)

// Options configure a run.
type Options struct {
	Target  netip.AddrPort // the gateway's IKE port
	Sources netip.Prefix   // addresses to send from (the host must accept them: AnyIP)

	// Full handshakes.
	Count       int           // IKE SAs (each with a Child SA) to establish
	Concurrency int           // handshakes in flight at once
	PSK         []byte        // shared by every client
	IDPrefix    string        // client identities: <prefix><n>@bench.example.org
	RemoteID    string        // the gateway's identity
	Proposal    string        // IKE proposal
	ESP         string        // ESP proposal
	VIP         bool          // ask for a virtual IPv4 address
	RMobike     bool          // MOBIKE with 'R': the gateway may ask the clients to switch (and they do)
	Hold        time.Duration // keep the SAs this long, then delete them
	// DPD is the clients' liveness check delay (0: none). Reconnect are gateways a
	// client whose SA died (its liveness check unanswered) starts a new SA with,
	// client n first with the (n mod len)-th: a cluster without shared state, whose
	// clients find another node when theirs fails.
	DPD       time.Duration
	Reconnect []netip.Addr
	Timeout   time.Duration // give up on the whole run after this

	// Flood (IKE_SA_INIT only, no state on our side).
	Flood       bool
	Rate        int           // requests per second
	Duration    time.Duration // how long to flood
	EchoCookies bool          // answer COOKIE demands (an attacker with a real address can)

	Logger *slog.Logger
}

// Result is what a run measured.
type Result struct {
	Established int           `json:"established"`
	Failed      int           `json:"failed"`
	Elapsed     time.Duration `json:"elapsed_ns"`
	PerSecond   float64       `json:"handshakes_per_s"`
	// After the hold: IKE SAs whose Delete the gateway confirmed (or that it deleted
	// itself), and those given up on; how long the deletes took.
	Reconnected   int           `json:"reconnected"` // new SAs after one died (Reconnect)
	Deleted       int           `json:"deleted"`
	NotDeleted    int           `json:"not_deleted"`
	DeleteElapsed time.Duration `json:"delete_elapsed_ns"`
	// Flood.
	Sent       uint64 `json:"sent"`
	Answered   uint64 `json:"answered"`    // IKE_SA_INIT responses with an SA payload
	Cookies    uint64 `json:"cookies"`     // COOKIE demands
	WithCookie uint64 `json:"with_cookie"` // requests repeated with a cookie
}

func (o *Options) defaults() error {
	if !o.Target.IsValid() {
		return errors.New("no target address")
	}
	if !o.Sources.IsValid() {
		return errors.New("no source prefix")
	}
	if o.Sources.Addr().Is4() != o.Target.Addr().Is4() {
		return errors.New("sources and target are of different address families")
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 50
	}
	if o.IDPrefix == "" {
		o.IDPrefix = "client"
	}
	if o.Proposal == "" {
		o.Proposal = "aes128gcm16-prfsha256-x25519"
	}
	if o.ESP == "" {
		o.ESP = "aes128gcm16"
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// source returns the n-th address of the prefix (from the first host address on).
func source(p netip.Prefix, n int) netip.Addr {
	a := p.Masked().Addr()
	b := a.AsSlice()
	carry := n + 1
	for i := len(b) - 1; i >= 0 && carry > 0; i-- {
		v := int(b[i]) + carry
		b[i] = byte(v)
		carry = v >> 8
	}
	out, _ := netip.AddrFromSlice(b)
	return out
}

// sockets opens the two UDP ports a client needs (IKE and NAT-T) on wildcard addresses.
type sockets struct {
	ike, natt udp.Conn
	ikePort   uint16
	nattPort  uint16
}

func openSockets(v4 bool, listen func(port uint16) ([]udp.Conn, error)) (*sockets, error) {
	pick := func(cs []udp.Conn) udp.Conn {
		for _, c := range cs {
			if c.LocalAddr().Addr().Is4() == v4 {
				return c
			} else {
				c.Close()
			}
		}
		return nil
	}
	a, err := listen(0)
	if err != nil {
		return nil, err
	}
	b, err := listen(0)
	if err != nil {
		return nil, err
	}
	s := &sockets{ike: pick(a), natt: pick(b)}
	if s.ike == nil || s.natt == nil {
		return nil, errors.New("no socket of the target's address family")
	}
	s.ikePort, s.nattPort = s.ike.LocalAddr().Port(), s.natt.LocalAddr().Port()
	return s, nil
}

func (s *sockets) close() {
	s.ike.Close()
	s.natt.Close()
}

// read feeds in with the IKE datagrams of c (the non-ESP marker stripped on NAT-T).
func (s *sockets) read(c udp.Conn, natt bool, in chan<- ike.Datagram, stop <-chan struct{}) {
	msgs := make([]udp.Message, c.BatchSize())
	for i := range msgs {
		msgs[i].Buffer = make([]byte, 9000)
	}
	for {
		n, err := c.ReadBatch(msgs)
		if err != nil {
			return
		}
		for _, m := range msgs[:n] {
			d := m.Buffer[:m.N]
			if m.Truncated {
				continue
			}
			if natt {
				kind, ike := esp.SplitNATT(d)
				if kind != esp.NATTIKE {
					continue // ESP or keepalive: not ours to handle here
				}
				d = ike
			}
			select {
			case in <- ike.Datagram{Local: m.Local, Remote: m.Remote, Data: append([]byte(nil), d...)}:
			case <-stop:
				return
			}
		}
	}
}

func (s *sockets) send(local, remote netip.AddrPort, data []byte) error {
	c := s.ike
	if local.Port() == s.nattPort {
		c = s.natt
		data = esp.FrameIKE(data)
	}
	_, err := c.WriteBatch([]udp.Message{{Buffer: data, N: len(data), Local: local, Remote: remote}})
	return err
}

// Run establishes Count IKE SAs (or floods) and reports what it measured.
func Run(ctx context.Context, o Options) (Result, error) {
	if err := o.defaults(); err != nil {
		return Result{}, err
	}
	if o.Flood {
		return flood(ctx, o)
	}
	return handshakes(ctx, o, udp.Listen)
}

// clientRetransmit is the retransmission of the clients' requests.
var clientRetransmit = ike.Retransmit{Timeout: 2 * time.Second, Tries: 4, Base: 1.5}

// ClientConfig is the IKE configuration of the Count clients of a run: connection
// "c<n>" sends from the n-th address of Sources with identity
// <IDPrefix><n>@bench.example.org, PSK authentication and one Child SA. The engine's
// sockets are on ikePort and nattPort.
func ClientConfig(o Options, ikePort, nattPort uint16) (ike.Config, error) {
	if err := o.defaults(); err != nil {
		return ike.Config{}, err
	}
	ikeProps, err := ikecrypto.ParseIKEProposal(o.Proposal)
	if err != nil {
		return ike.Config{}, err
	}
	espProps, err := ikecrypto.ParseESPProposal(o.ESP)
	if err != nil {
		return ike.Config{}, err
	}
	cfg := ike.Config{
		IKEPort:    ikePort,
		NATTPort:   nattPort,
		PSK:        func(string, string) ([]byte, bool) { return o.PSK, true },
		Retransmit: clientRetransmit,
		Logger:     o.Logger,
	}
	for i := 0; i < o.Count; i++ {
		c := &ike.Conn{
			Name:        fmt.Sprintf("c%d", i),
			LocalAddrs:  []netip.Addr{source(o.Sources, i)},
			RemoteAddrs: append([]netip.Addr{o.Target.Addr()}, o.Reconnect...),
			DPDDelay:    o.DPD,
			RemotePort:  o.Target.Port(),
			Proposals:   ikeProps,
			Encap:       true,
			LocalID:     fmt.Sprintf("%s%d@bench.example.org", o.IDPrefix, i),
			RemoteID:    o.RemoteID,
			LocalAuth:   ike.AuthPSK,
			RemoteAuth:  ike.AuthPSK,
			Children: []*ike.ChildConfig{{
				Name:    "net",
				LocalTS: []ike.TSConfig{{Dynamic: true}},
				// Everything: the gateway narrows it to what it serves.
				RemoteTS:     []ike.TSConfig{{Selector: wire.TSFromPrefix(netip.MustParsePrefix("0.0.0.0/0"))}},
				ESPProposals: espProps,
			}},
		}
		if o.VIP {
			c.VIPs = []netip.Addr{netip.IPv4Unspecified()}
		}
		if o.RMobike {
			c.Mobike, c.RMobike = true, true
			c.SwitchAccept = mobike.SwitchPolicy{Additional: true}
		}
		cfg.Connections = append(cfg.Connections, c)
	}
	return cfg, nil
}

// handshakes runs the full handshakes on sockets that listen opens (udp.Listen; a
// test's in-memory network).
func handshakes(ctx context.Context, o Options, listen func(port uint16) ([]udp.Conn, error)) (Result, error) {
	if o.Count <= 0 {
		return Result{}, errors.New("count must be positive")
	}
	socks, err := openSockets(o.Target.Addr().Is4(), listen)
	if err != nil {
		return Result{}, err
	}
	defer socks.close()
	cfg, err := ClientConfig(o, socks.ikePort, socks.nattPort)
	if err != nil {
		return Result{}, err
	}
	eng, err := ike.New(cfg)
	if err != nil {
		return Result{}, err
	}
	in := make(chan ike.Datagram, 4096)
	g := &generator{
		o: o, eng: eng, socks: socks,
		ids: make(map[string]uint64, o.Count),
	}
	g.drv = &ike.Driver{Engine: eng, Clock: clock.System{}, Exec: g.apply, Datagrams: in}
	defer g.drv.Close()
	stop := make(chan struct{})
	defer close(stop)
	go socks.read(socks.ike, false, in, stop)
	go socks.read(socks.natt, true, in, stop)

	if err := g.establish(ctx); err != nil {
		return g.res, err
	}
	g.established = true
	// Hold the SAs (answering liveness checks), then delete them all.
	hold, endHold := context.WithTimeout(ctx, o.Hold)
	for g.drv.Step(hold) == nil {
	}
	endHold()
	g.deleteAll(ctx)
	return g.res, nil
}

// generator drives the client engine of `mobikevpn bench` on an ike.Driver, step by
// step, without a datapath.
type generator struct {
	o     Options
	eng   *ike.Engine
	drv   *ike.Driver // on the system's clock; its datagrams are the sockets'
	socks *sockets
	res   Result

	inflight int // handshakes under way
	// The current IKE SA of each connection (rekeys replace it). Once the hold is
	// over: the connections whose IKE SA's Delete is under way, and those whose Delete
	// is still to be sent. A connection is done when its current SA goes (an event
	// names it), whoever deleted it.
	ids      map[string]uint64
	deleting map[string]bool
	queue    []string
	// established says the handshakes are done (the hold runs): an SA that dies then
	// is started again with a Reconnect gateway; tries counts them per connection.
	established bool
	tries       map[string]int
}

func (g *generator) apply(acts []ike.Action) {
	for _, a := range acts {
		switch a := a.(type) {
		case ike.Send:
			g.socks.send(a.Local, a.Remote, a.Data)
		case ike.Event:
			if g.deleting != nil {
				g.deletingEvent(a)
			} else {
				g.event(a)
			}
		case ike.InstallInbound, ike.InstallOutbound, ike.RemoveInbound, ike.RemoveOutbound,
			ike.UpdateEndpoints, ike.VirtualIPs, ike.IKEKeysLog, ike.Resolve, ike.AAARequest:
			// No datapath here: only handshakes are measured.
		}
	}
}

// event counts an event while the SAs come up and are held.
func (g *generator) event(a ike.Event) {
	switch a.Kind {
	case ike.EventEstablished:
		g.ids[a.Conn] = a.IKESA
		if g.established {
			g.res.Reconnected++
			return
		}
		g.res.Established++
		g.inflight--
	case ike.EventRekeyed:
		g.ids[a.Conn] = a.IKESA
	case ike.EventDeleted:
		delete(g.ids, a.Conn)
		g.reconnect(a.Conn)
	case ike.EventFailed, ike.EventChildFailed:
		if g.established {
			g.reconnect(a.Conn) // a new SA that failed: the next gateway
			return
		}
		g.res.Failed++
		g.inflight--
		g.o.Logger.Debug("handshake failed", "reason", a.Reason)
	}
}

// reconnect starts connection conn again with its next Reconnect gateway, once the
// handshakes are done.
func (g *generator) reconnect(conn string) {
	if !g.established || len(g.o.Reconnect) == 0 {
		return
	}
	var n int
	fmt.Sscanf(conn, "c%d", &n)
	if g.tries == nil {
		g.tries = make(map[string]int)
	}
	to := g.o.Reconnect[(n+g.tries[conn])%len(g.o.Reconnect)]
	g.tries[conn]++
	if _, acts, err := g.eng.InitiateTo(time.Now(), conn, to); err == nil {
		g.apply(acts)
	}
}

// deletingEvent follows an event once the deletes have begun.
func (g *generator) deletingEvent(a ike.Event) {
	switch a.Kind {
	case ike.EventDeleted, ike.EventFailed:
		if id, ok := g.ids[a.Conn]; !ok || id != a.IKESA {
			return // an SA a rekey replaced
		}
		delete(g.ids, a.Conn)
		delete(g.deleting, a.Conn)
		if strings.HasPrefix(a.Reason, "timeout") {
			// Our Delete (or the liveness check before it) ran out of retransmissions:
			// the gateway never confirmed it.
			g.res.NotDeleted++
		} else {
			g.res.Deleted++
		}
	case ike.EventRekeyed:
		// The gateway rekeyed an SA meanwhile: the old one goes with the rekey, the new
		// one is deleted in its place. Had our Delete already gone out, the engine
		// deleted the new one itself (then Delete says nothing more); otherwise it is
		// still to be sent.
		g.ids[a.Conn] = a.IKESA
		if g.deleting[a.Conn] {
			delete(g.deleting, a.Conn)
			g.queue = append(g.queue, a.Conn)
		}
	}
}

// establish brings up o.Count IKE SAs, o.Concurrency at a time, within o.Timeout.
func (g *generator) establish(ctx context.Context) error {
	o := g.o
	deadline, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	start := time.Now()
	for next := 0; g.res.Established+g.res.Failed < o.Count; {
		for g.inflight < o.Concurrency && next < o.Count {
			_, acts, err := g.eng.Initiate(time.Now(), fmt.Sprintf("c%d", next))
			next++
			if err != nil {
				g.res.Failed++
				continue
			}
			g.inflight++
			g.apply(acts)
		}
		if g.drv.Step(deadline) != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("timeout: %d established, %d failed of %d", g.res.Established, g.res.Failed, o.Count)
		}
	}
	g.res.Elapsed = time.Since(start)
	g.res.PerSecond = float64(g.res.Established) / g.res.Elapsed.Seconds()
	o.Logger.Info("established", "sas", g.res.Established, "failed", g.res.Failed, "elapsed", g.res.Elapsed, "per_s", g.res.PerSecond)
	return nil
}

// deleteAll deletes the SAs, o.Concurrency at a time: a burst of thousands of Deletes
// would only overflow socket buffers and queues. Every Delete ends within the
// retransmission budget, confirmed or not (the engine reports either); should nothing
// move for longer, it gives up, counting what it gave up in Result.NotDeleted.
func (g *generator) deleteAll(ctx context.Context) {
	stall := retransmitBudget(clientRetransmit) + 5*time.Second
	g.deleting = make(map[string]bool, g.o.Concurrency)
	for conn := range g.ids {
		g.queue = append(g.queue, conn)
	}
	delStart := time.Now()
	progress := delStart // when a Delete last ended
	defer func() { g.res.DeleteElapsed = time.Since(delStart) }()
	for len(g.queue) > 0 || len(g.deleting) > 0 {
		for len(g.deleting) < g.o.Concurrency && len(g.queue) > 0 {
			conn := g.queue[len(g.queue)-1]
			g.queue = g.queue[:len(g.queue)-1]
			id, ok := g.ids[conn]
			if !ok {
				continue // gone meanwhile (and counted then)
			}
			acts, err := g.eng.Delete(time.Now(), id)
			if err != nil {
				// Every SA that goes says so in an event: this cannot happen.
				g.o.Logger.Warn("delete", "conn", conn, "err", err)
				delete(g.ids, conn)
				g.res.NotDeleted++
				continue
			}
			g.deleting[conn] = true
			g.apply(acts)
		}
		left := len(g.ids)
		stepCtx, cancel := context.WithDeadline(ctx, progress.Add(stall))
		err := g.drv.Step(stepCtx)
		cancel()
		if err != nil {
			if ctx.Err() == nil { // stalled
				g.o.Logger.Warn("deletes not confirmed", "pending", len(g.deleting), "not sent", len(g.queue))
			}
			g.res.NotDeleted += len(g.ids)
			return
		}
		if len(g.ids) < left {
			progress = time.Now()
		}
	}
}

// retransmitBudget is how long a request is retransmitted before it has failed.
func retransmitBudget(r ike.Retransmit) time.Duration {
	d, total := float64(r.Timeout), 0.0
	for range r.Tries + 1 {
		total += d
		d *= r.Base
	}
	return time.Duration(total)
}

// flood sends IKE_SA_INIT requests from ever new sources and SPIs at a fixed rate.
func flood(ctx context.Context, o Options) (Result, error) {
	var res Result
	if o.Rate <= 0 || o.Duration <= 0 {
		return res, errors.New("flood needs a rate and a duration")
	}
	socks, err := openSockets(o.Target.Addr().Is4(), udp.Listen)
	if err != nil {
		return res, err
	}
	defer socks.close()
	props, err := ikecrypto.ParseIKEProposal(o.Proposal)
	if err != nil {
		return res, err
	}
	props[0].Num = 1
	kex, err := ikecrypto.NewKeyExchange(firstGroup(props), rand.Reader)
	if err != nil {
		return res, err
	}
	nonce := make([]byte, 32)
	rand.Read(nonce)
	build := func(spi uint64, cookie []byte) []byte {
		var ps []wire.Payload
		if cookie != nil {
			ps = append(ps, &wire.Notify{NotifyType: wire.COOKIE, Data: cookie})
		}
		ps = append(ps, &wire.SA{Proposals: props[:1]}, &wire.KE{Group: kex.Group(), Data: kex.PublicKey()}, &wire.Nonce{Data: nonce})
		m := wire.Message{Header: wire.Header{SPIi: spi, Version: wire.Version, Exchange: wire.IKE_SA_INIT, Flags: wire.FlagInitiator}, Payloads: ps}
		return m.Append(nil)
	}
	var sent, answered, cookies, echoed atomic.Uint64
	in := make(chan ike.Datagram, 4096)
	stop := make(chan struct{})
	defer close(stop)
	go socks.read(socks.ike, false, in, stop)
	go func() {
		for {
			select {
			case d := <-in:
				m, err := wire.ParseMessage(d.Data)
				if err != nil {
					continue
				}
				if c := wire.FindNotify(m.Payloads, wire.COOKIE); c != nil {
					cookies.Add(1)
					if o.EchoCookies {
						socks.send(d.Local, d.Remote, build(m.Header.SPIi, c.Data))
						echoed.Add(1)
					}
				} else if wire.Find[*wire.SA](m.Payloads) != nil {
					answered.Add(1)
				}
			case <-stop:
				return
			}
		}
	}()
	size := 1 << 16
	if bits := o.Sources.Addr().BitLen() - o.Sources.Bits(); bits < 16 {
		size = 1<<bits - 2
	}
	interval := time.Second / time.Duration(o.Rate)
	tick := time.NewTicker(max(interval, time.Millisecond))
	defer tick.Stop()
	perTick := max(1, int(time.Millisecond/interval))
	end := time.Now().Add(o.Duration)
	start := time.Now()
	var spiB [8]byte
	for i := 0; time.Now().Before(end); {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return res, ctx.Err()
		}
		for k := 0; k < perTick; k++ {
			rand.Read(spiB[:])
			src := netip.AddrPortFrom(source(o.Sources, i%size), socks.ikePort)
			socks.send(src, o.Target, build(binary.BigEndian.Uint64(spiB[:]), nil))
			sent.Add(1)
			i++
		}
	}
	time.Sleep(500 * time.Millisecond)
	res.Elapsed = time.Since(start)
	res.Sent, res.Answered, res.Cookies, res.WithCookie = sent.Load(), answered.Load(), cookies.Load(), echoed.Load()
	res.PerSecond = float64(res.Sent) / res.Elapsed.Seconds()
	return res, nil
}

func firstGroup(props []wire.Proposal) uint16 {
	for _, t := range props[0].Transforms {
		if t.Type == wire.TransformDH {
			return t.ID
		}
	}
	return wire.DH_X25519
}
