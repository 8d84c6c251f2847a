package main

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/xds"

	"github.com/librarymesh/controlplane/internal/e2e"
)

// The two backends of the locality tests tell themselves apart by the
// status they report for e2e.WhichService.
const (
	localBackend  = healthpb.HealthCheckResponse_SERVING     // region1/zone1
	remoteBackend = healthpb.HealthCheckResponse_NOT_SERVING // region2/zone2
)

// localityEndpoint is an endpoint of the echo host on 127.0.0.1.
type localityEndpoint struct {
	locality string // region/zone
	port     int
}

// localityEntry is the echo host with the endpoints, and a DestinationRule
// with the policy (YAML indented under trafficPolicy).
func localityEntry(eps []localityEndpoint, policy string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: test}
spec:
  hosts: [%s]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 7070, name: grpc, protocol: GRPC}
  endpoints:
`, echoHost)
	for _, ep := range eps {
		fmt.Fprintf(&b, "  - {address: 127.0.0.1, ports: {grpc: %d}, labels: {app: echo}, locality: %s}\n", ep.port, ep.locality)
	}
	fmt.Fprintf(&b, `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: test}
spec:
  host: %s
  trafficPolicy:
%s`, echoHost, policy)
	return b.String()
}

// healthBackendAt is e2e.HealthBackend on a given loopback address (":0"
// for any port); it returns the port and a func that stops the server.
func healthBackendAt(t *testing.T, addr string, st healthpb.HealthCheckResponse_ServingStatus) (int, func()) {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	h := health.NewServer()
	h.SetServingStatus(e2e.WhichService, st)
	healthpb.RegisterHealthServer(g, h)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return lis.Addr().(*net.TCPAddr).Port, g.Stop
}

// clientIn dials the echo host through grpc-go's xDS resolver as a
// proxyless node whose bootstrap puts it in locality region/zone. The node
// IP is not a registry workload, so the node's locality is the one used.
func clientIn(t *testing.T, xdsAddr, nodeIP, region, zone string) *grpc.ClientConn {
	t.Helper()
	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": "sidecar~%s~client-%s.test~test.svc.cluster.local", "locality": {"region": %q, "zone": %q},
			"metadata": {"GENERATOR": "grpc", "NAMESPACE": "test"}}
	}`, xdsAddr, nodeIP, zone, region, zone)
	rb, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatalf("xDS resolver: %v", err)
	}
	cc, err := grpc.NewClient("xds:///"+echoTarget, grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestLocalityFailover: with outlier detection, Istio's locality failover
// puts each client's own locality first. A grpc-go client in region1/zone1
// sends every RPC to the region1/zone1 backend while a client in
// region2/zone2 (same control plane, same rule) sends every RPC to its own,
// also after an endpoints-only change adds a second region1/zone1 backend;
// when the region1 backends stop, the first client fails over to region2,
// and when one is back, returns to it.
func TestLocalityFailover(t *testing.T) {
	localPort, stopLocal := healthBackendAt(t, "127.0.0.1:0", localBackend)
	remotePort, _ := healthBackendAt(t, "127.0.0.1:0", remoteBackend)
	eps := []localityEndpoint{{"region1/zone1", localPort}, {"region2/zone2", remotePort}}
	policy := "    outlierDetection: {consecutive5xxErrors: 5, interval: 1s, baseEjectionTime: 30s}\n"
	dir := t.TempDir()
	e2e.WriteFileAtomic(t, filepath.Join(dir, "echo.yaml"), localityEntry(eps, policy))
	srv := e2e.Serve(t, "--config-dir", dir, "--debounce", "20ms")
	cc1 := clientIn(t, srv.GRPCAddr, "127.0.0.2", "region1", "zone1")
	cc2 := clientIn(t, srv.GRPCAddr, "127.0.0.3", "region2", "zone2")

	if got := countBackends(t, cc1, 200); got[localBackend] != 200 {
		t.Fatalf("client in region1/zone1 reached %v in 200 RPCs, want all on its own locality's backend", got)
	}
	if got := countBackends(t, cc2, 200); got[remoteBackend] != 200 {
		t.Fatalf("client in region2/zone2 reached %v in 200 RPCs, want all on its own locality's backend", got)
	}

	const secondLocal = healthpb.HealthCheckResponse_SERVICE_UNKNOWN
	secondPort, stopSecond := healthBackendAt(t, "127.0.0.1:0", secondLocal)
	e2e.WriteFileAtomic(t, filepath.Join(dir, "echo.yaml"), localityEntry(append(eps, localityEndpoint{"region1/zone1", secondPort}), policy))
	e2e.Eventually(t, "the second region1/zone1 backend to get RPCs", 30*time.Second, func() bool {
		st, err := e2e.Which(cc1)
		return err == nil && st == secondLocal
	})
	if got := countBackends(t, cc1, 200); got[remoteBackend] != 0 {
		t.Fatalf("client in region1/zone1 reached %v after the change, want region1/zone1 backends only", got)
	}
	if got := countBackends(t, cc2, 200); got[remoteBackend] != 200 {
		t.Fatalf("client in region2/zone2 reached %v after the change, want all on its own locality's backend", got)
	}

	start := time.Now()
	stopSecond()
	stopLocal()
	onlyReaches(t, "after the region1/zone1 backend stopped", cc1, remoteBackend)
	t.Logf("failed over to region2/zone2 in %v", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	healthBackendAt(t, fmt.Sprintf("127.0.0.1:%d", localPort), localBackend)
	onlyReaches(t, "after the region1/zone1 backend came back", cc1, localBackend)
	t.Logf("back on region1/zone1 in %v", time.Since(start).Round(time.Millisecond))
}

// TestLocalityDistribute: distribute from region1/zone1 sends 80% to its
// own zone and 20% to region2/zone2; grpc-go's locality weights give that
// split, measured over 1000 RPCs.
func TestLocalityDistribute(t *testing.T) {
	localPort, _ := healthBackendAt(t, "127.0.0.1:0", localBackend)
	remotePort, _ := healthBackendAt(t, "127.0.0.1:0", remoteBackend)
	dir := t.TempDir()
	e2e.WriteFileAtomic(t, filepath.Join(dir, "echo.yaml"), localityEntry(
		[]localityEndpoint{{"region1/zone1", localPort}, {"region2/zone2", remotePort}},
		"    loadBalancer:\n      localityLbSetting:\n        distribute:\n        - from: region1/zone1/*\n          to: {\"region1/zone1/*\": 80, \"region2/zone2/*\": 20}\n"))
	srv := e2e.Serve(t, "--config-dir", dir, "--debounce", "20ms")
	cc := clientIn(t, srv.GRPCAddr, "127.0.0.2", "region1", "zone1")

	countBackends(t, cc, 20) // warm up: both localities connected
	got := countBackends(t, cc, 1000)
	share := float64(got[localBackend]) / 1000
	t.Logf("1000 RPCs: %d to region1/zone1, %d to region2/zone2 (%.1f%% local, want 80%%)", got[localBackend], got[remoteBackend], 100*share)
	if share < 0.76 || share > 0.84 {
		t.Errorf("region1/zone1 got %.1f%% of 1000 RPCs, want 80%% within 4 points (%v)", 100*share, got)
	}
}

// TestLocalityCCore is the locality tests' second opinion from gRPC
// C-core (stricter than grpc-go in places): it accepts per-locality EDS
// with priorities (every RPC of a client in region1/zone1 reaches its own
// locality under failover) and the distribute weights (80/20 over 1000 RPCs).
func TestLocalityCCore(t *testing.T) {
	python := ccorePython()
	if python == "" {
		t.Skip("no python3 with grpc (apt-get install python3-grpcio): C-core's xDS client is not available")
	}
	localPort, _ := healthBackendAt(t, "127.0.0.1:0", localBackend)
	remotePort, _ := healthBackendAt(t, "127.0.0.1:0", remoteBackend)
	eps := []localityEndpoint{{"region1/zone1", localPort}, {"region2/zone2", remotePort}}
	dir := t.TempDir()
	e2e.WriteFileAtomic(t, filepath.Join(dir, "echo.yaml"), localityEntry(eps,
		"    outlierDetection: {consecutive5xxErrors: 5, interval: 1s}\n"))
	srv := e2e.Serve(t, "--config-dir", dir, "--debounce", "20ms")
	counts := map[string]int{}
	for _, w := range ccoreRPCs(t, python, ccoreLocalityBootstrap(srv.GRPCAddr), 200, "-", "-") {
		counts[w]++
	}
	if counts["SERVING"] != 200 {
		t.Fatalf("C-core client in region1/zone1 under failover: %v in 200 RPCs, want all SERVING (its own locality)", counts)
	}

	dir = t.TempDir()
	e2e.WriteFileAtomic(t, filepath.Join(dir, "echo.yaml"), localityEntry(eps,
		"    loadBalancer:\n      localityLbSetting:\n        distribute:\n        - from: region1/zone1/*\n          to: {\"region1/zone1/*\": 80, \"region2/zone2/*\": 20}\n"))
	srv = e2e.Serve(t, "--config-dir", dir, "--debounce", "20ms")
	counts = map[string]int{}
	for _, w := range ccoreRPCs(t, python, ccoreLocalityBootstrap(srv.GRPCAddr), 1000, "-", "-") {
		counts[w]++
	}
	share := float64(counts["SERVING"]) / 1000
	t.Logf("C-core, 1000 RPCs: %v (%.1f%% to region1/zone1, want 80%%)", counts, 100*share)
	if share < 0.76 || share > 0.84 || counts["SERVING"]+counts["NOT_SERVING"] != 1000 {
		t.Errorf("C-core: %v over 1000 RPCs, want 80%% SERVING (region1/zone1) within 4 points and the rest NOT_SERVING", counts)
	}
}

// ccoreLocalityBootstrap is a C-core bootstrap for a proxyless node in
// region1/zone1 served by the control plane at xdsAddr.
func ccoreLocalityBootstrap(xdsAddr string) string {
	return fmt.Sprintf(`{"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": "sidecar~127.0.0.2~client-1.test~test.svc.cluster.local", "locality": {"region": "region1", "zone": "zone1"},
			"metadata": {"GENERATOR": "grpc", "NAMESPACE": "test"}}}`, xdsAddr)
}
