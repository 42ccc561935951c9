package wire

import "fmt"

// Error is a decoding error. Notify is the error notification a responder sends about
// it (INVALID_SYNTAX, UNSUPPORTED_CRITICAL_PAYLOAD or INVALID_MAJOR_VERSION), Data is
// that notification's data (the payload type octet for UNSUPPORTED_CRITICAL_PAYLOAD),
// and Payload is the payload being decoded (PayloadNone for the header or the chain).
type Error struct {
	Notify  NotifyType
	Payload PayloadType
	Data    []byte
	Reason  string
}

// Error implements error; the text names the payload and the reason.
func (e *Error) Error() string {
	where := "message"
	if e.Payload != PayloadNone {
		where = e.Payload.String() + " payload"
	}
	return "wire: " + where + ": " + e.Reason + " (" + e.Notify.String() + ")"
}

// syntaxErr returns an INVALID_SYNTAX *Error about payload p.
func syntaxErr(p PayloadType, format string, args ...any) error {
	return &Error{Notify: INVALID_SYNTAX, Payload: p, Reason: fmt.Sprintf(format, args...)}
}
