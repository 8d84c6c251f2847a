package kube

import (
	"errors"
	"maps"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	fakediscovery "k8s.io/client-go/discovery/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/librarymesh/controlplane/registry"
)

func TestServedIstioKinds(t *testing.T) {
	networking := &metav1.APIResourceList{GroupVersion: "networking.istio.io/v1", APIResources: []metav1.APIResource{
		{Name: "serviceentries"}, {Name: "workloadentries"}, {Name: "destinationrules"}, {Name: "virtualservices"}, {Name: "gateways"}, {Name: "sidecars"}, {Name: "workloadgroups"}}}
	networkingOld := &metav1.APIResourceList{GroupVersion: "networking.istio.io/v1", APIResources: []metav1.APIResource{
		{Name: "serviceentries"}}}
	security := &metav1.APIResourceList{GroupVersion: "security.istio.io/v1", APIResources: []metav1.APIResource{
		{Name: "peerauthentications"}, {Name: "authorizationpolicies"}}}
	all := map[string]bool{registry.KindServiceEntry: true, registry.KindWorkloadEntry: true,
		registry.KindDestinationRule: true, registry.KindPeerAuthentication: true, registry.KindSidecar: true,
		registry.KindAuthorizationPolicy: true, registry.KindVirtualService: true, registry.KindGateway: true, registry.KindWorkloadGroup: true}
	for _, tc := range []struct {
		name      string
		resources []*metav1.APIResourceList
		want      map[string]bool
	}{
		{"all served", []*metav1.APIResourceList{networking, security}, all},
		{"no Istio CRDs", nil, map[string]bool{registry.KindServiceEntry: false, registry.KindWorkloadEntry: false,
			registry.KindDestinationRule: false, registry.KindPeerAuthentication: false, registry.KindSidecar: false, registry.KindAuthorizationPolicy: false, registry.KindVirtualService: false,
			registry.KindGateway: false, registry.KindWorkloadGroup: false}},
		{"some", []*metav1.APIResourceList{networkingOld}, map[string]bool{registry.KindServiceEntry: true,
			registry.KindWorkloadEntry: false, registry.KindDestinationRule: false, registry.KindPeerAuthentication: false,
			registry.KindSidecar: false, registry.KindAuthorizationPolicy: false, registry.KindVirtualService: false,
			registry.KindGateway: false, registry.KindWorkloadGroup: false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &fakediscovery.FakeDiscovery{Fake: &k8stesting.Fake{Resources: tc.resources}}
			got, err := servedIstioKinds(d)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("served = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestServedIstioKindsDiscoveryError(t *testing.T) {
	fake := &k8stesting.Fake{}
	fake.AddReactor("get", "resource", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	if _, err := servedIstioKinds(&fakediscovery.FakeDiscovery{Fake: fake}); err == nil {
		t.Fatal("a failed discovery must be an error, not 'nothing served'")
	}
}
