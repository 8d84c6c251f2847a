package server

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
)

const (
	podNodeID  = "sidecar~10.8.0.5~inventory-abc.default~default.svc.cluster.local"
	grpcNodeID = "sidecar~127.0.0.1~client-1.default~default.svc.cluster.local"
)

func defaultWorld() world {
	return world{host: "svc.test", port: 8080, backend: "127.0.0.1:9", connectTimeout: time.Second}
}

// startServer runs a Server on loopback port 0 until the test ends.
func startServer(t *testing.T, reg Registry) *Server {
	t.Helper()
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelInfo
	}
	s, err := New(Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
		Registry: reg, NewBuilder: newFakeBuilder,
		Debounce: 10 * time.Millisecond, MaxDebounce: 50 * time.Millisecond,
		ShutdownGrace: time.Second,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	run(t, s)
	return s
}

// run starts s until the test ends and waits for its first push (of the
// model as it was at Start).
func run(t *testing.T, s *Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start: %v", err)
		}
	})
	waitFor(t, "first push", func() bool { n, _ := s.Pushes(); return n > 0 })
}

// dial connects a plain gRPC client to the server.
func dial(t *testing.T, s *Server) *grpc.ClientConn {
	t.Helper()
	return dialAddr(t, s.GRPCAddr().String())
}

// dialAddr connects a plain gRPC client, with opts, to addr; the test's
// end closes it.
func dialAddr(t *testing.T, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func node(id string) *corev3.Node {
	md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": "default"})
	return &corev3.Node{Id: id, Metadata: md}
}

// recvResult is one message or error from a stream.
type recvResult[T any] struct {
	msg T
	err error
}

// receiver reads a stream in the background so tests can wait with a
// timeout, and count what arrives in a window.
type receiver[T any] struct{ ch chan recvResult[T] }

func newReceiver[T any](recv func() (T, error)) *receiver[T] {
	r := &receiver[T]{ch: make(chan recvResult[T], 1024)}
	go func() {
		for {
			m, err := recv()
			r.ch <- recvResult[T]{m, err}
			if err != nil {
				return
			}
		}
	}()
	return r
}

var errTimeout = errors.New("timed out")

// next returns the next message, or an error on timeout or stream end.
func (r *receiver[T]) next(d time.Duration) (T, error) {
	select {
	case res := <-r.ch:
		return res.msg, res.err
	case <-time.After(d):
		var zero T
		return zero, errTimeout
	}
}

// count counts messages that arrive within d.
func (r *receiver[T]) count(d time.Duration) int {
	n := 0
	deadline := time.After(d)
	for {
		select {
		case res := <-r.ch:
			if res.err != nil {
				return n
			}
			n++
		case <-deadline:
			return n
		}
	}
}

// sotwStream opens an ADS state-of-the-world stream.
func sotwStream(t *testing.T, s *Server) (discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, *receiver[*discoveryv3.DiscoveryResponse]) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(dial(t, s)).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatalf("open ADS stream: %v", err)
	}
	return st, newReceiver(st.Recv)
}

// deltaStream opens an ADS delta stream.
func deltaStream(t *testing.T, s *Server) (discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, *receiver[*discoveryv3.DeltaDiscoveryResponse]) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(dial(t, s)).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatalf("open delta ADS stream: %v", err)
	}
	return st, newReceiver(st.Recv)
}

// waitFor polls cond until it holds or 5s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// value reads a counter or gauge.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatalf("read metric: %v", err)
	}
	if c := out.GetCounter(); c != nil {
		return c.GetValue()
	}
	return out.GetGauge().GetValue()
}

var scale = flag.Bool("scale", false, "run the push path scale test")

// goroutinesIn counts the goroutines whose stack has frame (a function's
// name and its opening parenthesis): how many wait there, for a test to
// wait on instead of sleeping.
func goroutinesIn(frame string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), frame)
		}
		buf = make([]byte, 2*len(buf))
	}
}
