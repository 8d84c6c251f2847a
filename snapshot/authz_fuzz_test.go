package snapshot

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	"sigs.k8s.io/yaml"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/registry/yamldir"
)

// FuzzAuthorizationPolicyRBAC adds an AuthorizationPolicy (YAML) to the
// authorization-policy golden mesh and builds its three proxies: the build
// must not panic or fail, and every RBAC config it makes must validate.
func FuzzAuthorizationPolicyRBAC(f *testing.F) {
	for _, s := range []string{
		"spec: {}",
		"spec: {action: DENY, rules: [{}]}",
		"spec: {selector: {matchLabels: {app: inventory}}, rules: [{from: [{source: {namespaces: [\"*\"], notPrincipals: [\"*/sa/x\", \"a*\"]}}], to: [{operation: {hosts: [\"*.local\"], notMethods: [\"*\"], paths: [\"*\"]}}]}]}",
		"spec: {action: AUDIT, rules: [{when: [{key: \"request.headers[:scheme]\", values: [http]}, {key: connection.sni, values: [\"*.example\"]}, {key: destination.ip, notValues: [\"::1/128\"]}]}]}",
		"spec: {action: CUSTOM, provider: {name: x}}",
		"spec: {rules: [{from: [{source: {ipBlocks: [\"10.0.0.1\", \"fd00::/8\"], remoteIpBlocks: [\"0.0.0.0/0\"], trustDomains: [td]}}], to: [{operation: {ports: [\"5432\", \"8080\"], notPorts: [\"1\"]}}]}]}",
		"spec: {action: DENY, rules: [{from: [{source: {requestPrincipals: [\"*\"]}}, {}], to: [{}], when: [{key: request.auth.claims[x], values: [y]}]}]}",
	} {
		f.Add([]byte(s))
	}
	dir := filepath.Join("testdata", "authorization-policy")
	proxies := readProxies(f, filepath.Join(dir, "proxies.yaml"))
	mesh, err := os.ReadFile(filepath.Join(dir, "mesh.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	base := f.TempDir() // the source reads every YAML file of a directory
	if err := os.WriteFile(filepath.Join(base, "mesh.yaml"), mesh, 0o644); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ap := &securityv1.AuthorizationPolicy{}
		if err := yaml.Unmarshal(data, ap); err != nil {
			return
		}
		ap.Name, ap.Namespace = "fuzz", "default"
		store := registry.NewStore(slog.New(slog.DiscardHandler))
		yamldir.Load(base, store)
		store.Upsert("fuzz", ap)
		b := NewBuilder(store.View(), Options{})
		for _, gp := range proxies {
			res, err := b.Build(mustProxy(t, gp.ID, gp.Metadata))
			if err != nil {
				t.Fatalf("build %s: %v", gp.ID, err)
			}
			for _, l := range res.Listeners {
				for _, fc := range l.(*listenerv3.Listener).GetFilterChains() {
					for _, flt := range fc.GetFilters() {
						validateTyped(t, gp.ID, flt.GetTypedConfig())
					}
				}
			}
		}
	})
}
