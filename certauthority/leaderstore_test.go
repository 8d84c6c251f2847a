package certauthority

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// TestLeaderCreates: a follower does not create the root; it waits until the
// leader's root is in the store (ErrExists) or until it leads itself (it
// creates), and gives up when its context ends.
func TestLeaderCreates(t *testing.T) {
	root, _ := pluggedMaterial(t)
	discard := slog.New(slog.DiscardHandler)
	t.Run("leader creates at once", func(t *testing.T) {
		s := DirStore{Dir: filepath.Join(t.TempDir(), "ca")}
		if err := LeaderCreates(s, func() bool { return true }, discard).Create(t.Context(), root); err != nil {
			t.Fatal(err)
		}
		mustHold(t, s, root)
	})
	t.Run("follower loads the leader's root", func(t *testing.T) {
		s := DirStore{Dir: filepath.Join(t.TempDir(), "ca")}
		done := make(chan error, 1)
		go func() { done <- LeaderCreates(s, func() bool { return false }, discard).Create(t.Context(), root) }()
		if err := s.Create(t.Context(), root); err != nil { // the leader, elsewhere
			t.Fatal(err)
		}
		if err := <-done; !errors.Is(err, ErrExists) {
			t.Fatalf("follower's Create = %v, want ErrExists", err)
		}
	})
	t.Run("follower that becomes leader creates", func(t *testing.T) {
		s := DirStore{Dir: filepath.Join(t.TempDir(), "ca")}
		var leading atomic.Bool
		done := make(chan error, 1)
		go func() { done <- LeaderCreates(s, leading.Load, discard).Create(t.Context(), root) }()
		leading.Store(true)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		mustHold(t, s, root)
	})
	t.Run("follower gives up with its context", func(t *testing.T) {
		s := DirStore{Dir: filepath.Join(t.TempDir(), "ca")}
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		err := LeaderCreates(s, func() bool { return false }, discard).Create(ctx, root)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Create = %v, want the context's deadline", err)
		}
	})
}

func mustHold(t *testing.T, s DirStore, want *Material) {
	t.Helper()
	got, err := s.Load(t.Context())
	if err != nil || !bytes.Equal(got.CertPEM, want.CertPEM) {
		t.Fatalf("store holds %v, %v; want the created root", got, err)
	}
}
