package certauthority

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
)

// CA signs workload certificates for proven identities.
type CA struct {
	cfg     Config
	log     *slog.Logger
	auth    *authority
	metrics *metrics
	serving *servingCert
	limits  *limiter
	// refusalLog samples the refusal log lines (see logSampler).
	refusalLog *logSampler
}

// New loads the CA material (plugged-in first, then the self-signed root), generating and
// persisting a root on first start, and publishes root-cert.pem when configured.
func New(ctx context.Context, cfg Config) (*CA, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	auth, err := loadAuthority(ctx, cfg)
	if err != nil {
		return nil, err
	}
	ca := &CA{cfg: cfg, log: cfg.Logger, auth: auth, metrics: m, limits: newLimiter(cfg.Limits),
		refusalLog: newLogSampler(cfg.Logger, refusalLogBurst, refusalLogWindow)}
	ca.serving = newServingCert(ca)
	if cfg.PublishRootFile != "" {
		if err := writeFileAtomic(cfg.PublishRootFile, auth.rootPEM, 0o644); err != nil {
			return nil, fmt.Errorf("publish root: %w", err)
		}
	}
	ca.log.Info("certificate authority ready", "trust_domain", cfg.TrustDomain, "plugged", auth.plugged,
		"root_subject", auth.root.Subject.String(), "root_expiry", auth.root.NotAfter)
	if cfg.PlaintextTokens {
		ca.log.Warn("bearer tokens are accepted without TLS: they travel in clear on the plaintext port; use this for tests and local trials only")
	}
	return ca, nil
}

func loadAuthority(ctx context.Context, cfg Config) (*authority, error) {
	if cfg.Plugged != nil {
		m, err := cfg.Plugged.Load(ctx)
		switch {
		case err == nil:
			a, err := newAuthority(m, true)
			if err != nil {
				return nil, fmt.Errorf("plugged CA in %s: %w", cfg.Plugged, err)
			}
			return a, nil
		case !errors.Is(err, ErrNotFound):
			return nil, fmt.Errorf("load plugged CA from %s: %w", cfg.Plugged, err)
		case cfg.Store == nil:
			return nil, fmt.Errorf("no plugged CA in %s and no store for a self-signed root: %w", cfg.Plugged, err)
		}
	}
	m, err := loadOrCreateRoot(ctx, cfg)
	if err != nil {
		return nil, err
	}
	a, err := newAuthority(m, false)
	if err != nil {
		return nil, fmt.Errorf("CA in %s: %w", cfg.Store, err)
	}
	return a, nil
}

// loadOrCreateRoot is race-safe: when another replica creates the root between our Load
// and Create, Create reports ErrExists and we load the winner's root.
func loadOrCreateRoot(ctx context.Context, cfg Config) (*Material, error) {
	m, err := cfg.Store.Load(ctx)
	if err == nil {
		return m, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("load CA from %s: %w", cfg.Store, err)
	}
	m, err = generateRoot(cfg)
	if err != nil {
		return nil, err
	}
	err = cfg.Store.Create(ctx, m)
	if errors.Is(err, ErrExists) {
		cfg.Logger.Info("another writer created the CA root first; using it", "store", cfg.Store.String())
		if m, err = cfg.Store.Load(ctx); err != nil {
			return nil, fmt.Errorf("load CA from %s after losing the create race: %w", cfg.Store, err)
		}
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store new CA root in %s: %w", cfg.Store, err)
	}
	cfg.Logger.Info("generated a new CA root", "store", cfg.Store.String(), "algorithm", string(cfg.KeyAlgorithm))
	return m, nil
}

// RootPEM is the trust anchor workloads need (root-cert.pem).
func (ca *CA) RootPEM() []byte { return append([]byte(nil), ca.auth.rootPEM...) }

// Roots is a pool holding the trust anchor.
func (ca *CA) Roots() *x509.CertPool { return ca.auth.roots.Clone() }

// TrustDomain of the identities this CA issues.
func (ca *CA) TrustDomain() string { return ca.cfg.TrustDomain }

// Plugged reports whether an intermediate from cacerts signs.
func (ca *CA) Plugged() bool { return ca.auth.plugged }
