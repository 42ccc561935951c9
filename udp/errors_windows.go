package udp

import (
	"errors"

	"golang.org/x/sys/windows"
)

func isNoFamily(err error) bool {
	return errors.Is(err, windows.WSAEAFNOSUPPORT) || errors.Is(err, windows.WSAEPROTONOSUPPORT) || errors.Is(err, windows.WSAEADDRNOTAVAIL)
}

func isAddrInUse(err error) bool { return errors.Is(err, windows.WSAEADDRINUSE) }

// Windows reports no MSG_TRUNC flag; a truncated datagram fails with WSAEMSGSIZE.
const msgTrunc = 0

func isTruncErr(err error) bool { return errors.Is(err, windows.WSAEMSGSIZE) }
