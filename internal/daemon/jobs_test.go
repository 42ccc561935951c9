package daemon

import (
	"context"
	"testing"
)

// The job queue: jobs of one key one at a time and in order, others past them.
func TestJobQueueKeys(t *testing.T) {
	q := newJobQueue()
	var ran []string
	add := func(key, name string) { q.push(key, func(context.Context) { ran = append(ran, name) }) }
	add("sa/1", "claim 1")
	add("sa/1", "transfer 1")
	add("sa/2", "claim 2")
	add("load", "load")
	take := func() (job, bool) {
		jb, ok := q.pop()
		if ok {
			jb.run(context.Background())
		}
		return jb, ok
	}
	first, _ := take()  // claim 1: sa/1 busy now
	second, _ := take() // not transfer 1 (sa/1 busy): claim 2
	third, _ := take()  // load
	if _, ok := take(); ok {
		t.Fatalf("a job of a busy key was taken: %v", ran)
	}
	q.done(first.key)
	fourth, ok := take()
	if !ok || fourth.key != "sa/1" {
		t.Fatalf("after sa/1 was done: %v %v", fourth.key, ok)
	}
	q.done(second.key)
	q.done(third.key)
	q.done(fourth.key)
	if _, ok := take(); ok {
		t.Error("a job left over")
	}
	want := []string{"claim 1", "claim 2", "load", "transfer 1"}
	for i := range want {
		if i >= len(ran) || ran[i] != want[i] {
			t.Fatalf("ran %v, want %v", ran, want)
		}
	}
}
