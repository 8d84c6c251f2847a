package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/librarymesh/controlplane/internal/e2e"
	"github.com/librarymesh/controlplane/internal/kubetest"
)

// The NACKing sidecar, and the proxy IDs istioctl shows (Istio's POD.NAMESPACE).
const (
	nackerNode = "sidecar~127.0.0.9~nacker-1.test~test.svc.cluster.local"
	grpcID     = "client-1.test"
	nackerID   = "nacker-1.test"
)

// Istio's own istioctl, built from the same istio.io/istio as pilot-agent,
// talks to serve over 15010 as it talks to istiod: proxy-status lists every
// connected proxy with its sync state (a grpc-go client that ACKs, a
// sidecar that NACKs with the NACK's details), internal-debug reads the
// debug views, and a debug client asking for a type no one serves gets an
// answer at once instead of silence.
func TestIstioctlProxyStatus(t *testing.T) {
	istioctl := e2e.Tool(t, "istioctl")
	e := kubetest.New(t) // istioctl builds a Kubernetes client even with --xds-address
	dir := t.TempDir()
	e2e.WriteFileAtomic(t, filepath.Join(dir, "echo.yaml"), echoServiceEntry(e2e.HealthBackend(t, healthpb.HealthCheckResponse_SERVING)))
	srv := e2e.Serve(t, "--config-dir", dir)
	cc := e2e.ProxylessClient(t, srv.GRPCAddr, grpcNode, "test", echoTarget)
	if _, err := e2e.Which(cc); err != nil {
		t.Fatalf("grpc-go client RPC: %v", err)
	}
	nacker, resp := e2e.ADSFirst(t, srv.GRPCAddr, &corev3.Node{Id: nackerNode}, resourcev3.ClusterType, 20*time.Second)
	if err := nacker.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: resp.GetNonce(),
		ErrorDetail: &status.Status{Code: 3, Message: "nacker rejects every cluster"}}); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		all := append([]string{"--kubeconfig", e.KubeconfigPath}, args...)
		all = append(all, "--xds-address", srv.GRPCAddr, "--plaintext")
		out, err := exec.CommandContext(ctx, istioctl, all...).CombinedOutput()
		if err != nil {
			t.Fatalf("istioctl %s: %v\n%s\nserver log:\n%s", strings.Join(args, " "), err, out, srv.Logs())
		}
		t.Logf("istioctl %s:\n%s", strings.Join(args, " "), out)
		return string(out)
	}
	e2e.Eventually(t, "the NACK to be recorded", 10*time.Second, func() bool {
		return e2e.Metric(t, srv.HTTPAddr, `controlplane_xds_nacks_total{type="cds"}`) >= 1
	})

	table := run("proxy-status", "--verbosity", "1")
	for _, want := range []string{grpcID, nackerID, "SYNCED", "ERROR"} {
		if !strings.Contains(table, want) {
			t.Errorf("proxy-status does not show %q", want)
		}
	}
	if row := lineWith(table, grpcID); strings.Contains(row, "ERROR") || !strings.Contains(row, "SYNCED") {
		t.Errorf("the ACKing grpc-go client's row is not SYNCED: %s", row)
	}
	if row := lineWith(table, nackerID); !strings.Contains(row, "ERROR") {
		t.Errorf("the NACKing sidecar's row shows no ERROR: %s", row)
	}
	if js := run("proxy-status", "-o", "json"); !strings.Contains(js, "nacker rejects every cluster") {
		t.Errorf("proxy-status -o json lacks the NACK's details")
	}
	if syncz := run("x", "internal-debug", "syncz"); !strings.Contains(syncz, grpcNode) || !strings.Contains(syncz, "nacker rejects every cluster") {
		t.Errorf("internal-debug syncz lacks a proxy or the NACK")
	}
	if dump := run("x", "internal-debug", "config_dump?proxyID="+grpcNode); !strings.Contains(dump, "outbound|7070||"+echoHost) {
		t.Errorf("internal-debug config_dump lacks the client's echo cluster")
	}
}
