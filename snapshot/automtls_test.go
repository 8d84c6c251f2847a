package snapshot

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/registry"
)

const autoPG = "postgres-1-vm.default.svc.cluster.local"

// withSidecar marks the endpoints at the addresses as having a sidecar.
func withSidecar(v *testView, addrs ...string) *testView {
	for i, ep := range v.endpoints {
		for _, a := range addrs {
			if ep.Address == a {
				cp := *ep
				cp.TLSMode = meshname.TLSModeIstio
				v.endpoints[i] = &cp
			}
		}
	}
	return v
}

// clusterTLS says how a cluster reaches its endpoints: "matches" (per
// endpoint, automatic mTLS), "mtls" (always) or "plaintext".
func clusterTLS(c *clusterv3.Cluster) string {
	switch {
	case len(c.GetTransportSocketMatches()) > 0:
		return "matches"
	case c.GetTransportSocket() != nil:
		return "mtls"
	}
	return "plaintext"
}

// TestAutoMTLSClusters: which transport the postgres cluster gets, for an
// Envoy sidecar and a proxyless gRPC client, by the endpoints' sidecars,
// PeerAuthentication and DestinationRule.
func TestAutoMTLSClusters(t *testing.T) {
	vmDisable := []*registry.PeerAuthentication{{Namespace: "default", Name: "ns", Mode: registry.MTLSDisable}}
	tls := func(m registry.ClientTLSMode) []*registry.DestinationRule {
		return []*registry.DestinationRule{{Namespace: "default", Name: "pg", Host: autoPG,
			TrafficPolicy: &registry.TrafficPolicy{TLS: &registry.ClientTLS{Mode: m}}}}
	}
	second := &registry.Endpoint{Hostname: autoPG, Namespace: "default", Address: "10.128.0.15", Ready: true, ServiceAccount: "postgres"}
	tests := []struct {
		name            string
		view            *testView
		envoy, proxyles string
	}{
		{"no sidecar, PERMISSIVE", libraryView(nil, nil), "matches", "plaintext"},
		{"sidecar, PERMISSIVE", withSidecar(libraryView(nil, nil), "10.128.0.14"), "matches", "plaintext"},
		{"sidecar, STRICT", withSidecar(libraryView(meshStrict(), nil), "10.128.0.14"), "matches", "mtls"},
		{"STRICT without a sidecar", libraryView(meshStrict(), nil), "matches", "plaintext"},
		{"mixed, STRICT", func() *testView {
			v := withSidecar(libraryView(meshStrict(), nil), "10.128.0.14")
			v.endpoints = append(v.endpoints, second)
			return v
		}(), "matches", "plaintext"},
		{"a rule without tls", withSidecar(libraryView(meshStrict(), tls(registry.ClientTLSUnset)), "10.128.0.14"), "matches", "mtls"},
		{"a rule with subsets only", withSidecar(libraryView(meshStrict(), []*registry.DestinationRule{{Namespace: "default", Name: "pg", Host: autoPG,
			Subsets: []registry.Subset{{Name: "v1", Labels: map[string]string{"app": "postgres"}}}}}), "10.128.0.14"), "matches", "mtls"},
		{"the rule's DISABLE wins", withSidecar(libraryView(meshStrict(), tls(registry.ClientTLSDisable)), "10.128.0.14"), "plaintext", "plaintext"},
		{"the rule's ISTIO_MUTUAL wins", libraryView(nil, tls(registry.ClientTLSIstioMutual)), "mtls", "mtls"},
		{"namespace DISABLE", withSidecar(libraryView(vmDisable, nil), "10.128.0.14"), "plaintext", "plaintext"},
	}
	name := meshname.OutboundCluster(5432, "", autoPG)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBuilder(tc.view, Options{})
			for _, p := range []struct {
				proxy *Proxy
				want  string
			}{{mustProxy(t, podNodeID, nil), tc.envoy}, {mustProxy(t, grpcNodeID, map[string]any{"GENERATOR": "grpc"}), tc.proxyles}} {
				res, err := b.Build(p.proxy)
				if err != nil {
					t.Fatal(err)
				}
				if got := clusterTLS(find[*clusterv3.Cluster](t, res.Clusters, name)); got != p.want {
					t.Errorf("%s: %s is %s, want %s", b.Kind(p.proxy), name, got, p.want)
				}
			}
		})
	}
}

// TestAutoMTLSExternal: a MESH_EXTERNAL service gets no automatic mTLS.
func TestAutoMTLSExternal(t *testing.T) {
	res, err := NewBuilder(libraryView(nil, nil), Options{}).Build(mustProxy(t, podNodeID, nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := clusterTLS(find[*clusterv3.Cluster](t, res.Clusters, meshname.OutboundCluster(443, "", "api.example.com"))); got != "plaintext" {
		t.Errorf("external cluster is %s, want plaintext", got)
	}
}

// TestAutoMTLSEndpointChanges: an endpoint change that leaves every
// cluster's TLS as it was stays on the EDS-only path; one that flips a
// proxyless cluster's mTLS (a plaintext endpoint joins a STRICT service
// with sidecars) rebuilds, and matches a full build.
func TestAutoMTLSEndpointChanges(t *testing.T) {
	before := func() *testView { return withSidecar(libraryView(meshStrict(), nil), "10.128.0.14") }
	add := func(tlsMode string) *testView {
		v := before()
		v.endpoints = append(v.endpoints, &registry.Endpoint{Hostname: autoPG, Namespace: "default", Address: "10.128.0.15",
			Ready: true, ServiceAccount: "postgres", TLSMode: tlsMode})
		return v
	}
	checkFastPath(t, before(), add(meshname.TLSModeIstio), autoPG, meshname.OutboundCluster(8080, "", "inventory.default.svc.cluster.local"))

	grpc := mustProxy(t, grpcNodeID, map[string]any{"GENERATOR": "grpc"})
	b := NewBuilder(before(), Options{})
	if _, err := b.Build(grpc); err != nil {
		t.Fatal(err)
	}
	after := add("")
	if !b.grpcAutoMTLSChangedLocked(after, []string{autoPG}) {
		t.Fatal("a plaintext endpoint joining a proxyless mTLS cluster is not seen as a TLS change")
	}
	// A part scoped by a Sidecar is keyed NAMESPACE|SIDECAR: the rules its
	// namespace sees apply (here one that disables TLS, so nothing flips).
	disabled := before()
	disabled.drs = []*registry.DestinationRule{{Namespace: "default", Name: "pg", Host: autoPG, ExportTo: []string{"default"},
		TrafficPolicy: &registry.TrafficPolicy{TLS: &registry.ClientTLS{Mode: registry.ClientTLSDisable}}}}
	scoped := NewBuilder(disabled, Options{})
	scoped.grpcOut["default|default/scoped"] = &memo{res: &Resources{}}
	if scoped.grpcAutoMTLSChangedLocked(after, []string{autoPG}) {
		t.Error("a part scoped by a Sidecar is checked without its namespace's DestinationRule")
	}
	got, err := b.WithEndpointChanges(after, []string{autoPG}).Build(grpc)
	if err != nil {
		t.Fatal(err)
	}
	if c := clusterTLS(find[*clusterv3.Cluster](t, got.Clusters, meshname.OutboundCluster(5432, "", autoPG))); c != "plaintext" {
		t.Errorf("after the change the proxyless cluster is %s, want plaintext", c)
	}
}
