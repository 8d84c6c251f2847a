package loadtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/librarymesh/controlplane/internal/e2e"
)

// TestShortSoak is `make soak` cut to 30 seconds and 100 proxies: our
// server under 10 changes/s (endpoints, policies, new and removed
// Services) while proxies churn, one NACKs a version and one reads
// slowly. No stream may be dropped and every change must reach every proxy.
func TestShortSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var progress strings.Builder
	rep, err := RunSoak(ctx, SoakConfig{Scenario: Scenario{Services: 100, Proxies: 100}, Duration: 30 * time.Second,
		ChurnFraction: 0.1, ServerBin: e2e.Binary(t), WorkDir: t.TempDir(), Timeout: 2 * time.Minute, Progress: &progress})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())
	if rep.DroppedStreams != 0 {
		t.Errorf("%d streams dropped by the server: %v", rep.DroppedStreams, rep.Drops)
	}
	if rep.Unconverged != 0 {
		t.Errorf("%d changes never reached every proxy:\n%s", rep.Unconverged, progress.String())
	}
	// The run must have done what it claims: changes of every kind made
	// and converged, proxies reconnecting and rejecting, memory sampled.
	for _, k := range []string{soakEndpoint, soakPolicy, soakNew, soakRemoved} {
		if rep.Changes[k] == 0 {
			t.Errorf("no %s change made: %v", k, rep.Changes)
		}
	}
	if rep.ChangesTotal < 200 || rep.Reconnects == 0 || rep.Nacks == 0 || len(rep.Minutes) == 0 || rep.Minutes[0].P99Ms <= 0 || rep.Minutes[0].HeapMB <= 0 {
		t.Errorf("incomplete soak: %d changes, %d reconnects, %d NACKs, minutes %+v", rep.ChangesTotal, rep.Reconnects, rep.Nacks, rep.Minutes)
	}
}
