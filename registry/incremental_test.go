package registry

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	networkingapi "istio.io/api/networking/v1alpha3"
	securityapi "istio.io/api/security/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// randomObject makes one of a small universe of objects, so that writes
// collide: services, slices, pods, WorkloadEntries, ServiceEntries (inline
// endpoints or a selector) and PeerAuthentications.
func randomObject(r *rand.Rand) runtime.Object {
	n := r.IntN(3)
	om := metav1.ObjectMeta{Name: fmt.Sprintf("o%d", n), Namespace: []string{"a", "b"}[r.IntN(2)]}
	ip := func() string { return fmt.Sprintf("10.0.0.%d", r.IntN(6)+1) }
	labels := map[string]string{"app": fmt.Sprintf("l%d", r.IntN(2))}
	switch r.IntN(6) {
	case 0:
		return &corev1.Service{ObjectMeta: om, Spec: corev1.ServiceSpec{ClusterIP: fmt.Sprintf("10.96.0.%d", n+1),
			Ports: []corev1.ServicePort{{Name: "http", Port: int32(8080 + r.IntN(2))}}}}
	case 1:
		om.Labels = map[string]string{discoveryv1.LabelServiceName: fmt.Sprintf("o%d", r.IntN(3))}
		return &discoveryv1.EndpointSlice{ObjectMeta: om, AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{ip()},
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: fmt.Sprintf("o%d", r.IntN(3))}}}}
	case 2:
		p := &corev1.Pod{ObjectMeta: om}
		p.Labels, p.Spec.ServiceAccountName, p.Status.PodIP = labels, fmt.Sprintf("sa%d", r.IntN(2)), ip()
		return p
	case 3:
		we := &networkingv1.WorkloadEntry{ObjectMeta: om}
		we.Spec.Address, we.Spec.Labels, we.Spec.ServiceAccount = ip(), labels, "vm"
		return we
	case 4:
		se := &networkingv1.ServiceEntry{ObjectMeta: om}
		se.Spec.Hosts = []string{fmt.Sprintf("o%d.%s.svc.cluster.local", r.IntN(3), om.Namespace)}
		se.Spec.Resolution = networkingapi.ServiceEntry_STATIC
		se.Spec.Ports = []*networkingapi.ServicePort{{Number: 5432, Name: "tcp"}}
		if r.IntN(2) == 0 {
			se.Spec.WorkloadSelector = &networkingapi.WorkloadSelector{Labels: labels}
		} else {
			se.Spec.Endpoints = []*networkingapi.WorkloadEntry{{Address: ip(), ServiceAccount: "x"}}
		}
		return se
	}
	pa := &securityv1.PeerAuthentication{ObjectMeta: om}
	pa.Spec.Mtls = &securityapi.PeerAuthentication_MutualTLS{Mode: securityapi.PeerAuthentication_MutualTLS_Mode(r.IntN(4))}
	return pa
}

func TestIncrementalViewMatchesFullBuild(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	s := NewStore(nil)
	for i := range 2000 {
		obj := randomObject(r)
		origin := []string{"kube", "dir/x.yaml"}[r.IntN(2)]
		if r.IntN(5) == 0 {
			key, _ := keyOf(obj)
			s.Delete(origin, key.Kind, key.Namespace, key.Name)
		} else {
			s.Upsert(origin, obj)
		}
		got := s.view.Load()
		want := fullView(s.db.Txn(false), got.revision, s.trustDomain)
		for _, c := range []struct {
			name      string
			got, want any
		}{
			{"services", got.services, want.services}, {"byHost", got.byHost, want.byHost},
			{"endpoints", got.endpoints, want.endpoints}, {"byIP", got.byIP, want.byIP},
			{"svcsByAddr", got.svcsByAddr, want.svcsByAddr},
			{"peerAuths", got.peerAuths, want.peerAuths}, {"destRules", got.destRules, want.destRules},
		} {
			if !reflect.DeepEqual(c.got, c.want) && !(reflect.ValueOf(c.got).Len() == 0 && reflect.ValueOf(c.want).Len() == 0) {
				t.Fatalf("step %d (%T %s): %s differ:\nincremental %v\nfull        %v", i, obj, origin, c.name, c.got, c.want)
			}
		}
	}
}
