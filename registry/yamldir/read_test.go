//go:build unix

package yamldir_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/registry/yamldir"
)

// badFiles makes files the source must not read: a FIFO, a symlink to
// /dev/zero, a symlink to a directory and a file over maxBytes. It
// returns their paths and the reason each must be reported with.
func badFiles(t *testing.T, dir string, maxBytes int) map[string]string {
	t.Helper()
	want := map[string]string{}
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	want[fifo] = yamldir.ReasonNotRegularFile
	zero := filepath.Join(dir, "zero.yaml")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	want[zero] = yamldir.ReasonNotRegularFile
	sub := filepath.Join(dir, "sub.yaml")
	if err := os.Symlink(t.TempDir(), sub); err != nil {
		t.Fatal(err)
	}
	want[sub] = yamldir.ReasonNotRegularFile
	big := filepath.Join(dir, "big.yaml")
	content := "# padding\n" + strings.Repeat("#", maxBytes) + "\n" + entryYAML("10.0.0.66", 5432)
	if err := os.WriteFile(big, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	want[big] = yamldir.ReasonFileTooLarge
	return want
}

func checkFileProblems(t *testing.T, ps []registry.Problem, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, p := range ps {
		got[p.Source] = p.Reason
		if p.Reason == yamldir.ReasonFileTooLarge && !strings.Contains(p.Message, "limit of") {
			t.Errorf("oversize problem does not state the limit: %s", p.Error())
		}
	}
	for path, reason := range want {
		if got[path] != reason {
			t.Errorf("%s: reason %q, want %q; problems %v", path, got[path], reason, ps)
		}
	}
}

func TestLoadReadsOnlyRegularFiles(t *testing.T) {
	dir := t.TempDir()
	want := badFiles(t, dir, yamldir.DefaultMaxFileBytes)
	good := filepath.Join(dir, "z-good.yaml")
	if err := os.WriteFile(good, []byte(entryYAML("10.0.0.1", 5432)), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.yaml") // a symlink to a regular file is read
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	s := registry.NewStore(nil)
	done := make(chan []registry.Problem, 1)
	go func() { done <- yamldir.Load(dir, s) }()
	select {
	case ps := <-done:
		checkFileProblems(t, ps, want)
	case <-time.After(10 * time.Second):
		t.Fatal("Load blocked on a file that is not regular")
	}
	if got := endpointAddr(s); got != "10.0.0.1" {
		t.Errorf("endpoint %q, want the good file's 10.0.0.1", got)
	}
}

// TestWatchSkipsBadFiles: bad files present at start and created later
// are reported and skipped; a later valid file is still applied.
func TestWatchSkipsBadFiles(t *testing.T) {
	const maxBytes = 2048
	dir := t.TempDir()
	want := badFiles(t, dir, maxBytes)
	s := registry.NewStore(nil)
	d := yamldir.New(dir, s, nil, yamldir.WithSettle(20*time.Millisecond), yamldir.WithMaxFileBytes(maxBytes))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-d.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("initial load blocked")
	}
	checkFileProblems(t, s.Problems(), want)

	// A FIFO created while watching does not stall the watcher either.
	late := filepath.Join(dir, "late-fifo.yaml")
	if err := syscall.Mkfifo(late, 0o644); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "zz-good.yaml"), entryYAML("10.0.0.1", 5432))
	eventually(t, s, "the valid file to be applied", func() bool { return endpointAddr(s) == "10.0.0.1" })
	want[late] = yamldir.ReasonNotRegularFile
	eventually(t, s, "the late FIFO to be reported", func() bool {
		return strings.Contains(fmt.Sprint(s.Problems()), late)
	})
	checkFileProblems(t, s.Problems(), want)
}

// TestProblemsAreCapped: a file of many bad documents keeps at most
// registry.MaxOriginProblems problems and counts the rest.
func TestProblemsAreCapped(t *testing.T) {
	dir := t.TempDir()
	const docs = 5000
	var b strings.Builder
	for i := range docs {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Service\nmetadata: {name: s%d}\nspec: {ports: [{port: 0}]}\n", i)
	}
	for i := range docs {
		fmt.Fprintf(&b, "---\nkind: [broken %d\n", i)
	}
	path := filepath.Join(dir, "many.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ps := yamldir.Load(dir, registry.NewStore(nil))
	if len(ps) != registry.MaxOriginProblems+1 {
		t.Fatalf("%d problems, want %d plus one summary", len(ps), registry.MaxOriginProblems)
	}
	var summary *registry.Problem
	for i := range ps {
		if ps[i].Reason == registry.ReasonTooManyProblems {
			summary = &ps[i]
		}
	}
	want := fmt.Sprintf("and %d more problems", 2*docs-registry.MaxOriginProblems)
	if summary == nil || summary.Source != path || !strings.Contains(summary.Message, want) {
		t.Errorf("summary problem %+v, want %q for %s", summary, want, path)
	}
}
