package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The tests run against a real etcd server (Debian's etcd-server, which
// scripts/test.sh installs), started once for the package on unix sockets in a
// temporary folder: no network traffic at all. Each test writes under its own prefix.

var etcdEndpoint string // "" when no etcd binary is installed

func TestMain(m *testing.M) {
	stop, err := startEtcd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcd:", err)
		os.Exit(1)
	}
	code := m.Run()
	stop()
	os.Exit(code)
}

// startEtcd starts one etcd member in a temporary folder, listening on unix sockets.
func startEtcd() (stop func(), err error) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		return func() {}, nil // tests that need it skip
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
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop = func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		os.RemoveAll(dir)
	}
	endpoint := "unix://" + filepath.Join(dir, "localhost:2379")
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: time.Second, Logger: quietLogger()})
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err = cli.Put(ctx, "/probe", "x")
			cancel()
			cli.Close()
			if err == nil {
				etcdEndpoint = endpoint
				return stop, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "etcd.log"))
	stop()
	return nil, fmt.Errorf("did not come up in 30 s:\n%s", log)
}

func needEtcd(t *testing.T) {
	t.Helper()
	if etcdEndpoint == "" {
		t.Skip("etcd is not installed (scripts/test.sh installs Debian's etcd-server)")
	}
}

var testKey, _ = NewStateKey([]byte("0123456789abcdef0123456789abcdef"))

// join makes node name a member under the test's own prefix.
func join(t *testing.T, name string, ttl time.Duration) *Coordinator {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	prefix := "/test/" + strings.ReplaceAll(t.Name(), "/", "_") + "/"
	c, err := Join(ctx, Config{Endpoints: []string{etcdEndpoint}, Prefix: prefix, LeaseTTL: ttl},
		Node{Name: name, Addrs: nil}, testKey)
	if err != nil {
		t.Fatalf("join %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}
