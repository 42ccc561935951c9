// Package etcdtest runs a real etcd server (Debian's etcd-server, which
// scripts/test.sh installs) for tests: one member on unix sockets in a temporary
// folder, so that no test traffic touches a network.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ErrNotInstalled is returned by Start when there is no etcd binary.
var ErrNotInstalled = errors.New("etcd is not installed (scripts/test.sh installs Debian's etcd-server)")

// Server is a running etcd member.
type Server struct {
	Endpoint string // the client URL (unix://...)
	dir      string
	cmd      *exec.Cmd
	log      *os.File
}

// Start starts a member and waits until it answers (at most 30 s). The server is
// $MOBIKEVPN_ETCD if set (scripts/test.sh runs the cluster's tests against a current
// etcd built from the module proxy that way too), else etcd from PATH.
func Start() (*Server, error) {
	bin := os.Getenv("MOBIKEVPN_ETCD")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("etcd"); err != nil {
			return nil, ErrNotInstalled
		}
	}
	dir, err := os.MkdirTemp("", "mobikevpn-etcd-")
	if err != nil {
		return nil, err
	}
	// etcd makes unix sockets named after the URL's host, in its working folder.
	cmd := exec.Command(bin, "--name", "n1", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", "unix://localhost:2379", "--advertise-client-urls", "unix://localhost:2379",
		"--listen-peer-urls", "unix://localhost:2380", "--initial-advertise-peer-urls", "unix://localhost:2380",
		"--initial-cluster", "n1=unix://localhost:2380")
	cmd.Dir = dir
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Server{Endpoint: "unix://" + filepath.Join(dir, "localhost:2379"), dir: dir, cmd: cmd, log: logf}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if s.answers() {
			return s, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, _ := os.ReadFile(filepath.Join(dir, "etcd.log"))
	s.Stop()
	return nil, fmt.Errorf("etcd did not come up in 30 s:\n%s", out)
}

func (s *Server) answers() bool {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		return false
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = cli.Put(ctx, "/etcdtest/probe", "x")
	return err == nil
}

// Client returns a plain client of the server, for a test to look at what is stored.
func (s *Server) Client() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

// Stop kills the member and removes its folder.
func (s *Server) Stop() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.log.Close()
	os.RemoveAll(s.dir)
}
