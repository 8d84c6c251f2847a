package main

import (
	"context"
	"strings"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/certauthority"
	"github.com/librarymesh/controlplane/internal/e2e"
	"github.com/librarymesh/controlplane/internal/kubetest"
)

// TestKubeRotateContinuesOnOtherReplica: two replicas against a real
// kube-apiserver; the leader drives a rotation recorded in istio-ca-secret
// and is SIGKILLed in trust-new (a proxy connected to it never ACKs); the
// other replica takes the lease and carries the rotation to the end.
func TestKubeRotateContinuesOnOtherReplica(t *testing.T) {
	e := kubetest.New(t)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}}
	if _, err := e.Kube.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	args := []string{"--kubeconfig", e.KubeconfigPath, "--ca-resync", "200ms", "--leader-elect-lease-duration", "4s"}
	replicas := []*e2e.Server{e2e.Serve(t, args...), e2e.Serve(t, args...)}
	var leader, follower *e2e.Server
	e2e.Eventually(t, "a leader", 30*time.Second, func() bool {
		for i, r := range replicas {
			if caStatus(t, r).Leader {
				leader, follower = r, replicas[1-i]
				return true
			}
		}
		return false
	})
	e2e.ADSFirst(t, leader.GRPCAddr, xdsNode(t, "default", "inventory"), resourcev3.ClusterType, 20*time.Second)
	runCP(t, "ca", "rotate", "--kubeconfig", e.KubeconfigPath, "--ca-namespace", "istio-system", "--wait=false")
	e2e.Eventually(t, "the leader waiting in trust-new for its proxy", 30*time.Second, func() bool {
		r := caStatus(t, leader).Rotation
		return r != nil && r.Phase == certauthority.PhaseTrustNew && r.Settled && r.Proxies == 1 && r.ProxiesAcked == 0
	})
	if st := caStatus(t, follower); st.Rotation == nil || len(st.Roots) != 2 {
		t.Fatalf("the follower has not applied trust-new: %+v", st)
	}
	leader.Kill()

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, err := e2e.Run(ctx, t, "ca", "rotate", "--kubeconfig", e.KubeconfigPath, "--ca-namespace", "istio-system",
		"--server", follower.HTTPAddr, "--poll", "200ms")
	t.Logf("ca rotate, following the other replica:\n%s", out)
	if err != nil || !strings.Contains(out, "done:") {
		t.Fatalf("the other replica did not finish the rotation: %v\n%s", err, follower.Logs())
	}
	if !caStatus(t, follower).Leader {
		t.Error("the replica that finished does not lead")
	}
	sec, err := e.Kube.CoreV1().Secrets("istio-system").Get(t.Context(), certauthority.SelfSignedSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := caStatus(t, follower)
	if _, ok := sec.Data[certauthority.RotationFile]; ok || len(st.Roots) != 1 ||
		!strings.Contains(out, "root "+st.Roots[0].ID+" alone") {
		t.Errorf("istio-ca-secret still records a rotation, or the bundle is not the new root alone: %+v", st.Roots)
	}
}
