package registry_test

import (
	"fmt"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"

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

// meshStore is a store shaped like the load test's scenario S, read from a
// YAML folder: n services, the first half Kubernetes Services with an
// EndpointSlice of 4 pods (each Pod an object too), the other half
// ServiceEntries with 2 VM endpoints, one file per service.
func meshStore(b *testing.B, n int) *registry.Store {
	s := registry.NewStore(nil)
	for i := range n {
		origin := fmt.Sprintf("/etc/controlplane/mesh/svc-%d.yaml", i)
		name := fmt.Sprintf("svc-%d", i)
		var objs []k8sruntime.Object
		if i < n/2 {
			objs = append(objs, makeService(name, fmt.Sprintf("10.96.%d.%d", i/250, i%250+1), svcPort("http", 8080)))
			slice := scaleSlice(name, i, 0)
			for j := range slice.Endpoints {
				ep := &slice.Endpoints[j]
				pod := fmt.Sprintf("%s-%d", name, j)
				ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: pod}
				objs = append(objs, makePod(pod, ep.Addresses[0], name, map[string]string{"app": name}))
			}
			objs = append(objs, slice)
		} else {
			objs = append(objs, makeEntry(name, name+".default.svc.cluster.local",
				fmt.Sprintf("10.32.%d.%d", i/250, i%250), fmt.Sprintf("10.33.%d.%d", i/250, i%250)))
		}
		if ps := s.UpsertBatch(origin, objs); len(ps) > 0 {
			b.Fatalf("%s: %v", origin, ps)
		}
	}
	return s
}

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkStoreHeap reports the heap a store of 1000 services (meshStore)
// holds, per service: the registry is most of a server's heap before any
// proxy connects (about 75% at scenario L).
func BenchmarkStoreHeap(b *testing.B) {
	const n = 1000
	var total uint64
	for b.Loop() {
		before := liveHeap()
		s := meshStore(b, n)
		total += liveHeap() - before
		runtime.KeepAlive(s)
	}
	b.ReportMetric(float64(total)/float64(b.N)/n/1024, "heap-KB/service")
}
