package loadtest

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/librarymesh/controlplane/internal/e2e"
)

// TestSmallScenario runs the benchmark harness end to end on the small
// scenario (our server and the baseline, SotW and delta, and the bytes
// floor after each of our runs), so `make bench` cannot rot.
func TestSmallScenario(t *testing.T) {
	baselineBin := filepath.Join(t.TempDir(), "loadtest")
	build := exec.Command("go", "build", "-o", baselineBin, "./cmd/loadtest")
	build.Dir = e2e.ModuleRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build loadtest: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var progress strings.Builder
	rep, err := Run(ctx, Config{Scenario: ScenarioSmall(), WorkDir: t.TempDir(), ServerBin: e2e.Binary(t), BaselineBin: baselineBin, FloorBin: baselineBin,
		Modes: []string{"sotw", "delta"}, BaselineChanges: 1, Timeout: time.Minute, Progress: &progress})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if len(rep.Results) != 6 {
		t.Fatalf("got %d results, want 6 (ours, baseline and the floor, SotW and delta)", len(rep.Results))
	}
	for _, mode := range []string{"sotw", "delta"} {
		ours, floor := rep.find(Ours, mode), rep.find(Floor, mode)
		if floor == nil {
			t.Fatalf("no %s bytes floor result", mode)
		}
		// The floor sends one proxy's responses to every proxy: the same
		// bytes, give or take what differs between pod and VM sidecars.
		if floor.NewService.P99Ms <= 0 || floor.Endpoint.P99Ms <= 0 || floor.BytesPerProxyNewService < ours.BytesPerProxyNewService/2 ||
			floor.BytesPerProxyNewService > ours.BytesPerProxyNewService*2 || floor.ClientCPUNewService <= 0 ||
			floor.UpBytesPerProxyEndpoint <= 0 {
			t.Errorf("%s floor: incomplete result %+v (ours: %+v)", mode, *floor, *ours)
		}
	}
	ours := rep.find(Ours, "sotw")
	for _, r := range rep.Results {
		if r.Server == Floor {
			continue
		}
		if r.ColdStartSeconds <= 0 || r.ClientCPUNewService <= 0 || r.BytesPerProxyNewService <= 0 || r.BytesPerProxyEndpoint <= 0 {
			t.Errorf("%s %s: no cold start, client CPU or bytes per kind: %+v", r.Server, r.Mode, r)
		}
		if r.ConnectSeconds <= 0 || r.Endpoint.Changes == 0 || r.Endpoint.P99Ms <= 0 || r.NewService.P99Ms <= 0 ||
			r.RSSAfterMB <= 0 || r.HeapAfterMB <= 0 || r.BytesPerProxyPerChange <= 0 {
			t.Errorf("%s %s: incomplete result %+v", r.Server, r.Mode, r)
		}
		if r.Server == Ours && r.LiveHeapPerProxyKB <= 0 {
			t.Errorf("%s %s: no live heap per proxy (connected against disconnected, after /debug/pprof/heap?gc=1): %+v", r.Server, r.Mode, r)
		}
		if r.UpBytesPerProxyEndpoint <= 0 || r.UpBytesPerProxyNewService <= 0 {
			t.Errorf("%s %s: no bytes back (ACKs) counted: %+v", r.Server, r.Mode, r)
		}
	}
	// A SotW ACK names every endpoint set the proxy subscribes to; a delta
	// ACK names none.
	if delta := rep.find(Ours, "delta"); delta.UpBytesPerProxyEndpoint >= ours.UpBytesPerProxyEndpoint {
		t.Errorf("bytes back per proxy for an endpoint change: delta %.0f, SotW %.0f; want delta's fewer",
			delta.UpBytesPerProxyEndpoint, ours.UpBytesPerProxyEndpoint)
	}
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "endpoint change convergence p99") || !strings.Contains(table.String(), "x") ||
		strings.Count(table.String(), "ours/floor") != 2 {
		t.Errorf("table lacks rows or ratios:\n%s", table.String())
	}
	if err := rep.WriteJSON(filepath.Join(t.TempDir(), "report.json")); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())
}

// TestConnectConcurrencyAndSotWEndpointOnly runs the small scenario with
// L's settings: proxies connect a few at a time, and SotW proxies get only
// endpoint changes. Every proxy must still be configured.
func TestConnectConcurrencyAndSotWEndpointOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server")
	}
	sc := ScenarioSmall()
	sc.ConnectConcurrency, sc.SotWEndpointChangesOnly = 3, true
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var progress strings.Builder
	rep, err := Run(ctx, Config{Scenario: sc, WorkDir: t.TempDir(), ServerBin: e2e.Binary(t),
		Modes: []string{"sotw", "delta"}, Timeout: time.Minute, Progress: &progress})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	sotw, delta := rep.find(Ours, "sotw"), rep.find(Ours, "delta")
	if sotw == nil || delta == nil {
		t.Fatalf("results %+v, want ours in SotW and delta", rep.Results)
	}
	if sotw.ConnectSeconds <= 0 || delta.ConnectSeconds <= 0 {
		t.Errorf("connect not measured: SotW %v s, delta %v s", sotw.ConnectSeconds, delta.ConnectSeconds)
	}
	if sotw.Endpoint.Changes != sc.EndpointChanges || sotw.NewService.Changes != 0 {
		t.Errorf("SotW: %d endpoint and %d new-service changes, want %d and 0", sotw.Endpoint.Changes, sotw.NewService.Changes, sc.EndpointChanges)
	}
	if delta.Endpoint.Changes != sc.EndpointChanges || delta.NewService.Changes != sc.NewServiceChanges {
		t.Errorf("delta: %d endpoint and %d new-service changes, want %d and %d", delta.Endpoint.Changes, delta.NewService.Changes, sc.EndpointChanges, sc.NewServiceChanges)
	}
}
