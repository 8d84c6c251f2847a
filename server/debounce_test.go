package server

import (
	"context"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/librarymesh/controlplane/registry"
)

// TestDebounceAdapts: a lone change after a quiet spell is pushed at once
// (or after DebounceQuiet, when set), not after Debounce; a burst still
// coalesces into a few pushes. The push loop runs in a synctest bubble, so
// its timers run on a fake clock: the waits are exact, and the test takes
// no real time.
func TestDebounceAdapts(t *testing.T) {
	const window, poll = 300 * time.Millisecond, time.Millisecond
	for _, quiet := range []time.Duration{0, 5 * time.Millisecond} {
		t.Run("quiet="+quiet.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { testDebounce(t, window, quiet, poll) })
		})
	}
}

func testDebounce(t *testing.T, window, quiet, poll time.Duration) {
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
	// pushedBy returns how long until rev was pushed, to within poll.
	pushedBy := func(rev uint64) time.Duration {
		start := time.Now()
		for _, r := s.Pushes(); r < rev; _, r = s.Pushes() {
			time.Sleep(poll)
		}
		return time.Since(start)
	}
	pushedBy(1)
	time.Sleep(window + 100*time.Millisecond) // a quiet spell longer than Debounce

	for i := range 2 { // a lone change, twice
		n0, _ := s.Pushes()
		if took := pushedBy(reg.set(w, registry.Change{Hostnames: []string{w.host}, EndpointsOnly: true})); took > quiet+poll {
			t.Errorf("lone change %d after a quiet spell was pushed after %v, want %v (DebounceQuiet), not Debounce (%v)", i, took, quiet, window)
		}
		if n1, _ := s.Pushes(); n1-n0 != 1 {
			t.Errorf("lone change %d: %d pushes, want 1", i, n1-n0)
		}
		time.Sleep(window + 100*time.Millisecond)
	}
	n1, _ := s.Pushes()
	var rev uint64
	for range 20 {
		rev = reg.set(w, registry.Change{Hostnames: []string{w.host}, EndpointsOnly: true})
		time.Sleep(10 * time.Millisecond)
	}
	pushedBy(rev)
	if n2, _ := s.Pushes(); n2-n1 > 2 {
		t.Errorf("%d pushes for a burst of 20 changes 10ms apart, want at most 2 (the first at once, the rest gathered)", n2-n1)
	}
}
