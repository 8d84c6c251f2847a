package server

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// oneRequestStream is a server stream that delivers one request.
type oneRequestStream struct {
	grpc.ServerStream
	req  *discoveryv3.DiscoveryRequest
	sent bool
}

func (s *oneRequestStream) Context() context.Context { return context.Background() }

func (s *oneRequestStream) RecvMsg(m any) error {
	if s.sent {
		return errors.New("no more requests")
	}
	s.sent = true
	proto.Merge(m.(*discoveryv3.DiscoveryRequest), s.req)
	return nil
}

// TestRequireIdentity runs the interceptor around a handler that, like the
// xDS server, ends the stream with its own result when Recv fails: the
// caller must still get the refusal.
func TestRequireIdentity(t *testing.T) {
	md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": "default", "SERVICE_ACCOUNT": "postgres"})
	claimsPostgres := &discoveryv3.DiscoveryRequest{Node: &corev3.Node{
		Id: "sidecar~10.8.0.5~inventory-abc.default~default.svc.cluster.local", Metadata: md}}
	proven := func(id Identity, err error) AuthenticateFunc {
		return func(context.Context) (Identity, error) { return id, err }
	}
	tests := []struct {
		name   string
		auth   AuthenticateFunc
		method string
		code   codes.Code
		msg    string
	}{
		{"no credential", proven(Identity{}, status.Error(codes.Unauthenticated, "no credential")),
			"/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources", codes.Unauthenticated, "no credential"},
		{"plain error becomes Unauthenticated", proven(Identity{}, errors.New("bad token")),
			"/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources", codes.Unauthenticated, "bad token"},
		{"node claims another service account", proven(Identity{"default", "inventory"}, nil),
			"/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources", codes.PermissionDenied, `service account "postgres"`},
		{"matching node", proven(Identity{"default", "postgres"}, nil),
			"/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources", codes.OK, ""},
		{"health stays open", proven(Identity{}, errors.New("no credential")),
			"/grpc.health.v1.Health/Watch", codes.OK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Like the xDS server: a failed Recv ends the stream without a status of its own.
			handler := func(_ any, ss grpc.ServerStream) error {
				_ = ss.RecvMsg(&discoveryv3.DiscoveryRequest{})
				return nil
			}
			err := RequireIdentity(tt.auth)(nil, &oneRequestStream{req: claimsPostgres},
				&grpc.StreamServerInfo{FullMethod: tt.method}, handler)
			st := status.Convert(err)
			if st.Code() != tt.code || !strings.Contains(st.Message(), tt.msg) {
				t.Fatalf("got %v %q, want %v containing %q", st.Code(), st.Message(), tt.code, tt.msg)
			}
		})
	}
}

// TestRequireIdentityOnServedStreams puts RequireIdentity in front of the
// real ADS streams, SotW and delta: a node claiming another service account
// than the caller proved is refused, one claiming its own is served.
func TestRequireIdentityOnServedStreams(t *testing.T) {
	s, err := New(Config{GRPCAddr: "127.0.0.1:0", Registry: newFakeRegistry(defaultWorld()), NewBuilder: newFakeBuilder, ShutdownGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	proven := func(context.Context) (Identity, error) {
		return Identity{Namespace: "default", ServiceAccount: "inventory"}, nil
	}
	s.AddGRPCListener("guarded", lis, grpc.StreamInterceptor(RequireIdentity(proven)))
	run(t, s)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(cc)
	claiming := func(sa string) *corev3.Node {
		md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": "default", "SERVICE_ACCOUNT": sa})
		return &corev3.Node{Id: podNodeID, Metadata: md}
	}
	for _, tc := range []struct {
		sa   string
		want codes.Code
	}{{"postgres", codes.PermissionDenied}, {"inventory", codes.OK}} {
		sctx, scancel := context.WithTimeout(t.Context(), 5*time.Second)
		sotw, err := ads.StreamAggregatedResources(sctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := sotw.Send(&discoveryv3.DiscoveryRequest{Node: claiming(tc.sa), TypeUrl: resourcev3.ClusterType, ResourceNames: []string{"outbound|8080||svc.test"}}); err != nil {
			t.Fatal(err)
		}
		_, err = sotw.Recv()
		if got := status.Code(err); got != tc.want {
			t.Errorf("SotW stream claiming %s: %v, want %v", tc.sa, err, tc.want)
		}
		delta, err := ads.DeltaAggregatedResources(sctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := delta.Send(&discoveryv3.DeltaDiscoveryRequest{Node: claiming(tc.sa), TypeUrl: resourcev3.ClusterType}); err != nil {
			t.Fatal(err)
		}
		_, err = delta.Recv()
		if got := status.Code(err); got != tc.want {
			t.Errorf("delta stream claiming %s: %v, want %v", tc.sa, err, tc.want)
		}
		scancel()
	}
}
