package esp

import (
	"bytes"
	"testing"
)

func TestSplitNATT(t *testing.T) {
	ike := []byte{0x11, 0x22, 0x33, 0x44, 0x55}
	for _, c := range []struct {
		name string
		p    []byte
		kind NATTKind
		ike  []byte
	}{
		{"keepalive", []byte{0xff}, NATTKeepalive, nil},
		{"IKE behind the marker", FrameIKE(ike), NATTIKE, ike},
		{"empty IKE behind the marker", []byte{0, 0, 0, 0}, NATTIKE, []byte{}},
		{"ESP", []byte{0, 0, 1, 0, 0, 0, 0, 1}, NATTESP, nil},
		{"three zero bytes", []byte{0, 0, 0}, NATTESP, nil},
		{"nothing", nil, NATTESP, nil},
		{"one other byte", []byte{0xfe}, NATTESP, nil},
	} {
		kind, got := SplitNATT(c.p)
		if kind != c.kind || !bytes.Equal(got, c.ike) || (c.ike != nil) != (got != nil) {
			t.Errorf("%s: SplitNATT(%x) = %v %x, want %v %x", c.name, c.p, kind, got, c.kind, c.ike)
		}
	}
	if f := FrameIKE(ike); !bytes.Equal(f[:4], []byte{0, 0, 0, 0}) || !bytes.Equal(f[4:], ike) {
		t.Errorf("FrameIKE = %x", f)
	}
}
