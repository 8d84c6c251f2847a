package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"github.com/librarymesh/controlplane/internal/e2e"
)

// servingName is a DNS SAN of the TLS port's certificate.
const servingName = "istiod.istio-system.svc"

func spiffeID(ns, sa string) string { return "spiffe://cluster.local/ns/" + ns + "/sa/" + sa }

// tokenCreate runs `controlplane token create` against dataDir and returns the token.
func tokenCreate(t *testing.T, dataDir, ns, sa string, extra ...string) string {
	t.Helper()
	args := append([]string{"token", "create", "--data-dir", dataDir, "--namespace", ns, "--service-account", sa}, extra...)
	out, err := e2e.Run(t.Context(), t, args...)
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(out)
	if strings.Count(tok, ".") != 2 {
		t.Fatalf("token create printed %q, want one JWT", out)
	}
	return tok
}

func withBearer(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func dial(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// tlsCreds trusts the server's root and presents cert when it is not nil.
func tlsCreds(t *testing.T, rootPEM []byte, cert *tls.Certificate) credentials.TransportCredentials {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(rootPEM) {
		t.Fatal("root-cert.pem holds no certificate")
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: servingName, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return credentials.NewTLS(cfg)
}

// newCSR makes a P-256 key and a CSR that asks for a SAN the CA must ignore.
func newCSR(t *testing.T) (*ecdsa.PrivateKey, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"admin.example"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// createCertificate asks the CA on conn for a certificate and checks its
// chain verifies to rootPEM and names exactly wantID.
func createCertificate(ctx context.Context, t *testing.T, conn *grpc.ClientConn, rootPEM []byte, wantID string) *tls.Certificate {
	t.Helper()
	key, csr := newCSR(t)
	resp, err := securityv1alpha1.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx,
		&securityv1alpha1.IstioCertificateRequest{Csr: csr, ValidityDuration: 3600})
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	chain := []byte(strings.Join(resp.GetCertChain(), ""))
	checkChain(t, chain, rootPEM, wantID)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(chain, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatalf("issued chain does not fit the key: %v", err)
	}
	return &cert
}

// checkChain verifies a PEM chain (leaf first) against rootPEM and checks the
// leaf's only URI SAN is wantID and it has no other SANs.
func checkChain(t *testing.T, chainPEM, rootPEM []byte, wantID string) *x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	for rest := chainPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("chain: %v", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		t.Fatalf("chain holds no certificate:\n%s", chainPEM)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	leaf := certs[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("chain does not verify to the CA's root: %v", err)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != wantID || len(leaf.DNSNames) != 0 {
		t.Fatalf("leaf SANs: URIs %v DNS %v, want only %s", leaf.URIs, leaf.DNSNames, wantID)
	}
	return leaf
}

// xdsNode is a sidecar in namespace ns (the inventory pod's in default)
// claiming service account sa in its metadata.
func xdsNode(t *testing.T, ns, sa string) *corev3.Node {
	t.Helper()
	md, err := structpb.NewStruct(map[string]any{"NAMESPACE": ns, "SERVICE_ACCOUNT": sa})
	if err != nil {
		t.Fatal(err)
	}
	id := podNode
	if ns != "default" {
		id = "sidecar~10.9.0.1~app-1." + ns + "~" + ns + ".svc.cluster.local"
	}
	return &corev3.Node{Id: id, Metadata: md}
}

// fetchClusters opens an ADS stream on conn for node and returns the first
// reply or the stream's error.
func fetchClusters(ctx context.Context, conn *grpc.ClientConn, node *corev3.Node) (*discoveryv3.DiscoveryResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	// A stream the server already ended fails Send with io.EOF; Recv then
	// returns the server's status.
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return stream.Recv()
}

func wantCode(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || !strings.Contains(st.Message(), msg) {
		t.Fatalf("got %v %q, want %v containing %q", st.Code(), st.Message(), code, msg)
	}
}

// TestSecurePortAndTokens: the TLS port demands a proven identity that
// matches the node, CreateCertificate works on both ports, and tokens from
// `controlplane token create` are accepted by a running server on the same
// data dir (and refused once expired).
func TestSecurePortAndTokens(t *testing.T) {
	srv := e2e.Serve(t, "--config-dir", filepath.Join(e2e.ModuleRoot(), "examples", "library"))
	rootPEM, err := os.ReadFile(filepath.Join(srv.DataDir, "root-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	plain := dial(t, srv.GRPCAddr, insecure.NewCredentials())
	anonymous := dial(t, srv.SecureGRPCAddr, tlsCreds(t, rootPEM, nil))

	token := tokenCreate(t, srv.DataDir, "default", "inventory", "--ttl", "1h")
	inventory := createCertificate(withBearer(ctx, token), t, plain, rootPEM, spiffeID("default", "inventory"))
	withCert := dial(t, srv.SecureGRPCAddr, tlsCreds(t, rootPEM, inventory))

	t.Run("CreateCertificate on the TLS port with a token", func(t *testing.T) {
		createCertificate(withBearer(ctx, token), t, anonymous, rootPEM, spiffeID("default", "inventory"))
	})
	t.Run("CreateCertificate on the TLS port renews with the client certificate", func(t *testing.T) {
		createCertificate(ctx, t, withCert, rootPEM, spiffeID("default", "inventory"))
	})
	t.Run("CreateCertificate without a credential", func(t *testing.T) {
		_, csr := newCSR(t)
		_, err := securityv1alpha1.NewIstioCertificateServiceClient(anonymous).CreateCertificate(ctx,
			&securityv1alpha1.IstioCertificateRequest{Csr: csr})
		wantCode(t, err, codes.Unauthenticated, "no credential")
	})
	t.Run("an expired token from the command is refused", func(t *testing.T) {
		short := tokenCreate(t, srv.DataDir, "default", "inventory", "--ttl", "1s")
		time.Sleep(1100 * time.Millisecond)
		_, csr := newCSR(t)
		_, err := securityv1alpha1.NewIstioCertificateServiceClient(plain).CreateCertificate(withBearer(ctx, short),
			&securityv1alpha1.IstioCertificateRequest{Csr: csr})
		wantCode(t, err, codes.Unauthenticated, "expired at")
	})
	t.Run("a single-use token from the command works once", func(t *testing.T) {
		once := tokenCreate(t, srv.DataDir, "default", "inventory", "--single-use")
		createCertificate(withBearer(ctx, once), t, plain, rootPEM, spiffeID("default", "inventory"))
		_, csr := newCSR(t)
		_, err := securityv1alpha1.NewIstioCertificateServiceClient(plain).CreateCertificate(withBearer(ctx, once),
			&securityv1alpha1.IstioCertificateRequest{Csr: csr})
		wantCode(t, err, codes.Unauthenticated, "was already used")
	})

	t.Run("xDS on the TLS port without a credential is Unauthenticated", func(t *testing.T) {
		_, err := fetchClusters(ctx, anonymous, xdsNode(t, "default", "inventory"))
		wantCode(t, err, codes.Unauthenticated, "no credential")
	})
	t.Run("xDS whose node claims another service account is PermissionDenied", func(t *testing.T) {
		_, err := fetchClusters(ctx, withCert, xdsNode(t, "default", "postgres"))
		wantCode(t, err, codes.PermissionDenied, `service account "postgres", but the caller proved default/inventory`)
	})
	t.Run("xDS whose node claims another namespace is PermissionDenied", func(t *testing.T) {
		_, err := fetchClusters(withBearer(ctx, token), anonymous, xdsNode(t, "vm", "inventory"))
		wantCode(t, err, codes.PermissionDenied, `claims namespace "vm"`)
	})
	for name, c := range map[string]struct {
		conn *grpc.ClientConn
		ctx  context.Context
	}{
		"client certificate": {withCert, ctx},
		"bootstrap token":    {anonymous, withBearer(ctx, token)},
	} {
		t.Run("xDS with a matching node and a "+name+" gets config", func(t *testing.T) {
			resp, err := fetchClusters(c.ctx, c.conn, xdsNode(t, "default", "inventory"))
			if err != nil {
				t.Fatalf("ADS over TLS: %v", err)
			}
			if len(resp.GetResources()) == 0 {
				t.Fatal("ADS over TLS returned no clusters")
			}
		})
	}
}

// runLogged starts cmd with its output in logPath and stops it (SIGINT, then
// SIGKILL) when the test ends; the log is shown on failure. The channel is
// closed when cmd has exited.
func runLogged(t *testing.T, cmd *exec.Cmd, logPath string) <-chan struct{} {
	t.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s log:\n%s", filepath.Base(cmd.Path), tail(b, 6000))
		}
	})
	return done
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
