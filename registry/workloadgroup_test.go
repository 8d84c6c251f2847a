package registry_test

import (
	"testing"
	"time"

	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	networkingv1beta1 "istio.io/client-go/pkg/apis/networking/v1beta1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/librarymesh/controlplane/registry"
)

func makeGroup(name string, mutate func(*networkingapi.WorkloadGroup)) *networkingv1.WorkloadGroup {
	g := &networkingv1.WorkloadGroup{ObjectMeta: meta(name), Spec: networkingapi.WorkloadGroup{
		Metadata: &networkingapi.WorkloadGroup_ObjectMeta{Labels: map[string]string{"app": "postgres"},
			Annotations: map[string]string{"team": "db"}},
		Template: &networkingapi.WorkloadEntry{Ports: map[string]uint32{"tcp": 5432}, ServiceAccount: "postgres",
			Network: "vm-net", Locality: "eu/west-1", Labels: map[string]string{"tier": "db"}},
		Probe: &networkingapi.ReadinessProbe{PeriodSeconds: 2, FailureThreshold: 2,
			HealthCheckMethod: &networkingapi.ReadinessProbe_TcpSocket{TcpSocket: &networkingapi.TCPHealthCheckConfig{Port: 5432}}},
	}}
	if mutate != nil {
		mutate(&g.Spec)
	}
	return g
}

func TestWorkloadGroupModel(t *testing.T) {
	s := registry.NewStore(nil)
	if ps := s.Upsert("kube", makeGroup("postgres", nil)); len(ps) != 0 {
		t.Fatalf("problems: %v", ps)
	}
	g := s.View().WorkloadGroup("default", "postgres")
	if g == nil {
		t.Fatalf("group not in the view: %v", s.View().WorkloadGroups())
	}
	if g.Template.ServiceAccount != "postgres" || g.Template.Ports["tcp"] != 5432 || g.Template.Network != "vm-net" ||
		g.Template.Locality != "eu/west-1" || g.Labels["app"] != "postgres" || g.Annotations["team"] != "db" ||
		g.Template.Labels["tier"] != "db" {
		t.Errorf("group = %+v", g)
	}
	want := registry.Probe{InitialDelay: 0, Timeout: time.Second, Period: 2 * time.Second, SuccessThreshold: 1, FailureThreshold: 2,
		TCPSocket: &registry.TCPSocketProbe{Port: 5432}}
	if p := g.Probe; p == nil || p.Timeout != want.Timeout || p.Period != want.Period || p.SuccessThreshold != 1 ||
		p.FailureThreshold != 2 || p.TCPSocket == nil || p.TCPSocket.Port != 5432 || p.HTTPGet != nil || p.Exec != nil {
		t.Errorf("probe = %+v, want %+v", g.Probe, want)
	}
	s.Delete("kube", registry.KindWorkloadGroup, "default", "postgres")
	if len(s.View().WorkloadGroups()) != 0 {
		t.Errorf("deleted group still in the view")
	}
}

// Every served version converts to the same model.
func TestWorkloadGroupVersions(t *testing.T) {
	v1 := makeGroup("g", nil)
	for _, obj := range []runtime.Object{v1,
		&networkingv1beta1.WorkloadGroup{ObjectMeta: meta("g"), Spec: *v1.Spec.DeepCopy()},
		&networkingv1alpha3.WorkloadGroup{ObjectMeta: meta("g"), Spec: *v1.Spec.DeepCopy()},
	} {
		s := registry.NewStore(nil)
		if ps := s.Upsert("kube", obj); len(ps) != 0 {
			t.Fatalf("%T: %v", obj, ps)
		}
		if g := s.View().WorkloadGroup("default", "g"); g == nil || g.Probe.TCPSocket.Port != 5432 {
			t.Errorf("%T: group %+v", obj, g)
		}
	}
}

func TestWorkloadGroupRejected(t *testing.T) {
	httpProbe := func(h *networkingapi.HTTPHealthCheckConfig) func(*networkingapi.WorkloadGroup) {
		return func(g *networkingapi.WorkloadGroup) {
			g.Probe.HealthCheckMethod = &networkingapi.ReadinessProbe_HttpGet{HttpGet: h}
		}
	}
	tests := []struct {
		name          string
		mutate        func(*networkingapi.WorkloadGroup)
		field, reason string
	}{
		{"no template", func(g *networkingapi.WorkloadGroup) { g.Template = nil }, "spec.template", "InvalidTemplate"},
		{"template address", func(g *networkingapi.WorkloadGroup) { g.Template.Address = "10.0.0.1" }, "spec.template.address", "InvalidTemplate"},
		{"template port", func(g *networkingapi.WorkloadGroup) { g.Template.Ports["tcp"] = 70000 }, "spec.template.ports[tcp]", "InvalidPort"},
		{"service account", func(g *networkingapi.WorkloadGroup) { g.Template.ServiceAccount = "Not Valid" }, "spec.template.serviceAccount", "InvalidTemplate"},
		{"label", func(g *networkingapi.WorkloadGroup) { g.Metadata.Labels["bad key!"] = "x" }, "spec.metadata.labels[bad key!]", "InvalidLabel"},
		{"probe without method", func(g *networkingapi.WorkloadGroup) { g.Probe.HealthCheckMethod = nil }, "spec.probe", "InvalidProbe"},
		{"probe tcp port 0", func(g *networkingapi.WorkloadGroup) {
			g.Probe.HealthCheckMethod = &networkingapi.ReadinessProbe_TcpSocket{TcpSocket: &networkingapi.TCPHealthCheckConfig{}}
		}, "spec.probe.tcpSocket.port", "InvalidProbe"},
		{"probe http scheme", httpProbe(&networkingapi.HTTPHealthCheckConfig{Port: 80, Scheme: "ftp"}), "spec.probe.httpGet.scheme", "InvalidProbe"},
		{"probe http path", httpProbe(&networkingapi.HTTPHealthCheckConfig{Port: 80, Path: "healthz"}), "spec.probe.httpGet.path", "InvalidProbe"},
		{"probe http header", httpProbe(&networkingapi.HTTPHealthCheckConfig{Port: 80,
			HttpHeaders: []*networkingapi.HTTPHeader{{Name: "", Value: "x"}}}), "spec.probe.httpGet.httpHeaders[0].name", "InvalidProbe"},
		{"probe exec empty", func(g *networkingapi.WorkloadGroup) {
			g.Probe.HealthCheckMethod = &networkingapi.ReadinessProbe_Exec{Exec: &networkingapi.ExecHealthCheckConfig{}}
		}, "spec.probe.exec.command", "InvalidProbe"},
		{"probe grpc", func(g *networkingapi.WorkloadGroup) {
			g.Probe.HealthCheckMethod = &networkingapi.ReadinessProbe_Grpc{Grpc: &networkingapi.GrpcHealthCheckConfig{Port: 9000}}
		}, "spec.probe.grpc", "InvalidProbe"},
		{"negative period", func(g *networkingapi.WorkloadGroup) { g.Probe.PeriodSeconds = -1 }, "spec.probe.periodSeconds", "InvalidProbe"},
		{"negative timeout", func(g *networkingapi.WorkloadGroup) { g.Probe.TimeoutSeconds = -3 }, "spec.probe.timeoutSeconds", "InvalidProbe"},
		{"negative threshold", func(g *networkingapi.WorkloadGroup) { g.Probe.FailureThreshold = -1 }, "spec.probe.failureThreshold", "InvalidProbe"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := registry.NewStore(nil)
			if ps := s.Upsert("kube", makeGroup("g", nil)); len(ps) != 0 {
				t.Fatal(ps)
			}
			ps := s.Upsert("kube", makeGroup("g", tc.mutate))
			if !hasProblem(ps, tc.field, tc.reason) {
				t.Fatalf("problems = %v, want %s at %s", ps, tc.reason, tc.field)
			}
			if ps[0].Object != "WorkloadGroup default/g" || ps[0].Source != "default/g" {
				t.Errorf("problem names %q at %q", ps[0].Object, ps[0].Source)
			}
			if g := s.View().WorkloadGroup("default", "g"); g == nil || g.Probe.TCPSocket == nil {
				t.Errorf("the last good version must stay in force: %+v", g)
			}
		})
	}
}
