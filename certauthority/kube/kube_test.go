package kube

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/librarymesh/controlplane/certauthority"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func bearer(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

func TestServiceAccountTokens(t *testing.T) {
	e := env.Need(t)
	ns := namespace(t, e.Kube)
	cfg := kubeConfig(t, e.Kube, ns)
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	ca := newCA(t, cfg)
	client := serve(t, ca)
	tokA := serviceAccountToken(t, e.Kube, ns, "a", certauthority.TokenAudience)
	serviceAccountToken(t, e.Kube, ns, "b", certauthority.TokenAudience)
	wrongAud := serviceAccountToken(t, e.Kube, ns, "a", "some-other-audience")

	resp, err := client.CreateCertificate(bearer(t.Context(), tokA), &securityv1alpha1.IstioCertificateRequest{
		Csr: csr(t, "spiffe://cluster.local/ns/"+ns+"/sa/b")})
	if err != nil {
		t.Fatalf("CreateCertificate with SA a's token: %v", err)
	}
	want := "spiffe://cluster.local/ns/" + ns + "/sa/a"
	if got := leafURI(t, resp.CertChain, ca.RootPEM()); got != want {
		t.Fatalf("SA a's token yielded %s, want %s", got, want)
	}
	tests := []struct {
		name, token, msg string
		reason           certauthority.Reason
	}{
		{"wrong audience", wrongAud, "audience", certauthority.ReasonWrongAudience},
		{"not a token", "garbage", "Kubernetes token rejected", certauthority.ReasonBadToken},
		{"token with a tampered payload", tamper(tokA), "Kubernetes token rejected", certauthority.ReasonBadToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := refusals(t, reg, tt.reason)
			_, err := client.CreateCertificate(bearer(t.Context(), tt.token), &securityv1alpha1.IstioCertificateRequest{Csr: csr(t, want)})
			st := status.Convert(err)
			if st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), tt.msg) {
				t.Fatalf("got %v, want Unauthenticated containing %q", err, tt.msg)
			}
			t.Logf("refused: %s", st.Message())
			if got := refusals(t, reg, tt.reason); got != before+1 {
				t.Fatalf("refusal metric %s = %v, want %v", tt.reason, got, before+1)
			}
		})
	}
}

// tamper changes four characters of the payload, breaking the signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	parts[1] = strings.Replace(parts[1], parts[1][len(parts[1])/2:len(parts[1])/2+4], "AAAA", 1)
	return strings.Join(parts, ".")
}

func TestSecretStoreKeepsRootAcrossReplicas(t *testing.T) {
	e := env.Need(t)
	ns := namespace(t, e.Kube)
	roots := make([]string, 3)
	var wg sync.WaitGroup
	for i := range roots {
		wg.Go(func() {
			ca, err := certauthority.New(context.Background(), kubeConfig(t, e.Kube, ns))
			if err != nil {
				t.Errorf("replica %d: %v", i, err)
				return
			}
			roots[i] = string(ca.RootPEM())
		})
	}
	wg.Wait()
	restarted := newCA(t, kubeConfig(t, e.Kube, ns))
	for i, r := range roots {
		if r != string(restarted.RootPEM()) {
			t.Fatalf("replica %d has another root than the restarted CA", i)
		}
	}
	sec, err := e.Kube.CoreV1().Secrets(ns).Get(t.Context(), certauthority.SelfSignedSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{certauthority.CACertFile, certauthority.CAKeyFile, certauthority.CertChainFile, certauthority.RootCertFile} {
		if len(sec.Data[k]) == 0 {
			t.Errorf("istio-ca-secret lacks %s", k)
		}
	}
}

func TestSingleUseTokenInConfigMap(t *testing.T) {
	e := env.Need(t)
	ns := namespace(t, e.Kube)
	ca := newCA(t, kubeConfig(t, e.Kube, ns))
	tok, err := ca.IssueBootstrapToken("vm", "db", time.Hour, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := serve(t, ca).CreateCertificate(bearer(t.Context(), tok), &securityv1alpha1.IstioCertificateRequest{Csr: csr(t, "spiffe://cluster.local/ns/vm/sa/db")}); err != nil {
		t.Fatalf("first use: %v", err)
	}
	restarted := newCA(t, kubeConfig(t, e.Kube, ns))
	_, err = serve(t, restarted).CreateCertificate(bearer(t.Context(), tok), &securityv1alpha1.IstioCertificateRequest{Csr: csr(t, "spiffe://cluster.local/ns/vm/sa/db")})
	if st := status.Convert(err); st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), "already used") {
		t.Fatalf("reuse after restart: got %v, want Unauthenticated: already used", err)
	}
}

func TestPublishRoot(t *testing.T) {
	e := env.Need(t)
	ns := namespace(t, e.Kube)
	for _, root := range []string{"first root", "first root", "second root"} {
		if err := PublishRoot(t.Context(), e.Kube, ns, []byte(root)); err != nil {
			t.Fatalf("PublishRoot: %v", err)
		}
		cm, err := e.Kube.CoreV1().ConfigMaps(ns).Get(t.Context(), certauthority.RootConfigMapName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := cm.Data[certauthority.RootCertFile]; got != root {
			t.Fatalf("root-cert.pem = %q, want %q", got, root)
		}
	}
}
