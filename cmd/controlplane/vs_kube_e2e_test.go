package main

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/librarymesh/controlplane/internal/e2e"
	"github.com/librarymesh/controlplane/internal/kubetest"
)

// createVSMesh creates vsMesh's ServiceEntry, DestinationRule and
// VirtualService through the API server (networking.istio.io/v1).
func createVSMesh(t *testing.T, e *kubetest.Env, mesh string) {
	t.Helper()
	docs := strings.Split(mesh, "---\n")
	se, dr, vs := &networkingv1.ServiceEntry{}, &networkingv1.DestinationRule{}, &networkingv1.VirtualService{}
	for i, obj := range []any{se, dr, vs} {
		if err := yaml.Unmarshal([]byte(docs[i]), obj); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
	}
	ctx, n := t.Context(), e.Istio.NetworkingV1()
	if _, err := n.ServiceEntries(kubeNS).Create(ctx, se, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.DestinationRules(kubeNS).Create(ctx, dr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.VirtualServices(kubeNS).Create(ctx, vs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestKubeVirtualServiceRoutes: a VirtualService created in a real
// kube-apiserver routes grpc-go's RPCs by header to its subset, and an
// update of it (everything to v2) reroutes them.
func TestKubeVirtualServiceRoutes(t *testing.T) {
	v1 := e2e.HealthBackend(t, healthpb.HealthCheckResponse_SERVING)
	v2 := e2e.HealthBackend(t, healthpb.HealthCheckResponse_NOT_SERVING)
	e, srv := kubeServe(t)
	cc := e2e.ProxylessClient(t, srv.GRPCAddr, grpcNode, kubeNS, echoTarget)
	createVSMesh(t, e, vsMesh(v1, v2, flakyBackend(t, &flakyHealth{})))

	// The objects arrive one by one: until the VirtualService does, RPCs
	// go round robin to every endpoint (the flaky one too). Only the
	// VirtualService aborts x-fault: abort.
	e2e.Eventually(t, "the VirtualService to be in force (x-fault: abort is ABORTED)", 20*time.Second, func() bool {
		_, err := whichWithHeader(cc, "x-fault", "abort")
		return status.Code(err) == codes.Aborted
	})
	// grpc-go applies a new route table (its config selector) before its
	// cluster manager has a child for a cluster the table names first: an
	// RPC in between fails with "unknown cluster selected for RPC". The
	// abort above shows the table, not the child, so the subset gets a
	// moment to appear and must then take every x-canary RPC.
	e2e.Eventually(t, "x-canary: yes to reach subset v2 (NOT_SERVING)", 5*time.Second, func() bool {
		st, err := whichWithHeader(cc, "x-canary", "yes")
		return err == nil && st == healthpb.HealthCheckResponse_NOT_SERVING
	})
	for i := range 20 {
		if st, err := whichWithHeader(cc, "x-canary", "yes"); err != nil || st != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("RPC %d with x-canary: yes reached %v (%v), want subset v2 (NOT_SERVING)", i, st, err)
		}
	}
	seen := map[healthpb.HealthCheckResponse_ServingStatus]int{}
	for range 200 {
		st, err := e2e.Which(cc)
		if err != nil {
			t.Fatal(err)
		}
		seen[st]++
	}
	if seen[healthpb.HealthCheckResponse_SERVING] < 100 || seen[healthpb.HealthCheckResponse_NOT_SERVING] == 0 {
		t.Errorf("200 RPCs without the header reached %v, want most on v1 (SERVING) and some on v2", seen)
	}

	vss := e.Istio.NetworkingV1().VirtualServices(kubeNS)
	vs, err := vss.Get(t.Context(), "echo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	split := vs.Spec.Http[len(vs.Spec.Http)-1].Route
	split[0].Weight, split[1].Weight = 0, 100
	if _, err := vss.Update(t.Context(), vs, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	onlyReaches(t, "after the update sent everything to v2", cc, healthpb.HealthCheckResponse_NOT_SERVING)
}
