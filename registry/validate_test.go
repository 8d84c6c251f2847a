package registry_test

import (
	"testing"

	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/librarymesh/controlplane/registry"
)

const pgHost = "postgres-1-vm.default.svc.cluster.local"

func entryWith(mutate func(se *networkingv1.ServiceEntry)) *networkingv1.ServiceEntry {
	se := makeEntry("postgres-1-vm", pgHost, "10.128.0.14")
	mutate(se)
	return se
}

func TestUpsertRejectsInvalidObjects(t *testing.T) {
	tests := []struct {
		name       string
		obj        runtime.Object
		wantField  string
		wantReason string
	}{
		{"entry without hosts", entryWith(func(se *networkingv1.ServiceEntry) { se.Spec.Hosts = nil }),
			"spec.hosts", "MissingHosts"},
		{"entry port 0", entryWith(func(se *networkingv1.ServiceEntry) { se.Spec.Ports[0].Number = 0 }),
			"spec.ports[0].number", "InvalidPort"},
		{"entry port too big", entryWith(func(se *networkingv1.ServiceEntry) { se.Spec.Ports[0].Number = 70000 }),
			"spec.ports[0].number", "InvalidPort"},
		{"entry port clash", entryWith(func(se *networkingv1.ServiceEntry) {
			se.Spec.Ports = append(se.Spec.Ports, &networkingapi.ServicePort{Number: 5432, Name: "tcp-2"})
		}), "spec.ports[1].number", "PortClash"},
		{"entry static without endpoints", entryWith(func(se *networkingv1.ServiceEntry) { se.Spec.Endpoints = nil }),
			"spec.endpoints", "NoEndpoints"},
		{"entry static with a host name endpoint", entryWith(func(se *networkingv1.ServiceEntry) {
			se.Spec.Endpoints[0].Address = "db.example.com"
		}), "spec.endpoints[0].address", "InvalidAddress"},
		{"entry unparseable endpoint", entryWith(func(se *networkingv1.ServiceEntry) {
			se.Spec.Endpoints[0].Address = "10.128.0.999"
		}), "spec.endpoints[0].address", "InvalidAddress"},
		{"entry unknown resolution", entryWith(func(se *networkingv1.ServiceEntry) { se.Spec.Resolution = 42 }),
			"spec.resolution", "UnknownResolution"},
		{"entry endpoint names unknown port", entryWith(func(se *networkingv1.ServiceEntry) {
			se.Spec.Endpoints[0].Ports = map[string]uint32{"http": 8080}
		}), "spec.endpoints[0].ports[http]", "UnknownPortName"},
		{"entry bad address", entryWith(func(se *networkingv1.ServiceEntry) { se.Spec.Addresses = []string{"vip"} }),
			"spec.addresses[0]", "InvalidAddress"},
		{"service port 0", makeService("postgres-1-vm", "10.96.0.30", svcPort("tcp", 0)),
			"spec.ports[0].port", "InvalidPort"},
		{"service duplicate port", makeService("postgres-1-vm", "10.96.0.30", svcPort("tcp", 5432), svcPort("tcp2", 5432)),
			"spec.ports[1].port", "PortClash"},
		{"service bad cluster IP", makeService("postgres-1-vm", "10.96.0", svcPort("tcp", 5432)),
			"spec.clusterIP", "InvalidAddress"},
		{"slice without service label", func() runtime.Object {
			es := makeSlice("x", "postgres-1-vm", 5432, "10.8.0.9")
			es.Labels = nil
			return es
		}(), "metadata.labels", "MissingServiceName"},
		{"workload entry without address", makeWorkloadEntry("vm", "", nil), "spec.address", "MissingAddress"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := registry.NewStore(nil)
			good := []runtime.Object{makeEntry("postgres-1-vm", pgHost, "10.128.0.14"),
				makeService("postgres-1-vm", "10.96.0.30", svcPort("tcp", 5432))}
			for _, o := range good {
				if ps := s.Upsert("kube", o); len(ps) != 0 {
					t.Fatalf("good object rejected: %v", ps)
				}
			}
			before := s.View()
			ps := s.Upsert("kube", tc.obj)
			if !hasProblem(ps, tc.wantField, tc.wantReason) {
				t.Fatalf("problems = %v, want %s at %s", ps, tc.wantReason, tc.wantField)
			}
			if ps[0].Source != "default/"+objectName(tc.obj) || ps[0].Object == "" {
				t.Errorf("problem source/object = %q/%q", ps[0].Source, ps[0].Object)
			}
			if !hasProblem(s.Problems(), tc.wantField, tc.wantReason) {
				t.Errorf("store problems = %v, want it remembered", s.Problems())
			}
			if after := s.View(); after.Revision() != before.Revision() || len(after.Endpoints(pgHost)) != 1 {
				t.Errorf("the last good version must stay: revision %d -> %d, endpoints %v",
					before.Revision(), after.Revision(), after.Endpoints(pgHost))
			}
		})
	}
}

func objectName(o runtime.Object) string {
	switch v := o.(type) {
	case *networkingv1.ServiceEntry:
		return v.Name
	case *corev1.Service:
		return v.Name
	}
	type named interface{ GetName() string }
	return o.(named).GetName()
}

func hasProblem(ps []registry.Problem, field, reason string) bool {
	for _, p := range ps {
		if p.Field == field && p.Reason == reason {
			return true
		}
	}
	return false
}

func TestValidObjectClearsProblems(t *testing.T) {
	s := registry.NewStore(nil)
	bad := entryWith(func(se *networkingv1.ServiceEntry) { se.Spec.Hosts = nil })
	if ps := s.Upsert("kube", bad); len(ps) == 0 {
		t.Fatal("want a problem")
	}
	if ps := s.Upsert("kube", makeEntry("postgres-1-vm", pgHost, "10.128.0.14")); len(ps) != 0 {
		t.Fatalf("problems = %v", ps)
	}
	if ps := s.Problems(); len(ps) != 0 {
		t.Errorf("problems after fix = %v", ps)
	}
	if s.View().Service(pgHost) == nil {
		t.Error("fixed entry not stored")
	}
}
