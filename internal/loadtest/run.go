package loadtest

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"time"
)

// Config says what to run.
type Config struct {
	Scenario    Scenario
	WorkDir     string // scratch space (folders, server logs)
	ServerBin   string // the controlplane binary
	BaselineBin string // a binary whose BaselineArgs run the baseline server; empty skips the baseline
	// FloorBin is a binary whose FloorArgs run the bytes floor; when set
	// (and the scenario unscoped), the SotW run of our server is followed
	// by the floor sending the same responses to as many streams.
	FloorBin string
	Modes    []string // "sotw", "delta"
	// OursOff skips our server (to time the baseline alone).
	OursOff bool
	// BaselineChanges caps the endpoint and new-service changes the
	// baseline is driven through (it rebuilds every proxy from scratch on
	// each, which takes long at scale); 0 means all.
	BaselineChanges int
	// BaselineUnshared gives each proxy of the baseline its own Builder.
	BaselineUnshared bool
	Conns            int           // gRPC connections the streams share (default 1 per 100 proxies)
	Timeout          time.Duration // per wait (connect, each change); default 3m
	Progress         io.Writer
	// ProfileDir, when set, receives the server's heap profiles (before and
	// after the proxies connect, after the changes) and CPU profile of the
	// changes (SERVER-MODE-*.pb.gz), and the load client's own CPU profile
	// of the changes (client-SERVER-MODE-cpu.pb.gz): it shares the cores
	// with the server.
	ProfileDir string
	// IstiodBin (pilot-discovery) and IstiodCRDs (Istio's CRDs, one YAML
	// file), when set, add istiod as a peer: per mode it gets its own etcd
	// and kube-apiserver holding the scenario (see istiod.go).
	IstiodBin  string
	IstiodCRDs string
	// Pin runs every server on ServerCPU with GOMAXPROCS=1; the caller
	// pins the load client itself to ClientCPU (PinSelf).
	Pin bool
}

// launch is how cfg starts a server.
func (cfg Config) launch() launch {
	if cfg.Pin {
		return launch{cpu: ServerCPU}
	}
	return unpinned
}

// Servers under test.
const (
	Ours     = "controlplane"
	Baseline = "baseline"
	Floor    = "floor"
	Istiod   = "istiod"
)

// BaselineArgs are the arguments that make BaselineBin serve dir.
func BaselineArgs(dir string, unshared bool) []string {
	return []string{"-baseline-server", "-config-dir", dir, fmt.Sprintf("-baseline-unshared=%t", unshared)}
}

// Run runs every mode against our server and, if configured, the baseline.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Conns <= 0 {
		cfg.Conns = max(1, cfg.Scenario.Proxies/100)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Minute
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	rep := &Report{Scenario: cfg.Scenario, Started: time.Now().UTC()}
	for _, mode := range cfg.Modes {
		var servers []string
		if !cfg.OursOff {
			servers = append(servers, Ours)
		}
		if cfg.BaselineBin != "" {
			servers = append(servers, Baseline)
		}
		if cfg.IstiodBin != "" {
			servers = append(servers, Istiod)
		}
		for _, server := range servers {
			r, err := runMode(ctx, cfg, server, mode)
			if err != nil {
				return rep, fmt.Errorf("%s %s: %w", server, mode, err)
			}
			rep.Results = append(rep.Results, *r)
			if len(r.recorded) > 0 {
				fr, err := runFloor(ctx, cfg, mode, r.specs, r.connected, r.recorded)
				if err != nil {
					return rep, fmt.Errorf("floor %s: %w", mode, err)
				}
				rep.Results = append(rep.Results, *fr)
			}
		}
	}
	rep.Seconds = time.Since(rep.Started).Seconds()
	return rep, nil
}

func (cfg Config) serverArgs(server, dir, dataDir string) (string, []string) {
	if server == Baseline {
		return cfg.BaselineBin, BaselineArgs(dir, cfg.BaselineUnshared)
	}
	return cfg.ServerBin, []string{"serve", "--config-dir", dir, "--data-dir", dataDir, "--grpc-addr", "127.0.0.1:0",
		"--secure-grpc-addr", "", "--inject-addr", "", "--http-addr", "127.0.0.1:0", "--log-level", cmp.Or(os.Getenv("LOADTEST_SERVER_LOG_LEVEL"), "info")}
}

// runMode starts a server on a fresh folder, connects the fleet, makes the
// changes and measures.
func runMode(ctx context.Context, cfg Config, server, mode string) (*Result, error) {
	base := filepath.Join(cfg.WorkDir, server+"-"+mode)
	dir := filepath.Join(base, "mesh")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	m, err := writeMesh(dir, cfg.Scenario)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Progress, "%s %s: starting server (log %s)\n", server, mode, filepath.Join(base, "server.log"))
	var p *process
	if server == Istiod {
		var stop func()
		p, stop, err = startIstiod(ctx, cfg, base, m)
		if err != nil {
			return nil, err
		}
		defer stop()
	} else {
		bin, args := cfg.serverArgs(server, dir, filepath.Join(base, "data"))
		if p, err = startProcess(ctx, bin, args, filepath.Join(base, "server.log"), cfg.launch()); err != nil {
			return nil, err
		}
		defer p.stop()
	}
	if cfg.Pin {
		fmt.Fprintf(cfg.Progress, "%s %s: server on CPUs %s, load client on CPUs %s\n", server, mode, cpusAllowed(p.cmd.Process.Pid), cpusAllowed(os.Getpid()))
	}
	r := &Result{Server: server, Mode: mode, Proxies: cfg.Scenario.Proxies, Services: cfg.Scenario.Services,
		ColdStartSeconds: p.startup.Seconds(), specs: m.proxies()}
	fmt.Fprintf(cfg.Progress, "%s %s: exec to /readyz 200 in %.3fs\n", server, mode, r.ColdStartSeconds)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f := newFleet(r.specs, mode == "delta")
	if n := cfg.Scenario.ConnectConcurrency; n > 0 {
		f.gate = make(chan struct{}, n)
	}
	record := server == Ours && cfg.FloorBin != "" && cfg.Scenario.ScopeSize == 0
	var connecting *recording
	if record {
		connecting = &recording{proxy: 0}
		f.record.Store(connecting)
	}
	if err := r.connect(sctx, cfg, p, f); err != nil {
		return r, err
	}
	if connecting != nil {
		f.record.Store(nil)
		r.connected = connecting.messages()
	}
	if cfg.ProfileDir != "" {
		prefix := filepath.Join(cfg.ProfileDir, server+"-"+mode)
		if err := p.saveProfile("heap?gc=1", prefix+"-heap.pb.gz"); err != nil {
			return r, err
		}
		go p.saveProfile("profile?seconds=20", prefix+"-cpu.pb.gz")
	}
	changes := m.changes()
	if server == Baseline {
		changes = limitChanges(changes, cfg.BaselineChanges)
	}
	if mode == "sotw" && cfg.Scenario.SotWEndpointChangesOnly {
		changes = slices.DeleteFunc(changes, func(c change) bool { return c.kind == newServiceChange })
	}
	stopProfile, err := cfg.profileClient(server, mode)
	if err != nil {
		return r, err
	}
	err = r.change(ctx, cfg, p, f, changes, record)
	stopProfile()
	if err != nil {
		return r, err
	}
	if cfg.ProfileDir != "" {
		// With the one taken after connecting as -base: what the changes allocated.
		if err := p.saveProfile("heap", filepath.Join(cfg.ProfileDir, server+"-"+mode+"-heap-after.pb.gz")); err != nil {
			return r, err
		}
	}
	r.proxyLiveHeap(p, cancel, len(r.specs))
	return r, nil
}

// profileClient starts the load client's CPU profile of a run's changes,
// with cfg.ProfileDir set, and returns what stops it.
func (cfg Config) profileClient(server, mode string) (stop func(), err error) {
	if cfg.ProfileDir == "" {
		return func() {}, nil
	}
	f, err := os.Create(filepath.Join(cfg.ProfileDir, "client-"+server+"-"+mode+"-cpu.pb.gz"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("load client CPU profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// limitChanges keeps the first n changes of each kind (all when n is 0).
func limitChanges(cs []change, n int) []change {
	if n <= 0 {
		return cs
	}
	count := map[string]int{}
	var out []change
	for _, c := range cs {
		if count[c.kind] < n {
			count[c.kind]++
			out = append(out, c)
		}
	}
	return out
}
