package e2e

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/xds"
)

// ADSClient is a SotW ADS stream.
type ADSClient = discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient

// Dial makes a gRPC client of addr with creds, closed when the test ends.
func Dial(t testing.TB, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// ADSStream opens a SotW ADS stream to addr over plaintext gRPC; it ends
// with the test.
func ADSStream(t testing.TB, addr string) ADSClient {
	t.Helper()
	conn := Dial(t, addr, insecure.NewCredentials())
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatalf("ADS to %s: %v", addr, err)
	}
	return stream
}

// ADSFirst opens an ADS stream to addr as node, asks for typeURL and waits
// up to timeout for the first response.
func ADSFirst(t testing.TB, addr string, node *corev3.Node, typeURL string, timeout time.Duration) (ADSClient, *discoveryv3.DiscoveryResponse) {
	t.Helper()
	stream := ADSStream(t, addr)
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: typeURL}); err != nil {
		t.Fatalf("ADS send: %v", err)
	}
	type result struct {
		resp *discoveryv3.DiscoveryResponse
		err  error
	}
	first := make(chan result, 1)
	go func() {
		resp, err := stream.Recv()
		first <- result{resp, err}
	}()
	select {
	case r := <-first:
		if r.err != nil {
			t.Fatalf("ADS to %s for %s: %v", addr, node.GetId(), r.err)
		}
		return stream, r.resp
	case <-time.After(timeout):
		t.Fatalf("ADS to %s for %s: no response within %s", addr, node.GetId(), timeout)
		return nil, nil
	}
}

// ProxylessClient dials target through grpc-go's xDS resolver, bootstrapped
// to the control plane at xdsAddr as node (a grpc generator proxy in
// namespace). It is closed when the test ends.
func ProxylessClient(t testing.TB, xdsAddr, node, namespace, target string) *grpc.ClientConn {
	t.Helper()
	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": %q, "metadata": {"GENERATOR": "grpc", "NAMESPACE": %q}}
	}`, xdsAddr, node, namespace)
	rb, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatalf("xDS resolver: %v", err)
	}
	cc, err := grpc.NewClient("xds:///"+target, grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// WhichService is the health service name whose status tells the backends
// of HealthBackend apart.
const WhichService = "which"

// HealthBackend is a gRPC server on loopback whose health service reports
// st for WhichService, so a client can tell backends apart. It returns the
// port; the server stops when the test ends.
func HealthBackend(t testing.TB, st healthpb.HealthCheckResponse_ServingStatus) int {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	h := health.NewServer()
	h.SetServingStatus(WhichService, st)
	healthpb.RegisterHealthServer(g, h)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return lis.Addr().(*net.TCPAddr).Port
}

// Which asks, within 2s and waiting for the channel to be ready, which
// HealthBackend answers cc's RPCs: the status it reports.
func Which(cc *grpc.ClientConn) (healthpb.HealthCheckResponse_ServingStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: WhichService}, grpc.WaitForReady(true))
	return resp.GetStatus(), err
}

// XDSHealthCheck dials target through xDS with the given gRPC bootstrap
// (xDS credentials, plaintext when the config asks for none), makes one
// health RPC and returns the peer it reached. Without waitForReady it fails
// once the channel fails to connect.
func XDSHealthCheck(ctx context.Context, t testing.TB, target string, bootstrap []byte, waitForReady bool) (peer.Peer, error) {
	t.Helper()
	var p peer.Peer
	rb, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(target, grpc.WithResolvers(rb), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(waitForReady), grpc.Peer(&p))
	return p, err
}
