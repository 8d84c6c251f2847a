package server

import (
	"context"
	"fmt"
	"runtime"
	rtmetrics "runtime/metrics"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
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
