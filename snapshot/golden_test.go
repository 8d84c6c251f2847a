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

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/*/out")

// goldenProxy is one entry of a case's proxies.yaml.
type goldenProxy struct {
	ID       string         `json:"id"`
	Metadata map[string]any `json:"metadata,omitempty"`
}

func readProxies(t *testing.T, path string) []goldenProxy {
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
func renderGolden(t *testing.T, node string, res *Resources) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for ext, list := range map[string][]types.Resource{
		"lds": res.Listeners, "rds": res.Routes, "cds": res.Clusters, "eds": res.Endpoints, "sds": res.Secrets,
	} {
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
