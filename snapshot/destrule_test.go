package snapshot

import (
	"reflect"
	"testing"

	"github.com/librarymesh/controlplane/registry"
)

func TestClusterPolicy(t *testing.T) {
	hash := &registry.LoadBalancer{ConsistentHash: &registry.ConsistentHash{HeaderName: "x-user"}}
	least := &registry.LoadBalancer{Simple: registry.LBLeastRequest}
	random := &registry.LoadBalancer{Simple: registry.LBRandom}
	mutual := &registry.ClientTLS{Mode: registry.ClientTLSIstioMutual}
	pool := &registry.ConnectionPool{MaxConnections: 3}
	dr := &registry.DestinationRule{
		TrafficPolicy: &registry.TrafficPolicy{LoadBalancer: hash, TLS: mutual, ConnectionPool: pool,
			PortLevel: map[uint32]*registry.TrafficPolicy{9090: {LoadBalancer: least}}},
		Subsets: []registry.Subset{
			{Name: "plain"},
			{Name: "random", TrafficPolicy: &registry.TrafficPolicy{LoadBalancer: random}},
			{Name: "own-port", TrafficPolicy: &registry.TrafficPolicy{LoadBalancer: random,
				PortLevel: map[uint32]*registry.TrafficPolicy{8080: {TLS: mutual}}}},
		},
	}
	tests := []struct {
		name   string
		dr     *registry.DestinationRule
		subset *registry.Subset
		port   uint32
		want   registry.TrafficPolicy
	}{
		{"no rule", nil, nil, 8080, registry.TrafficPolicy{}},
		{"the rule", dr, nil, 8080, registry.TrafficPolicy{LoadBalancer: hash, TLS: mutual, ConnectionPool: pool}},
		{"port level replaces every part", dr, nil, 9090, registry.TrafficPolicy{LoadBalancer: least}},
		{"a subset without policy inherits", dr, &dr.Subsets[0], 8080, registry.TrafficPolicy{LoadBalancer: hash, TLS: mutual, ConnectionPool: pool}},
		{"a subset part overrides that part", dr, &dr.Subsets[1], 8080, registry.TrafficPolicy{LoadBalancer: random, TLS: mutual, ConnectionPool: pool}},
		{"a subset over the rule's port level", dr, &dr.Subsets[1], 9090, registry.TrafficPolicy{LoadBalancer: random}},
		{"a subset's own port level replaces every part", dr, &dr.Subsets[2], 8080, registry.TrafficPolicy{TLS: mutual}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := clusterPolicy(tt.dr, tt.subset, tt.port); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("clusterPolicy = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestDestinationRuleForMerges: rules of one namespace for one host are
// merged (subsets added, a name keeps its first definition, the first
// traffic policy wins); a rule of another namespace is not.
func TestDestinationRuleForMerges(t *testing.T) {
	svc := &registry.Service{Hostname: "inventory.default.svc.cluster.local", Namespace: "default"}
	first := &registry.TrafficPolicy{LoadBalancer: &registry.LoadBalancer{Simple: registry.LBRandom}}
	v1 := registry.Subset{Name: "v1", Labels: map[string]string{"version": "v1"}}
	drs := []*registry.DestinationRule{
		{Namespace: "default", Name: "a", Host: svc.Hostname, Subsets: []registry.Subset{v1}},
		{Namespace: "default", Name: "b", Host: svc.Hostname, TrafficPolicy: first,
			Subsets: []registry.Subset{{Name: "v1", Labels: map[string]string{"version": "other"}}, {Name: "v2"}}},
		{Namespace: "default", Name: "c", Host: svc.Hostname, TrafficPolicy: &registry.TrafficPolicy{}, Subsets: []registry.Subset{{Name: "v3"}}},
		{Namespace: "default", Name: "private", Host: svc.Hostname, ExportTo: []string{"other"}, Subsets: []registry.Subset{{Name: "hidden"}}},
		{Namespace: "istio-system", Name: "mesh", Host: svc.Hostname, Subsets: []registry.Subset{{Name: "mesh"}}},
	}
	got := DestinationRuleFor(drs, "istio-system", "default", svc)
	want := &registry.DestinationRule{Namespace: "default", Name: "a", Host: svc.Hostname, TrafficPolicy: first,
		Subsets: []registry.Subset{v1, {Name: "v2"}, {Name: "v3"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("merged rule = %+v, want %+v", got, want)
	}
	if len(drs[0].Subsets) != 1 || drs[0].TrafficPolicy != nil {
		t.Errorf("merging changed the model's rule: %+v", drs[0])
	}
}
