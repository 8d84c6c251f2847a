package server

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/librarymesh/controlplane/registry"
)

// TestDebounceAdapts: a lone change after a quiet spell is pushed after
// DebounceQuiet, not Debounce; a burst still coalesces into a few pushes.
func TestDebounceAdapts(t *testing.T) {
	w := defaultWorld()
	reg := newFakeRegistry(w)
	s, err := New(Config{GRPCAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler), Registry: reg, NewBuilder: newFakeBuilder,
		Debounce: 300 * time.Millisecond, MaxDebounce: time.Second, DebounceQuiet: 5 * time.Millisecond, ShutdownGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "first push", func() bool { n, _ := s.Pushes(); return n > 0 })
	time.Sleep(400 * time.Millisecond) // a quiet spell longer than Debounce

	n0, _ := s.Pushes()
	start := time.Now()
	rev := reg.set(w, registry.Change{Hostnames: []string{w.host}, EndpointsOnly: true})
	waitFor(t, "the lone change pushed", func() bool { _, r := s.Pushes(); return r >= rev })
	if took := time.Since(start); took > 150*time.Millisecond {
		t.Errorf("a lone change after a quiet spell was pushed after %v, want about DebounceQuiet (5ms), well under Debounce (300ms)", took)
	}

	n1, _ := s.Pushes()
	for range 20 {
		rev = reg.set(w, registry.Change{Hostnames: []string{w.host}, EndpointsOnly: true})
		time.Sleep(10 * time.Millisecond)
	}
	waitFor(t, "the burst pushed", func() bool { _, r := s.Pushes(); return r >= rev })
	n2, _ := s.Pushes()
	if n1-n0 != 1 || n2-n1 > 3 {
		t.Errorf("pushes: %d for the lone change (want 1), %d for a burst of 20 changes 10ms apart (want at most 3)", n1-n0, n2-n1)
	}
}
