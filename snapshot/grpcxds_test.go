package snapshot

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/xds"

	"github.com/librarymesh/controlplane/internal/e2e"
	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/registry"
)

// TestProxylessGRPCAcceptsConfig feeds what the Builder makes for proxyless
// gRPC nodes to real grpc-go xDS clients and servers (through
// go-control-plane's server) and checks mTLS RPCs succeed, and fail when the
// DestinationRule names another identity.
func TestProxylessGRPCAcceptsConfig(t *testing.T) {
	m := newEchoMesh(t)
	view := echoView(m.port, meshStrict(), echoMutual(nil))
	setProxySnapshot(t, m.cache, view, "1", echoServerID)
	setProxySnapshot(t, m.cache, view, "1", echoClientID)
	m.startServer(t)
	if err := m.call(m.ctx, t, true); err != nil {
		t.Fatalf("RPC over mesh mTLS: %v", err)
	}

	// A DestinationRule that expects another identity: the handshake must fail
	// (the error is kept, so the message says why).
	other := []string{meshname.SPIFFEID("cluster.local", "default", "someone-else")}
	setProxySnapshot(t, m.cache, echoView(m.port, meshStrict(), echoMutual(other)), "2", echoClientID)
	err := m.call(m.ctx, t, false)
	t.Logf("with the wrong SAN: %v", err)
	if err == nil || !strings.Contains(err.Error(), "SAN") {
		t.Fatalf("RPC error = %v, want a handshake failure on the server's SPIFFE ID (SAN)", err)
	}
}

// TestProxylessGRPCPlaintextAndStrict: without policies grpc-go serves and
// calls in plaintext; a server turned STRICT refuses a client without mTLS
// and serves one with ISTIO_MUTUAL.
func TestProxylessGRPCPlaintextAndStrict(t *testing.T) {
	m := newEchoMesh(t)
	plain := echoView(m.port, nil, nil)
	setProxySnapshot(t, m.cache, plain, "1", echoServerID)
	setProxySnapshot(t, m.cache, plain, "1", echoClientID)
	m.startServer(t)
	if err := m.call(m.ctx, t, true); err != nil {
		t.Fatalf("plaintext RPC: %v", err)
	}
	// The server turns STRICT; the client still has no DestinationRule.
	setProxySnapshot(t, m.cache, echoView(m.port, meshStrict(), nil), "2", echoServerID)
	deadline := time.Now().Add(10 * time.Second)
	for {
		short, cancelShort := context.WithTimeout(m.ctx, time.Second)
		err := m.call(short, t, false)
		cancelShort()
		if err != nil {
			t.Logf("plaintext client against STRICT server: %v", err)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a plaintext client still reaches the server 10s after it turned STRICT")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The server is serving, over mTLS: a client with ISTIO_MUTUAL gets through.
	setProxySnapshot(t, m.cache, echoView(m.port, meshStrict(), echoMutual(nil)), "2", echoClientID)
	if err := m.call(m.ctx, t, true); err != nil {
		t.Fatalf("mTLS RPC to the STRICT server: %v", err)
	}
}

// Node IDs of the echo server and its client in the proxyless gRPC tests.
const (
	echoServerID = "sidecar~127.0.0.1~echo-1.default~default.svc.cluster.local"
	echoClientID = "sidecar~127.0.0.2~client-1.default~default.svc.cluster.local"
)

// echoMesh is what the proxyless gRPC tests share: an xDS server (go-control-
// plane's, over a snapshot cache), mesh certificates, and the listener and
// xds:/// target of the echo server.
type echoMesh struct {
	ctx     context.Context
	cache   cachev3.SnapshotCache
	xdsAddr string
	certs   map[string]certFiles
	lis     net.Listener
	port    uint32
	target  string
}

func newEchoMesh(t *testing.T) *echoMesh {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	m := &echoMesh{ctx: ctx, certs: writeMeshCerts(t), cache: cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)}
	m.xdsAddr = serveXDS(ctx, t, m.cache)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.lis, m.port = lis, uint32(lis.Addr().(*net.TCPAddr).Port)
	m.target = "xds:///" + meshname.GRPCClientListener("echo.default.svc.cluster.local", m.port)
	return m
}

// startServer starts the echo server on its xDS bootstrap until the test ends.
func (m *echoMesh) startServer(t *testing.T) {
	t.Helper()
	srv := startXDSServer(t, m.lis, grpcBootstrap(t, m.xdsAddr, echoServerID, m.certs["echo"]))
	t.Cleanup(srv.Stop)
}

// call checks the echo server's health from a client on its own xDS bootstrap.
func (m *echoMesh) call(ctx context.Context, t *testing.T, wantOK bool) error {
	t.Helper()
	return checkHealth(ctx, t, m.target, grpcBootstrap(t, m.xdsAddr, echoClientID, m.certs["client"]), wantOK)
}

func echoMutual(sans []string) []*registry.DestinationRule {
	return []*registry.DestinationRule{{Namespace: "istio-system", Name: "default", Host: "*.local",
		TrafficPolicy: &registry.TrafficPolicy{TLS: &registry.ClientTLS{Mode: registry.ClientTLSIstioMutual, SubjectAltNames: sans}}}}
}

// echoView is one gRPC service on 127.0.0.1:port served by a pod with service
// account echo, under the given policies.
func echoView(port uint32, pas []*registry.PeerAuthentication, drs []*registry.DestinationRule) *testView {
	host := "echo.default.svc.cluster.local"
	return &testView{
		services: []*registry.Service{{Hostname: host, Namespace: "default", Name: "echo",
			Ports:           []registry.Port{{Name: "grpc", Number: port, Protocol: registry.ProtocolGRPC}},
			ServiceAccounts: []string{meshname.SPIFFEID("cluster.local", "default", "echo")}}},
		endpoints: []*registry.Endpoint{{Hostname: host, Namespace: "default", Address: "127.0.0.1", Ready: true, ServiceAccount: "echo"}},
		workloads: []*registry.Workload{{Kind: "Pod", Namespace: "default", Name: "echo-1", Address: "127.0.0.1", ServiceAccount: "echo"}},
		pas:       pas,
		drs:       drs,
	}
}

func setProxySnapshot(t *testing.T, cache cachev3.SnapshotCache, view registry.View, version, id string) {
	t.Helper()
	res, err := NewBuilder(view, Options{}).Build(mustProxy(t, id, map[string]any{"GENERATOR": "grpc"}))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := cachev3.NewSnapshot(version, map[resource.Type][]types.Resource{
		resource.ListenerType: res.Listeners, resource.RouteType: res.Routes,
		resource.ClusterType: res.Clusters, resource.EndpointType: res.Endpoints,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cache.SetSnapshot(context.Background(), id, snap); err != nil {
		t.Fatal(err)
	}
}

func serveXDS(ctx context.Context, t *testing.T, cache cachev3.SnapshotCache) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, serverv3.NewServer(ctx, cache, nil))
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

func startXDSServer(t *testing.T, lis net.Listener, bootstrap []byte) *xds.GRPCServer {
	t.Helper()
	creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := xds.NewGRPCServer(grpc.Creds(creds), xds.BootstrapContentsForTesting(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	return srv
}

// checkHealth dials target through xDS and makes one RPC (e2e.XDSHealthCheck).
func checkHealth(ctx context.Context, t *testing.T, target string, bootstrap []byte, waitForReady bool) error {
	t.Helper()
	_, err := e2e.XDSHealthCheck(ctx, t, target, bootstrap, waitForReady)
	return err
}

// grpcBootstrap is a grpc-go bootstrap for node id with a file_watcher
// certificate provider instance named "default", as Istio's agent writes it.
func grpcBootstrap(t *testing.T, xdsAddr, id string, files certFiles) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri": xdsAddr, "channel_creds": []any{map[string]any{"type": "insecure"}},
			"server_features": []string{"xds_v3"},
		}},
		"node": map[string]any{"id": id, "metadata": map[string]any{"GENERATOR": "grpc"}},
		"certificate_providers": map[string]any{meshname.GRPCProviderInstance: map[string]any{
			"plugin_name": "file_watcher",
			"config": map[string]any{
				"certificate_file": files.cert, "private_key_file": files.key,
				"ca_certificate_file": files.ca, "refresh_interval": "600s",
			},
		}},
		"server_listener_resource_name_template": "grpc/server?xds.resource.listening_address=%s",
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type certFiles struct{ cert, key, ca string }

// writeMeshCerts makes a root and SPIFFE leaf certificates for service
// accounts echo and client in namespace default.
func writeMeshCerts(t *testing.T) map[string]certFiles {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{"cluster.local"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	caPath := writePEM(t, dir, "root-cert.pem", "CERTIFICATE", caDER)
	out := map[string]certFiles{}
	for i, sa := range []string{"echo", "client"} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := url.Parse(meshname.SPIFFEID("cluster.local", "default", sa))
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 2)), NotBefore: caTmpl.NotBefore, NotAfter: caTmpl.NotAfter,
			URIs: []*url.URL{id}, KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		out[sa] = certFiles{
			cert: writePEM(t, dir, sa+"-cert.pem", "CERTIFICATE", der),
			key:  writePEM(t, dir, sa+"-key.pem", "PRIVATE KEY", keyDER),
			ca:   caPath,
		}
	}
	return out
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
