package server

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
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
