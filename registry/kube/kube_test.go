package kube_test

import (
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/registry/kube"
)

func hostOf(ns, name string) string { return name + "." + ns + ".svc.cluster.local" }

func TestServiceEndpointSliceAndServiceEntryMerge(t *testing.T) {
	e := env.Need(t)
	ns := newNamespace(t, e)
	f := startSource(t, e, ns)
	ctx := t.Context()
	host := hostOf(ns, "reviews")
	if _, err := e.Kube.CoreV1().Services(ns).Create(ctx, makeService(ns, "reviews", 9080), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	slice := makeEndpointSlice(ns, "reviews", "reviews-1", 9080, "10.1.0.5")
	if _, err := e.Kube.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	se := makeServiceEntry(ns, "reviews-vm", host, 9080, "10.2.0.7")
	if _, err := e.Istio.NetworkingV1().ServiceEntries(ns).Create(ctx, se, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	v := f.waitView(t, "merged service with pod and VM endpoints", func(v registry.View) bool {
		return slices.Equal(addresses(v.Endpoints(host)), []string{"10.1.0.5", "10.2.0.7"})
	})
	svc := v.Service(host)
	wantSources := []string{"Service " + ns + "/reviews", "ServiceEntry " + ns + "/reviews-vm"}
	if !slices.Equal(svc.Sources, wantSources) {
		t.Errorf("sources = %v, want %v", svc.Sources, wantSources)
	}
	if p, ok := svc.Port(9080); !ok || p.Name != "http" {
		t.Errorf("port 9080 = %+v, %v", p, ok)
	}
	if len(svc.Addresses) == 0 || !strings.HasPrefix(svc.Addresses[0], "10.0.0.") {
		t.Errorf("addresses = %v, want the cluster IP from 10.0.0.0/24", svc.Addresses)
	}
	if w := v.WorkloadByIP("10.2.0.7"); w == nil || w.ServiceAccount != "vm" {
		t.Errorf("VM workload = %+v", w)
	}
}

func TestUpdateAndDeletePropagate(t *testing.T) {
	e := env.Need(t)
	ns := newNamespace(t, e)
	f := startSource(t, e, ns)
	ctx := t.Context()
	host := hostOf(ns, "ratings")
	if _, err := e.Kube.CoreV1().Services(ns).Create(ctx, makeService(ns, "ratings", 8080), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Kube.DiscoveryV1().EndpointSlices(ns).Create(ctx,
		makeEndpointSlice(ns, "ratings", "ratings-1", 8080, "10.1.0.5"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	created, err := e.Istio.NetworkingV1().ServiceEntries(ns).Create(ctx,
		makeServiceEntry(ns, "ratings-vm", host, 8080, "10.2.0.7"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.waitView(t, "initial endpoints", endpointsAre(host, "10.1.0.5", "10.2.0.7"))

	created.Spec.Endpoints[0].Address = "10.2.0.8"
	if _, err := e.Istio.NetworkingV1().ServiceEntries(ns).Update(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitView(t, "VM address updated", endpointsAre(host, "10.1.0.5", "10.2.0.8"))

	slice, err := e.Kube.DiscoveryV1().EndpointSlices(ns).Get(ctx, "ratings-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	slice.Endpoints[0].Addresses = []string{"10.1.0.6"}
	if _, err := e.Kube.DiscoveryV1().EndpointSlices(ns).Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitView(t, "pod address updated", endpointsAre(host, "10.1.0.6", "10.2.0.8"))

	if err := e.Istio.NetworkingV1().ServiceEntries(ns).Delete(ctx, "ratings-vm", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	v := f.waitView(t, "ServiceEntry deleted", endpointsAre(host, "10.1.0.6"))
	if got := v.Service(host).Sources; !slices.Equal(got, []string{"Service " + ns + "/ratings"}) {
		t.Errorf("sources after deleting the ServiceEntry = %v", got)
	}
	if w := v.WorkloadByIP("10.2.0.8"); w != nil {
		t.Errorf("VM workload still there: %+v", w)
	}

	if err := e.Kube.CoreV1().Services(ns).Delete(ctx, "ratings", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitView(t, "Service deleted", func(v registry.View) bool { return v.Service(host) == nil })
	if got := counter(t, f.reg, "controlplane_kube_store_writes_total", "ServiceEntry", "delete"); got != 1 {
		t.Errorf("ServiceEntry deletes counted = %v, want 1", got)
	}
}

func TestV1beta1ServiceEntrySeenThroughV1(t *testing.T) {
	e := env.Need(t)
	ns := newNamespace(t, e)
	f := startSource(t, e, ns)
	host := "legacy.example.internal"
	se := makeServiceEntryV1beta1(ns, "legacy", host, 5432, "10.2.0.9")
	se.Spec.Ports[0].Protocol = "TCP"
	if _, err := e.Istio.NetworkingV1beta1().ServiceEntries(ns).Create(t.Context(), se, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	v := f.waitView(t, "v1beta1 ServiceEntry", endpointsAre(host, "10.2.0.9"))
	svc := v.Service(host)
	if svc.Resolution != registry.ResolutionStatic || svc.Ports[0].Protocol != registry.ProtocolTCP {
		t.Errorf("service = %+v", svc)
	}
}

func TestNamespacesLimitWhatIsWatched(t *testing.T) {
	e := env.Need(t)
	watched, other := newNamespace(t, e), newNamespace(t, e)
	f := startSource(t, e, watched)
	ctx := t.Context()
	if _, err := e.Istio.NetworkingV1().ServiceEntries(other).Create(ctx,
		makeServiceEntry(other, "elsewhere", "elsewhere.example.internal", 80, "10.2.1.1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Istio.NetworkingV1().ServiceEntries(watched).Create(ctx,
		makeServiceEntry(watched, "here", "here.example.internal", 80, "10.2.1.2"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	v := f.waitView(t, "watched entry", endpointsAre("here.example.internal", "10.2.1.2"))
	// The unwatched entry was created first; the watched one is in, so the
	// other would be too if it were watched.
	if svc := v.Service("elsewhere.example.internal"); svc != nil {
		t.Errorf("entry from unwatched namespace %s is in the store: %+v", other, svc)
	}
}

func endpointsAre(host string, addrs ...string) func(registry.View) bool {
	return func(v registry.View) bool { return slices.Equal(addresses(v.Endpoints(host)), addrs) }
}

// waitEvent polls the API for a Warning Event on the ServiceEntry, with the
// reason unless it is "", and returns its message.
func waitEvent(t *testing.T, ns, name, reason string) string {
	t.Helper()
	sel := "involvedObject.name=" + name + ",type=Warning"
	if reason != "" {
		sel += ",reason=" + reason
	}
	var msg string
	waitFor(t, "Warning Event "+reason+" on "+name, func() bool {
		list, err := env.Kube.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{FieldSelector: sel})
		if err != nil || len(list.Items) == 0 {
			return false
		}
		ev := list.Items[0]
		msg = ev.Message
		return ev.Source.Component == kube.Component && ev.InvolvedObject.Kind == "ServiceEntry"
	})
	return msg
}
