package deploy_test

import (
	"context"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// adsStream opens an ADS stream to addr as a sidecar in ns, asks for
// clusters and waits for the first response. Its channel gets the error
// that ends the stream.
func adsStream(t *testing.T, addr, ns string) <-chan error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatalf("ADS to %s: %v", addr, err)
	}
	node := &corev3.Node{Id: "sidecar~192.0.2.10~app-1." + ns + "~" + ns + ".svc.cluster.local", Cluster: "app." + ns}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatalf("ADS send: %v", err)
	}
	first := make(chan error, 1)
	go func() {
		_, err := stream.Recv()
		first <- err
	}()
	select {
	case err := <-first:
		if err != nil {
			t.Fatalf("ADS to %s: %v", addr, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("ADS to %s: no response within 10s", addr)
	}
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	return ended
}
