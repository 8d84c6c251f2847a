package snapshot

import (
	"fmt"
	"testing"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/registry"
)

// indexedView is a testView with lookups by host and IP, for benchmarks.
type indexedView struct {
	*testView
	byHost    map[string][]*registry.Endpoint
	svcByIP   map[string][]*registry.Service
	wlByIP    map[string]*registry.Workload
	svcByHost map[string]*registry.Service
}

func newIndexedView(v *testView) *indexedView {
	iv := &indexedView{testView: v, byHost: map[string][]*registry.Endpoint{}, svcByIP: map[string][]*registry.Service{},
		wlByIP: map[string]*registry.Workload{}, svcByHost: map[string]*registry.Service{}}
	for _, s := range v.services {
		iv.svcByHost[s.Hostname] = s
	}
	for _, e := range v.endpoints {
		iv.byHost[e.Hostname] = append(iv.byHost[e.Hostname], e)
		iv.svcByIP[e.Address] = append(iv.svcByIP[e.Address], iv.svcByHost[e.Hostname])
	}
	for _, w := range v.workloads {
		iv.wlByIP[w.Address] = w
	}
	return iv
}

func (v *indexedView) Service(h string) *registry.Service        { return v.svcByHost[h] }
func (v *indexedView) Endpoints(h string) []*registry.Endpoint   { return v.byHost[h] }
func (v *indexedView) WorkloadByIP(ip string) *registry.Workload { return v.wlByIP[ip] }
func (v *indexedView) ServicesForWorkload(w *registry.Workload) []*registry.Service {
	return v.svcByIP[w.Address]
}

// scenarioS is issue 7's scenario: 500 Services with 4 pod endpoints each,
// 500 ServiceEntries with 2 VM endpoints each; 800 pod and 200 VM proxies.
func scenarioS() (*indexedView, []*Proxy) {
	v := &testView{pas: meshStrict(), drs: localMutual()}
	var proxies []*Proxy
	for i := range 1000 {
		host := fmt.Sprintf("svc-%d.default.svc.cluster.local", i)
		kind, n, proto := "Pod", 4, registry.ProtocolHTTP
		if i >= 500 {
			kind, n, proto = "WorkloadEntry", 2, registry.ProtocolTCP
		}
		v.services = append(v.services, &registry.Service{Hostname: host, Namespace: "default", Name: fmt.Sprintf("svc-%d", i),
			Addresses: []string{fmt.Sprintf("10.96.%d.%d", i/250, i%250+1)},
			Ports:     []registry.Port{{Name: "p", Number: uint32(8000 + i%50), Protocol: proto}}, ServiceAccounts: []string{meshname.SPIFFEID("cluster.local", "default", "sa")}})
		for j := range n {
			ip := fmt.Sprintf("10.%d.%d.%d", 8+j, i/250, i%250+1)
			v.endpoints = append(v.endpoints, &registry.Endpoint{Hostname: host, Namespace: "default", Address: ip, Ready: true})
			v.workloads = append(v.workloads, &registry.Workload{Kind: kind, Namespace: "default", Name: fmt.Sprintf("w-%d-%d", i, j), Address: ip})
			if (kind == "Pod" && j < 2 && len(proxies) < 800) || (kind != "Pod" && j < 1 && len(proxies) < 1000) {
				proxies = append(proxies, &Proxy{ID: fmt.Sprintf("sidecar~%s~w-%d-%d.default~default.svc.cluster.local", ip, i, j),
					Type: SidecarProxy, IPs: []string{ip}, Name: fmt.Sprintf("w-%d-%d", i, j), Namespace: "default"})
			}
		}
	}
	return newIndexedView(v), proxies
}

// BenchmarkBuildScenarioS builds every proxy of scenario S from one model
// revision (one op = 1000 proxies, shared parts built once).
func BenchmarkBuildScenarioS(b *testing.B) {
	v, proxies := scenarioS()
	b.ReportAllocs()
	for b.Loop() {
		builder := NewBuilder(v, Options{})
		for _, p := range proxies {
			if _, err := builder.Build(p); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(proxies)), "proxies/op")
}

// BenchmarkEndpointChangeScenarioS is one host's endpoints changing: the
// next revision's Builder reuses the previous one's shared parts.
func BenchmarkEndpointChangeScenarioS(b *testing.B) {
	v, proxies := scenarioS()
	prev := NewBuilder(v, Options{})
	for _, p := range proxies {
		if _, err := prev.Build(p); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		next := prev.WithEndpointChanges(v, []string{"svc-1.default.svc.cluster.local"})
		for _, p := range proxies {
			if _, err := next.Build(p); err != nil {
				b.Fatal(err)
			}
		}
	}
}
