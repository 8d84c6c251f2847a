package certauthority

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
)

// CA signs workload certificates for proven identities.
type CA struct {
	cfg     Config
	log     *slog.Logger
	cur     atomic.Pointer[trust]
	metrics *metrics
	serving *servingCert
	limits  *limiter
	// refusalLog samples the refusal log lines (see logSampler).
	refusalLog *logSampler
	// issued tracks the live workload certificates this replica issued.
	issued *issuedCerts
	// authCache remembers successful authentications (see authCache).
	authCache *authCache
	// src is the material and rotation record the trust was made from.
	src  atomic.Pointer[source]
	acks ProxyAcks // see SetProxyAcks; under watchMu

	watchMu  sync.Mutex
	watchers []func()
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
	src, t, err := loadTrust(ctx, cfg)
	if err != nil {
		return nil, err
	}
	ca := &CA{cfg: cfg, log: cfg.Logger, metrics: m, limits: newLimiter(cfg.Limits),
		refusalLog: newLogSampler(cfg.Logger, refusalLogBurst, refusalLogWindow), issued: newIssuedCerts(),
		authCache: newAuthCache(authCacheSize)}
	ca.src.Store(&src)
	ca.serving = newServingCert(ca)
	if cfg.PublishRootFile != "" {
		if err := writeFileAtomic(cfg.PublishRootFile, t.bundlePEM, 0o644); err != nil {
			return nil, fmt.Errorf("publish root: %w", err)
		}
	}
	ca.setTrust(t)
	ca.warnExpiry(t)
	ca.log.Info("certificate authority ready", "trust_domain", cfg.TrustDomain, "plugged", t.signer.plugged,
		"root_subject", t.signer.root.Subject.String(), "root_expiry", t.signer.root.NotAfter,
		"bundle", t.bundleID, "rotation_phase", string(t.phase))
	if cfg.PlaintextTokens {
		ca.log.Warn("bearer tokens are accepted without TLS: they travel in clear on the plaintext port; use this for tests and local trials only")
	}
	return ca, nil
}

// loadPlugged returns the plugged-in authority, nil when there is none.
func loadPlugged(ctx context.Context, cfg Config) (*Material, *authority, error) {
	if cfg.Plugged == nil {
		return nil, nil, nil
	}
	m, err := cfg.Plugged.Load(ctx)
	switch {
	case err == nil:
		a, err := newAuthority(m, true)
		if err != nil {
			return nil, nil, fmt.Errorf("plugged CA in %s: %w", cfg.Plugged, err)
		}
		return m, a, nil
	case !errors.Is(err, ErrNotFound):
		return nil, nil, fmt.Errorf("load plugged CA from %s: %w", cfg.Plugged, err)
	case cfg.Store == nil:
		return nil, nil, fmt.Errorf("no plugged CA in %s and no store for a self-signed root: %w", cfg.Plugged, err)
	}
	return nil, nil, nil
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

// RootPEM is the trust bundle workloads need (root-cert.pem): every root the
// mesh accepts, the signing one first. It holds one root except during a
// rotation.
func (ca *CA) RootPEM() []byte { return append([]byte(nil), ca.trust().bundlePEM...) }

// Roots is a pool holding the trust bundle.
func (ca *CA) Roots() *x509.CertPool { return ca.trust().roots.Clone() }

// TrustDomain of the identities this CA issues.
func (ca *CA) TrustDomain() string { return ca.cfg.TrustDomain }

// Plugged reports whether an intermediate from cacerts signs.
func (ca *CA) Plugged() bool { return ca.trust().signer.plugged }
