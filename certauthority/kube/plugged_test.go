package kube

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/librarymesh/controlplane/certauthority"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPluggedCACertsSecret(t *testing.T) {
	e := env.Need(t)
	ns := namespace(t, e.Kube)
	rootPEM, data := cacertsData(t)
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: certauthority.PluggedSecretName}, Data: data}
	if _, err := e.Kube.CoreV1().Secrets(ns).Create(t.Context(), sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ca := newCA(t, kubeConfig(t, e.Kube, ns))
	if !ca.Plugged() || string(ca.RootPEM()) != string(rootPEM) {
		t.Fatal("CA does not sign with the cacerts intermediate")
	}
	chain, err := ca.Sign(t.Context(), []byte(csr(t, "spiffe://cluster.local/ns/x/sa/y")), certauthority.Identity{Namespace: ns, ServiceAccount: "a"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 3 {
		t.Fatalf("chain has %d certs, want leaf, intermediate, root", len(chain))
	}
	if got, want := leafURI(t, chain, rootPEM), "spiffe://cluster.local/ns/"+ns+"/sa/a"; got != want {
		t.Fatalf("leaf URI %s, want %s", got, want)
	}
	if _, err := e.Kube.CoreV1().Secrets(ns).Get(t.Context(), certauthority.SelfSignedSecretName, metav1.GetOptions{}); err == nil {
		t.Fatal("istio-ca-secret was created although cacerts is plugged in")
	}
}

// cacertsData makes a root and an intermediate in Istio's cacerts layout.
func cacertsData(t *testing.T) ([]byte, map[string][]byte) {
	t.Helper()
	rootKey, interKey := newKey(t), newKey(t)
	root := issue(t, "root", rootKey, nil, rootKey)
	inter := issue(t, "intermediate", interKey, root, rootKey)
	keyDER, err := x509.MarshalECPrivateKey(interKey)
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, interPEM := toPEM(root.Raw), toPEM(inter.Raw)
	return rootPEM, map[string][]byte{
		certauthority.CACertFile:    interPEM,
		certauthority.CAKeyFile:     pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		certauthority.RootCertFile:  rootPEM,
		certauthority.CertChainFile: append(append([]byte{}, interPEM...), rootPEM...),
	}
}

func issue(t *testing.T, cn string, key *ecdsa.PrivateKey, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func toPEM(der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}) }
