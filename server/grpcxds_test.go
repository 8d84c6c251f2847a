package server

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/xds"

	"github.com/librarymesh/controlplane/registry"
)

// backend is a gRPC server on loopback whose health service reports
// SERVING or NOT_SERVING for the service "which", so a client can tell
// two backends apart.
func backend(t *testing.T, serving bool) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	h := health.NewServer()
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	h.SetServingStatus("which", st)
	healthpb.RegisterHealthServer(g, h)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

// xdsClient dials target through grpc-go's xDS resolver, bootstrapped to s.
func xdsClient(t *testing.T, s *Server, nodeID, target string) *grpc.ClientConn {
	t.Helper()
	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": %q, "metadata": {"GENERATOR": "grpc", "NAMESPACE": "default"}}
	}`, s.GRPCAddr().String(), nodeID)
	rb, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatalf("xDS resolver: %v", err)
	}
	cc, err := grpc.NewClient("xds:///"+target, grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", target, err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// which asks the backend behind cc which one it is.
func which(cc *grpc.ClientConn) (healthpb.HealthCheckResponse_ServingStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "which"}, grpc.WaitForReady(true))
	return resp.GetStatus(), err
}

func TestGRPCXDSClientFollowsEndpointChange(t *testing.T) {
	w := defaultWorld()
	w.backend = backend(t, true)
	second := backend(t, false)
	reg := newFakeRegistry(w)
	s := startServer(t, reg)
	cc := xdsClient(t, s, grpcNodeID, "svc.test:8080")

	got, err := which(cc)
	if err != nil || got != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("RPC through xDS: status %v, error %v; want the first backend", got, err)
	}
	for _, typeURL := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType} {
		waitCSDS(t, s, grpcNodeID, typeURL, adminv3.ClientResourceStatus_ACKED)
	}
	if v := value(t, s.metrics.proxies.WithLabelValues("ProxylessGRPC")); v != 1 {
		t.Errorf("connected ProxylessGRPC proxies = %v, want 1", v)
	}

	w.backend = second
	reg.set(w, registry.Change{Hostnames: []string{w.host}, EndpointsOnly: true})
	waitFor(t, "RPCs to move to the second backend", func() bool {
		got, err := which(cc)
		return err == nil && got == healthpb.HealthCheckResponse_NOT_SERVING
	})
	waitCSDS(t, s, grpcNodeID, resourcev3.EndpointType, adminv3.ClientResourceStatus_ACKED)
}

func TestGRPCXDSClientNackIsNotResent(t *testing.T) {
	w := defaultWorld()
	w.backend = backend(t, true)
	reg := newFakeRegistry(w)
	s := startServer(t, reg)
	cc := xdsClient(t, s, grpcNodeID, "svc.test:8080")
	if _, err := which(cc); err != nil {
		t.Fatalf("RPC through xDS: %v", err)
	}
	waitCSDS(t, s, grpcNodeID, resourcev3.ClusterType, adminv3.ClientResourceStatus_ACKED)

	bad := w
	bad.maglev = true
	reg.set(bad, registry.Change{All: true})
	detail := waitCSDS(t, s, grpcNodeID, resourcev3.ClusterType, adminv3.ClientResourceStatus_NACKED)
	if !strings.Contains(detail, "unexpected lbPolicy") {
		t.Errorf("NACK detail %q does not carry grpc-go's error", detail)
	}
	pushes := value(t, s.metrics.pushes.WithLabelValues("cds"))
	time.Sleep(time.Second) // a resend loop would send thousands here
	if got := value(t, s.metrics.pushes.WithLabelValues("cds")) - pushes; got > 1 {
		t.Errorf("rejected CDS resent %v times in 1s, want at most 1", got)
	}
	if got, err := which(cc); err != nil || got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("RPC after a NACK: %v, %v; want the last good config to keep working", got, err)
	}

	reg.set(w, registry.Change{All: true})
	waitCSDS(t, s, grpcNodeID, resourcev3.ClusterType, adminv3.ClientResourceStatus_ACKED)
}
