package server

import (
	"slices"
	"testing"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/snapshot"
)

// carryBuilder records the hosts it was carried over with.
type carryBuilder struct {
	*fakeBuilder
	carried *[]string
}

func (b carryBuilder) WithEndpointChanges(_ registry.View, hosts []string) Builder {
	*b.carried = hosts
	return b
}

func TestNextBuilderCarriesOverOnlyForEndpointChanges(t *testing.T) {
	tests := []struct {
		name    string
		changes []registry.Change
		carry   []string // nil: a fresh Builder
	}{
		{"endpoints of two hosts", []registry.Change{{Hostnames: []string{"b.test"}, EndpointsOnly: true}, {Hostnames: []string{"a.test"}, EndpointsOnly: true}}, []string{"a.test", "b.test"}},
		{"a service definition", []registry.Change{{Hostnames: []string{"a.test"}}}, nil},
		{"endpoints and policy", []registry.Change{{Hostnames: []string{"a.test"}, EndpointsOnly: true}, {Policy: true}}, nil},
		{"a workload only", []registry.Change{{Workloads: []string{"127.0.0.1"}}}, nil},
		{"nothing known (full resync)", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var carried []string
			fresh := 0
			p := &pusher{builder: carryBuilder{fakeBuilder: &fakeBuilder{}, carried: &carried},
				newB: func(registry.View, snapshot.Options) Builder { fresh++; return &fakeBuilder{} }}
			p.nextBuilder(nil, affectedBy(tc.changes))
			if !slices.Equal(carried, tc.carry) {
				t.Errorf("carried over with %v, want %v", carried, tc.carry)
			}
			if wantFresh := tc.carry == nil; (fresh == 1) != wantFresh {
				t.Errorf("fresh Builders made: %d, want fresh=%v", fresh, wantFresh)
			}
		})
	}
}
