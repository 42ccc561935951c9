package control

// uidAllowed: root and the daemon's own user may use the control socket.
func uidAllowed(uid, self int) bool {
	return uid == 0 || (self >= 0 && uid == self)
}
