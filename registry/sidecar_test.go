package registry_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	networkingv1beta1 "istio.io/client-go/pkg/apis/networking/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/registry"
)

func TestSidecarConvert(t *testing.T) {
	tests := []struct {
		name   string
		spec   func(sc *networkingapi.Sidecar)
		want   *registry.Sidecar
		field  string // of the problem, when one is expected
		reason string
	}{{
		name: "egress, selector and REGISTRY_ONLY",
		spec: func(sc *networkingapi.Sidecar) {
			sc.WorkloadSelector = &networkingapi.WorkloadSelector{Labels: map[string]string{"app": "web"}}
			sc.Egress = []*networkingapi.IstioEgressListener{
				{Port: &networkingapi.SidecarPort{Number: 5432, Name: "tcp"}, Hosts: []string{"default/postgres-1-vm.default.svc.cluster.local"}},
				{Hosts: []string{"./*", "istio-system/*", "*/*.Example.com", "~/*"}},
			}
			sc.OutboundTrafficPolicy = &networkingapi.OutboundTrafficPolicy{Mode: networkingapi.OutboundTrafficPolicy_REGISTRY_ONLY}
		},
		want: &registry.Sidecar{Namespace: "default", Name: "sc", Selector: map[string]string{"app": "web"},
			OutboundPolicy: registry.OutboundRegistryOnly, Egress: []registry.Egress{
				{Port: 5432, Hosts: []registry.EgressHost{{Namespace: "default", Host: "postgres-1-vm.default.svc.cluster.local"}}},
				{Hosts: []registry.EgressHost{{Namespace: ".", Host: "*"}, {Namespace: "istio-system", Host: "*"},
					{Namespace: "*", Host: "*.example.com"}, {Namespace: "~", Host: "*"}}},
			}},
	}, {
		name: "ALLOW_ANY and no egress",
		spec: func(sc *networkingapi.Sidecar) {
			sc.OutboundTrafficPolicy = &networkingapi.OutboundTrafficPolicy{Mode: networkingapi.OutboundTrafficPolicy_ALLOW_ANY}
		},
		want: &registry.Sidecar{Namespace: "default", Name: "sc", OutboundPolicy: registry.OutboundAllowAny},
	}, {
		name: "ingress is a warning, the rest is in force",
		spec: func(sc *networkingapi.Sidecar) {
			sc.Ingress = []*networkingapi.IstioIngressListener{{Port: &networkingapi.SidecarPort{Number: 80}}}
			sc.Egress = []*networkingapi.IstioEgressListener{{Hosts: []string{"./*"}}}
		},
		want:  &registry.Sidecar{Namespace: "default", Name: "sc", Egress: []registry.Egress{{Hosts: []registry.EgressHost{{Namespace: ".", Host: "*"}}}}},
		field: "spec.ingress", reason: registry.ReasonUnsupportedField,
	}, {
		name: "host without namespace",
		spec: func(sc *networkingapi.Sidecar) {
			sc.Egress = []*networkingapi.IstioEgressListener{{Hosts: []string{"./*", "reviews.default.svc.cluster.local"}}}
		},
		field: "spec.egress[0].hosts[1]", reason: "InvalidEgressHost",
	}, {
		name: "wildcard in the middle",
		spec: func(sc *networkingapi.Sidecar) {
			sc.Egress = []*networkingapi.IstioEgressListener{{Hosts: []string{"*/a.*.com"}}}
		},
		field: "spec.egress[0].hosts[0]", reason: "InvalidEgressHost",
	}, {
		name: "bad namespace",
		spec: func(sc *networkingapi.Sidecar) {
			sc.Egress = []*networkingapi.IstioEgressListener{{Hosts: []string{"prod*/a.com"}}}
		},
		field: "spec.egress[0].hosts[0]", reason: "InvalidEgressHost",
	}, {
		name:  "empty workloadSelector",
		spec:  func(sc *networkingapi.Sidecar) { sc.WorkloadSelector = &networkingapi.WorkloadSelector{} },
		field: "spec.workloadSelector.labels", reason: "MissingLabels",
	}, {
		name:  "no hosts",
		spec:  func(sc *networkingapi.Sidecar) { sc.Egress = []*networkingapi.IstioEgressListener{{}} },
		field: "spec.egress[0].hosts", reason: "MissingHosts",
	}, {
		name: "two listeners without a port",
		spec: func(sc *networkingapi.Sidecar) {
			sc.Egress = []*networkingapi.IstioEgressListener{{Hosts: []string{"./*"}}, {Hosts: []string{"*/*"}}}
		},
		field: "spec.egress[1].port", reason: "DuplicateEgress",
	}, {
		name: "port out of range",
		spec: func(sc *networkingapi.Sidecar) {
			sc.Egress = []*networkingapi.IstioEgressListener{{Port: &networkingapi.SidecarPort{Number: 70000}, Hosts: []string{"./*"}}}
		},
		field: "spec.egress[0].port.number", reason: "InvalidPort",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := registry.NewStore(nil)
			sc := &networkingv1.Sidecar{ObjectMeta: meta("sc")}
			tc.spec(&sc.Spec)
			ps := s.Upsert("kube", sc)
			if tc.reason != "" && !hasProblem(ps, tc.field, tc.reason) {
				t.Errorf("problems = %v, want %s at %s", ps, tc.reason, tc.field)
			}
			for _, p := range ps {
				if p.Object != "Sidecar default/sc" {
					t.Errorf("problem names %q, want the Sidecar", p.Object)
				}
			}
			got := s.View().Sidecars()
			if tc.want == nil {
				if len(got) != 0 {
					t.Errorf("a Sidecar with a blocking problem was stored: %+v", got[0])
				}
				return
			}
			if len(got) != 1 || !reflect.DeepEqual(got[0], tc.want) {
				t.Errorf("sidecars = %+v, want %+v (problems %v)", got, tc.want, ps)
			}
		})
	}
}

// Every API version of Sidecar is read, and a change to a Sidecar is a
// policy change of the model.
func TestSidecarVersionsAndChanges(t *testing.T) {
	s := registry.NewStore(nil)
	egress := []*networkingapi.IstioEgressListener{{Hosts: []string{"./*"}}}
	v1 := &networkingv1.Sidecar{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "ns1"}}
	v1.Spec.Egress = egress
	beta := &networkingv1beta1.Sidecar{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "ns2"}}
	beta.Spec.Egress = egress
	alpha := &networkingv1alpha3.Sidecar{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "ns3"}}
	alpha.Spec.Egress = egress
	rev := s.View().Revision()
	for _, ps := range [][]registry.Problem{s.Upsert("kube", v1), s.Upsert("kube", beta), s.Upsert("kube", alpha)} {
		if len(ps) != 0 {
			t.Fatal(ps)
		}
	}
	if got := len(s.View().Sidecars()); got != 3 {
		t.Fatalf("%d sidecars, want 3", got)
	}
	changes := s.ChangesSince(rev)
	if len(changes) != 3 || !changes[0].Policy || changes[0].EndpointsOnly {
		t.Errorf("changes = %+v, want three policy changes", changes)
	}
}

// Of two Sidecars without a selector in a namespace the older is in force;
// the other is a problem naming both. Deleting the winner brings the other
// into force.
func TestSidecarConflict(t *testing.T) {
	s := registry.NewStore(nil)
	old := &networkingv1.Sidecar{ObjectMeta: metav1.ObjectMeta{Name: "zz-old", Namespace: "default",
		CreationTimestamp: metav1.NewTime(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))}}
	old.Spec.Egress = []*networkingapi.IstioEgressListener{{Hosts: []string{"./*"}}}
	young := &networkingv1.Sidecar{ObjectMeta: metav1.ObjectMeta{Name: "aa-young", Namespace: "default",
		CreationTimestamp: metav1.NewTime(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))}}
	young.Spec.Egress = []*networkingapi.IstioEgressListener{{Hosts: []string{"*/*"}}}
	sel := &networkingv1.Sidecar{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}}
	sel.Spec.WorkloadSelector = &networkingapi.WorkloadSelector{Labels: map[string]string{"app": "web"}}
	for _, o := range []*networkingv1.Sidecar{young, old, sel} {
		if ps := s.Upsert("kube", o); len(ps) != 0 {
			t.Fatal(ps)
		}
	}
	names := func() []string {
		var out []string
		for _, sc := range s.View().Sidecars() {
			out = append(out, sc.Name)
		}
		return out
	}
	if got := names(); !reflect.DeepEqual(got, []string{"zz-old", "web"}) {
		t.Errorf("sidecars in force = %v, want [zz-old web]", got)
	}
	ps := s.Problems()
	if len(ps) != 1 || ps[0].Reason != registry.ReasonSidecarConflict || ps[0].Object != "Sidecar default/aa-young" ||
		ps[0].Field != "spec.workloadSelector" || !strings.Contains(ps[0].Message, "Sidecar default/zz-old") ||
		!strings.Contains(ps[0].Message, "older") {
		t.Errorf("problems = %v, want one SidecarConflict of aa-young naming zz-old", ps)
	}
	s.Delete("kube", registry.KindSidecar, "default", "zz-old")
	if got := names(); !reflect.DeepEqual(got, []string{"aa-young", "web"}) {
		t.Errorf("after deleting the winner: sidecars = %v, want [aa-young web]", got)
	}
	if ps := s.Problems(); len(ps) != 0 {
		t.Errorf("problems after deleting the winner = %v", ps)
	}
}

func FuzzParseEgressHost(f *testing.F) {
	for _, s := range []string{"./*", "*/*", "~/*", "istio-system/*", "default/a.b.svc.cluster.local", "*/*.example.com",
		"a.b", "/x", "ns/", "ns/*.", "ns/a..b", "ns/a.*.b", "a/b/c", "prod*/x", " ./* ", "ns/A.COM", "ns/" + strings.Repeat("a", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := registry.ParseEgressHost(s)
		if err != nil {
			if err.Error() == "" || h != (registry.EgressHost{}) {
				t.Fatalf("error %v with a host %+v", err, h)
			}
			return
		}
		if h.Namespace == "" || h.Host == "" || strings.ToLower(h.Host) != h.Host {
			t.Fatalf("%q parsed to %+v", s, h)
		}
		again, err := registry.ParseEgressHost(h.String())
		if err != nil || again != h {
			t.Fatalf("%q -> %+v does not round trip: %+v, %v", s, h, again, err)
		}
		if own := strings.Replace(h.Host, "*", "x", 1); !h.MatchHost(own) {
			t.Fatalf("%+v does not match its own host", h)
		}
	})
}
