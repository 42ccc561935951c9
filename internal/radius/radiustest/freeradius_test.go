package radiustest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWrite: the files say what the Config says, quoted, users in order, IPv6 where
// asked; what FreeRADIUS would not read literally is refused.
func TestWrite(t *testing.T) {
	c := Config{Dir: t.TempDir(), Listen: netip.MustParseAddrPort("[2001:db8::5]:11812"),
		Client: netip.MustParsePrefix("2001:db8::1/64"), Secret: `a"b c!`, Users: map[string]string{"zed": "pw 2", "bob the builder": "can we fix it?"}}
	if err := c.Write(); err != nil {
		t.Fatal(err)
	}
	conf, _ := os.ReadFile(filepath.Join(c.Dir, "radiusd.conf"))
	for _, want := range []string{"raddbdir = " + c.Dir + "\n", "ipv6addr = 2001:db8::/64\n", `secret = 'a"b c!'` + "\n", "ipv6addr = 2001:db8::5\n", "port = 11812\n"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("radiusd.conf lacks %q:\n%s", want, conf)
		}
	}
	users, _ := os.ReadFile(filepath.Join(c.Dir, "users"))
	if want := "\"bob the builder\" Cleartext-Password := \"can we fix it?\"\n\"zed\" Cleartext-Password := \"pw 2\"\n"; string(users) != want {
		t.Errorf("users:\n%s\nwant\n%s", users, want)
	}
	for _, bad := range []Config{
		{Secret: "it's"}, {Secret: `a\b`}, {Secret: "${x}"}, {Secret: "é"}, {Secret: ""},
		{Secret: "ok", Users: map[string]string{`a"b`: "pw"}}, {Secret: "ok", Users: map[string]string{"a": "p\tw"}},
		{Secret: "ok", Users: map[string]string{"a": ""}},
	} {
		bad.Dir, bad.Listen, bad.Client = t.TempDir(), netip.MustParseAddrPort("127.0.0.1:1812"), netip.MustParsePrefix("127.0.0.0/8")
		if err := bad.Write(); err == nil {
			t.Errorf("Write accepted secret %q users %q", bad.Secret, bad.Users)
		}
	}
	if err := (&Config{Dir: t.TempDir(), Listen: netip.MustParseAddrPort("127.0.0.1:0"), Client: netip.MustParsePrefix("127.0.0.0/8"), Secret: "ok"}).Write(); err == nil {
		t.Error("Write accepted port 0")
	}
}

// TestStart, as root: FreeRADIUS gets ready and stops; a second one on the same port
// exits, and Start says so with its log.
func TestStart(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("FreeRADIUS with a private configuration needs root")
	}
	if _, err := os.Stat(Bin); err != nil {
		t.Skip(err)
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0") // a port free a moment ago
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	pc.Close()
	c := Config{Dir: t.TempDir(), Listen: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), Client: netip.MustParsePrefix("127.0.0.1/32"), Secret: "s"}
	s, err := c.Start(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if !strings.Contains(s.Log(), fmt.Sprintf("Listening on auth address 127.0.0.1 port %d", port)) {
		t.Errorf("log:\n%s", s.Log())
	}
	c2 := c
	c2.Dir = t.TempDir()
	_, err = c2.Start(t.Context(), "")
	var se *StartError
	if !errors.As(err, &se) || !se.Exited || !strings.Contains(se.Log, "in use") {
		t.Errorf("second server: %v, want a StartError, exited, with the log", err)
	}
	s.Stop()
	s.Stop()
	select {
	case <-s.done:
	default:
		t.Error("Stop returned before FreeRADIUS exited")
	}
}
