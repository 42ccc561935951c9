package radius

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestConcurrent: more Exchanges at once than Identifiers, each matched to its own
// answer; never more than 255 outstanding on the socket.
func TestConcurrent(t *testing.T) {
	sec := []byte(testSecret)
	var mu sync.Mutex
	outstanding := map[uint8]bool{}
	maxOut := 0
	srv := newFakeServer(t, testSecret, func(r *treq) [][]byte {
		// Answer after a while, out of order, echoing the request's EAP packet.
		mu.Lock()
		if outstanding[r.id] {
			t.Errorf("Identifier %d reused while outstanding", r.id)
		}
		outstanding[r.id] = true
		maxOut = max(maxOut, len(outstanding))
		mu.Unlock()
		go func(r *treq) {
			time.Sleep(time.Duration(r.id%7) * 3 * time.Millisecond)
			mu.Lock()
			delete(outstanding, r.id)
			mu.Unlock()
			eap := bytes.Join(r.all(79), nil)
			eap[0] = 1
			d := testAnswer(11, r.id, r.auth, sec, append(eapAttrs(eap), tattr{24, r.one(1)}), false)
			r.reply(d)
		}(r)
		return nil
	})
	c := newTestClient(t, Config{Servers: []Server{srv.server()}, Timeout: 5 * time.Second, Tries: 2})
	const n = 600
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprintf("user%d", i)
			eap := eapIdentity(uint8(i), user)
			a, err := c.Exchange(context.Background(), Request{UserName: user, EAP: eap})
			if err != nil {
				errs <- err
				return
			}
			eap[0] = 1
			if !bytes.Equal(a.EAP, eap) || string(a.State) != user {
				errs <- fmt.Errorf("%s got the answer of %q", user, a.State)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if maxOut > maxOutstanding {
		t.Errorf("%d requests outstanding at once, at most %d allowed", maxOut, maxOutstanding)
	}
	t.Logf("at most %d outstanding; stats %+v", maxOut, c.Stats())
}

// TestCancelAndClose: a cancelled context and a closed client end an Exchange at
// once with errors that say so.
func TestCancelAndClose(t *testing.T) {
	s := newSilentServer(t)
	c := newTestClient(t, Config{Servers: []Server{{Addr: s.addr(), Secret: []byte(testSecret)}}, Timeout: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Exchange(ctx, Request{EAP: eapIdentity(1, "x")})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Errorf("after %v: %v, want the context's deadline", time.Since(start), err)
	}
	done := make(chan error)
	go func() {
		_, err := c.Exchange(context.Background(), Request{EAP: eapIdentity(1, "x")})
		done <- err
	}()
	waitUntil(time.Second, func() bool { return s.n.Load() >= 2 })
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("after Close: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Exchange did not return after Close")
	}
	if _, err := c.Exchange(context.Background(), Request{EAP: eapIdentity(1, "x")}); !errors.Is(err, ErrClosed) {
		t.Errorf("Exchange after Close: %v", err)
	}
	if _, err := c.Exchange(context.Background(), Request{EAP: []byte{2, 1, 0, 9, 1}}); err == nil {
		t.Error("an EAP packet whose Length is wrong was sent")
	}
}
