package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/reflection"
)

// Server serves xDS, CSDS, health and reflection over gRPC, and health,
// metrics and debug views over HTTP.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	pusher  *pusher
	ads     *ads
	idleGC  *idleGC
	health  *health.Server

	grpcLis, httpLis net.Listener
	grpcSrv          *grpc.Server
	httpSrv          *http.Server
	extra            []extraGRPC // more gRPC listeners (e.g. TLS on 15012)

	bufPool mem.BufferPool

	pushes    atomic.Int64  // rebuild rounds done
	pushedRev atomic.Uint64 // model revision of the last rebuild
	ready     atomic.Bool

	startedAt time.Time
	lastPush  pushRecord     // what the last rebuild round did
	recent    *recentSamples // convergence times of the last minutes
	page      http.Handler   // the status page at /, if set
	sources   sourceStates   // since when each config source is unreachable
	// extraDebug are more /debug/ views (HandleDebug).
	extraDebug []debugRoute
}

// The status page's convergence p50/p99 are over the last recentWindow,
// from at most recentMax samples (a push to 1000 proxies makes 1000).
const (
	recentWindow = 10 * time.Minute
	recentMax    = 1 << 15
)

// New makes a Server and binds its listeners.
func New(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Prometheus, cfg.Registry)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, metrics: m, health: health.NewServer(),
		startedAt: time.Now(), recent: newRecentSamples(recentWindow, recentMax)}
	s.ads = newADS(cfg.Logger, s.metrics, s.observeConvergence)
	s.pusher = newPusher(&s.cfg, s.metrics, s.ads.diffs)
	s.idleGC = newIdleGC(s.ads.requests.Load)
	s.ads.pusher = s.pusher
	s.ads.autoreg = cfg.AutoRegister
	s.ads.debug = newIstioDebug(s.debugMux(), s.statuses, cfg.SnapshotOptions.RootNamespace)
	if s.bufPool, err = newBufferPool(); err != nil {
		return nil, err
	}
	s.grpcSrv = s.NewGRPCServer()
	if err := s.listen(); err != nil {
		return nil, err
	}
	return s, nil
}

// newBufferPool is the pool the server's gRPC reads and writes use: one
// tier per power of two from 256 B to 4 MB.
func newBufferPool() (mem.BufferPool, error) {
	p, err := mem.NewBinaryTieredBufferPool(8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22)
	if err != nil {
		return nil, fmt.Errorf("buffer pool: %w", err)
	}
	return p, nil
}

func (s *Server) listen() error {
	var err error
	if s.grpcLis, err = net.Listen("tcp", s.cfg.GRPCAddr); err != nil {
		return fmt.Errorf("listen for gRPC on %s: %w", s.cfg.GRPCAddr, err)
	}
	if s.cfg.HTTPAddr == "" {
		return nil
	}
	if s.httpLis, err = net.Listen("tcp", s.cfg.HTTPAddr); err != nil {
		s.grpcLis.Close()
		return fmt.Errorf("listen for HTTP on %s: %w", s.cfg.HTTPAddr, err)
	}
	return nil
}

// GRPCAddr is the bound gRPC address.
func (s *Server) GRPCAddr() net.Addr { return s.grpcLis.Addr() }

// HTTPAddr is the bound HTTP address, or nil when HTTP is off.
func (s *Server) HTTPAddr() net.Addr {
	if s.httpLis == nil {
		return nil
	}
	return s.httpLis.Addr()
}

// NewGRPCServer makes a gRPC server carrying every service, for another
// listener (e.g. TLS on 15012) to serve with the given options.
func (s *Server) NewGRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	opts = append([]grpc.ServerOption{
		grpc.MaxConcurrentStreams(1 << 20),
		// Flow-control windows as istiod sets them, and wider for a
		// connection: a SotW ACK repeats every subscribed name (~60 KB for
		// 1000 clusters), and many streams share a connection through a
		// proxy or a load client. gRPC's 64 KB defaults make them queue for
		// window updates.
		grpc.InitialWindowSize(1 << 20),
		grpc.InitialConnWindowSize(16 << 20),
		grpc.ForceServerCodecV2(newCodec(s.bufPool)),
		// Buffers in every power of two: SotW ACKs carry every subscribed
		// name (~60 KB for 1000 clusters), and gRPC's default tiers would
		// hand each one a 1 MB buffer, cleared on every use.
		experimental.BufferPool(s.bufPool),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 15 * time.Second, PermitWithoutStream: true}),
	}, opts...)
	g := grpc.NewServer(opts...)
	s.Register(g)
	return g
}

// Register registers xDS (ADS SotW and delta, LDS/RDS/CDS/EDS/SDS), CSDS,
// health, reflection and the configured extra services on g.
func (s *Server) Register(g *grpc.Server) {
	s.ads.register(g)
	statusv3.RegisterClientStatusDiscoveryServiceServer(g, &csds{pusher: s.pusher})
	healthpb.RegisterHealthServer(g, s.health)
	for _, reg := range s.cfg.RegisterGRPC {
		reg(g)
	}
	reflection.Register(g)
}

// extraGRPC is another listener serving every gRPC service.
type extraGRPC struct {
	name string // for the log line, e.g. "gRPC over TLS"
	lis  net.Listener
	srv  *grpc.Server
}

// AddGRPCListener serves every gRPC service on lis too, with opts (e.g.
// grpc.Creds for TLS on 15012); name appears in the log line "serving NAME".
// Call it before Start; Start serves it and stops it with the main server.
func (s *Server) AddGRPCListener(name string, lis net.Listener, opts ...grpc.ServerOption) {
	s.extra = append(s.extra, extraGRPC{name: name, lis: lis, srv: s.NewGRPCServer(opts...)})
}

// Start serves until ctx ends, then stops gracefully within ShutdownGrace.
func (s *Server) Start(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, e := range append([]extraGRPC{{"gRPC", s.grpcLis, s.grpcSrv}}, s.extra...) {
		g.Go(func() error {
			s.log.Info("serving "+e.name, "addr", e.lis.Addr().String())
			if err := e.srv.Serve(e.lis); err != nil {
				return fmt.Errorf("serve gRPC on %s: %w", e.lis.Addr(), err)
			}
			return nil
		})
	}
	if s.httpLis != nil {
		s.httpSrv = &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
		g.Go(func() error {
			s.log.Info("serving HTTP", "addr", s.httpLis.Addr().String())
			if s.page != nil {
				s.log.Info("status page", "url", pageURL(s.httpLis.Addr()))
			}
			if err := s.httpSrv.Serve(s.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve HTTP: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		s.pusher.wakes.run(gctx)
		return nil
	})
	g.Go(func() error {
		s.pushLoop(gctx)
		return nil
	})
	g.Go(func() error {
		s.pusher.recheckRefused(gctx, s.cfg.SecretRecheck)
		return nil
	})
	s.health.Resume()
	s.ready.Store(true)
	g.Go(func() error {
		<-gctx.Done()
		s.shutdown()
		return nil
	})
	return g.Wait()
}

// shutdown stops serving: health goes NOT_SERVING, the gRPC listeners
// close and every connection is sent a GOAWAY (so proxies take their next
// stream elsewhere), the xDS streams (which never end by themselves) are
// ended, and gRPC stops gracefully or, after ShutdownGrace, hard.
func (s *Server) shutdown() {
	s.ready.Store(false)
	s.health.Shutdown()
	s.log.Info("shutting down: GOAWAY to every connection, ending xDS streams", "grace", s.cfg.ShutdownGrace)
	var wg sync.WaitGroup
	for _, e := range append([]extraGRPC{{"gRPC", s.grpcLis, s.grpcSrv}}, s.extra...) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.stopGRPC(e.srv)
		}()
	}
	s.ads.stop()
	wg.Wait()
	if s.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
		defer cancel()
		if err := s.httpSrv.Shutdown(ctx); err != nil {
			s.httpSrv.Close()
		}
	}
}

// stopGRPC stops g gracefully, or hard after ShutdownGrace.
func (s *Server) stopGRPC(g *grpc.Server) {
	done := make(chan struct{})
	go func() {
		g.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(s.cfg.ShutdownGrace):
		s.log.Warn("gRPC graceful stop timed out; stopping")
		g.Stop()
	}
}

// Pushes returns how many rebuild rounds the push loop has done, and the
// model revision of the last one. Tests wait on these instead of sleeping.
func (s *Server) Pushes() (int64, uint64) { return s.pushes.Load(), s.pushedRev.Load() }

// Metrics returns the Prometheus registry behind /metrics, so other parts
// (the CA) can register their collectors.
func (s *Server) Metrics() *prometheus.Registry { return s.metrics.reg }
