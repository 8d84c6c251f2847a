package main

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/librarymesh/controlplane/internal/e2e"
)

// twoInstancesEntry is the echo host with two endpoints on one address
// (127.0.0.1) and different ports: two instances on one VM.
func twoInstancesEntry(first, second int) string {
	return echoEntry(echoEndpoint{first, "app: echo, instance: first"}, echoEndpoint{second, "app: echo, instance: second"})
}

// secondSubsetYAML routes the echo host to the subset of its second
// instance (a DestinationRule subset by label, a VirtualService to it).
func secondSubsetYAML() string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: test}
spec:
  host: %[1]s
  subsets:
  - {name: first, labels: {instance: first}}
  - {name: second, labels: {instance: second}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: test}
spec:
  hosts: [%[1]s]
  http:
  - route:
    - destination: {host: %[1]s, subset: second}
`, echoHost)
}

// TestTwoInstancesOnOneAddress: an endpoint is an address and its ports, so
// two backends on 127.0.0.1 behind one host both get RPCs from a grpc-go
// xDS client (round robin over two LbEndpoints), and a subset selecting
// only the second (routed to by a VirtualService) reaches only it.
func TestTwoInstancesOnOneAddress(t *testing.T) {
	first := e2e.HealthBackend(t, healthpb.HealthCheckResponse_SERVING)
	second := e2e.HealthBackend(t, healthpb.HealthCheckResponse_NOT_SERVING)
	dir := t.TempDir()
	e2e.WriteFileAtomic(t, filepath.Join(dir, "echo.yaml"), twoInstancesEntry(first, second))
	srv := e2e.Serve(t, "--config-dir", dir, "--debounce", "20ms")
	cc := e2e.ProxylessClient(t, srv.GRPCAddr, grpcNode, "test", echoTarget)

	// Round robin picks among the subchannels that are ready: right after
	// the endpoints arrive one of the two may still be connecting, and a
	// first burst of RPCs all go to the other. Give it a few seconds.
	var seen map[healthpb.HealthCheckResponse_ServingStatus]int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		seen = countBackends(t, cc, 20)
		if seen[healthpb.HealthCheckResponse_SERVING] > 0 && seen[healthpb.HealthCheckResponse_NOT_SERVING] > 0 || time.Now().After(deadline) {
			break
		}
	}
	if seen[healthpb.HealthCheckResponse_SERVING] == 0 || seen[healthpb.HealthCheckResponse_NOT_SERVING] == 0 {
		t.Errorf("RPCs per backend = %v, want both backends (first on :%d, second on :%d) reached", seen, first, second)
	}

	e2e.WriteFileAtomic(t, filepath.Join(dir, "routes.yaml"), secondSubsetYAML())
	// Round robin alone sends every other RPC to the second: wait for a run
	// of them that the first backend would have broken.
	e2e.Eventually(t, "RPCs to go to the second instance's subset", 10*time.Second, func() bool {
		return countBackends(t, cc, 6)[healthpb.HealthCheckResponse_SERVING] == 0
	})
	if seen := countBackends(t, cc, 20); seen[healthpb.HealthCheckResponse_SERVING] != 0 {
		t.Errorf("RPCs per backend with the subset route = %v, want the second (NOT_SERVING) alone", seen)
	}
}

// countBackends makes n RPCs on cc and counts them by the backend's status.
func countBackends(t *testing.T, cc *grpc.ClientConn, n int) map[healthpb.HealthCheckResponse_ServingStatus]int {
	t.Helper()
	seen := map[healthpb.HealthCheckResponse_ServingStatus]int{}
	for i := 0; i < n; i++ {
		got, err := e2e.Which(cc)
		if err != nil {
			t.Fatalf("RPC %d: %v", i, err)
		}
		seen[got]++
	}
	return seen
}
