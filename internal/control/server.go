package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"
)

const (
	readTimeout  = 10 * time.Second // to receive the request
	writeTimeout = 10 * time.Second // per response line
	maxConns     = 32               // concurrent control connections
)

// Server serves the control socket.
type Server struct {
	ln   *net.UnixListener
	path string
	h    Handler
	log  *slog.Logger
	self int // our uid (-1 where unknown)

	closeOnce sync.Once
	closeErr  error
	conns     sync.WaitGroup
	sem       chan struct{}
}

// Listen creates the control socket at path: the parent folder is created with mode
// 0700 if missing, a stale socket left by a dead daemon is removed (a live one is an
// error, as is anything else, a symlink included), and on Unix the socket is created
// with mode 0600 with no window in which it has wider permissions, and no symlink
// followed (see listenPrivate). Whatever the file's mode, each connection's peer must
// be root (an administrator) or our own user (see peerAllowed).
func Listen(path string, h Handler, log *slog.Logger) (*Server, error) {
	if path == "" {
		return nil, errors.New("control: empty socket path")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := listenPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	return &Server{ln: ln, path: path, h: h, log: log, self: os.Getuid(), sem: make(chan struct{}, maxConns)}, nil
}

// removeStale removes a socket file at path that no server answers on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if fi.Mode()&fs.ModeSocket == 0 && !(runtime.GOOS == "windows" && fi.Mode()&fs.ModeIrregular != 0) {
		return fmt.Errorf("control: %s exists and is not a socket; remove it or choose another control path", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("control: %s is in use by a running daemon", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("control: removing stale socket: %w", err)
	}
	return nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Close stops accepting connections and removes the socket file; requests in
// progress see their context cancelled by Serve's return.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.ln.Close() })
	return s.closeErr
}

// Serve accepts connections until ctx is done or Close is called, then waits for the
// requests in progress (their contexts are cancelled) and returns nil. It closes the
// listener on return.
func (s *Server) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		s.Close()
		s.conns.Wait()
	}()
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	var delay time.Duration
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			// Out of file descriptors and the like: back off a little.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("control: accept failed", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		delay = 0
		select {
		case s.sem <- struct{}{}:
		default:
			s.conns.Add(1)
			go func() {
				defer s.conns.Done()
				writeLine(c, &Response{Error: "too many control connections; try again", Code: CodeFailed})
				c.Close()
			}()
			continue
		}
		s.conns.Add(1)
		go func() {
			defer s.conns.Done()
			defer func() { <-s.sem }()
			s.serveConn(ctx, c)
		}()
	}
}

// Serve listens on path and serves h until ctx is done; see Listen and Server.Serve.
// Once the socket accepts connections it closes ready (if not nil); an error from
// Listen is returned before that.
func Serve(ctx context.Context, path string, h Handler, log *slog.Logger, ready chan<- struct{}) error {
	s, err := Listen(path, h, log)
	if err != nil {
		return err
	}
	if ready != nil {
		close(ready)
	}
	return s.Serve(ctx)
}

type progressKey struct{}

// Progress sends an intermediate message to the client of the request whose context
// ctx is (a no-op outside a request).
func Progress(ctx context.Context, msg string) {
	if f, ok := ctx.Value(progressKey{}).(func(string)); ok {
		f(msg)
	}
}

func (s *Server) serveConn(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	if who, ok, err := peerAllowed(c, s.self); err != nil || !ok {
		msg := "permission denied"
		if err != nil {
			msg = fmt.Sprintf("cannot check the peer's credentials: %v", err)
		}
		s.log.Warn("control: connection refused", "peer", who, "err", err)
		writeLine(c, &Response{Error: msg, Code: CodeFailed})
		return
	}
	c.SetReadDeadline(time.Now().Add(readTimeout))
	line, err := readLine(c, MaxRequest)
	if err != nil {
		writeLine(c, &Response{Error: err.Error(), Code: CodeUsage})
		return
	}
	req, err := DecodeRequest(line)
	if err != nil {
		writeLine(c, &Response{Error: err.Error(), Code: CodeUsage})
		return
	}
	c.SetReadDeadline(time.Time{})

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The client keeps its side open while it waits; EOF or an error means it left.
	go func() {
		io.Copy(io.Discard, io.LimitReader(c, MaxRequest))
		cancel()
	}()
	var mu sync.Mutex
	done := false
	ctx = context.WithValue(ctx, progressKey{}, func(msg string) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			writeLine(c, &Response{Progress: msg})
		}
	})
	resp := s.dispatch(ctx, req)
	mu.Lock()
	done = true
	mu.Unlock()
	writeLine(c, resp)
}

// readLine reads up to a newline or EOF, at most max bytes.
func readLine(r io.Reader, max int) ([]byte, error) {
	buf := make([]byte, 0, 512)
	tmp := make([]byte, 4096)
	for {
		n, err := r.Read(tmp)
		if i := bytes.IndexByte(tmp[:n], '\n'); i >= 0 {
			n = i
			err = io.EOF
		}
		if len(buf)+n > max {
			return nil, fmt.Errorf("request larger than %d bytes", max)
		}
		buf = append(buf, tmp[:n]...)
		if err == io.EOF {
			if len(bytes.TrimSpace(buf)) == 0 {
				return nil, errors.New("empty request")
			}
			return buf, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the request: %w", err)
		}
	}
}

// DecodeRequest parses one request: a JSON object with known fields only.
func DecodeRequest(line []byte) (*Request, error) {
	if len(line) > MaxRequest {
		return nil, fmt.Errorf("request larger than %d bytes", MaxRequest)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var req Request
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("malformed request: %v", err)
	}
	if dec.More() {
		return nil, errors.New("malformed request: data after the JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("malformed request: data after the JSON object")
	}
	return &req, nil
}

func (s *Server) dispatch(ctx context.Context, req *Request) (resp *Response) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("control: handler panicked", "cmd", req.Cmd, "panic", r)
			resp = &Response{Error: fmt.Sprintf("internal error: %v", r), Code: CodeFailed}
		}
	}()
	s.log.Debug("control: request", "cmd", req.Cmd, "name", req.Name)
	switch req.Cmd {
	case CmdStatus:
		var st *Status
		var err error
		if b, ok := s.h.(BriefStatuser); ok && req.Brief {
			st, err = b.BriefStatus(ctx, req.GC)
		} else {
			st, err = s.h.Status(ctx)
		}
		if err != nil {
			return errResponse(err)
		}
		if st == nil {
			st = &Status{}
		}
		if req.Brief {
			brief := *st // the handler's own status stays as it is
			st = &brief
			if st.Counts == nil {
				c := &Counts{IKESAs: len(st.IKESAs)}
				for _, sa := range st.IKESAs {
					if sa.State == "established" {
						c.Established++
					}
					c.ChildSAs += len(sa.ChildSAs)
				}
				st.Counts = c
			}
			st.IKESAs = nil
		}
		return &Response{OK: true, Status: st}
	case CmdUp, CmdDown:
		if req.Name == "" {
			return &Response{Error: req.Cmd + ": missing the connection name", Code: CodeUsage}
		}
		f := s.h.Up
		if req.Cmd == CmdDown {
			f = s.h.Down
		}
		if err := f(ctx, req.Name); err != nil {
			return errResponse(err)
		}
		return &Response{OK: true}
	case CmdSwitch:
		sw, ok := s.h.(Switcher)
		if !ok {
			return &Response{Error: "switch: not supported yet", Code: CodeFailed}
		}
		s, err := SwitchRequest{
			To: req.To, SA: req.SA, Peer: req.Peer, From: req.From, All: req.All,
			Wait: time.Duration(req.WaitMS) * time.Millisecond,
		}.Parse()
		if err != nil {
			return errResponse(err)
		}
		msg, err := sw.Switch(ctx, s)
		if err != nil {
			return errResponse(err)
		}
		return &Response{OK: true, Message: msg}
	case CmdReload:
		r, ok := s.h.(Reloader)
		if !ok {
			return &Response{Error: "reload: not supported by this daemon", Code: CodeFailed}
		}
		msg, err := r.Reload(ctx)
		if err != nil {
			return errResponse(err)
		}
		return &Response{OK: true, Message: msg}
	case CmdMove, CmdDrain, CmdClusterStatus:
		return s.serveCluster(ctx, *req)
	case "":
		return &Response{Error: "missing cmd", Code: CodeUsage}
	}
	return &Response{Error: fmt.Sprintf("unknown command %q; known: status, up, down, switch, reload, move, cluster-status", req.Cmd), Code: CodeUsage}
}

func errResponse(err error) *Response {
	code := CodeFailed
	var ce *Error
	if errors.As(err, &ce) && ce.Code != 0 {
		code = ce.Code
	}
	return &Response{Error: err.Error(), Code: code}
}

func writeLine(c net.Conn, r *Response) {
	b, err := json.Marshal(r)
	if err != nil {
		b, _ = json.Marshal(&Response{Error: "encoding the response: " + err.Error(), Code: CodeFailed})
	}
	c.SetWriteDeadline(time.Now().Add(writeTimeout))
	c.Write(append(b, '\n'))
}
