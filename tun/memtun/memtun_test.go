package memtun

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	wgtun "golang.zx2c4.com/wireguard/tun"

	"github.com/mobikevpn/mobikevpn/tun"
)

const off = tun.Headroom

func bufs(n, size int) ([][]byte, []int) {
	b := make([][]byte, n)
	for i := range b {
		b[i] = make([]byte, off+size)
	}
	return b, make([]int, n)
}

func TestInjectRead(t *testing.T) {
	d := New("mem0", 1400)
	defer d.Close()
	if ev := <-d.Events(); ev != wgtun.EventUp {
		t.Fatalf("first event %v", ev)
	}
	pkt := []byte("packet one")
	if err := d.Inject(pkt); err != nil {
		t.Fatal(err)
	}
	copy(pkt, "XXXXXX") // Inject copied
	for i := range 3 {
		d.Inject(fmt.Appendf(nil, "more %d", i))
	}
	b, sizes := bufs(8, 1500)
	b[0][off-1] = 0xEE // headroom is left alone
	n, err := d.Read(b, sizes, off)
	if err != nil || n != 4 {
		t.Fatalf("Read = %d, %v; want the 4 queued", n, err)
	}
	want := []string{"packet one", "more 0", "more 1", "more 2"}
	for i := range n {
		if got := string(b[i][off : off+sizes[i]]); got != want[i] {
			t.Fatalf("packet %d: %q, want %q", i, got, want[i])
		}
	}
	if b[0][off-1] != 0xEE {
		t.Fatal("Read wrote into the headroom")
	}
	// A batch is bounded by len(bufs).
	for i := range 5 {
		d.Inject([]byte{byte(i)})
	}
	if n, _ := d.Read(b[:2], sizes, off); n != 2 || b[1][off] != 1 {
		t.Fatalf("Read with 2 buffers = %d", n)
	}
	if n, _ := d.Read(b, sizes, off); n != 3 || b[0][off] != 2 {
		t.Fatalf("rest = %d", n)
	}
}

func TestReadBlocksUntilInject(t *testing.T) {
	d := New("mem0", 1400)
	defer d.Close()
	got := make(chan int, 1)
	go func() {
		b, sizes := bufs(4, 100)
		n, _ := d.Read(b, sizes, off)
		got <- n
	}()
	select {
	case <-got:
		t.Fatal("Read returned with nothing injected")
	case <-time.After(20 * time.Millisecond):
	}
	d.Inject([]byte("x"))
	select {
	case n := <-got:
		if n != 1 {
			t.Fatalf("n = %d", n)
		}
	case <-time.After(time.Second):
		t.Fatal("Read did not return after Inject")
	}
}

func TestWrite(t *testing.T) {
	d := New("mem0", 1400)
	defer d.Close()
	b := [][]byte{
		append(make([]byte, off), "first"...),
		append(make([]byte, off), "second"...),
	}
	n, err := d.Write(b, off)
	if n != 2 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	copy(b[0][off:], "XXXXX") // Write copied
	for _, want := range []string{"first", "second"} {
		if got := <-d.Written(); string(got) != want {
			t.Fatalf("written %q, want %q", got, want)
		}
	}
}

func TestOffsets(t *testing.T) {
	d := New("mem0", 1400)
	defer d.Close()
	if _, err := d.Write([][]byte{make([]byte, 40)}, tun.WriteOffsetMin-1); err == nil {
		t.Fatal("Write accepted an offset without room for the virtio header")
	}
	if _, err := d.Write([][]byte{make([]byte, 8)}, tun.WriteOffsetMin); err == nil {
		t.Fatal("Write accepted an offset beyond the buffer")
	}
	b, sizes := bufs(1, 100)
	if _, err := d.Read(b, sizes, tun.ReadOffsetMin-1); err == nil {
		t.Fatal("Read accepted an offset without room for the AF header")
	}
	// A packet larger than its buffer fails the read and is dropped.
	d.Inject(bytes.Repeat([]byte{1}, 101))
	d.Inject([]byte("next"))
	if _, err := d.Read(b, sizes, off); !errors.Is(err, io.ErrShortBuffer) {
		t.Fatalf("oversized packet: %v", err)
	}
	if n, err := d.Read(b, sizes, off); n != 1 || err != nil || string(b[0][off:off+sizes[0]]) != "next" {
		t.Fatalf("after oversized packet: %d, %v", n, err)
	}
	if mtu, _ := d.MTU(); mtu != 1400 {
		t.Fatalf("MTU %d", mtu)
	}
	if name, _ := d.Name(); name != "mem0" || d.BatchSize() != BatchSize || d.File() != nil {
		t.Fatalf("Name %q BatchSize %d", name, d.BatchSize())
	}
}

func TestCloseUnblocks(t *testing.T) {
	d := New("mem0", 1400)
	<-d.Events()
	readErr := make(chan error, 1)
	go func() {
		b, sizes := bufs(4, 100)
		_, err := d.Read(b, sizes, off)
		readErr <- err
	}()
	// Fill Written so that Write blocks, then Close must release it too.
	writeErr := make(chan error, 1)
	go func() {
		pkt := [][]byte{make([]byte, off+1)}
		for {
			if _, err := d.Write(pkt, off); err != nil {
				writeErr <- err
				return
			}
		}
	}()
	time.Sleep(20 * time.Millisecond)
	d.Close()
	for name, ch := range map[string]chan error{"Read": readErr, "Write": writeErr} {
		select {
		case err := <-ch:
			if !errors.Is(err, os.ErrClosed) {
				t.Fatalf("%s after Close: %v", name, err)
			}
		case <-time.After(time.Second):
			t.Fatalf("%s still blocked after Close", name)
		}
	}
	if _, ok := <-d.Events(); ok {
		t.Fatal("Events not closed")
	}
	if err := d.Inject([]byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Inject after Close: %v", err)
	}
	if len(d.Written()) != QueueLen {
		t.Fatalf("%d written packets kept after Close, want %d", len(d.Written()), QueueLen)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}
