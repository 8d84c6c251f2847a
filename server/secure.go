package server

import (
	"context"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/snapshot"
)

// Identity is a proven caller: a namespace and a service account.
type Identity struct {
	Namespace      string
	ServiceAccount string
}

// AuthenticateFunc proves who is calling (client certificate or token).
type AuthenticateFunc func(ctx context.Context) (Identity, error)

// identityKey is the context key of a caller's proven Identity.
type identityKey struct{}

// callerIdentity returns the identity RequireIdentity proved for the call,
// or nil on a port that does not ask (plaintext 15010).
func callerIdentity(ctx context.Context) *Identity {
	id, _ := ctx.Value(identityKey{}).(*Identity)
	return id
}

// owns reports whether a proxy belongs to the caller: its namespace and
// service account are the caller's. A nil caller (plaintext port) owns
// every proxy.
func (id *Identity) owns(p *snapshot.Proxy) bool {
	return id == nil || p.Namespace == id.Namespace && p.Metadata.ServiceAccount == id.ServiceAccount
}

// guarded reports whether a method is one RequireIdentity guards: every
// Envoy API (xDS, CSDS). Health, reflection and the CA (which proves
// callers itself) stay open.
func guarded(method string) bool { return strings.HasPrefix(method, "/envoy.service.") }

// prove authenticates a call to method; a plain error becomes
// Unauthenticated.
func prove(ctx context.Context, authenticate AuthenticateFunc, method string) (*Identity, error) {
	id, err := authenticate(ctx)
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return nil, err
		}
		return nil, status.Errorf(codes.Unauthenticated, "%s: %v", method, err)
	}
	return &id, nil
}

// RequireIdentityUnary is RequireIdentity for unary calls (CSDS's
// FetchClientStatus): the caller must prove an identity, and the handler
// sees it (CSDS then lists only the caller's own proxies).
func RequireIdentityUnary(authenticate AuthenticateFunc) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !guarded(info.FullMethod) {
			return handler(ctx, req)
		}
		id, err := prove(ctx, authenticate, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(context.WithValue(ctx, identityKey{}, id), req)
	}
}

// RequireIdentity is a stream interceptor for the TLS port: every Envoy API
// stream (xDS, CSDS) must prove an identity, and an xDS stream's node must
// claim that same namespace and service account, or the stream is refused
// with PermissionDenied. Health and reflection stay open. The handler sees
// the identity in the stream's context.
func RequireIdentity(authenticate AuthenticateFunc) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if !guarded(info.FullMethod) {
			return handler(srv, ss)
		}
		id, err := prove(ss.Context(), authenticate, info.FullMethod)
		if err != nil {
			return err
		}
		is := &identityStream{ServerStream: ss, id: *id, ctx: context.WithValue(ss.Context(), identityKey{}, id)}
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
	ctx     context.Context // carries id
	mu      sync.Mutex
	done    bool
	checked error
}

func (s *identityStream) Context() context.Context { return s.ctx }

func (s *identityStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	// The xDS server reads its requests undecoded: the node is checked
	// when it decodes them.
	if raw, ok := m.(*rawMsg); ok {
		raw.checkNode = s.check
		return nil
	}
	// A decoded xDS request (SotW or delta) carries its node this way.
	req, ok := m.(interface{ GetNode() *corev3.Node })
	if !ok {
		return nil
	}
	return s.check(req.GetNode())
}

// check vets the first node a stream's requests carry; the verdict holds
// for the rest of the stream.
func (s *identityStream) check(node *corev3.Node) error {
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

// checkOwnsAddresses refuses a node on the TLS port that claims the
// address of a workload of another identity: its config (the inbound side,
// the kind) is picked by address, so it would be served another
// workload's config. A workload whose service account the model does not
// know is checked by namespace only.
func checkOwnsAddresses(v registry.View, p *snapshot.Proxy, id Identity) error {
	for _, ip := range p.IPs {
		w := v.WorkloadByIP(ip)
		if w == nil {
			continue
		}
		if w.Namespace != id.Namespace || w.ServiceAccount != "" && w.ServiceAccount != id.ServiceAccount {
			return status.Errorf(codes.PermissionDenied,
				"node %s claims address %s, which is %s %s/%s with service account %q, but the caller proved %s/%s",
				p.ID, ip, w.Kind, w.Namespace, w.Name, w.ServiceAccount, id.Namespace, id.ServiceAccount)
		}
	}
	return nil
}
