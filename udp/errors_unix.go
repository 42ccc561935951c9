//go:build !windows

package udp

import (
	"errors"
	"syscall"
)

func isNoFamily(err error) bool {
	return errors.Is(err, syscall.EAFNOSUPPORT) || errors.Is(err, syscall.EPROTONOSUPPORT) || errors.Is(err, syscall.EADDRNOTAVAIL)
}

func isAddrInUse(err error) bool { return errors.Is(err, syscall.EADDRINUSE) }
