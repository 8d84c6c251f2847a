package certauthority

import (
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"github.com/librarymesh/controlplane/internal/testutil"
)

// A bearer token on a connection without TLS is refused before it is even read, unless
// PlaintextTokens is set; over TLS the same token works.
func TestBearerTokenOverPlaintext(t *testing.T) {
	tests := []struct {
		name      string
		plaintext bool
		token     func(ca *CA) string
		code      codes.Code
	}{
		{"bootstrap token refused", false, bootstrapToken, codes.Unauthenticated},
		{"any other bearer token refused", false, func(*CA) string { return "eyJhbGciOiJSUzI1NiJ9.e30.c2ln" }, codes.Unauthenticated},
		{"bootstrap token accepted with PlaintextTokens", true, bootstrapToken, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fileConfig(t.TempDir(), newClock())
			cfg.PlaintextTokens = tt.plaintext
			ca := newTestCA(t, cfg)
			_, err := dialPlain(t, serve(t, ca, false)).CreateCertificate(withBearer(t.Context(), tt.token(ca)),
				&securityv1alpha1.IstioCertificateRequest{Csr: makeCSR(t, newP256(t))})
			if status.Code(err) != tt.code {
				t.Fatalf("got %v, want %s", err, tt.code)
			}
			if tt.code == codes.OK {
				return
			}
			if !strings.Contains(status.Convert(err).Message(), "use the control plane's TLS port (15012)") {
				t.Fatalf("message %q does not point to the TLS port", status.Convert(err).Message())
			}
			if got := counterValue(t, ca.metrics.refusals.WithLabelValues(string(ReasonPlaintextToken))); got != 1 {
				t.Fatalf("refusals{%s} = %v, want 1", ReasonPlaintextToken, got)
			}
		})
	}
	t.Run("the same token over TLS", func(t *testing.T) {
		ca := newTestCA(t, fileConfig(t.TempDir(), newClock()))
		if _, err := tlsClient(t, ca).CreateCertificate(withBearer(t.Context(), bootstrapToken(ca)),
			&securityv1alpha1.IstioCertificateRequest{Csr: makeCSR(t, newP256(t))}); err != nil {
			t.Fatalf("over TLS: %v", err)
		}
	})
}

func bootstrapToken(ca *CA) string {
	tok, err := ca.IssueBootstrapToken("vm", "db", time.Hour, false)
	if err != nil {
		panic(err)
	}
	return tok
}

// One identity's burst is served, the next call is ResourceExhausted, another identity is
// still served; once the clock has moved on, the bucket has a token again. The global
// bucket refuses before authentication, whoever calls.
func TestRateLimits(t *testing.T) {
	clk := newClock()
	cfg := fileConfig(t.TempDir(), clk)
	cfg.Limits = &Limits{IdentityRate: 1, IdentityBurst: 3, GlobalRate: 1, GlobalBurst: 5}
	ca := newTestCA(t, cfg)
	client := tlsClient(t, ca)
	tokA, _ := ca.IssueBootstrapToken("vm", "a", time.Hour, false)
	tokB, _ := ca.IssueBootstrapToken("vm", "b", time.Hour, false)
	call := func(tok string) error {
		_, err := client.CreateCertificate(withBearer(t.Context(), tok), &securityv1alpha1.IstioCertificateRequest{Csr: makeCSR(t, newP256(t))})
		return err
	}
	steps := []struct {
		name, token string
		advance     time.Duration
		code        codes.Code
		msg         string
	}{
		{"a 1", tokA, 0, codes.OK, ""},
		{"a 2", tokA, 0, codes.OK, ""},
		{"a 3", tokA, 0, codes.OK, ""},
		{"a past its burst", tokA, 0, codes.ResourceExhausted, "vm/a is at its rate limit of 1 certificate requests per second"},
		{"b is its own bucket", tokB, 0, codes.OK, ""},
		{"a after a second", tokA, time.Second, codes.OK, ""}, // the global bucket got one token back too
		{"a bad token past the global burst", "garbage", 0, codes.ResourceExhausted, "global rate limit"},
	}
	for _, s := range steps {
		clk.Advance(s.advance)
		err := call(s.token)
		if st := status.Convert(err); st.Code() != s.code || !strings.Contains(st.Message(), s.msg) {
			t.Fatalf("%s: got %v, want %s containing %q", s.name, err, s.code, s.msg)
		}
	}
	for scope, want := range map[string]float64{scopeIdentity: 1, scopeGlobal: 1} {
		if got := counterValue(t, ca.metrics.throttled.WithLabelValues(scope)); got != want {
			t.Errorf("throttled{scope=%s} = %v, want %v", scope, got, want)
		}
	}
	if got := counterValue(t, ca.metrics.refusals.WithLabelValues(string(ReasonRateLimited))); got != 2 {
		t.Errorf("refusals{rate_limited} = %v, want 2", got)
	}
}

func TestLimitsValidate(t *testing.T) {
	tests := []struct {
		limits Limits
		want   string
	}{
		{Limits{IdentityRate: -1}, "identity rate limit -1 is negative"},
		{Limits{GlobalRate: 5}, "global rate limit 5/s needs a burst of at least 1"},
		{Limits{}, ""},
		{*DefaultLimits(), ""},
	}
	for _, tt := range tests {
		cfg := fileConfig(t.TempDir(), newClock())
		cfg.Limits = &tt.limits
		_, err := New(t.Context(), cfg)
		if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%+v: got %v, want %q", tt.limits, err, tt.want)
		}
	}
}

// Idle identity buckets are dropped once there are many: a bucket idle for its refill
// time is full, so forgetting it changes nothing.
func TestLimiterForgetsIdleIdentities(t *testing.T) {
	l := newLimiter(&Limits{IdentityRate: 10, IdentityBurst: 20})
	start := time.Now()
	for i := range sweepAbove {
		l.allowIdentity(Identity{"ns", "sa" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)}, start)
	}
	if len(l.perID) != sweepAbove {
		t.Fatalf("%d buckets, want %d", len(l.perID), sweepAbove)
	}
	later := start.Add(l.refill)
	l.allowIdentity(Identity{"ns", "new"}, later)
	if len(l.perID) != 1 {
		t.Fatalf("%d buckets after the idle ones refilled, want 1", len(l.perID))
	}
}

// 2000 bad-token requests give a handful of log lines and a summary with the count of the
// others, while the refusal metric counts every one.
func TestRefusalLogsAreSampled(t *testing.T) {
	var logs testutil.SyncBuffer
	cfg := fileConfig(t.TempDir(), newClock())
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	cfg.Limits = NoLimits()
	ca := newTestCA(t, cfg)
	ca.refusalLog = newLogSampler(cfg.Logger, refusalLogBurst, time.Minute)
	client := tlsClient(t, ca)
	const n = 2000
	for range n {
		_, err := client.CreateCertificate(withBearer(t.Context(), "not-a-token"), &securityv1alpha1.IstioCertificateRequest{Csr: "x"})
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("got %v, want Unauthenticated", err)
		}
	}
	if got := counterValue(t, ca.metrics.refusals.WithLabelValues(string(ReasonBadToken))); got != n {
		t.Fatalf("refusals{bad_token} = %v, want %d", got, n)
	}
	ca.refusalLog.flush() // the window's end, without waiting a minute
	out := logs.String()
	lines := strings.Count(out, `msg="certificate request refused"`)
	summed := 0
	for _, l := range strings.Split(out, "\n") {
		if _, c, ok := strings.Cut(l, "refusals not logged (sampled)\" count="); ok {
			var k int
			for _, r := range c {
				if r < '0' || r > '9' {
					break
				}
				k = k*10 + int(r-'0')
			}
			summed += k
		}
	}
	if lines > 2*refusalLogBurst || lines+summed != n {
		t.Fatalf("%d refusal lines and %d counted in summaries for %d refusals; want at most %d lines and all counted:\n%s",
			lines, summed, n, 2*refusalLogBurst, out[:min(len(out), 3000)])
	}
	t.Logf("%d refusals: %d log lines, %d counted in summaries", n, lines, summed)
}

// The count of the lines a window dropped is logged when the window ends, and the next
// window lets lines through again.
func TestLogSamplerSummarizesAtWindowEnd(t *testing.T) {
	var logs testutil.SyncBuffer
	s := newLogSampler(slog.New(slog.NewTextHandler(&logs, nil)), 2, 100*time.Millisecond)
	var got []bool
	for range 5 {
		got = append(got, s.allow())
	}
	if want := []bool{true, true, false, false, false}; !slices.Equal(got, want) {
		t.Fatalf("allow() = %v, want %v", got, want)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "count=3") {
		if time.Now().After(deadline) {
			t.Fatalf("no summary of the 3 dropped lines: %q", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !s.allow() {
		t.Fatal("the window after the summary drops lines")
	}
}
