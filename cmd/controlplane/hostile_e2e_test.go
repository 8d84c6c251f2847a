package main

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/librarymesh/controlplane/internal/e2e"
	"github.com/librarymesh/controlplane/server"
)

// hostileMesh serves a copy of examples/library and returns the server,
// its root and a TLS client proving default/inventory with a certificate.
func hostileMesh(t *testing.T) (srv *e2e.Server, dir string, rootPEM []byte, inventory *tls.Certificate) {
	t.Helper()
	dir = t.TempDir()
	src := filepath.Join(e2e.ModuleRoot(), "examples", "library")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srv = e2e.Serve(t, "--config-dir", dir)
	if rootPEM, err = os.ReadFile(filepath.Join(srv.DataDir, "root-cert.pem")); err != nil {
		t.Fatal(err)
	}
	anonymous := e2e.Dial(t, srv.SecureGRPCAddr, tlsCreds(t, rootPEM, nil))
	token := tokenCreate(t, srv.DataDir, "default", "inventory", "--ttl", "1h")
	inventory = createCertificate(withBearer(t.Context(), token), t, anonymous, rootPEM, spiffeID("default", "inventory"))
	return srv, dir, rootPEM, inventory
}

// nodeWith is the inventory pod's node ID with the given metadata.
func nodeWith(t *testing.T, md map[string]any) *corev3.Node {
	t.Helper()
	s, err := structpb.NewStruct(md)
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Node{Id: podNode, Metadata: s}
}

// listenersOf opens ADS on conn as node and returns the first LDS
// response's listeners; the stream stays open until the test ends.
func listenersOf(ctx context.Context, t *testing.T, conn *grpc.ClientConn, node *corev3.Node) []*listenerv3.Listener {
	t.Helper()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("LDS for %s: %v", node.GetId(), err)
	}
	var out []*listenerv3.Listener
	for _, a := range resp.GetResources() {
		l := &listenerv3.Listener{}
		if err := a.UnmarshalTo(l); err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	return out
}

// isSidecarConfig reports whether listeners are an Envoy sidecar's (the
// virtualInbound listener) rather than proxyless gRPC api_listeners.
func isSidecarConfig(ls []*listenerv3.Listener) bool {
	return slices.ContainsFunc(ls, func(l *listenerv3.Listener) bool { return l.GetName() == "virtualInbound" }) &&
		!slices.ContainsFunc(ls, func(l *listenerv3.Listener) bool { return l.GetApiListener() != nil })
}

// TestStreamsClaimingOneNodeShareNothing is issue 12's first attack: a
// stream that claims the inventory pod's node ID with proxyless-gRPC
// metadata must not change what the real inventory sidecar is served, on
// the plaintext port; and on the TLS port a caller proving another identity
// cannot claim the pod's address at all.
func TestStreamsClaimingOneNodeShareNothing(t *testing.T) {
	srv, _, rootPEM, inventory := hostileMesh(t)
	ctx := t.Context()
	grpcMD := map[string]any{"NAMESPACE": "default", "SERVICE_ACCOUNT": "postgres", "GENERATOR": "grpc"}

	t.Run("TLS: a postgres identity claiming the inventory pod's address is PermissionDenied", func(t *testing.T) {
		token := tokenCreate(t, srv.DataDir, "default", "postgres", "--ttl", "1h")
		anonymous := e2e.Dial(t, srv.SecureGRPCAddr, tlsCreds(t, rootPEM, nil))
		_, err := fetchClusters(withBearer(ctx, token), anonymous, nodeWith(t, grpcMD))
		wantCode(t, err, codes.PermissionDenied, "claims address 10.8.0.5")
	})

	t.Run("plaintext impostor first, then the real sidecar over TLS", func(t *testing.T) {
		plain := e2e.Dial(t, srv.GRPCAddr, insecure.NewCredentials())
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		impostor := listenersOf(sctx, t, plain, nodeWith(t, grpcMD))
		if isSidecarConfig(impostor) {
			t.Fatalf("the impostor's own stream should get proxyless gRPC listeners (its metadata says GENERATOR=grpc)")
		}
		victim := e2e.Dial(t, srv.SecureGRPCAddr, tlsCreds(t, rootPEM, inventory))
		got := listenersOf(sctx, t, victim, nodeWith(t, map[string]any{"NAMESPACE": "default", "SERVICE_ACCOUNT": "inventory"}))
		if !isSidecarConfig(got) {
			names := []string{}
			for _, l := range got {
				names = append(names, l.GetName())
			}
			t.Fatalf("the inventory sidecar got listeners %v; want its own sidecar config (virtualInbound, no api_listener)", names)
		}
		// Both connections show in CSDS on the plaintext port, each with
		// its own connection ID.
		resp, err := statusv3.NewClientStatusDiscoveryServiceClient(plain).FetchClientStatus(ctx, &statusv3.ClientStatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		conns := map[string]bool{}
		for _, c := range resp.GetConfig() {
			if c.GetNode().GetId() == podNode {
				conns[c.GetNode().GetMetadata().GetFields()[server.ConnectionMetadataKey].GetStringValue()] = true
			}
		}
		if len(conns) != 2 {
			t.Fatalf("CSDS shows connections %v of %s, want 2 distinct", conns, podNode)
		}
	})
}

// TestCSDSOnTheTLSPort is issue 12's second attack: unary CSDS on 15012
// answers only a proven identity, and only with its own proxies.
func TestCSDSOnTheTLSPort(t *testing.T) {
	srv, _, rootPEM, inventory := hostileMesh(t)
	ctx := t.Context()
	// A VM sidecar of another identity is connected (plaintext, as in a
	// cluster), and the inventory sidecar over TLS.
	plain := e2e.Dial(t, srv.GRPCAddr, insecure.NewCredentials())
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	vmNode := &corev3.Node{Id: "sidecar~10.128.0.14~postgres-1-vm.default~default.svc.cluster.local"}
	listenersOf(sctx, t, plain, vmNode)
	withCert := e2e.Dial(t, srv.SecureGRPCAddr, tlsCreds(t, rootPEM, inventory))
	listenersOf(sctx, t, withCert, nodeWith(t, map[string]any{"NAMESPACE": "default", "SERVICE_ACCOUNT": "inventory"}))

	anonymous := e2e.Dial(t, srv.SecureGRPCAddr, tlsCreds(t, rootPEM, nil))
	_, err := statusv3.NewClientStatusDiscoveryServiceClient(anonymous).FetchClientStatus(ctx, &statusv3.ClientStatusRequest{})
	wantCode(t, err, codes.Unauthenticated, "no credential")

	resp, err := statusv3.NewClientStatusDiscoveryServiceClient(withCert).FetchClientStatus(ctx, &statusv3.ClientStatusRequest{})
	if err != nil {
		t.Fatalf("CSDS over TLS with the inventory certificate: %v", err)
	}
	var ids []string
	for _, c := range resp.GetConfig() {
		ids = append(ids, c.GetNode().GetId())
	}
	if len(ids) != 1 || ids[0] != podNode {
		t.Fatalf("CSDS over TLS as default/inventory listed %v; want only its own proxy %s", ids, podNode)
	}
	// The plaintext port (in-cluster operators) still lists both.
	e2e.Eventually(t, "both proxies in plaintext CSDS", 5*time.Second, func() bool {
		resp, err := statusv3.NewClientStatusDiscoveryServiceClient(plain).FetchClientStatus(ctx, &statusv3.ClientStatusRequest{})
		return err == nil && len(resp.GetConfig()) == 2
	})
}

// TestDeltaSubscribeAndUnsubscribeInOneRequest is issue 12's sixth case:
// a stream subscribed to one cluster's endpoints that subscribes and
// unsubscribes a second in one request, while another stream holds the
// set of both, must still get exactly the first.
func TestDeltaSubscribeAndUnsubscribeInOneRequest(t *testing.T) {
	srv, dir, _, _ := hostileMesh(t)
	const inv = "outbound|8080||inventory.default.svc.cluster.local"
	const pg = "outbound|5432||postgres-1-vm.default.svc.cluster.local"
	plain := e2e.Dial(t, srv.GRPCAddr, insecure.NewCredentials())
	open := func(id string, names ...string) discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient {
		st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(plain).DeltaAggregatedResources(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: id}, TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: names}); err != nil {
			t.Fatal(err)
		}
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResponseNonce: resp.GetNonce()}); err != nil {
			t.Fatal(err)
		}
		return st
	}
	open("sidecar~10.9.0.1~a.default~default.svc.cluster.local", inv, pg) // holds the set {inv, pg}
	b := open("sidecar~10.9.0.2~b.default~default.svc.cluster.local", inv)
	if err := b.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType,
		ResourceNamesSubscribe: []string{pg}, ResourceNamesUnsubscribe: []string{pg}}); err != nil {
		t.Fatal(err)
	}
	// Move both services' endpoints: B's next response must name only
	// what it subscribes to.
	for _, f := range []string{"inventory.yaml", "postgres-1-vm.yaml"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		moved := strings.ReplaceAll(strings.ReplaceAll(string(b), "10.8.0.6", "10.8.0.7"), "10.128.0.14", "10.128.0.15")
		e2e.WriteFileAtomic(t, filepath.Join(dir, f), moved)
	}
	resp, err := b.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range resp.GetResources() {
		names = append(names, r.GetName())
	}
	if len(names) == 0 || slices.Contains(names, pg) || !slices.Contains(names, inv) {
		t.Fatalf("stream B (subscribed to %s, then +%s -%s in one request) was sent %v; want only %s", inv, pg, pg, names, inv)
	}
}
