package inject

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite testdata/*.injected.yaml")

// testConfig is the Config of every test: defaults plus a test hub.
func testConfig() Config {
	return Config{Hub: "registry.example/istio", Tag: "1.32.0"}
}

// readPod reads a Pod from YAML.
func readPod(t *testing.T, path string) (*corev1.Pod, []byte) {
	t.Helper()
	y, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(y, &pod); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &pod, raw
}

// applyPatch applies a Mutate patch to the pod's own JSON, as the API
// server does, and returns the result.
func applyPatch(t *testing.T, raw, patch []byte) *corev1.Pod {
	t.Helper()
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("patch does not decode: %v\n%s", err, patch)
	}
	out, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("patch does not apply: %v\n%s", err, patch)
	}
	var pod corev1.Pod // fields unknown to corev1 may be in the input and stay
	if err := json.Unmarshal(out, &pod); err != nil {
		t.Fatalf("patched pod: %v", err)
	}
	return &pod
}

// TestGolden injects each testdata/NAME.yaml pod and compares the patched
// pod with testdata/NAME.injected.yaml (-update rewrites them; review the
// diff like code).
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, in := range inputs {
		if strings.HasSuffix(in, ".injected.yaml") {
			continue
		}
		ran++
		t.Run(filepath.Base(in), func(t *testing.T) {
			pod, raw := readPod(t, in)
			res, err := Mutate(testConfig(), pod, pod.Namespace)
			if err != nil || res.Skipped != "" || res.Patch == nil {
				t.Fatalf("Mutate: %+v, %v; want a patch", res, err)
			}
			got, err := yaml.Marshal(applyPatch(t, raw, res.Patch))
			if err != nil {
				t.Fatal(err)
			}
			compareGolden(t, strings.TrimSuffix(in, ".yaml")+".injected.yaml", got)
		})
	}
	if ran == 0 {
		t.Fatal("no testdata pods")
	}
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s missing: run go test ./inject -update", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test ./inject -update rewrites it):\n%s", path, lineDiff(string(want), string(got)))
	}
}

// lineDiff lists the lines only in want (-) or only in got (+).
func lineDiff(want, got string) string {
	count := map[string]int{}
	for l := range strings.Lines(want) {
		count[l]++
	}
	var b strings.Builder
	for l := range strings.Lines(got) {
		if count[l] > 0 {
			count[l]--
			continue
		}
		b.WriteString("+ " + l)
	}
	for l, n := range count {
		for range n {
			b.WriteString("- " + l)
		}
	}
	return b.String()
}
