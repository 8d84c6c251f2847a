package kube_test

import (
	"testing"

	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/registry"
)

// A Sidecar reaches the store through its informer; an update and a delete
// follow.
func TestSidecarReachesTheStore(t *testing.T) {
	e := env.Need(t)
	ns := newNamespace(t, e)
	f := startSource(t, e, ns)
	ctx := t.Context()
	sc := &networkingv1.Sidecar{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"},
		Spec: networkingapi.Sidecar{
			Egress:                []*networkingapi.IstioEgressListener{{Hosts: []string{"./*", "istio-system/*"}}},
			OutboundTrafficPolicy: &networkingapi.OutboundTrafficPolicy{Mode: networkingapi.OutboundTrafficPolicy_REGISTRY_ONLY},
		}}
	created, err := e.Istio.NetworkingV1().Sidecars(ns).Create(ctx, sc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v := f.waitView(t, "Sidecar", func(v registry.View) bool { return len(v.Sidecars()) == 1 })
	got := v.Sidecars()[0]
	if got.Namespace != ns || got.Name != "default" || got.OutboundPolicy != registry.OutboundRegistryOnly ||
		len(got.Egress) != 1 || len(got.Egress[0].Hosts) != 2 || got.Created.IsZero() {
		t.Errorf("Sidecar = %+v", got)
	}
	created.Spec.Egress[0].Hosts = []string{"*/*"}
	if _, err := e.Istio.NetworkingV1().Sidecars(ns).Update(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitView(t, "Sidecar updated", func(v registry.View) bool {
		return len(v.Sidecars()) == 1 && len(v.Sidecars()[0].Egress[0].Hosts) == 1
	})
	if err := e.Istio.NetworkingV1().Sidecars(ns).Delete(ctx, "default", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitView(t, "Sidecar deleted", func(v registry.View) bool { return len(v.Sidecars()) == 0 })
}
