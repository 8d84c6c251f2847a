package main

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/librarymesh/controlplane/internal/e2e"
)

// vsMesh is the echo host with three backends on 127.0.0.1 (v1, v2 and a
// flaky one), a DestinationRule with a subset for each, and a
// VirtualService: x-canary: yes goes to v2, x-fault: abort is aborted with
// ABORTED, x-retry goes to the flaky backend with 2 retries on
// unavailable, and the rest is split 80/20 between v1 and v2.
func vsMesh(v1, v2, flaky int) string {
	return echoEntry(echoEndpoint{v1, "app: echo, version: v1"}, echoEndpoint{v2, "app: echo, version: v2"},
		echoEndpoint{flaky, "app: echo, version: flaky"}) + `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: test}
spec:
  host: echo
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: flaky, labels: {version: flaky}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: test}
spec:
  hosts: [echo]
  http:
  - name: canary
    match: [{headers: {x-canary: {exact: "yes"}}}]
    route: [{destination: {host: echo, subset: v2}}]
  - name: fault
    match: [{headers: {x-fault: {exact: abort}}}]
    fault: {abort: {grpcStatus: ABORTED, percentage: {value: 100}}}
    route: [{destination: {host: echo, subset: v1}}]
  - name: retry
    match: [{headers: {x-retry: {}}}]
    retries: {attempts: 2, retryOn: unavailable}
    route: [{destination: {host: echo, subset: flaky}}]
  - name: split
    route:
    - {destination: {host: echo, subset: v1}, weight: 80}
    - {destination: {host: echo, subset: v2}, weight: 20}
`
}

// flakyHealth fails its first Check with Unavailable and answers SERVING
// after that, counting every attempt.
type flakyHealth struct {
	healthpb.UnimplementedHealthServer
	attempts atomic.Int32
}

func (f *flakyHealth) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if f.attempts.Add(1) == 1 {
		return nil, status.Error(codes.Unavailable, "first attempt fails")
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// flakyBackend serves f on loopback and returns the port.
func flakyBackend(t *testing.T, f *flakyHealth) int {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	healthpb.RegisterHealthServer(g, f)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return lis.Addr().(*net.TCPAddr).Port
}

// TestVirtualServiceRoutes drives grpc-go's xDS client with a
// VirtualService from a YAML file through serve: the weight split is
// measured over 1000 RPCs, the header match reaches its subset, the fault
// abort returns its status, a change of the file reroutes without a
// restart, and the retry policy retries a backend that fails once.
func TestVirtualServiceRoutes(t *testing.T) {
	v1 := e2e.HealthBackend(t, healthpb.HealthCheckResponse_SERVING)
	v2 := e2e.HealthBackend(t, healthpb.HealthCheckResponse_NOT_SERVING)
	flaky := &flakyHealth{}
	flakyPort := flakyBackend(t, flaky)
	dir := t.TempDir()
	e2e.WriteFileAtomic(t, filepath.Join(dir, "echo.yaml"), vsMesh(v1, v2, flakyPort))
	srv := e2e.Serve(t, "--config-dir", dir, "--debounce", "20ms")
	cc := e2e.ProxylessClient(t, srv.GRPCAddr, grpcNode, "test", echoTarget)

	t.Run("weight split 80/20", func(t *testing.T) {
		counts := map[healthpb.HealthCheckResponse_ServingStatus]int{}
		for i := 0; i < 1000; i++ {
			st, err := e2e.Which(cc)
			if err != nil {
				t.Fatalf("RPC %d: %v", i, err)
			}
			counts[st]++
		}
		v1n, v2n := counts[healthpb.HealthCheckResponse_SERVING], counts[healthpb.HealthCheckResponse_NOT_SERVING]
		t.Logf("1000 RPCs: v1 %d, v2 %d", v1n, v2n)
		// Binomial(1000, 0.8) has a standard deviation of 12.6: ±50 is 4 of them.
		if v1n+v2n != 1000 || v1n < 750 || v1n > 850 {
			t.Errorf("v1 got %d and v2 %d of 1000 RPCs, want 800±50 and 200±50", v1n, v2n)
		}
	})
	t.Run("header match", func(t *testing.T) {
		for i := 0; i < 50; i++ {
			st, err := whichWithHeader(cc, "x-canary", "yes")
			if err != nil || st != healthpb.HealthCheckResponse_NOT_SERVING {
				t.Fatalf("RPC %d with x-canary: yes reached %v (%v), want subset v2 (NOT_SERVING)", i, st, err)
			}
		}
	})
	t.Run("fault abort", func(t *testing.T) {
		_, err := whichWithHeader(cc, "x-fault", "abort")
		if status.Code(err) != codes.Aborted {
			t.Fatalf("RPC with x-fault: abort returned %v, want the fault's ABORTED", err)
		}
	})
	t.Run("file change", func(t *testing.T) {
		// Everything to v2: the new routes apply without a restart.
		mesh := strings.Replace(vsMesh(v1, v2, flakyPort), "weight: 80}", "weight: 0}", 1)
		e2e.WriteFileAtomic(t, filepath.Join(dir, "echo.yaml"), strings.Replace(mesh, "weight: 20}", "weight: 100}", 1))
		onlyReaches(t, "after the VirtualService sent everything to v2", cc, healthpb.HealthCheckResponse_NOT_SERVING)
	})
	t.Run("retry", func(t *testing.T) {
		st, err := whichWithHeader(cc, "x-retry", "1")
		if err != nil || st != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("RPC with x-retry returned %v, %v; want SERVING after a retry", st, err)
		}
		if n := flaky.attempts.Load(); n != 2 {
			t.Errorf("the flaky backend saw %d attempts, want 2 (one failure, one retry)", n)
		}
	})
}

// onlyReaches waits until 200 RPCs in a row reach the backend reporting want.
func onlyReaches(t *testing.T, what string, cc *grpc.ClientConn, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	streak := 0
	if !e2e.Poll(30*time.Second, time.Millisecond, func() bool {
		if st, err := e2e.Which(cc); err == nil && st == want {
			streak++
		} else {
			streak = 0
		}
		return streak >= 200
	}) {
		t.Fatalf("%s: RPCs still reach other backends than %v after 30s", what, want)
	}
}
