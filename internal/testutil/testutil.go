// Package testutil holds the few helpers tests across the module share:
// waiting on a condition instead of sleeping, running a part in the
// background for the length of a test, and a log sink tests can read while
// goroutines write. It imports only the standard library.
package testutil

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"
)

// Poll calls cond every interval until it returns true or timeout has
// passed, and reports whether it returned true.
func Poll(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}

// Eventually polls cond every 20 ms and fails the test when it does not
// hold within timeout; what names the awaited state.
func Eventually(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	if !Poll(timeout, 20*time.Millisecond, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// Background runs run(ctx) in a goroutine until the test ends; then it
// cancels ctx, waits for run to return and fails the test if run returned
// an error. what names the part in that failure.
func Background(t testing.TB, what string, run func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: %v", what, err)
		}
	})
}

// SyncBuffer is a bytes.Buffer safe for one writer goroutine (a logger)
// and a reading test.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
