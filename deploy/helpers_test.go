package deploy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	networkingapi "istio.io/api/networking/v1alpha3"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/librarymesh/controlplane/internal/e2e"
	"github.com/librarymesh/controlplane/internal/kubetest"
)

// newNamespace creates a namespace named after the test.
func newNamespace(t *testing.T, e *kubetest.Env) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 40 {
		name = name[:40]
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: strings.Trim(name, "-") + "-"}}
	got, err := e.Kube.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return got.Name
}

// ensureNamespace creates namespace name unless it exists.
func ensureNamespace(t *testing.T, e *kubetest.Env, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := e.Kube.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}

// token requests a token for service account ns/sa (created if missing);
// no audience means the API server's own.
func token(t *testing.T, e *kubetest.Env, ns, sa string, audiences ...string) string {
	t.Helper()
	acct := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}
	if _, err := e.Kube.CoreV1().ServiceAccounts(ns).Create(t.Context(), acct, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create service account %s/%s: %v", ns, sa, err)
	}
	exp := int64(3600)
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &exp}}
	tok, err := e.Kube.CoreV1().ServiceAccounts(ns).CreateToken(t.Context(), sa, req, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token request for %s/%s: %v", ns, sa, err)
	}
	return tok.Status.Token
}

// tokenKubeconfig writes a kubeconfig for the test API server whose only
// credential is bearer token tok.
func tokenKubeconfig(t *testing.T, e *kubetest.Env, tok string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: e.Config.Host, CertificateAuthorityData: e.Config.CAData}
	cfg.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: tok}
	cfg.Contexts["sa"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "sa"}
	cfg.CurrentContext = "sa"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatalf("write kubeconfig: %v", err)
	}
	return path
}

// createCertificate asks the CA on s's TLS port (whose certificate chains to
// rootPEM) for a certificate, authenticating with the Kubernetes token tok.
func createCertificate(t *testing.T, s *e2e.Server, rootPEM []byte, tok string) ([]string, error) {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("bad root PEM %q", rootPEM)
	}
	creds := credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "istiod.istio-system.svc", MinVersion: tls.VersionTLS12})
	conn, err := grpc.NewClient(s.SecureGRPCAddr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+tok)
	resp, err := securityv1alpha1.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, &securityv1alpha1.IstioCertificateRequest{
		Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))})
	if err != nil {
		return nil, err
	}
	return resp.CertChain, nil
}

// verifyChain checks that chain (leaf first) verifies against rootPEM and
// returns the leaf's URI SAN.
func verifyChain(t *testing.T, chain []string, rootPEM []byte) string {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("bad root PEM %q", rootPEM)
	}
	inters := x509.NewCertPool()
	for _, c := range chain[1:] {
		inters.AppendCertsFromPEM([]byte(c))
	}
	block, _ := pem.Decode([]byte(chain[0]))
	if block == nil {
		t.Fatal("no PEM leaf in the chain")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("certificate does not verify against the CA secret's root: %v", err)
	}
	if len(leaf.URIs) != 1 {
		t.Fatalf("leaf URIs %v", leaf.URIs)
	}
	return leaf.URIs[0].String()
}

// caRoot reads root-cert.pem from Secret istio-ca-secret in ns.
func caRoot(t *testing.T, e *kubetest.Env, ns string) []byte {
	t.Helper()
	sec, err := e.Kube.CoreV1().Secrets(ns).Get(t.Context(), "istio-ca-secret", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("CA secret: %v", err)
	}
	return sec.Data["root-cert.pem"]
}

// waitRootConfigMap waits until ConfigMap istio-ca-root-cert in ns holds want.
func waitRootConfigMap(t *testing.T, e *kubetest.Env, ns string, want []byte, timeout time.Duration) {
	t.Helper()
	var last string
	waitFor(t, "root ConfigMap in "+ns, timeout, func() bool {
		cm, err := e.Kube.CoreV1().ConfigMaps(ns).Get(t.Context(), "istio-ca-root-cert", metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false
		}
		last = cm.Data["root-cert.pem"]
		return last == string(want)
	}, func() string { return "last seen: " + last })
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool, detail func() string) {
	t.Helper()
	if !e2e.Poll(timeout, 50*time.Millisecond, cond) {
		t.Fatalf("%s: not within %s; %s", what, timeout, detail())
	}
}

// badServiceEntry creates a STATIC ServiceEntry without endpoints, which
// the server reports with a Warning Event (reason NoEndpoints).
func badServiceEntry(t *testing.T, e *kubetest.Env, ns, name string) {
	t.Helper()
	se := &networkingv1.ServiceEntry{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingapi.ServiceEntry{Hosts: []string{name + ".example.internal"}, Resolution: networkingapi.ServiceEntry_STATIC,
			Ports: []*networkingapi.ServicePort{{Number: 80, Name: "http", Protocol: "HTTP"}}}}
	if _, err := e.Istio.NetworkingV1().ServiceEntries(ns).Create(t.Context(), se, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ServiceEntry: %v", err)
	}
}

// warningEvents lists the Warning Events on object name in ns.
func warningEvents(t *testing.T, e *kubetest.Env, ns, name string) []corev1.Event {
	t.Helper()
	list, err := e.Kube.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name + ",type=Warning"})
	if err != nil {
		t.Fatalf("list events: %v", err)
	}
	return list.Items
}
