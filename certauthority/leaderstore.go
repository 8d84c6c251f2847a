package certauthority

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// LeaderCreates wraps a key store so that only the leader creates the CA
// root; isLeader reports whether this replica leads now (the leader
// package's Elector.IsLeader in Kubernetes mode). A follower whose Load found
// nothing waits, polling Load with backoff up to a second, until the
// leader's root exists and then reports ErrExists, so the CA loads the
// leader's root. If the follower becomes the leader while waiting, it creates
// the root itself. Every replica thus signs from one root, even when all
// start at the same moment on an empty cluster.
func LeaderCreates(s KeyStore, isLeader func() bool, logger *slog.Logger) KeyStore {
	return leaderStore{KeyStore: s, isLeader: isLeader, logger: logger}
}

type leaderStore struct {
	KeyStore
	isLeader func() bool
	logger   *slog.Logger
}

// Unwrap returns the wrapped store (a RotationStore is found through it).
func (s leaderStore) Unwrap() KeyStore { return s.KeyStore }

func (s leaderStore) Create(ctx context.Context, m *Material) error {
	if s.isLeader() {
		return s.KeyStore.Create(ctx, m)
	}
	s.logger.Info("waiting for the leader to create the CA root", "store", s.String())
	leading, err := s.waitForRoot(ctx)
	if err != nil {
		return fmt.Errorf("wait for the leader to create the CA root in %s: %w", s, err)
	}
	if leading {
		return s.KeyStore.Create(ctx, m)
	}
	return fmt.Errorf("%s was created by the leader: %w", s, ErrExists)
}

// waitForRoot polls until the root exists (false) or this replica leads
// (true), backing off from 100 ms by 1.5 times up to a second.
func (s leaderStore) waitForRoot(ctx context.Context) (leading bool, err error) {
	delay := 100 * time.Millisecond
	for {
		if s.isLeader() {
			return true, nil
		}
		_, err := s.Load(ctx)
		if err == nil {
			return false, nil
		}
		if !errors.Is(err, ErrNotFound) {
			s.logger.Warn("waiting for the leader to create the CA root", "store", s.String(), "error", err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		case <-t.C:
		}
		delay = min(delay*3/2, time.Second)
	}
}
