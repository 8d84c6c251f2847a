package main

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/librarymesh/controlplane/internal/e2e"
)

// rollingLoad makes health RPCs on cc back to back (none waits for a ready
// channel, so a broken channel shows as a failed RPC) until stopped.
type rollingLoad struct {
	ok, failed atomic.Int64
	firstErr   atomic.Value
	stop       context.CancelFunc
	done       chan struct{}
}

func startRollingLoad(cc *grpc.ClientConn) *rollingLoad {
	ctx, stop := context.WithCancel(context.Background())
	l := &rollingLoad{stop: stop, done: make(chan struct{})}
	client := healthpb.NewHealthClient(cc)
	go func() {
		defer close(l.done)
		for ctx.Err() == nil {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := client.Check(rctx, &healthpb.HealthCheckRequest{Service: e2e.WhichService})
			cancel()
			switch {
			case err == nil:
				l.ok.Add(1)
			case ctx.Err() == nil:
				l.failed.Add(1)
				l.firstErr.CompareAndSwap(nil, err.Error())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return l
}

// TestRollingRestartDropsNoRPC: two replicas behind a load balancer (the
// relay, which skips a replica that refuses connections) are restarted
// one after the other with SIGTERM while a proxyless grpc-go client makes
// RPCs without pause. Each replica stops accepting, sends GOAWAY and ends
// its streams, and exits well within --shutdown-grace; the client's xDS
// stream moves to the other replica and not one RPC fails.
func TestRollingRestartDropsNoRPC(t *testing.T) {
	dir := t.TempDir()
	backend := e2e.HealthBackend(t, healthpb.HealthCheckResponse_SERVING)
	e2e.WriteFileAtomic(t, filepath.Join(dir, "echo.yaml"), echoServiceEntry(backend))
	const grace = 2 * time.Second
	args := []string{"--config-dir", dir, "--debounce", "20ms", "--shutdown-grace", grace.String()}
	a, b := e2e.Serve(t, args...), e2e.Serve(t, args...)
	relay := e2e.NewRelay(t, a.GRPCAddr)
	relay.SetUpstreams(a.GRPCAddr, b.GRPCAddr)
	cc := e2e.ProxylessClient(t, relay.Addr, grpcNode, "test", echoTarget)
	if st, err := e2e.Which(cc); err != nil || st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first RPC: %v %v", st, err)
	}
	load := startRollingLoad(cc)

	// roll stops old with SIGTERM while new streams still try it first,
	// waits for the client to take a stream to next, and starts old's
	// replacement.
	roll := func(old, next *e2e.Server) *e2e.Server {
		t.Helper()
		relay.SetUpstreams(old.GRPCAddr, next.GRPCAddr)
		streams := relay.Streams()
		if took := old.Terminate(grace + 20*time.Second); took > grace+5*time.Second {
			t.Errorf("replica exited %s after SIGTERM; want within --shutdown-grace %s (plus start-up slack)", took, grace)
		} else {
			t.Logf("replica exited %s after SIGTERM", took.Round(time.Millisecond))
		}
		if !strings.Contains(old.Logs(), "shutting down: GOAWAY") {
			t.Errorf("replica log lacks the shutdown line:\n%s", old.Logs())
		}
		e2e.Eventually(t, "the client's xDS stream moves to the other replica", 30*time.Second, func() bool {
			return relay.Streams() > streams && strings.Contains(next.Logs(), `msg="proxy connected" conn=sidecar~127.0.0.1~client-1`)
		})
		time.Sleep(500 * time.Millisecond) // RPCs go on meanwhile
		return e2e.Serve(t, args...)
	}
	a = roll(a, b)
	roll(b, a)
	time.Sleep(500 * time.Millisecond)
	load.stop()
	<-load.done
	if n := load.failed.Load(); n != 0 {
		t.Errorf("%d of %d RPCs failed during the rolling restart; first: %v", n, n+load.ok.Load(), load.firstErr.Load())
	}
	if load.ok.Load() < 20 {
		t.Errorf("only %d RPCs made: the load did not run", load.ok.Load())
	}
	t.Logf("%d RPCs, %d failed, %d xDS streams through the balancer", load.ok.Load(), load.failed.Load(), relay.Streams())
}
