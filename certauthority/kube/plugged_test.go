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
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
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
	root, data, _ := cacertsDataWithKey(t)
	return root, data
}

// cacertsDataWithKey is cacertsData with the root's key.
func cacertsDataWithKey(t *testing.T) ([]byte, map[string][]byte, *ecdsa.PrivateKey) {
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
	}, rootKey
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

// A changed cacerts Secret is reloaded while running: a broken one is
// refused (counted, logged) and signing goes on with the old intermediate;
// a good one under the same root takes over without a restart.
func TestPluggedSecretReload(t *testing.T) {
	e := env.Need(t)
	ns := namespace(t, e.Kube)
	rootPEM, data, rootKey := cacertsDataWithKey(t)
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: certauthority.PluggedSecretName}, Data: data}
	if _, err := e.Kube.CoreV1().Secrets(ns).Create(t.Context(), sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := kubeConfig(t, e.Kube, ns)
	reg := prometheus.NewRegistry()
	cfg.Registerer, cfg.ResyncInterval = reg, 100*time.Millisecond
	ca := newCA(t, cfg)
	go ca.Start(t.Context()) //nolint:errcheck // returns nil when the test ends
	signer := func() string {
		chain, err := ca.Sign(t.Context(), []byte(csr(t, "spiffe://cluster.local/ns/x/sa/y")), certauthority.Identity{Namespace: ns, ServiceAccount: "a"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		leafURI(t, chain, rootPEM)
		return chain[1]
	}
	old := signer()
	broken := map[string][]byte{}
	for k, v := range data {
		broken[k] = v
	}
	broken[certauthority.CAKeyFile] = pemKey(t, newKey(t)) // a key of no certificate here
	updateSecret(t, e.Kube, ns, broken)
	if !waitFor(t, func() bool { return reloads(t, reg, "refused") >= 1 }) {
		t.Fatal("the broken cacerts was not refused")
	}
	if signer() != old {
		t.Fatal("signing moved off the old intermediate after a broken reload")
	}
	interKey := newKey(t)
	inter := issue(t, "intermediate 2", interKey, parseCert(t, rootPEM), rootKey)
	good := map[string][]byte{
		certauthority.CACertFile: toPEM(inter.Raw), certauthority.CAKeyFile: pemKey(t, interKey),
		certauthority.RootCertFile: rootPEM, certauthority.CertChainFile: append(toPEM(inter.Raw), rootPEM...),
	}
	updateSecret(t, e.Kube, ns, good)
	if !waitFor(t, func() bool { return signer() == string(toPEM(inter.Raw)) }) {
		t.Fatal("the new intermediate does not sign")
	}
}

func pemKey(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

func parseCert(t *testing.T, p []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(p)
	if b == nil {
		t.Fatal("no PEM")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func updateSecret(t *testing.T, client kubernetes.Interface, ns string, data map[string][]byte) {
	t.Helper()
	secrets := client.CoreV1().Secrets(ns)
	sec, err := secrets.Get(t.Context(), certauthority.PluggedSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sec.Data = data
	if _, err := secrets.Update(t.Context(), sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// reloads reads controlplane_ca_reloads_total{result} from reg.
func reloads(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			if f.GetName() == "controlplane_ca_reloads_total" && m.GetLabel()[0].GetValue() == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
