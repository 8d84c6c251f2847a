package registry_test

import (
	"reflect"
	"testing"

	networkingapi "istio.io/api/networking/v1alpha3"
	securityapi "istio.io/api/security/v1beta1"
	typeapi "istio.io/api/type/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	securityv1beta1 "istio.io/client-go/pkg/apis/security/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/registry"
)

func TestPeerAuthentication(t *testing.T) {
	s := registry.NewStore(nil)
	mesh := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "istio-system"}}
	mesh.Spec.Mtls = &securityapi.PeerAuthentication_MutualTLS{Mode: securityapi.PeerAuthentication_MutualTLS_STRICT}
	db := &securityv1beta1.PeerAuthentication{ObjectMeta: meta("db")}
	db.Spec.Selector = &typeapi.WorkloadSelector{MatchLabels: map[string]string{"app": "pg"}}
	db.Spec.PortLevelMtls = map[uint32]*securityapi.PeerAuthentication_MutualTLS{
		9187: {Mode: securityapi.PeerAuthentication_MutualTLS_PERMISSIVE}}
	for _, o := range []*securityv1.PeerAuthentication{mesh} {
		if ps := s.Upsert("kube", o); len(ps) != 0 {
			t.Fatal(ps)
		}
	}
	if ps := s.Upsert("kube", db); len(ps) != 0 {
		t.Fatal(ps)
	}
	want := []*registry.PeerAuthentication{
		{Namespace: "default", Name: "db", Selector: map[string]string{"app": "pg"},
			PortModes: map[uint32]registry.MTLSMode{9187: registry.MTLSPermissive}},
		{Namespace: "istio-system", Name: "default", Mode: registry.MTLSStrict},
	}
	if got := s.View().PeerAuthentications(); !reflect.DeepEqual(got, want) {
		t.Errorf("peer authentications = %+v, want %+v", got, want)
	}
	bad := &securityv1.PeerAuthentication{ObjectMeta: meta("bad")}
	bad.Spec.PortLevelMtls = db.Spec.PortLevelMtls
	if ps := s.Upsert("kube", bad); !hasProblem(ps, "spec.portLevelMtls", "PortLevelWithoutSelector") {
		t.Errorf("problems = %v", ps)
	}
}

func TestDestinationRule(t *testing.T) {
	tests := []struct {
		name   string
		spec   func(dr *networkingapi.DestinationRule)
		want   *registry.DestinationRule
		reason string
	}{{
		name: "short host is qualified",
		spec: func(dr *networkingapi.DestinationRule) {
			dr.Host = "inventory"
			dr.TrafficPolicy = &networkingapi.TrafficPolicy{Tls: &networkingapi.ClientTLSSettings{Mode: networkingapi.ClientTLSSettings_ISTIO_MUTUAL}}
			dr.Subsets = []*networkingapi.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}}
		},
		want: &registry.DestinationRule{Namespace: "default", Name: "dr", Host: "inventory.default.svc.cluster.local",
			TrafficPolicy: &registry.TrafficPolicy{TLS: &registry.ClientTLS{Mode: registry.ClientTLSIstioMutual}}, Subsets: []registry.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}}},
	}, {
		name: "no tls settings",
		spec: func(dr *networkingapi.DestinationRule) { dr.Host = "*.local" },
		want: &registry.DestinationRule{Namespace: "default", Name: "dr", Host: "*.local"},
	}, {
		name:   "missing host",
		spec:   func(*networkingapi.DestinationRule) {},
		reason: "MissingHost",
	}, {
		name: "duplicate subset",
		spec: func(dr *networkingapi.DestinationRule) {
			dr.Host = "a.b"
			dr.Subsets = []*networkingapi.Subset{{Name: "v1"}, {Name: "v1"}}
		},
		reason: "DuplicateSubset",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := registry.NewStore(nil)
			dr := &networkingv1.DestinationRule{ObjectMeta: meta("dr")}
			tc.spec(&dr.Spec)
			ps := s.Upsert("kube", dr)
			if tc.reason != "" {
				if len(ps) == 0 || ps[0].Reason != tc.reason || len(s.View().DestinationRules()) != 0 {
					t.Errorf("problems = %v, want %s and nothing stored", ps, tc.reason)
				}
				return
			}
			if got := s.View().DestinationRules(); len(got) != 1 || !reflect.DeepEqual(got[0], tc.want) {
				t.Errorf("destination rules = %+v, want %+v (problems %v)", got, tc.want, ps)
			}
		})
	}
}
