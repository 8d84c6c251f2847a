package certauthority

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// acks is a settable ProxyAcks: total proxies, of which acked ACKed bundle.
type acks struct {
	bundle atomic.Value
	total  atomic.Int32
}

func (a *acks) report(bundle string) (int, int) {
	t := int(a.total.Load())
	if b, _ := a.bundle.Load().(string); b == bundle {
		return t, t
	}
	return 0, t
}

func rotatingCA(t *testing.T, cfg Config, a *acks) *CA {
	t.Helper()
	ca := newTestCA(t, cfg)
	ca.SetProxyAcks(a.report)
	return ca
}

// step runs one resync and advance, as Start does each interval.
func step(t *testing.T, ca *CA) {
	t.Helper()
	if err := ca.resync(t.Context()); err != nil {
		t.Fatalf("resync: %v", err)
	}
	if err := ca.advance(t.Context()); err != nil {
		t.Fatalf("advance: %v", err)
	}
}

func wantPhase(t *testing.T, ca *CA, want Phase, roots int) {
	t.Helper()
	st := ca.Status()
	got := Phase("")
	if st.Rotation != nil {
		got = st.Rotation.Phase
	}
	if got != want || len(st.Roots) != roots {
		t.Fatalf("phase %q with %d roots, want %q with %d (%+v)", got, len(st.Roots), want, roots, st.Rotation)
	}
}

// A rotation walks its three phases in order; each phase waits for what it
// must, and a CA restarted between phases (a killed server) resumes from the
// recorded phase.
func TestRotationPhasesResumeAfterRestart(t *testing.T) {
	dir, clk, a := t.TempDir(), newClock(), &acks{}
	cfg := fileConfig(dir, clk)
	cfg.ResyncInterval = time.Second
	ca := rotatingCA(t, cfg, a)
	oldRoot := ca.RootPEM()
	a.total.Store(1)
	a.bundle.Store(ca.BundleID())
	key := newP256(t)
	oldChain, err := ca.Sign(t.Context(), []byte(makeCSR(t, key)), Identity{"ns", "w"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	r, started, err := StartRotation(t.Context(), RotateOptions{Store: cfg.Store, Now: clk.Now})
	if err != nil || !started {
		t.Fatalf("StartRotation: started %v, %v", started, err)
	}
	step(t, ca)
	wantPhase(t, ca, PhaseTrustNew, 2)
	clk.Advance(3 * time.Second)
	step(t, ca)
	wantPhase(t, ca, PhaseTrustNew, 2) // the proxy has not ACKed, the workload lacks the bundle
	chain, err := ca.Sign(t.Context(), []byte(makeCSR(t, key)), Identity{"ns", "w"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	verifyChain(t, chain, oldRoot) // the old root still signs
	if n := strings.Count(chain[len(chain)-1], "BEGIN CERTIFICATE"); n != 2 {
		t.Fatalf("the response's last element holds %d roots, want the bundle of 2", n)
	}

	ca = rotatingCA(t, cfg, a) // killed and restarted in trust-new
	wantPhase(t, ca, PhaseTrustNew, 2)
	a.bundle.Store(ca.BundleID())
	clk.Advance(3 * time.Second)
	step(t, ca)
	wantPhase(t, ca, PhaseSignNew, 2)
	nextID, _ := r.NextRootID()
	newRoot := rootPEMOf(t, ca, nextID)
	chain, err = ca.Sign(t.Context(), []byte(makeCSR(t, key)), Identity{"ns", "w"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	verifyChain(t, chain, newRoot)
	// Renewal with an old-root certificate still works in sign-new.
	if _, err := ca.verifyClientCert(parseChain(t, oldChain)); err != nil {
		t.Fatalf("old-root client certificate refused in sign-new: %v", err)
	}

	ca = rotatingCA(t, cfg, a) // killed and restarted in sign-new
	wantPhase(t, ca, PhaseSignNew, 2)
	// A renewal remembers the old-root certificate (authCache) ...
	if _, _, err := ca.clientCertIdentity(parseChain(t, oldChain)); err != nil {
		t.Fatalf("old-root client certificate refused in sign-new after restart: %v", err)
	}
	clk.Advance(3 * time.Second)
	step(t, ca)
	wantPhase(t, ca, PhaseDropOld, 1)
	if _, err := ca.verifyClientCert(parseChain(t, oldChain)); err == nil {
		t.Fatal("old-root client certificate accepted after the old root was dropped")
	}
	// ... which does not outlive the root.
	if _, _, err := ca.clientCertIdentity(parseChain(t, oldChain)); err == nil {
		t.Fatal("remembered old-root client certificate accepted after the old root was dropped")
	}
	clk.Advance(3 * time.Second)
	step(t, ca)
	wantPhase(t, ca, PhaseDropOld, 1) // the proxy has not ACKed the new bundle
	a.bundle.Store(ca.BundleID())
	step(t, ca)
	wantPhase(t, ca, "", 1)
	if _, err := os.Stat(filepath.Join(dir, "ca", RotationFile)); !os.IsNotExist(err) {
		t.Fatalf("rotation record left behind: %v", err)
	}
	published, _ := os.ReadFile(filepath.Join(dir, RootCertFile))
	if string(published) != string(newRoot) || string(ca.RootPEM()) != string(newRoot) {
		t.Fatal("root-cert.pem is not the new root alone")
	}
	restarted := newTestCA(t, cfg)
	if string(restarted.RootPEM()) != string(newRoot) {
		t.Fatal("after a restart the CA does not sign from the new root")
	}
}

// A rotation can be forced past the wait for old certificates, and a
// second `ca rotate` joins the rotation under way.
func TestRotationForce(t *testing.T) {
	clk, a := newClock(), &acks{}
	cfg := fileConfig(t.TempDir(), clk)
	ca := rotatingCA(t, cfg, a)
	if _, _, err := StartRotation(t.Context(), RotateOptions{Store: cfg.Store, Now: clk.Now}); err != nil {
		t.Fatal(err)
	}
	step(t, ca)
	clk.Advance(time.Minute)
	step(t, ca)
	wantPhase(t, ca, PhaseSignNew, 2)
	// A certificate from the old root is live: sign-new waits.
	ca.issued.add(randomSerial(), parseChain(t, mustSign(t, ca))[0].URIs[0].String(),
		clk.Now().Add(time.Hour), newTrust(ca.trust().others[0], nil, nil, ""))
	clk.Advance(time.Minute)
	step(t, ca)
	wantPhase(t, ca, PhaseSignNew, 2)
	r, started, err := StartRotation(t.Context(), RotateOptions{Store: cfg.Store, Force: true, Now: clk.Now})
	if err != nil || started || !r.Force {
		t.Fatalf("forcing: started %v, force %v, %v", started, r != nil && r.Force, err)
	}
	step(t, ca)
	wantPhase(t, ca, PhaseDropOld, 1)
}

// A broken cacerts change is refused with a clear error, and signing goes
// on with the old intermediate; a good one takes effect without a restart.
func TestPluggedReload(t *testing.T) {
	ca, root, inter := newPluggedCA(t)
	dir := ca.cfg.Plugged.(DirStore).Dir
	_, otherInter := pluggedMaterial(t)
	goodInter := reissueIntermediate(t, root)
	tests := []struct {
		name string
		m    *Material
		want string
	}{
		{"key of another intermediate", &Material{CertPEM: inter.CertPEM, KeyPEM: goodInter.KeyPEM, ChainPEM: inter.ChainPEM, RootPEM: inter.RootPEM}, "does not match"},
		{"intermediate under an untrusted root", otherInter, "is not in the trust bundle"},
		{"not a certificate", &Material{CertPEM: []byte("garbage"), KeyPEM: inter.KeyPEM}, "ca-cert.pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writeMaterialFiles(t, dir, tt.m)
			err := ca.resync(t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "refused") {
				t.Fatalf("reload: %v, want a refusal containing %q", err, tt.want)
			}
			t.Logf("refused: %v", err)
			chain, err := ca.Sign(t.Context(), []byte(makeCSR(t, newP256(t))), Identity{"ns", "w"}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if parseChain(t, chain)[1].Subject.CommonName != "intermediate" || chain[1] != string(inter.CertPEM) {
				t.Fatal("signing moved off the old intermediate")
			}
		})
	}
	writeMaterialFiles(t, dir, goodInter)
	if err := ca.resync(t.Context()); err != nil {
		t.Fatalf("good reload: %v", err)
	}
	chain, err := ca.Sign(t.Context(), []byte(makeCSR(t, newP256(t))), Identity{"ns", "w"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if chain[1] != string(goodInter.CertPEM) {
		t.Fatal("the reloaded intermediate does not sign")
	}
	verifyChain(t, chain, root.CertPEM)
}

func writeMaterialFiles(t *testing.T, dir string, m *Material) {
	t.Helper()
	if err := writeMaterial(dir, m); err != nil {
		t.Fatal(err)
	}
}

// reissueIntermediate makes a new intermediate under root, as an operator
// replacing cacerts does.
func reissueIntermediate(t *testing.T, root *Material) *Material {
	t.Helper()
	ra, err := newAuthority(root, false)
	if err != nil {
		t.Fatal(err)
	}
	key := newP256(t)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: randomSerial(), Subject: pkix.Name{CommonName: "intermediate 2"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(12 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}, ra.cert, key.Public(), ra.key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := encodeKey(key)
	cert := certPEM(&x509.Certificate{Raw: der})
	return &Material{CertPEM: cert, KeyPEM: keyPEM, RootPEM: root.CertPEM, ChainPEM: append(append([]byte{}, cert...), root.CertPEM...)}
}

func mustSign(t *testing.T, ca *CA) []string {
	t.Helper()
	chain, err := ca.Sign(context.Background(), []byte(makeCSR(t, newP256(t))), Identity{"ns", "x"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return chain
}

func parseChain(t *testing.T, chain []string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for _, c := range chain {
		certs, err := parseCerts([]byte(c))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, certs...)
	}
	return out
}

// rootPEMOf returns the PEM of the bundle's root with id.
func rootPEMOf(t *testing.T, ca *CA, id string) []byte {
	t.Helper()
	for _, r := range ca.trust().bundle {
		if rootID(r) == id {
			return certPEM(r)
		}
	}
	t.Fatalf("root %s not in the bundle", id)
	return nil
}
