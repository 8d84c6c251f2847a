package registry_test

import (
	"fmt"
	"reflect"
	"testing"

	networkingapi "istio.io/api/networking/v1alpha3"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/librarymesh/controlplane/registry"
)

// TestEndpointIdentity: an endpoint is an address and its ports, so two
// instances on one address with different ports are two endpoints, and the
// same address and ports named twice is one.
func TestEndpointIdentity(t *testing.T) {
	twoInstances := makeEntry("pg", pgHost, "10.128.0.14", "10.128.0.14")
	twoInstances.Spec.Endpoints[1].Ports = map[string]uint32{"tcp": 5433}
	sameTwice := makeEntry("pg", pgHost, "10.128.0.14", "10.128.0.14")
	selector := makeEntry("pg", pgHost)
	selector.Spec.WorkloadSelector = &networkingapi.WorkloadSelector{Labels: map[string]string{"app": "pg"}}
	weA := makeWorkloadEntry("pg-a", "10.128.0.20", map[string]string{"app": "pg"})
	weB := makeWorkloadEntry("pg-b", "10.128.0.20", map[string]string{"app": "pg"})
	weB.Spec.Ports = map[string]uint32{"tcp": 5433}
	weSame := makeWorkloadEntry("pg-c", "10.128.0.20", map[string]string{"app": "pg"})
	tests := []struct {
		name string
		objs []runtime.Object
		host string
		want []string // ADDRESS:PORT (of the first service port) WORKLOAD
	}{{
		name: "two entry endpoints on one address and different ports",
		objs: []runtime.Object{twoInstances}, host: pgHost,
		want: []string{"10.128.0.14:5432 ServiceEntry default/pg", "10.128.0.14:5433 ServiceEntry default/pg"},
	}, {
		name: "the same address and ports twice is one endpoint",
		objs: []runtime.Object{sameTwice}, host: pgHost,
		want: []string{"10.128.0.14:5432 ServiceEntry default/pg"},
	}, {
		name: "two workload entries on one IP and different ports",
		objs: []runtime.Object{selector, weB, weA}, host: pgHost,
		want: []string{"10.128.0.20:5432 WorkloadEntry default/pg-a", "10.128.0.20:5433 WorkloadEntry default/pg-b"},
	}, {
		name: "two workload entries on one IP and the same ports: the first by name",
		objs: []runtime.Object{selector, weSame, weA}, host: pgHost,
		want: []string{"10.128.0.20:5432 WorkloadEntry default/pg-a"},
	}, {
		name: "a pod in two slices is one endpoint",
		objs: []runtime.Object{
			makeService("inventory", "10.96.0.20", svcPort("http", 8080)),
			makeSlice("inventory-1", "inventory", 8080, "10.8.0.5"),
			makeSlice("inventory-2", "inventory", 8080, "10.8.0.5", "10.8.0.6"),
		},
		host: "inventory.default.svc.cluster.local",
		want: []string{"10.8.0.5:8080 ", "10.8.0.6:8080 "},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := registry.NewStore(nil)
			for _, o := range tc.objs {
				if ps := s.Upsert("kube", o); len(ps) != 0 {
					t.Fatalf("problems: %v", ps)
				}
			}
			svc := s.View().Service(tc.host)
			if svc == nil {
				t.Fatalf("no service %s", tc.host)
			}
			var got []string
			for _, ep := range s.View().Endpoints(tc.host) {
				got = append(got, fmt.Sprintf("%s:%d %s", ep.Address, ep.PortFor(svc.Ports[0]), ep.Workload))
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("endpoints = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestWorkloadByIPTwoInstances: of two WorkloadEntries on one IP (two
// instances on one VM) the proxy at the IP is the older one, then the first
// by name, and the VM serves both instances' services.
func TestWorkloadByIPTwoInstances(t *testing.T) {
	selector := makeEntry("pg", pgHost)
	selector.Spec.WorkloadSelector = &networkingapi.WorkloadSelector{Labels: map[string]string{"app": "pg"}}
	weA := makeWorkloadEntry("pg-a", "10.128.0.20", map[string]string{"app": "pg"})
	weB := makeWorkloadEntry("pg-b", "10.128.0.20", map[string]string{"app": "pg"})
	weB.Spec.Ports = map[string]uint32{"tcp": 5433}
	s := registry.NewStore(nil)
	for _, o := range []runtime.Object{weB, selector, weA} {
		if ps := s.Upsert("kube", o); len(ps) != 0 {
			t.Fatalf("problems: %v", ps)
		}
	}
	w := s.View().WorkloadByIP("10.128.0.20")
	if w == nil || w.Name != "pg-a" {
		t.Fatalf("WorkloadByIP = %+v, want WorkloadEntry pg-a", w)
	}
	if svcs := s.View().ServicesForWorkload(w); len(svcs) != 1 || svcs[0].Hostname != pgHost {
		t.Errorf("ServicesForWorkload = %v, want %s", svcs, pgHost)
	}
}
