package vmbundle

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Authority issues bootstrap tokens and knows the mesh root;
// *certauthority.CA satisfies it.
type Authority interface {
	IssueBootstrapToken(ns, sa string, ttl time.Duration, singleUse bool) (string, error)
	RootPEM() []byte
}

// DefaultTokenTTL is how long a bundle's token can be used for the first certificate.
const DefaultTokenTTL = 24 * time.Hour

// Options are the flags of `controlplane vm bundle`.
type Options struct {
	BundleOptions
	OutDir    string        // -o DIR
	TokenTTL  time.Duration // --token-ttl, default 24h
	SingleUse bool          // true unless --reusable
	Out       io.Writer     // where the file list is printed; default os.Stdout
}

// Run is `controlplane vm bundle`: it gets a token and the root from the CA
// and writes the bundle.
func Run(_ context.Context, o Options, ca Authority) error {
	if o.OutDir == "" {
		return fmt.Errorf("vm bundle: -o DIR is required")
	}
	if o.TokenTTL <= 0 {
		o.TokenTTL = DefaultTokenTTL
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	tok, err := ca.IssueBootstrapToken(o.Namespace, o.ServiceAccount, o.TokenTTL, o.SingleUse)
	if err != nil {
		return fmt.Errorf("vm bundle: %w", err)
	}
	o.Token, o.RootPEM = tok, ca.RootPEM()
	names, err := WriteBundle(o.OutDir, o.BundleOptions)
	if err != nil {
		return err
	}
	for _, n := range names {
		fmt.Fprintln(o.Out, filepath.Join(o.OutDir, n))
	}
	fmt.Fprintf(o.Out, "bundle for %s/%s written; the token is valid for %s; see %s\n",
		o.Namespace, o.Name, o.TokenTTL, filepath.Join(o.OutDir, FileReadme))
	return nil
}
