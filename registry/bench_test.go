package registry_test

import (
	"fmt"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/librarymesh/controlplane/registry"
)

// scaleStore has n services with a slice of 4 endpoints each.
func scaleStore(n int) *registry.Store {
	s := registry.NewStore(nil)
	for i := range n {
		name := fmt.Sprintf("svc-%d", i)
		s.Upsert("kube", makeService(name, fmt.Sprintf("10.96.%d.%d", i/250, i%250+1), svcPort("http", 8080)))
		s.Upsert("kube", scaleSlice(name, i, 0))
	}
	return s
}

func scaleSlice(name string, i, gen int) *discoveryv1.EndpointSlice {
	var addrs []string
	for j := range 4 {
		addrs = append(addrs, fmt.Sprintf("10.%d.%d.%d", 10+gen, i/250, (i%250)+j))
	}
	return makeSlice(name+"-x", name, 8080, addrs...)
}

// BenchmarkEndpointUpdate is one EndpointSlice change in a store of 1000
// services (about 1-2 ms on the 2-core machine, mostly copying the view's maps).
func BenchmarkEndpointUpdate(b *testing.B) {
	s := scaleStore(1000)
	b.ResetTimer()
	for i := range b.N {
		s.Upsert("kube", scaleSlice("svc-7", 7, i%2+1))
	}
}
