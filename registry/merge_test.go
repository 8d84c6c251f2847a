package registry_test

import (
	"reflect"
	"testing"

	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1beta1 "istio.io/client-go/pkg/apis/networking/v1beta1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/librarymesh/controlplane/registry"
)

func ptr[T any](v T) *T { return &v }

func TestMergedServices(t *testing.T) {
	const inv = "inventory.default.svc.cluster.local"
	selectorEntry := makeEntry("postgres-1-vm", pgHost)
	selectorEntry.Spec.WorkloadSelector = &networkingapi.WorkloadSelector{Labels: map[string]string{"app": "pg"}}
	otherNS := makeWorkloadEntry("vm-other", "10.128.0.99", map[string]string{"app": "pg"})
	otherNS.Namespace = "other"
	tests := []struct {
		name      string
		objs      []runtime.Object
		host      string
		want      registry.Service
		wantAddrs []string // endpoint addresses
	}{{
		name: "service with slice and pod",
		objs: []runtime.Object{
			makeService("inventory", "10.96.0.20", svcPort("http", 8080)),
			makeSlice("inventory-1", "inventory", 8080, "10.8.0.6", "10.8.0.5"),
			makePod("inventory-abc", "10.8.0.5", "inventory", map[string]string{"app": "inventory"}),
		},
		host: inv,
		want: registry.Service{Hostname: inv, Namespace: "default", Name: "inventory", Addresses: []string{"10.96.0.20"},
			Ports:           []registry.Port{{Name: "http", Number: 8080, Protocol: registry.ProtocolHTTP, TargetPort: 8080}},
			ServiceAccounts: []string{"spiffe://cluster.local/ns/default/sa/inventory"},
			Sources:         []string{"Service default/inventory"}},
		wantAddrs: []string{"10.8.0.5", "10.8.0.6"},
	}, {
		name: "service and service entry merge",
		objs: []runtime.Object{
			makeService("postgres-1-vm", "10.96.0.30", svcPort("tcp", 5432), svcPort("tcp-admin", 5433)),
			func() runtime.Object {
				se := makeEntry("postgres-1-vm", pgHost, "10.128.0.14")
				se.Spec.Addresses = []string{"240.0.0.1"}
				se.Spec.SubjectAltNames = []string{"spiffe://cluster.local/ns/db/sa/admin"}
				se.Spec.Ports = append(se.Spec.Ports, &networkingapi.ServicePort{Number: 9187, Name: "http-metrics"})
				return se
			}(),
		},
		host: pgHost,
		want: registry.Service{Hostname: pgHost, Namespace: "default", Name: "postgres-1-vm",
			Addresses: []string{"10.96.0.30", "240.0.0.1"},
			Ports: []registry.Port{{Name: "tcp", Number: 5432, Protocol: registry.ProtocolTCP, TargetPort: 5432},
				{Name: "tcp-admin", Number: 5433, Protocol: registry.ProtocolTCP, TargetPort: 5433},
				{Name: "http-metrics", Number: 9187, Protocol: registry.ProtocolHTTP}},
			ServiceAccounts: []string{"spiffe://cluster.local/ns/db/sa/admin", "spiffe://cluster.local/ns/default/sa/postgres"},
			Sources:         []string{"Service default/postgres-1-vm", "ServiceEntry default/postgres-1-vm"}},
		wantAddrs: []string{"10.128.0.14"},
	}, {
		name: "workload selector picks workload entries and pods in the namespace",
		objs: []runtime.Object{
			selectorEntry,
			makeWorkloadEntry("vm-1", "10.128.0.15", map[string]string{"app": "pg", "v": "1"}),
			makeWorkloadEntry("vm-2", "10.128.0.16", map[string]string{"app": "other"}),
			makePod("pg-pod", "10.8.0.30", "pgpod", map[string]string{"app": "pg"}),
			otherNS,
		},
		host: pgHost,
		want: registry.Service{Hostname: pgHost, Namespace: "default", Name: "postgres-1-vm",
			Ports:           []registry.Port{{Name: "tcp", Number: 5432, Protocol: registry.ProtocolTCP}},
			ServiceAccounts: []string{"spiffe://cluster.local/ns/default/sa/pgpod", "spiffe://cluster.local/ns/default/sa/vm"},
			Sources:         []string{"ServiceEntry default/postgres-1-vm"}},
		wantAddrs: []string{"10.128.0.15", "10.8.0.30"},
	}, {
		name: "v1beta1 DNS entry without endpoints resolves its hosts",
		objs: []runtime.Object{func() runtime.Object {
			se := &networkingv1beta1.ServiceEntry{ObjectMeta: meta("ext")}
			se.Spec.Hosts = []string{"api.example.com"}
			se.Spec.Resolution = networkingapi.ServiceEntry_DNS
			se.Spec.Ports = []*networkingapi.ServicePort{{Number: 443, Name: "https", Protocol: "TLS"}}
			return se
		}()},
		host: "api.example.com",
		want: registry.Service{Hostname: "api.example.com", Namespace: "default", Name: "ext",
			Ports:      []registry.Port{{Name: "https", Number: 443, Protocol: registry.ProtocolTLS}},
			Resolution: registry.ResolutionDNS, Location: registry.MeshExternal,
			Sources: []string{"ServiceEntry default/ext"}},
		wantAddrs: []string{"api.example.com"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := registry.NewStore(nil)
			for _, o := range tc.objs {
				if ps := s.Upsert("kube", o); len(ps) != 0 {
					t.Fatalf("problems: %v", ps)
				}
			}
			got := s.View().Service(tc.host)
			if got == nil {
				t.Fatalf("no service %s", tc.host)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("service =\n%+v\nwant\n%+v", *got, tc.want)
			}
			var addrs []string
			for _, ep := range s.View().Endpoints(tc.host) {
				addrs = append(addrs, ep.Address)
			}
			if !reflect.DeepEqual(addrs, tc.wantAddrs) {
				t.Errorf("endpoints = %v, want %v", addrs, tc.wantAddrs)
			}
		})
	}
}

func TestPortProtocol(t *testing.T) {
	tests := []struct {
		port corev1.ServicePort
		want registry.Protocol
	}{
		{corev1.ServicePort{Name: "http", Port: 80}, registry.ProtocolHTTP},
		{corev1.ServicePort{Name: "http-web", Port: 81}, registry.ProtocolHTTP},
		{corev1.ServicePort{Name: "http2-api", Port: 82}, registry.ProtocolHTTP2},
		{corev1.ServicePort{Name: "grpc", Port: 83}, registry.ProtocolGRPC},
		{corev1.ServicePort{Name: "grpc-web", Port: 84}, "GRPC-WEB"},
		{corev1.ServicePort{Name: "tcp-db", Port: 85}, registry.ProtocolTCP},
		{corev1.ServicePort{Name: "mysql", Port: 86}, "MYSQL"},
		{corev1.ServicePort{Name: "web", Port: 87}, registry.ProtocolTCP},
		{corev1.ServicePort{Name: "httpx", Port: 88}, registry.ProtocolTCP},
		{corev1.ServicePort{Name: "web2", Port: 89, AppProtocol: ptr("grpc")}, registry.ProtocolGRPC},
		{corev1.ServicePort{Name: "tcp-x", Port: 90, AppProtocol: ptr("kubernetes.io/h2c")}, registry.ProtocolHTTP2},
		{corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}, "UDP"},
	}
	var ports []corev1.ServicePort
	for _, tc := range tests {
		ports = append(ports, tc.port)
	}
	s := registry.NewStore(nil)
	if ps := s.Upsert("kube", makeService("p", "10.96.0.1", ports...)); len(ps) != 0 {
		t.Fatalf("problems: %v", ps)
	}
	svc := s.View().Service("p.default.svc.cluster.local")
	for _, tc := range tests {
		if got, _ := svc.Port(uint32(tc.port.Port)); got.Protocol != tc.want {
			t.Errorf("port %s (appProtocol %v) = %s, want %s", tc.port.Name, tc.port.AppProtocol, got.Protocol, tc.want)
		}
	}
}

func TestStoreOptions(t *testing.T) {
	s := registry.NewStore(nil, registry.WithDomainSuffix("corp.internal"), registry.WithTrustDomain("example.org"))
	for _, o := range []runtime.Object{
		makeService("inventory", "10.96.0.20", svcPort("http", 8080)),
		makeSlice("inventory-1", "inventory", 8080, "10.8.0.5"),
		makePod("inventory-abc", "10.8.0.5", "inventory", nil),
	} {
		s.Upsert("kube", o)
	}
	svc := s.View().Service("inventory.default.svc.corp.internal")
	if svc == nil {
		t.Fatalf("services = %v", s.View().Services())
	}
	if want := []string{"spiffe://example.org/ns/default/sa/inventory"}; !reflect.DeepEqual(svc.ServiceAccounts, want) {
		t.Errorf("service accounts = %v, want %v", svc.ServiceAccounts, want)
	}
}

func TestWorkloadByIP(t *testing.T) {
	s := registry.NewStore(nil)
	for _, o := range []runtime.Object{
		makeEntry("postgres-1-vm", pgHost, "10.128.0.14"),
		makeWorkloadEntry("vm-1", "10.128.0.15", nil),
		makePod("inventory-abc", "10.8.0.5", "inventory", map[string]string{"app": "inventory"}),
	} {
		s.Upsert("kube", o)
	}
	tests := []struct{ ip, kind, name string }{
		{"10.128.0.14", registry.KindServiceEntry, "postgres-1-vm"},
		{"10.128.0.15", registry.KindWorkloadEntry, "vm-1"},
		{"10.8.0.5", registry.KindPod, "inventory-abc"},
	}
	for _, tc := range tests {
		w := s.View().WorkloadByIP(tc.ip)
		if w == nil || w.Kind != tc.kind || w.Name != tc.name || w.Namespace != "default" {
			t.Errorf("WorkloadByIP(%s) = %+v, want %s %s", tc.ip, w, tc.kind, tc.name)
		}
	}
	if w := s.View().WorkloadByIP("10.0.0.1"); w != nil {
		t.Errorf("unknown IP found %+v", w)
	}
}

func TestWorkloadSelectorIgnoresEntryEndpointsOfOtherEntries(t *testing.T) {
	s := registry.NewStore(nil)
	se := makeEntry("db", "db.default.svc.cluster.local")
	se.Spec.WorkloadSelector = &networkingapi.WorkloadSelector{Labels: map[string]string{"app": "postgres-1-vm"}}
	other := makeEntry("postgres-1-vm", pgHost, "10.128.0.14")
	other.Spec.Endpoints[0].Labels = map[string]string{"app": "postgres-1-vm"}
	s.Upsert("kube", se)
	s.Upsert("kube", other)
	if eps := s.View().Endpoints("db.default.svc.cluster.local"); len(eps) != 0 {
		t.Errorf("selector picked another entry's endpoint: %+v", eps)
	}
}
