package esp

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// dropReason says why a packet was not delivered.
type dropReason uint8

//go:generate stringer -type=dropReason -linecomment

const (
	dropNone         dropReason = iota // none
	dropMalformed                      // malformed
	dropUnknownSPI                     // unknown SPI
	dropAuth                           // authentication failed
	dropReplay                         // replay
	dropTrailer                        // bad trailer
	dropDummy                          // dummy packet
	dropSelector                       // outside traffic selectors
	dropNoPolicy                       // no policy
	dropSeqExhausted                   // sequence numbers exhausted
	dropTruncated                      // truncated
	dropTooBig                         // too big
	dropSend                           // send error
	dropTUNWrite                       // TUN write error
	dropTUNRead                        // TUN read error
	dropRead                           // socket read error
	dropNoIKEHandler                   // no IKE handler
	dropHandQueue                      // hand-over queue full
	numDropReasons
)

// DropCounters counts packets the datapath did not deliver, by reason.
type DropCounters struct {
	Malformed    uint64 // inbound ESP too short or not whole blocks; inner IP header bad (either way)
	UnknownSPI   uint64 // inbound ESP for an SPI with no inbound SA
	AuthFailed   uint64 // ICV check failed
	Replay       uint64 // sequence number seen before, too old, or impossible
	BadTrailer   uint64 // padding, pad length, or next header neither IPv4 (4) nor IPv6 (41)
	Dummy        uint64 // next header 59 (TFC dummy packets), dropped as RFC 4303 2.6 says
	Selector     uint64 // decrypted inner packet outside the SA's traffic selectors
	NoPolicy     uint64 // outbound packet that matches no Child SA
	SeqExhausted uint64 // outbound SA out of sequence numbers (2^32-1 without ESN)
	Truncated    uint64 // datagram larger than the read buffer
	TooBig       uint64 // outbound packet too large for its buffer after ESP overhead
	SendError    uint64 // datagrams the socket did not take
	TUNWrite     uint64 // inner packets the TUN device did not take
	TUNRead      uint64 // failed TUN reads (including segments that did not fit)
	ReadError    uint64 // failed socket reads
	NoIKEHandler uint64 // IKE messages received (on the NAT-T sockets) with no Config.OnIKE
	HandQueue    uint64 // inbound ESP of an SA being handed over, beyond what is held for it (or held when the hand-over failed)
	Keepalives   uint64 // NAT keepalives received (RFC 3948); expected, not an error
}

// dropLogInterval limits the debug line per drop reason.
const dropLogInterval = time.Minute

type drops struct {
	n          [numDropReasons]atomic.Uint64
	keepalives atomic.Uint64
	lastLog    [numDropReasons]atomic.Int64 // monotonic ns since the datapath epoch; 0 = never
}

func (d *drops) snapshot() DropCounters {
	return DropCounters{
		Malformed:    d.n[dropMalformed].Load(),
		UnknownSPI:   d.n[dropUnknownSPI].Load(),
		AuthFailed:   d.n[dropAuth].Load(),
		Replay:       d.n[dropReplay].Load(),
		BadTrailer:   d.n[dropTrailer].Load(),
		Dummy:        d.n[dropDummy].Load(),
		Selector:     d.n[dropSelector].Load(),
		NoPolicy:     d.n[dropNoPolicy].Load(),
		SeqExhausted: d.n[dropSeqExhausted].Load(),
		Truncated:    d.n[dropTruncated].Load(),
		TooBig:       d.n[dropTooBig].Load(),
		SendError:    d.n[dropSend].Load(),
		TUNWrite:     d.n[dropTUNWrite].Load(),
		TUNRead:      d.n[dropTUNRead].Load(),
		ReadError:    d.n[dropRead].Load(),
		NoIKEHandler: d.n[dropNoIKEHandler].Load(),
		HandQueue:    d.n[dropHandQueue].Load(),
		Keepalives:   d.keepalives.Load(),
	}
}

// drop counts one packet dropped for r and logs it at debug level, at most once per
// dropLogInterval per reason. err, if any, is logged with it.
func (d *Datapath) drop(r dropReason, err error) {
	n := d.drops.n[r].Add(1)
	if !d.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	now := d.mono() + 1 // never 0, which means "never logged"
	last := d.drops.lastLog[r].Load()
	if last != 0 && now-last < int64(dropLogInterval) {
		return
	}
	if !d.drops.lastLog[r].CompareAndSwap(last, now) {
		return
	}
	if err != nil {
		d.log.Debug("esp: dropping packets", "reason", r.String(), "count", n, "err", err)
	} else {
		d.log.Debug("esp: dropping packets", "reason", r.String(), "count", n)
	}
}

// Map returns the counters by name, as `status --json` shows them.
func (c DropCounters) Map() map[string]uint64 {
	return map[string]uint64{
		"esp_malformed":     c.Malformed,
		"esp_unknown_spi":   c.UnknownSPI,
		"esp_auth_failed":   c.AuthFailed,
		"esp_replay":        c.Replay,
		"esp_bad_trailer":   c.BadTrailer,
		"esp_dummy":         c.Dummy,
		"esp_selector":      c.Selector,
		"esp_no_policy":     c.NoPolicy,
		"esp_seq_exhausted": c.SeqExhausted,
		"esp_truncated":     c.Truncated,
		"esp_too_big":       c.TooBig,
		"esp_send_error":    c.SendError,
		"esp_tun_write":     c.TUNWrite,
		"esp_tun_read":      c.TUNRead,
		"esp_read_error":    c.ReadError,
		"esp_hand_queue":    c.HandQueue,
		"esp_keepalives_in": c.Keepalives,
	}
}
