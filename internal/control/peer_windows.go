package control

import (
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/windows"
)

// sioAFUnixGetPeerPID is SIO_AF_UNIX_GETPEERPID of <afunix.h>, _WSAIOR(IOC_VENDOR, 256):
// the process id of an AF_UNIX socket's peer (Windows 10 1809 and later).
const sioAFUnixGetPeerPID = 0x58000100

// peerAllowed reports whether the process at the other end of c may use the socket:
// one that runs as our own user, as LocalSystem, or with the Administrators group
// enabled in its token (elevated), the counterparts of Unix's own uid and root. The
// socket file's ACL is inherited from its folder; this check is what keeps other
// users out. Any failure to learn the peer refuses it. self is not used.
func peerAllowed(c *net.UnixConn, self int) (who string, ok bool, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return "unknown", false, err
	}
	var pid uint32
	var ioErr error
	if err := raw.Control(func(fd uintptr) {
		var n uint32 // not filled in by every version of Windows
		ioErr = windows.WSAIoctl(windows.Handle(fd), sioAFUnixGetPeerPID, nil, 0,
			(*byte)(unsafe.Pointer(&pid)), uint32(unsafe.Sizeof(pid)), &n, nil, 0)
	}); err != nil {
		return "unknown", false, err
	}
	if ioErr != nil {
		return "unknown", false, fmt.Errorf("SIO_AF_UNIX_GETPEERPID: %w", ioErr)
	}
	who = fmt.Sprintf("pid %d", pid)
	p, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, pid)
	if err != nil {
		return who, false, fmt.Errorf("opening process %d: %w", pid, err)
	}
	defer windows.CloseHandle(p)
	var tok windows.Token
	if err := windows.OpenProcessToken(p, windows.TOKEN_QUERY, &tok); err != nil {
		return who, false, fmt.Errorf("opening the token of process %d: %w", pid, err)
	}
	defer tok.Close()
	user, err := tok.GetTokenUser()
	if err != nil {
		return who, false, fmt.Errorf("the user of process %d: %w", pid, err)
	}
	sid := user.User.Sid
	who = fmt.Sprintf("pid %d, user %s", pid, sid)
	me, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return who, false, fmt.Errorf("our own user: %w", err)
	}
	if sid.Equals(me.User.Sid) || sid.IsWellKnown(windows.WinLocalSystemSid) {
		return who, true, nil
	}
	groups, err := tok.GetTokenGroups()
	if err != nil {
		return who, false, fmt.Errorf("the groups of process %d: %w", pid, err)
	}
	for _, g := range groups.AllGroups() {
		// In a token that is not elevated, Administrators is there for deny only.
		if g.Attributes&windows.SE_GROUP_ENABLED != 0 && g.Sid.IsWellKnown(windows.WinBuiltinAdministratorsSid) {
			return who, true, nil
		}
	}
	return who, false, nil
}
