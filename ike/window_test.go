package ike

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/wire"
)

// The message-ID window on its own: what a message ID means, the cached answer, our
// requests' IDs, the replay rate and reassembly, without an engine.

func TestWindowClassify(t *testing.T) {
	var w window
	for id, want := range map[uint32]reqClass{0: reqIsNext, 1: reqIsOutside, 0xffffffff: reqIsOutside} {
		if got := w.classify(id); got != want {
			t.Errorf("fresh window: message ID %d is %d, want %d", id, got, want)
		}
	}
	w.answered(0, [][]byte{[]byte("answer 0")})
	for id, want := range map[uint32]reqClass{0: reqIsAnswered, 1: reqIsNext, 2: reqIsOutside, 7: reqIsOutside} {
		if got := w.classify(id); got != want {
			t.Errorf("after answering 0: message ID %d is %d, want %d", id, got, want)
		}
	}
	// An imported window (message IDs from a snapshot, no cached answer) takes the next
	// request only: a copy of the one before cannot be answered.
	w = window{peerReqID: 5}
	if w.classify(4) != reqIsOutside || w.classify(5) != reqIsNext {
		t.Errorf("imported window: 4 is %d, 5 is %d", w.classify(4), w.classify(5))
	}
}

func TestWindowRecognisesCopies(t *testing.T) {
	var w window
	req := []byte("request one")
	w.accepted(req, false)
	if !w.isCopy(req) || w.isCopy([]byte("request One")) {
		t.Error("a whole request: its copy not recognised, or an altered one taken for it")
	}
	// Fragmented: the first fragment stands for the message (RFC 7383 2.6.1).
	frag1, frag2 := []byte("fragment 1 of 2"), []byte("fragment 2 of 2")
	w.firstFragment(frag1)
	w.accepted(append(bytes.Clone(frag1), frag2...), true)
	if !w.isCopy(frag1) || w.isCopy(frag2) || w.isCopy(req) {
		t.Error("a fragmented request: only a copy of its first fragment is a copy")
	}
}

func TestWindowOurRequests(t *testing.T) {
	var w window
	if !w.idle() || w.next() != nil {
		t.Fatal("an empty window has something to send")
	}
	dpd, sw := &request{kind: reqDPD}, &request{kind: reqSwitch}
	w.queue = append(w.queue, dpd, sw)
	r := w.next()
	if r != dpd || r.msgID != 0 || w.nextReqID != 1 {
		t.Fatalf("first request: %+v, next ID %d", r, w.nextReqID)
	}
	w.pending = r
	if w.next() != nil {
		t.Fatal("a second request went out while one is outstanding")
	}
	if w.response(0, wire.INFORMATIONAL) != nil || w.response(1, r.exchange) != nil || w.response(0, r.exchange) != r {
		t.Error("a response matched by message ID and exchange")
	}
	if !w.has(reqDPD) || !w.has(reqSwitch) || w.has(reqUpdate) {
		t.Error("has: outstanding and waiting requests by kind")
	}
	w.unqueue(reqSwitch)
	if w.has(reqSwitch) || !w.has(reqDPD) {
		t.Error("unqueue removed the outstanding request or kept the waiting one")
	}
	// A message sent outside the queue (AUTHENTICATION_FAILED) takes an ID too.
	if id := w.allocID(); id != 1 {
		t.Errorf("allocID: %d, want 1", id)
	}
	w.pending = nil
	w.queue = append(w.queue, sw)
	if r := w.next(); r != sw || r.msgID != 2 || !w.idle() {
		t.Errorf("after allocID: %+v, idle %v", r, w.idle())
	}
}

func TestWindowReplayRate(t *testing.T) {
	var w window
	t0 := time.Unix(1e9, 0)
	peer := netip.MustParseAddrPort("192.0.2.10:500")
	if !w.replayAllowed(t0, peer, peer) || w.replayAllowed(t0.Add(replayInterval-time.Millisecond), peer, peer) {
		t.Fatal("the peer: one answer every replayInterval")
	}
	if !w.replayAllowed(t0.Add(replayInterval), peer, peer) {
		t.Fatal("the peer refused after replayInterval")
	}
	// Other sources: replayBurst answers in any second, whatever their addresses.
	at := t0.Add(time.Second)
	for i := range replayBurst {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)}), 500)
		if !w.replayAllowed(at, src, peer) {
			t.Fatalf("source %d of the burst refused", i)
		}
	}
	if w.replayAllowed(at.Add(999*time.Millisecond), netip.MustParseAddrPort("203.0.113.200:500"), peer) {
		t.Error("an answer beyond the burst within the second")
	}
	// The peer is outside that budget: spoofed copies cannot starve it.
	if !w.replayAllowed(at.Add(time.Millisecond), peer, peer) {
		t.Error("the peer refused because others used the budget")
	}
	if !w.replayAllowed(at.Add(time.Second), netip.MustParseAddrPort("203.0.113.201:500"), peer) {
		t.Error("the budget did not refill after a second")
	}
	if len(w.replays) > maxReplaySources {
		t.Errorf("%d sources remembered, the cap is %d", len(w.replays), maxReplaySources)
	}
}

func TestWindowReassembly(t *testing.T) {
	var w window
	frag := func(n, total uint16) *wire.SKF {
		return &wire.SKF{Number: n, Total: total, InnerNext: wire.PayloadNotify}
	}
	// Out of order, with a duplicate, into the request buffer.
	if whole, _, err := w.addFragment(false, 3, frag(2, 2), []byte("world"), 100, -1); whole != nil || err != nil {
		t.Fatalf("second fragment first: %q %v", whole, err)
	}
	if w.fragBytes() < 5 || !w.reassembling() {
		t.Errorf("held %d bytes, reassembling %v", w.fragBytes(), w.reassembling())
	}
	if whole, _, err := w.addFragment(false, 3, frag(2, 2), []byte("WORLD"), 100, -1); whole != nil || err != nil {
		t.Fatalf("duplicate: %q %v", whole, err)
	}
	// A response being reassembled meanwhile does not mix in.
	if _, _, err := w.addFragment(true, 3, frag(1, 2), []byte("other"), 100, -1); err != nil {
		t.Fatal(err)
	}
	whole, first, err := w.addFragment(false, 3, frag(1, 2), []byte("hello "), 100, -1)
	if string(whole) != "hello world" || first != wire.PayloadNotify || err != nil {
		t.Fatalf("complete: %q first %v err %v", whole, first, err)
	}
	if w.frags[0] != nil || w.frags[1] == nil {
		t.Error("the request buffer kept, or the response buffer dropped")
	}
	// Refragmented smaller by the sender (more fragments): start over; fewer: refused.
	w = window{}
	w.addFragment(false, 4, frag(1, 2), []byte("ab"), 100, -1)
	if _, _, err := w.addFragment(false, 4, frag(1, 3), []byte("a"), 100, -1); err != nil || w.frags[0].total != 3 || w.frags[0].got != 1 {
		t.Errorf("refragmented into more: err %v, buffer %+v", err, w.frags[0])
	}
	if _, _, err := w.addFragment(false, 4, frag(1, 2), []byte("ab"), 100, -1); !errors.Is(err, errFragmentsLost) {
		t.Errorf("fewer fragments than before: %v", err)
	}
	// The caps: the message limit drops the buffer; the budget refuses the fragment only.
	w = window{}
	w.addFragment(false, 5, frag(1, 3), make([]byte, 60), 100, -1)
	if _, _, err := w.addFragment(false, 5, frag(2, 3), make([]byte, 41), 100, -1); !errors.Is(err, errTooLarge) || w.frags[0] != nil {
		t.Errorf("beyond the limit: %v, buffer %v", err, w.frags[0])
	}
	w.addFragment(false, 6, frag(1, 2), make([]byte, 10), 100, -1)
	if _, _, err := w.addFragment(false, 6, frag(2, 2), make([]byte, 11), 100, 10); !errors.Is(err, errPreauthMemory) || w.frags[0] == nil || w.frags[0].got != 1 {
		t.Errorf("beyond the budget: %v, buffer %+v", err, w.frags[0])
	}
	if whole, _, err := w.addFragment(false, 6, frag(2, 2), make([]byte, 10), 100, 10); len(whole) != 20 || err != nil {
		t.Errorf("within the budget: %d bytes, %v", len(whole), err)
	}
}

func TestDeletedAnswers(t *testing.T) {
	var k deletedAnswers
	t0 := time.Unix(1e9, 0)
	del := []byte("a Delete request")
	from := netip.MustParseAddrPort("192.0.2.10:4500")
	h := &wire.Header{SPIi: 1, SPIr: 2, Exchange: wire.INFORMATIONAL, MessageID: 3}
	k.keep(t0, 2, &deletedSA{spiI: 1, spiR: 2, msgID: 3, reqHash: sha256.Sum256(del), resp: [][]byte{[]byte("answer")},
		from: from, until: t0.Add(deletedSALife)})
	other := *h
	other.MessageID = 4
	switch {
	case k.answer(t0, netip.MustParseAddrPort("203.0.113.9:4500"), del, h, 2) != nil:
		t.Error("answered a copy from elsewhere")
	case k.answer(t0, from, []byte("a Delete requesT"), h, 2) != nil:
		t.Error("answered an altered copy")
	case k.answer(t0, from, del, &other, 2) != nil:
		t.Error("answered another message ID")
	}
	for i := range maxDeletedAnswers {
		if k.answer(t0.Add(time.Second), from, del, h, 2) == nil {
			t.Fatalf("copy %d not answered", i+1)
		}
	}
	if k.answer(t0.Add(time.Second), from, del, h, 2) != nil {
		t.Error("answered beyond maxDeletedAnswers")
	}
	k.expire(t0.Add(deletedSALife))
	if len(k.bySPI) != 0 || k.order != nil {
		t.Errorf("kept after deletedSALife: %d", len(k.bySPI))
	}
	// Bounded: beyond maxDeletedSAs the oldest goes.
	for spi := range uint64(maxDeletedSAs + 1) {
		k.keep(t0, spi, &deletedSA{until: t0.Add(deletedSALife)})
	}
	if len(k.bySPI) != maxDeletedSAs || k.bySPI[0] != nil || k.bySPI[maxDeletedSAs] == nil {
		t.Errorf("%d kept, oldest kept %v", len(k.bySPI), k.bySPI[0] != nil)
	}
}
