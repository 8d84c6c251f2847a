package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
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
// matches the node; CreateCertificate takes tokens from `controlplane token
// create` (run on the same data dir) on the TLS port only, refuses them once
// expired, and refuses a single-use token (the default) the second time.
func TestSecurePortAndTokens(t *testing.T) {
	srv := e2e.Serve(t, "--config-dir", filepath.Join(e2e.ModuleRoot(), "examples", "library"))
	rootPEM, err := os.ReadFile(filepath.Join(srv.DataDir, "root-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	plain := e2e.Dial(t, srv.GRPCAddr, insecure.NewCredentials())
	anonymous := e2e.Dial(t, srv.SecureGRPCAddr, tlsCreds(t, rootPEM, nil))

	token := tokenCreate(t, srv.DataDir, "default", "inventory", "--ttl", "1h", "--reusable")
	inventory := createCertificate(withBearer(ctx, token), t, anonymous, rootPEM, spiffeID("default", "inventory"))
	withCert := e2e.Dial(t, srv.SecureGRPCAddr, tlsCreds(t, rootPEM, inventory))

	t.Run("CreateCertificate on the TLS port with a token", func(t *testing.T) {
		createCertificate(withBearer(ctx, token), t, anonymous, rootPEM, spiffeID("default", "inventory"))
	})
	t.Run("CreateCertificate on the TLS port renews with the client certificate", func(t *testing.T) {
		createCertificate(ctx, t, withCert, rootPEM, spiffeID("default", "inventory"))
	})
	t.Run("a bearer token on the plaintext port is Unauthenticated", func(t *testing.T) {
		before := e2e.Metric(t, srv.HTTPAddr, `controlplane_ca_refusals_total{reason="token_over_plaintext"}`)
		_, csr := newCSR(t)
		_, err := securityv1alpha1.NewIstioCertificateServiceClient(plain).CreateCertificate(withBearer(ctx, token),
			&securityv1alpha1.IstioCertificateRequest{Csr: csr})
		wantCode(t, err, codes.Unauthenticated, "use the control plane's TLS port (15012)")
		if got := e2e.Metric(t, srv.HTTPAddr, `controlplane_ca_refusals_total{reason="token_over_plaintext"}`); got != before+1 {
			t.Errorf("refusals{token_over_plaintext} = %v, want %v", got, before+1)
		}
	})
	t.Run("CreateCertificate without a credential", func(t *testing.T) {
		_, csr := newCSR(t)
		_, err := securityv1alpha1.NewIstioCertificateServiceClient(anonymous).CreateCertificate(ctx,
			&securityv1alpha1.IstioCertificateRequest{Csr: csr})
		wantCode(t, err, codes.Unauthenticated, "no credential")
	})
	t.Run("an expired token is refused, renewal with its certificate works", func(t *testing.T) {
		short := tokenCreate(t, srv.DataDir, "default", "inventory", "--ttl", "2s")
		issued := createCertificate(withBearer(ctx, short), t, anonymous, rootPEM, spiffeID("default", "inventory"))
		time.Sleep(2100 * time.Millisecond)
		_, csr := newCSR(t)
		_, err := securityv1alpha1.NewIstioCertificateServiceClient(anonymous).CreateCertificate(withBearer(ctx, short),
			&securityv1alpha1.IstioCertificateRequest{Csr: csr})
		wantCode(t, err, codes.Unauthenticated, "expired at")
		renewer := e2e.Dial(t, srv.SecureGRPCAddr, tlsCreds(t, rootPEM, issued))
		createCertificate(ctx, t, renewer, rootPEM, spiffeID("default", "inventory"))
	})
	t.Run("a token from the command is single-use by default", func(t *testing.T) {
		once := tokenCreate(t, srv.DataDir, "default", "inventory")
		createCertificate(withBearer(ctx, once), t, anonymous, rootPEM, spiffeID("default", "inventory"))
		_, csr := newCSR(t)
		_, err := securityv1alpha1.NewIstioCertificateServiceClient(anonymous).CreateCertificate(withBearer(ctx, once),
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
		e2e.Interrupt(cmd, done, 5*time.Second)
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

// caCertificate makes a CA certificate for key, signed by parent (self-signed
// when parent is nil), and returns it with its PEM.
func caCertificate(t *testing.T, cn string, key *ecdsa.PrivateKey, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, []byte) {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn, Organization: []string{"cluster.local"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// writeCACerts writes an Istio cacerts folder: a root and an intermediate
// that signs. It returns the folder, the root's PEM and the intermediate.
func writeCACerts(t *testing.T) (string, []byte, *x509.Certificate) {
	t.Helper()
	rootKey, _ := newCSR(t)
	interKey, _ := newCSR(t)
	root, rootPEM := caCertificate(t, "plugged root", rootKey, nil, nil)
	inter, interPEM := caCertificate(t, "plugged intermediate", interKey, root, rootKey)
	keyDER, err := x509.MarshalECPrivateKey(interKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "cacerts")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{
		"ca-cert.pem":    interPEM,
		"ca-key.pem":     pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		"root-cert.pem":  rootPEM,
		"cert-chain.pem": append(append([]byte{}, interPEM...), rootPEM...),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir, rootPEM, inter
}

// TestRootAcrossRestartAndPluggedCACerts: a restarted server on the same data
// dir keeps its root (certificates from before and after verify against it);
// a server given a cacerts folder signs with the intermediate and returns the
// full chain, which verifies to the plugged root.
func TestRootAcrossRestartAndPluggedCACerts(t *testing.T) {
	dataDir := t.TempDir()
	issue := func(t *testing.T, extra ...string) (rootPEM []byte, chain string) {
		t.Helper()
		srv := e2e.Serve(t, append([]string{"--config-dir", filepath.Join(e2e.ModuleRoot(), "examples", "library"), "--data-dir", dataDir}, extra...)...)
		defer srv.Stop(t)
		rootPEM, err := os.ReadFile(filepath.Join(dataDir, "root-cert.pem"))
		if err != nil {
			t.Fatal(err)
		}
		token := tokenCreate(t, dataDir, "vm", "postgres", append([]string{"--ttl", "1h"}, extra...)...)
		_, csr := newCSR(t)
		resp, err := securityv1alpha1.NewIstioCertificateServiceClient(e2e.Dial(t, srv.SecureGRPCAddr, tlsCreds(t, rootPEM, nil))).
			CreateCertificate(withBearer(t.Context(), token), &securityv1alpha1.IstioCertificateRequest{Csr: csr})
		if err != nil {
			t.Fatalf("CreateCertificate: %v", err)
		}
		return rootPEM, strings.Join(resp.GetCertChain(), "")
	}

	t.Run("restart keeps the root", func(t *testing.T) {
		root1, before := issue(t)
		root2, after := issue(t)
		if !bytes.Equal(root1, root2) {
			t.Fatal("root-cert.pem changed across a restart")
		}
		checkChain(t, []byte(before), root2, spiffeID("vm", "postgres"))
		checkChain(t, []byte(after), root2, spiffeID("vm", "postgres"))
	})

	t.Run("plugged cacerts intermediate", func(t *testing.T) {
		cacerts, pluggedRoot, inter := writeCACerts(t)
		dataDir = t.TempDir()
		published, chain := issue(t, "--cacerts", cacerts)
		if !bytes.Equal(published, pluggedRoot) {
			t.Fatalf("published root-cert.pem is not the plugged root:\n%s", published)
		}
		leaf := checkChain(t, []byte(chain), pluggedRoot, spiffeID("vm", "postgres"))
		if !bytes.Equal(leaf.RawIssuer, inter.RawSubject) || leaf.CheckSignatureFrom(inter) != nil {
			t.Fatal("the leaf is not signed by the plugged intermediate")
		}
		if n := strings.Count(chain, "BEGIN CERTIFICATE"); n != 3 {
			t.Fatalf("chain has %d certificates, want leaf, intermediate, root", n)
		}
	})
}
