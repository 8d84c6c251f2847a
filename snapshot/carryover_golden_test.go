package snapshot

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/registry/yamldir"
)

// TestCarriedOverBuilderMatchesFresh: in every golden mesh, removing any
// one Service or ServiceEntry and carrying the Builder over
// (WithServiceChanges, with the hosts the store reports changed) gives
// every golden proxy exactly what a fresh Builder gives. The carried
// Builder reuses the clusters, listeners and virtual hosts of the other
// hosts; a removal frees domains for other services and leaves routes to
// the removed host, so what it must rebuild is not only the removed host's.
func TestCarriedOverBuilderMatchesFresh(t *testing.T) {
	cases, err := filepath.Glob("testdata/*/mesh.yaml")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no golden cases (%v)", err)
	}
	proxiesOf := map[string]string{}
	for _, meshFile := range cases {
		proxiesOf[meshFile] = filepath.Join(filepath.Dir(meshFile), "proxies.yaml")
	}
	proxiesOf["testdata/carryover/shared-vip.yaml"] = "testdata/carryover/shared-vip.proxies.yaml"
	carried := 0
	for meshFile, proxiesFile := range proxiesOf {
		proxies := readProxies(t, proxiesFile)
		name := strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(meshFile, "testdata/"), ".yaml"), "/mesh")
		for _, obj := range serviceObjects(t, meshFile) {
			t.Run(name+"/"+obj.Kind+"/"+obj.Metadata.Name, func(t *testing.T) {
				store, origin := loadStore(t, meshFile)
				before := store.View()
				prev := NewBuilder(before, Options{})
				for _, gp := range proxies {
					if _, err := prev.Build(goldenProxyOf(t, gp)); err != nil {
						t.Fatal(err)
					}
				}
				store.Delete(origin, obj.Kind, obj.Metadata.Namespace, obj.Metadata.Name)
				after := store.View()
				if after.Revision() == before.Revision() {
					t.Skip("the object is not in the model (the store rejected it)")
				}
				var hosts []string
				for _, c := range store.ChangesSince(before.Revision()) {
					if c.All || c.Policy {
						t.Skip("the change touches policy: the server builds afresh")
					}
					hosts = append(hosts, c.Hostnames...)
				}
				next, fresh := prev.WithServiceChanges(after, Options{}, hosts), NewBuilder(after, Options{})
				for _, gp := range proxies {
					got, err := next.Build(goldenProxyOf(t, gp))
					if err != nil {
						t.Fatal(err)
					}
					want, err := fresh.Build(goldenProxyOf(t, gp))
					if err != nil {
						t.Fatal(err)
					}
					node := gp.ID
					if gp.Delta {
						node += ".delta"
					}
					wantFiles := renderGolden(t, node, want)
					for name, data := range renderGolden(t, node, got) {
						if !bytes.Equal(data, wantFiles[name]) {
							t.Errorf("%s differs from a fresh build: %s", name, firstDiff(string(wantFiles[name]), string(data)))
						}
					}
				}
				carried++
			})
		}
	}
	if carried < 23 {
		t.Errorf("%d removals compared, want at least 20", carried)
	}
}

func goldenProxyOf(t *testing.T, gp goldenProxy) *Proxy {
	px := mustProxyIn(t, gp.ID, gp.Metadata, gp.Locality)
	px.DeltaADS = gp.Delta
	return px
}

// serviceObject is the kind and name of a Service or ServiceEntry.
type serviceObject struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

// serviceObjects are the Services and ServiceEntries of a mesh file.
func serviceObjects(t *testing.T, meshFile string) []serviceObject {
	t.Helper()
	data, err := os.ReadFile(meshFile)
	if err != nil {
		t.Fatal(err)
	}
	var out []serviceObject
	for _, doc := range strings.Split(string(data), "\n---") {
		var o serviceObject
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("%s: %v", meshFile, err)
		}
		if o.Kind == registry.KindService || o.Kind == registry.KindServiceEntry {
			out = append(out, o)
		}
	}
	return out
}

// loadStore reads one mesh file with the YAML directory source into a
// store, and returns it with the origin of the file's objects. The file is
// copied to a directory of its own, since the source reads every YAML file
// in a directory and a golden case's directory also holds proxies and outputs.
func loadStore(t *testing.T, meshFile string) (*registry.Store, string) {
	t.Helper()
	data, err := os.ReadFile(meshFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	origin := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(origin, data, 0o644); err != nil {
		t.Fatal(err)
	}
	store := registry.NewStore(slog.New(slog.DiscardHandler))
	yamldir.Load(dir, store)
	return store, origin
}
