package server

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
)

// listServices asks a server's reflection service for its services.
func listServices(t *testing.T, addr string) []string {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatalf("reflection on %s: %v", addr, err)
	}
	var out []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		out = append(out, s.GetName())
	}
	hresp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hresp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health on %s: %v, %v; want SERVING", addr, hresp.GetStatus(), err)
	}
	return out
}

func TestGRPCServicesOnEveryListener(t *testing.T) {
	extra := func(r grpc.ServiceRegistrar) {
		r.RegisterService(&grpc.ServiceDesc{ServiceName: "test.Extra", HandlerType: (*any)(nil)}, struct{}{})
	}
	s, err := New(Config{GRPCAddr: "127.0.0.1:0", Registry: newFakeRegistry(defaultWorld()), NewBuilder: newFakeBuilder,
		Logger: slog.New(slog.DiscardHandler), RegisterGRPC: []func(grpc.ServiceRegistrar){extra}})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.AddGRPCListener("gRPC over TLS", lis)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	want := []string{
		"envoy.service.discovery.v3.AggregatedDiscoveryService",
		"envoy.service.listener.v3.ListenerDiscoveryService",
		"envoy.service.route.v3.RouteDiscoveryService",
		"envoy.service.cluster.v3.ClusterDiscoveryService",
		"envoy.service.endpoint.v3.EndpointDiscoveryService",
		"envoy.service.secret.v3.SecretDiscoveryService",
		"envoy.service.status.v3.ClientStatusDiscoveryService",
		"grpc.health.v1.Health",
		"grpc.reflection.v1.ServerReflection",
		"test.Extra",
	}
	for _, addr := range []string{s.GRPCAddr().String(), lis.Addr().String()} {
		got := listServices(t, addr)
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("%s lacks %s; has %v", addr, w, got)
			}
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Start: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Start did not return after ctx ended")
	}
}
