//go:build !linux

package inner

import (
	"fmt"
	"net/netip"
	"runtime"
)

// ARP is the announcer on the inner segment: Linux only.
type ARP struct{}

// NewARP reports that announcing on the inner segment is not supported here.
func NewARP(ifname string) (*ARP, error) {
	return nil, fmt.Errorf("announcing virtual IPs on %s (mode arp/ndp) is supported on Linux only, not %s; use mode hook", ifname, runtime.GOOS)
}

// Claim implements Announcer.
func (a *ARP) Claim(netip.Addr) error { return nil }

// Release implements Announcer.
func (a *ARP) Release(netip.Addr) error { return nil }

// Close implements Announcer.
func (a *ARP) Close() error { return nil }
