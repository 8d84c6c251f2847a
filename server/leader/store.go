package leader

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/librarymesh/controlplane/certauthority"
)

// KeyStore wraps the CA's key store so that only the leader creates the CA
// root: a follower whose Load found nothing waits (polling Load with backoff
// up to a second) until the leader's root exists and then reports
// certauthority.ErrExists, so the CA loads the leader's root. If the
// follower becomes the leader while waiting, it creates the root itself.
// Every replica thus signs from one root, even when all start at the same
// moment on an empty cluster.
func (e *Elector) KeyStore(s certauthority.KeyStore) certauthority.KeyStore {
	return leaderStore{KeyStore: s, e: e}
}

type leaderStore struct {
	certauthority.KeyStore
	e *Elector
}

func (s leaderStore) Create(ctx context.Context, m *certauthority.Material) error {
	if s.e.IsLeader() {
		return s.KeyStore.Create(ctx, m)
	}
	s.e.logger.Info("waiting for the leader to create the CA root", "store", s.String())
	backoff := wait.Backoff{Duration: 100 * time.Millisecond, Factor: 1.5, Steps: 1 << 30, Cap: time.Second}
	leading := false
	err := wait.ExponentialBackoffWithContext(ctx, backoff, func(ctx context.Context) (bool, error) {
		if leading = s.e.IsLeader(); leading {
			return true, nil
		}
		_, err := s.Load(ctx)
		if err != nil && !errors.Is(err, certauthority.ErrNotFound) {
			s.e.logger.Warn("waiting for the leader to create the CA root", "store", s.String(), "error", err)
		}
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("wait for the leader to create the CA root in %s: %w", s, err)
	}
	if leading {
		return s.KeyStore.Create(ctx, m)
	}
	return fmt.Errorf("%s was created by the leader: %w", s, certauthority.ErrExists)
}
