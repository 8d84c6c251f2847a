package server

import (
	"context"
	"sync"
)

// waker wakes the streams of a rebuild's connections from a goroutine of
// its own. The Go scheduler runs a goroutine readied by another on the
// readier's processor, so streams woken by the rebuilding goroutine would
// queue behind it on its processor, and once the rebuild was preempted (10
// ms) it waited behind hundreds of them: at S, delta, a rebuild of 1000
// sidecars took 6-22 ms for the same work. Woken from here, they queue on
// this goroutine's processor and the rebuild keeps its own (4-10 ms).
// A steady stream's push it sends itself (see xdsStream.pushInline).
type waker struct {
	mu      sync.Mutex
	running bool    // run is: wake queues, else it wakes at once
	queue   []*conn // to wake
	signal  chan struct{}
}

func newWaker() *waker { return &waker{signal: make(chan struct{}, 1)} }

// wake has c's push sent (conn.push) or its stream woken (conn.wakeStream).
func (w *waker) wake(c *conn) {
	w.mu.Lock()
	if !w.running {
		w.mu.Unlock()
		c.wakeStream()
		return
	}
	w.queue = append(w.queue, c)
	w.mu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

// run pushes to or wakes the queued streams until ctx ends; then wake
// wakes at once.
func (w *waker) run(ctx context.Context) {
	w.mu.Lock()
	w.running = true
	w.mu.Unlock()
	var batch []*conn
	defer func() {
		w.mu.Lock()
		w.running = false
		batch, w.queue = w.queue, nil
		w.mu.Unlock()
		for _, c := range batch {
			c.wakeStream()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.signal:
		}
		w.mu.Lock()
		batch, w.queue = w.queue, batch[:0]
		w.mu.Unlock()
		for _, c := range batch {
			if c.push == nil || !c.push() {
				c.wakeStream()
			}
		}
		clear(batch)
	}
}
