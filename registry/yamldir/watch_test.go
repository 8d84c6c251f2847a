package yamldir_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/registry/yamldir"
)

const pgHost = "postgres-1-vm.default.svc.cluster.local"

func entryYAML(addr string, port int) string {
	return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: postgres-1-vm
  namespace: default
spec:
  hosts:
  - postgres-1-vm.default.svc.cluster.local
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - number: ` + strconv.Itoa(port) + `
    name: tcp
    protocol: TCP
  endpoints:
  - address: ` + addr + `
`
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	// Write a temporary file and rename it, as editors and kubectl cp do.
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// eventually waits for cond, re-checking after every store change and at
// least every 20 ms (problems change without a new revision).
func eventually(t *testing.T, s *registry.Store, what string, cond func() bool) {
	t.Helper()
	ch, cancel := s.Subscribe()
	defer cancel()
	deadline := time.After(5 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ch:
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; problems: %v", what, s.Problems())
		}
	}
}

func endpointAddr(s *registry.Store) string {
	eps := s.View().Endpoints(pgHost)
	if len(eps) != 1 {
		return ""
	}
	return eps[0].Address
}

func startDir(t testing.TB, dir string) *registry.Store {
	t.Helper()
	s := registry.NewStore(nil)
	d := yamldir.New(dir, s, nil, yamldir.WithSettle(20*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start: %v", err)
		}
	})
	select {
	case <-d.Ready():
	case err := <-done:
		t.Fatalf("Start ended early: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("initial load timed out")
	}
	return s
}

func TestWatchAppliesEdits(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "vms", "pg.yaml")
	writeFile(t, file, entryYAML("10.128.0.14", 5432))
	s := startDir(t, dir)
	if got := endpointAddr(s); got != "10.128.0.14" {
		t.Fatalf("initial endpoint = %q", got)
	}

	writeFile(t, file, entryYAML("10.128.0.15", 5432))
	eventually(t, s, "edited endpoint", func() bool { return endpointAddr(s) == "10.128.0.15" })

	// A new subdirectory with a new file is watched too.
	writeFile(t, filepath.Join(dir, "new", "sub", "inv.yml"), `apiVersion: v1
kind: Service
metadata: {name: inventory, namespace: default}
spec:
  clusterIP: 10.96.0.20
  ports: [{name: http, port: 8080}]
`)
	eventually(t, s, "service from new subdir", func() bool {
		return s.View().Service("inventory.default.svc.cluster.local") != nil
	})

	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	eventually(t, s, "deleted file's objects gone", func() bool { return s.View().Service(pgHost) == nil })
	if s.View().Service("inventory.default.svc.cluster.local") == nil {
		t.Error("deleting one file removed another file's objects")
	}
}

func TestWatchKeepsLastGoodVersion(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pg.yaml")
	other := filepath.Join(dir, "other.yaml")
	writeFile(t, file, entryYAML("10.128.0.14", 5432))
	writeFile(t, other, strings.ReplaceAll(entryYAML("10.128.0.20", 5432), "postgres-1-vm", "db-2"))
	s := startDir(t, dir)

	tests := []struct {
		name, content, wantSource, wantField, wantReason string
	}{
		{"invalid port", "# comment\n" + entryYAML("10.128.0.16", 0), file + ":13", "spec.ports[0].number", "InvalidPort"},
		{"yaml syntax", "apiVersion: v1\nkind: [\n", file + ":2", "", "InvalidYAML"},
		{"bad address", "---\n" + entryYAML("10.128.0.999", 5432), file + ":17", "spec.endpoints[0].address", "InvalidAddress"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, file, tc.content)
			eventually(t, s, "problem reported", func() bool { return len(s.Problems()) > 0 })
			ps := s.Problems()
			if len(ps) != 1 || ps[0].Source != tc.wantSource || ps[0].Field != tc.wantField || ps[0].Reason != tc.wantReason {
				t.Errorf("problems = %+v, want %s at %s %s", ps, tc.wantReason, tc.wantSource, tc.wantField)
			}
			if !strings.Contains(ps[0].Error(), "document 0") {
				t.Errorf("problem %q does not name the document", ps[0].Error())
			}
			if got := endpointAddr(s); got != "10.128.0.14" {
				t.Errorf("endpoint = %q, want the last good 10.128.0.14", got)
			}
			if s.View().Service("db-2.default.svc.cluster.local") == nil {
				t.Error("the other file's object is gone")
			}
			writeFile(t, file, entryYAML("10.128.0.14", 5432))
			eventually(t, s, "problem cleared", func() bool { return len(s.Problems()) == 0 })
		})
	}
}

func TestUnknownKindIsAWarning(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mixed.yaml"), `apiVersion: apps/v1
kind: Deployment
metadata: {name: inventory}
---
`+entryYAML("10.128.0.14", 5432))
	s := registry.NewStore(nil)
	ps := yamldir.Load(dir, s)
	if len(ps) != 1 || ps[0].Reason != registry.ReasonUnknownKind || ps[0].Source != filepath.Join(dir, "mixed.yaml")+":2" {
		t.Errorf("problems = %+v, want one UnknownKind at line 2", ps)
	}
	if endpointAddr(s) != "10.128.0.14" {
		t.Error("the known document next to an unknown kind was not applied")
	}
}

// TestWatchReadsRenamedFileAtOnce: a file renamed into place is whole, so
// it is read without waiting for the folder to settle; a created file that
// does not parse waits for the settle time before its error is reported.
func TestWatchReadsRenamedFileAtOnce(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pg.yaml")
	writeFile(t, file, entryYAML("10.128.0.14", 5432))
	s := registry.NewStore(nil)
	const settle = 3 * time.Second
	d := yamldir.New(dir, s, nil, yamldir.WithSettle(settle))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Start(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	<-d.Ready()

	start := time.Now()
	writeFile(t, file, entryYAML("10.128.0.15", 5432)) // temp file beside it, then rename
	eventually(t, s, "renamed file read", func() bool { return endpointAddr(s) == "10.128.0.15" })
	if took := time.Since(start); took >= settle {
		t.Errorf("renamed file read after %v, want well under the settle time %v", took, settle)
	}

	start = time.Now()
	writeFile(t, filepath.Join(dir, "broken.yaml"), "kind: [unclosed\n")
	eventually(t, s, "broken file reported", func() bool { return len(s.Problems()) > 0 })
	if took := time.Since(start); took < settle {
		t.Errorf("broken new file reported after %v, want after the settle time %v (it may still be being written)", took, settle)
	}
}

// TestWatchReadsFilesRenamedTogether: files a tool renames into place in
// one go (here 50 ServiceEntries, each written outside the folder first)
// are each read whole, at once, and all land, with no problem.
func TestWatchReadsFilesRenamedTogether(t *testing.T) {
	dir := t.TempDir()
	staging := t.TempDir()
	s := startDir(t, dir)
	const n = 50
	for i := range n {
		name := fmt.Sprintf("pg-%d", i)
		data := strings.NewReplacer("postgres-1-vm", name).Replace(entryYAML(fmt.Sprintf("10.128.1.%d", i+1), 5432))
		tmp := filepath.Join(staging, name+".yaml")
		if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rev := s.View().Revision()
	for i := range n {
		name := fmt.Sprintf("pg-%d.yaml", i)
		if err := os.Rename(filepath.Join(staging, name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, s, "every renamed file read", func() bool { return len(s.View().Services()) == n })
	if ps := s.Problems(); len(ps) > 0 {
		t.Errorf("problems: %v", ps)
	}
	for i := range n {
		host := fmt.Sprintf("pg-%d.default.svc.cluster.local", i)
		if eps := s.View().Endpoints(host); len(eps) != 1 || eps[0].Address != fmt.Sprintf("10.128.1.%d", i+1) {
			t.Errorf("%s: endpoints %v", host, eps)
		}
	}
	// How many writes depends on how the renames and the reads
	// interleave (two, on an idle machine), so it is only logged.
	t.Logf("%d files renamed in: %d writes of the model", n, s.View().Revision()-rev)
}
