package snapshot

import (
	"slices"
	"testing"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/registry"
)

func (v *testView) Sidecars() []*registry.Sidecar { return nil }

// sidecarView is a testView with Sidecars.
type sidecarView struct {
	*testView
	sidecars []*registry.Sidecar
}

func (v *sidecarView) Sidecars() []*registry.Sidecar { return v.sidecars }

func egress(port uint32, hosts ...string) registry.Egress {
	e := registry.Egress{Port: port}
	for _, h := range hosts {
		eh, err := registry.ParseEgressHost(h)
		if err != nil {
			panic(err)
		}
		e.Hosts = append(e.Hosts, eh)
	}
	return e
}

func TestSelectSidecar(t *testing.T) {
	web := &registry.Sidecar{Namespace: "default", Name: "web", Selector: map[string]string{"app": "web"}}
	nsDefault := &registry.Sidecar{Namespace: "default", Name: "default"}
	mesh := &registry.Sidecar{Namespace: "istio-system", Name: "default"}
	meshSel := &registry.Sidecar{Namespace: "istio-system", Name: "gw", Selector: map[string]string{"app": "web"}}
	all := []*registry.Sidecar{nsDefault, web, meshSel, mesh} // as the view sorts them
	tests := []struct {
		name   string
		list   []*registry.Sidecar
		ns     string
		labels map[string]string
		want   *registry.Sidecar
	}{
		{"selector matches", all, "default", map[string]string{"app": "web", "v": "1"}, web},
		{"selector does not match: namespace default", all, "default", map[string]string{"app": "db"}, nsDefault},
		{"no labels: namespace default", all, "default", nil, nsDefault},
		{"other namespace: mesh default, not a root selector", all, "other", map[string]string{"app": "web"}, mesh},
		{"root namespace workload with the selector", all, "istio-system", map[string]string{"app": "web"}, meshSel},
		{"no namespace default: mesh default", []*registry.Sidecar{web, mesh}, "default", nil, mesh},
		{"no Sidecar at all", nil, "default", nil, nil},
		{"only another namespace's", []*registry.Sidecar{nsDefault}, "other", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := selectSidecar(tt.list, "istio-system", tt.ns, tt.labels); got != tt.want {
				t.Errorf("selected %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestScopeServices(t *testing.T) {
	svc := func(host, ns string, exportTo []string, ports ...uint32) *registry.Service {
		s := &registry.Service{Hostname: host, Namespace: ns, ExportTo: exportTo}
		for _, p := range ports {
			s.Ports = append(s.Ports, registry.Port{Number: p, Protocol: registry.ProtocolTCP})
		}
		return s
	}
	all := []*registry.Service{
		svc("a.default.svc.cluster.local", "default", nil, 80),
		svc("b.other.svc.cluster.local", "other", nil, 80, 9080),
		svc("c.other.svc.cluster.local", "other", []string{"other"}, 80),
		svc("api.example.com", "ext", nil, 443),
		svc("db.example.com", "ext", nil, 5432),
	}
	tests := []struct {
		name   string
		egress []registry.Egress
		want   []string // host:ports
	}{
		{"no Sidecar egress: every exported service", nil,
			[]string{"a.default.svc.cluster.local:80", "b.other.svc.cluster.local:80,9080", "api.example.com:443", "db.example.com:5432"}},
		{"own namespace", []registry.Egress{egress(0, "./*")}, []string{"a.default.svc.cluster.local:80"}},
		{"exportTo still applies", []registry.Egress{egress(0, "other/*")}, []string{"b.other.svc.cluster.local:80,9080"}},
		{"wildcard host, any namespace", []registry.Egress{egress(0, "*/*.example.com")},
			[]string{"api.example.com:443", "db.example.com:5432"}},
		{"exact host", []registry.Egress{egress(0, "ext/db.example.com")}, []string{"db.example.com:5432"}},
		{"port listener trims ports", []registry.Egress{egress(9080, "other/*"), egress(0, "./*")},
			[]string{"a.default.svc.cluster.local:80", "b.other.svc.cluster.local:9080"}},
		{"no namespace", []registry.Egress{egress(0, "~/*")}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := &scope{ns: "default", sidecar: &registry.Sidecar{Namespace: "default", Name: "s", Egress: tt.egress}}
			var got []string
			for _, s := range sc.services(all) {
				got = append(got, s.Hostname+":"+portList(s.Ports))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("services = %v, want %v", got, tt.want)
			}
		})
	}
	if all[1].Ports[0].Number != 80 || len(all[1].Ports) != 2 {
		t.Errorf("trimming ports modified the view's service: %+v", all[1])
	}
}

func portList(ps []registry.Port) string {
	var out string
	for i, p := range ps {
		if i > 0 {
			out += ","
		}
		out += meshname.RouteConfig(p.Number)
	}
	return out
}

// Proxies of one scope share one part; another scope gets its own. After
// an endpoint change of a host outside a scope its proxies get the very
// same part (the server then sends them nothing); a proxy that sees the
// host gets the new endpoints.
func TestScopeSharingAndEndpointFastPath(t *testing.T) {
	pg, inv := "postgres-1-vm.default.svc.cluster.local", "inventory.default.svc.cluster.local"
	sidecars := []*registry.Sidecar{{Namespace: "default", Name: "inv-only", Selector: map[string]string{"app": "client"},
		Egress: []registry.Egress{egress(0, "default/"+inv)}}}
	before := &sidecarView{libraryView(meshStrict(), localMutual()), sidecars}
	b := NewBuilder(before, Options{})
	scoped1 := mustProxy(t, "sidecar~10.8.0.50~client-1.default~default.svc.cluster.local", map[string]any{"LABELS": map[string]any{"app": "client"}})
	scoped2 := mustProxy(t, "sidecar~10.8.0.51~client-2.default~default.svc.cluster.local", map[string]any{"LABELS": map[string]any{"app": "client"}})
	open := mustProxy(t, "sidecar~10.8.0.52~other-1.default~default.svc.cluster.local", nil)
	parts := func(b *Builder, p *Proxy) *Resources {
		shared, _, err := b.BuildParts(p)
		if err != nil {
			t.Fatal(err)
		}
		return shared
	}
	s1, s2, o := parts(b, scoped1), parts(b, scoped2), parts(b, open)
	if s1 != s2 || s1 == o {
		t.Fatalf("scoped parts shared %v, scoped and open differ %v; want true, true", s1 == s2, s1 != o)
	}
	if got := names(s1.Clusters); !slices.Contains(got, meshname.OutboundCluster(8080, "", inv)) || slices.Contains(got, meshname.OutboundCluster(5432, "", pg)) {
		t.Errorf("scoped clusters = %v, want inventory's and not postgres'", got)
	}
	after := &sidecarView{libraryView(meshStrict(), localMutual()), sidecars}
	after.endpoints = append(after.endpoints, &registry.Endpoint{Hostname: pg, Namespace: "default", Address: "10.128.0.15", Ready: true, ServiceAccount: "postgres"})
	next := b.WithEndpointChanges(after, []string{pg})
	if got := parts(next, scoped1); got != s1 {
		t.Error("a scoped proxy that does not see the changed host got a new shared part")
	}
	if got := parts(next, open); got == o || !slices.Equal(names(got.Clusters), names(o.Clusters)) {
		t.Error("the proxy that sees the changed host kept its part, or its clusters changed")
	}
	fresh := parts(NewBuilder(after, Options{}), scoped1)
	if !slices.Equal(names(fresh.Endpoints), names(s1.Endpoints)) {
		t.Errorf("a fresh build of the scope differs: %v, carried %v", names(fresh.Endpoints), names(s1.Endpoints))
	}
}
