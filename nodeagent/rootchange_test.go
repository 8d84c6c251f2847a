package nodeagent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// A new root added to the bundle's root-cert.pem (root rotation) reaches
// Envoy as a new ROOTCA version without waiting for a renewal.
func TestAgentPushesNewRoot(t *testing.T) {
	const ttl = time.Hour
	ca := newTestCA(t, ttl)
	bundle := writeBundle(t, ca, time.Minute)
	cfg := agentConfig(t, bundle, ttl, quiet())
	cfg.RootCheckInterval = 100 * time.Millisecond
	a := startAgent(t, cfg)
	sds := dialSDS(t, cfg.SDSSocket)
	if n := rootCount(t, sds.next(t)); n != 1 {
		t.Fatalf("first ROOTCA has %d roots, want 1", n)
	}
	f, err := os.OpenFile(filepath.Join(bundle, "root-cert.pem"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(newRootPEM(t)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if rootCount(t, sds.next(t)) == 2 {
			if a.Renewals() != 1 {
				t.Errorf("agent renewed %d times; the root should arrive without a renewal", a.Renewals()-1)
			}
			roots, err := os.ReadFile(filepath.Join(cfg.OutputDir, FileRoot))
			if certs, _ := parseCerts(roots); err != nil || len(certs) != 2 {
				t.Errorf("output root-cert.pem has %d roots (%v), want 2", len(certs), err)
			}
			return
		}
	}
	t.Fatal("ROOTCA never gained the new root")
}

func rootCount(t *testing.T, secrets map[string]*tlsv3.Secret) int {
	t.Helper()
	r := secrets["ROOTCA"]
	if r == nil {
		return -1
	}
	certs, err := parseCerts(r.GetValidationContext().GetTrustedCa().GetInlineBytes())
	if err != nil {
		t.Fatal(err)
	}
	return len(certs)
}

func newRootPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{Organization: []string{"next root"}},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
