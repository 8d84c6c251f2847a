package snapshot

import (
	"slices"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/librarymesh/controlplane/registry"
)

func TestClusterLoadAssignment(t *testing.T) {
	port := registry.Port{Name: "grpc", Number: 9090, TargetPort: 9000}
	eps := []*registry.Endpoint{
		{Address: "10.0.0.1", Locality: "r/z1", Ready: true},
		{Address: "10.0.0.2", Locality: "r/z1", Ready: true, Weight: 3, Ports: map[string]uint32{"grpc": 9001}},
		{Address: "10.0.0.3", Locality: "", Ready: true},
		{Address: "10.0.0.4", Locality: "r/z2", Ready: false},
		// A second instance on 10.0.0.2 serving another port is a second LbEndpoint.
		{Address: "10.0.0.2", Locality: "r/z1", Ready: true, Ports: map[string]uint32{"grpc": 9002}},
		// One that serves this port on the same address and port adds nothing.
		{Address: "10.0.0.2", Locality: "r/z1", Ready: true, Ports: map[string]uint32{"grpc": 9001, "admin": 9100}},
	}
	want := &endpointv3.ClusterLoadAssignment{
		ClusterName: "c",
		Endpoints: []*endpointv3.LocalityLbEndpoints{
			{Locality: &corev3.Locality{}, LoadBalancingWeight: wrapperspb.UInt32(1),
				LbEndpoints: []*endpointv3.LbEndpoint{LbEndpoint("10.0.0.3", 9000, 1)}},
			{Locality: &corev3.Locality{Region: "r", Zone: "z1"}, LoadBalancingWeight: wrapperspb.UInt32(5),
				LbEndpoints: []*endpointv3.LbEndpoint{LbEndpoint("10.0.0.1", 9000, 1), LbEndpoint("10.0.0.2", 9001, 3),
					LbEndpoint("10.0.0.2", 9002, 1)}},
		},
	}
	got := ClusterLoadAssignment("c", port, eps)
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("ClusterLoadAssignment (-want +got):\n%s", diff)
	}
	if err := got.ValidateAll(); err != nil {
		t.Error(err)
	}
}

func TestOutboundClusterTLS(t *testing.T) {
	pgSAN := []string{"spiffe://cluster.local/ns/default/sa/postgres"}
	tests := []struct {
		name    string
		proxy   map[string]any
		cluster string
		want    *tlsv3.UpstreamTlsContext // nil: plaintext
	}{
		{"sidecar ISTIO_MUTUAL", nil, "outbound|5432||postgres-1-vm.default.svc.cluster.local",
			UpstreamTlsContext("outbound_.5432_._.postgres-1-vm.default.svc.cluster.local", pgSAN)},
		{"MESH_EXTERNAL never", nil, "outbound|443||api.example.com", nil},
		{"proxyless gRPC", map[string]any{"GENERATOR": "grpc"}, "outbound|5432||postgres-1-vm.default.svc.cluster.local",
			GRPCUpstreamTlsContext(pgSAN)},
	}
	b := NewBuilder(libraryView(nil, []*registry.DestinationRule{
		{Namespace: "istio-system", Name: "default", Host: "*.local", TrafficPolicy: &registry.TrafficPolicy{TLS: &registry.ClientTLS{Mode: registry.ClientTLSIstioMutual}}},
		{Namespace: "istio-system", Name: "ext", Host: "*", TrafficPolicy: &registry.TrafficPolicy{TLS: &registry.ClientTLS{Mode: registry.ClientTLSIstioMutual}}},
	}), Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := b.Build(mustProxy(t, podNodeID, tt.proxy))
			if err != nil {
				t.Fatal(err)
			}
			c := find[*clusterv3.Cluster](t, res.Clusters, tt.cluster)
			if tt.want == nil {
				if c.GetTransportSocket() != nil {
					t.Fatalf("cluster has TLS %v, want plaintext", c.GetTransportSocket())
				}
				return
			}
			got := &tlsv3.UpstreamTlsContext{}
			if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("UpstreamTlsContext (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOutboundSANsFromEndpoints(t *testing.T) {
	v := libraryView(nil, localMutual())
	for _, s := range v.services {
		s.ServiceAccounts = nil
	}
	b := NewBuilder(v, Options{TrustDomain: "example.org"})
	sans := b.istioMutualSANs(v.Service("inventory.default.svc.cluster.local"), nil)
	want := []string{"spiffe://example.org/ns/default/sa/inventory"}
	if !slices.Equal(sans, want) {
		t.Errorf("istioMutualSANs = %v; want %v", sans, want)
	}
}

func TestConsistentFindsMissingReferences(t *testing.T) {
	b := NewBuilder(libraryView(nil, nil), Options{})
	for _, md := range []map[string]any{nil, {"GENERATOR": "grpc"}} {
		res, err := b.Build(mustProxy(t, podNodeID, md))
		if err != nil {
			t.Fatal(err)
		}
		if err := res.Consistent(); err != nil {
			t.Fatalf("%v: %v", md, err)
		}
		noRoutes, noEndpoints := *res, *res
		noRoutes.Routes, noEndpoints.Endpoints = nil, nil
		if noRoutes.Consistent() == nil || noEndpoints.Consistent() == nil {
			t.Errorf("%v: missing routes or endpoints not reported", md)
		}
	}
}
