package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// envoyLike runs one SotW ADS stream that subscribes to CDS, EDS and LDS
// and ACKs every response, as Envoy does, until ctx ends.
func envoyLike(ctx context.Context, cc *grpc.ClientConn, id string, received func(int)) error {
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	for _, typeURL := range []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType} {
		if err := st.Send(&discoveryv3.DiscoveryRequest{Node: node(id), TypeUrl: typeURL}); err != nil {
			return err
		}
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		received(len(resp.GetResources()))
		ack := &discoveryv3.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
		if err := st.Send(ack); err != nil {
			return err
		}
	}
}

// TestConvergenceScale connects Envoy-like SotW streams over real gRPC and
// reports how long an endpoint change takes to be ACKed by all of them.
// Run with -run ConvergenceScale -v -scale.
func TestConvergenceScale(t *testing.T) {
	if !*scale {
		t.Skip("run with -scale")
	}
	const services, proxies = 1000, 500
	store := meshStore(t, services)
	s, err := New(Config{GRPCAddr: "127.0.0.1:0", Registry: store, Debounce: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	cc, err := grpc.NewClient(s.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	heap0 := heapInUse()
	start := time.Now()
	for i := range proxies {
		go envoyLike(t.Context(), cc, fmt.Sprintf("sidecar~10.200.%d.%d~pod-%d.default~default.svc.cluster.local", i/250, i%250, i), func(int) {})
	}
	waitForN(t, 60*time.Second, func() bool { return value(t, s.metrics.pushes.WithLabelValues("lds")) >= proxies })
	t.Logf("%d proxies x %d services configured in %v; heap (server and clients) %.0f KB/proxy", proxies, services, time.Since(start), float64(heapInUse()-heap0)/1024/proxies)

	for round := 1; round <= 3; round++ {
		before := histCount(t, s)
		store.Upsert("bench", endpointSlice("svc-7", 7, round))
		start = time.Now()
		waitForN(t, 60*time.Second, func() bool { return histCount(t, s)-before >= proxies })
		t.Logf("endpoint change %d: all %d proxies ACKed in %v", round, proxies, time.Since(start))
	}
}

func histCount(t *testing.T, s *Server) uint64 {
	var m dto.Metric
	if err := s.metrics.convergence.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

func waitForN(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(2 * time.Millisecond)
	}
}
