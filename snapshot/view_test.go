package snapshot

import (
	"slices"

	"github.com/librarymesh/controlplane/registry"
)

// testView is a registry.View over plain slices, for unit tests.
type testView struct {
	services  []*registry.Service
	endpoints []*registry.Endpoint
	workloads []*registry.Workload
	pas       []*registry.PeerAuthentication
	drs       []*registry.DestinationRule
	authz     []*registry.AuthorizationPolicy
}

func (v *testView) Revision() uint64                                    { return 1 }
func (v *testView) Services() []*registry.Service                       { return v.services }
func (v *testView) PeerAuthentications() []*registry.PeerAuthentication { return v.pas }
func (v *testView) DestinationRules() []*registry.DestinationRule       { return v.drs }

func (v *testView) AuthorizationPolicies() []*registry.AuthorizationPolicy { return v.authz }

func (v *testView) Service(host string) *registry.Service {
	for _, s := range v.services {
		if s.Hostname == host {
			return s
		}
	}
	return nil
}

func (v *testView) Endpoints(host string) []*registry.Endpoint {
	var out []*registry.Endpoint
	for _, e := range v.endpoints {
		if e.Hostname == host {
			out = append(out, e)
		}
	}
	return out
}

func (v *testView) WorkloadByIP(ip string) *registry.Workload {
	for _, w := range v.workloads {
		if w.Address == ip {
			return w
		}
	}
	return nil
}

func (v *testView) ServicesForWorkload(w *registry.Workload) []*registry.Service {
	var out []*registry.Service
	for _, s := range v.services {
		if slices.ContainsFunc(v.Endpoints(s.Hostname), func(e *registry.Endpoint) bool {
			return e.Address == w.Address
		}) {
			out = append(out, s)
		}
	}
	return out
}

// libraryView is the seed's mesh: inventory pods calling postgres on a VM,
// with the given policies.
func libraryView(pas []*registry.PeerAuthentication, drs []*registry.DestinationRule) *testView {
	pg := "postgres-1-vm.default.svc.cluster.local"
	inv := "inventory.default.svc.cluster.local"
	return &testView{
		services: []*registry.Service{
			{Hostname: inv, Namespace: "default", Name: "inventory", Addresses: []string{"10.96.0.20"},
				Ports:           []registry.Port{{Name: "http", Number: 8080, Protocol: registry.ProtocolHTTP}, {Name: "grpc", Number: 9090, Protocol: registry.ProtocolGRPC}},
				ServiceAccounts: []string{"spiffe://cluster.local/ns/default/sa/inventory"}},
			{Hostname: pg, Namespace: "default", Name: "postgres-1-vm", Addresses: []string{"10.96.0.30"},
				Ports:           []registry.Port{{Name: "tcp", Number: 5432, Protocol: registry.ProtocolTCP}},
				ServiceAccounts: []string{"spiffe://cluster.local/ns/default/sa/postgres"}},
			{Hostname: "api.example.com", Namespace: "default", Name: "external", Resolution: registry.ResolutionDNS, Location: registry.MeshExternal,
				Ports: []registry.Port{{Name: "https", Number: 443, Protocol: registry.ProtocolTLS}}},
		},
		endpoints: []*registry.Endpoint{
			{Hostname: inv, Namespace: "default", Address: "10.8.0.5", Ready: true, ServiceAccount: "inventory", Locality: "us-east1/us-east1-b", Workload: "Pod default/inventory-abc"},
			{Hostname: inv, Namespace: "default", Address: "10.8.0.6", Ready: true, ServiceAccount: "inventory", Locality: "us-east1/us-east1-c", Workload: "Pod default/inventory-def"},
			{Hostname: pg, Namespace: "default", Address: "10.128.0.14", Ready: true, ServiceAccount: "postgres", Ports: map[string]uint32{"tcp": 5432}, Workload: "ServiceEntry default/postgres-1-vm"},
		},
		workloads: []*registry.Workload{
			{Kind: "Pod", Namespace: "default", Name: "inventory-abc", Address: "10.8.0.5", ServiceAccount: "inventory", Labels: map[string]string{"app": "inventory"}},
			{Kind: "ServiceEntry", Namespace: "default", Name: "postgres-1-vm", Address: "10.128.0.14", ServiceAccount: "postgres", Labels: map[string]string{"app": "postgres"}},
		},
		pas: pas,
		drs: drs,
	}
}

func meshStrict() []*registry.PeerAuthentication {
	return []*registry.PeerAuthentication{{Namespace: "istio-system", Name: "default", Mode: registry.MTLSStrict}}
}

func localMutual() []*registry.DestinationRule {
	return []*registry.DestinationRule{{Namespace: "istio-system", Name: "default", Host: "*.local", TrafficPolicy: &registry.TrafficPolicy{TLS: &registry.ClientTLS{Mode: registry.ClientTLSIstioMutual}}}}
}
