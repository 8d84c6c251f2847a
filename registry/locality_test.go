package registry_test

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/librarymesh/controlplane/registry"
)

// TestEndpointLocality: an endpoint's locality comes from its pod (Istio's
// istio-locality label, else the pod's topology labels) or from its
// ServiceEntry endpoint or WorkloadEntry `locality`.
func TestEndpointLocality(t *testing.T) {
	entry := makeEntry("pg", pgHost, "10.128.0.14")
	entry.Spec.Endpoints[0].Locality = "us-east1/us-east1-b"
	tests := []struct {
		name string
		objs []runtime.Object
		host string
		want string
	}{{
		name: "pod label istio-locality",
		objs: []runtime.Object{makeService("inventory", "10.96.0.20", svcPort("http", 8080)),
			makeSlice("inventory-1", "inventory", 8080, "10.8.0.5"),
			makePod("inventory-a", "10.8.0.5", "inventory", map[string]string{registry.LabelLocality: "region1.zone1.sub1"})},
		host: "inventory.default.svc.cluster.local", want: "region1/zone1/sub1",
	}, {
		name: "pod topology labels",
		objs: []runtime.Object{makeService("inventory", "10.96.0.20", svcPort("http", 8080)),
			makeSlice("inventory-1", "inventory", 8080, "10.8.0.5"),
			makePod("inventory-a", "10.8.0.5", "inventory", map[string]string{registry.LabelTopologyRegion: "region2", registry.LabelTopologyZone: "zone2"})},
		host: "inventory.default.svc.cluster.local", want: "region2/zone2",
	}, {
		name: "service entry endpoint",
		objs: []runtime.Object{entry}, host: pgHost, want: "us-east1/us-east1-b",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := registry.NewStore(nil)
			for _, o := range tc.objs {
				if ps := s.Upsert("kube", o); len(ps) != 0 {
					t.Fatalf("problems: %v", ps)
				}
			}
			eps := s.View().Endpoints(tc.host)
			if len(eps) != 1 || eps[0].Locality != tc.want {
				t.Fatalf("endpoints = %+v, want one in %q", eps, tc.want)
			}
		})
	}
}
