package registry

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// randomVSObject is randomObject's universe plus VirtualServices (routing
// to hosts that come and go) and DestinationRules with subsets.
func randomVSObject(r *rand.Rand) runtime.Object {
	om := metav1.ObjectMeta{Name: fmt.Sprintf("o%d", r.IntN(3)), Namespace: []string{"a", "b"}[r.IntN(2)]}
	host := func() string {
		return fmt.Sprintf("o%d.%s.svc.cluster.local", r.IntN(3), []string{"a", "b"}[r.IntN(2)])
	}
	switch r.IntN(8) {
	case 0, 1:
		vs := &networkingv1.VirtualService{ObjectMeta: om}
		vs.Spec.Hosts = []string{host()}
		var port *networkingapi.PortSelector
		if r.IntN(2) == 0 {
			port = &networkingapi.PortSelector{Number: uint32(8080 + r.IntN(2))}
		}
		vs.Spec.Http = []*networkingapi.HTTPRoute{{Route: []*networkingapi.HTTPRouteDestination{
			{Destination: &networkingapi.Destination{Host: host(), Subset: []string{"", "v1"}[r.IntN(2)], Port: port}}}}}
		return vs
	case 2:
		dr := &networkingv1.DestinationRule{ObjectMeta: om}
		dr.Spec.Host = host()
		dr.Spec.Subsets = []*networkingapi.Subset{{Name: "v1", Labels: map[string]string{"app": "l0"}}}
		return dr
	}
	return randomObject(r)
}

// TestIncrementalVirtualServicesMatchFullBuild: after every write the
// incremental view's VirtualServices and their problems against the model
// equal a full rebuild's.
func TestIncrementalVirtualServicesMatchFullBuild(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	s := NewStore(nil)
	changed := 0 // steps whose problems differ from the step before's
	var last []Problem
	for i := range 1500 {
		obj := randomVSObject(r)
		if r.IntN(5) == 0 {
			key, _ := keyOf(obj)
			s.Delete("kube", key.Kind, key.Namespace, key.Name)
		} else {
			s.Upsert("kube", obj)
		}
		got := s.view.Load()
		want := fullView(s.db.Txn(false), got.revision, s.trustDomain)
		if !reflect.DeepEqual(got.virtualServices, want.virtualServices) && len(got.virtualServices)+len(want.virtualServices) > 0 {
			t.Fatalf("step %d (%T): VirtualServices differ:\nincremental %v\nfull        %v", i, obj, got.virtualServices, want.virtualServices)
		}
		gp, wp := append([]Problem(nil), got.vsProblems...), append([]Problem(nil), want.vsProblems...)
		sortProblems(gp)
		sortProblems(wp)
		if !reflect.DeepEqual(gp, wp) && len(gp)+len(wp) > 0 {
			t.Fatalf("step %d (%T): VirtualService problems differ:\nincremental %v\nfull        %v", i, obj, gp, wp)
		}
		if !reflect.DeepEqual(gp, last) {
			changed++
		}
		last = gp
	}
	if changed < 100 {
		t.Errorf("the VirtualService problems changed in %d of 1500 steps: the universe does not exercise them coming and going", changed)
	}
}
