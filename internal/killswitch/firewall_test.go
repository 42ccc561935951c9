package killswitch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeNft stands in for nft: it keeps whether the table exists and its counter, and
// records every call.
type fakeNft struct {
	mu     sync.Mutex
	calls  []string // args, then stdin
	exists bool
	count  uint64
	fail   string // a call whose args contain this fails
}

func (n *fakeNft) run(stdin []byte, name string, args ...string) ([]byte, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	call := strings.Join(args, " ")
	n.calls = append(n.calls, call+"\n"+string(stdin))
	if name != "/fake/nft" {
		return nil, fmt.Errorf("ran %q", name)
	}
	if n.fail != "" && strings.Contains(call+string(stdin), n.fail) {
		return nil, errors.New("exit status 1: Error: injected")
	}
	switch {
	case call == "-f -" && strings.Contains(string(stdin), "chain output"):
		n.exists, n.count = true, 0 // deleted and defined again: a new counter
	case call == "-f -":
		n.exists = false
	case call == "list counter inet kstest dropped":
		if !n.exists {
			return nil, errors.New("exit status 1: Error: No such file or directory")
		}
		return fmt.Appendf(nil, "table inet kstest {\n\tcounter dropped {\n\t\tpackets %d bytes %d\n\t}\n}\n", n.count, 60*n.count), nil
	default:
		return nil, fmt.Errorf("unexpected call %q", call)
	}
	return nil, nil
}

func (n *fakeNft) drop(k uint64) {
	n.mu.Lock()
	n.count += k
	n.mu.Unlock()
}

func newFake(t *testing.T) (*Firewall, *fakeNft) {
	t.Helper()
	n := &fakeNft{}
	f, err := New(Options{Table: "kstest", Nft: "/fake/nft", Run: n.run})
	if err != nil {
		t.Fatal(err)
	}
	return f, n
}

func TestNew(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := New(Options{})
	if err == nil || !strings.HasPrefix(err.Error(), "kill switch needs nft (nftables): ") {
		t.Fatalf("New without nft: %v", err)
	}
	if _, err := New(Options{Nft: "/nonexistent/nft"}); err == nil || !strings.HasPrefix(err.Error(), "kill switch needs nft (nftables): ") {
		t.Fatalf("New with a missing nft: %v", err)
	}
	// Found in PATH; the table defaults to mobikevpn.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "nft"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	f, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if f.nft != filepath.Join(dir, "nft") || f.table != "mobikevpn" {
		t.Errorf("nft %q, table %q", f.nft, f.table)
	}
	if _, err := New(Options{Table: "no good"}); err == nil {
		t.Error("an invalid table name accepted")
	}
}

func TestFirewallSetRemoveDropped(t *testing.T) {
	f, n := newFake(t)
	spec := Spec{Dev: "tun0", Mark: 9, Block: prefixes("0.0.0.0/0")}
	if d, err := f.Dropped(); d != 0 || err != nil {
		t.Fatalf("Dropped before Set = %d, %v", d, err)
	}
	if err := f.Set(spec); err != nil {
		t.Fatal(err)
	}
	want, _ := Script("kstest", spec)
	if last := n.calls[len(n.calls)-1]; last != "-f -\n"+want {
		t.Fatalf("Set ran %q", last)
	}
	n.drop(3)
	if d, err := f.Dropped(); d != 3 || err != nil {
		t.Fatalf("Dropped = %d, %v; want 3", d, err)
	}
	// A new Set starts a new counter in nft; Dropped keeps counting from 3.
	spec.Block = prefixes("198.51.100.0/24")
	if err := f.Set(spec); err != nil {
		t.Fatal(err)
	}
	n.drop(2)
	if d, err := f.Dropped(); d != 5 || err != nil {
		t.Fatalf("Dropped after a second Set = %d, %v; want 5", d, err)
	}
	// A failed Set leaves the table and the count as they were.
	n.fail = "10.0.0.0/8"
	if err := f.Set(Spec{Dev: "tun0", Mark: 9, Block: prefixes("10.0.0.0/8")}); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("Set with nft failing: %v", err)
	}
	n.fail = ""
	if d, err := f.Dropped(); d != 5 || err != nil {
		t.Fatalf("Dropped after a failed Set = %d, %v; want 5", d, err)
	}
	// An invalid Spec runs nothing.
	calls := len(n.calls)
	if err := f.Set(Spec{Dev: "bad dev", Mark: 9}); err == nil || len(n.calls) != calls {
		t.Fatalf("invalid Spec: %v, %d calls", err, len(n.calls)-calls)
	}
	// Someone else deleted the table: Dropped says so.
	n.mu.Lock()
	n.exists = false
	n.mu.Unlock()
	if _, err := f.Dropped(); err == nil || !strings.Contains(err.Error(), "No such file") {
		t.Fatalf("Dropped with the table gone: %v", err)
	}
	n.mu.Lock()
	n.exists = true
	n.mu.Unlock()

	if err := f.Remove(); err != nil {
		t.Fatal(err)
	}
	if last := n.calls[len(n.calls)-1]; last != "-f -\n"+removeScript("kstest") || n.exists {
		t.Fatalf("Remove ran %q", last)
	}
	// After Remove: what was counted stays, and nft is not asked.
	calls = len(n.calls)
	if d, err := f.Dropped(); d != 5 || err != nil || len(n.calls) != calls {
		t.Fatalf("Dropped after Remove = %d, %v (%d calls); want 5", d, err, len(n.calls)-calls)
	}
	if err := f.Remove(); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	n.fail = "delete table"
	if err := f.Remove(); err == nil || !strings.Contains(err.Error(), "removing table inet kstest") {
		t.Fatalf("Remove with nft failing: %v", err)
	}
}

func TestParsePackets(t *testing.T) {
	n, err := parsePackets([]byte("table inet mobikevpn {\n\tcounter dropped {\n\t\tpackets 18446744073709551615 bytes 1\n\t}\n}\n"))
	if n != 18446744073709551615 || err != nil {
		t.Errorf("parsePackets = %d, %v", n, err)
	}
	for _, bad := range []string{"", "table inet x {\n}\n", "packets x bytes 1\n"} {
		if _, err := parsePackets([]byte(bad)); err == nil {
			t.Errorf("parsePackets(%q) succeeded", bad)
		}
	}
}

func TestDefaultRun(t *testing.T) {
	out, err := run([]byte("hello"), "cat")
	if string(out) != "hello" || err != nil {
		t.Fatalf("run cat = %q, %v", out, err)
	}
	_, err = run(nil, "sh", "-c", "echo broken >&2; exit 3")
	if err == nil || !strings.Contains(err.Error(), "broken") || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("run failing = %v", err)
	}
}

// TestFirewallConcurrent: the methods may be called from several goroutines (run with
// -race).
func TestFirewallConcurrent(t *testing.T) {
	f, _ := newFake(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				switch i % 3 {
				case 0:
					_ = f.Set(Spec{Dev: "tun0", Mark: 1, Block: prefixes("0.0.0.0/0")})
				case 1:
					_, _ = f.Dropped()
				default:
					_ = f.Remove()
				}
			}
		}()
	}
	wg.Wait()
}
