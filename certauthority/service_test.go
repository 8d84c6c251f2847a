package certauthority

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

func TestCreateCertificateWithBootstrapToken(t *testing.T) {
	clk := newClock()
	ca := newTestCA(t, fileConfig(t.TempDir(), clk))
	client := tlsClient(t, ca)
	tok, err := ca.IssueBootstrapToken("vm", "postgres", time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		validity int64
		want     time.Duration
	}{
		{"default validity", 0, DefaultCertTTL},
		{"one hour", 3600, time.Hour},
		{"the maximum", int64(DefaultMaxCertTTL / time.Second), DefaultMaxCertTTL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := client.CreateCertificate(withBearer(t.Context(), tok), &securityv1alpha1.IstioCertificateRequest{
				Csr: makeCSR(t, newP256(t)), ValidityDuration: tt.validity})
			if err != nil {
				t.Fatalf("CreateCertificate: %v", err)
			}
			leaf := verifyChain(t, resp.CertChain, ca.RootPEM())
			assertIdentity(t, leaf, Identity{"vm", "postgres"})
			if got := leaf.NotAfter.Sub(clk.Now()).Round(time.Minute); got != tt.want {
				t.Fatalf("validity = %s, want %s", got, tt.want)
			}
		})
	}
	if got := counterValue(t, ca.metrics.issued.WithLabelValues(AuthBootstrapToken)); got != 3 {
		t.Fatalf("issued metric = %v, want 3", got)
	}
}

// refusalCase prepares a call that must be refused.
type refusalCase struct {
	name   string
	ctx    func(t *testing.T, ca *CA, clk *clock) context.Context
	csr    func(t *testing.T) string
	valid  int64
	code   codes.Code
	msg    string
	reason Reason
}

func TestRefusals(t *testing.T) {
	good := func(t *testing.T) string { return makeCSR(t, newP256(t)) }
	token := func(t *testing.T, ca *CA, _ *clock) context.Context {
		tok, err := ca.IssueBootstrapToken("vm", "db", time.Hour, false)
		if err != nil {
			t.Fatal(err)
		}
		return withBearer(t.Context(), tok)
	}
	tests := []refusalCase{
		{"no credential", func(t *testing.T, _ *CA, _ *clock) context.Context { return t.Context() }, good, 0,
			codes.Unauthenticated, "no credential", ReasonNoCredential},
		{"not a bearer header", func(t *testing.T, _ *CA, _ *clock) context.Context {
			return withBearer(t.Context(), "")
		}, good, 0, codes.Unauthenticated, "is not \"Bearer <token>\"", ReasonBadToken},
		{"unknown token without Kubernetes", func(t *testing.T, _ *CA, _ *clock) context.Context {
			return withBearer(t.Context(), "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJrdWJlcm5ldGVzIn0.c2ln")
		}, good, 0, codes.Unauthenticated, "not a bootstrap token of this CA", ReasonBadToken},
		{"token from another CA", func(t *testing.T, _ *CA, clk *clock) context.Context {
			other := newTestCA(t, fileConfig(t.TempDir(), clk))
			tok, _ := other.IssueBootstrapToken("vm", "db", time.Hour, false)
			return withBearer(t.Context(), tok)
		}, good, 0, codes.Unauthenticated, "bootstrap token signature is invalid", ReasonBadToken},
		{"tampered claims", tamperedToken, good, 0, codes.Unauthenticated, "bootstrap token signature is invalid", ReasonBadToken},
		{"expired token", func(t *testing.T, ca *CA, clk *clock) context.Context {
			tok, _ := ca.IssueBootstrapToken("vm", "db", time.Minute, false)
			clk.Advance(2 * time.Minute)
			return withBearer(t.Context(), tok)
		}, good, 0, codes.Unauthenticated, "expired at", ReasonExpiredToken},
		{"reused single-use token", usedToken, good, 0, codes.Unauthenticated, "was already used", ReasonTokenReused},
		{"unparseable CSR", token, func(*testing.T) string { return "not a CSR" }, 0,
			codes.InvalidArgument, "CSR is not a PEM CERTIFICATE REQUEST", ReasonCSRUnparseable},
		{"garbage CSR DER", token, func(*testing.T) string {
			return "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
		}, 0, codes.InvalidArgument, "CSR cannot be parsed", ReasonCSRUnparseable},
		{"bad CSR signature", token, badSignatureCSR, 0, codes.InvalidArgument, "CSR signature is invalid", ReasonCSRBadSignature},
		{"RSA 1024", token, csrWith(rsaKey(1024)), 0, codes.InvalidArgument, "RSA 1024 bits, need at least 2048", ReasonWeakKey},
		{"curve P-224", token, csrWith(ecKey(elliptic.P224())), 0, codes.InvalidArgument, "curve P-224 not allowed", ReasonWeakKey},
		{"curve P-521", token, csrWith(ecKey(elliptic.P521())), 0, codes.InvalidArgument, "curve P-521 not allowed", ReasonWeakKey},
		{"Ed25519", token, csrWith(edKey), 0, codes.InvalidArgument, "ed25519.PublicKey not allowed", ReasonWeakKey},
		{"validity above maximum", token, good, int64(DefaultMaxCertTTL/time.Second) + 1,
			codes.InvalidArgument, "exceeds the maximum 2160h0m0s", ReasonValidityInvalid},
		{"validity overflows", token, good, 1 << 62, codes.InvalidArgument, "exceeds the maximum", ReasonValidityInvalid},
		{"negative validity", token, good, -60, codes.InvalidArgument, "is negative", ReasonValidityInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runRefusal(t, tt) })
	}
}

func runRefusal(t *testing.T, tt refusalCase) {
	clk := newClock()
	ca := newTestCA(t, fileConfig(t.TempDir(), clk))
	client := tlsClient(t, ca)
	_, err := client.CreateCertificate(tt.ctx(t, ca, clk), &securityv1alpha1.IstioCertificateRequest{
		Csr: tt.csr(t), ValidityDuration: tt.valid})
	st := status.Convert(err)
	if st.Code() != tt.code || !strings.Contains(st.Message(), tt.msg) {
		t.Fatalf("got %s %q, want %s containing %q", st.Code(), st.Message(), tt.code, tt.msg)
	}
	if got := counterValue(t, ca.metrics.refusals.WithLabelValues(string(tt.reason))); got != 1 {
		t.Fatalf("refusal metric %s = %v, want 1", tt.reason, got)
	}
}

func tamperedToken(t *testing.T, ca *CA, _ *clock) context.Context {
	tok, err := ca.IssueBootstrapToken("vm", "db", time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	claims, _ := b64.DecodeString(parts[1])
	claims = []byte(strings.Replace(string(claims), `"sa":"db"`, `"sa":"admin"`, 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(claims)
	return withBearer(t.Context(), strings.Join(parts, "."))
}

// usedToken uses a single-use token once, successfully, and returns it for a second use.
func usedToken(t *testing.T, ca *CA, _ *clock) context.Context {
	tok, err := ca.IssueBootstrapToken("vm", "db", time.Hour, true)
	if err != nil {
		t.Fatal(err)
	}
	ctx := withBearer(t.Context(), tok)
	if _, err := ca.Service().CreateCertificate(incoming(ctx), &securityv1alpha1.IstioCertificateRequest{
		Csr: makeCSR(t, newP256(t))}); err != nil {
		t.Fatalf("first use: %v", err)
	}
	return ctx
}

func badSignatureCSR(t *testing.T) string {
	csr := makeCSR(t, newP256(t))
	der := pemBytes(t, csr)
	der[len(der)-1] ^= 0x01 // the last byte belongs to the signature's S value
	return pemCSR(der)
}

func csrWith(key func(t *testing.T) crypto.Signer) func(t *testing.T) string {
	return func(t *testing.T) string { return makeCSR(t, key(t)) }
}

func rsaKey(bits int) func(t *testing.T) crypto.Signer {
	return func(t *testing.T) crypto.Signer {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
}

func ecKey(c elliptic.Curve) func(t *testing.T) crypto.Signer {
	return func(t *testing.T) crypto.Signer {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
}

func edKey(t *testing.T) crypto.Signer {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
