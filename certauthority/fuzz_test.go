package certauthority

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

// fuzzCA is a CA with no rate limits and a clock that stands still.
func fuzzCA(f *testing.F) *CA {
	cfg := fileConfig(f.TempDir(), newClock())
	cfg.Limits = NoLimits()
	return newTestCA(f, cfg)
}

// FuzzCreateCertificateRequest feeds any CSR text and validity to CreateCertificate from
// a proven caller: the answer is a chain naming exactly the caller, or InvalidArgument.
func FuzzCreateCertificateRequest(f *testing.F) {
	ca := fuzzCA(f)
	tok, err := ca.IssueBootstrapToken("vm", "db", time.Hour, false)
	if err != nil {
		f.Fatal(err)
	}
	good := makeCSR(f, newP256(f))
	for _, seed := range []struct {
		csr      string
		validity int64
	}{
		{good, 0}, {good, 3600}, {good, -1}, {good, 1 << 62}, {"", 0}, {"not a CSR", 0},
		{strings.Replace(good, "CERTIFICATE REQUEST", "CERTIFICATE", 2), 0},
		{"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", 0},
		{good[:len(good)/2], 0}, {good + good, 0},
	} {
		f.Add(seed.csr, seed.validity)
	}
	svc, ctx := ca.Service(), incoming(withBearer(context.Background(), tok))
	f.Fuzz(func(t *testing.T, csr string, validity int64) {
		resp, err := svc.CreateCertificate(ctx, &securityv1alpha1.IstioCertificateRequest{Csr: csr, ValidityDuration: validity})
		if err != nil {
			if r, ok := errors.AsType[*Refusal](err); !ok || r.Code != codes.InvalidArgument {
				t.Fatalf("refused with %v, want an InvalidArgument refusal", err)
			}
			return
		}
		assertIdentity(t, verifyChainAt(t, resp.CertChain, ca.RootPEM(), ca.cfg.Now()), Identity{"vm", "db"})
	})
}

// FuzzParseCSR: parseCSR never panics, and a CSR it accepts has a checked signature and
// an allowed key, so it can be signed.
func FuzzParseCSR(f *testing.F) {
	ca := fuzzCA(f)
	good := []byte(makeCSR(f, newP256(f)))
	block, _ := pem.Decode(good)
	f.Add(good)
	f.Add(block.Bytes) // DER without PEM
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "NEW CERTIFICATE REQUEST", Bytes: block.Bytes}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: block.Bytes[:len(block.Bytes)-3]}))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := parseCSR(data)
		if err != nil {
			if r, ok := errors.AsType[*Refusal](err); !ok || r.Code != codes.InvalidArgument {
				t.Fatalf("parseCSR error %v is not an InvalidArgument refusal", err)
			}
			return
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted a CSR whose signature does not check: %v", err)
		}
		if _, err := ca.signCSR(context.Background(), csr, Identity{"vm", "db"}, time.Hour); err != nil {
			t.Fatalf("accepted CSR cannot be signed: %v", err)
		}
	})
}

// FuzzBootstrapToken: any string given as a bootstrap token is either refused
// (Unauthenticated) or proves exactly what the CA issued: the fuzzer cannot forge one.
func FuzzBootstrapToken(f *testing.F) {
	ca := fuzzCA(f)
	tok, err := ca.IssueBootstrapToken("vm", "db", time.Hour, true)
	if err != nil {
		f.Fatal(err)
	}
	issued, err := ca.verifyBootstrapToken(tok)
	if err != nil {
		f.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	for _, s := range []string{tok, "", ".", "..", "a.b.c", parts[0] + "." + parts[1] + ".",
		parts[0] + ".e30." + parts[2], "e30." + parts[1] + "." + parts[2], tok + ".x",
		"eyJhbGciOiJub25lIn0." + parts[1] + "."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		_ = looksLikeBootstrapToken(token)
		c, err := ca.verifyBootstrapToken(token)
		if err != nil {
			if r, ok := errors.AsType[*Refusal](err); !ok || r.Code != codes.Unauthenticated {
				t.Fatalf("error %v is not an Unauthenticated refusal", err)
			}
			return
		}
		if c != issued {
			t.Fatalf("token %q verified with claims %+v, but the CA issued only %+v", token, c, issued)
		}
	})
}

// FuzzAuthenticate: whatever authorization metadata a caller sends, over TLS or not, it
// is refused with Unauthenticated or proves the issued identity; without TLS any bearer
// token is refused as sent in clear.
func FuzzAuthenticate(f *testing.F) {
	ca := fuzzCA(f)
	tok, err := ca.IssueBootstrapToken("vm", "db", time.Hour, false)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"Bearer " + tok, "bearer  " + tok + " ", "Bearer", "Bearer ", "Basic dXNlcjpwdw==",
		"Bearer a.b.c", "Bearer " + tok + "x", " Bearer\t" + tok, "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, header string, tls bool) {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", header))
		if tls {
			ctx = incoming(metadata.NewOutgoingContext(context.Background(), metadata.Pairs("authorization", header)))
		}
		c, err := ca.authenticate(ctx)
		// A second call (remembered by authCache when it succeeded) gives the same answer.
		if c2, err2 := ca.authenticate(ctx); c2.id != c.id || c2.method != c.method || (err2 == nil) != (err == nil) {
			t.Fatalf("second authenticate: %v by %s (%v), first %v by %s (%v)", c2.id, c2.method, err2, c.id, c.method, err)
		}
		if err != nil {
			r, ok := errors.AsType[*Refusal](err)
			if !ok || r.Code != codes.Unauthenticated || (!tls && r.Reason != ReasonPlaintextToken) {
				t.Fatalf("tls=%v: error %v, want an Unauthenticated refusal (token_over_plaintext without TLS)", tls, err)
			}
			return
		}
		if !tls || c.id != (Identity{"vm", "db"}) || c.method != AuthBootstrapToken {
			t.Fatalf("tls=%v: header %q proved %v by %s", tls, header, c.id, c.method)
		}
	})
}

// FuzzIdentityFromSPIFFE: the identity read from a client certificate's URI SAN is valid
// and writes back to a SPIFFE ID that reads as the same identity.
func FuzzIdentityFromSPIFFE(f *testing.F) {
	for _, s := range []string{"spiffe://cluster.local/ns/default/sa/inventory", "spiffe://cluster.local/ns//sa/x",
		"spiffe://other.domain/ns/a/sa/b", "spiffe://cluster.local/ns/a/sa/b/extra", "https://cluster.local/ns/a/sa/b",
		"spiffe://cluster.local/ns/a%2Fb/sa/c", "spiffe://cluster.local/sa/a/ns/b", "spiffe://cluster.local:8080/ns/a/sa/b",
		"spiffe://user@cluster.local/ns/a/sa/b?x#y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		id, err := identityFromSPIFFE(u, DefaultTrustDomain)
		if err != nil {
			return
		}
		if err := id.validate(); err != nil {
			t.Fatalf("%q gave invalid identity %+v: %v", raw, id, err)
		}
		uri, err := id.SPIFFEID(DefaultTrustDomain)
		if err != nil {
			t.Fatalf("%q gave %+v, which has no SPIFFE ID URL: %v", raw, id, err)
		}
		back, err := identityFromSPIFFE(uri, DefaultTrustDomain)
		if err != nil || back != id {
			t.Fatalf("%q gave %+v, whose SPIFFE ID %s reads back as %+v (%v)", raw, id, uri, back, err)
		}
	})
}

// FuzzIdentityFromServiceAccountUser: a TokenReview user name is accepted only as
// exactly system:serviceaccount:NS:SA with a valid NS and SA.
func FuzzIdentityFromServiceAccountUser(f *testing.F) {
	for _, s := range []string{"system:serviceaccount:default:inventory", "system:serviceaccount:a:b:c",
		"system:serviceaccount::x", "system:node:worker-1", "system:serviceaccount:a/b:c", "admin"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, user string) {
		id, err := IdentityFromServiceAccountUser(user)
		if err != nil {
			return
		}
		if id.validate() != nil || "system:serviceaccount:"+id.Namespace+":"+id.ServiceAccount != user {
			t.Fatalf("user %q gave %+v", user, id)
		}
	})
}

// FuzzVerifyClientCert: a client certificate the fuzzer makes proves an identity only if
// its signed part is the one the CA issued, and never panics the check.
func FuzzVerifyClientCert(f *testing.F) {
	ca := fuzzCA(f)
	chain, err := ca.Sign(context.Background(), []byte(makeCSR(f, newP256(f))), Identity{"vm", "db"}, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	leaf, _ := pem.Decode([]byte(chain[0]))
	issued, err := x509.ParseCertificate(leaf.Bytes)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(leaf.Bytes)
	f.Add(leaf.Bytes[:len(leaf.Bytes)-1])
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, der []byte) {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		id, err := ca.verifyClientCert([]*x509.Certificate{cert})
		if err != nil {
			return
		}
		if string(cert.RawTBSCertificate) != string(issued.RawTBSCertificate) || id != (Identity{"vm", "db"}) {
			t.Fatalf("a certificate the CA did not issue proved %+v", id)
		}
	})
}
