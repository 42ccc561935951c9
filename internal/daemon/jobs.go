package daemon

import (
	"context"
	"sync"
)

// jobQueue is the etcd jobs in order. It is not bounded: its jobs come from the node's
// own SAs (a few each: claims, moves, releases), never from the network; a `drain` of
// thousands of SAs queues thousands at once. Jobs of one key (an SA, the node's load,
// its virtual IPs) run one at a time, in order; jobs of different keys may run at once
// (up to maxJobs), so that a drain's thousands of transactions are not one etcd round
// trip after another.
type jobQueue struct {
	mu   sync.Mutex
	q    []job
	busy map[string]bool // keys with a job running
	wake chan struct{}   // a job was queued or finished
}

type job struct {
	key string
	run func(context.Context)
}

// maxJobs bounds the etcd jobs running at once.
const maxJobs = 16

func newJobQueue() *jobQueue {
	return &jobQueue{busy: make(map[string]bool), wake: make(chan struct{}, 1)}
}

func (j *jobQueue) signal() {
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

func (j *jobQueue) push(key string, f func(context.Context)) {
	j.mu.Lock()
	j.q = append(j.q, job{key, f})
	j.mu.Unlock()
	j.signal()
}

// pop takes the first job whose key has none running and marks its key busy until
// done; false when there is none.
func (j *jobQueue) pop() (job, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for i, jb := range j.q {
		if j.busy[jb.key] {
			continue
		}
		j.busy[jb.key] = true
		if i == 0 {
			j.q[0] = job{}
			j.q = j.q[1:]
		} else {
			copy(j.q[i:], j.q[i+1:])
			j.q[len(j.q)-1] = job{}
			j.q = j.q[:len(j.q)-1]
		}
		return jb, true
	}
	return job{}, false
}

// done ends the running job of key.
func (j *jobQueue) done(key string) {
	j.mu.Lock()
	delete(j.busy, key)
	j.mu.Unlock()
	j.signal()
}
