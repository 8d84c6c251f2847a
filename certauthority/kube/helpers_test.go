package kube

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/librarymesh/controlplane/certauthority"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// namespace creates a fresh namespace named after the test.
func namespace(t *testing.T, client kubernetes.Interface) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 50 {
		name = name[:50]
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: strings.Trim(name, "-") + "-"}}
	got, err := client.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return got.Name
}

// kubeConfig is Kubernetes mode in ns: root in istio-ca-secret, tokens via TokenReview.
func kubeConfig(t *testing.T, client kubernetes.Interface, ns string) certauthority.Config {
	cfg := ModeConfig(client, ns)
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Registerer = prometheus.NewRegistry()
	return cfg
}

func newCA(t *testing.T, cfg certauthority.Config) *certauthority.CA {
	t.Helper()
	ca, err := certauthority.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("certauthority.New: %v", err)
	}
	return ca
}

// serviceAccountToken creates SA name in ns and requests a token for audience.
func serviceAccountToken(t *testing.T, client kubernetes.Interface, ns, name, audience string) string {
	t.Helper()
	ctx := t.Context()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("create service account: %v", err)
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}}}
	tok, err := client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, req, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token request for %s/%s: %v", ns, name, err)
	}
	return tok.Status.Token
}

// serve runs ca's service over TLS on loopback and returns a client that trusts ca's
// root and presents no client certificate (bearer tokens are accepted only over TLS).
func serve(t *testing.T, ca *certauthority.CA) securityv1alpha1.IstioCertificateServiceClient {
	t.Helper()
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(ca.ServingTLSConfig())))
	ca.Register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis) //nolint:errcheck // ends with Stop
	t.Cleanup(srv.Stop)
	creds := credentials.NewTLS(&tls.Config{RootCAs: ca.Roots(), ServerName: certauthority.DefaultServingSANs[0], MinVersion: tls.VersionTLS12})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return securityv1alpha1.NewIstioCertificateServiceClient(conn)
}

// csr asks for the SPIFFE ID ask, which the CA must ignore.
func csr(t *testing.T, ask string) string {
	t.Helper()
	key := newKey(t)
	u, err := url.Parse(ask)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// leafURI verifies chain against rootPEM and returns the leaf's only URI SAN.
func leafURI(t *testing.T, chain []string, rootPEM []byte) string {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatal("bad root PEM")
	}
	inters := x509.NewCertPool()
	for _, c := range chain[1:] {
		inters.AppendCertsFromPEM([]byte(c))
	}
	block, _ := pem.Decode([]byte(chain[0]))
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("chain does not verify: %v", err)
	}
	if len(leaf.URIs) != 1 || len(leaf.DNSNames) != 0 {
		t.Fatalf("leaf SANs: uris %v dns %v", leaf.URIs, leaf.DNSNames)
	}
	return leaf.URIs[0].String()
}

// refusals reads controlplane_ca_refusals_total{reason} from reg.
func refusals(t *testing.T, reg *prometheus.Registry, reason certauthority.Reason) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "controlplane_ca_refusals_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetLabel()[0].GetValue() == string(reason) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}
