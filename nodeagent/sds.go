package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"

	"github.com/librarymesh/controlplane/meshname"
)

// sdsServer serves the secrets `default` and `ROOTCA` to Envoy (SotW and
// delta) from a go-control-plane linear cache; every update is a new version.
type sdsServer struct {
	cache *cachev3.LinearCache
	log   *slog.Logger
}

func newSDSServer(log *slog.Logger) *sdsServer {
	return &sdsServer{cache: cachev3.NewLinearCache(resource.SecretType), log: log}
}

// listen serves on a fresh Unix socket (mode 0600) until stop is called.
func (s *sdsServer) listen(ctx context.Context, path string) (stop func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("SDS socket folder: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove old SDS socket %s: %w", path, err)
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on SDS socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		lis.Close()
		return nil, fmt.Errorf("chmod SDS socket %s: %w", path, err)
	}
	gs := grpc.NewServer()
	srvCtx, cancel := context.WithCancel(ctx)
	secretv3.RegisterSecretDiscoveryServiceServer(gs, serverv3.NewServer(srvCtx, s.cache, nil))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := gs.Serve(lis); err != nil {
			s.log.Error("SDS server stopped", "error", err)
		}
	}()
	return func() {
		cancel()
		gs.Stop()
		<-done
		os.Remove(path)
	}, nil
}

// publish serves the current certificate and trust bundle.
func (a *Agent) publish() {
	a.mu.Lock()
	cur, roots := a.cur, a.rootPEM
	a.mu.Unlock()
	update := map[string]types.Resource{meshname.RootSecret: rootSecret(roots)}
	if cur != nil {
		update[meshname.WorkloadSecret] = certSecret(cur)
	}
	if err := a.sds.cache.UpdateResources(update, nil); err != nil {
		a.log.Error("cannot update SDS secrets", "error", err)
	}
}

func certSecret(c *issued) *tlsv3.Secret {
	return &tlsv3.Secret{
		Name: meshname.WorkloadSecret,
		Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inline(c.chainPEM),
			PrivateKey:       inline(c.keyPEM),
		}},
	}
}

func rootSecret(roots []byte) *tlsv3.Secret {
	return &tlsv3.Secret{
		Name: meshname.RootSecret,
		Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: inline(roots),
		}},
	}
}

func inline(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: append([]byte(nil), b...)}}
}
