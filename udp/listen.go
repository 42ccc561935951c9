package udp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// SocketBufferSize is the receive and send buffer size requested for every socket. On
// Linux it is forced past net.core.rmem_max/wmem_max when the process has
// CAP_NET_ADMIN (SO_RCVBUFFORCE), and capped by those limits otherwise.
const SocketBufferSize = 7 << 20

// Listen opens the sockets of one UDP port: an IPv4 socket on 0.0.0.0:port and an IPv6
// socket on [::]:port with IPV6_V6ONLY, in that order. Port 0 picks a free port for the
// IPv4 socket and binds the IPv6 socket to the same one (retrying a few times if another
// process takes it in between).
//
// A family the host does not have at all (socket or bind fails with EAFNOSUPPORT,
// EPROTONOSUPPORT or EADDRNOTAVAIL) is left out, so the result then has one Conn:
// callers learn that a family is missing from len(conns) and LocalAddr, and should say
// so in their logs. Any other failure of either socket is an error.
func Listen(port uint16) ([]Conn, error) {
	const attempts = 8
	for i := 0; ; i++ {
		conns, err := listenPair(port)
		if err == nil {
			return conns, nil
		}
		if port != 0 || i+1 == attempts || !isAddrInUse(err) {
			return nil, err
		}
	}
}

func listenPair(port uint16) ([]Conn, error) {
	conns := make([]Conn, 0, 2)
	c4, err4 := ListenAddr(netip.AddrPortFrom(netip.IPv4Unspecified(), port))
	if err4 == nil {
		conns = append(conns, c4)
		port = c4.LocalAddr().Port()
	} else if !isNoFamily(err4) {
		return nil, err4
	}
	c6, err6 := ListenAddr(netip.AddrPortFrom(netip.IPv6Unspecified(), port))
	if err6 == nil {
		conns = append(conns, c6)
	} else if !isNoFamily(err6) || len(conns) == 0 {
		for _, c := range conns {
			c.Close()
		}
		if len(conns) == 0 && err4 != nil {
			return nil, fmt.Errorf("udp: no address family available: %w", errors.Join(err4, err6))
		}
		return nil, err6
	}
	return conns, nil
}

// ListenAddr opens one socket bound to addr, which may be a wildcard (0.0.0.0, ::) or a
// specific local address. An IPv4-mapped IPv6 address is treated as IPv4; an IPv6 socket
// is always IPV6_V6ONLY.
func ListenAddr(addr netip.AddrPort) (Conn, error) {
	if !addr.Addr().IsValid() {
		return nil, errors.New("udp: invalid listen address")
	}
	a := addr.Addr().Unmap()
	network := "udp6"
	if a.Is4() {
		network = "udp4"
	}
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(context.Background(), network, netip.AddrPortFrom(a, addr.Port()).String())
	if err != nil {
		return nil, err
	}
	uc := pc.(*net.UDPConn)
	c, err := newConn(uc, a.Is6())
	if err != nil {
		uc.Close()
		return nil, err
	}
	return c, nil
}

// boundAddr returns the address uc is bound to, with an IPv4 address unmapped.
func boundAddr(uc *net.UDPConn) netip.AddrPort {
	ap := uc.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// checkRemote validates the destination of msg for a socket of the given family and
// returns it unmapped.
func checkRemote(m *Message, v6 bool) (netip.AddrPort, error) {
	a := m.Remote.Addr().Unmap()
	if !a.IsValid() || m.Remote.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("udp: invalid destination %v", m.Remote)
	}
	if a.Is6() != v6 {
		return netip.AddrPort{}, fmt.Errorf("udp: destination %v does not match the socket's address family", m.Remote)
	}
	if m.N < 0 || m.N > len(m.Buffer) {
		return netip.AddrPort{}, fmt.Errorf("udp: message length %d outside buffer of %d bytes", m.N, len(m.Buffer))
	}
	return netip.AddrPortFrom(a, m.Remote.Port()), nil
}

// sourceAddr returns the source address to request for msg, or an invalid Addr to let
// the kernel choose.
func sourceAddr(m *Message, v6 bool) (netip.Addr, error) {
	a := m.Local.Addr().Unmap()
	if !a.IsValid() || a.IsUnspecified() {
		return netip.Addr{}, nil
	}
	if a.Is6() != v6 {
		return netip.Addr{}, fmt.Errorf("udp: source %v does not match the socket's address family", a)
	}
	return a, nil
}
