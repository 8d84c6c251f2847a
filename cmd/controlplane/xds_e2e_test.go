package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/librarymesh/controlplane/internal/e2e"
)

const (
	echoHost   = "echo.test.svc.cluster.local"
	echoTarget = echoHost + ":7070"
	grpcNode   = "sidecar~127.0.0.1~client-1.test~test.svc.cluster.local"
)

func echoServiceEntry(port int) string {
	return echoEntry(echoEndpoint{port, "app: echo"})
}

// echoEndpoint is one endpoint of the echo host on 127.0.0.1: its gRPC
// port and its labels (YAML flow mapping content, e.g. "version: v1").
type echoEndpoint struct {
	port   int
	labels string
}

// echoEntry is the echo ServiceEntry (port 7070, GRPC, STATIC) with the
// endpoints, every one on 127.0.0.1.
func echoEntry(eps ...echoEndpoint) string {
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
		fmt.Fprintf(&b, "  - {address: 127.0.0.1, ports: {grpc: %d}, labels: {%s}}\n", ep.port, ep.labels)
	}
	return b.String()
}

// TestProxylessClientFollowsYAML is the foundation's end-to-end story: a
// real grpc-go xDS client follows edits of the YAML folder without restarts,
// survives broken files and a config it rejects.
func TestProxylessClientFollowsYAML(t *testing.T) {
	first := e2e.HealthBackend(t, healthpb.HealthCheckResponse_SERVING)
	second := e2e.HealthBackend(t, healthpb.HealthCheckResponse_NOT_SERVING)
	dir := t.TempDir()
	echoFile := filepath.Join(dir, "echo.yaml")
	e2e.WriteFileAtomic(t, echoFile, echoServiceEntry(first))
	srv := e2e.Serve(t, "--config-dir", dir, "--debounce", "20ms")
	cc := e2e.ProxylessClient(t, srv.GRPCAddr, grpcNode, "test", echoTarget)

	if got, err := e2e.Which(cc); err != nil || got != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first RPC: status %v, err %v; want the first backend", got, err)
	}
	onSecond := func() bool {
		got, err := e2e.Which(cc)
		return err == nil && got == healthpb.HealthCheckResponse_NOT_SERVING
	}

	// Editing the YAML moves the RPCs, with no restart.
	e2e.WriteFileAtomic(t, echoFile, echoServiceEntry(second))
	e2e.Eventually(t, "RPCs to move to the second backend", 10*time.Second, onSecond)

	// A broken file is reported with path and field; nothing else changes.
	broken := filepath.Join(dir, "broken.yaml")
	e2e.WriteFileAtomic(t, broken, "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: bad, namespace: test}\nspec:\n  hosts: [bad.test.svc.cluster.local]\n  resolution: STATIC\n  ports:\n  - {number: 70000, name: tcp, protocol: TCP}\n")
	srv.WaitLog(t, broken, 10*time.Second)
	problems := e2e.HTTPGet(t, "http://"+srv.HTTPAddr+"/debug/problems")
	if !strings.Contains(problems, broken) || !strings.Contains(problems, "ports[0].number") {
		t.Errorf("/debug/problems does not name the file and field:\n%s", problems)
	}
	// Breaking the echo file itself keeps its last good version.
	e2e.WriteFileAtomic(t, echoFile, strings.Replace(echoServiceEntry(first), "resolution: STATIC", "resolution: [not, a, resolution]", 1))
	srv.WaitLog(t, echoFile+":", 10*time.Second)
	for i := 0; i < 5; i++ {
		if !onSecond() {
			t.Fatalf("RPC %d after broken files did not reach the second backend", i)
		}
	}

	// A config the client rejects (mTLS with no certificate provider in its
	// bootstrap) is NACKed, not resent, and the last good config keeps working.
	e2e.WriteFileAtomic(t, echoFile, echoServiceEntry(second))
	e2e.WriteFileAtomic(t, filepath.Join(dir, "mtls.yaml"), "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: echo-mtls, namespace: test}\nspec:\n  host: "+echoHost+"\n  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}\n")
	e2e.Eventually(t, "the client to NACK clusters", 10*time.Second, func() bool {
		return e2e.Metric(t, srv.HTTPAddr, `controlplane_xds_nacks_total{type="cds"}`) >= 1
	})
	pushes := e2e.Metric(t, srv.HTTPAddr, `controlplane_xds_pushes_total{type="cds"}`)
	nacks := e2e.Metric(t, srv.HTTPAddr, `controlplane_xds_nacks_total{type="cds"}`)
	time.Sleep(time.Second) // a resend loop sends thousands in a second
	if got := e2e.Metric(t, srv.HTTPAddr, `controlplane_xds_pushes_total{type="cds"}`) - pushes; got > 1 {
		t.Errorf("rejected CDS resent %v times in 1s, want at most 1", got)
	}
	if got := e2e.Metric(t, srv.HTTPAddr, `controlplane_xds_nacks_total{type="cds"}`) - nacks; got > 1 {
		t.Errorf("client NACKed %v more times in 1s, want at most 1", got)
	}
	if !onSecond() {
		t.Error("after the NACK the client lost its last good config")
	}
	// Removing the bad rule gives the client a config it accepts again.
	if err := os.Remove(filepath.Join(dir, "mtls.yaml")); err != nil {
		t.Fatal(err)
	}
	e2e.WriteFileAtomic(t, echoFile, echoServiceEntry(first))
	e2e.Eventually(t, "RPCs to move back to the first backend", 10*time.Second, func() bool {
		got, err := e2e.Which(cc)
		return err == nil && got == healthpb.HealthCheckResponse_SERVING
	})
}

// TestDeltaStream checks the delta protocol end to end: the pod sidecar gets
// its clusters, and after an edit only what changed.
func TestDeltaStream(t *testing.T) {
	dir := t.TempDir()
	echoFile := filepath.Join(dir, "echo.yaml")
	e2e.WriteFileAtomic(t, echoFile, echoServiceEntry(7001))
	lib, err := os.ReadFile(filepath.Join(e2e.ModuleRoot(), "examples", "library", "inventory.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	e2e.WriteFileAtomic(t, filepath.Join(dir, "inventory.yaml"), string(lib))
	srv := e2e.Serve(t, "--config-dir", dir, "--debounce", "20ms")

	conn, err := grpc.NewClient(srv.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(r *discoveryv3.DeltaDiscoveryRequest) {
		if err := stream.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: podNode}, TypeUrl: resourcev3.ClusterType})
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	for _, r := range resp.GetResources() {
		names[r.GetName()] = r.GetVersion()
	}
	for _, want := range []string{"outbound|7070||" + echoHost, "outbound|8080||inventory.default.svc.cluster.local", "PassthroughCluster"} {
		if _, ok := names[want]; !ok {
			t.Errorf("first delta response lacks %s; got %v", want, names)
		}
	}
	send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: resp.GetNonce()})

	// Changing the echo port changes only echo's cluster... and adding a
	// service adds exactly one.
	e2e.WriteFileAtomic(t, filepath.Join(dir, "extra.yaml"), strings.ReplaceAll(echoServiceEntry(7002), "echo", "extra"))
	resp, err = stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range resp.GetResources() {
		got = append(got, r.GetName())
	}
	if len(got) != 1 || got[0] != "outbound|7070||extra.test.svc.cluster.local" {
		t.Errorf("delta after adding a service sent %v, want only the new cluster", got)
	}
	send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: resp.GetNonce()})

	if err := os.Remove(filepath.Join(dir, "extra.yaml")); err != nil {
		t.Fatal(err)
	}
	resp, err = stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetResources()) != 0 || len(resp.GetRemovedResources()) != 1 || resp.GetRemovedResources()[0] != "outbound|7070||extra.test.svc.cluster.local" {
		t.Errorf("delta after removing a service: resources %d, removed %v; want only the removal", len(resp.GetResources()), resp.GetRemovedResources())
	}
}
