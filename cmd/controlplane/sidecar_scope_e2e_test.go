package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/xds"

	"github.com/librarymesh/controlplane/internal/e2e"
	"github.com/librarymesh/controlplane/meshname"
)

const (
	scopedNode = "sidecar~10.9.0.1~client-1.shop~shop.svc.cluster.local"
	openNode   = "sidecar~10.9.0.2~other-1.shop~shop.svc.cluster.local"
	scopeTotal = 1000
	scopeSeen  = 10
)

func scopeHost(i int) string { return fmt.Sprintf("svc-%d.shop.svc.cluster.local", i) }

// scopeEntry is the i-th of the mesh's services, with one VM endpoint at ip.
func scopeEntry(i int, ip string) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc-%d, namespace: shop}
spec:
  hosts: [%s]
  addresses: [10.96.%d.%d]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: %d, name: tcp, protocol: TCP}]
  endpoints: [{address: %s, serviceAccount: svc-%d}]
`, i, scopeHost(i), i/250, i%250+1, 8000+i%50, ip, i)
}

func scopeIP(i int) string { return fmt.Sprintf("10.20.%d.%d", i/250, i%250+1) }

// scopeSidecar selects the pod client-1 and lets it see svc-0 to svc-9.
func scopeSidecar() string {
	var b strings.Builder
	b.WriteString(`apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: client, namespace: shop}
spec:
  workloadSelector: {labels: {app: client}}
  egress:
  - hosts:
`)
	for i := range scopeSeen {
		fmt.Fprintf(&b, "    - shop/%s\n", scopeHost(i))
	}
	b.WriteString(`---
apiVersion: v1
kind: Pod
metadata: {name: client-1, namespace: shop, labels: {app: client}}
spec:
  serviceAccountName: client
  containers: [{name: app, image: example.invalid/client}]
status:
  phase: Running
  podIP: 10.9.0.1
  podIPs: [{ip: 10.9.0.1}]
`)
	return b.String()
}

// TestSidecarScopeSendsNothingUnrelated: in a mesh of 1000 services, a pod
// whose Sidecar lets it see 10 gets those 10 clusters and the three
// special ones over a real SotW ADS stream; an endpoint change of an
// unrelated service and a new service send it nothing (the next response
// it gets is the endpoint change of a service it sees), while an unscoped
// proxy of the same namespace gets all of them.
func TestSidecarScopeSendsNothingUnrelated(t *testing.T) {
	dir := t.TempDir()
	const unrelated, related = 500, 5
	var all strings.Builder
	for i := range scopeTotal {
		if i != unrelated && i != related {
			fmt.Fprintf(&all, "---\n%s", scopeEntry(i, scopeIP(i)))
		}
	}
	e2e.WriteFileAtomic(t, filepath.Join(dir, "services.yaml"), all.String())
	e2e.WriteFileAtomic(t, filepath.Join(dir, "unrelated.yaml"), scopeEntry(unrelated, scopeIP(unrelated)))
	e2e.WriteFileAtomic(t, filepath.Join(dir, "related.yaml"), scopeEntry(related, scopeIP(related)))
	e2e.WriteFileAtomic(t, filepath.Join(dir, "sidecar.yaml"), scopeSidecar())
	srv := e2e.Serve(t, "--config-dir", dir, "--debounce", "20ms")

	scoped := watchADS(t, srv.GRPCAddr, scopedNode)
	want := []string{meshname.BlackHoleCluster, meshname.InboundPassthroughCluster, meshname.PassthroughCluster}
	for i := range scopeSeen {
		want = append(want, meshname.OutboundCluster(uint32(8000+i%50), "", scopeHost(i)))
	}
	slices.Sort(want)
	before := scoped.waitState(t, "the scoped proxy's endpoints", 20*time.Second, func(s adsState) bool {
		return len(s.endpoints) == scopeSeen
	})
	if !slices.Equal(before.clusters, want) {
		t.Fatalf("scoped proxy's CDS = %v (%d), want the 10 services it sees and the special clusters %v", before.clusters, len(before.clusters), want)
	}
	open := watchADS(t, srv.GRPCAddr, openNode)
	open.waitState(t, "the unscoped proxy's endpoints", 30*time.Second, func(s adsState) bool {
		return len(s.clusters) == scopeTotal+3 && len(s.endpoints) == scopeTotal
	})

	// An unrelated service's endpoint moves, then a new service appears:
	// the unscoped proxy gets both.
	e2e.WriteFileAtomic(t, filepath.Join(dir, "unrelated.yaml"), scopeEntry(unrelated, "10.30.0.1"))
	unrelatedEDS := meshname.OutboundCluster(uint32(8000+unrelated%50), "", scopeHost(unrelated))
	open.waitState(t, "the unrelated endpoint change at the unscoped proxy", 20*time.Second, func(s adsState) bool {
		return slices.Contains(s.endpoints[unrelatedEDS], fmt.Sprintf("10.30.0.1:%d", 8000+unrelated%50))
	})
	e2e.WriteFileAtomic(t, filepath.Join(dir, "new.yaml"), scopeEntry(scopeTotal, "10.30.0.2"))
	open.waitState(t, "the new service at the unscoped proxy", 20*time.Second, func(s adsState) bool {
		return len(s.clusters) == scopeTotal+4
	})

	// A change the scoped proxy sees: its next response must be this one.
	e2e.WriteFileAtomic(t, filepath.Join(dir, "related.yaml"), scopeEntry(related, "10.30.0.3"))
	relatedEDS := meshname.OutboundCluster(uint32(8000+related%50), "", scopeHost(related))
	after := scoped.waitState(t, "the related endpoint change at the scoped proxy", 20*time.Second, func(s adsState) bool {
		return slices.Contains(s.endpoints[relatedEDS], fmt.Sprintf("10.30.0.3:%d", 8000+related%50))
	})
	if after.responses[resourcev3.ClusterType] != before.responses[resourcev3.ClusterType] ||
		after.responses[resourcev3.EndpointType] != before.responses[resourcev3.EndpointType]+1 {
		t.Errorf("scoped proxy's responses: CDS %d -> %d, EDS %d -> %d; want CDS unchanged and exactly one EDS (the related change): the unrelated changes must send nothing",
			before.responses[resourcev3.ClusterType], after.responses[resourcev3.ClusterType],
			before.responses[resourcev3.EndpointType], after.responses[resourcev3.EndpointType])
	}
	if !slices.Equal(after.clusters, want) {
		t.Errorf("scoped proxy's CDS after the changes = %v, want %v", after.clusters, want)
	}
}

// scopedGRPCClient dials target through grpc-go's xDS resolver as a
// proxyless client of namespace test whose node metadata LABELS are labels.
func scopedGRPCClient(t *testing.T, xdsAddr, node, target string, labels map[string]string) *grpc.ClientConn {
	t.Helper()
	md := map[string]any{"GENERATOR": "grpc", "NAMESPACE": "test", "LABELS": labels}
	bootstrap, err := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{"server_uri": xdsAddr, "channel_creds": []any{map[string]any{"type": "insecure"}},
			"server_features": []string{"xds_v3"}}},
		"node": map[string]any{"id": node, "metadata": md},
	})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		t.Fatalf("xDS resolver: %v", err)
	}
	cc, err := grpc.NewClient("xds:///"+target, grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestProxylessClientIsScoped: grpc-go's xDS client whose LABELS pick a
// Sidecar that lets it see echo reaches echo and cannot resolve hidden (its
// listener is not in what the client gets); a client the Sidecar does not
// select reaches both.
func TestProxylessClientIsScoped(t *testing.T) {
	port := e2e.HealthBackend(t, healthpb.HealthCheckResponse_SERVING)
	dir := t.TempDir()
	e2e.WriteFileAtomic(t, filepath.Join(dir, "echo.yaml"), echoServiceEntry(port))
	e2e.WriteFileAtomic(t, filepath.Join(dir, "hidden.yaml"), strings.ReplaceAll(echoServiceEntry(port), "echo", "hidden"))
	e2e.WriteFileAtomic(t, filepath.Join(dir, "sidecar.yaml"), `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: scoped, namespace: test}
spec:
  workloadSelector: {labels: {app: scoped}}
  egress:
  - hosts: ["./`+echoHost+`"]
`)
	srv := e2e.Serve(t, "--config-dir", dir, "--debounce", "20ms")
	hidden := "hidden.test.svc.cluster.local:7070"
	clientNode := "sidecar~127.0.0.2~scoped-1.test~test.svc.cluster.local" // not the echo endpoint's workload (its labels would win)
	check := func(cc *grpc.ClientConn) error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: e2e.WhichService}, grpc.WaitForReady(true))
		return err
	}
	if err := check(scopedGRPCClient(t, srv.GRPCAddr, clientNode, echoTarget, map[string]string{"app": "scoped"})); err != nil {
		t.Errorf("scoped client to echo (in its Sidecar's egress): %v", err)
	}
	if err := check(scopedGRPCClient(t, srv.GRPCAddr, clientNode, hidden, map[string]string{"app": "scoped"})); err == nil {
		t.Error("scoped client reached hidden, which its Sidecar's egress leaves out")
	}
	openNode := "sidecar~127.0.0.3~open-1.test~test.svc.cluster.local"
	if err := check(scopedGRPCClient(t, srv.GRPCAddr, openNode, hidden, map[string]string{"app": "open"})); err != nil {
		t.Errorf("unscoped client to hidden: %v", err)
	}
}
