package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/librarymesh/controlplane/internal/loadtest"
)

// runSoak runs `make soak`: scenario S, then o.duration of changes under
// churn; it fails when a stream was dropped or a change never converged.
func runSoak(ctx context.Context, o options) error {
	sc, err := scenario(o.scenario)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "soak-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintln(os.Stderr, "work folder:", work)
	} else {
		defer os.RemoveAll(work)
	}
	bin := o.serverBin
	if bin == "" {
		if bin, err = buildServer(ctx, work); err != nil {
			return err
		}
	}
	start := time.Now()
	rep, err := loadtest.RunSoak(ctx, loadtest.SoakConfig{Scenario: sc, Duration: o.duration, ServerBin: bin, WorkDir: work,
		Timeout: o.timeout, Progress: os.Stderr})
	if err != nil {
		return err
	}
	if err := rep.WriteTable(os.Stdout); err != nil {
		return err
	}
	fmt.Printf("\nreport: %s (run took %s)\n", o.out, time.Since(start).Round(time.Second))
	if err := rep.WriteJSON(o.out); err != nil {
		return err
	}
	if rep.DroppedStreams != 0 || rep.Unconverged != 0 {
		return fmt.Errorf("%d streams dropped by the server, %d changes unconverged (both must be 0)", rep.DroppedStreams, rep.Unconverged)
	}
	return nil
}
