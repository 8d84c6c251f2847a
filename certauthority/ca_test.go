package certauthority

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

func TestRestartKeepsRoot(t *testing.T) {
	dir, clk := t.TempDir(), newClock()
	id := Identity{"default", "web"}
	ca1 := newTestCA(t, fileConfig(dir, clk))
	before, err := ca1.Sign(t.Context(), []byte(makeCSR(t, newP256(t))), id, 0)
	if err != nil {
		t.Fatalf("Sign before restart: %v", err)
	}
	ca2 := newTestCA(t, fileConfig(dir, clk))
	after, err := ca2.Sign(t.Context(), []byte(makeCSR(t, newP256(t))), id, 0)
	if err != nil {
		t.Fatalf("Sign after restart: %v", err)
	}
	for _, chain := range [][]string{before, after} {
		assertIdentity(t, verifyChain(t, chain, ca1.RootPEM()), id)
	}
	published, err := os.ReadFile(filepath.Join(dir, RootCertFile))
	if err != nil || string(published) != string(ca1.RootPEM()) {
		t.Fatalf("published root-cert.pem differs from the CA root (err %v)", err)
	}
	st, err := os.Stat(filepath.Join(dir, "ca", CAKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("ca-key.pem mode = %v (err %v), want 0600", st.Mode().Perm(), err)
	}
}

func TestConcurrentFirstStartAgreesOnOneRoot(t *testing.T) {
	dir, clk := t.TempDir(), newClock()
	cas := make([]*CA, 4)
	var wg sync.WaitGroup
	for i := range cas {
		wg.Go(func() {
			ca, err := New(context.Background(), fileConfig(dir, clk))
			if err != nil {
				t.Errorf("replica %d: %v", i, err)
				return
			}
			cas[i] = ca
		})
	}
	wg.Wait()
	for i, ca := range cas {
		if ca != nil && string(ca.RootPEM()) != string(cas[0].RootPEM()) {
			t.Fatalf("replica %d has another root", i)
		}
	}
}

func TestRSARoot(t *testing.T) {
	clk := newClock()
	cfg := fileConfig(t.TempDir(), clk)
	cfg.KeyAlgorithm = RSA
	ca := newTestCA(t, cfg)
	if _, ok := ca.trust().signer.key.(*rsa.PrivateKey); !ok {
		t.Fatalf("root key is %T, want RSA", ca.trust().signer.key)
	}
	tok, err := ca.IssueBootstrapToken("vm", "db", time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tlsClient(t, ca).CreateCertificate(withBearer(t.Context(), tok),
		&securityv1alpha1.IstioCertificateRequest{Csr: makeCSR(t, newP256(t))})
	if err != nil {
		t.Fatalf("CreateCertificate with an RS256 bootstrap token: %v", err)
	}
	assertIdentity(t, verifyChain(t, resp.CertChain, ca.RootPEM()), Identity{"vm", "db"})
}

func TestConfigRefusesWeakRSA(t *testing.T) {
	cfg := fileConfig(t.TempDir(), newClock())
	cfg.KeyAlgorithm, cfg.RSAKeyBits = RSA, 1024
	if _, err := New(t.Context(), cfg); err == nil {
		t.Fatal("New accepted a 1024-bit RSA root")
	}
}

func TestPluggedIntermediateChainVerifiesToRoot(t *testing.T) {
	ca, rootM, inter := newPluggedCA(t)
	if !ca.Plugged() || string(ca.RootPEM()) != string(rootM.CertPEM) {
		t.Fatal("CA does not use the plugged root")
	}
	chain, err := ca.Sign(t.Context(), []byte(makeCSR(t, newP256(t))), Identity{"ns1", "sa1"}, time.Hour)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if len(chain) != 3 || chain[1] != string(inter.CertPEM) {
		t.Fatalf("chain has %d certs, want leaf, intermediate, root", len(chain))
	}
	assertIdentity(t, verifyChain(t, chain, rootM.CertPEM), Identity{"ns1", "sa1"})
}

func TestPluggedFolderWithoutMaterialFallsBackToSelfSigned(t *testing.T) {
	cfg := fileConfig(t.TempDir(), newClock())
	cfg.Plugged = DirStore{Dir: filepath.Join(t.TempDir(), "absent")}
	if ca := newTestCA(t, cfg); ca.Plugged() {
		t.Fatal("an empty cacerts folder was used")
	}
}

// newPluggedCA is a CA on a plugged-in intermediate (Istio's cacerts
// layout), with the root and the intermediate.
func newPluggedCA(t *testing.T) (ca *CA, root, inter *Material) {
	t.Helper()
	root, inter = pluggedMaterial(t)
	cacerts := filepath.Join(t.TempDir(), "cacerts")
	if err := (DirStore{Dir: cacerts}).Create(t.Context(), inter); err != nil {
		t.Fatal(err)
	}
	cfg := fileConfig(t.TempDir(), newClock())
	cfg.Plugged = DirStore{Dir: cacerts}
	return newTestCA(t, cfg), root, inter
}

// pluggedMaterial makes a root and an intermediate in Istio's cacerts layout.
func pluggedMaterial(t *testing.T) (root, inter *Material) {
	t.Helper()
	root, err := generateRoot(Config{KeyAlgorithm: ECDSAP256, TrustDomain: "cluster.local", RootTTL: time.Hour * 24, Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	ra, err := newAuthority(root, false)
	if err != nil {
		t.Fatal(err)
	}
	key := newP256(t)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: randomSerial(), Subject: pkix.Name{CommonName: "intermediate"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(12 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}, ra.cert, key.Public(), ra.key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := encodeKey(key)
	cert := certPEM(&x509.Certificate{Raw: der})
	return root, &Material{CertPEM: cert, KeyPEM: keyPEM, RootPEM: root.CertPEM,
		ChainPEM: append(append([]byte{}, cert...), root.CertPEM...)}
}
