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
		proxies := readProxies(t, "testdata/destination-rule/proxies.yaml")
		dir := t.TempDir()
		doc := "\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: fuzz, namespace: default}\nspec:\n" + indent(spec)
		if err := os.WriteFile(filepath.Join(dir, "mesh.yaml"), append(append([]byte{}, mesh...), doc...), 0o644); err != nil {
			t.Fatal(err)
		}
		store := registry.NewStore(slog.New(slog.DiscardHandler))
		yamldir.Load(dir, store)
		b := NewBuilder(store.View(), Options{})
		for _, gp := range proxies {
			res, err := b.Build(mustProxy(t, gp.ID, gp.Metadata))
			if err != nil {
				t.Fatalf("build %s: %v", gp.ID, err)
			}
			checkConsistent(t, gp.ID, res, gp.Metadata["GENERATOR"] == "grpc")
		}
		if ps := b.Problems(); len(ps) > 0 {
			t.Errorf("resources left out as invalid for spec\n%s\n: %v", spec, ps)
		}
	})
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
