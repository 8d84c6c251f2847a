package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/librarymesh/controlplane/internal/e2e"
)

// echoEntryWithRule is the echo host with one endpoint per port on
// 127.0.0.1, and a DestinationRule for it with the given trafficPolicy
// (YAML indented under trafficPolicy).
func echoEntryWithRule(ports []int, policy string) string {
	var eps []echoEndpoint
	for i, p := range ports {
		eps = append(eps, echoEndpoint{p, fmt.Sprintf("app: echo, instance: i%d", i)})
	}
	return echoEntry(eps...) + fmt.Sprintf(`---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: test}
spec:
  host: %s
  trafficPolicy:
%s`, echoHost, policy)
}

// whichWithHeader is e2e.Which with a request header.
func whichWithHeader(cc *grpc.ClientConn, key, value string) (healthpb.HealthCheckResponse_ServingStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, key, value)
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: e2e.WhichService}, grpc.WaitForReady(true))
	return resp.GetStatus(), err
}

// TestConsistentHashOnHeader: a DestinationRule's consistentHash on a
// header makes grpc-go's xDS client (ring hash, route hash policy) send
// every RPC with one header value to one backend, while different values
// spread over the backends.
func TestConsistentHashOnHeader(t *testing.T) {
	statuses := []healthpb.HealthCheckResponse_ServingStatus{
		healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING, healthpb.HealthCheckResponse_SERVICE_UNKNOWN,
	}
	var ports []int
	for _, st := range statuses {
		ports = append(ports, e2e.HealthBackend(t, st))
	}
	dir := t.TempDir()
	e2e.WriteFileAtomic(t, filepath.Join(dir, "echo.yaml"), echoEntryWithRule(ports,
		"    loadBalancer:\n      consistentHash:\n        httpHeaderName: x-user\n        ringHash: {minimumRingSize: 1024}\n"))
	srv := e2e.Serve(t, "--config-dir", dir, "--debounce", "20ms")
	cc := e2e.ProxylessClient(t, srv.GRPCAddr, grpcNode, "test", echoTarget)

	backends := map[healthpb.HealthCheckResponse_ServingStatus]int{}
	for u := 0; u < 40; u++ {
		user := fmt.Sprintf("user-%d", u)
		first, err := whichWithHeader(cc, "x-user", user)
		if err != nil {
			t.Fatalf("RPC for %s: %v", user, err)
		}
		backends[first]++
		for i := 0; i < 10; i++ {
			got, err := whichWithHeader(cc, "x-user", user)
			if err != nil {
				t.Fatalf("RPC %d for %s: %v", i, user, err)
			}
			if got != first {
				t.Fatalf("RPC %d for %s reached %v, the first reached %v: the hash did not keep the user on one backend", i, user, got, first)
			}
		}
	}
	if len(backends) < 2 {
		t.Errorf("users per backend = %v: 40 header values all landed on one backend, want them spread", backends)
	}
}

// failingBackend is a gRPC server on loopback whose every RPC of the
// "which" health check fails (NotFound). It returns the port.
func failingBackend(t *testing.T) int {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	healthpb.RegisterHealthServer(g, health.NewServer()) // knows no "which": NotFound
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return lis.Addr().(*net.TCPAddr).Port
}

// TestOutlierDetectionEjectsFailingBackend: with a DestinationRule's
// outlierDetection (failure percentage), grpc-go's xDS client ejects a
// backend whose RPCs keep failing, so after a while every RPC succeeds on
// the healthy ones. Without ejection a third of the RPCs would fail forever.
func TestOutlierDetectionEjectsFailingBackend(t *testing.T) {
	ports := []int{
		e2e.HealthBackend(t, healthpb.HealthCheckResponse_SERVING),
		e2e.HealthBackend(t, healthpb.HealthCheckResponse_SERVING),
		failingBackend(t),
	}
	dir := t.TempDir()
	e2e.WriteFileAtomic(t, filepath.Join(dir, "echo.yaml"), echoEntryWithRule(ports,
		"    outlierDetection:\n      failurePercentageThreshold: 50\n      interval: 1s\n      baseEjectionTime: 10m\n      maxEjectionPercent: 50\n"))
	srv := e2e.Serve(t, "--config-dir", dir, "--debounce", "20ms")
	cc := e2e.ProxylessClient(t, srv.GRPCAddr, grpcNode, "test", echoTarget)

	failures, calls := 0, 0
	streak := 0 // RPCs in a row that succeeded
	ok := e2e.Poll(30*time.Second, 5*time.Millisecond, func() bool {
		calls++
		if _, err := e2e.Which(cc); err != nil {
			failures++
			streak = 0
			return false
		}
		streak++
		return streak >= 200
	})
	if failures == 0 {
		t.Fatalf("no RPC failed in %d calls: the failing backend on :%d was never reached", calls, ports[2])
	}
	if !ok {
		t.Fatalf("after %d calls (%d failed) RPCs still fail: the failing backend was not ejected", calls, failures)
	}
	t.Logf("failing backend ejected after %d calls (%d failed)", calls-streak, failures)
}

// blockingHealth answers Check only once release is closed, and reports
// each call on started.
type blockingHealth struct {
	healthpb.UnimplementedHealthServer
	started chan struct{}
	release chan struct{}
}

func (h *blockingHealth) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	h.started <- struct{}{}
	select {
	case <-h.release:
	case <-ctx.Done():
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// TestConnectionPoolLimitsRequests: a DestinationRule's connectionPool
// http2MaxRequests becomes the cluster's circuit breaker, which grpc-go's
// xDS client enforces: with one RPC in flight and a limit of 1, the next
// fails at once (Unavailable), and once the first ends RPCs go through.
func TestConnectionPoolLimitsRequests(t *testing.T) {
	h := &blockingHealth{started: make(chan struct{}, 10), release: make(chan struct{})}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	healthpb.RegisterHealthServer(g, h)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	dir := t.TempDir()
	e2e.WriteFileAtomic(t, filepath.Join(dir, "echo.yaml"), echoEntryWithRule([]int{lis.Addr().(*net.TCPAddr).Port},
		"    connectionPool:\n      http: {http2MaxRequests: 1}\n"))
	srv := e2e.Serve(t, "--config-dir", dir, "--debounce", "20ms")
	cc := e2e.ProxylessClient(t, srv.GRPCAddr, grpcNode, "test", echoTarget)

	first := make(chan error, 1)
	go func() {
		_, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		first <- err
	}()
	select {
	case <-h.started:
	case <-time.After(30 * time.Second):
		t.Fatal("the first RPC never reached the backend")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "max requests") {
		t.Errorf("second RPC while one is in flight: %v, want Unavailable (max requests exceeded)", err)
	}
	close(h.release)
	if err := <-first; err != nil {
		t.Fatalf("first RPC: %v", err)
	}
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("RPC after the first ended: %v", err)
	}
}

// subsetEntry is the echo host with two endpoints on 127.0.0.1 labelled
// version first and second, a DestinationRule with subsets v1 and v2 by
// version, and a VirtualService sending everything to v2.
func subsetEntry(port1, port2 int, version1, version2 string) string {
	return echoEntry(echoEndpoint{port1, "version: " + version1}, echoEndpoint{port2, "version: " + version2}) + fmt.Sprintf(`---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: test}
spec:
  host: %s
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: test}
spec:
  hosts: [echo]
  http:
  - route: [{destination: {host: echo, subset: v2}}]
`, echoHost)
}

// TestSubsetFollowsEndpointLabels: a subset's EDS follows the endpoints'
// labels. RPCs routed to subset v2 reach the backend labelled v2; when the
// labels swap (an endpoint-only change), they reach the other one.
func TestSubsetFollowsEndpointLabels(t *testing.T) {
	a := e2e.HealthBackend(t, healthpb.HealthCheckResponse_SERVING)
	b := e2e.HealthBackend(t, healthpb.HealthCheckResponse_NOT_SERVING)
	dir := t.TempDir()
	file := filepath.Join(dir, "echo.yaml")
	e2e.WriteFileAtomic(t, file, subsetEntry(a, b, "v1", "v2"))
	srv := e2e.Serve(t, "--config-dir", dir, "--debounce", "20ms")
	cc := e2e.ProxylessClient(t, srv.GRPCAddr, grpcNode, "test", echoTarget)
	for i := 0; i < 20; i++ {
		if got, err := e2e.Which(cc); err != nil || got != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("RPC %d to subset v2: %v, %v; want the backend labelled v2 (:%d)", i, got, err, b)
		}
	}
	e2e.WriteFileAtomic(t, file, subsetEntry(a, b, "v2", "v1"))
	e2e.Eventually(t, "subset v2 to follow the labels", 30*time.Second, func() bool {
		got, err := e2e.Which(cc)
		return err == nil && got == healthpb.HealthCheckResponse_SERVING
	})
	for i := 0; i < 20; i++ {
		if got, err := e2e.Which(cc); err != nil || got != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("RPC %d after the swap: %v, %v; want only the backend now labelled v2 (:%d)", i, got, err, a)
		}
	}
}
