package snapshot

import (
	"testing"

	"github.com/librarymesh/controlplane/registry"
)

// BenchmarkBuildScenarioSWithLocality is scenario S with its endpoints and
// workloads spread over three zones of two regions, and outlier detection
// on the mesh's `*.local` rule, so every cluster fails over by locality
// (Istio's default): proxies of the three zones get three shared parts,
// with per-zone EDS (one op = 1000 proxies).
func BenchmarkBuildScenarioSWithLocality(b *testing.B) {
	v, proxies := scenarioS()
	zones := []string{"region1/zone1", "region1/zone2", "region2/zone3"}
	for i, ep := range v.endpoints {
		ep.Locality = zones[i%len(zones)]
	}
	for i, w := range v.workloads {
		w.Locality = zones[i%len(zones)]
	}
	rule := *v.drs[0]
	policy := *rule.TrafficPolicy
	policy.OutlierDetection = &registry.OutlierDetection{Interval: 1e9}
	rule.TrafficPolicy = &policy
	v.drs = []*registry.DestinationRule{&rule}
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
