package control

// Who may use the control socket: root and the daemon's own user, as the socket's
// mode 0600 says, but checked for each connection from the kernel's record of the
// peer (peerAllowed, per system), so that neither a wider mode nor a folder others can
// enter lets anybody else in. Systems where the peer cannot be known are refused.

// uidAllowed: root and the daemon's own user may use the control socket.
func uidAllowed(uid, self int) bool {
	return uid == 0 || (self >= 0 && uid == self)
}
