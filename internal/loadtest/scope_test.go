package loadtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/librarymesh/controlplane/internal/e2e"
)

// TestSmallScopedScenario runs our server on the small scenario with and
// without Sidecars (SotW): with every proxy scoped to 5 of 50 services, a
// change reaches only the proxies of one group (the probe waits for them
// alone), and the bytes sent per proxy per change fall to a fraction.
func TestSmallScopedScenario(t *testing.T) {
	bin := e2e.Binary(t)
	run := func(sc Scenario) Result {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		var progress strings.Builder
		rep, err := Run(ctx, Config{Scenario: sc, WorkDir: t.TempDir(), ServerBin: bin, Modes: []string{"sotw"},
			Timeout: time.Minute, Progress: &progress})
		if err != nil {
			t.Fatalf("%v\n%s", err, progress.String())
		}
		if len(rep.Results) != 1 {
			t.Fatalf("got %d results, want 1", len(rep.Results))
		}
		r := rep.Results[0]
		if r.Endpoint.Changes != sc.EndpointChanges || r.NewService.Changes != sc.NewServiceChanges || r.Endpoint.P99Ms <= 0 ||
			r.BytesPerProxyPerChange <= 0 {
			t.Fatalf("incomplete result %+v\n%s", r, progress.String())
		}
		return r
	}
	open, scoped := run(ScenarioSmall()), run(ScenarioSmallScoped())
	t.Logf("bytes per proxy per change: %.0f unscoped, %.0f scoped", open.BytesPerProxyPerChange, scoped.BytesPerProxyPerChange)
	if scoped.BytesPerProxyPerChange*5 > open.BytesPerProxyPerChange {
		t.Errorf("scoped proxies were sent %.0f bytes per change, unscoped %.0f: want less than a fifth",
			scoped.BytesPerProxyPerChange, open.BytesPerProxyPerChange)
	}
}
