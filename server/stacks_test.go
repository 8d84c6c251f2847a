package server

import (
	"context"
	"fmt"
	"runtime"
	rtmetrics "runtime/metrics"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
)

// stackBytes is the memory of goroutine stacks after two collections (the
// second frees the stacks of goroutines the first found dead).
func stackBytes() uint64 {
	runtime.GC()
	runtime.GC()
	s := []rtmetrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}}
	rtmetrics.Read(s)
	return s[0].Value.Uint64()
}

// settledStackBytes is stackBytes once the goroutines of earlier tests
// (their servers' streams, ending) have gone: the number of goroutines
// held still for 300 ms, or 5 s passed.
func settledStackBytes() uint64 {
	last, still := runtime.NumGoroutine(), 0
	for deadline := time.Now().Add(5 * time.Second); still < 3 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		if n := runtime.NumGoroutine(); n == last {
			still++
		} else {
			last, still = n, 0
		}
	}
	return stackBytes()
}

// TestStreamStacksStayShallow: a connected proxy's stream keeps two
// goroutines, one waiting for requests, one for pushes, and each keeps the
// 4 KB stack waiting needs. The work (decoding a node's nested metadata,
// building, sending) runs on stacks that go away with it. Measured here:
// about 11.5 KB a stream, the client's goroutine for each stream
// included; with the work on the waiting goroutines, 19 KB.
func TestStreamStacksStayShallow(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation deepens every stack")
	}
	const streams = 400
	s := startServer(t, newFakeRegistry(defaultWorld()))
	cc := dial(t, s)
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(cc)
	// Metadata as deep as pilot-agent's (labels, platform metadata).
	md, err := structpb.NewStruct(map[string]any{
		"NAMESPACE": "default", "SERVICE_ACCOUNT": "inventory",
		"LABELS":            map[string]any{"app": "inventory", "version": "v1"},
		"PLATFORM_METADATA": map[string]any{"gcp": map[string]any{"project": map[string]any{"id": "p", "zone": map[string]any{"name": "z"}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	before := stackBytes()
	for i := range streams {
		n := node(fmt.Sprintf("sidecar~10.8.%d.%d~inventory-%d.default~default.svc.cluster.local", i/250, i%250+1, i))
		n.Metadata = md
		if i%2 == 0 {
			st, err := ads.StreamAggregatedResources(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Send(&discoveryv3.DiscoveryRequest{Node: n, TypeUrl: resourcev3.ClusterType}); err != nil {
				t.Fatal(err)
			}
			resp, err := st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		st, err := ads.DeltaAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: n, TypeUrl: resourcev3.ClusterType}); err != nil {
			t.Fatal(err)
		}
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: resp.GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every stream connected", func() bool { return len(s.Connections()) == streams })
	after := stackBytes()
	perStream := float64(after-before) / streams / 1024
	t.Logf("stacks: %d KB before, %d KB after %d streams: %.1f KB a stream", before>>10, after>>10, streams, perStream)
	if perStream > 14 {
		t.Errorf("%.1f KB of goroutine stacks a stream, want at most 14 (the server's two goroutines of 4 KB, the client's own, some slack)", perStream)
	}
}

// TestWaitingResponsesKeepShallowStacks: when a fleet connects at once and
// the proxies read their config slowly, responses wait for their proxies
// to read them, each on a goroutine of its stream's, and each of those
// keeps the 4 KB stack waiting needs: what grows stacks (decoding a node,
// building, encoding a proxy's own resources) ran on stacks of their own.
// Measured alone: 14.4 KB a stream, its three goroutines and the client's.
func TestWaitingResponsesKeepShallowStacks(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation deepens every stack")
	}
	const streams = 200
	s, store := startLibrary(t)
	// Clusters of about 700 KB: more than a stream's flow control window
	// (64 KB, fixed below) and gRPC's write quota (64 KB) together.
	se := manyHosts(1000)
	if ps := store.Upsert("test", se); len(ps) > 0 {
		t.Fatalf("upsert: %v", ps)
	}
	// Fixed windows: gRPC's client would otherwise grow them as it reads.
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(dialAddr(t, s.GRPCAddr().String(),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(1<<30)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	before := settledStackBytes()
	for range streams {
		st, err := ads.DeltaAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Clusters and listeners asked for, then nothing read. gRPC sends
		// a stream's first message whatever its size (the quota may go
		// below zero); the second waits for the proxy.
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node(podNodeID), TypeUrl: resourcev3.ClusterType}); err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ListenerType}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "a response of every stream waiting for its proxy", func() bool { return goroutinesIn("(*writeQuota).get(") == streams })
	after := stackBytes()
	perStream := (float64(after) - float64(before)) / streams / 1024
	t.Logf("stacks: %d KB before, %d KB with %d responses waiting: %.1f KB a stream", before>>10, after>>10, streams, perStream)
	if perStream > 17.5 {
		t.Errorf("%.1f KB of goroutine stacks a stream whose response waits, want at most 17.5 (the server's three goroutines of 4 KB, the client's own, some slack)", perStream)
	}
}

// TestOwnEncodingLeavesTheCallersStack: a proxy's own resources are
// encoded again for each response that carries them, on a goroutine of
// their own, so the flush that sends them, which may then wait for the
// proxy to read, keeps the stack it started with. A cluster whose metadata
// nests 40 deep stands for a listener's 20 messages: encoded on the
// callers' goroutines, it grew each to 16 KB.
func TestOwnEncodingLeavesTheCallersStack(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation deepens every stack")
	}
	v := structpb.NewStringValue("leaf")
	for range 40 {
		v = structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"in": v}})
	}
	c := &clusterv3.Cluster{Name: "deep", Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": v.GetStructValue()}}}
	tr, err := newHasher().ownList([]types.Resource{c})
	if err != nil {
		t.Fatal(err)
	}
	const callers = 1000
	before := settledStackBytes()
	var ready sync.WaitGroup
	release := make(chan struct{})
	ready.Add(callers)
	for range callers {
		go func() {
			sotw := tr.sotwEncoding()
			delta := tr.ownDeltaResources([]int{0})
			if len(sotw) == 0 || len(delta) != 1 {
				t.Error("nothing encoded")
			}
			ready.Done()
			<-release // as a flush waits for its proxy
		}()
	}
	ready.Wait()
	after := stackBytes()
	close(release)
	perCaller := (float64(after) - float64(before)) / callers / 1024
	t.Logf("stacks: %d KB before, %d KB with %d callers waiting: %.1f KB a caller", before>>10, after>>10, callers, perCaller)
	if perCaller > 4.5 {
		t.Errorf("%.1f KB of stack a caller after encoding, want at most 4.5 (the 4 KB it started with)", perCaller)
	}
}
