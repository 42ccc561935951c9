package main

import (
	"fmt"
	"net"
	"strconv"
	"time"
)

// systemd's service notification (sd_notify(3)), without libsystemd: a datagram to
// the socket in $NOTIFY_SOCKET ('@' for the abstract namespace). A unit of
// Type=notify learns that the daemon is ready, reloading or stopping, and with
// WatchdogSec= that it is alive.

// notifier sends states to the service manager; nil when there is none.
type notifier struct {
	addr      *net.UnixAddr
	monotonic func() time.Duration // CLOCK_MONOTONIC, for RELOADING=1
}

// newNotifier is the notifier for $NOTIFY_SOCKET (socket), or nil without one.
func newNotifier(socket string, monotonic func() time.Duration) *notifier {
	if socket == "" {
		return nil
	}
	// A leading '@' is the abstract namespace, which Go's net package knows.
	return &notifier{addr: &net.UnixAddr{Name: socket, Net: "unixgram"}, monotonic: monotonic}
}

// notify sends state; RELOADING=1 carries MONOTONIC_USEC, as systemd asks of
// Type=notify-reload services.
func (n *notifier) notify(state string) error {
	if n == nil {
		return nil
	}
	if state == "RELOADING=1" && n.monotonic != nil {
		state += "\nMONOTONIC_USEC=" + strconv.FormatInt(n.monotonic().Microseconds(), 10)
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify %s: %w", n.addr.Name, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify %s: %w", n.addr.Name, err)
	}
	return nil
}

// watchdogInterval is $WATCHDOG_USEC as a duration, if it is meant for this process
// ($WATCHDOG_PID unset or ours).
func watchdogInterval(usec, pid string, self int) time.Duration {
	if usec == "" || (pid != "" && pid != strconv.Itoa(self)) {
		return 0
	}
	n, err := strconv.ParseInt(usec, 10, 64)
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(n) * time.Microsecond
}
