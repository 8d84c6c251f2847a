package loadtest

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// SoakConfig says what `make soak` runs: scenario S's mesh and fleet (SotW
// and delta proxies mixed), then Duration of steady changes while some
// proxies disconnect and reconnect, some reject a version and a few read
// slowly.
type SoakConfig struct {
	Scenario         Scenario
	Duration         time.Duration // of the changes (default 5m)
	ChangesPerSecond int           // default 10
	ChurnFraction    float64       // proxies that disconnect and reconnect at random (default 0.05)
	NackFraction     float64       // proxies that reject one version (default 0.01)
	SlowReaders      int           // proxies that pause before every read (default 1 per 200, at least 1)
	SlowPause        time.Duration // a slow reader's pause (default 500ms)
	// ConvergeTimeout is how long a change may take to reach every proxy
	// before it counts as never converged (default 3m, the per-change
	// timeout of make bench).
	ConvergeTimeout time.Duration
	ServerBin       string
	WorkDir         string
	Timeout         time.Duration // for the fleet to be configured (default 3m)
	Progress        io.Writer
}

func (c *SoakConfig) setDefaults() {
	c.Duration = cmp.Or(c.Duration, 5*time.Minute)
	c.ChangesPerSecond = cmp.Or(c.ChangesPerSecond, 10)
	c.ChurnFraction = cmp.Or(c.ChurnFraction, 0.05)
	c.NackFraction = cmp.Or(c.NackFraction, 0.01)
	c.SlowReaders = cmp.Or(c.SlowReaders, max(1, c.Scenario.Proxies/200))
	c.SlowPause = cmp.Or(c.SlowPause, 500*time.Millisecond)
	c.ConvergeTimeout = cmp.Or(c.ConvergeTimeout, 3*time.Minute)
	c.Timeout = cmp.Or(c.Timeout, 3*time.Minute)
	if c.Progress == nil {
		c.Progress = io.Discard
	}
}

// soak is one soak run.
type soak struct {
	cfg     SoakConfig
	parse   *parseCache
	fl      *fleet // for its delta parsing and SotW subscriptions
	proxies []*soakProxy
	churn   atomic.Bool // churners disconnect now and then
	start   time.Time   // of the changes

	configuredN atomic.Int64
	allReady    chan struct{}

	activeMu sync.Mutex
	active   atomic.Pointer[[]*soakChange]

	mu           sync.Mutex
	lat          map[int][]float64 // minute -> convergence times (ms) of the changes made in it
	changes      map[int]int       // minute -> changes made
	unconvergedN int
	drops        []string // why streams were dropped (the first few)
}

// RunSoak runs the soak against our server and reports.
func RunSoak(ctx context.Context, cfg SoakConfig) (*SoakReport, error) {
	cfg.setDefaults()
	dir := filepath.Join(cfg.WorkDir, "mesh")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	m, err := writeMesh(dir, cfg.Scenario)
	if err != nil {
		return nil, err
	}
	bin, args := Config{ServerBin: cfg.ServerBin}.serverArgs(Ours, dir, filepath.Join(cfg.WorkDir, "data"))
	logPath := filepath.Join(cfg.WorkDir, "server.log")
	fmt.Fprintf(cfg.Progress, "soak: starting server (log %s)\n", logPath)
	p, err := startProcess(ctx, bin, args, logPath, unpinned)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	sk := newSoak(cfg, m.proxies())
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rep := &SoakReport{Scenario: cfg.Scenario, Started: time.Now().UTC()}
	if err := sk.connect(sctx, p, rep); err != nil {
		return rep, err
	}
	if err := sk.changeFor(sctx, p, &soakMesh{mesh: m}, rep); err != nil {
		return rep, err
	}
	sk.finish(rep)
	return rep, nil
}

func newSoak(cfg SoakConfig, specs []ProxySpec) *soak {
	parse := newParseCache()
	sk := &soak{cfg: cfg, parse: parse, fl: &fleet{parse: parse, sets: newNameSets()}, allReady: make(chan struct{}),
		lat: map[int][]float64{}, changes: map[int]int{}}
	for i, s := range specs {
		sk.proxies = append(sk.proxies, newSoakProxy(i, s, i%2 == 1))
	}
	// Roles over the fleet: slow readers, then churners, then NACKers,
	// picked at random and not overlapping.
	order := rand.Perm(len(specs))
	churners := int(float64(len(specs)) * cfg.ChurnFraction)
	nackers := max(1, int(float64(len(specs))*cfg.NackFraction))
	for k, i := range order {
		switch {
		case k < cfg.SlowReaders:
			sk.proxies[i].slow = cfg.SlowPause
		case k < cfg.SlowReaders+churners:
			sk.proxies[i].churner = true
		case k < cfg.SlowReaders+churners+nackers:
			sk.proxies[i].nacker = true
		}
	}
	return sk
}

// connect connects the fleet (slow readers on connections of their own)
// and waits until every proxy is configured.
func (sk *soak) connect(ctx context.Context, p *process, rep *SoakReport) error {
	conns := max(1, len(sk.proxies)/100)
	var shared []*grpc.ClientConn
	for range conns {
		cc, err := dialSoak(p.grpcAddr)
		if err != nil {
			return err
		}
		shared = append(shared, cc)
	}
	start := time.Now()
	for _, px := range sk.proxies {
		cc := shared[px.i%len(shared)]
		if px.slow > 0 {
			var err error
			if cc, err = dialSoak(p.grpcAddr); err != nil {
				return err
			}
		}
		go func() {
			defer func() {
				if px.slow > 0 {
					cc.Close()
				}
			}()
			sk.runProxy(ctx, px, cc)
		}()
	}
	go func() { <-ctx.Done(); closeAll(shared) }()
	select {
	case <-sk.allReady:
	case <-time.After(sk.cfg.Timeout):
		return fmt.Errorf("only %d of %d proxies configured after %v", sk.configuredN.Load(), len(sk.proxies), sk.cfg.Timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
	rep.ConnectSeconds = time.Since(start).Seconds()
	fmt.Fprintf(sk.cfg.Progress, "soak: %d proxies (%d delta) configured in %.1fs; %s\n",
		len(sk.proxies), len(sk.proxies)/2, rep.ConnectSeconds, memoryDetail(p))
	return nil
}

func dialSoak(addr string) (*grpc.ClientConn, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20), grpc.ForceCodecV2(newClientCodec())),
		grpc.WithInitialWindowSize(4<<20), grpc.WithInitialConnWindowSize(16<<20))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return cc, nil
}

// runProxy keeps a proxy connected until ctx ends: a churner drops its
// stream now and then and comes back after a moment; a stream the server
// ends is counted and reopened.
func (sk *soak) runProxy(ctx context.Context, px *soakProxy, cc *grpc.ClientConn) {
	for ctx.Err() == nil {
		sctx, cancel := context.WithCancel(ctx)
		if px.churner {
			go sk.disconnectLater(sctx, cancel)
		}
		dropped, err := px.stream(sctx, cc, sk)
		cancel()
		switch {
		case dropped:
			px.dropped.Add(1)
			sk.mu.Lock()
			if len(sk.drops) < 5 {
				sk.drops = append(sk.drops, fmt.Sprintf("%s: %v", px.spec.ID, err))
			}
			sk.mu.Unlock()
			sleep(ctx, time.Second)
		case px.churner:
			sleep(ctx, rand.N(500*time.Millisecond))
		}
	}
}

// disconnectLater ends a churner's stream (cancel) after 5 to 15 s, once
// the churn is on.
func (sk *soak) disconnectLater(ctx context.Context, cancel func()) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(5*time.Second + rand.N(10*time.Second)):
			if sk.churn.Load() {
				cancel()
				return
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
