// Command loadtest measures the push path at scale (`make bench`): it runs
// `controlplane serve` on a generated mesh, connects many Envoy-like ADS
// streams, makes changes and reports convergence, memory, CPU and bytes,
// next to a baseline that rebuilds every proxy's snapshot from scratch.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/librarymesh/controlplane/internal/loadtest"
)

type options struct {
	scenario        string
	modes           string
	out             string
	serverBin       string
	baseline        bool
	oursOff         bool
	unshared        bool
	baselineChanges int
	conns           int
	keep            bool
	profileDir      string
	timeout         time.Duration
	soak            bool
	duration        time.Duration
	proxies         int
	services        int
	// baseline server mode
	baselineServer bool
	configDir      string
	// bytes floor
	floor       bool
	floorServer bool
	// cold start
	coldStart     bool
	coldStartKube bool
	coldStartRuns int
	// the load client
	clientMemLimitGB float64
	// istiod as a peer
	istiodBin  string
	istiodCRDs string
	pin        bool
}

func main() {
	var o options
	flag.StringVar(&o.scenario, "scenario", "full", "full (S: 1000 services x 1000 proxies), small (50 x 50), scoped (full with each proxy's Sidecar limiting it to 10 services), small-scoped (small, 5 services), http (full, every service an HTTP ServiceEntry on 8080 without addresses) or l (L: 10,000 services x 2,000 proxies)")
	flag.IntVar(&o.proxies, "proxies", 0, "proxies, instead of the scenario's")
	flag.IntVar(&o.services, "services", 0, "services, instead of the scenario's")
	flag.IntVar(&o.conns, "conns", 0, "gRPC connections the proxies' streams share (default 1 per 100 proxies; as many as -proxies for one each, as real Envoys have)")
	flag.StringVar(&o.modes, "modes", "sotw,delta", "xDS modes to run, comma separated")
	flag.StringVar(&o.out, "out", "bench-results.json", "JSON report path")
	flag.StringVar(&o.serverBin, "server-bin", "", "controlplane binary (default: go build ./cmd/controlplane)")
	flag.BoolVar(&o.baseline, "baseline", true, "also run the baseline server")
	flag.BoolVar(&o.floor, "floor", true, "after each of our runs (SotW, delta), measure the bytes floor: the same responses sent to as many streams by a server that translates nothing")
	flag.BoolVar(&o.floorServer, "floor-server", false, "serve as the bytes floor (used by the load test itself)")
	flag.BoolVar(&o.coldStart, "cold-start", false, "measure only the cold start: exec to /readyz 200 with the scenario in a YAML folder and (-cold-start-kube) in a real kube-apiserver")
	flag.BoolVar(&o.coldStartKube, "cold-start-kube", true, "with -cold-start: also from a kube-apiserver (built by make tools; KUBEBUILDER_ASSETS)")
	flag.IntVar(&o.coldStartRuns, "cold-start-runs", 3, "with -cold-start: starts per source")
	flag.Float64Var(&o.clientMemLimitGB, "client-mem-limit", loadtest.DefaultClientMemLimitGiB(), "the load client's soft memory limit in GiB (GOMEMLIMIT; 0: none; default half the machine's memory, at least 4): it collects garbage more often near it")
	flag.BoolVar(&o.oursOff, "baseline-only", false, "run only the baseline server")
	flag.BoolVar(&o.unshared, "baseline-unshared", false, "baseline: a snapshot.Builder per proxy per change (nothing shared; slow at scale)")
	flag.IntVar(&o.baselineChanges, "baseline-changes", 2, "changes of each kind the baseline is driven through (0: all)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work folder (meshes, server logs)")
	flag.DurationVar(&o.timeout, "timeout", 3*time.Minute, "longest wait for the proxies to be configured or to ACK one change")
	flag.BoolVar(&o.baselineServer, "baseline-server", false, "serve as the baseline (used by the load test itself)")
	flag.StringVar(&o.configDir, "config-dir", "", "with -baseline-server: the YAML folder")
	flag.StringVar(&o.profileDir, "profile-dir", "", "save the server's heap profiles (before and after connecting, after the changes) and CPU profile of the changes, and the load client's CPU profile of the changes, here")
	flag.BoolVar(&o.soak, "soak", false, "soak (make soak): the scenario, then -duration of 10 changes/s while proxies churn, NACK and read slowly")
	flag.DurationVar(&o.duration, "duration", 5*time.Minute, "with -soak: how long the changes go on")
	flag.StringVar(&o.istiodBin, "istiod-bin", "", "also measure istiod: this pilot-discovery (hack/install-tools.sh --istiod builds it), fed the scenario through etcd and kube-apiserver (KUBEBUILDER_ASSETS)")
	flag.StringVar(&o.istiodCRDs, "istiod-crds", "", "with -istiod-bin: Istio's CRDs, one YAML file (hack/install-tools.sh --istiod writes istio-crds.yaml)")
	flag.BoolVar(&o.pin, "pin", false, "pin every server to CPU 0 with GOMAXPROCS=1 and the load client to CPU 1 (default true with -istiod-bin)")
	flag.Parse()
	if o.istiodBin != "" && !flagSet("pin") {
		o.pin = true
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if os.Getenv("GOGC") == "" && !o.baselineServer && !o.floorServer {
		// The load client holds every proxy's state (a large heap) and
		// shares the cores with the server: collect it less often, so its
		// GC pauses weigh less on what is measured.
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" && !o.baselineServer && !o.floorServer && o.clientMemLimitGB > 0 {
		// GOGC=400 lets the heap grow to five times what is live: at
		// scenario L (2,000 proxies of 10,000 services each) that took the
		// client past 13 GB. Past this limit it collects more often instead.
		debug.SetMemoryLimit(int64(o.clientMemLimitGB * (1 << 30)))
	}
	if o.floorServer {
		logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
		err = loadtest.RunFloor(ctx, loadtest.FloorConfig{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Logger: logger})
	} else if o.baselineServer {
		logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
		err = loadtest.RunBaseline(ctx, loadtest.BaselineConfig{ConfigDir: o.configDir, Unshared: o.unshared, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Logger: logger})
	} else if o.coldStart {
		err = runColdStart(ctx, o)
	} else if o.soak {
		err = runSoak(ctx, o)
	} else {
		err = run(ctx, o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	sc, err := scenario(o.scenario)
	if err != nil {
		return err
	}
	if o.proxies > 0 {
		sc.Proxies = o.proxies
	}
	if o.services > 0 {
		sc.Services = o.services
	}
	work, err := os.MkdirTemp("", "loadtest-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintln(os.Stderr, "work folder:", work)
	} else {
		defer os.RemoveAll(work)
	}
	cfg := loadtest.Config{Scenario: sc, WorkDir: work, ServerBin: o.serverBin, Modes: strings.Split(o.modes, ","),
		BaselineChanges: o.baselineChanges, OursOff: o.oursOff, BaselineUnshared: o.unshared, Progress: os.Stderr, Timeout: o.timeout, ProfileDir: o.profileDir,
		IstiodBin: o.istiodBin, IstiodCRDs: o.istiodCRDs, Pin: o.pin, Conns: o.conns}
	if (cfg.IstiodBin == "") != (cfg.IstiodCRDs == "") {
		return fmt.Errorf("-istiod-bin and -istiod-crds go together")
	}
	if cfg.ServerBin == "" {
		if cfg.ServerBin, err = buildServer(ctx, work); err != nil {
			return err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if o.baseline {
		cfg.BaselineBin = self
	}
	if o.floor && !o.oursOff {
		cfg.FloorBin = self
	}
	if cfg.Pin {
		// After the build above, which had both cores.
		if err := loadtest.PinSelf(loadtest.ClientCPU); err != nil {
			return err
		}
	}
	start := time.Now()
	rep, err := loadtest.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if err := rep.WriteTable(os.Stdout); err != nil {
		return err
	}
	fmt.Printf("\nreport: %s (run took %s)\n", o.out, time.Since(start).Round(time.Second))
	return rep.WriteJSON(o.out)
}

// runColdStart measures exec to /readyz 200 (-cold-start).
func runColdStart(ctx context.Context, o options) error {
	sc, err := scenario(o.scenario)
	if err != nil {
		return err
	}
	if o.services > 0 {
		sc.Services = o.services
	}
	work, err := os.MkdirTemp("", "coldstart-")
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
	cs, err := loadtest.RunColdStart(ctx, loadtest.ColdStartConfig{Scenario: sc, WorkDir: work, ServerBin: bin, Runs: o.coldStartRuns,
		Kube: o.coldStartKube, Progress: os.Stderr})
	if err != nil {
		return err
	}
	if err := cs.WriteTable(os.Stdout); err != nil {
		return err
	}
	b, err := json.MarshalIndent(cs, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(o.out, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	fmt.Printf("report: %s\n", o.out)
	return nil
}

// flagSet reports whether the named flag was given.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// scenario returns the named scenario.
func scenario(name string) (loadtest.Scenario, error) {
	switch name {
	case "full":
		return loadtest.ScenarioS(), nil
	case "small":
		return loadtest.ScenarioSmall(), nil
	case "scoped":
		return loadtest.ScenarioScoped(), nil
	case "small-scoped":
		return loadtest.ScenarioSmallScoped(), nil
	case "http":
		return loadtest.ScenarioHTTPEntries(), nil
	case "l", "L":
		return loadtest.ScenarioL(), nil
	}
	return loadtest.Scenario{}, fmt.Errorf("unknown scenario %q (full, small, scoped, small-scoped, http or l)", name)
}

// buildServer builds cmd/controlplane into dir.
func buildServer(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "controlplane")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/controlplane")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build controlplane (run from the repository root): %w", err)
	}
	return bin, nil
}
