package certauthority

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// RotateOptions configure StartRotation (the flags of `controlplane ca rotate`).
type RotateOptions struct {
	// Store is where the server keeps its self-signed root (DATA_DIR/ca or
	// istio-ca-secret); it must be a RotationStore.
	Store KeyStore
	// Plugged is the server's cacerts store, if any: a plugged-in CA is not
	// rotated here (replace cacerts under the same root; it is reloaded).
	Plugged KeyStore
	// TrustDomain, KeyAlgorithm, RSAKeyBits and RootTTL shape the new root
	// (defaults as for Config).
	TrustDomain  string
	KeyAlgorithm KeyAlgorithm
	RSAKeyBits   int
	RootTTL      time.Duration
	// Force marks the rotation forced: the sign-new phase does not wait
	// for the old root's certificates to expire.
	Force bool
	Now   func() time.Time
}

// StartRotation records a new rotation (a new root, phase trust-new) for the
// server to drive, or, when one is under way, returns it (marked forced when
// Force). started reports whether this call began it.
func StartRotation(ctx context.Context, o RotateOptions) (r *Rotation, started bool, err error) {
	cfg, err := (Config{Store: o.Store, TrustDomain: o.TrustDomain, KeyAlgorithm: o.KeyAlgorithm,
		RSAKeyBits: o.RSAKeyBits, RootTTL: o.RootTTL, Now: o.Now}).withDefaults()
	if err != nil {
		return nil, false, err
	}
	rs, ok := rotationStore(o.Store)
	if !ok {
		return nil, false, fmt.Errorf("%s cannot record a rotation", o.Store)
	}
	if err := refusePlugged(ctx, o.Plugged); err != nil {
		return nil, false, err
	}
	for range maxRotateAttempts {
		r, started, err = startOnce(ctx, rs, cfg, o.Force)
		if !errors.Is(err, ErrConflict) {
			return r, started, err
		}
	}
	return nil, false, fmt.Errorf("start rotation in %s: %w", o.Store, err)
}

const maxRotateAttempts = 5

func refusePlugged(ctx context.Context, plugged KeyStore) error {
	if plugged == nil {
		return nil
	}
	_, err := plugged.Load(ctx)
	switch {
	case err == nil:
		return fmt.Errorf("an intermediate from %s signs: rotating a plugged-in CA is not supported; "+
			"replace cacerts with a new intermediate under the same root (reloaded without a restart)", plugged)
	case errors.Is(err, ErrNotFound):
		return nil
	default:
		return fmt.Errorf("check %s: %w", plugged, err)
	}
}

func startOnce(ctx context.Context, rs RotationStore, cfg Config, force bool) (*Rotation, bool, error) {
	raw, err := rs.LoadRotation(ctx)
	if err != nil {
		return nil, false, err
	}
	if raw != nil {
		r, err := DecodeRotation(raw)
		if err != nil || !force || r.Force {
			return r, false, err
		}
		f := *r
		f.Force = true
		return &f, false, rs.SaveRotation(ctx, raw, f.Encode())
	}
	m, err := rs.Load(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("load the current root from %s (is the server running there?): %w", rs, err)
	}
	if _, err := newAuthority(m, false); err != nil {
		return nil, false, fmt.Errorf("current CA in %s: %w", rs, err)
	}
	next, err := generateRoot(cfg)
	if err != nil {
		return nil, false, err
	}
	now := cfg.Now()
	r := &Rotation{Phase: PhaseTrustNew, Started: now, PhaseSince: now, Force: force, Next: *next}
	return r, true, rs.SaveRotation(ctx, nil, r.Encode())
}

// NextRootID names the root a rotation rolls out (as Root.ID).
func (r *Rotation) NextRootID() (string, error) {
	a, err := newAuthority(&r.Next, false)
	if err != nil {
		return "", err
	}
	return rootID(a.root), nil
}
