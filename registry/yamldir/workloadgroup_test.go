package yamldir_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/registry/yamldir"
)

const groupYAML = `apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: postgres, namespace: db}
spec:
  metadata:
    labels: {app: postgres}
  template:
    serviceAccount: postgres
    ports: {tcp: 5432}
  probe:
    periodSeconds: 5
    httpGet:
      path: /ready
      port: %s
`

// A WorkloadGroup in a folder is in the model; a bad probe names the file
// and line of the field, and the last good version stays.
func TestLoadWorkloadGroup(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "group.yaml")
	write := func(port string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(fmt.Sprintf(groupYAML, port)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("8080")
	s := registry.NewStore(nil)
	if ps := yamldir.Load(dir, s); len(ps) != 0 {
		t.Fatalf("problems: %v", ps)
	}
	g := s.View().WorkloadGroup("db", "postgres")
	if g == nil || g.Probe == nil || g.Probe.HTTPGet == nil || g.Probe.HTTPGet.Port != 8080 || g.Probe.HTTPGet.Path != "/ready" ||
		g.Probe.Period.Seconds() != 5 || g.Template.ServiceAccount != "postgres" {
		t.Fatalf("group = %+v", g)
	}
	write("0")
	ps := yamldir.Load(dir, s)
	if len(ps) != 1 || ps[0].Source != file+":14" || ps[0].Field != "spec.probe.httpGet.port" || ps[0].Reason != registry.ReasonInvalidProbe ||
		ps[0].Object != "WorkloadGroup db/postgres" {
		t.Fatalf("problems = %+v, want InvalidProbe at %s:14 spec.probe.httpGet.port", ps, file)
	}
	if g := s.View().WorkloadGroup("db", "postgres"); g == nil || g.Probe.HTTPGet.Port != 8080 {
		t.Errorf("the last good version must stay: %+v", g)
	}
}
