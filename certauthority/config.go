package certauthority

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults used when a Config field is left zero.
const (
	DefaultTrustDomain    = "cluster.local"
	DefaultRootTTL        = 10 * 365 * 24 * time.Hour
	DefaultCertTTL        = 24 * time.Hour
	DefaultMaxCertTTL     = 90 * 24 * time.Hour
	DefaultServingCertTTL = 24 * time.Hour
	DefaultRSAKeyBits     = 2048
	DefaultResyncInterval = 5 * time.Second
	// TokenAudience is the audience service account tokens must carry.
	TokenAudience = "istio-ca"
)

// KeyAlgorithm selects the key type of a generated root.
type KeyAlgorithm string

// Supported root key algorithms.
const (
	ECDSAP256 KeyAlgorithm = "ECDSA"
	RSA       KeyAlgorithm = "RSA"
)

// DefaultServingSANs are the DNS names of the serving certificate of the TLS gRPC port.
var DefaultServingSANs = []string{"istiod.istio-system.svc", "controlplane.istio-system.svc"}

// Config configures a CA. Store is required; everything else has a default.
type Config struct {
	// TrustDomain of issued SPIFFE IDs (default cluster.local).
	TrustDomain string
	// Store persists the self-signed root (DirStore or SecretStore).
	Store KeyStore
	// Plugged, when set, is an Istio cacerts folder or Secret. If it holds material, that
	// intermediate signs instead of the self-signed root.
	Plugged KeyStore
	// KeyAlgorithm and RSAKeyBits of a generated root (default ECDSA P-256; RSA >= 2048).
	KeyAlgorithm KeyAlgorithm
	RSAKeyBits   int
	// RootTTL is the validity of a generated root (default 10 years).
	RootTTL time.Duration
	// DefaultCertTTL and MaxCertTTL bound workload certificates (24 h and 90 d).
	DefaultCertTTL time.Duration
	MaxCertTTL     time.Duration
	// ServingCertTTL is the validity of the TLS port's certificate (24 h); it is renewed
	// once two thirds of it have passed.
	ServingCertTTL time.Duration
	// ExtraServingSANs are DNS names or IPs added to DefaultServingSANs.
	ExtraServingSANs []string
	// PublishRootFile, when set, receives root-cert.pem (file mode: DATA_DIR/root-cert.pem).
	PublishRootFile string
	// TokenReviewer checks Kubernetes tokens; nil disables them.
	TokenReviewer TokenReviewer
	// UsedTokens remembers single-use bootstrap tokens; nil refuses single-use tokens.
	UsedTokens UsedTokenStore
	// PlaintextTokens accepts bearer tokens (bootstrap and Kubernetes) on connections
	// without TLS, such as the plaintext port 15010, where they travel in clear. Off, a
	// bearer token there is refused (Unauthenticated) and only the TLS port takes tokens.
	// For tests and local trials only.
	PlaintextTokens bool
	// Limits bound the rate of CreateCertificate calls; nil means DefaultLimits().
	Limits *Limits
	// Registerer receives the CA's metrics; nil keeps them in a private registry.
	Registerer prometheus.Registerer
	// ResyncInterval is how often Start re-reads the CA material, the
	// rotation record and cacerts (default 5s).
	ResyncInterval time.Duration
	// IsLeader reports whether this replica drives a root rotation (the
	// leader in Kubernetes mode); nil means always.
	IsLeader func() bool
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now defaults to time.Now (tests move the clock).
	Now func() time.Time
}

func (c Config) withDefaults() (Config, error) {
	if c.Store == nil && c.Plugged == nil {
		return c, fmt.Errorf("certauthority: config needs a Store or Plugged key store")
	}
	setDefault(&c.TrustDomain, DefaultTrustDomain)
	setDefault(&c.KeyAlgorithm, ECDSAP256)
	setDefault(&c.RSAKeyBits, DefaultRSAKeyBits)
	setDefault(&c.RootTTL, DefaultRootTTL)
	setDefault(&c.DefaultCertTTL, DefaultCertTTL)
	setDefault(&c.MaxCertTTL, DefaultMaxCertTTL)
	setDefault(&c.ServingCertTTL, DefaultServingCertTTL)
	setDefault(&c.ResyncInterval, DefaultResyncInterval)
	if c.IsLeader == nil {
		c.IsLeader = func() bool { return true }
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.Limits == nil {
		c.Limits = DefaultLimits()
	}
	if err := c.Limits.validate(); err != nil {
		return c, err
	}
	switch {
	case c.KeyAlgorithm != ECDSAP256 && c.KeyAlgorithm != RSA:
		return c, fmt.Errorf("certauthority: unknown key algorithm %q (want ECDSA or RSA)", c.KeyAlgorithm)
	case c.RSAKeyBits < 2048:
		return c, fmt.Errorf("certauthority: RSA key size %d is below 2048", c.RSAKeyBits)
	case c.DefaultCertTTL > c.MaxCertTTL:
		return c, fmt.Errorf("certauthority: default cert TTL %s exceeds maximum %s", c.DefaultCertTTL, c.MaxCertTTL)
	}
	return c, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}
