package certauthority

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"testing"
	"time"

	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

// BenchmarkCreateCertificate measures CreateCertificate end to end over gRPC over TLS on
// loopback (one caller, calls in sequence) and, in the same run, the raw ECDSA P-256 sign
// rate, reporting both and their ratio (raw signs per second / calls per second). The rate
// limits are set so high that they never refuse, so their bookkeeping is measured but one
// caller is not held to a workload's 10 calls per second.
func BenchmarkCreateCertificate(b *testing.B) {
	b.Run("bootstrap_token", func(b *testing.B) {
		ca := newTestCA(b, benchConfig(b))
		tok, err := ca.IssueBootstrapToken("vm", "db", time.Hour, false)
		if err != nil {
			b.Fatal(err)
		}
		client := tlsClient(b, ca)
		ctx := withBearer(b.Context(), tok)
		benchCalls(b, func(req *securityv1alpha1.IstioCertificateRequest) error {
			_, err := client.CreateCertificate(ctx, req)
			return err
		})
	})
	b.Run("client_cert_tls", func(b *testing.B) {
		ca := newTestCA(b, benchConfig(b))
		key := newP256(b)
		chain, err := ca.Sign(b.Context(), []byte(makeCSR(b, key)), Identity{"vm", "db"}, time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		client := dialTLS(b, serve(b, ca, true), ca, tlsCert(b, chain, key))
		benchCalls(b, func(req *securityv1alpha1.IstioCertificateRequest) error {
			_, err := client.CreateCertificate(b.Context(), req)
			return err
		})
	})
}

// benchConfig is file mode with limits that never refuse.
func benchConfig(b *testing.B) Config {
	cfg := fileConfig(b.TempDir(), newClock())
	cfg.Limits = &Limits{IdentityRate: 1e9, IdentityBurst: 1e9, GlobalRate: 1e9, GlobalBurst: 1e9}
	return cfg
}

func benchCalls(b *testing.B, call func(*securityv1alpha1.IstioCertificateRequest) error) {
	req := &securityv1alpha1.IstioCertificateRequest{Csr: makeCSR(b, newP256(b))}
	if err := call(req); err != nil { // warm up the connection
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if err := call(req); err != nil {
			b.Fatal(err)
		}
	}
	callsPerSec := float64(b.N) / b.Elapsed().Seconds()
	b.StopTimer()
	signsPerSec := p256SignRate(b, 300*time.Millisecond)
	b.ReportMetric(callsPerSec, "calls/s")
	b.ReportMetric(signsPerSec, "p256-signs/s")
	b.ReportMetric(signsPerSec/callsPerSec, "signs-per-call")
}

// p256SignRate is how many ECDSA P-256 signatures of a SHA-256 digest this machine makes
// per second on one goroutine.
func p256SignRate(b *testing.B, d time.Duration) float64 {
	key := newP256(b)
	digest := sha256.Sum256([]byte("benchmark"))
	start, n := time.Now(), 0
	for time.Since(start) < d {
		if _, err := ecdsa.SignASN1(rand.Reader, key, digest[:]); err != nil {
			b.Fatal(err)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds()
}
