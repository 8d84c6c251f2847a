package server

import (
	"fmt"
	"log/slog"
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/snapshot"
)

// meshStore makes a store with n TCP services of 4 pod endpoints each.
func meshStore(b testing.TB, n int) *registry.Store {
	store := registry.NewStore(slog.New(slog.DiscardHandler))
	for i := range n {
		name := fmt.Sprintf("svc-%d", i)
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: corev1.ServiceSpec{
				ClusterIP: fmt.Sprintf("10.96.%d.%d", i/250, i%250+1),
				Ports:     []corev1.ServicePort{{Name: "tcp", Port: 5000, Protocol: corev1.ProtocolTCP}},
			},
		}
		if ps := store.Upsert("bench", svc); len(ps) > 0 {
			b.Fatal(ps)
		}
		if ps := store.Upsert("bench", endpointSlice(name, i, 0)); len(ps) > 0 {
			b.Fatal(ps)
		}
	}
	return store
}

func endpointSlice(svc string, i, gen int) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: svc + "-x", Namespace: "default", Labels: map[string]string{"kubernetes.io/service-name": svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("tcp"), Port: ptr(int32(5000))}},
	}
	for j := range 4 {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.%d.%d.%d", 10+gen, i/250, (i%250)*1+j)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)},
		})
	}
	return es
}

// TestPushPathScale reports the cost of the push path without gRPC: heap
// per connected proxy, and time and builds for a full and for an
// endpoint-only change. Run with -run PushPathScale -v -scale.
func TestPushPathScale(t *testing.T) {
	if !*scale {
		t.Skip("run with -scale")
	}
	const services, proxies = 1000, 1000
	store := meshStore(t, services)
	s, err := New(Config{GRPCAddr: "127.0.0.1:0", Registry: store})
	if err != nil {
		t.Fatal(err)
	}
	heap0 := heapInUse()
	start := time.Now()
	for i := range proxies {
		n := node(fmt.Sprintf("sidecar~10.200.%d.%d~pod-%d.default~default.svc.cluster.local", i/250, i%250, i))
		px, err := snapshot.ParseProxy(n)
		if err != nil {
			t.Fatal(err)
		}
		s.pusher.connect(s.ads.newConn(px, nil, false, nil))
	}
	t.Logf("connect %d proxies (%d services): %v, heap %.0f KB/proxy", proxies, services, time.Since(start), float64(heapInUse()-heap0)/1024/proxies)

	store.Upsert("bench", endpointSlice("svc-7", 7, 1))
	start = time.Now()
	built, changed := s.pusher.rebuild(time.Now())
	t.Logf("endpoint change: %v, %d rebuilt, %d changed", time.Since(start), built, changed)

	store.Upsert("bench", &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "new-svc", Namespace: "default"},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.97.0.1", Ports: []corev1.ServicePort{{Name: "tcp", Port: 5000}}},
	})
	start = time.Now()
	built, changed = s.pusher.rebuild(time.Now())
	t.Logf("new service: %v, %d rebuilt, %d changed", time.Since(start), built, changed)
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
