package registry_test

import (
	"testing"

	networkingapi "istio.io/api/networking/v1alpha3"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/registry"
)

// TestTLSMode: a workload has a sidecar (TLSMode istio) when labelled
// security.istio.io/tlsMode: istio, or as a pod without the label that
// Istio's injector annotated; its endpoints carry the mode. An unknown
// value is a warning naming the field, and the object stays in force.
func TestTLSMode(t *testing.T) {
	labelled := func(v string) map[string]string { return map[string]string{"app": "pg", meshname.TLSModeLabel: v} }
	injected := makePod("injected", "10.8.0.5", "inventory", map[string]string{"app": "inventory"})
	injected.Annotations = map[string]string{meshname.SidecarStatusAnnotation: `{"containers":["istio-proxy"]}`}
	optedOut := makePod("opted-out", "10.8.0.6", "inventory", map[string]string{"app": "inventory", meshname.TLSModeLabel: "disabled"})
	optedOut.Annotations = injected.Annotations
	entry := makeEntry("pg", pgHost, "10.128.0.14", "10.128.0.15", "10.128.0.16")
	entry.Spec.Endpoints[0].Labels = labelled("istio")
	entry.Spec.Endpoints[2].Labels = labelled("yes")
	tests := []struct {
		name, ip, want string
		obj            runtime.Object
		wantField      string // of a problem, "" for none
	}{
		{"pod labelled", "10.8.0.7", meshname.TLSModeIstio,
			makePod("labelled", "10.8.0.7", "inventory", labelled("istio")), ""},
		{"pod annotated by the injector", "10.8.0.5", meshname.TLSModeIstio, injected, ""},
		{"the label wins over the annotation", "10.8.0.6", "", optedOut, ""},
		{"plain pod", "10.8.0.8", "", makePod("plain", "10.8.0.8", "inventory", nil), ""},
		{"workload entry labelled", "10.128.0.20", meshname.TLSModeIstio, makeWorkloadEntry("we", "10.128.0.20", labelled("istio")), ""},
		{"workload entry with an unknown value", "10.128.0.21", "",
			makeWorkloadEntry("we-bad", "10.128.0.21", labelled("ISTIO")), "spec.labels[security.istio.io/tlsMode]"},
		{"entry endpoint labelled", "10.128.0.14", meshname.TLSModeIstio, entry, "spec.endpoints[2].labels[security.istio.io/tlsMode]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := registry.NewStore(nil)
			ps := s.Upsert("kube", tc.obj)
			switch {
			case tc.wantField == "" && len(ps) != 0:
				t.Fatalf("problems: %v", ps)
			case tc.wantField != "" && (len(ps) != 1 || ps[0].Field != tc.wantField || ps[0].Reason != registry.ReasonUnknownTLSMode):
				t.Fatalf("problems = %+v, want one %s at %s", ps, registry.ReasonUnknownTLSMode, tc.wantField)
			}
			w := s.View().WorkloadByIP(tc.ip)
			if w == nil {
				t.Fatalf("no workload at %s (the object was refused?)", tc.ip)
			}
			if w.TLSMode != tc.want {
				t.Errorf("TLSMode = %q, want %q", w.TLSMode, tc.want)
			}
		})
	}
}

// TestEndpointTLSMode: endpoints take the mode of their workload, whether
// an EndpointSlice names the pod or a workloadSelector picks it.
func TestEndpointTLSMode(t *testing.T) {
	const inv = "inventory.default.svc.cluster.local"
	selector := makeEntry("pg", pgHost)
	selector.Spec.WorkloadSelector = &networkingapi.WorkloadSelector{Labels: map[string]string{"app": "pg"}}
	s := registry.NewStore(nil)
	for _, o := range []runtime.Object{
		makeService("inventory", "10.96.0.20", svcPort("http", 8080)),
		makeSlice("inventory-1", "inventory", 8080, "10.8.0.5", "10.8.0.6"),
		makePod("a", "10.8.0.5", "inventory", map[string]string{meshname.TLSModeLabel: "istio"}),
		makePod("b", "10.8.0.6", "inventory", nil),
		selector,
		makeWorkloadEntry("vm-1", "10.128.0.15", map[string]string{"app": "pg", meshname.TLSModeLabel: "istio"}),
		makeWorkloadEntry("vm-2", "10.128.0.16", map[string]string{"app": "pg"}),
	} {
		if ps := s.Upsert("kube", o); len(ps) != 0 {
			t.Fatalf("problems: %v", ps)
		}
	}
	want := map[string]string{"10.8.0.5": meshname.TLSModeIstio, "10.8.0.6": "", "10.128.0.15": meshname.TLSModeIstio, "10.128.0.16": ""}
	for _, host := range []string{inv, pgHost} {
		for _, ep := range s.View().Endpoints(host) {
			if ep.TLSMode != want[ep.Address] {
				t.Errorf("%s endpoint %s: TLSMode %q, want %q", host, ep.Address, ep.TLSMode, want[ep.Address])
			}
		}
	}
}
