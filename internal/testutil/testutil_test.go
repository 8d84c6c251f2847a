package testutil

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	var n atomic.Int32
	if !Poll(time.Minute, time.Millisecond, func() bool { return n.Add(1) == 3 }) || n.Load() != 3 {
		t.Errorf("Poll stopped after %d calls, want true after 3", n.Load())
	}
	begin := time.Now()
	if Poll(30*time.Millisecond, time.Millisecond, func() bool { return false }) {
		t.Error("Poll of a condition that never holds returned true")
	}
	if took := time.Since(begin); took < 30*time.Millisecond {
		t.Errorf("Poll gave up after %s, before its timeout", took)
	}
}

// recorder is a testing.TB that records failures and cleanups.
type recorder struct {
	testing.TB
	errors   []string
	cleanups []func()
}

func (r *recorder) Helper()          {}
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func TestBackground(t *testing.T) {
	r := &recorder{}
	var stopped atomic.Bool
	Background(r, "part", func(ctx context.Context) error {
		<-ctx.Done()
		stopped.Store(true)
		return errors.New("boom")
	})
	if stopped.Load() {
		t.Fatal("the part stopped before the test ended")
	}
	for _, f := range r.cleanups {
		f()
	}
	if !stopped.Load() || len(r.errors) != 1 || r.errors[0] != "part: boom" {
		t.Errorf("after cleanup: stopped %v, errors %q; want stopped and [part: boom]", stopped.Load(), r.errors)
	}
}

func TestSyncBuffer(t *testing.T) {
	var b SyncBuffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			fmt.Fprint(&b, "x")
		}
	}()
	<-done
	if got := len(b.String()); got != 100 {
		t.Errorf("buffer holds %d bytes, want 100", got)
	}
}
