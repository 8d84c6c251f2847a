package snapshot

import (
	"testing"

	"github.com/librarymesh/controlplane/registry"
)

func TestInboundMTLSMode(t *testing.T) {
	mesh := &registry.PeerAuthentication{Namespace: "istio-system", Name: "default", Mode: registry.MTLSStrict}
	nsDisable := &registry.PeerAuthentication{Namespace: "default", Name: "default", Mode: registry.MTLSDisable}
	nsUnset := &registry.PeerAuthentication{Namespace: "default", Name: "default"}
	wlPermissive := &registry.PeerAuthentication{Namespace: "default", Name: "pg", Selector: map[string]string{"app": "pg"}, Mode: registry.MTLSPermissive}
	wlPort := &registry.PeerAuthentication{Namespace: "default", Name: "pg", Selector: map[string]string{"app": "pg"},
		PortModes: map[uint32]registry.MTLSMode{5432: registry.MTLSDisable}}
	otherNS := &registry.PeerAuthentication{Namespace: "other", Name: "default", Mode: registry.MTLSDisable}
	pg := map[string]string{"app": "pg"}
	tests := []struct {
		name   string
		pas    []*registry.PeerAuthentication
		labels map[string]string
		port   uint32
		want   registry.MTLSMode
	}{
		{"nothing set is permissive", nil, pg, 5432, registry.MTLSPermissive},
		{"mesh-wide", []*registry.PeerAuthentication{mesh}, pg, 5432, registry.MTLSStrict},
		{"namespace beats mesh", []*registry.PeerAuthentication{mesh, nsDisable}, pg, 5432, registry.MTLSDisable},
		{"unset namespace inherits mesh", []*registry.PeerAuthentication{mesh, nsUnset}, pg, 5432, registry.MTLSStrict},
		{"workload beats namespace", []*registry.PeerAuthentication{mesh, nsDisable, wlPermissive}, pg, 5432, registry.MTLSPermissive},
		{"selector must match", []*registry.PeerAuthentication{mesh, wlPermissive}, map[string]string{"app": "x"}, 5432, registry.MTLSStrict},
		{"port-level override", []*registry.PeerAuthentication{mesh, wlPort}, pg, 5432, registry.MTLSDisable},
		{"other port inherits", []*registry.PeerAuthentication{mesh, wlPort}, pg, 8080, registry.MTLSStrict},
		{"other namespace ignored", []*registry.PeerAuthentication{mesh, otherNS}, pg, 5432, registry.MTLSStrict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := InboundMTLSMode(tt.pas, "istio-system", "default", tt.labels, tt.port); got != tt.want {
				t.Errorf("mode = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDestinationRuleFor(t *testing.T) {
	svc := &registry.Service{Hostname: "postgres-1-vm.default.svc.cluster.local", Namespace: "default"}
	meshLocal := &registry.DestinationRule{Namespace: "istio-system", Name: "local", Host: "*.local"}
	meshSvc := &registry.DestinationRule{Namespace: "istio-system", Name: "svc", Host: "*.svc.cluster.local"}
	exact := &registry.DestinationRule{Namespace: "istio-system", Name: "pg", Host: svc.Hostname}
	proxyNS := &registry.DestinationRule{Namespace: "default", Name: "all", Host: "*"}
	private := &registry.DestinationRule{Namespace: "other", Name: "p", Host: svc.Hostname, ExportTo: []string{"."}}
	other := &registry.DestinationRule{Namespace: "istio-system", Name: "o", Host: "*.example.com"}
	tests := []struct {
		name string
		drs  []*registry.DestinationRule
		want *registry.DestinationRule
	}{
		{"none", nil, nil},
		{"wildcard", []*registry.DestinationRule{meshLocal, other}, meshLocal},
		{"longer wildcard wins", []*registry.DestinationRule{meshLocal, meshSvc}, meshSvc},
		{"exact wins", []*registry.DestinationRule{meshSvc, exact, meshLocal}, exact},
		{"proxy namespace first", []*registry.DestinationRule{exact, proxyNS}, proxyNS},
		{"not exported", []*registry.DestinationRule{private}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := DestinationRuleFor(tt.drs, "istio-system", "default", svc); got != tt.want {
				t.Errorf("rule = %+v, want %+v", got, tt.want)
			}
		})
	}
}
