// Package memtun is an in-memory tun.Device for tests without root: packets injected
// as if the OS routed them into the tunnel come out of Read, and packets the VPN
// writes come out of Written.
//
// Read and Write follow wireguard's batch semantics, including its offset rules: Read
// places packets at bufs[i][offset:] and Write takes bufs[i][offset:] whole. Offsets
// below tun.ReadOffsetMin (Read) or tun.WriteOffsetMin (Write) are refused, so a caller
// that would break on some real device breaks here too. Packets are copied in Inject
// and Write, so callers may reuse their buffers at once. MTUs are not enforced.
package memtun

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	wgtun "golang.zx2c4.com/wireguard/tun"

	"github.com/mobikevpn/mobikevpn/tun"
)

const (
	// BatchSize is what Device.BatchSize reports.
	BatchSize = 128
	// QueueLen is the capacity of the injected and written queues.
	QueueLen = 1024
)

// Device is an in-memory TUN device. Create it with New.
type Device struct {
	name string
	mtu  int

	in     chan []byte // injected, waiting for Read
	out    chan []byte // written by the VPN
	events chan wgtun.Event
	done   chan struct{}
	readMu sync.Mutex

	closeOnce sync.Once
}

var _ tun.Device = (*Device)(nil)

// New returns a device that is up (EventUp is queued on Events).
func New(name string, mtu int) *Device {
	d := &Device{
		name:   name,
		mtu:    mtu,
		in:     make(chan []byte, QueueLen),
		out:    make(chan []byte, QueueLen),
		events: make(chan wgtun.Event, 10),
		done:   make(chan struct{}),
	}
	d.events <- wgtun.EventUp
	return d
}

// Inject queues a copy of pkt as if the OS had routed it into the tunnel. It blocks
// while QueueLen packets wait to be read, and fails with os.ErrClosed after Close.
func (d *Device) Inject(pkt []byte) error {
	p := append([]byte(nil), pkt...)
	select {
	case <-d.done:
		return os.ErrClosed
	default:
	}
	select {
	case d.in <- p:
		return nil
	case <-d.done:
		return os.ErrClosed
	}
}

// Written delivers copies of the packets the VPN wrote, in order. Write blocks while
// QueueLen packets wait here, so a test must drain it (or close the device).
func (d *Device) Written() <-chan []byte { return d.out }

// File returns nil: there is no file descriptor.
func (d *Device) File() *os.File { return nil }

// Read blocks until a packet was injected, then returns it and as many more as are
// queued, up to len(bufs) and BatchSize, placing packet i at bufs[i][offset:] and its
// length in sizes[i]. A packet that does not fit its buffer fails the call with
// io.ErrShortBuffer and is dropped; the packets before it are returned with the error.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if offset < tun.ReadOffsetMin {
		return 0, fmt.Errorf("memtun: read offset %d below %d", offset, tun.ReadOffsetMin)
	}
	if len(sizes) < len(bufs) {
		return 0, errors.New("memtun: sizes shorter than bufs")
	}
	limit := min(len(bufs), BatchSize)
	if limit == 0 {
		return 0, nil
	}
	d.readMu.Lock()
	defer d.readMu.Unlock()
	select {
	case <-d.done:
		return 0, os.ErrClosed
	default:
	}
	n := 0
	put := func(p []byte) error {
		if offset > len(bufs[n]) || len(p) > len(bufs[n])-offset {
			return fmt.Errorf("memtun: packet of %d bytes does not fit buffer %d (%d bytes at offset %d): %w", len(p), n, len(bufs[n]), offset, io.ErrShortBuffer)
		}
		sizes[n] = copy(bufs[n][offset:], p)
		n++
		return nil
	}
	var first []byte
	select {
	case first = <-d.in:
	case <-d.done:
		return 0, os.ErrClosed
	}
	if err := put(first); err != nil {
		return 0, err
	}
	for n < limit {
		select {
		case p := <-d.in:
			if err := put(p); err != nil {
				return n, err
			}
		default:
			return n, nil
		}
	}
	return n, nil
}

// Write copies bufs[i][offset:] of every buffer to Written, in order, and returns the
// number of packets. It fails with os.ErrClosed after Close (packets before that were
// written).
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	if offset < tun.WriteOffsetMin {
		return 0, fmt.Errorf("memtun: write offset %d below %d", offset, tun.WriteOffsetMin)
	}
	for i, b := range bufs {
		if offset > len(b) {
			return i, fmt.Errorf("memtun: write offset %d beyond buffer %d of %d bytes", offset, i, len(b))
		}
		p := append([]byte(nil), b[offset:]...)
		select {
		case <-d.done:
			return i, os.ErrClosed
		default:
		}
		select {
		case d.out <- p:
		case <-d.done:
			return i, os.ErrClosed
		}
	}
	return len(bufs), nil
}

// MTU returns the MTU given to New.
func (d *Device) MTU() (int, error) { return d.mtu, nil }

// Name returns the name given to New.
func (d *Device) Name() (string, error) { return d.name, nil }

// Events delivers EventUp once, then nothing until Close closes it.
func (d *Device) Events() <-chan wgtun.Event { return d.events }

// BatchSize returns BatchSize.
func (d *Device) BatchSize() int { return BatchSize }

// Close unblocks Read, Write and Inject with os.ErrClosed and closes Events. Written
// stays open so that what was written can still be drained. A second Close does
// nothing.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		close(d.done)
		close(d.events)
	})
	return nil
}
