package snapshot

import (
	"slices"
	"strings"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/registry"
)

func TestWithEndpointChanges(t *testing.T) {
	pg, inv := "postgres-1-vm.default.svc.cluster.local", "inventory.default.svc.cluster.local"
	tests := []struct {
		name   string
		host   string
		change func(v *testView)
		reused string // an assignment that must be the same proto as before
	}{
		{"VM endpoint added", pg, func(v *testView) {
			v.endpoints = append(v.endpoints, &registry.Endpoint{Hostname: pg, Namespace: "default", Address: "10.128.0.15", Ready: true, ServiceAccount: "postgres"})
		}, meshname.OutboundCluster(8080, "", inv)},
		{"the pod's own endpoint removed", inv, func(v *testView) {
			v.endpoints = slices.DeleteFunc(v.endpoints, func(e *registry.Endpoint) bool { return e.Address == "10.8.0.5" })
		}, meshname.OutboundCluster(5432, "", pg)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			after := libraryView(meshStrict(), localMutual())
			tt.change(after)
			checkFastPath(t, libraryView(meshStrict(), localMutual()), after, tt.host, tt.reused)
		})
	}
}

// TestWithEndpointChangesSubsets: the fast path rebuilds the assignments of
// a DestinationRule's subsets too, so an endpoint that gains a subset's
// labels (or a new one with them) shows up in that subset's EDS.
func TestWithEndpointChangesSubsets(t *testing.T) {
	inv := "inventory.default.svc.cluster.local"
	withSubsets := func() *testView {
		v := libraryView(meshStrict(), []*registry.DestinationRule{{Namespace: "default", Name: "inventory", Host: inv,
			Subsets: []registry.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}, {Name: "v2", Labels: map[string]string{"version": "v2"}}}}})
		for i, ep := range v.endpoints {
			if ep.Hostname == inv {
				cp := *ep
				cp.Labels = map[string]string{"version": "v1"}
				v.endpoints[i] = &cp
			}
		}
		return v
	}
	after := withSubsets()
	after.endpoints = append(after.endpoints, &registry.Endpoint{Hostname: inv, Namespace: "default", Address: "10.8.0.7", Ready: true,
		ServiceAccount: "inventory", Labels: map[string]string{"version": "v2"}, Workload: "Pod default/inventory-ghi"})
	got := checkFastPath(t, withSubsets(), after, inv, meshname.OutboundCluster(5432, "", "postgres-1-vm.default.svc.cluster.local"))
	for _, res := range got {
		v2 := find[*endpointv3.ClusterLoadAssignment](t, res.Endpoints, meshname.OutboundCluster(8080, "v2", inv))
		if eps := v2.GetEndpoints(); len(eps) != 1 || eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetAddress() != "10.8.0.7" {
			t.Errorf("subset v2 after the change: %v, want the new endpoint 10.8.0.7 alone", eps)
		}
	}
}

// checkFastPath builds every kind of proxy from before, carries the Builder
// over to after with WithEndpointChanges(host), and checks the result is
// what a full build of after gives, with the shared listeners, routes and
// clusters and the reused assignment the same protos as before. It returns
// the carried-over results.
func checkFastPath(t *testing.T, beforeView, after *testView, host, reused string) []*Resources {
	t.Helper()
	proxies := []*Proxy{mustProxy(t, podNodeID, nil), mustProxy(t, vmNodeID, nil), mustProxy(t, grpcNodeID, map[string]any{"GENERATOR": "grpc"})}
	b := NewBuilder(beforeView, Options{})
	var before, out []*Resources
	for _, p := range proxies {
		res, err := b.Build(p)
		if err != nil {
			t.Fatal(err)
		}
		before = append(before, res)
	}
	next, fresh := b.WithEndpointChanges(after, []string{host}), NewBuilder(after, Options{})
	for i, p := range proxies {
		got, err := next.Build(p)
		if err != nil {
			t.Fatal(err)
		}
		want, err := fresh.Build(p)
		if err != nil {
			t.Fatal(err)
		}
		for typ, data := range renderGolden(t, "x", want) {
			if string(renderGolden(t, "x", got)[typ]) != string(data) {
				t.Errorf("%s: %s from the fast path differs from a full build", p.ID, typ)
			}
		}
		for l, list := range got.lists()[:3] { // shared listeners, routes, clusters: the same protos
			if n := rebuiltShared(*list, *before[i].lists()[l]); n != "" {
				t.Errorf("%s: %s was rebuilt for an endpoint change", p.ID, n)
			}
		}
		if find[*endpointv3.ClusterLoadAssignment](t, got.Endpoints, reused) != find[*endpointv3.ClusterLoadAssignment](t, before[i].Endpoints, reused) {
			t.Errorf("%s: unchanged %s was rebuilt", p.ID, reused)
		}
		out = append(out, got)
	}
	// b handed its memos over to next; it still builds what it had not.
	px := mustProxy(t, podNodeID, nil)
	px.DeltaADS = true
	got, err := b.Build(px)
	if err != nil {
		t.Fatal(err)
	}
	want, err := NewBuilder(beforeView, Options{}).Build(px)
	if err != nil {
		t.Fatal(err)
	}
	for typ, data := range renderGolden(t, "x.delta", want) {
		if string(renderGolden(t, "x.delta", got)[typ]) != string(data) {
			t.Errorf("%s over delta: %s from the Builder carried over from differs from a full build", px.ID, typ)
		}
	}
	return out
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
		own := strings.HasPrefix(name, "inbound|") || strings.HasPrefix(name, "grpc/server") || strings.HasPrefix(name, "xds.istio.io/grpc/lds/inbound/") || name == meshname.VirtualInboundListener
		if !own && prev[name] != r {
			return name
		}
	}
	return ""
}
