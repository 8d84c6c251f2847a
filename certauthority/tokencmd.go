package certauthority

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"
)

// FileModeConfig is the file-mode layout the server and `controlplane token create`
// share: the self-signed root in DATA_DIR/ca, used single-use tokens in
// DATA_DIR/used-bootstrap-tokens.json, root-cert.pem published in DATA_DIR, and an
// optional Istio cacerts folder whose intermediate then signs.
func FileModeConfig(dataDir, cacertsDir string) Config {
	cfg := Config{
		Store:           DirStore{Dir: filepath.Join(dataDir, "ca")},
		UsedTokens:      NewFileUsedTokens(dataDir),
		PublishRootFile: filepath.Join(dataDir, RootCertFile),
	}
	if cacertsDir != "" {
		cfg.Plugged = DirStore{Dir: cacertsDir}
	}
	return cfg
}

// TokenCreateOptions are the flags of `controlplane token create`.
type TokenCreateOptions struct {
	DataDir        string        // --data-dir
	CACertsDir     string        // --cacerts (optional, as the server's)
	Namespace      string        // --namespace
	ServiceAccount string        // --service-account
	TTL            time.Duration // --ttl
	// Reusable lets the token be used until it expires; by default it is single-use:
	// refused after its first successful use (a VM needs it once, then renews with its
	// certificate).
	Reusable bool // --reusable
	// Config, when its Store or Plugged is set, replaces the file-mode layout (e.g. the
	// Kubernetes Secrets); DataDir and CACertsDir are then ignored.
	Config Config
}

// RunTokenCreate issues a bootstrap token with the CA found in the data dir (creating the
// root there if it is the first start) and writes it to out, followed by a newline.
func RunTokenCreate(ctx context.Context, opts TokenCreateOptions, out io.Writer) error {
	cfg := opts.Config
	if cfg.Store == nil && cfg.Plugged == nil {
		if opts.DataDir == "" {
			return fmt.Errorf("token create: --data-dir is required")
		}
		logger, now := cfg.Logger, cfg.Now
		cfg = FileModeConfig(opts.DataDir, opts.CACertsDir)
		cfg.Logger, cfg.Now, cfg.PublishRootFile = logger, now, ""
	}
	ca, err := New(ctx, cfg)
	if err != nil {
		return fmt.Errorf("token create: %w", err)
	}
	tok, err := ca.IssueBootstrapToken(opts.Namespace, opts.ServiceAccount, opts.TTL, !opts.Reusable)
	if err != nil {
		return fmt.Errorf("token create: %w", err)
	}
	if _, err := fmt.Fprintln(out, tok); err != nil {
		return fmt.Errorf("token create: write token: %w", err)
	}
	return nil
}
