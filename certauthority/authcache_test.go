package certauthority

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

// withPeerCerts is an incoming call over TLS presenting certs.
func withPeerCerts(certs []*x509.Certificate) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)},
		AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: certs}}})
}

func wantReason(t *testing.T, err error, want Reason) {
	t.Helper()
	r, ok := errors.AsType[*Refusal](err)
	if !ok || r.Reason != want {
		t.Fatalf("got %v, want a %s refusal", err, want)
	}
}

// A remembered success holds only while the credential is valid: a bootstrap
// token or a client certificate past its expiry is refused as if never seen.
func TestAuthCacheRespectsExpiry(t *testing.T) {
	for _, tc := range []struct {
		name   string
		call   func(t *testing.T, ca *CA) context.Context
		reason Reason
	}{
		{"bootstrap token", func(t *testing.T, ca *CA) context.Context {
			tok, err := ca.IssueBootstrapToken("vm", "db", time.Hour, false)
			if err != nil {
				t.Fatal(err)
			}
			return incoming(withBearer(context.Background(), tok))
		}, ReasonExpiredToken},
		{"client certificate", func(t *testing.T, ca *CA) context.Context {
			chain, err := ca.Sign(t.Context(), []byte(makeCSR(t, newP256(t))), Identity{"vm", "db"}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			return withPeerCerts(parseChain(t, chain[:len(chain)-1]))
		}, ReasonBadClientCert},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			ca := newTestCA(t, fileConfig(t.TempDir(), clk))
			ctx := tc.call(t, ca)
			for i := range 2 {
				c, err := ca.authenticate(ctx)
				if err != nil || c.id != (Identity{"vm", "db"}) {
					t.Fatalf("call %d: %v, %v", i, c.id, err)
				}
			}
			if n := ca.authCache.len(); n != 1 {
				t.Fatalf("%d remembered authentications, want 1", n)
			}
			clk.Advance(59 * time.Minute)
			if _, err := ca.authenticate(ctx); err != nil {
				t.Fatalf("a minute before expiry: %v", err)
			}
			clk.Advance(2 * time.Minute)
			_, err := ca.authenticate(ctx)
			wantReason(t, err, tc.reason)
		})
	}
}

// A change of trust forgets every remembered success: a client certificate
// of a root the CA no longer trusts is refused, and a bootstrap token signed
// by a key it no longer trusts too.
func TestAuthCacheForgetsOnTrustChange(t *testing.T) {
	clk := newClock()
	ca := newTestCA(t, fileConfig(t.TempDir(), clk))
	other := newTestCA(t, fileConfig(t.TempDir(), clk))
	chain, err := ca.Sign(t.Context(), []byte(makeCSR(t, newP256(t))), Identity{"vm", "db"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ca.IssueBootstrapToken("vm", "db", time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	certCtx, tokCtx := withPeerCerts(parseChain(t, chain[:1])), incoming(withBearer(context.Background(), tok))
	for _, ctx := range []context.Context{certCtx, tokCtx} {
		if _, err := ca.authenticate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := ca.authCache.len(); n != 2 {
		t.Fatalf("%d remembered authentications, want 2", n)
	}
	ca.setTrust(other.trust()) // a bundle without the old root
	_, err = ca.authenticate(certCtx)
	wantReason(t, err, ReasonBadClientCert)
	_, err = ca.authenticate(tokCtx)
	wantReason(t, err, ReasonBadToken)

	// An entry made under an older trust misses even if the reset was not seen.
	old := newTrust(other.trust().signer, nil, nil, "")
	k := tokenKey("x")
	ca.authCache.put(k, authEntry{trust: old, id: Identity{"a", "b"}, method: AuthBootstrapToken, notAfter: clk.Now().Add(time.Hour)}, clk.Now())
	if _, _, ok := ca.authCache.get(k, ca.trust(), clk.Now()); ok {
		t.Fatal("an entry of another trust was returned")
	}
}

// Refusals and single-use tokens are never remembered.
func TestAuthCacheKeepsOnlyReusableSuccesses(t *testing.T) {
	ca := newTestCA(t, fileConfig(t.TempDir(), newClock())) // file mode keeps used tokens
	single, err := ca.IssueBootstrapToken("vm", "db", time.Hour, true)
	if err != nil {
		t.Fatal(err)
	}
	other := newTestCA(t, fileConfig(t.TempDir(), newClock()))
	foreign, err := other.IssueBootstrapToken("vm", "db", time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{single, foreign, "a.b.c"} {
		ca.authenticate(incoming(withBearer(context.Background(), tok))) //nolint:errcheck // only the cache is checked
	}
	if n := ca.authCache.len(); n != 0 {
		t.Fatalf("%d remembered authentications, want 0", n)
	}
	svc := ca.Service()
	ctx := incoming(withBearer(context.Background(), single))
	req := &securityv1alpha1.IstioCertificateRequest{Csr: makeCSR(t, newP256(t))}
	if _, err := svc.CreateCertificate(ctx, req); err != nil {
		t.Fatal(err)
	}
	_, err = svc.CreateCertificate(ctx, req)
	wantReason(t, err, ReasonTokenReused)
}

func TestAuthCacheIsBounded(t *testing.T) {
	c, now := newAuthCache(8), time.Now()
	tr := &trust{}
	for i := range 100 {
		c.put(tokenKey(fmt.Sprint(i)), authEntry{trust: tr, notAfter: now.Add(time.Hour)}, now)
		if n := c.len(); n > 8 {
			t.Fatalf("after %d puts: %d entries, bound 8", i+1, n)
		}
	}
	if _, _, ok := c.get(tokenKey("99"), tr, now); !ok {
		t.Fatal("the newest entry was evicted")
	}
	c.put(tokenKey("expired"), authEntry{trust: tr, notAfter: now}, now)
	if _, _, ok := c.get(tokenKey("expired"), tr, now); ok {
		t.Fatal("an entry past its validity was kept")
	}
}

// The TLS handshake verifies a client certificate once and remembers it, so
// the calls on the connection do not verify it again; a chain of another CA
// fails the handshake.
func TestHandshakeVerifiesClientCertOnce(t *testing.T) {
	ca := newTestCA(t, fileConfig(t.TempDir(), newClock()))
	other := newTestCA(t, fileConfig(t.TempDir(), newClock()))
	addr := serve(t, ca, true)
	key := newP256(t)
	for _, tc := range []struct {
		name    string
		signer  *CA
		wantErr bool
	}{{"own CA", ca, false}, {"other CA", other, true}} {
		t.Run(tc.name, func(t *testing.T) {
			ca.authCache.reset()
			chain, err := tc.signer.Sign(t.Context(), []byte(makeCSR(t, key)), Identity{"vm", "db"}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Roots(), ServerName: "istiod.istio-system.svc",
				Certificates: []tls.Certificate{*tlsCert(t, chain, key)}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}})
			if err == nil {
				defer conn.Close()
				// TLS 1.3: the server's verdict on the client certificate comes with the first read.
				conn.SetReadDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck // best effort
				_, err = conn.Read(make([]byte, 1))
			}
			if tc.wantErr {
				if err == nil || ca.authCache.len() != 0 {
					t.Fatalf("handshake: %v, %d remembered; want a failed handshake", err, ca.authCache.len())
				}
				return
			}
			if n := ca.authCache.len(); n != 1 {
				t.Fatalf("after the handshake (%v): %d remembered authentications, want 1", err, n)
			}
			if _, _, ok := ca.authCache.get(chainKey(parseChain(t, chain[:len(chain)-1])), ca.trust(), ca.cfg.Now()); !ok {
				t.Fatal("the handshake's chain is not remembered")
			}
		})
	}
}
