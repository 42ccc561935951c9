//go:build unix

package main

import (
	"context"
	"syscall"
	"testing"
	"time"
)

func TestOSSignals(t *testing.T) {
	ctx, reload, stop := osSignals(context.Background())
	defer stop()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reload:
	case <-time.After(5 * time.Second):
		t.Fatal("SIGHUP did not reach the reload channel")
	}
	if ctx.Err() != nil {
		t.Fatal("SIGHUP cancelled the context")
	}
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("SIGTERM did not cancel the context")
	}
}
