package server

import (
	"context"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/librarymesh/controlplane/snapshot"
)

// Identity is a proven caller: a namespace and a service account.
type Identity struct {
	Namespace      string
	ServiceAccount string
}

// AuthenticateFunc proves who is calling (client certificate or token).
type AuthenticateFunc func(ctx context.Context) (Identity, error)

// RequireIdentity is a stream interceptor for the TLS port: every Envoy API
// stream (xDS, CSDS) must prove an identity, and an xDS stream's node must
// claim that same namespace and service account, or the stream is refused
// with PermissionDenied. Health and reflection stay open.
func RequireIdentity(authenticate AuthenticateFunc) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if !strings.HasPrefix(info.FullMethod, "/envoy.service.") {
			return handler(srv, ss)
		}
		id, err := authenticate(ss.Context())
		if err != nil {
			if _, ok := status.FromError(err); ok {
				return err
			}
			return status.Errorf(codes.Unauthenticated, "%s: %v", info.FullMethod, err)
		}
		is := &identityStream{ServerStream: ss, id: id}
		err = handler(srv, is)
		// The xDS server sees the refusal only as a failed Recv and ends the
		// stream with its own status; the caller must get the refusal.
		if refused := is.refusal(); refused != nil {
			return refused
		}
		return err
	}
}

// identityStream checks the node of the first request that carries one.
type identityStream struct {
	grpc.ServerStream
	id      Identity
	mu      sync.Mutex
	done    bool
	checked error
}

func (s *identityStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	// Every xDS request (SotW, delta, and the server's lazily decoded SotW
	// request) carries its node this way.
	req, ok := m.(interface{ GetNode() *corev3.Node })
	if !ok {
		return nil
	}
	node := req.GetNode()
	if node == nil {
		return nil // later requests on a stream may omit the node
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.done {
		s.done, s.checked = true, checkNode(node, s.id)
	}
	return s.checked
}

// refusal is the error the node check refused the stream with, if any.
func (s *identityStream) refusal() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checked
}

// checkNode compares the identity a node claims with the proven one.
func checkNode(node *corev3.Node, id Identity) error {
	p, err := snapshot.ParseProxy(node)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	ns, sa := p.Metadata.Namespace, p.Metadata.ServiceAccount
	if ns == "" {
		ns = p.Namespace
	}
	if ns != id.Namespace || sa != id.ServiceAccount {
		return status.Errorf(codes.PermissionDenied,
			"node %s claims namespace %q service account %q, but the caller proved %s/%s",
			p.ID, ns, sa, id.Namespace, id.ServiceAccount)
	}
	return nil
}
