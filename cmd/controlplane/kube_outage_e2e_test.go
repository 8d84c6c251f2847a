package main

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	securityv1alpha1 "istio.io/api/security/v1alpha1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/internal/e2e"
	"github.com/librarymesh/controlplane/internal/kubetest"
)

// apiOutage is how long the kube-apiserver stays down: the 60 s,
// longer than the informers' relist backoff and the client's timeouts, so
// every watch has broken and every retry has failed at least once.
const apiOutage = 60 * time.Second

// TestKubeAPIServerOutageCAAndReadyz: with the kube-apiserver stopped for
// a minute the CA keeps signing renewals (a client certificate needs no
// API) and fails closed for a token it cannot review, new proxies get the
// last known config, /readyz stays 200 and says the API is unreachable,
// and once the API is back tokens work again, /readyz says so and a
// change reaches the proxies without a restart.
func TestKubeAPIServerOutageCAAndReadyz(t *testing.T) {
	first, second := e2e.HealthBackend(t, backendServing), e2e.HealthBackend(t, backendNotServing)
	e, srv := kubeServe(t)
	ctx := t.Context()
	side, before, _ := echoReady(t, e, srv, first, "RPCs to reach the first backend")
	rootPEM := rootConfigMap(t, e)
	anonymous := e2e.Dial(t, srv.SecureGRPCAddr, tlsCreds(t, rootPEM, nil))
	inventory := createCertificate(withBearer(ctx, saToken(t, e, "inventory")), t, anonymous, rootPEM, spiffeID(kubeNS, "inventory"))
	renewer := e2e.Dial(t, srv.SecureGRPCAddr, tlsCreds(t, rootPEM, inventory))
	newcomer := saToken(t, e, "newcomer") // minted before, first used during the outage
	if body := readyzBody(t, srv.HTTPAddr); !strings.Contains(body, "source kubernetes") || !strings.Contains(body, ": reachable") {
		t.Errorf("/readyz before the outage:\n%s", body)
	}

	if err := e.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	time.Sleep(5 * time.Second) // the watches have broken by then
	late := watchADS(t, srv.GRPCAddr, sidecar2Node)
	late.waitState(t, "a sidecar connecting during the outage to get the last known clusters", 30*time.Second, func(s adsState) bool {
		return slices.Equal(s.clusters, before.clusters)
	})
	createCertificate(ctx, t, renewer, rootPEM, spiffeID(kubeNS, "inventory"))
	_, csr := newCSR(t)
	_, err := securityv1alpha1.NewIstioCertificateServiceClient(anonymous).CreateCertificate(withBearer(ctx, newcomer),
		&securityv1alpha1.IstioCertificateRequest{Csr: csr})
	if err == nil {
		t.Error("a token nobody could review was accepted during the outage")
	} else {
		t.Logf("token during the outage: %v", err)
	}
	body := readyzBody(t, srv.HTTPAddr)
	if !strings.Contains(body, "UNREACHABLE") || !strings.Contains(body, "serving the last config") {
		t.Errorf("/readyz during the outage does not say the API is unreachable:\n%s", body)
	}
	time.Sleep(time.Until(down.Add(apiOutage)))
	createCertificate(ctx, t, renewer, rootPEM, spiffeID(kubeNS, "inventory")) // still, a minute in
	if err := e.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	t.Logf("API server was down for %s", time.Since(down).Round(time.Millisecond))

	patchEcho(t, e, second, 0)
	for _, w := range []*adsWatcher{side, late} {
		w.waitState(t, "the change after the outage to reach the sidecars", 60*time.Second, hasEcho(second, "10.8.0.5:8080", "10.8.0.6:8080"))
	}
	e2e.Eventually(t, "/readyz to say the API is reachable again", 30*time.Second, func() bool {
		return !strings.Contains(readyzBody(t, srv.HTTPAddr), "UNREACHABLE")
	})
	createCertificate(withBearer(ctx, newcomer), t, anonymous, rootPEM, spiffeID(kubeNS, "newcomer"))
}

// rootConfigMap waits for the root the server publishes in kubeNS.
func rootConfigMap(t *testing.T, e *kubetest.Env) []byte {
	t.Helper()
	var root string
	e2e.Eventually(t, "the root ConfigMap in "+kubeNS, 30*time.Second, func() bool {
		cm, err := e.Kube.CoreV1().ConfigMaps(kubeNS).Get(t.Context(), "istio-ca-root-cert", metav1.GetOptions{})
		root = cm.Data["root-cert.pem"]
		return err == nil && root != ""
	})
	return []byte(root)
}

// saToken creates service account sa in kubeNS and returns a token for
// it with the CA's audience, from the TokenRequest API.
func saToken(t *testing.T, e *kubetest.Env, sa string) string {
	t.Helper()
	ctx := t.Context()
	_, err := e.Kube.CoreV1().ServiceAccounts(kubeNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
	if err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	exp := int64(3600)
	tok, err := e.Kube.CoreV1().ServiceAccounts(kubeNS).CreateToken(ctx, sa,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"istio-ca"}, ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s: %v", sa, err)
	}
	return tok.Status.Token
}

func readyzBody(t *testing.T, addr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz: %d\n%s", resp.StatusCode, b)
	}
	return string(b)
}
