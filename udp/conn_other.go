//go:build !linux

package udp

import (
	"net"
	"net/netip"
	"sync"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Outside Linux a Conn moves one datagram per call and uses golang.org/x/net's control
// messages for the local address where the platform has them: IP_PKTINFO or
// IP_RECVDSTADDR / IPV6_PKTINFO on darwin and the BSDs. FreeBSD cannot choose an IPv4
// source this way (x/net has no IP_SENDSRCADDR), so the kernel picks it. On Windows
// x/net has no control messages at all: Local is then the zero AddrPort on read and
// ignored on write.

const batchSize = 1

type stdConn struct {
	uc      *net.UDPConn
	v6      bool
	local   netip.AddrPort
	pktinfo bool

	rmu sync.Mutex
	oob []byte
	wmu sync.Mutex
}

func newConn(uc *net.UDPConn, v6 bool) (Conn, error) {
	c := &stdConn{uc: uc, v6: v6, local: boundAddr(uc)}
	_ = uc.SetReadBuffer(SocketBufferSize)
	_ = uc.SetWriteBuffer(SocketBufferSize)
	var err error
	if v6 {
		err = ipv6.NewPacketConn(uc).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
		c.oob = ipv6.NewControlMessage(ipv6.FlagDst | ipv6.FlagInterface)
	} else {
		err = ipv4.NewPacketConn(uc).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
		c.oob = ipv4.NewControlMessage(ipv4.FlagDst | ipv4.FlagInterface)
	}
	c.pktinfo = err == nil
	if !c.pktinfo {
		c.oob = nil
	}
	return c, nil
}

func (c *stdConn) LocalAddr() netip.AddrPort { return c.local }
func (c *stdConn) BatchSize() int            { return batchSize }
func (c *stdConn) Close() error              { return c.uc.Close() }

func (c *stdConn) ReadBatch(msgs []Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	m := &msgs[0]
	n, oobn, flags, from, err := c.uc.ReadMsgUDPAddrPort(m.Buffer, c.oob)
	truncated := flags&msgTrunc != 0
	if err != nil {
		if !isTruncErr(err) {
			return 0, err
		}
		truncated, n = true, len(m.Buffer)
	}
	m.N = n
	m.Truncated = truncated
	m.Remote = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	m.Local = netip.AddrPort{}
	if c.pktinfo && oobn > 0 {
		var dst netip.Addr
		if c.v6 {
			var cm ipv6.ControlMessage
			if cm.Parse(c.oob[:oobn]) == nil {
				dst, _ = netip.AddrFromSlice(cm.Dst)
			}
		} else {
			var cm ipv4.ControlMessage
			if cm.Parse(c.oob[:oobn]) == nil {
				dst, _ = netip.AddrFromSlice(cm.Dst)
			}
		}
		if dst.IsValid() {
			m.Local = netip.AddrPortFrom(dst.Unmap(), c.local.Port())
		}
	}
	return 1, nil
}

// WriteBatch implements Conn; wmu serialises concurrent calls.
func (c *stdConn) WriteBatch(msgs []Message) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for i := range msgs {
		m := &msgs[i]
		dst, err := checkRemote(m, c.v6)
		if err != nil {
			return i, err
		}
		src, err := sourceAddr(m, c.v6)
		if err != nil {
			return i, err
		}
		var oob []byte
		if c.pktinfo && src.IsValid() {
			if c.v6 {
				oob = (&ipv6.ControlMessage{Src: src.AsSlice()}).Marshal()
			} else {
				oob = (&ipv4.ControlMessage{Src: src.AsSlice()}).Marshal()
			}
		}
		if _, _, err := c.uc.WriteMsgUDPAddrPort(m.Buffer[:m.N], oob, dst); err != nil {
			return i, err
		}
	}
	return len(msgs), nil
}
