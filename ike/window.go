package ike

import (
	"crypto/sha256"
	"net/netip"
	"slices"
	"time"
	"unsafe"

	"github.com/mobikevpn/mobikevpn/wire"
)

// window is the message-ID window of an IKE SA (RFC 7296 2.3): our requests one at a
// time, retransmitted until answered; the peer's requests in order, the last answer
// cached and sent again, byte for byte, for a retransmitted request, within a replay
// rate; the fragments of messages being reassembled (RFC 7383). It knows nothing of
// keys, addresses of the SA or the clock beyond the times it is given: the engine
// seals, opens and sends (dispatch.go), and asks the window what a message means.
type window struct {
	nextReqID uint32     // our next request's message ID
	peerReqID uint32     // the peer's next expected request's
	pending   *request   // our outstanding request
	queue     []*request // requests waiting for the window

	lastResp     [][]byte // cached response (or its fragments) to the peer's request peerReqID-1
	lastReqHash  [32]byte // SHA-256 of the request lastResp answers (its first fragment)
	reqFrag1Hash [32]byte // SHA-256 of the first fragment of the request being reassembled

	frags [2]*fragBuffer // reassembly: [0] requests, [1] responses

	// replays are the recent answers to copies of answered requests, per source;
	// replayTimes the times of the last replayBurst answers to sources other than
	// the peer, a ring (replayNext is the oldest).
	replays     []replayStamp
	replayTimes *[replayBurst]time.Time
	replayNext  int
}

// reqClass is what a request's message ID means to the window.
type reqClass uint8

const (
	reqIsNext     reqClass = iota // the request expected next: process it
	reqIsAnswered                 // the request answered last: send the cached answer again
	reqIsOutside                  // anything else: drop it
)

// classify says what a request with message ID msgID is.
func (w *window) classify(msgID uint32) reqClass {
	switch {
	case msgID+1 == w.peerReqID && w.lastResp != nil:
		return reqIsAnswered
	case msgID == w.peerReqID:
		return reqIsNext
	}
	return reqIsOutside
}

// firstFragment notes the first fragment of the request being reassembled: only an
// identical copy of it later triggers the cached answer (RFC 7383 2.6.1).
func (w *window) firstFragment(data []byte) { w.reqFrag1Hash = sha256.Sum256(data) }

// accepted notes the request now being processed, whole (data) or reassembled from
// fragments (fragmented: its first fragment, noted before, stands for it).
func (w *window) accepted(data []byte, fragmented bool) {
	if fragmented {
		w.lastReqHash = w.reqFrag1Hash
	} else {
		w.lastReqHash = sha256.Sum256(data)
	}
}

// isCopy reports whether data is a byte-identical copy of the request (or of the first
// fragment of the request) answered last.
func (w *window) isCopy(data []byte) bool { return sha256.Sum256(data) == w.lastReqHash }

// answered caches resp as the answer to the peer's request msgID; the window then
// expects msgID+1.
func (w *window) answered(msgID uint32, resp [][]byte) {
	w.peerReqID = msgID + 1
	w.lastResp = resp
}

// response returns our outstanding request that a response with msgID to exchange ex
// answers, nil when it answers none.
func (w *window) response(msgID uint32, ex wire.ExchangeType) *request {
	if r := w.pending; r != nil && r.msgID == msgID && r.exchange == ex {
		return r
	}
	return nil
}

// allocID takes the message ID of our next request.
func (w *window) allocID() uint32 {
	id := w.nextReqID
	w.nextReqID++
	return id
}

// next takes the first queued request, with its message ID, when none is outstanding.
func (w *window) next() *request {
	if w.pending != nil || len(w.queue) == 0 {
		return nil
	}
	r := w.queue[0]
	w.queue = w.queue[1:]
	r.msgID = w.allocID()
	return r
}

// idle reports whether no request of ours is outstanding or waiting.
func (w *window) idle() bool { return w.pending == nil && len(w.queue) == 0 }

// has reports whether a request of kind is outstanding or waiting.
func (w *window) has(kind requestKind) bool {
	if w.pending != nil && w.pending.kind == kind {
		return true
	}
	return slices.ContainsFunc(w.queue, func(r *request) bool { return r.kind == kind })
}

// unqueue forgets the waiting requests of kind (not the outstanding one).
func (w *window) unqueue(kind requestKind) {
	w.queue = slices.DeleteFunc(w.queue, func(r *request) bool { return r.kind == kind })
}

// replayAllowed rate-limits answers to copies of an answered request (cached
// responses), so that the cache cannot be used as a reflector: at most one answer per
// source every replayInterval, and at most replayBurst answers in any second to
// sources other than the SA's peer (peer). The peer's own address is not in that
// budget, so that copies spoofed from elsewhere cannot keep its retransmissions
// unanswered (what goes to the peer is what it asked for, at most four times a second).
func (w *window) replayAllowed(now time.Time, to, peer netip.AddrPort) bool {
	oldest := -1
	for i, r := range w.replays {
		if r.to == to && now.Sub(r.at) < replayInterval {
			return false
		}
		if oldest < 0 || r.at.Before(w.replays[oldest].at) {
			oldest = i
		}
	}
	if to != peer {
		// The budget: replayBurst answers in any second, a ring of their times.
		if w.replayTimes == nil {
			w.replayTimes = new([replayBurst]time.Time) // only once copies come from elsewhere
		}
		last := w.replayTimes[w.replayNext]
		if !last.IsZero() && now.Sub(last) < time.Second {
			return false
		}
		w.replayTimes[w.replayNext] = now
		w.replayNext = (w.replayNext + 1) % replayBurst
	}
	for i := range w.replays {
		if w.replays[i].to == to {
			w.replays[i].at = now
			return true
		}
	}
	if len(w.replays) < maxReplaySources {
		w.replays = append(w.replays, replayStamp{to: to, at: now})
	} else {
		w.replays[oldest] = replayStamp{to: to, at: now}
	}
	return true
}

const (
	replayInterval   = 250 * time.Millisecond
	replayBurst      = 10
	maxReplaySources = 16
)

// addFragment files plain, the decrypted content of fragment skf of the message msgID
// (a response, or a request), and returns the message's inner payloads with the type
// of the first when it is complete. limit caps the whole message; room is how many more
// bytes may be held (the pre-authentication budget; negative: no budget).
func (w *window) addFragment(response bool, msgID uint32, skf *wire.SKF, plain []byte, limit, room int) (whole []byte, first wire.PayloadType, err error) {
	idx := 0
	if response {
		idx = 1
	}
	fb := w.frags[idx]
	switch {
	case fb == nil || fb.msgID != msgID || skf.Total > fb.total:
		// A new message, or the sender refragmented it smaller (PMTU probing, RFC 7383
		// 2.6): start over.
		fb = &fragBuffer{msgID: msgID, total: skf.Total, parts: make([][]byte, skf.Total)}
		w.frags[idx] = fb
	case skf.Total < fb.total:
		return nil, 0, errFragmentsLost
	}
	if fb.parts[skf.Number-1] != nil {
		return nil, 0, nil // duplicate
	}
	if room >= 0 && len(plain) > room {
		return nil, 0, errPreauthMemory
	}
	if fb.size+len(plain) > limit {
		w.frags[idx] = nil
		return nil, 0, errTooLarge
	}
	fb.parts[skf.Number-1] = plain
	fb.size += len(plain)
	fb.got++
	if skf.Number == 1 {
		fb.innerNext = skf.InnerNext
	}
	if fb.got < int(fb.total) {
		return nil, 0, nil
	}
	w.frags[idx] = nil
	whole = make([]byte, 0, fb.size)
	for _, p := range fb.parts {
		whole = append(whole, p...)
	}
	return whole, fb.innerNext, nil
}

// fragBytes is what the fragments being reassembled hold: their content and the table
// of their slots (a slice header each).
func (w *window) fragBytes() int {
	n := 0
	for _, f := range w.frags {
		if f != nil {
			n += f.size + cap(f.parts)*int(unsafe.Sizeof([]byte(nil)))
		}
	}
	return n
}

// reassembling reports whether a message is being reassembled.
func (w *window) reassembling() bool { return w.frags[0] != nil || w.frags[1] != nil }
