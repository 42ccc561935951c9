//go:build !linux

package main

import "time"

// monotonic: no systemd here, nothing reads MONOTONIC_USEC.
func monotonic() time.Duration { return 0 }
