package nodeagent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/librarymesh/controlplane/internal/testutil"
)

// With a certificate TTL of seconds and a single-use token that expires right
// after the first use, the agent renews at least twice with its client
// certificate, and a real SDS client sees every new certificate.
func TestAgentRenewsWithClientCertAndPushesOverSDS(t *testing.T) {
	const ttl = 3 * time.Second
	ca := newTestCA(t, ttl)
	bundle := writeBundle(t, ca, 2*time.Second)
	cfg := agentConfig(t, bundle, ttl, quiet())
	a := startAgent(t, cfg)
	sds := dialSDS(t, cfg.SDSSocket)

	var serials []string
	sawRoot := false
	deadline := time.Now().Add(15 * time.Second)
	for len(serials) < 3 && time.Now().Before(deadline) {
		secrets := sds.next(t)
		if r := secrets["ROOTCA"]; r != nil {
			sawRoot = len(r.GetValidationContext().GetTrustedCa().GetInlineBytes()) > 0
		}
		if d := secrets["default"]; d != nil {
			s := leafOf(t, d).SerialNumber.String()
			if len(serials) == 0 || serials[len(serials)-1] != s {
				serials = append(serials, s)
			}
		}
	}
	if len(serials) < 3 {
		t.Fatalf("SDS client saw %d certificates, want the first and two renewals", len(serials))
	}
	if !sawRoot {
		t.Error("SDS client never received ROOTCA")
	}
	if a.Renewals() < 3 || a.TokenUses() != 1 {
		t.Errorf("agent got %d certificates, %d with the token; want >= 3 and 1", a.Renewals(), a.TokenUses())
	}
	for _, dir := range []string{cfg.OutputDir, cfg.StateDir} {
		fi, err := os.Stat(filepath.Join(dir, FileKey))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s/key.pem: %v %v", dir, fi, err)
		}
		chain, err := os.ReadFile(filepath.Join(dir, FileCertChain))
		if err != nil {
			t.Fatal(err)
		}
		if certs, _ := parseCerts(chain); len(certs) == 0 || certs[0].URIs[0].String() != wantID {
			t.Errorf("%s/cert-chain.pem does not hold our certificate", dir)
		}
	}
}

// The CA stops for a while: the agent keeps serving its certificate, logs how
// long it has left, and renews when the CA is back.
func TestAgentSurvivesCAOutage(t *testing.T) {
	const ttl = 12 * time.Second
	ca := newTestCA(t, ttl)
	bundle := writeBundle(t, ca, time.Minute)
	logs := &testutil.SyncBuffer{}
	cfg := agentConfig(t, bundle, ttl, slogTo(logs))
	a := startAgent(t, cfg)
	testutil.Eventually(t, "first certificate", 5*time.Second, func() bool { return a.Current() != nil })
	first := a.Current()
	addr := ca.addr
	ca.stop()

	testutil.Eventually(t, "a failed renewal", 12*time.Second, func() bool {
		return strings.Contains(logs.String(), "still serving the current certificate")
	})
	if !strings.Contains(logs.String(), "expires_in=") {
		t.Errorf("log does not say how long the certificate has left:\n%s", logs)
	}
	sds := dialSDS(t, cfg.SDSSocket)
	if got := leafOf(t, sds.next(t)["default"]); !got.Equal(first) {
		t.Error("during the outage SDS served another certificate than the current one")
	}
	time.Sleep(time.Second)
	ca.start(t, addr)
	testutil.Eventually(t, "renewal after the CA returned", 5*time.Second, func() bool { return !a.Current().Equal(first) })
	if got := leafOf(t, sds.next(t)["default"]); got.Equal(first) {
		t.Error("SDS client did not get the renewed certificate")
	}
}

// A restarted agent uses the certificate it kept and never the (used) token.
func TestAgentRestartUsesKeptCertificate(t *testing.T) {
	const ttl = 20 * time.Second
	ca := newTestCA(t, ttl)
	bundle := writeBundle(t, ca, time.Minute)
	cfg := agentConfig(t, bundle, ttl, quiet())
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.renew(t.Context()); err != nil {
		t.Fatal(err)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if b.Current() == nil || !b.Current().Equal(a.Current()) {
		t.Fatal("restarted agent did not load the kept certificate")
	}
	if err := b.renew(t.Context()); err != nil {
		t.Fatalf("renewal after restart (token already used): %v", err)
	}
}

func TestAgentRefusesBadBundle(t *testing.T) {
	ca := newTestCA(t, time.Minute)
	cases := map[string]struct {
		mod  func(t *testing.T, dir string)
		want string
	}{
		"missing root": {func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "root-cert.pem")) }, "missing root-cert.pem"},
		"missing env":  {func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "cluster.env")) }, "missing cluster.env"},
		"missing token": {func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "bootstrap-token")) },
			"missing bootstrap-token"},
		"malformed token": {func(t *testing.T, dir string) { write(t, dir, "bootstrap-token", "not-a-token\n") }, "malformed"},
		"token not JSON":  {func(t *testing.T, dir string) { write(t, dir, "bootstrap-token", "a.b.c\n") }, "malformed"},
		"root not PEM":    {func(t *testing.T, dir string) { write(t, dir, "root-cert.pem", "hello\n") }, "no PEM certificate"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := writeBundle(t, ca, time.Minute)
			tc.mod(t, dir)
			err := Run(t.Context(), Options{Bundle: dir, SDSSocket: filepath.Join(shortDir(t), "s"), Logger: quiet()})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("expired token", func(t *testing.T) {
		dir := writeBundle(t, ca, time.Second)
		time.Sleep(1100 * time.Millisecond)
		_, err := New(Config{BundleDir: dir, Logger: quiet()})
		if err == nil || !strings.Contains(err.Error(), "expired") {
			t.Errorf("err = %v, want expired", err)
		}
	})
	t.Run("token for another identity", func(t *testing.T) {
		dir := writeBundle(t, ca, time.Minute)
		tok, _ := ca.ca.IssueBootstrapToken("default", "other", time.Minute, false)
		write(t, dir, "bootstrap-token", tok)
		_, err := New(Config{BundleDir: dir, Logger: quiet()})
		if err == nil || !strings.Contains(err.Error(), "default/other") {
			t.Errorf("err = %v, want an identity mismatch", err)
		}
	})
}

func write(t *testing.T, dir, name, data string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
