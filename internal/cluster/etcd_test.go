package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/internal/cluster/etcdtest"
)

// The tests run against a real etcd server (etcdtest), started once for the package.
// Each test writes under its own prefix.

var etcdEndpoint string // "" when no etcd binary is installed

func TestMain(m *testing.M) {
	srv, err := etcdtest.Start()
	switch {
	case errors.Is(err, etcdtest.ErrNotInstalled):
	case err != nil:
		fmt.Fprintln(os.Stderr, "etcd:", err)
		os.Exit(1)
	default:
		etcdEndpoint = srv.Endpoint
	}
	code := m.Run()
	if srv != nil {
		srv.Stop()
	}
	os.Exit(code)
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
