package certauthority

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

func TestRunTokenCreateWorksWithTheServersCA(t *testing.T) {
	dir, clk := t.TempDir(), newClock()
	var out bytes.Buffer
	opts := TokenCreateOptions{DataDir: dir, Namespace: "vm", ServiceAccount: "postgres", TTL: time.Hour,
		Config: Config{Logger: quietLogger()}}
	if err := RunTokenCreate(t.Context(), opts, &out); err != nil {
		t.Fatalf("RunTokenCreate: %v", err)
	}
	ca := newTestCA(t, fileConfig(dir, clk)) // the server starting later on the same data dir
	resp, err := tlsClient(t, ca).CreateCertificate(withBearer(t.Context(), strings.TrimSpace(out.String())),
		&securityv1alpha1.IstioCertificateRequest{Csr: makeCSR(t, newP256(t))})
	if err != nil {
		t.Fatalf("CreateCertificate with the CLI's token: %v", err)
	}
	assertIdentity(t, verifyChain(t, resp.CertChain, ca.RootPEM()), Identity{"vm", "postgres"})
}

func TestRunTokenCreateRejectsBadInput(t *testing.T) {
	tests := []struct {
		name string
		opts TokenCreateOptions
		want string
	}{
		{"no data dir", TokenCreateOptions{Namespace: "a", ServiceAccount: "b", TTL: time.Hour}, "--data-dir is required"},
		{"no namespace", TokenCreateOptions{DataDir: t.TempDir(), ServiceAccount: "b", TTL: time.Hour}, "invalid namespace"},
		{"no ttl", TokenCreateOptions{DataDir: t.TempDir(), Namespace: "a", ServiceAccount: "b"}, "must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Config.Logger = quietLogger()
			err := RunTokenCreate(t.Context(), tt.opts, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want error containing %q", err, tt.want)
			}
		})
	}
}

// `token create` makes single-use tokens unless --reusable: a reused one is refused.
func TestRunTokenCreateSingleUseByDefault(t *testing.T) {
	for _, reusable := range []bool{false, true} {
		dir, clk := t.TempDir(), newClock()
		var out bytes.Buffer
		opts := TokenCreateOptions{DataDir: dir, Namespace: "vm", ServiceAccount: "postgres", TTL: time.Hour,
			Reusable: reusable, Config: Config{Logger: quietLogger()}}
		if err := RunTokenCreate(t.Context(), opts, &out); err != nil {
			t.Fatalf("RunTokenCreate: %v", err)
		}
		client := tlsClient(t, newTestCA(t, fileConfig(dir, clk)))
		ctx := withBearer(t.Context(), strings.TrimSpace(out.String()))
		for use := 1; use <= 2; use++ {
			_, err := client.CreateCertificate(ctx, &securityv1alpha1.IstioCertificateRequest{Csr: makeCSR(t, newP256(t))})
			wantOK := reusable || use == 1
			if st := status.Convert(err); wantOK != (err == nil) || (!wantOK && (st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), "already used"))) {
				t.Fatalf("reusable=%v, use %d: got %v", reusable, use, err)
			}
		}
	}
}
