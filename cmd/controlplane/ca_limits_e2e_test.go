package main

import (
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"github.com/librarymesh/controlplane/internal/e2e"
)

// TestCARateLimits: against a running server with small buckets, a burst
// past --ca-identity-burst from one identity is refused with
// ResourceExhausted while another identity is still served, until the
// global bucket (--ca-global-burst) is empty; /metrics counts each scope.
// The rates are so low that no token comes back during the test.
func TestCARateLimits(t *testing.T) {
	srv := e2e.Serve(t, "--config-dir", filepath.Join(e2e.ModuleRoot(), "examples", "library"),
		"--ca-identity-rate", "0.001", "--ca-identity-burst", "3", "--ca-global-rate", "0.001", "--ca-global-burst", "5")
	rootPEM, err := os.ReadFile(filepath.Join(srv.DataDir, "root-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	conn := e2e.Dial(t, srv.SecureGRPCAddr, tlsCreds(t, rootPEM, nil))
	ctx := t.Context()
	inventory := withBearer(ctx, tokenCreate(t, srv.DataDir, "default", "inventory", "--reusable"))
	postgres := withBearer(ctx, tokenCreate(t, srv.DataDir, "default", "postgres", "--reusable"))
	for range 3 {
		createCertificate(inventory, t, conn, rootPEM, spiffeID("default", "inventory"))
	}
	_, csr := newCSR(t)
	client := securityv1alpha1.NewIstioCertificateServiceClient(conn)
	_, err = client.CreateCertificate(inventory, &securityv1alpha1.IstioCertificateRequest{Csr: csr})
	wantCode(t, err, codes.ResourceExhausted, "default/inventory is at its rate limit")
	createCertificate(postgres, t, conn, rootPEM, spiffeID("default", "postgres"))
	_, err = client.CreateCertificate(postgres, &securityv1alpha1.IstioCertificateRequest{Csr: csr})
	wantCode(t, err, codes.ResourceExhausted, "global rate limit")
	for scope, want := range map[string]float64{"identity": 1, "global": 1} {
		name := `controlplane_ca_requests_throttled_total{scope="` + scope + `"}`
		if got := e2e.Metric(t, srv.HTTPAddr, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := e2e.Metric(t, srv.HTTPAddr, `controlplane_ca_refusals_total{reason="rate_limited"}`); got != 2 {
		t.Errorf(`refusals{reason="rate_limited"} = %v, want 2`, got)
	}
}
