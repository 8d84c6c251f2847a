package snapshot

import (
	"bytes"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/librarymesh/controlplane/registry"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/*/out")

// goldenProxy is one entry of a case's proxies.yaml.
type goldenProxy struct {
	ID       string         `json:"id"`
	Metadata map[string]any `json:"metadata,omitempty"`
	Locality string         `json:"locality,omitempty"` // the node's region/zone/subzone
	// Delta: the proxy is on a delta ADS stream (Proxy.DeltaADS); its
	// files are NODE.delta.{lds,rds,cds,eds,sds,vhds}.yaml.
	Delta bool `json:"delta,omitempty"`
}

func readProxies(t testing.TB, path string) []goldenProxy {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ps []goldenProxy
	if err := yaml.UnmarshalStrict(data, &ps); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return ps
}

// renderGolden turns a proxy's resources into one YAML file per xDS type.
// Private keys are redacted as the debug views redact them (RedactSecret);
// TestGatewayCredentialServed checks the key itself.
func renderGolden(t *testing.T, node string, res *Resources) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	secrets := make([]types.Resource, len(res.Secrets))
	for i, s := range res.Secrets {
		secrets[i] = RedactSecret(s.(*tlsv3.Secret))
	}
	lists := map[string][]types.Resource{
		"lds": res.Listeners, "rds": res.Routes, "cds": res.Clusters, "eds": res.Endpoints, "sds": secrets,
	}
	if strings.HasSuffix(node, ".delta") {
		lists["vhds"] = res.VirtualHosts
	} else if len(res.VirtualHosts) > 0 {
		t.Errorf("%s: virtual hosts over VHDS for a proxy not on delta ADS", node)
	}
	for ext, list := range lists {
		out[node+"."+ext+".yaml"] = resourcesYAML(t, list)
	}
	return out
}

// resourcesYAML is stable: protojson's output goes through a JSON parse in sigs.k8s.io/yaml.
func resourcesYAML(t *testing.T, list []types.Resource) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("[")
	for i, r := range list {
		if i > 0 {
			b.WriteString(",")
		}
		js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(r.(proto.Message))
		if err != nil {
			t.Fatal(err)
		}
		b.Write(js)
	}
	b.WriteString("]")
	y, err := yaml.JSONToYAML(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return y
}

// checkGolden compares files with dir's contents, or with -update rewrites
// them and removes stale ones.
func checkGolden(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	existing, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, path := range existing {
			if _, ok := files[filepath.Base(path)]; !ok {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			}
		}
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	for _, path := range existing {
		if _, ok := files[filepath.Base(path)]; !ok {
			t.Errorf("%s is stale (no proxy produces it); run go test ./snapshot -update", path)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		path := filepath.Join(dir, name)
		want, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%v; run go test ./snapshot -update", err)
			continue
		}
		if got := files[name]; !bytes.Equal(got, want) {
			t.Errorf("%s differs from the built config (run go test ./snapshot -update and review the diff):\n%s", path, firstDiff(string(want), string(got)))
		}
	}
}

// firstDiff shows the first differing line with a little context.
func firstDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(wl), len(gl)); i++ {
		w, g := lineAt(wl, i), lineAt(gl, i)
		if w != g {
			return fmt.Sprintf("line %d:\n  want: %s\n  got:  %s", i+1, w, g)
		}
	}
	return "(no line differs)"
}

func lineAt(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "<EOF>"
}

// TestLibraryMeshIsTheExample keeps testdata/library/mesh.yaml a copy of
// examples/library (each file's documents, in file name order).
func TestLibraryMeshIsTheExample(t *testing.T) {
	files, err := filepath.Glob("../examples/library/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("examples/library: %v", err)
	}
	var want strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&want, "---\n# examples/library/%s\n%s", filepath.Base(f), data)
	}
	got, err := os.ReadFile("testdata/library/mesh.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want.String() {
		if *update {
			if err := os.WriteFile("testdata/library/mesh.yaml", []byte(want.String()), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("testdata/library/mesh.yaml is not a copy of examples/library (run go test ./snapshot -update):\n%s", firstDiff(want.String(), string(got)))
	}
}

// TestGolden builds every proxy in testdata/CASE/proxies.yaml from the mesh
// in testdata/CASE/mesh.yaml (read by the YAML directory source) and compares
// the result with testdata/CASE/out/NODE.{lds,rds,cds,eds,sds}.yaml. The
// problems the registry and the builder report go to out/problems.yaml; a
// case without problems has no such file.
func TestGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/*/mesh.yaml")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no golden cases (%v)", err)
	}
	for _, meshFile := range cases {
		dir := filepath.Dir(meshFile)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			view, problems := loadMesh(t, meshFile)
			b := NewBuilder(view, Options{})
			files := map[string][]byte{}
			for _, gp := range readProxies(t, filepath.Join(dir, "proxies.yaml")) {
				px := mustProxyIn(t, gp.ID, gp.Metadata, gp.Locality)
				px.DeltaADS = gp.Delta
				res, err := b.Build(px)
				if err != nil {
					t.Fatalf("build %s: %v", gp.ID, err)
				}
				checkConsistent(t, gp.ID, res, gp.Metadata["GENERATOR"] == "grpc")
				node := gp.ID
				if gp.Delta {
					node += ".delta"
				}
				maps.Copy(files, renderGolden(t, node, res))
			}
			if ps := problemsYAML(t, problems, b.Problems()); ps != nil {
				files["problems.yaml"] = ps
			}
			checkGolden(t, filepath.Join(dir, "out"), files)
		})
	}
}

// checkConsistent checks every route and endpoint set a listener or
// cluster names is there; for Envoy sidecars also with go-control-plane's
// stricter check (which does not follow api_listeners, so not for gRPC).
func checkConsistent(t *testing.T, node string, res *Resources, proxyless bool) {
	t.Helper()
	if err := res.Consistent(); err != nil {
		t.Errorf("%s: %v", node, err)
	}
	if proxyless {
		return
	}
	snap, err := cachev3.NewSnapshot("1", map[resource.Type][]types.Resource{
		resource.ListenerType: res.Listeners, resource.RouteType: res.Routes,
		resource.ClusterType: res.Clusters, resource.EndpointType: res.Endpoints, resource.SecretType: res.Secrets,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Consistent(); err != nil {
		t.Errorf("%s: snapshot is not consistent: %v", node, err)
	}
}

// loadMesh returns the model of a mesh file and the problems the store
// reports (see loadStore).
func loadMesh(t *testing.T, meshFile string) (registry.View, []registry.Problem) {
	t.Helper()
	store, _ := loadStore(t, meshFile)
	return store.View(), store.Problems()
}

// goldenProblem is one entry of problems.yaml. Source is relative to the
// case: `mesh.yaml:LINE` for the registry, `snapshot` for a resource the
// builder left out as invalid.
type goldenProblem struct {
	Source  string `json:"source"`
	Object  string `json:"object,omitempty"`
	Field   string `json:"field,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message"`
}

// problemsYAML renders the registry's and the builder's problems, or nil
// when there are none.
func problemsYAML(t *testing.T, reg []registry.Problem, built []error) []byte {
	t.Helper()
	if len(reg)+len(built) == 0 {
		return nil
	}
	var out []goldenProblem
	for _, p := range reg {
		if i := strings.LastIndex(p.Source, string(filepath.Separator)+"mesh.yaml"); i >= 0 {
			p.Source = p.Source[i+1:]
		}
		out = append(out, goldenProblem{p.Source, p.Object, p.Field, p.Reason, p.Message})
	}
	for _, err := range built {
		out = append(out, goldenProblem{Source: "snapshot", Message: err.Error()})
	}
	y, err := yaml.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return y
}
