package snapshot

import (
	"strings"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/librarymesh/controlplane/registry"
)

func TestWithEndpointChanges(t *testing.T) {
	pg := "postgres-1-vm.default.svc.cluster.local"
	before := libraryView(meshStrict(), localMutual())
	b := NewBuilder(before, Options{})
	ids := []struct {
		id string
		md map[string]any
	}{{podNodeID, nil}, {grpcNodeID, map[string]any{"GENERATOR": "grpc"}}}
	old := map[string]*Resources{}
	for _, p := range ids {
		res, err := b.Build(mustProxy(t, p.id, p.md))
		if err != nil {
			t.Fatal(err)
		}
		old[p.id+fmtMD(p.md)] = res
	}

	after := libraryView(meshStrict(), localMutual())
	after.endpoints = append(after.endpoints, &registry.Endpoint{Hostname: pg, Namespace: "default", Address: "10.128.0.15", Ready: true, ServiceAccount: "postgres"})
	next := b.WithEndpointChanges(after, []string{pg})
	fresh := NewBuilder(after, Options{})
	for _, p := range ids {
		proxy := mustProxy(t, p.id, p.md)
		got, err := next.Build(proxy)
		if err != nil {
			t.Fatal(err)
		}
		want, err := fresh.Build(proxy)
		if err != nil {
			t.Fatal(err)
		}
		prev := old[p.id+fmtMD(p.md)]
		for i, l := range got.lists()[:3] { // shared listeners, routes, clusters: the same protos as before
			if n := rebuiltShared(*l, *prev.lists()[i]); n != "" {
				t.Errorf("%s: %s was rebuilt for an endpoint change", p.id, n)
			}
		}
		name := OutboundClusterName(5432, "", pg)
		cla := find[*endpointv3.ClusterLoadAssignment](t, got.Endpoints, name)
		if n := len(cla.GetEndpoints()[0].GetLbEndpoints()); n != 2 {
			t.Errorf("%s: %s has %d endpoints, want 2", p.id, name, n)
		}
		inv := OutboundClusterName(8080, "", "inventory.default.svc.cluster.local")
		if find[*endpointv3.ClusterLoadAssignment](t, got.Endpoints, inv) != find[*endpointv3.ClusterLoadAssignment](t, prev.Endpoints, inv) {
			t.Errorf("%s: unchanged %s was rebuilt", p.id, inv)
		}
		if golden, fast := renderGolden(t, "x", want), renderGolden(t, "x", got); string(golden["x.eds.yaml"]) != string(fast["x.eds.yaml"]) ||
			string(golden["x.lds.yaml"]) != string(fast["x.lds.yaml"]) || string(golden["x.cds.yaml"]) != string(fast["x.cds.yaml"]) {
			t.Errorf("%s: the fast path differs from a full build", p.id)
		}
	}
}

// rebuiltShared names a resource of the shared (outbound) part that is not
// the same proto in both lists; the proxy's own inbound part is built per proxy.
func rebuiltShared(a, b []types.Resource) string {
	prev := map[string]types.Resource{}
	for _, r := range b {
		prev[cachev3.GetResourceName(r)] = r
	}
	for _, r := range a {
		name := cachev3.GetResourceName(r)
		own := strings.HasPrefix(name, "inbound|") || strings.HasPrefix(name, "grpc/server") || name == VirtualInboundListenerName
		if !own && prev[name] != r {
			return name
		}
	}
	return ""
}

func fmtMD(md map[string]any) string {
	if g, ok := md["GENERATOR"].(string); ok {
		return g
	}
	return ""
}

func TestWithEndpointChangesDNSHostRebuilds(t *testing.T) {
	v := libraryView(nil, nil)
	b := NewBuilder(v, Options{})
	if _, err := b.Build(mustProxy(t, podNodeID, nil)); err != nil {
		t.Fatal(err)
	}
	// A DNS host's endpoints live inside its cluster: nothing may be reused.
	if next := b.WithEndpointChanges(v, []string{"api.example.com"}); len(next.sidecarOut) != 0 || len(next.cla) != 0 {
		t.Errorf("reused %d shared parts and %d assignments for a DNS host change", len(next.sidecarOut), len(next.cla))
	}
	if next := b.WithEndpointChanges(v, []string{"inventory.default.svc.cluster.local"}); len(next.sidecarOut) != 1 {
		t.Errorf("reused %d shared parts for a STATIC host change, want 1", len(next.sidecarOut))
	}
}
