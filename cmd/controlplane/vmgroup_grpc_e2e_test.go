package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/librarymesh/controlplane/internal/e2e"
)

const vmEchoTarget = "vmecho.test.svc.cluster.local:7070"

// grpcGroupMesh is a WorkloadGroup of gRPC VMs whose readiness probe is an
// HTTP health endpoint next to the gRPC port, and the GRPC service it backs.
const grpcGroupMesh = `apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: vmecho, namespace: test}
spec:
  metadata: {labels: {app: vmecho}}
  template: {serviceAccount: vmecho, ports: {grpc: %d}}
  probe: {periodSeconds: 1, failureThreshold: 2, httpGet: {port: %d, path: /healthz}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vmecho, namespace: test}
spec:
  hosts: [vmecho.test.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 7070, name: grpc, protocol: GRPC}]
  workloadSelector: {labels: {app: vmecho}}
`

// TestVMGroupProbeStopsProxylessClient: two VMs of a group (127.0.0.2 and
// 127.0.0.3) serve gRPC, and a proxyless grpc-go xDS client spreads its
// RPCs over both. Stopping the first VM's HTTP health endpoint (its gRPC
// server keeps running) makes its agent's probe fail; within period x
// threshold plus a push the client sends every RPC to the second VM, none
// failing; with the health endpoint back the client uses both again.
func TestVMGroupProbeStopsProxylessClient(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	root := t.TempDir()
	cfgDir, dataDir, bundleDir := filepath.Join(root, "config"), filepath.Join(root, "data"), filepath.Join(root, "bundle")
	grpcA := grpcBackendOn(t, "127.0.0.2", 0, healthpb.HealthCheckResponse_SERVING)
	grpcPort := grpcA.Addr().(*net.TCPAddr).Port
	grpcBackendOn(t, "127.0.0.3", grpcPort, healthpb.HealthCheckResponse_NOT_SERVING)
	stopProbeA, probePort := httpHealthOn(t, "127.0.0.2", 0)
	httpHealthOn(t, "127.0.0.3", probePort)
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "vmecho.yaml"), []byte(fmt.Sprintf(grpcGroupMesh, grpcPort, probePort)), 0o644); err != nil {
		t.Fatal(err)
	}
	secureAddr := e2e.FreeLoopbackAddr(t)
	srv := e2e.Serve(t, "--config-dir", cfgDir, "--data-dir", dataDir, "--secure-grpc-addr", secureAddr,
		"--auto-register-grace-period", groupGrace.String(), "--debounce", "20ms")
	runCP(t, "vm", "bundle", "--group", "test/vmecho", "--config-dir", cfgDir, "--address", secureAddr,
		"-o", bundleDir, "--data-dir", dataDir)
	startGroupAgent(t, root, bundleDir, "127.0.0.2", "vm-a")
	startGroupAgent(t, root, bundleDir, "127.0.0.3", "vm-b")

	cc := e2e.ProxylessClient(t, srv.GRPCAddr, grpcNode, "test", vmEchoTarget)
	const (
		onA = healthpb.HealthCheckResponse_SERVING
		onB = healthpb.HealthCheckResponse_NOT_SERVING
	)
	e2e.Eventually(t, "RPCs to reach both VMs", 15*time.Second, func() bool {
		seen := countBackends(t, cc, 10)
		return seen[onA] > 0 && seen[onB] > 0
	})

	stopProbeA()
	stopped := time.Now()
	e2e.Eventually(t, "RPCs to stop going to the VM whose probe fails", 10*time.Second, func() bool {
		return countBackends(t, cc, 6)[onA] == 0
	})
	took := time.Since(stopped)
	t.Logf("the grpc-go client stopped sending to 127.0.0.2 %s after its health endpoint stopped (period 1s x threshold 2)", took.Round(10*time.Millisecond))
	if took > 3*time.Second { // period x threshold, a push, the client's update
		t.Errorf("the client still used the unhealthy VM %s after its probe began failing, want within 3 s", took)
	}
	if seen := countBackends(t, cc, 20); seen[onA] != 0 {
		t.Errorf("RPCs per backend while 127.0.0.2 is unhealthy = %v, want all on 127.0.0.3", seen)
	}
	// The gRPC server of the unhealthy VM is up: the client left it because of EDS.
	if got, err := directWhich(t, grpcA.Addr().String()); err != nil || got != onA {
		t.Errorf("direct RPC to 127.0.0.2: %v %v, want it still serving", got, err)
	}

	httpHealthOn(t, "127.0.0.2", probePort)
	e2e.Eventually(t, "RPCs to reach the VM again once its probe passes", 10*time.Second, func() bool {
		seen := countBackends(t, cc, 10)
		return seen[onA] > 0 && seen[onB] > 0
	})
}

// grpcBackendOn serves gRPC health on ip:port (0: any) reporting st for
// e2e.WhichService until the test ends.
func grpcBackendOn(t *testing.T, ip string, port int, st healthpb.HealthCheckResponse_ServingStatus) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(port)))
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	h := health.NewServer()
	h.SetServingStatus(e2e.WhichService, st)
	healthpb.RegisterHealthServer(g, h)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return lis
}

// httpHealthOn serves 200 on /healthz at ip:port (0: any) and returns the
// function that stops it, and the port.
func httpHealthOn(t *testing.T, ip string, port int) (stop func(), boundPort int) {
	t.Helper()
	lis, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(port)))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	s := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := s.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("health endpoint on %s: %v", lis.Addr(), err)
		}
	}()
	stop = func() {
		_ = s.Close()
		_ = lis.Close()
	}
	t.Cleanup(stop)
	return stop, lis.Addr().(*net.TCPAddr).Port
}

// directWhich makes one health RPC straight to addr, without xDS.
func directWhich(t *testing.T, addr string) (healthpb.HealthCheckResponse_ServingStatus, error) {
	t.Helper()
	cc := e2e.Dial(t, addr, insecure.NewCredentials())
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: e2e.WhichService})
	return resp.GetStatus(), err
}
