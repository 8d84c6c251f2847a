package snapshot

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/registry/yamldir"
)

// FuzzDestinationRule: whatever DestinationRule spec the registry accepts
// next to the destination-rule golden mesh, every proxy kind gets config
// that passes ValidateAll (the Builder leaves nothing out) and is consistent.
func FuzzDestinationRule(f *testing.F) {
	for _, spec := range []string{
		"host: inventory\ntrafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}\nsubsets: [{name: v1, labels: {version: v1}}]",
		"host: '*.local'\ntrafficPolicy: {tls: {mode: ISTIO_MUTUAL, sni: x, subjectAltNames: [spiffe://a/b]}}",
		"host: postgres-1-vm.default.svc.cluster.local\ntrafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 5000011}}}, connectionPool: {tcp: {maxConnections: 2147483647, connectTimeout: 9000000000s, tcpKeepalive: {probes: 4294967295, time: 9000000000s, interval: 1s}}}}",
		"host: inventory\ntrafficPolicy: {connectionPool: {http: {idleTimeout: 0s, maxRequestsPerConnection: 2147483647, http1MaxPendingRequests: 0}}, outlierDetection: {consecutive5xxErrors: 0, consecutiveGatewayErrors: 4294967295, failurePercentageThreshold: 100, minHealthPercent: 100, maxEjectionPercent: 100, interval: 1ms, baseEjectionTime: 9000000000s}}",
		"host: books.example.com\ntrafficPolicy: {tls: {mode: MUTUAL, credentialName: c, caCertCredentialName: ca}, portLevelSettings: [{port: {number: 443}, loadBalancer: {simple: PASSTHROUGH}}]}\nsubsets: [{name: s, labels: {}, trafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {name: c, ttl: 0s}, ringHash: {minimumRingSize: 8388608}}}}}]",
		"host: inventory\nsubsets: [{name: a.b-c, labels: {version: v2}, trafficPolicy: {portLevelSettings: [{port: {number: 9090}, tls: {mode: SIMPLE, insecureSkipVerify: true}}]}}]",
	} {
		f.Add(spec)
	}
	mesh, err := os.ReadFile("testdata/destination-rule/mesh.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		buildWithRule(t, mesh, readProxies(t, "testdata/destination-rule/proxies.yaml"), spec)
	})
}

// FuzzLocalityLbSetting: whatever localityLbSetting (and outlier detection)
// the registry accepts next to the locality golden mesh, seen from
// whatever node locality, every proxy kind gets valid, consistent config.
func FuzzLocalityLbSetting(f *testing.F) {
	for _, s := range []struct{ spec, locality string }{
		{"host: search.example.internal\ntrafficPolicy: {outlierDetection: {consecutive5xxErrors: 1}, loadBalancer: {localityLbSetting: {failover: [{from: region1, to: region2}], failoverPriority: [version, 'topology.istio.io/network=n1']}}}", "region1/zone1"},
		{"host: catalog.example.internal\ntrafficPolicy: {loadBalancer: {localityLbSetting: {distribute: [{from: '*', to: {'region3/*': 1, '*': 99}}, {from: region2, to: {region2: 100}}]}}}", "region2/zone9/s"},
		{"host: postgres.default.svc.cluster.local\ntrafficPolicy: {outlierDetection: {}, portLevelSettings: [{port: {number: 5432}, outlierDetection: {interval: 1s}, loadBalancer: {localityLbSetting: {enabled: false}}}]}", ""},
		{"host: inventory\ntrafficPolicy: {outlierDetection: {}}\nsubsets: [{name: v2, labels: {version: v2}, trafficPolicy: {loadBalancer: {localityLbSetting: {distribute: [{from: 'region1/zone1/*', to: {region2/zone3: 100}}]}}}}]", "region1/zone1/x"},
	} {
		f.Add(s.spec, s.locality)
	}
	mesh, err := os.ReadFile("testdata/locality/mesh.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, spec, locality string) {
		proxies := readProxies(t, "testdata/locality/proxies.yaml")
		for i := range proxies {
			proxies[i].Locality = locality
		}
		buildWithRule(t, mesh, proxies, spec)
	})
}

// buildWithRule adds a DestinationRule with spec to mesh and builds every
// proxy: each gets consistent config that passes ValidateAll (the Builder
// leaves nothing out).
func buildWithRule(t *testing.T, mesh []byte, proxies []goldenProxy, spec string) {
	t.Helper()
	dir := t.TempDir()
	doc := "\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: fuzz, namespace: default}\nspec:\n" + indent(spec)
	if err := os.WriteFile(filepath.Join(dir, "mesh.yaml"), append(append([]byte{}, mesh...), doc...), 0o644); err != nil {
		t.Fatal(err)
	}
	store := registry.NewStore(slog.New(slog.DiscardHandler))
	yamldir.Load(dir, store)
	b := NewBuilder(store.View(), Options{})
	for _, gp := range proxies {
		res, err := b.Build(mustProxyIn(t, gp.ID, gp.Metadata, gp.Locality))
		if err != nil {
			t.Fatalf("build %s: %v", gp.ID, err)
		}
		checkConsistent(t, gp.ID, res, gp.Metadata["GENERATOR"] == "grpc")
	}
	if ps := b.Problems(); len(ps) > 0 {
		t.Errorf("resources left out as invalid for spec\n%s\n: %v", spec, ps)
	}
}

// indent puts every line of s two spaces in, under `spec:`.
func indent(s string) string {
	out := []byte("  ")
	for i := 0; i < len(s); i++ {
		out = append(out, s[i])
		if s[i] == '\n' {
			out = append(out, ' ', ' ')
		}
	}
	return string(out) + "\n"
}
