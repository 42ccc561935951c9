package mobike

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// A responder's durable state survives Snapshot and Restore: paths, verified
// addresses, a pending switch and the switch history; a check in flight refuses.
func TestSnapshotRestore(t *testing.T) {
	m := newResponder(Policy{})
	// The initiator moves to i2: a return routability check is in flight.
	if refuse, _ := m.Update(t0, host(r1, r2), Path{r1, i2}, nil); refuse != 0 {
		t.Fatalf("update refused: %v", refuse)
	}
	if _, err := m.Snapshot(); !errors.Is(err, ErrCheckInFlight) {
		t.Fatalf("snapshot with a check in flight: %v", err)
	}
	c := m.rr
	m.Reply(t0.Add(time.Second), host(r1, r2), c, Path{r1, i2}, Reply{Cookie2: c.Cookie2})
	if _, err := m.SwitchTo(t0.Add(2*time.Second), r2.Addr()); err != nil {
		t.Fatal(err)
	}
	s, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if s.IKE != (Path{r1, i2}) || s.ESP != (Path{r1, i2}) || s.SwitchTo != r2.Addr() || len(s.Switches) != 1 || len(s.Verified) != 2 {
		t.Fatalf("snapshot: %+v", s)
	}
	n := Restore(Config{Role: Responder, Policy: Policy{RMobike: true}, Mobike: true, PeerRMobike: true, Rand: rand.NewChaCha8([32]byte{3})}, s)
	s2, err := n.Snapshot()
	if err != nil || !reflect.DeepEqual(s, s2) {
		t.Fatalf("restored manager's snapshot differs: %v\n%+v\n%+v", err, s, s2)
	}
	if !n.Verified(i1) || !n.Verified(i2) || n.IKE() != (Path{r1, i2}) || n.State() != "stable" {
		t.Error("the restored manager lost its paths or verified addresses")
	}
	// The initiator arrives where it was asked to: the switch completes there.
	_, ds := n.Update(t0.Add(3*time.Second), host(r1, r2), Path{r2, i2}, nil)
	if !hasNote(ds, NoteSwitched) {
		t.Errorf("no switch completion after the restore: %v", ds)
	}
}

func hasNote(ds []Decision, k NoteKind) bool {
	for _, d := range ds {
		if n, ok := d.(Note); ok && n.Kind == k {
			return true
		}
	}
	return false
}
