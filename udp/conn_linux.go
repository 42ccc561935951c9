package udp

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
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
	// oobSize holds the cmsgs of one datagram: in6_pktinfo (40 bytes with its header on
	// 64-bit) and UDP_SEGMENT or UDP_GRO (24), with room to spare; every slot stays
	// 8-byte aligned.
	oobSize = 96
	// writeIovs bounds the datagrams of one sendmmsg call (one iovec each).
	writeIovs = 1024
	// maxGSOSegments is the kernel's UDP_MAX_SEGMENTS (64 before Linux 6.9).
	maxGSOSegments = 64
	// maxGSOPayload is the most UDP payload one segmented send carries (IPv4's limit,
	// used for both families).
	maxGSOPayload = 65535 - 20 - 8
)

type linuxConn struct {
	uc    *net.UDPConn
	rc    syscall.RawConn
	v6    bool
	local netip.AddrPort
	gso   atomic.Bool // group runs of equal datagrams into UDP_SEGMENT sends

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
	first []int // writes: the index of the first message of each header, and the end

	// arguments and results of the syscall closure
	start int // first header to pass (writes resume after a partial sendmmsg)
	count int // end of the headers to pass
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

func (s *mmsgState) init(fn func(fd uintptr) bool, iovs int) {
	s.hs = make([]unix.Mmsghdr, batchSize)
	s.iovs = make([]unix.Iovec, iovs)
	s.names = make([]unix.RawSockaddrInet6, batchSize)
	s.oob = make([]byte, batchSize*oobSize)
	s.first = make([]int, batchSize+1)
	s.fn = fn
}

func newConn(uc *net.UDPConn, v6 bool) (Conn, error) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	c := &linuxConn{uc: uc, rc: rc, v6: v6, local: boundAddr(uc)}
	c.r.init(c.recvmmsg, batchSize)
	c.w.init(c.sendmmsg, writeIovs)
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

// SetOffload implements Offloader. GSO needs UDP_SEGMENT (Linux 4.18); GRO needs
// UDP_GRO and is kept off before Linux 5.12, whose GRO mishandled some packets (as
// wireguard-go does).
func (c *linuxConn) SetOffload(gso, gro bool) (gsoOn, groOn bool) {
	groOK := gro && kernelAtLeast(5, 12)
	_ = c.rc.Control(func(fd uintptr) {
		if gso {
			_, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
			gsoOn = err == nil
		}
		v := 0
		if groOK {
			v = 1
		}
		err := unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, v)
		groOn = groOK && err == nil
	})
	c.gso.Store(gsoOn)
	return gsoOn, groOn
}

// kernelAtLeast reports whether the running kernel is at least major.minor.
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	maj, min, ok := parseRelease(unix.ByteSliceToString(u.Release[:]))
	return ok && (maj > major || maj == major && min >= minor)
}

// parseRelease reads "6.1.0-13-amd64" as 6, 1.
func parseRelease(r string) (major, minor int, ok bool) {
	num := func(s string) (int, string, bool) {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == 0 || i > 6 {
			return 0, s, false
		}
		n, _ := strconv.Atoi(s[:i])
		return n, s[i:], true
	}
	major, rest, ok := num(r)
	if !ok || len(rest) == 0 || rest[0] != '.' {
		return 0, 0, false
	}
	minor, _, ok = num(rest[1:])
	if !ok {
		return 0, 0, false
	}
	return major, minor, true
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
		local, seg := parseControl(s.oob[i*oobSize : i*oobSize+min(int(h.Hdr.Controllen), oobSize)])
		m.Local = netip.AddrPortFrom(local, c.local.Port())
		m.Segment = 0
		if seg > 0 && seg < m.N {
			m.Segment = seg
		}
	}
	return s.n, nil
}

// WriteBatch implements Conn. With GSO on it sends each run of consecutive messages to
// the same destination from the same source whose lengths are equal (the last may be
// shorter) as one datagram train: one header with one iovec per message and a
// UDP_SEGMENT cmsg, so nothing is copied. wmu serialises concurrent calls: they share
// the write state.
func (c *linuxConn) WriteBatch(msgs []Message) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	s := &c.w
	sent := 0
	plainUntil := 0 // messages before this index go without GSO (retry after EINVAL)
	var gsoErr error
	for sent < len(msgs) {
		nh, nm, prepErr := c.prepareWrites(msgs[sent:], c.gso.Load(), plainUntil-sent)
		s.start, s.count = 0, nh
		retry := false
		for s.start < nh && !retry {
			if err := c.rc.Write(s.fn); err != nil {
				return sent + s.first[s.start], err
			}
			if s.errno != 0 {
				h := s.start
				at := sent + s.first[h]
				if s.first[h+1]-s.first[h] > 1 {
					// A segmented send failed. EIO: the path cannot checksum it, so
					// GSO goes off for good. EINVAL/EMSGSIZE: this train does not fit
					// (a segment above the path MTU); it goes again unsegmented.
					switch s.errno {
					case unix.EIO:
						c.gso.Store(false)
						gsoErr = os.NewSyscallError("sendmmsg", s.errno)
						sent, retry = at, true
						continue
					case unix.EINVAL, unix.EMSGSIZE:
						plainUntil = sent + s.first[h+1]
						sent, retry = at, true
						continue
					}
				}
				return at, &net.OpError{Op: "write", Net: "udp", Addr: net.UDPAddrFromAddrPort(msgs[at].Remote), Err: os.NewSyscallError("sendmmsg", s.errno)}
			}
			if s.n <= 0 {
				return sent + s.first[s.start], &net.OpError{Op: "write", Net: "udp", Err: errors.New("sendmmsg sent nothing")}
			}
			s.start += s.n
		}
		if retry {
			continue
		}
		sent += nm
		if prepErr != nil {
			return sent, prepErr
		}
	}
	if gsoErr != nil {
		return sent, &GSODisabledError{Err: gsoErr}
	}
	return sent, nil
}

// prepareWrites fills the write headers for a prefix of msgs: nh headers covering the
// first nm messages (s.first maps headers to messages). With gso, runs of messages
// that can be segmented share a header, except among the first plain messages. err
// reports msgs[nm] as unsendable.
func (c *linuxConn) prepareWrites(msgs []Message, gso bool, plain int) (nh, nm int, err error) {
	s := &c.w
	iov := 0
	for nh < batchSize && nm < len(msgs) && iov < len(s.iovs) {
		m := &msgs[nm]
		dst, err := checkRemote(m, c.v6)
		if err != nil {
			s.first[nh] = nm
			return nh, nm, err
		}
		src, err := sourceAddr(m, c.v6)
		if err != nil {
			s.first[nh] = nm
			return nh, nm, err
		}
		run := 1
		if gso && nm >= plain && m.N > 0 {
			size, total := m.N, m.N
			for nm+run < len(msgs) && run < maxGSOSegments && iov+run < len(s.iovs) {
				o := &msgs[nm+run]
				if o.Remote != m.Remote || o.Local != m.Local || o.N <= 0 || o.N > size || o.N > len(o.Buffer) || total+o.N > maxGSOPayload {
					break
				}
				total += o.N
				run++
				if o.N < size {
					break // a shorter datagram ends the train
				}
			}
		}
		h := &s.hs[nh]
		h.Len = 0
		h.Hdr.Flags = 0
		h.Hdr.Name = (*byte)(unsafe.Pointer(&s.names[nh]))
		h.Hdr.Namelen = putSockaddr(&s.names[nh], dst)
		for k := range run {
			o := &msgs[nm+k]
			setIov(&s.iovs[iov+k], o.Buffer[:o.N])
		}
		h.Hdr.Iov = &s.iovs[iov]
		h.Hdr.SetIovlen(run)
		oob := s.oob[nh*oobSize : (nh+1)*oobSize]
		cl := 0
		if src.IsValid() {
			cl = putPktinfo(oob, src, dst.Addr().Zone())
		}
		if run > 1 {
			cl += putSegment(oob[cl:], m.N)
		}
		if cl > 0 {
			h.Hdr.Control = &oob[0]
		} else {
			h.Hdr.Control = nil
		}
		h.Hdr.SetControllen(cl)
		s.first[nh] = nm
		nh++
		nm += run
		iov += run
	}
	s.first[nh] = nm
	return nh, nm, nil
}

// putSegment writes a UDP_SEGMENT cmsg with segment size size into oob and returns its
// length.
func putSegment(oob []byte, size int) int {
	const l = 2 // the option is a u16
	clear(oob[:unix.CmsgSpace(l)])
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level = unix.IPPROTO_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(l))
	*(*uint16)(unsafe.Pointer(&oob[unix.CmsgLen(0)])) = uint16(size)
	return unix.CmsgSpace(l)
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
	a, _ := parseControl(oob)
	return a
}

// parseControl returns the destination address from the IP_PKTINFO or IPV6_PKTINFO
// cmsg in oob (an invalid Addr if there is none) and the segment size from a UDP_GRO
// cmsg (0 if there is none). It never allocates.
func parseControl(oob []byte) (dst netip.Addr, seg int) {
	hdrLen := unix.CmsgLen(0)
	for len(oob) >= hdrLen {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdrLen || l > len(oob) {
			return dst, seg
		}
		data := oob[hdrLen:l]
		switch {
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			// struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }:
			// addr is the header destination address.
			dst = netip.AddrFrom4([4]byte(data[8:12]))
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			dst = netip.AddrFrom16([16]byte(data[0:16])).Unmap()
		case h.Level == unix.IPPROTO_UDP && h.Type == unix.UDP_GRO && len(data) >= 4:
			// An int in host byte order.
			if v := int(int32(binary.NativeEndian.Uint32(data[:4]))); v > 0 && v <= MaxGROSize {
				seg = v
			}
		}
		next := unix.CmsgSpace(l - hdrLen)
		if next >= len(oob) {
			break
		}
		oob = oob[next:]
	}
	return dst, seg
}

// SetMark implements Marker: SO_MARK (needs CAP_NET_ADMIN).
func (c *linuxConn) SetMark(mark uint32) error {
	var serr error
	if err := c.rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
	}); err != nil {
		return err
	}
	if serr != nil {
		return os.NewSyscallError("setsockopt SO_MARK", serr)
	}
	return nil
}
