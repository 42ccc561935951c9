package udp

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// On Linux the sockets use recvmmsg/sendmmsg directly rather than through
// golang.org/x/net's ReadBatch/WriteBatch: x/net allocates a *net.UDPAddr and its
// net.IP for every received datagram, while this path keeps all headers, iovecs,
// socket addresses and control buffers per Conn and parses IP_PKTINFO/IPV6_PKTINFO by
// hand, so a batch costs no allocation.

const (
	batchSize = 128
	// oobSize holds one cmsg with in6_pktinfo (40 bytes on 64-bit) with room to spare
	// and keeps every slot 8-byte aligned.
	oobSize = 64
)

type linuxConn struct {
	uc    *net.UDPConn
	rc    syscall.RawConn
	v6    bool
	local netip.AddrPort

	rmu sync.Mutex
	r   mmsgState

	wmu sync.Mutex
	w   mmsgState
}

// mmsgState is the preallocated state of one direction.
type mmsgState struct {
	hs    []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	oob   []byte

	// arguments and results of the syscall closure
	start int // first header to pass (writes resume after a partial sendmmsg)
	count int // end of the headers to pass
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

func (s *mmsgState) init(fn func(fd uintptr) bool) {
	s.hs = make([]unix.Mmsghdr, batchSize)
	s.iovs = make([]unix.Iovec, batchSize)
	s.names = make([]unix.RawSockaddrInet6, batchSize)
	s.oob = make([]byte, batchSize*oobSize)
	s.fn = fn
}

func newConn(uc *net.UDPConn, v6 bool) (Conn, error) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	c := &linuxConn{uc: uc, rc: rc, v6: v6, local: boundAddr(uc)}
	c.r.init(c.recvmmsg)
	c.w.init(c.sendmmsg)
	var serr error
	err = rc.Control(func(fd uintptr) {
		if v6 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		}
		if serr != nil {
			serr = os.NewSyscallError("setsockopt pktinfo", serr)
			return
		}
		// Forcing needs CAP_NET_ADMIN; without it the plain option is capped by
		// net.core.[rw]mem_max, which is the best we can do.
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, SocketBufferSize) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, SocketBufferSize)
		}
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, SocketBufferSize) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, SocketBufferSize)
		}
	})
	if err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, serr
	}
	return c, nil
}

func (c *linuxConn) LocalAddr() netip.AddrPort { return c.local }
func (c *linuxConn) BatchSize() int            { return batchSize }
func (c *linuxConn) Close() error              { return c.uc.Close() }

func (c *linuxConn) recvmmsg(fd uintptr) bool {
	s := &c.r
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.hs[0])), uintptr(s.count), 0, 0, 0)
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		s.n, s.errno = int(n), errno
		return true
	}
}

func (c *linuxConn) sendmmsg(fd uintptr) bool {
	s := &c.w
	for {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&s.hs[s.start])), uintptr(s.count-s.start), 0, 0, 0)
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		s.n, s.errno = int(n), errno
		return true
	}
}

func setIov(iov *unix.Iovec, b []byte) {
	if len(b) == 0 {
		iov.Base = nil
		iov.SetLen(0)
		return
	}
	iov.Base = &b[0]
	iov.SetLen(len(b))
}

func (c *linuxConn) ReadBatch(msgs []Message) (int, error) {
	count := min(len(msgs), batchSize)
	if count == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	s := &c.r
	for i := range count {
		setIov(&s.iovs[i], msgs[i].Buffer)
		h := &s.hs[i]
		h.Len = 0
		h.Hdr.Name = (*byte)(unsafe.Pointer(&s.names[i]))
		h.Hdr.Namelen = unix.SizeofSockaddrInet6
		h.Hdr.Iov = &s.iovs[i]
		h.Hdr.SetIovlen(1)
		h.Hdr.Control = &s.oob[i*oobSize]
		h.Hdr.SetControllen(oobSize)
		h.Hdr.Flags = 0
	}
	s.count = count
	if err := c.rc.Read(s.fn); err != nil {
		return 0, err
	}
	if s.errno != 0 {
		return 0, &net.OpError{Op: "read", Net: "udp", Addr: net.UDPAddrFromAddrPort(c.local), Err: os.NewSyscallError("recvmmsg", s.errno)}
	}
	for i := range s.n {
		h := &s.hs[i]
		m := &msgs[i]
		m.N = int(h.Len)
		m.Truncated = h.Hdr.Flags&unix.MSG_TRUNC != 0
		if m.N > len(m.Buffer) {
			m.N = len(m.Buffer)
		}
		m.Remote = parseSockaddr(&s.names[i], h.Hdr.Namelen)
		m.Local = netip.AddrPortFrom(parsePktinfo(s.oob[i*oobSize:i*oobSize+int(h.Hdr.Controllen)]), c.local.Port())
	}
	return s.n, nil
}

func (c *linuxConn) WriteBatch(msgs []Message) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	s := &c.w
	sent := 0
	for sent < len(msgs) {
		count := min(len(msgs)-sent, batchSize)
		var prepErr error
		for i := range count {
			if err := c.prepareWrite(i, &msgs[sent+i]); err != nil {
				// Send what precedes the bad message, then report it.
				count, prepErr = i, err
				break
			}
		}
		s.start, s.count = 0, count
		for s.start < count {
			if err := c.rc.Write(s.fn); err != nil {
				return sent + s.start, err
			}
			if s.errno != 0 {
				return sent + s.start, &net.OpError{Op: "write", Net: "udp", Addr: net.UDPAddrFromAddrPort(msgs[sent+s.start].Remote), Err: os.NewSyscallError("sendmmsg", s.errno)}
			}
			if s.n <= 0 {
				return sent + s.start, &net.OpError{Op: "write", Net: "udp", Err: errors.New("sendmmsg sent nothing")}
			}
			s.start += s.n
		}
		sent += count
		if prepErr != nil {
			return sent, prepErr
		}
	}
	return sent, nil
}

// prepareWrite fills header slot i for m.
func (c *linuxConn) prepareWrite(i int, m *Message) error {
	s := &c.w
	dst, err := checkRemote(m, c.v6)
	if err != nil {
		return err
	}
	src, err := sourceAddr(m, c.v6)
	if err != nil {
		return err
	}
	h := &s.hs[i]
	h.Len = 0
	h.Hdr.Flags = 0
	h.Hdr.Name = (*byte)(unsafe.Pointer(&s.names[i]))
	h.Hdr.Namelen = putSockaddr(&s.names[i], dst)
	setIov(&s.iovs[i], m.Buffer[:m.N])
	h.Hdr.Iov = &s.iovs[i]
	h.Hdr.SetIovlen(1)
	if src.IsValid() {
		oob := s.oob[i*oobSize : (i+1)*oobSize]
		h.Hdr.Control = &oob[0]
		h.Hdr.SetControllen(putPktinfo(oob, src, dst.Addr().Zone()))
	} else {
		h.Hdr.Control = nil
		h.Hdr.SetControllen(0)
	}
	return nil
}

// parseSockaddr decodes a sockaddr_in or sockaddr_in6 written by the kernel.
func parseSockaddr(sa *unix.RawSockaddrInet6, namelen uint32) netip.AddrPort {
	b := (*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(sa))
	switch sa.Family {
	case unix.AF_INET:
		if namelen < unix.SizeofSockaddrInet4 {
			return netip.AddrPort{}
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:4]))
	case unix.AF_INET6:
		if namelen < unix.SizeofSockaddrInet6 {
			return netip.AddrPort{}
		}
		a := netip.AddrFrom16(sa.Addr).Unmap()
		if sa.Scope_id != 0 && a.Is6() {
			// Only link-local peers carry a scope; naming it allocates, which is fine
			// off the hot path.
			a = a.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[2:4]))
	}
	return netip.AddrPort{}
}

// putSockaddr encodes dst into sa and returns its length.
func putSockaddr(sa *unix.RawSockaddrInet6, dst netip.AddrPort) uint32 {
	*sa = unix.RawSockaddrInet6{}
	b := (*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(sa))
	binary.BigEndian.PutUint16(b[2:4], dst.Port())
	a := dst.Addr()
	if a.Is4() {
		sa.Family = unix.AF_INET
		a4 := a.As4()
		copy(b[4:8], a4[:])
		return unix.SizeofSockaddrInet4
	}
	sa.Family = unix.AF_INET6
	sa.Addr = a.As16()
	sa.Scope_id = zoneIndex(a.Zone())
	return unix.SizeofSockaddrInet6
}

// zoneIndex maps an IPv6 zone (an interface index or name) to an interface index.
func zoneIndex(zone string) uint32 {
	if zone == "" {
		return 0
	}
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(n)
	}
	if ifi, err := net.InterfaceByName(zone); err == nil {
		return uint32(ifi.Index)
	}
	return 0
}

// putPktinfo writes an IP_PKTINFO or IPV6_PKTINFO cmsg asking for source address src
// into oob and returns its length.
func putPktinfo(oob []byte, src netip.Addr, dstZone string) int {
	clear(oob)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	if src.Is4() {
		h.Level = unix.IPPROTO_IP
		h.Type = unix.IP_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
		pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&oob[unix.CmsgLen(0)]))
		pi.Spec_dst = src.As4()
		return unix.CmsgSpace(unix.SizeofInet4Pktinfo)
	}
	h.Level = unix.IPPROTO_IPV6
	h.Type = unix.IPV6_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
	pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&oob[unix.CmsgLen(0)]))
	pi.Addr = src.As16()
	zone := src.Zone()
	if zone == "" {
		zone = dstZone
	}
	pi.Ifindex = zoneIndex(zone)
	return unix.CmsgSpace(unix.SizeofInet6Pktinfo)
}

// parsePktinfo returns the destination address from the IP_PKTINFO or IPV6_PKTINFO
// cmsg in oob, or an invalid Addr if there is none. It never allocates.
func parsePktinfo(oob []byte) netip.Addr {
	hdrLen := unix.CmsgLen(0)
	for len(oob) >= hdrLen {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdrLen || l > len(oob) {
			return netip.Addr{}
		}
		data := oob[hdrLen:l]
		switch {
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			// struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }:
			// addr is the header destination address.
			return netip.AddrFrom4([4]byte(data[8:12]))
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			return netip.AddrFrom16([16]byte(data[0:16])).Unmap()
		}
		next := unix.CmsgSpace(l - hdrLen)
		if next >= len(oob) {
			break
		}
		oob = oob[next:]
	}
	return netip.Addr{}
}
