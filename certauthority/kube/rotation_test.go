package kube

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/librarymesh/controlplane/certauthority"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A rotation recorded in istio-ca-secret is driven by the leader; when the
// leader stops between phases, the other replica (now leading) continues
// it from the recorded phase to the end.
func TestRotationContinuesOnOtherReplica(t *testing.T) {
	e := env.Need(t)
	ns := namespace(t, e.Kube)
	var leader atomic.Int32 // 1: replica a leads, 2: replica b
	leader.Store(1)
	replica := func(n int32) (*certauthority.CA, context.CancelFunc) {
		cfg := kubeConfig(t, e.Kube, ns)
		cfg.ResyncInterval = 100 * time.Millisecond
		cfg.IsLeader = func() bool { return leader.Load() == n }
		ca := newCA(t, cfg)
		ctx, cancel := context.WithCancel(t.Context())
		go ca.Start(ctx) //nolint:errcheck // returns nil when ctx ends
		t.Cleanup(cancel)
		return ca, cancel
	}
	a, stopA := replica(1)
	b, _ := replica(2)
	oldRoot := string(a.RootPEM())
	r, started, err := certauthority.StartRotation(t.Context(), certauthority.RotateOptions{Store: SelfSignedSecret(e.Kube, ns)})
	if err != nil || !started {
		t.Fatalf("StartRotation: %v", err)
	}
	nextID, err := r.NextRootID()
	if err != nil {
		t.Fatal(err)
	}
	waitPhase(t, a, certauthority.PhaseSignNew)
	stopA() // the leader dies in sign-new
	if !waitFor(t, func() bool { return phaseOf(b) == certauthority.PhaseSignNew }) {
		t.Fatal("the follower did not apply sign-new")
	}
	if got := phaseOf(b); got != certauthority.PhaseSignNew {
		t.Fatalf("without a leader the rotation moved to %q", got)
	}
	leader.Store(2)
	if !waitFor(t, func() bool { return phaseOf(b) == "" }) {
		t.Fatalf("replica b did not finish the rotation: %+v", b.Status().Rotation)
	}
	st := b.Status()
	if len(st.Roots) != 1 || st.Roots[0].ID != nextID || string(b.RootPEM()) == oldRoot {
		t.Fatalf("after the rotation the bundle is %+v, want the new root %s alone", st.Roots, nextID)
	}
	sec, err := e.Kube.CoreV1().Secrets(ns).Get(t.Context(), certauthority.SelfSignedSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := sec.Data[certauthority.RotationFile]; ok || string(sec.Data[certauthority.RootCertFile]) != string(r.Next.RootPEM) {
		t.Fatal("istio-ca-secret does not hold the new root alone")
	}
}

func phaseOf(ca *certauthority.CA) certauthority.Phase {
	if r := ca.Status().Rotation; r != nil {
		return r.Phase
	}
	return ""
}

func waitPhase(t *testing.T, ca *certauthority.CA, p certauthority.Phase) {
	t.Helper()
	if !waitFor(t, func() bool { return phaseOf(ca) == p }) {
		t.Fatalf("phase %q never reached: %+v", p, ca.Status().Rotation)
	}
}

func waitFor(t *testing.T, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}
