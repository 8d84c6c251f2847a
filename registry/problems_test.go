package registry_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/librarymesh/controlplane/registry"
)

// countingHandler counts the records logged at warn level.
type countingHandler struct{ warns *atomic.Int64 }

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn {
		h.warns.Add(1)
	}
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

// TestProblemCaps: bad objects in bulk give a bounded problem list and a
// bounded number of log lines, with the rest counted.
func TestProblemCaps(t *testing.T) {
	const n = 3000
	var warns atomic.Int64
	s := registry.NewStore(slog.New(countingHandler{&warns}))
	objs := make([]runtime.Object, n)
	for i := range objs {
		objs[i] = makeService(fmt.Sprintf("bad-%d", i), "not-an-ip", svcPort("tcp", 5432))
	}
	if ps := s.UpsertBatch("kube", objs); len(ps) != n {
		t.Fatalf("batch returned %d problems, want %d", len(ps), n)
	}
	ps := s.Problems()
	if len(ps) != registry.MaxProblems+1 {
		t.Fatalf("Problems returned %d, want %d and a summary", len(ps), registry.MaxProblems)
	}
	last := ps[len(ps)-1]
	if want := fmt.Sprintf("and %d more problems", n-registry.MaxProblems); last.Reason != registry.ReasonTooManyProblems || !strings.Contains(last.Message, want) {
		t.Errorf("last problem %+v, want a summary with %q", last, want)
	}
	if got := warns.Load(); got > 60 {
		t.Errorf("%d warn lines for %d problems, want at most about 50", got, n)
	}
	if got := s.SuppressedProblemLogs(); got != uint64(n-int(warns.Load())) {
		t.Errorf("suppressed %d log lines, want %d", got, n-int(warns.Load()))
	}
}

// TestOriginProblemCap: one origin keeps MaxOriginProblems problems.
func TestOriginProblemCap(t *testing.T) {
	s := registry.NewStore(nil)
	var items []registry.Item
	for i := range 250 {
		items = append(items, registry.Item{Object: makeService(fmt.Sprintf("bad-%d", i), "not-an-ip")})
	}
	ps := s.Apply(registry.OriginUpdate{Origin: "dir/bad.yaml", Items: items, DroppedProblems: 7})
	if len(ps) != registry.MaxOriginProblems+1 {
		t.Fatalf("%d problems, want %d and a summary", len(ps), registry.MaxOriginProblems)
	}
	if got := fmt.Sprint(ps); !strings.Contains(got, fmt.Sprintf("and %d more problems", 250-registry.MaxOriginProblems+7)) {
		t.Errorf("no summary counting the rest: %v", ps[len(ps)-5:])
	}
}
