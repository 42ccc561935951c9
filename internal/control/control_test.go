package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeHandler records calls and answers from its fields.
type fakeHandler struct {
	mu     sync.Mutex
	status *Status
	upErr  error
	calls  []string
	// block makes Up wait for its context and report the cancellation on cancelled.
	block     bool
	cancelled chan struct{}
	panicOn   string
}

func (h *fakeHandler) record(s string) {
	h.mu.Lock()
	h.calls = append(h.calls, s)
	h.mu.Unlock()
}

func (h *fakeHandler) Status(ctx context.Context) (*Status, error) {
	h.record("status")
	if h.panicOn == "status" {
		panic("boom")
	}
	return h.status, nil
}

func (h *fakeHandler) Up(ctx context.Context, name string) error {
	h.record("up " + name)
	Progress(ctx, "initiating "+name)
	if h.block {
		<-ctx.Done()
		close(h.cancelled)
		return ctx.Err()
	}
	return h.upErr
}

func (h *fakeHandler) Down(ctx context.Context, name string) error {
	h.record("down " + name)
	if name == "nope" {
		return UsageError("no connection named %q", name)
	}
	return nil
}

type switchHandler struct {
	fakeHandler
	got Switch
}

func (h *switchHandler) Switch(ctx context.Context, req Switch) (string, error) {
	h.got = req
	return "moved 1 SA", nil
}

// sockPath returns a short socket path (sun_path is limited to ~104 bytes).
func sockPath(t *testing.T, parts ...string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mvc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(append([]string{dir}, parts...)...)
}

// start serves h on a new socket until the test ends.
func start(t *testing.T, h Handler) string {
	t.Helper()
	path := sockPath(t, "s.sock")
	srv, err := Listen(path, h, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return path
}

func TestListenModeAndFolder(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Unix permissions")
	}
	path := sockPath(t, "run", "mobikevpn", "gw.sock")
	srv, err := Listen(path, &fakeHandler{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want socket 0600", fi.Mode())
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("created folder mode %v, want 0700", di.Mode().Perm())
	}
	srv.Close()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file left after Close: %v", err)
	}
}

func TestStaleSocket(t *testing.T) {
	path := sockPath(t, "s.sock")
	// A socket file without a server: as left by a daemon that was killed.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket missing: %v", err)
	}
	srv, err := Listen(path, &fakeHandler{}, nil)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer srv.Close()
	// A live one is refused.
	if _, err := Listen(path, &fakeHandler{}, nil); err == nil || !strings.Contains(err.Error(), "in use by a running daemon") {
		t.Errorf("second Listen: %v", err)
	}
	// A regular file is never removed.
	file := sockPath(t, "f")
	os.WriteFile(file, []byte("x"), 0o600)
	if _, err := Listen(file, &fakeHandler{}, nil); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen over a file: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "x" {
		t.Error("regular file was touched")
	}
}

func sampleStatus() *Status {
	return &Status{IKESAs: []IKESA{{
		ID: 3, Name: "home", Role: "initiator", State: "established",
		Local: "192.0.2.10:4500", Remote: "[2001:db8::1]:4500",
		LocalID: "alice@example.org", RemoteID: "gw.example.org",
		SPIi: "8f2c", SPIr: "11aa", Proposal: "aes128gcm16-prfsha256-x25519",
		Mobike: true, RMobike: true, NATRemote: true,
		PeerAdditionalAddrs: []string{"203.0.113.1"}, VirtualIPs: []string{"198.18.100.2"},
		EstablishedS: 42,
		ChildSAs: []ChildSA{{
			Name: "net", State: "installed", SPIIn: "c1a2b3c4", SPIOut: "d4c3b2a1", Proposal: "aes128gcm16",
			LocalTS: []string{"198.18.100.2/32"}, RemoteTS: []string{"0.0.0.0/0"},
			BytesIn: 1, BytesOut: 2, PacketsIn: 3, PacketsOut: 4,
		}},
	}}}
}

func TestRoundTrip(t *testing.T) {
	h := &fakeHandler{status: sampleStatus(), upErr: errors.New("AUTHENTICATION_FAILED")}
	path := start(t, h)
	ctx := context.Background()

	st, err := StatusOf(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st, sampleStatus()) {
		t.Errorf("status:\n got %+v\nwant %+v", st, sampleStatus())
	}

	var progress []string
	cl := &Client{Path: path, Progress: func(m string) { progress = append(progress, m) }}
	err = cl.Up(ctx, "home")
	var ce *Error
	if !errors.As(err, &ce) || ce.Code != CodeFailed || ce.Msg != "AUTHENTICATION_FAILED" {
		t.Errorf("Up error %#v, want AUTHENTICATION_FAILED code 1", err)
	}
	if !reflect.DeepEqual(progress, []string{"initiating home"}) {
		t.Errorf("progress %q", progress)
	}
	h.upErr = nil
	if err := Up(ctx, path, "home"); err != nil {
		t.Errorf("Up: %v", err)
	}
	if err := Down(ctx, path, "home"); err != nil {
		t.Errorf("Down: %v", err)
	}
	if err := Down(ctx, path, "nope"); !errors.As(err, &ce) || ce.Code != CodeUsage || !strings.Contains(ce.Msg, `no connection named "nope"`) {
		t.Errorf("Down nope: %#v", err)
	}
	// switch against a handler without Switcher.
	if _, err := cl.Switch(ctx, SwitchRequest{To: "192.0.2.2", All: true}); !errors.As(err, &ce) || ce.Msg != "switch: not supported yet" {
		t.Errorf("Switch: %#v", err)
	}
	resp, err := Do(ctx, path, Request{Cmd: "rekey"})
	if !errors.As(err, &ce) || ce.Code != CodeUsage || resp == nil || resp.OK || !strings.Contains(resp.Error, `unknown command "rekey"`) {
		t.Errorf("unknown cmd: %+v %v", resp, err)
	}
	// reload against a handler without Reloader.
	if _, err := cl.Reload(ctx); !errors.As(err, &ce) || ce.Code != CodeFailed || ce.Msg != "reload: not supported by this daemon" {
		t.Errorf("Reload: %#v", err)
	}
	if _, err := Do(ctx, path, Request{Cmd: "up"}); !errors.As(err, &ce) || ce.Code != CodeUsage || !strings.Contains(ce.Msg, "missing the connection name") {
		t.Errorf("up without name: %v", err)
	}
	h.mu.Lock()
	want := []string{"status", "up home", "up home", "down home", "down nope"}
	if !reflect.DeepEqual(h.calls, want) {
		t.Errorf("calls %q, want %q", h.calls, want)
	}
	h.mu.Unlock()
}

type briefHandler struct {
	fakeHandler
}

func (h *briefHandler) BriefStatus(ctx context.Context, gc bool) (*Status, error) {
	h.record(fmt.Sprintf("brief gc=%v", gc))
	return &Status{Counts: &Counts{IKESAs: 7, Established: 6, ChildSAs: 9}, HalfOpen: 1}, nil
}

// A brief status has the counts and no list: from the handler's BriefStatus if it has
// one, else counted from its full status.
func TestBriefStatus(t *testing.T) {
	ctx := context.Background()
	h := &fakeHandler{status: sampleStatus()}
	st, err := BriefStatusOf(ctx, start(t, h), false)
	if err != nil {
		t.Fatal(err)
	}
	full := sampleStatus()
	want := Counts{IKESAs: len(full.IKESAs)}
	for _, sa := range full.IKESAs {
		if sa.State == "established" {
			want.Established++
		}
		want.ChildSAs += len(sa.ChildSAs)
	}
	if want.IKESAs == 0 || want.Established == 0 || want.ChildSAs == 0 {
		t.Fatalf("sample status too small for the test: %+v", want)
	}
	if len(st.IKESAs) != 0 || st.Counts == nil || *st.Counts != want || st.HalfOpen != full.HalfOpen {
		t.Errorf("brief status %+v (counts %+v), want counts %+v", st, st.Counts, want)
	}
	// A full status is unchanged.
	if st, err := StatusOf(ctx, start(t, h)); err != nil || !reflect.DeepEqual(st, full) {
		t.Errorf("full status %+v %v", st, err)
	}
	b := &briefHandler{fakeHandler: fakeHandler{status: sampleStatus()}}
	path := start(t, b)
	st, err = BriefStatusOf(ctx, path, true)
	if err != nil || st.Counts == nil || *st.Counts != (Counts{IKESAs: 7, Established: 6, ChildSAs: 9}) || len(st.IKESAs) != 0 {
		t.Errorf("brief status from BriefStatus: %+v %v", st, err)
	}
	if _, err := StatusOf(ctx, path); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(b.calls, []string{"brief gc=true", "status"}) {
		t.Errorf("calls %q", b.calls)
	}
}

func TestSwitch(t *testing.T) {
	h := &switchHandler{}
	path := start(t, h)
	sa := uint64(7)
	cl := &Client{Path: path}
	msg, err := cl.Switch(context.Background(), SwitchRequest{To: "192.0.2.2", SA: &sa, Wait: 1500 * time.Millisecond})
	if err != nil || msg != "moved 1 SA" {
		t.Fatalf("Switch: %q %v", msg, err)
	}
	if h.got.To != netip.MustParseAddr("192.0.2.2") || h.got.SA != 7 || h.got.Wait != 1500*time.Millisecond || h.got.All || h.got.Peer != "" {
		t.Errorf("handler got %+v", h.got)
	}
	var ce *Error
	if _, err := Do(context.Background(), path, Request{Cmd: "switch"}); !errors.As(err, &ce) || ce.Code != CodeUsage {
		t.Errorf("switch without to: %v", err)
	}
}

// One function validates a switch request, for the command line and the server alike.
func TestSwitchRequestParse(t *testing.T) {
	sa, zero := uint64(3), uint64(0)
	for _, c := range []struct {
		req  SwitchRequest
		want string // "" = valid
	}{
		{SwitchRequest{To: "203.0.113.1", All: true}, ""},
		{SwitchRequest{To: "203.0.113.1", SA: &sa, Wait: time.Second}, ""},
		{SwitchRequest{To: "203.0.113.1", From: "198.51.100.1"}, ""},
		{SwitchRequest{To: "203.0.113.1", Peer: "alice@example.org"}, ""},
		{SwitchRequest{All: true}, "switch needs --to ADDR"},
		{SwitchRequest{To: "gw", All: true}, `switch --to "gw": not an IP address`},
		{SwitchRequest{To: "fe80::1%eth0", All: true}, "not an IP address"},
		{SwitchRequest{To: "203.0.113.1"}, "switch needs one selection"},
		{SwitchRequest{To: "203.0.113.1", SA: &zero}, "IKE SA ids start at 1"},
		{SwitchRequest{To: "203.0.113.1", SA: &sa, Peer: "x"}, "switch takes one selection, got --sa and --peer"},
		{SwitchRequest{To: "203.0.113.1", From: "x", All: true}, `switch --from "x": not an IP address`},
		{SwitchRequest{To: "203.0.113.1", All: true, Wait: -time.Second}, "must not be negative"},
	} {
		s, err := c.req.Parse()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v", c.req, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: %v, want %q", c.req, err, c.want)
		case c.want != "":
			var ce *Error
			if !errors.As(err, &ce) || ce.Code != CodeUsage {
				t.Errorf("%+v: not a usage error: %v", c.req, err)
			}
		case !s.To.IsValid():
			t.Errorf("%+v: parsed %+v", c.req, s)
		}
	}
}

// raw sends data on a new connection, half-closes, and returns the response lines.
func raw(t *testing.T, path string, data []byte) []string {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	go func() {
		c.Write(data)
		c.(*net.UnixConn).CloseWrite()
	}()
	var lines []string
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

func TestMalformedRequests(t *testing.T) {
	h := &fakeHandler{status: &Status{}}
	path := start(t, h)
	tests := []struct {
		name string
		data []byte
		frag string
	}{
		{"garbage", []byte("hello\n"), "malformed request"},
		{"empty", []byte("\n"), "empty request"},
		{"nothing", nil, "empty request"},
		{"array", []byte(`["status"]` + "\n"), "malformed request"},
		{"unknown field", []byte(`{"cmd":"status","x":1}` + "\n"), `unknown field "x"`},
		{"trailing data", []byte(`{"cmd":"status"} {"cmd":"up"}` + "\n"), "data after the JSON object"},
		{"wrong type", []byte(`{"cmd":5}` + "\n"), "malformed request"},
		{"no cmd", []byte(`{}` + "\n"), "missing cmd"},
		{"too large", bytes.Repeat([]byte("a"), 1<<20), "request larger than 65536 bytes"},
		{"large valid JSON", []byte(`{"cmd":"up","name":"` + strings.Repeat("x", MaxRequest) + `"}` + "\n"), "request larger than"},
		{"binary", []byte{0xff, 0xfe, 0, 1, '\n'}, "malformed request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lines := raw(t, path, tc.data)
			if len(lines) != 1 {
				t.Fatalf("got %d lines: %q", len(lines), lines)
			}
			var r Response
			if err := json.Unmarshal([]byte(lines[0]), &r); err != nil {
				t.Fatal(err)
			}
			if r.OK || r.Code != CodeUsage || !strings.Contains(r.Error, tc.frag) {
				t.Errorf("response %+v, want code 2 and %q", r, tc.frag)
			}
		})
	}
	// Still serving, and a request without a trailing newline works.
	lines := raw(t, path, []byte(`{"cmd":"status"}`))
	if len(lines) != 1 || lines[0] != `{"ok":true,"status":{"ike_sas":[],"half_open":0}}` {
		t.Errorf("status after garbage: %q", lines)
	}
}

func TestHandlerPanic(t *testing.T) {
	path := start(t, &fakeHandler{panicOn: "status"})
	_, err := StatusOf(context.Background(), path)
	var ce *Error
	if !errors.As(err, &ce) || !strings.Contains(ce.Msg, "internal error: boom") {
		t.Errorf("got %v", err)
	}
	if err := Up(context.Background(), path, "x"); err != nil {
		t.Errorf("server did not survive the panic: %v", err)
	}
}

func TestClientDisconnectCancels(t *testing.T) {
	h := &fakeHandler{block: true, cancelled: make(chan struct{})}
	path := start(t, h)
	ctx, cancel := context.WithCancel(context.Background())
	cl := &Client{Path: path, Progress: func(string) { cancel() }}
	_, err := cl.Do(ctx, Request{Cmd: CmdUp, Name: "home"})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Do after cancel: %v", err)
	}
	select {
	case <-h.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("handler context not cancelled after the client left")
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	h := &fakeHandler{block: true, cancelled: make(chan struct{})}
	path := sockPath(t, "s.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() { done <- Serve(ctx, path, h, nil, ready) }()
	<-ready
	// The socket accepts at once; start a request that blocks.
	reqDone := make(chan error, 1)
	started := make(chan struct{})
	var once sync.Once
	go func() {
		cl := &Client{Path: path, Progress: func(string) { once.Do(func() { close(started) }) }}
		reqDone <- cl.Up(context.Background(), "home")
	}()
	<-started
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	<-h.cancelled
	if err := <-reqDone; err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("blocked request ended with %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
}

func TestServeListenError(t *testing.T) {
	file := sockPath(t, "f")
	os.WriteFile(file, nil, 0o600)
	ready := make(chan struct{})
	if err := Serve(context.Background(), file, &fakeHandler{}, nil, ready); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Serve on a file: %v", err)
	}
	select {
	case <-ready:
		t.Error("ready closed although Listen failed")
	default:
	}
}

func TestClientErrors(t *testing.T) {
	_, err := StatusOf(context.Background(), sockPath(t, "none.sock"))
	if err == nil || !strings.Contains(err.Error(), "cannot reach the daemon at") {
		t.Errorf("no daemon: %v", err)
	}
	// A server that answers garbage.
	path := sockPath(t, "g.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			bufio.NewReader(c).ReadString('\n')
			c.Write([]byte("not json\n"))
			c.Close()
		}
	}()
	if _, err := StatusOf(context.Background(), path); err == nil || !strings.Contains(err.Error(), "malformed response") {
		t.Errorf("garbage response: %v", err)
	}
}

// TestJSONNames checks the field names against interface.md's example.
func TestJSONNames(t *testing.T) {
	example, err := os.ReadFile("testdata/status-example.json")
	if err != nil {
		t.Fatal(err)
	}
	var st Status
	dec := json.NewDecoder(bytes.NewReader(example))
	dec.DisallowUnknownFields() // every field of the example is known
	if err := dec.Decode(&st); err != nil {
		t.Fatal(err)
	}
	if len(st.IKESAs) != 1 || st.IKESAs[0].ID != 3 || st.IKESAs[0].SPIi != "8f2c..." ||
		st.IKESAs[0].PeerAdditionalAddrs[0] != "203.0.113.1" || st.IKESAs[0].EstablishedS != 42 ||
		st.IKESAs[0].ChildSAs[0].SPIOut != "d4c3b2a1" || st.IKESAs[0].ChildSAs[0].RemoteTS[0] != "0.0.0.0/0" {
		t.Errorf("decoded %+v", st)
	}
	// Marshalling gives back the example's object, plus only the fields we added
	// (interface.md allows more fields, never fewer or renamed ones).
	out, err := json.Marshal(&st)
	if err != nil {
		t.Fatal(err)
	}
	var a, b map[string]any
	json.Unmarshal(example, &a)
	json.Unmarshal(out, &b)
	extensions := []string{"encap", "udp_encap"}
	for _, sa := range b["ike_sas"].([]any) {
		for _, k := range extensions {
			if _, ok := sa.(map[string]any)[k]; !ok {
				t.Errorf("extension field %q missing", k)
			}
			delete(sa.(map[string]any), k)
		}
	}
	if _, ok := b["half_open"]; !ok {
		t.Error("extension field half_open missing")
	}
	delete(b, "half_open")
	if !reflect.DeepEqual(a, b) {
		t.Errorf("marshal differs from the example:\n%s", out)
	}
	// Empty slices are [] (also when nested), and drops appear only when set.
	out, _ = json.Marshal(Status{IKESAs: []IKESA{{ChildSAs: []ChildSA{{}}}}})
	for _, want := range []string{`"peer_additional_addrs":[]`, `"virtual_ips":[]`, `"local_ts":[]`, `"remote_ts":[]`} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("%s lacks %s", out, want)
		}
	}
	if bytes.Contains(out, []byte("null")) || bytes.Contains(out, []byte("drops")) {
		t.Errorf("null or drops in %s", out)
	}
	out, _ = json.Marshal(&Status{Drops: map[string]uint64{"ts_mismatch": 2}})
	if string(out) != `{"ike_sas":[],"half_open":0,"drops":{"ts_mismatch":2}}` {
		t.Errorf("drops: %s", out)
	}
	out, _ = json.Marshal(IKESA{})
	if !bytes.Contains(out, []byte(`"child_sas":[]`)) {
		t.Errorf("child_sas: %s", out)
	}
}

func TestFormatStatus(t *testing.T) {
	var buf bytes.Buffer
	st := sampleStatus()
	st.Drops = map[string]uint64{"replay": 5, "ts_mismatch": 2}
	if err := FormatStatus(&buf, st); err != nil {
		t.Fatal(err)
	}
	want := `home #3: established, initiator, up 42s
  local:       192.0.2.10:4500 (alice@example.org)
  remote:      [2001:db8::1]:4500 (gw.example.org), NAT detection differs (a NAT in front of it, or it forces UDP encapsulation)
  ike:         aes128gcm16-prfsha256-x25519, spi_i 8f2c, spi_r 11aa
  mobike:      yes, rmobike yes
  peer addrs:  203.0.113.1
  virtual ips: 198.18.100.2
  net:         installed, aes128gcm16, spi_in c1a2b3c4, spi_out d4c3b2a1
               198.18.100.2/32 === 0.0.0.0/0
               in 1 bytes 3 packets, out 2 bytes 4 packets

drops:
  replay:      5
  ts_mismatch: 2
`
	if buf.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", buf.String(), want)
	}
	buf.Reset()
	FormatStatus(&buf, &Status{})
	if buf.String() != "no IKE SAs\n" {
		t.Errorf("empty: %q", buf.String())
	}
}

func TestUIDAllowed(t *testing.T) {
	for _, tc := range []struct {
		uid, self int
		want      bool
	}{{0, 1000, true}, {1000, 1000, true}, {1001, 1000, false}, {1000, 0, false}, {5, -1, false}, {0, -1, true}} {
		if got := uidAllowed(tc.uid, tc.self); got != tc.want {
			t.Errorf("uidAllowed(%d, %d) = %v", tc.uid, tc.self, got)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"cmd":"status"}`, `{"cmd":"up","name":"home"}`, `{"cmd":"down","name":"x"}`,
		`{"cmd":"switch","to":"192.0.2.2","sa":3,"wait_ms":5000}`,
		`{"cmd":"switch","to":"2001:db8::2","peer":"alice@example.org","all":true}`,
		`{"cmd":"x"} trailing`, `[]`, ``, `{"sa":-1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := DecodeRequest(data)
		if err != nil {
			if req != nil {
				t.Fatal("request with error")
			}
			return
		}
		// What decodes re-encodes and decodes to the same request.
		b, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeRequest(b)
		if err != nil || !reflect.DeepEqual(again, req) {
			t.Fatalf("re-decode of %s: %+v %v", b, again, err)
		}
	})
}

// TestEncapReason (issue 16): forced encapsulation without a NAT is not reported as a
// NAT; a NAT in front of us wins; the peer's differing NAT detection alone says so.
func TestEncapReason(t *testing.T) {
	for _, tc := range []struct {
		natLocal, natRemote, encap bool
		want                       string
	}{
		{false, false, false, "none"},
		{false, true, true, "forced"}, // both ends force: the peer's fake NAT-D too
		{true, true, true, "nat"},
		{false, true, false, "peer"},
	} {
		if got := EncapReason(tc.natLocal, tc.natRemote, tc.encap); got != tc.want {
			t.Errorf("EncapReason(%v, %v, %v) = %q, want %q", tc.natLocal, tc.natRemote, tc.encap, got, tc.want)
		}
	}
	var buf bytes.Buffer
	st := sampleStatus()
	st.IKESAs[0].NATRemote, st.IKESAs[0].Encap = true, true
	if err := FormatStatus(&buf, st); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "behind") {
		t.Errorf("forced encapsulation shown as a NAT:\n%s", buf.String())
	}
}

func TestFormatBrief(t *testing.T) {
	var buf bytes.Buffer
	st := &Status{Counts: &Counts{IKESAs: 12, Established: 11, ChildSAs: 12, IKESAsCreated: 14, ChildSAsCreated: 20, LivenessChecks: 3},
		HalfOpen: 2, Drops: map[string]uint64{"esp_replay": 4, "ike_decrypt": 0, "esp_no_policy": 1},
		Runtime: &Runtime{HeapLiveBytes: 1000, TotalBytes: 5000, Goroutines: 9}}
	if err := FormatBrief(&buf, st); err != nil {
		t.Fatal(err)
	}
	want := `ike sas:     12 (11 established), 2 half-open
child sas:   12
since start: 14 IKE SAs, 20 Child SAs created, 3 liveness checks
drops:       esp_no_policy 1
             esp_replay 4
memory:      1000 bytes live heap, 5000 mapped, 9 goroutines
`
	if buf.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", buf.String(), want)
	}
}
