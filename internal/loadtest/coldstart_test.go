package loadtest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/librarymesh/controlplane/internal/e2e"
	"github.com/librarymesh/controlplane/internal/kubetest"
)

func TestReadFolder(t *testing.T) {
	dir := t.TempDir()
	if _, err := writeMesh(dir, ScenarioSmall()); err != nil {
		t.Fatal(err)
	}
	objs, err := readFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetKind()]++
	}
	// 25 Services with an EndpointSlice and 4 pods each, 25 ServiceEntries,
	// the mesh-wide PeerAuthentication and DestinationRule.
	want := map[string]int{"Service": 25, "EndpointSlice": 25, "Pod": 100, "ServiceEntry": 25, "PeerAuthentication": 1, "DestinationRule": 1}
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("%d %s, want %d (all: %v)", kinds[k], k, n, kinds)
		}
	}
	if len(objs) != 177 {
		t.Errorf("%d objects, want 177", len(objs))
	}
}

func TestColdStartTable(t *testing.T) {
	cs := &ColdStart{Services: 1000, YAML: []float64{0.9, 0.5, 1.4}, Kube: []float64{3.5, 3.1, 2.0}}
	var b strings.Builder
	if err := cs.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	want := "cold start from a YAML folder, 1000 services: exec to /readyz 200 median 0.900s, max 1.400s over 3 starts (target <= 1s: met)\n" +
		"cold start from a kube-apiserver, 1000 services: exec to /readyz 200 median 3.100s, max 3.500s over 3 starts (target <= 3s: NOT met)\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// TestColdStart starts our server on the small scenario from a folder and
// from a real kube-apiserver holding the same objects.
func TestColdStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var progress strings.Builder
	cs, err := RunColdStart(ctx, ColdStartConfig{Scenario: ScenarioSmall(), WorkDir: t.TempDir(), ServerBin: e2e.Binary(t), Runs: 1, Kube: true, Progress: &progress})
	if errors.Is(err, kubetest.ErrMissingBinaries) && !kubetest.InCI() {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if len(cs.YAML) != 1 || cs.YAML[0] <= 0 || len(cs.Kube) != 1 || cs.Kube[0] <= 0 {
		t.Errorf("starts: %+v", cs)
	}
	if cs.KubeObjects != 178 {
		t.Errorf("created %d objects, want 178 (the folder's and namespace istio-system)", cs.KubeObjects)
	}
	t.Logf("%+v\n%s", cs, progress.String())
}
