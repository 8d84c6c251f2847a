package server

import (
	"context"
	"testing"
	"time"
)

// TestWakerWakesEveryQueuedStream: while run runs, wake queues and run
// wakes each stream once (a stream already woken stays woken once); before
// run and after it ends, wake wakes at once.
func TestWakerWakesEveryQueuedStream(t *testing.T) {
	w := newWaker()
	conns := make([]*conn, 500)
	for i := range conns {
		conns[i] = &conn{wake: make(chan streamEvent, 1)}
	}
	woken := func(c *conn) bool {
		select {
		case <-c.wake:
			return true
		default:
			return false
		}
	}

	w.wake(conns[0]) // not running: at once
	if !woken(conns[0]) {
		t.Fatal("wake before run did not wake the stream")
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for !func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.running }() {
		if time.Now().After(deadline) {
			t.Fatal("run did not start")
		}
		time.Sleep(time.Millisecond)
	}
	for _, c := range conns {
		w.wake(c)
		w.wake(c) // twice: the stream's one slot holds one wake
	}
	for i, c := range conns {
		for !woken(c) {
			if time.Now().After(deadline) {
				t.Fatalf("stream %d of %d not woken", i, len(conns))
			}
			time.Sleep(time.Millisecond)
		}
	}

	cancel()
	<-done
	w.wake(conns[1])
	if !woken(conns[1]) {
		t.Fatal("wake after run ended did not wake the stream")
	}
}
