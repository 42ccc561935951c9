// Package esp is the Child SA datapath: it moves packets between a TUN device and
// UDP-encapsulated ESP (RFC 4303, RFC 3948) with in-place AEAD, anti-replay, traffic
// selector enforcement and batched I/O. It reads the NAT-T sockets, where ESP shares
// the port with IKE behind the non-ESP marker, and hands those IKE messages to the
// caller unread; the IKE port's sockets are not its business.
package esp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mobikevpn/mobikevpn/udp"
	"golang.zx2c4.com/wireguard/tun"
)

const (
	// MaxIKEMessage is the largest IKE message received intact on the NAT-T port
	// (behind the 4-byte non-ESP marker): the read buffers hold at least that.
	MaxIKEMessage = 8192
	// maxBatch bounds the packets handled per read.
	maxBatch = 128
	// outHeadroom is where TUN reads start in a send buffer: room for the longest ESP
	// header and IV, which seal writes in front of the inner packet.
	outHeadroom = 32
	// tunWriteOffset is the offset passed to tun.Device.Write: the bytes in front of
	// each inner packet (at least the 10 of the Linux virtio header). Every ESP header
	// plus IV is at least this long, so decrypted packets are written where they lie.
	tunWriteOffset = 16
	// minMTU and maxMTU bound Config.MTU.
	minMTU = 576
	maxMTU = 65535
)

// Config is what a Datapath is built from. The Datapath owns TUN and Conns: Run closes
// them when it returns.
type Config struct {
	// TUN is the device inner packets are read from and written to.
	TUN tun.Device
	// Conns are the wildcard UDP sockets of the NAT-T port, IPv4 and IPv6: every
	// datagram on them is ESP, an IKE message behind the RFC 3948 non-ESP marker, or a
	// NAT keepalive (see SplitNATT). At most one per address family and port. The
	// caller may send IKE on them too (udp.Conn's writes are safe for concurrent use);
	// the IKE port's sockets are not given here.
	Conns []udp.Conn
	// OnIKE receives each IKE message of the NAT-T sockets (marker stripped) with the
	// local address it arrived at and its source. pkt is owned by the callee. It is
	// called from the receiving goroutine and must not block for long.
	OnIKE func(pkt []byte, local, remote netip.AddrPort)
	// Logger receives debug lines about drops (rate-limited) and errors. Nil discards.
	Logger *slog.Logger
	// MTU is the inner MTU (the TUN device's); it sizes the buffers. Zero asks the TUN.
	MTU int
	// Workers is how many goroutines seal or open the packets of one large batch
	// together; 0 means GOMAXPROCS (at most maxWorkers), 1 keeps the crypto on the
	// goroutine that read the batch.
	Workers int
	// NoOffload turns UDP GSO and GRO off on the sockets. By default they are
	// used where the socket (udp.Offloader) and the kernel support them. The TUN
	// device's own offloads are the device's business.
	NoOffload bool
}

// maxWorkers caps Config.Workers.
const maxWorkers = 16

// SAConfig describes one Child SA in one direction.
type SAConfig struct {
	// SPI is the SPI in the ESP header: ours for an inbound SA, the peer's for an
	// outbound one. Values below 256 are reserved (RFC 4303 section 2.1).
	SPI  uint32
	Keys Keys
	// ESN enables 64-bit extended sequence numbers (RFC 4303 section 2.2.1).
	ESN bool
	// ReplayWindow is the inbound anti-replay window in packets; 0 means
	// DefaultReplayWindow, and it is raised to at least MinReplayWindow.
	ReplayWindow int
	// LocalTS and RemoteTS are the traffic selectors: for an outbound SA a packet's
	// source must be in LocalTS and its destination in RemoteTS; for an inbound SA the
	// decrypted packet's source must be in RemoteTS and its destination in LocalTS.
	LocalTS, RemoteTS []Selector
	// Keepalive, for an outbound SA, sends an RFC 3948 NAT keepalive to the remote
	// endpoint when nothing was sent on this SA for that long. Zero disables it.
	Keepalive time.Duration
	// Limits are the SA's volume limits, reported through LimitsCrossed.
	Limits Limits
	// Seq continues an SA that another datapath ran before (an SA moved between
	// processes or hosts). Outbound: the last sequence number the other side used or
	// reserved; the first packet here carries Seq+1, so that no (SA, sequence number)
	// pair, and no AEAD nonce, is used twice. Inbound: the highest sequence number the
	// other side authenticated; it and everything below it in the window count as seen,
	// so that no packet accepted there is accepted again here. 0: a new SA.
	Seq uint64
	// Lease, if not 0, is the last outbound sequence number the SA may use until
	// LeaseOutbound raises it: what a cluster node has reserved for it in the shared
	// store, above which whoever continues the SA after this node starts.
	Lease uint64
}

// Counters are the traffic of one SA.
type Counters struct {
	Bytes   uint64    // inner (plaintext) bytes
	Packets uint64    // inner packets
	Dropped uint64    // packets of this SA dropped (authentication, replay, trailer, selectors; out of sequence numbers, too big)
	Seq     uint64    // outbound: the last sequence number used; inbound: the highest authenticated one
	Last    time.Time // when the last packet was sent or accepted; zero if none
}

// Datapath moves packets between the TUN device and ESP-in-UDP for the installed SAs.
// Its methods are safe for concurrent use.
type Datapath struct {
	tun        tun.Device
	conns      []*connInfo
	onIKE      func(pkt []byte, local, remote netip.AddrPort)
	log        *slog.Logger
	mtu        int
	outBatch   int
	outBufLen  int
	inBufLen   int
	epoch      time.Time
	workers    int
	jobs       chan *part // parts of forked batches for the helpers; nil with one worker
	splitBytes int        // least payload per forked part (tests lower it)
	groArena   int        // bytes for the TUN GRO heads of each socket reader; 0 turns them off

	in        atomic.Pointer[inTable]
	out       atomic.Pointer[outTable]
	mu        sync.Mutex // serialises changes to in and out
	retired   retiredTraffic
	nextOrder uint64 // installation order of outbound SAs; guarded by mu

	drops drops
	kick  chan struct{} // wakes the keepalive goroutine when an SA with keepalives is installed

	limitMu  sync.Mutex    // guards limits and the saLimits.fired changes
	limits   []LimitEvent  // crossed limits not taken yet
	limitSig chan struct{} // LimitsCrossed

	started   atomic.Bool
	closeOnce sync.Once

	// heldBytes is what every SA being handed over holds (handover.go).
	heldBytes atomic.Int64
}

// connInfo is one NAT-T socket. Its writes need no lock of ours: udp.Conn serialises
// concurrent WriteBatch calls, and the caller sends IKE on the same socket.
type connInfo struct {
	c     udp.Conn
	local netip.AddrPort
	port  uint16
	is4   bool
	gro   bool // UDP GRO is on: reads may return trains of datagrams
	gso   bool // UDP GSO is on (for the logs)
}

// endpoint is where an outbound SA sends; it is replaced as a whole (MOBIKE).
type endpoint struct {
	local, remote netip.AddrPort
	src           netip.AddrPort // udp.Message.Local: local, or zero to let the kernel choose
	conn          int
}

type saCounters struct {
	bytes, packets, dropped atomic.Uint64
	last                    atomic.Int64 // Datapath.mono() + 1 of the last packet; 0 = none
	// atPackets and atBytes are the counts from which Datapath.crossed must look at
	// the limits (math.MaxUint64: never again).
	atPackets, atBytes atomic.Uint64
	lim                *saLimits
}

type inSA struct {
	spi    uint32
	suite  *suite
	esn    bool
	local  []sel
	remote []sel
	l4     bool
	mu     sync.Mutex // guards win, pending and hand
	win    replayWindow
	ctr    saCounters
	// pending counts the packets that passed the window's check and are not yet
	// committed or dropped (in a batch being opened); hand is set while the SA is
	// handed to another datapath (handover.go).
	pending int
	hand    *handState
}

type outSA struct {
	child    uint64
	order    uint64 // installation order; a replacement keeps its predecessor's
	spi      uint32
	suite    *suite
	esn      bool
	local    []sel
	remote   []sel
	l4       bool
	seq      atomic.Uint64 // the last sequence number used
	seqMax   atomic.Uint64 // the last sequence number it may use (lowered at a hard limit or by ReserveOutbound)
	seqLimit uint64        // seqMax as installed, without a lease
	// leaseCap is the cap its lease put on seqMax (LeaseOutbound; 0: no lease).
	leaseCap  atomic.Uint64
	seqSoft   uint64 // the sequence number whose use asks for a rekey
	ep        atomic.Pointer[endpoint]
	keepalive time.Duration
	lastSent  atomic.Int64 // mono() of the last ESP packet or keepalive sent
	ctr       saCounters
}

// New checks cfg and returns a Datapath with no SAs. Call Run to move packets.
func New(cfg Config) (*Datapath, error) {
	if cfg.TUN == nil {
		return nil, errors.New("esp: no TUN device")
	}
	if len(cfg.Conns) == 0 {
		return nil, errors.New("esp: no sockets")
	}
	mtu := cfg.MTU
	if mtu == 0 {
		m, err := cfg.TUN.MTU()
		if err != nil {
			return nil, fmt.Errorf("esp: TUN MTU: %w", err)
		}
		mtu = m
	}
	if mtu < minMTU || mtu > maxMTU {
		return nil, fmt.Errorf("esp: MTU %d out of range [%d, %d]", mtu, minMTU, maxMTU)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	workers := cfg.Workers
	if workers <= 0 {
		workers = min(runtime.GOMAXPROCS(0), maxWorkers)
	}
	workers = min(workers, maxWorkers)
	d := &Datapath{
		workers:    workers,
		groArena:   groArenaLen,
		splitBytes: minSplitBytes,
		tun:        cfg.TUN,
		onIKE:      cfg.OnIKE,
		log:        log,
		mtu:        mtu,
		outBatch:   min(max(cfg.TUN.BatchSize(), 1), maxBatch),
		epoch:      time.Now(),
		kick:       make(chan struct{}, 1),
		limitSig:   make(chan struct{}, 1),
	}
	d.outBufLen = outHeadroom + mtu + maxTailLen
	d.inBufLen = max(maxHeadLen+mtu+maxTailLen, 4+MaxIKEMessage)
	for _, c := range cfg.Conns {
		if c == nil {
			return nil, errors.New("esp: nil socket")
		}
		la := c.LocalAddr()
		if !la.Addr().IsValid() || la.Port() == 0 {
			return nil, fmt.Errorf("esp: socket with bad local address %s", la)
		}
		ci := &connInfo{c: c, local: la, port: la.Port(), is4: la.Addr().Unmap().Is4()}
		for _, o := range d.conns {
			if o.is4 == ci.is4 && o.port == ci.port {
				return nil, fmt.Errorf("esp: two sockets for %s", la)
			}
		}
		if o, ok := c.(udp.Offloader); ok {
			ci.gso, ci.gro = o.SetOffload(!cfg.NoOffload, !cfg.NoOffload)
			log.Debug("esp: socket offloads", "local", la, "gso", ci.gso, "gro", ci.gro)
		}
		d.conns = append(d.conns, ci)
	}
	if workers > 1 {
		// Room for every reader's parts, and for stale entries (see fork).
		d.jobs = make(chan *part, 2*(len(d.conns)+1)*(workers-1))
	}
	d.in.Store(&inTable{})
	d.out.Store(&outTable{})
	return d, nil
}

// mono is the monotonic time since New in nanoseconds.
func (d *Datapath) mono() int64 { return int64(time.Since(d.epoch)) }

// Run moves packets until ctx is done or the TUN device closes; it then closes the TUN
// device and the sockets and returns once every goroutine it started has ended. It
// returns nil when ctx ended, and the error that stopped it otherwise. Run may be
// called once.
func (d *Datapath) Run(ctx context.Context) error {
	if !d.started.CompareAndSwap(false, true) {
		return errors.New("esp: Run called twice")
	}
	parent := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for _, ci := range d.conns {
		wg.Go(func() {
			if err := d.receive(ctx, ci); err != nil {
				cancel(err)
			}
		})
	}
	wg.Go(func() {
		if err := d.send(ctx); err != nil {
			cancel(err)
		}
	})
	wg.Go(func() { d.keepalives(ctx) })
	if d.jobs != nil {
		for range d.workers - 1 {
			wg.Go(func() { d.helper(ctx) })
		}
	}
	<-ctx.Done()
	d.closeIO()
	wg.Wait()
	if parent.Err() != nil {
		return nil
	}
	return context.Cause(ctx)
}

// closeIO closes the TUN device and the sockets, unblocking the readers.
func (d *Datapath) closeIO() {
	d.closeOnce.Do(func() {
		if err := d.tun.Close(); err != nil {
			d.log.Debug("esp: closing TUN", "err", err)
		}
		for _, ci := range d.conns {
			if err := ci.c.Close(); err != nil {
				d.log.Debug("esp: closing socket", "local", ci.local, "err", err)
			}
		}
	})
}

// connFor returns the socket of remote's address family bound to local's port.
func (d *Datapath) connFor(local, remote netip.AddrPort) (int, error) {
	ra := remote.Addr().Unmap()
	if !ra.IsValid() || remote.Port() == 0 {
		return -1, fmt.Errorf("esp: bad remote address %s", remote)
	}
	if la := local.Addr(); la.IsValid() && !la.IsUnspecified() && la.Unmap().Is4() != ra.Is4() {
		return -1, fmt.Errorf("esp: local %s and remote %s are of different families", local, remote)
	}
	for i, ci := range d.conns {
		if ci.is4 == ra.Is4() && ci.port == local.Port() {
			return i, nil
		}
	}
	return -1, fmt.Errorf("esp: no socket for local %s (remote %s)", local, remote)
}

func (d *Datapath) newEndpoint(local, remote netip.AddrPort) (*endpoint, error) {
	c, err := d.connFor(local, remote)
	if err != nil {
		return nil, err
	}
	ep := &endpoint{
		local:  local,
		remote: netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port()),
		conn:   c,
	}
	if la := local.Addr(); la.IsValid() && !la.IsUnspecified() {
		ep.src = netip.AddrPortFrom(la.Unmap(), local.Port())
	}
	return ep, nil
}

// SendKeepalive sends an RFC 3948 NAT keepalive (one 0xFF byte) from local to remote
// on the NAT-T socket of remote's family bound to local's port. The datapath sends
// the keepalives of its outbound SAs itself (SAConfig.Keepalive).
func (d *Datapath) SendKeepalive(local, remote netip.AddrPort) error {
	ep, err := d.newEndpoint(local, remote)
	if err != nil {
		return err
	}
	return d.sendOne(d.conns[ep.conn], ep, []byte{0xff})
}

func (d *Datapath) sendOne(ci *connInfo, ep *endpoint, buf []byte) error {
	msgs := []udp.Message{{Buffer: buf, N: len(buf), Local: ep.src, Remote: ep.remote}}
	n, err := ci.c.WriteBatch(msgs)
	if err != nil {
		return fmt.Errorf("esp: send to %s: %w", ep.remote, err)
	}
	if n != 1 {
		return fmt.Errorf("esp: send to %s: datagram not sent", ep.remote)
	}
	return nil
}

func checkSPI(spi uint32) error {
	if spi < 256 {
		return fmt.Errorf("esp: reserved SPI %d", spi)
	}
	return nil
}

// compileSA checks c's SPI and prepares its keys and its selectors, local and remote.
func compileSA(c SAConfig) (*suite, []sel, []sel, error) {
	if err := checkSPI(c.SPI); err != nil {
		return nil, nil, nil, err
	}
	local, err := compileSelectors(c.LocalTS)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w (local)", err)
	}
	remote, err := compileSelectors(c.RemoteTS)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w (remote)", err)
	}
	s, err := newSuite(c.Keys)
	if err != nil {
		return nil, nil, nil, err
	}
	return s, local, remote, nil
}

// AddInbound installs an inbound SA, found by c.SPI (our SPI). The SPI must be free,
// or its SA handed over (HandInbound): then the new SA replaces it atomically (an SA
// of a gateway cluster coming back to this datapath before the copy it handed over was
// removed: no packet finds neither).
func (d *Datapath) AddInbound(c SAConfig) error {
	s, local, remote, err := compileSA(c)
	if err != nil {
		return err
	}
	sa := &inSA{
		spi:    c.SPI,
		suite:  s,
		esn:    c.ESN,
		local:  local,
		remote: remote,
		l4:     needsL4(local) || needsL4(remote),
		win:    newReplayWindow(c.ReplayWindow, c.ESN),
	}
	if c.Seq != 0 {
		if !c.ESN && c.Seq > math.MaxUint32 {
			return fmt.Errorf("esp: inbound SPI %#08x: sequence number %d without ESN", c.SPI, c.Seq)
		}
		sa.win.startAt(c.Seq)
	}
	initLimits(&sa.ctr, c.Limits, c.ESN, LimitEvent{Inbound: true, SPI: c.SPI}, nil)
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.in.Load()
	prev := old.get(c.SPI)
	if prev != nil {
		prev.mu.Lock()
		handed := prev.hand != nil
		prev.mu.Unlock()
		if !handed {
			return fmt.Errorf("esp: inbound SPI %#08x already installed", c.SPI)
		}
	}
	d.in.Store(old.with(sa))
	if prev != nil {
		d.retireInbound(prev)
	}
	return nil
}

// RemoveInbound removes the inbound SA with our SPI spi, if any.
func (d *Datapath) RemoveInbound(spi uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.in.Load()
	sa := old.get(spi)
	if sa == nil {
		return
	}
	d.in.Store(old.without(spi))
	d.retireInbound(sa)
}

// retireInbound ends sa, just taken out of the table (d.mu held).
func (d *Datapath) retireInbound(sa *inSA) {
	d.retired.add(true, &sa.ctr)
	sa.mu.Lock()
	if h := sa.hand; h != nil && h.ep == nil {
		h.release(d) // removed while holding: what it held is gone
		h.held, h.bytes = nil, 0
	}
	sa.mu.Unlock()
	sa.suite.wipe()
}

// InstallOutbound installs the outbound SA of the caller's Child SA child, sending
// from local to remote. Installing again for the same child replaces the SA
// atomically (make-before-break rekey): packets read after the call use the new SA,
// its counters and sequence numbers start afresh, and it keeps the old one's place
// in the lookup order.
func (d *Datapath) InstallOutbound(child uint64, c SAConfig, local, remote netip.AddrPort) error {
	if c.Keepalive < 0 {
		return errors.New("esp: negative keepalive interval")
	}
	s, ls, rs, err := compileSA(c)
	if err != nil {
		return err
	}
	ep, err := d.newEndpoint(local, remote)
	if err != nil {
		return err
	}
	sa := &outSA{
		child:     child,
		spi:       c.SPI,
		suite:     s,
		esn:       c.ESN,
		local:     ls,
		remote:    rs,
		l4:        needsL4(ls) || needsL4(rs),
		keepalive: c.Keepalive,
	}
	seqSoft, last := seqBounds(c.ESN)
	sa.seqSoft = seqSoft
	sa.seqLimit = min(last, orNone(c.Limits.HardPackets))
	sa.seqMax.Store(sa.seqLimit)
	if c.Lease != 0 {
		sa.leaseCap.Store(min(c.Lease, sa.seqLimit))
		sa.seqMax.Store(sa.leaseCap.Load())
	}
	if c.Seq >= sa.seqMax.Load() {
		return fmt.Errorf("esp: outbound SPI %#08x: sequence number %d leaves none to send with", c.SPI, c.Seq)
	}
	sa.seq.Store(c.Seq)
	initLimits(&sa.ctr, c.Limits, c.ESN, LimitEvent{SPI: c.SPI, Child: child}, sa)
	sa.ep.Store(ep)
	sa.lastSent.Store(d.mono())
	d.mu.Lock()
	defer d.mu.Unlock()
	e := editOut(d.out.Load())
	o := e.t.child(child)
	if o != nil {
		sa.order = o.order
		e.remove(o)
	} else {
		d.nextOrder++
		sa.order = d.nextOrder
	}
	e.add(sa)
	d.out.Store(e.t)
	if o != nil {
		d.retired.add(false, &o.ctr)
		o.suite.wipe() // the replaced SA is removed
	}
	if sa.keepalive > 0 {
		d.wakeKeepalives()
	}
	return nil
}

// RemoveOutbound removes the outbound SA of child, if any.
func (d *Datapath) RemoveOutbound(child uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.out.Load()
	o := old.child(child)
	if o == nil {
		return
	}
	// The keepalives need no wake-up: one less SA can only make them due later.
	e := editOut(old)
	e.remove(o)
	d.out.Store(e.t)
	d.retired.add(false, &o.ctr)
	o.suite.wipe()
}

// SetEndpoints moves the outbound SA of child to local and remote (MOBIKE). The pair
// is replaced as a whole: every packet goes either to the old pair or to the new one.
func (d *Datapath) SetEndpoints(child uint64, local, remote netip.AddrPort) error {
	ep, err := d.newEndpoint(local, remote)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	sa := d.out.Load().child(child)
	if sa == nil {
		return fmt.Errorf("esp: no outbound SA for child %d", child)
	}
	sa.ep.Store(ep)
	return nil
}

func (sa *outSA) match(f *flow) bool {
	return matchDst(sa.remote, f, sa.l4) && matchSrc(sa.local, f, sa.l4)
}

// nextSeq takes the next sequence number, or reports that they are used up: past
// 2^32-1 without ESN, 2^64-1 with it, or the hard packet limit (the IKE layer is told
// before, see limits.go). The counter never cycles (RFC 4303 3.3.3).
func (sa *outSA) nextSeq() (uint64, bool) {
	for {
		s := sa.seq.Load()
		if s >= sa.seqMax.Load() {
			return 0, false
		}
		if sa.seq.CompareAndSwap(s, s+1) {
			return s + 1, true
		}
	}
}

func (d *Datapath) counters(c *saCounters, seq uint64) Counters {
	r := Counters{Bytes: c.bytes.Load(), Packets: c.packets.Load(), Dropped: c.dropped.Load(), Seq: seq}
	if l := c.last.Load(); l != 0 {
		r.Last = d.epoch.Add(time.Duration(l - 1))
	}
	return r
}

// InboundCounters returns the counters of the inbound SA with our SPI spi.
func (d *Datapath) InboundCounters(spi uint32) (Counters, bool) {
	sa := d.in.Load().get(spi)
	if sa == nil {
		return Counters{}, false
	}
	sa.mu.Lock()
	top := sa.win.top
	sa.mu.Unlock()
	return d.counters(&sa.ctr, top), true
}

// OutboundCounters returns the counters of the current outbound SA of child.
func (d *Datapath) OutboundCounters(child uint64) (Counters, bool) {
	sa := d.out.Load().child(child)
	if sa == nil {
		return Counters{}, false
	}
	return d.counters(&sa.ctr, sa.seq.Load()), true
}

// Drops returns the datapath-wide drop counters.
func (d *Datapath) Drops() DropCounters { return d.drops.snapshot() }

// retiredTraffic is what the SAs removed so far carried (d.mu held to change it).
// A packet a worker took with an SA just before it was removed or replaced may still
// count on it: the counters of SAs retired in the last retiredSettle are read afresh
// at each Totals, and only folded into the sums after that.
type retiredTraffic struct {
	inBytes, inPackets, outBytes, outPackets uint64
	recent                                   []retiredSA
}

type retiredSA struct {
	in bool
	c  *saCounters
	at time.Time
}

// retiredSettle is how long after its removal an SA's counters may still move.
const retiredSettle = 2 * time.Second

func (r *retiredTraffic) add(in bool, c *saCounters) {
	now := time.Now()
	r.foldOld(now) // bounded whether or not anyone asks for Totals
	r.recent = append(r.recent, retiredSA{in: in, c: c, at: now})
}

// foldOld folds the SAs retired more than retiredSettle before now (recent is in the
// order they were retired).
func (r *retiredTraffic) foldOld(now time.Time) {
	n := 0
	for n < len(r.recent) && now.Sub(r.recent[n].at) > retiredSettle {
		r.fold(r.recent[n])
		n++
	}
	if n > 0 {
		clear(r.recent[:n])
		r.recent = r.recent[n:]
	}
}

// fold adds a retired SA's counters to the sums.
func (r *retiredTraffic) fold(x retiredSA) {
	if x.in {
		r.inBytes += x.c.bytes.Load()
		r.inPackets += x.c.packets.Load()
	} else {
		r.outBytes += x.c.bytes.Load()
		r.outPackets += x.c.packets.Load()
	}
}

// settle folds the SAs retired more than retiredSettle ago and returns a copy of the
// sums with the others' counters added as they are now (d.mu held).
func (r *retiredTraffic) settle(now time.Time) retiredTraffic {
	r.foldOld(now)
	out := retiredTraffic{inBytes: r.inBytes, inPackets: r.inPackets, outBytes: r.outBytes, outPackets: r.outPackets}
	for _, x := range r.recent {
		out.fold(x)
	}
	return out
}

// Totals returns the inner bytes and packets of every SA since the datapath started,
// removed and replaced ones included (for counters that must only grow: metrics).
func (d *Datapath) Totals() (in, out Counters) {
	d.mu.Lock() // the tables and what their removed SAs carried, at one moment
	r, it, ot := d.retired.settle(time.Now()), d.in.Load(), d.out.Load()
	d.mu.Unlock()
	in = Counters{Bytes: r.inBytes, Packets: r.inPackets}
	out = Counters{Bytes: r.outBytes, Packets: r.outPackets}
	for _, m := range it.shards {
		for _, sa := range m {
			in.Bytes += sa.ctr.bytes.Load()
			in.Packets += sa.ctr.packets.Load()
		}
	}
	ot.each(func(sa *outSA) {
		out.Bytes += sa.ctr.bytes.Load()
		out.Packets += sa.ctr.packets.Load()
	})
	return in, out
}

func (d *Datapath) wakeKeepalives() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// keepalives sends the RFC 3948 NAT keepalives of all outbound SAs from one goroutine:
// it sleeps until the earliest one is due, and is woken when an SA with keepalives is
// installed. A keepalive due soon (within 1/16 of its interval, at most a second) goes
// out with the ones due now, so that many SAs do not wake the goroutine for each.
func (d *Datapath) keepalives(ctx context.Context) {
	const idle = time.Hour
	t := time.NewTimer(idle)
	defer t.Stop()
	for {
		now := d.mono()
		next := now + int64(idle)
		d.out.Load().each(func(sa *outSA) {
			if sa.keepalive <= 0 {
				return
			}
			due := sa.lastSent.Load() + int64(sa.keepalive)
			if due <= now+int64(min(sa.keepalive/16, time.Second)) {
				ep := sa.ep.Load()
				if err := d.sendOne(d.conns[ep.conn], ep, []byte{0xff}); err != nil {
					d.drop(dropSend, err)
				}
				sa.lastSent.Store(now)
				due = now + int64(sa.keepalive)
			}
			next = min(next, due)
		})
		t.Reset(time.Duration(next - now))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.kick:
		}
	}
}
