package snapshot

import (
	"testing"

	"github.com/librarymesh/controlplane/registry"
)

// BenchmarkBuildScenarioSWithRules is scenario S with a DestinationRule
// per service (two subsets, a load balancer and a pool), beside the mesh's
// `*.local` rule: every proxy of one model revision (one op = 1000 proxies).
func BenchmarkBuildScenarioSWithRules(b *testing.B) {
	v, proxies := scenarioS()
	for _, svc := range v.services {
		v.drs = append(v.drs, &registry.DestinationRule{Namespace: "default", Name: svc.Name, Host: svc.Hostname,
			TrafficPolicy: &registry.TrafficPolicy{LoadBalancer: &registry.LoadBalancer{Simple: registry.LBLeastRequest},
				ConnectionPool: &registry.ConnectionPool{MaxConnections: 100}},
			Subsets: []registry.Subset{{Name: "a", Labels: map[string]string{"v": "a"}}, {Name: "b", Labels: map[string]string{"v": "b"}}}})
	}
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
