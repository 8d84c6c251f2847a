package server

import (
	"context"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/librarymesh/controlplane/registry"
)

// TestDebounceAdapts: a lone change after a quiet spell is pushed after
// DebounceQuiet, not Debounce; a burst still coalesces into a few pushes.
// The push loop runs in a synctest bubble, so its timers run on a fake
// clock: the waits are exact, and the test takes no real time.
func TestDebounceAdapts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const quiet, window = 5 * time.Millisecond, 300 * time.Millisecond
		w := defaultWorld()
		reg := newFakeRegistry(w)
		s, err := New(Config{GRPCAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler), Registry: reg, NewBuilder: newFakeBuilder,
			Debounce: window, MaxDebounce: time.Second, DebounceQuiet: quiet, ShutdownGrace: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer s.grpcLis.Close()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { s.pushLoop(ctx); close(done) }()
		defer func() { cancel(); <-done }()
		pushedBy := func(rev uint64) time.Duration {
			start := time.Now()
			for _, r := s.Pushes(); r < rev; _, r = s.Pushes() {
				time.Sleep(time.Millisecond)
			}
			return time.Since(start)
		}
		pushedBy(1)
		time.Sleep(window + 100*time.Millisecond) // a quiet spell longer than Debounce

		n0, _ := s.Pushes()
		if took := pushedBy(reg.set(w, registry.Change{Hostnames: []string{w.host}, EndpointsOnly: true})); took > quiet+time.Millisecond {
			t.Errorf("a lone change after a quiet spell was pushed after %v, want DebounceQuiet (%v), not Debounce (%v)", took, quiet, window)
		}
		n1, _ := s.Pushes()
		var rev uint64
		for range 20 {
			rev = reg.set(w, registry.Change{Hostnames: []string{w.host}, EndpointsOnly: true})
			time.Sleep(10 * time.Millisecond)
		}
		pushedBy(rev)
		n2, _ := s.Pushes()
		if n1-n0 != 1 || n2-n1 > 2 {
			t.Errorf("pushes: %d for the lone change (want 1), %d for a burst of 20 changes 10ms apart (want at most 2)", n1-n0, n2-n1)
		}
	})
}
