package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"github.com/librarymesh/controlplane/certauthority"
	"github.com/librarymesh/controlplane/internal/e2e"
)

// TestRotateResumesAfterKill: a server killed (SIGKILL) in the middle of a
// rotation finds the recorded phase in its data dir on restart and carries
// the rotation on to the end.
func TestRotateResumesAfterKill(t *testing.T) {
	cfgDir := t.TempDir()
	first := e2e.Serve(t, "--config-dir", cfgDir, "--ca-resync", "200ms")
	rootPEM := readFile(t, filepath.Join(first.DataDir, "root-cert.pem"))
	// A workload holding a 30 s certificate it never renews keeps
	// trust-new waiting: it has not been handed the new bundle.
	conn := e2e.Dial(t, first.SecureGRPCAddr, tlsCreds(t, rootPEM, nil))
	_, csr := newCSR(t)
	token := tokenCreate(t, first.DataDir, "default", "holder", "--ttl", "1h")
	if _, err := securityv1alpha1.NewIstioCertificateServiceClient(conn).CreateCertificate(withBearer(t.Context(), token),
		&securityv1alpha1.IstioCertificateRequest{Csr: csr, ValidityDuration: 30}); err != nil {
		t.Fatal(err)
	}
	out := runCP(t, "ca", "rotate", "--data-dir", first.DataDir, "--wait=false")
	if !strings.Contains(out, "recorded") {
		t.Fatalf("ca rotate did not record a rotation:\n%s", out)
	}
	e2e.Eventually(t, "the first server in trust-new", 20*time.Second, func() bool {
		st := caStatus(t, first)
		return st.Rotation != nil && st.Rotation.Phase == certauthority.PhaseTrustNew && st.Rotation.Settled && len(st.Roots) == 2
	})
	first.Kill()
	rec, err := certauthority.DecodeRotation(readFile(t, filepath.Join(first.DataDir, "ca", certauthority.RotationFile)))
	if err != nil || rec.Phase != certauthority.PhaseTrustNew {
		t.Fatalf("recorded rotation after the kill: %+v, %v", rec, err)
	}
	next, _ := rec.NextRootID()

	second := e2e.Serve(t, "--config-dir", cfgDir, "--data-dir", first.DataDir, "--ca-resync", "200ms")
	if !strings.Contains(second.Logs(), "rotation_phase="+string(certauthority.PhaseTrustNew)) {
		t.Errorf("the restarted server did not start in the recorded phase:\n%s", second.Logs())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, err = e2e.Run(ctx, t, "ca", "rotate", "--data-dir", first.DataDir, "--server", second.HTTPAddr, "--poll", "200ms")
	t.Logf("ca rotate, following:\n%s", out)
	if err != nil || !strings.Contains(out, "under way") || !strings.Contains(out, "done: the trust bundle is root "+next) {
		t.Fatalf("following the resumed rotation: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(first.DataDir, "ca", certauthority.RotationFile)); !os.IsNotExist(err) {
		t.Errorf("rotation record left behind: %v", err)
	}
	if got := readFile(t, filepath.Join(first.DataDir, "root-cert.pem")); string(got) != string(rec.Next.RootPEM) {
		t.Errorf("root-cert.pem is not the new root:\n%s", got)
	}
	status := runCP(t, "ca", "status", "--server", second.HTTPAddr)
	if !strings.Contains(status, next) || !strings.Contains(status, "no rotation under way") {
		t.Errorf("ca status:\n%s", status)
	}
}
