package nodeagent

import (
	"context"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/librarymesh/controlplane/certauthority"
	"github.com/librarymesh/controlplane/internal/testutil"
	"github.com/librarymesh/controlplane/vmbundle"
)

const wantID = "spiffe://cluster.local/ns/default/sa/postgres"

// testCA is the real certificate authority behind a TLS gRPC port on 127.0.0.1.
type testCA struct {
	ca   *certauthority.CA
	addr string
	mu   sync.Mutex
	srv  *grpc.Server
}

func newTestCA(t *testing.T, certTTL time.Duration) *testCA {
	t.Helper()
	dir := t.TempDir()
	ca, err := certauthority.New(context.Background(), certauthority.Config{
		Store:          certauthority.DirStore{Dir: filepath.Join(dir, "ca")},
		UsedTokens:     certauthority.NewFileUsedTokens(dir),
		DefaultCertTTL: certTTL,
		Logger:         quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	c := &testCA{ca: ca}
	c.start(t, "127.0.0.1:0")
	t.Cleanup(c.stop)
	return c
}

func (c *testCA) start(t *testing.T, addr string) {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(c.ca.ServingTLSConfig())))
	c.ca.Register(srv)
	go srv.Serve(lis) //nolint:errcheck // ends with Stop
	c.mu.Lock()
	c.addr, c.srv = lis.Addr().String(), srv
	c.mu.Unlock()
}

func (c *testCA) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.srv != nil {
		c.srv.Stop()
		c.srv = nil
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// writeBundle writes a bundle for default/postgres with a fresh token.
func writeBundle(t *testing.T, c *testCA, tokenTTL time.Duration) string {
	t.Helper()
	tok, err := c.ca.IssueBootstrapToken("default", "postgres", tokenTTL, true)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "bundle")
	_, err = vmbundle.WriteBundle(dir, vmbundle.BundleOptions{
		Name: "postgres-1-vm", Namespace: "default", ServiceAccount: "postgres", IP: "127.0.0.1",
		Address: c.addr, RootPEM: c.ca.RootPEM(), Token: tok,
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// shortDir is a folder with a path short enough for a Unix socket.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "ag")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func agentConfig(t *testing.T, bundle string, certTTL time.Duration, log *slog.Logger) Config {
	t.Helper()
	cfg, err := LoadConfig(bundle)
	if err != nil {
		t.Fatal(err)
	}
	cfg.SDSSocket = filepath.Join(shortDir(t), "sds.sock")
	cfg.StateDir = filepath.Join(filepath.Dir(bundle), "state")
	cfg.OutputDir = filepath.Join(filepath.Dir(bundle), "out")
	cfg.CertTTL, cfg.RetryMin, cfg.RetryMax = certTTL, 50*time.Millisecond, 300*time.Millisecond
	cfg.Logger = log
	cfg.MetricsAddress = Off // bundles say 0.0.0.0:15020; tests stay on loopback
	return cfg
}

// startAgent runs an agent until the test ends.
func startAgent(t *testing.T, cfg Config) *Agent {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Background(t, "agent Run", a.Run)
	return a
}

// sdsClient is Envoy's side: a real SecretDiscoveryService stream that ACKs.
type sdsClient struct {
	stream secretv3.SecretDiscoveryService_StreamSecretsClient
}

func dialSDS(t *testing.T, socket string) *sdsClient {
	t.Helper()
	testutil.Eventually(t, "SDS socket", 5*time.Second, func() bool { _, err := os.Stat(socket); return err == nil })
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	// A bound on the stream, so a missing push fails the test instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(func() { cancel(); conn.Close() })
	stream, err := secretv3.NewSecretDiscoveryServiceClient(conn).StreamSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &sdsClient{stream: stream}
	c.send(t, "", "")
	return c
}

func (c *sdsClient) send(t *testing.T, version, nonce string) {
	t.Helper()
	err := c.stream.Send(&discoveryv3.DiscoveryRequest{
		Node:          &corev3.Node{Id: "sidecar~127.0.0.1~postgres-1-vm.default~default.svc.cluster.local"},
		TypeUrl:       resource.SecretType,
		ResourceNames: []string{"default", "ROOTCA"},
		VersionInfo:   version, ResponseNonce: nonce,
	})
	if err != nil {
		t.Fatal(err)
	}
}

// next receives one response, ACKs it and returns its secrets by name.
func (c *sdsClient) next(t *testing.T) map[string]*tlsv3.Secret {
	t.Helper()
	resp, err := c.stream.Recv()
	if err != nil {
		t.Fatalf("SDS receive: %v", err)
	}
	out := map[string]*tlsv3.Secret{}
	for _, r := range resp.GetResources() {
		s := &tlsv3.Secret{}
		if err := r.UnmarshalTo(s); err != nil {
			t.Fatal(err)
		}
		out[s.GetName()] = s
	}
	c.send(t, resp.GetVersionInfo(), resp.GetNonce())
	return out
}

// leafOf checks a `default` secret and returns its leaf.
func leafOf(t *testing.T, s *tlsv3.Secret) *x509.Certificate {
	t.Helper()
	tc := s.GetTlsCertificate()
	if tc == nil || len(tc.GetPrivateKey().GetInlineBytes()) == 0 {
		t.Fatalf("secret %s has no certificate and key", s.GetName())
	}
	certs, err := parseCerts(tc.GetCertificateChain().GetInlineBytes())
	if err != nil || len(certs) == 0 {
		t.Fatalf("secret chain: %v", err)
	}
	if len(certs[0].URIs) != 1 || certs[0].URIs[0].String() != wantID {
		t.Fatalf("leaf SAN = %v, want %s", certs[0].URIs, wantID)
	}
	return certs[0]
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
