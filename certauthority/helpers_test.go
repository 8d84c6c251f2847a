package certauthority

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fileConfig is file mode in dataDir, as the server sets it up.
func fileConfig(dataDir string, clk *clock) Config {
	cfg := FileModeConfig(dataDir, "")
	cfg.Logger, cfg.Now = quietLogger(), clk.Now
	return cfg
}

func newTestCA(t testing.TB, cfg Config) *CA {
	t.Helper()
	ca, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return ca
}

// serve runs the CA service on 127.0.0.1:0, over TLS when withTLS.
func serve(t testing.TB, ca *CA, withTLS bool) string {
	t.Helper()
	var opts []grpc.ServerOption
	if withTLS {
		opts = append(opts, grpc.Creds(credentials.NewTLS(ca.ServingTLSConfig())))
	}
	srv := grpc.NewServer(opts...)
	ca.Register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	go srv.Serve(lis) //nolint:errcheck // ends with Stop
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// tlsClient serves ca over TLS and dials it without a client certificate.
func tlsClient(t testing.TB, ca *CA) securityv1alpha1.IstioCertificateServiceClient {
	t.Helper()
	return dialTLS(t, serve(t, ca, true), ca, nil)
}

func dialPlain(t testing.TB, addr string) securityv1alpha1.IstioCertificateServiceClient {
	t.Helper()
	return dial(t, addr, insecure.NewCredentials())
}

// dialTLS trusts ca's root and presents clientCert when not nil.
func dialTLS(t testing.TB, addr string, ca *CA, clientCert *tls.Certificate) securityv1alpha1.IstioCertificateServiceClient {
	t.Helper()
	cfg := &tls.Config{RootCAs: ca.Roots(), ServerName: "istiod.istio-system.svc", MinVersion: tls.VersionTLS12, Time: ca.cfg.Now}
	if clientCert != nil {
		cfg.Certificates = []tls.Certificate{*clientCert}
	}
	return dial(t, addr, credentials.NewTLS(cfg))
}

func dial(t testing.TB, addr string, creds credentials.TransportCredentials) securityv1alpha1.IstioCertificateServiceClient {
	t.Helper()
	return securityv1alpha1.NewIstioCertificateServiceClient(dialConn(t, addr, creds))
}

// dialConn is a connection closed when the test ends.
func dialConn(t testing.TB, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func withBearer(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func newP256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// makeCSR signs a CSR that asks for SANs the CA must ignore.
func makeCSR(t testing.TB, key crypto.Signer) string {
	t.Helper()
	evil, _ := url.Parse("spiffe://cluster.local/ns/kube-system/sa/admin")
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}},
		DNSNames: []string{"evil.example.com"},
		URIs:     []*url.URL{evil},
	}, key)
	if err != nil {
		t.Fatalf("create CSR: %v", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// verifyChain checks chain (leaf first, root last) against rootPEM and returns the leaf.
func verifyChain(t testing.TB, chain []string, rootPEM []byte) *x509.Certificate {
	t.Helper()
	return verifyChainAt(t, chain, rootPEM, time.Now())
}

// verifyChainAt is verifyChain at a given (test clock) time. Every element
// but the last is one certificate; the last is the trust bundle, which must
// hold the root. The leaf must verify against rootPEM alone.
func verifyChainAt(t testing.TB, chain []string, rootPEM []byte, now time.Time) *x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	for i, p := range chain {
		c, err := parseCerts([]byte(p))
		if err != nil || len(c) == 0 || (len(c) != 1 && i < len(chain)-1) {
			t.Fatalf("chain[%d]: want one certificate, got %d (%v)", i, len(c), err)
		}
		if i == len(chain)-1 {
			certs = append(certs, nil) // the bundle, checked below
			continue
		}
		certs = append(certs, c[0])
	}
	roots, err := parseCerts(rootPEM)
	if err != nil || len(roots) != 1 {
		t.Fatalf("root: %v", err)
	}
	bundle, _ := parseCerts([]byte(chain[len(chain)-1]))
	if len(certs) < 2 || !containsCert(bundle, roots[0]) {
		t.Fatalf("chain of %d elements does not end with a bundle holding the root", len(certs))
	}
	pool, inters := x509.NewCertPool(), x509.NewCertPool()
	pool.AddCert(roots[0])
	for _, c := range certs[1 : len(certs)-1] {
		inters.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inters, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("leaf does not verify against the root: %v", err)
	}
	return certs[0]
}

// assertIdentity checks the leaf carries exactly the SPIFFE ID of id and no other SAN.
func assertIdentity(t testing.TB, leaf *x509.Certificate, id Identity) {
	t.Helper()
	want := "spiffe://cluster.local/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != want {
		t.Fatalf("leaf URI SANs = %v, want [%s]", leaf.URIs, want)
	}
	if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 || leaf.Subject.CommonName != "" {
		t.Fatalf("leaf has SANs/subject from the CSR: dns=%v ip=%v cn=%q", leaf.DNSNames, leaf.IPAddresses, leaf.Subject.CommonName)
	}
}

// tlsCert turns an issued chain and its key into a client certificate.
func tlsCert(t testing.TB, chain []string, key crypto.Signer) *tls.Certificate {
	t.Helper()
	cert := &tls.Certificate{PrivateKey: key}
	for _, p := range chain[:len(chain)-1] {
		block, _ := pem.Decode([]byte(p))
		cert.Certificate = append(cert.Certificate, block.Bytes)
	}
	return cert
}

// incoming turns outgoing metadata into incoming, to call the service without a network,
// as if over a TLS connection without a client certificate.
func incoming(ctx context.Context) context.Context {
	md, _ := metadata.FromOutgoingContext(ctx)
	ctx = peer.NewContext(ctx, &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, AuthInfo: credentials.TLSInfo{}})
	return metadata.NewIncomingContext(ctx, md)
}

func pemBytes(t testing.TB, s string) []byte {
	t.Helper()
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		t.Fatal("no PEM block")
	}
	return block.Bytes
}

func pemCSR(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
