package loadtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/registry/yamldir"
	"github.com/librarymesh/controlplane/snapshot"
)

// BaselineConfig configures the baseline server.
type BaselineConfig struct {
	ConfigDir, GRPCAddr, HTTPAddr string
	Debounce                      time.Duration // fixed wait after a change (100ms)
	// Unshared gives every proxy a Builder of its own, so nothing at all
	// is shared (about 0.1-0.3 s per proxy at scenario S: too slow for
	// `make bench` at 1000 proxies). By default one fresh Builder per
	// change is shared by the proxies rebuilt for it.
	Unshared bool
	Logger   *slog.Logger
}

// baseline is what a first implementation does: a go-control-plane
// SnapshotCache and, on every change, for every proxy, a new snapshot
// (cache.NewSnapshot, one version for all types) built from scratch by a
// fresh snapshot.Builder; go-control-plane marshals every resource again
// for every proxy it sends it to.
type baseline struct {
	cfg     BaselineConfig
	store   *registry.Store
	cache   cachev3.SnapshotCache
	version int

	mu      sync.Mutex
	builder *snapshot.Builder // of the current revision, unless Unshared
	streams map[int64]string  // stream -> node ID
	nodes   map[string]*snapshot.Proxy
	refs    map[string]int
}

// RunBaseline serves the baseline until ctx ends. It logs `serving gRPC`
// and `serving HTTP` with their addresses, like `controlplane serve`.
func RunBaseline(ctx context.Context, cfg BaselineConfig) error {
	cfg.Logger.Info("baseline", "unshared", cfg.Unshared)
	if cfg.Debounce <= 0 {
		cfg.Debounce = 100 * time.Millisecond
	}
	b := &baseline{cfg: cfg, store: registry.NewStore(cfg.Logger), cache: cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil),
		streams: map[int64]string{}, nodes: map[string]*snapshot.Proxy{}, refs: map[string]int{}}
	dir := yamldir.New(cfg.ConfigDir, b.store, cfg.Logger)
	errc := make(chan error, 3)
	go func() { errc <- dir.Start(ctx) }()
	select {
	case <-dir.Ready():
	case err := <-errc:
		return fmt.Errorf("yaml folder: %w", err)
	}
	g := grpc.NewServer(grpc.MaxConcurrentStreams(1 << 20))
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, serverv3.NewServer(ctx, b.cache, b.callbacks()))
	lis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.GRPCAddr, err)
	}
	hl, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	hs := &http.Server{Handler: baselineHTTP(), ReadHeaderTimeout: 10 * time.Second}
	go func() { errc <- g.Serve(lis) }()
	go func() { errc <- hs.Serve(hl) }()
	cfg.Logger.Info("serving gRPC", "addr", lis.Addr().String())
	cfg.Logger.Info("serving HTTP", "addr", hl.Addr().String())
	go b.pushLoop(ctx)
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	g.Stop()
	hs.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func baselineHTTP() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	return mux
}

func (b *baseline) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamRequestFunc: func(id int64, r *discoveryv3.DiscoveryRequest) error { return b.open(id, r.GetNode()) },
		StreamDeltaRequestFunc: func(id int64, r *discoveryv3.DeltaDiscoveryRequest) error {
			return b.open(-id-1, r.GetNode())
		},
		StreamClosedFunc:      func(id int64, _ *corev3.Node) { b.close(id) },
		DeltaStreamClosedFunc: func(id int64, _ *corev3.Node) { b.close(-id - 1) },
	}
}

// open builds the snapshot of a stream's node on its first request.
func (b *baseline) open(stream int64, node *corev3.Node) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.streams[stream]; ok {
		return nil
	}
	p, err := snapshot.ParseProxy(node)
	if err != nil {
		return err
	}
	b.streams[stream] = p.ID
	b.refs[p.ID]++
	if b.nodes[p.ID] == nil {
		b.nodes[p.ID] = p
		b.buildLocked(context.Background(), b.builderLocked(b.store.View()), p)
	}
	return nil
}

func (b *baseline) close(stream int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id, ok := b.streams[stream]
	if !ok {
		return
	}
	delete(b.streams, stream)
	if b.refs[id]--; b.refs[id] == 0 {
		delete(b.refs, id)
		delete(b.nodes, id)
		b.cache.ClearSnapshot(id)
	}
}

// builderLocked returns the Builder for a proxy's build from view: a new
// one per proxy when Unshared, else one per model revision.
func (b *baseline) builderLocked(v registry.View) *snapshot.Builder {
	if b.cfg.Unshared {
		return snapshot.NewBuilder(v, snapshot.Options{})
	}
	if b.builder == nil || b.builder.Revision() != v.Revision() {
		b.builder = snapshot.NewBuilder(v, snapshot.Options{})
	}
	return b.builder
}

// buildLocked builds one proxy's snapshot and sets it.
func (b *baseline) buildLocked(ctx context.Context, builder *snapshot.Builder, p *snapshot.Proxy) {
	res, err := builder.Build(p)
	if err != nil {
		b.cfg.Logger.Error("build", "node", p.ID, "error", err)
		return
	}
	b.version++
	snap, err := cachev3.NewSnapshot(strconv.Itoa(b.version), map[resourcev3.Type][]types.Resource{
		resourcev3.ListenerType: res.Listeners, resourcev3.RouteType: res.Routes, resourcev3.ClusterType: res.Clusters,
		resourcev3.EndpointType: res.Endpoints, resourcev3.SecretType: res.Secrets,
	})
	if err == nil {
		err = b.cache.SetSnapshot(ctx, p.ID, snap)
	}
	if err != nil {
		b.cfg.Logger.Error("set snapshot", "node", p.ID, "error", err)
	}
}

// pushLoop rebuilds every proxy after each change, after a fixed debounce.
func (b *baseline) pushLoop(ctx context.Context) {
	signal, cancel := b.store.Subscribe()
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return
		case <-signal:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(b.cfg.Debounce):
		}
		b.mu.Lock()
		v := b.store.View()
		b.builder = nil // rebuild everything, as from scratch
		for _, p := range b.nodes {
			b.buildLocked(ctx, b.builderLocked(v), p)
		}
		b.mu.Unlock()
	}
}
