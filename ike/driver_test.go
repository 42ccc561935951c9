package ike

import (
	"context"
	"errors"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/clock"
	"github.com/mobikevpn/mobikevpn/clock/clocktest"
)

// sends returns the Send actions of acts.
func sends(acts []Action) []Send {
	var out []Send
	for _, a := range acts {
		if s, ok := a.(Send); ok {
			out = append(out, s)
		}
	}
	return out
}

// TestDriverStep: a command, the engine's timer (set from NextDeadline on the driver's
// clock), a datagram, a wake and ctx, one Step each.
func TestDriverStep(t *testing.T) {
	cfg := clientConfig(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
	cfg.Rand = seededRand(1)
	cfg.Retransmit = Retransmit{Timeout: 2 * time.Second, Tries: 3, Base: 2}
	cfg.SourceAddr = func(netip.Addr) (netip.Addr, error) { return clientAddr, nil }
	clk := clocktest.New(t0)
	in := make(chan Datagram, 1)
	cmds := make(chan func(time.Time), 1)
	wake := make(chan struct{}, 1)
	var sent []Send
	var woken []time.Time
	errWake := errors.New("woken")
	d := &Driver{Engine: mustNew(t, cfg), Clock: clk, Datagrams: in, Commands: cmds,
		Exec: func(acts []Action) { sent = append(sent, sends(acts)...) },
		Wakes: []Wake{{C: wake, Do: func(now time.Time) error {
			woken = append(woken, now)
			return errWake
		}}}}
	defer d.Close()
	ctx := context.Background()

	var cmdAt time.Time
	cmds <- func(now time.Time) { cmdAt = now; d.Exec(d.Engine.StartAll(now)) }
	if err := d.Step(ctx); err != nil || !cmdAt.Equal(t0) || len(sent) != 1 {
		t.Fatalf("command: err %v, ran at %v, %d sent", err, cmdAt, len(sent))
	}
	// Nothing else is ready: the timer fires once the clock reaches the retransmission.
	clk.Advance(2 * time.Second)
	if err := d.Step(ctx); err != nil || len(sent) != 2 || string(sent[1].Data) != string(sent[0].Data) {
		t.Fatalf("timer: err %v, %d sent", err, len(sent))
	}
	// A datagram goes to the engine (garbage: dropped without an answer).
	in <- Datagram{Local: sent[0].Local, Remote: sent[0].Remote, Data: []byte("not IKE")}
	if err := d.Step(ctx); err != nil || len(in) != 0 || len(sent) != 2 {
		t.Fatalf("datagram: err %v, %d queued, %d sent", err, len(in), len(sent))
	}
	wake <- struct{}{}
	if err := d.Step(ctx); err != errWake || len(woken) != 1 || !woken[0].Equal(t0.Add(2*time.Second)) {
		t.Fatalf("wake: err %v, woken %v", err, woken)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.Step(cancelled); err != context.Canceled {
		t.Fatalf("cancelled: err %v", err)
	}
	if err := d.Run(cancelled); err != nil {
		t.Fatalf("Run after ctx ended: %v, want nil", err)
	}
	wake <- struct{}{}
	if err := d.Run(ctx); err != errWake {
		t.Fatalf("Run: %v, want the wake's error", err)
	}
}

func TestDriverTooManyWakes(t *testing.T) {
	d := &Driver{Engine: mustNew(t, Config{}), Clock: clocktest.New(t0), Exec: func([]Action) {},
		Wakes: make([]Wake, MaxWakes+1)}
	defer d.Close()
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	d.Step(context.Background())
}

// TestDriverShutdown: Shutdown deletes the IKE SAs and feeds the answers to the engine;
// unanswered, it retransmits on its ticks and gives up after the grace period, both on
// the timers' clock.
func TestDriverShutdown(t *testing.T) {
	for _, answer := range []bool{true, false} {
		n, gw, cl := pair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", nil)
		if !n.run(time.Minute, established(gw, cl)) {
			t.Fatal("not established")
		}
		clk := clocktest.New(n.now)
		in := make(chan Datagram, 16)
		var deletes atomic.Int32
		d := &Driver{Engine: cl.e, Clock: clk, Datagrams: in}
		d.Exec = func(acts []Action) {
			for _, s := range sends(acts) {
				deletes.Add(1)
				if !answer {
					continue
				}
				for _, r := range sends(gw.e.HandleDatagram(clk.Now(), s.Remote, s.Local, s.Data)) {
					in <- Datagram{Local: r.Remote, Remote: r.Local, Data: r.Data}
				}
			}
		}
		if answer {
			if !d.Shutdown(clock.System{}, 10*time.Second) {
				t.Fatal("answered Delete not confirmed")
			}
			if cl.e.Deleting() || len(cl.e.store.byID) != 0 || len(gw.e.store.byID) != 0 {
				t.Fatalf("SAs left: client %d gateway %d", len(cl.e.store.byID), len(gw.e.store.byID))
			}
			continue
		}
		done := make(chan bool)
		go func() { done <- d.Shutdown(clk, 10*time.Second) }()
		for deadline := time.Now().Add(10 * time.Second); ; {
			select {
			case ok := <-done:
				if ok {
					t.Fatal("unanswered Delete confirmed")
				}
				if got := deletes.Load(); got < 2 {
					t.Errorf("%d Deletes sent, want retransmissions", got)
				}
				return
			default:
			}
			if time.Now().After(deadline) {
				t.Fatal("Shutdown did not give up")
			}
			clk.Advance(50 * time.Millisecond)
			time.Sleep(time.Millisecond)
		}
	}
}
