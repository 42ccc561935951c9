package daemon

import (
	"context"
	"sync"
)

// jobQueue is the etcd jobs in order. It is not bounded: its jobs come from the node's
// own SAs (a few each: claims, moves, releases), never from the network; a `drain` of
// thousands of SAs queues thousands at once.
type jobQueue struct {
	mu   sync.Mutex
	q    []func(context.Context)
	wake chan struct{} // a job was queued
}

func newJobQueue() *jobQueue { return &jobQueue{wake: make(chan struct{}, 1)} }

func (j *jobQueue) push(job func(context.Context)) {
	j.mu.Lock()
	j.q = append(j.q, job)
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

// pop takes the first job, nil when there is none; wake stays signalled while more
// are queued.
func (j *jobQueue) pop() func(context.Context) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.q) == 0 {
		return nil
	}
	job := j.q[0]
	j.q[0] = nil
	j.q = j.q[1:]
	if len(j.q) > 0 {
		select {
		case j.wake <- struct{}{}:
		default:
		}
	}
	return job
}
