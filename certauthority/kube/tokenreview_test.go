package kube

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/librarymesh/controlplane/certauthority"
)

// reviewServer answers every TokenReview as authenticated for system:serviceaccount:vm:db
// with the given audiences, the way an authenticator that ignores audiences does (a real
// kube-apiserver with API audiences set, as envtest's, never returns an empty list, so its
// answer is canned here; TestServiceAccountTokens checks the real one).
func reviewServer(t *testing.T, audiences []string) kubernetes.Interface {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/tokenreviews") {
			http.NotFound(w, r)
			return
		}
		var review authenticationv1.TokenReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		review.APIVersion, review.Kind = "authentication.k8s.io/v1", "TokenReview"
		review.Status = authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: audiences,
			User: authenticationv1.UserInfo{Username: "system:serviceaccount:vm:db"}}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&review)
	}))
	t.Cleanup(srv.Close)
	client, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL, ContentConfig: rest.ContentConfig{ContentType: "application/json"}})
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// A TokenReview answer must name the istio-ca audience: an empty list or another
// audience is refused (Unauthenticated, wrong_audience), over a real gRPC call.
func TestTokenReviewMustConfirmAudience(t *testing.T) {
	tests := []struct {
		name      string
		audiences []string
		code      codes.Code
	}{
		{"empty audiences", nil, codes.Unauthenticated},
		{"another audience", []string{"https://kubernetes.default.svc"}, codes.Unauthenticated},
		{"istio-ca among others", []string{"other", certauthority.TokenAudience}, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := certauthority.FileModeConfig(t.TempDir(), "")
			cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			reg := prometheus.NewRegistry()
			cfg.Registerer = reg
			cfg.TokenReviewer = TokenReviewer{Client: reviewServer(t, tt.audiences)}
			ca := newCA(t, cfg)
			_, err := serve(t, ca).CreateCertificate(bearer(t.Context(), "a-kubernetes-token"),
				&securityv1alpha1.IstioCertificateRequest{Csr: csr(t, "spiffe://cluster.local/ns/vm/sa/db")})
			if status.Code(err) != tt.code {
				t.Fatalf("got %v, want %s", err, tt.code)
			}
			if tt.code == codes.OK {
				return
			}
			if !strings.Contains(status.Convert(err).Message(), "did not confirm audience istio-ca") {
				t.Fatalf("message %q does not name the audience", status.Convert(err).Message())
			}
			if got := refusals(t, reg, certauthority.ReasonWrongAudience); got != 1 {
				t.Fatalf("refusals{wrong_audience} = %v, want 1", got)
			}
		})
	}
}
