package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/librarymesh/controlplane/internal/e2e"
)

// meshStrictYAML is STRICT mesh-wide, with no DestinationRule.
const meshStrictYAML = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
`

// TestAutoMTLSProxylessStrictServer: with no DestinationRule, a proxyless
// grpc-go client reaches a grpc-go xDS server that requires mTLS (STRICT,
// certificates from our CA) once the server's pod is labelled as having a
// sidecar (security.istio.io/tlsMode: istio); before, automatic mTLS sends
// plaintext and the server refuses it. The label is added by rewriting the
// YAML, without a restart.
func TestAutoMTLSProxylessStrictServer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := lis.Addr().(*net.TCPAddr).Port
	cfgDir := t.TempDir()
	echoFile := filepath.Join(cfgDir, "echo.yaml")
	plain := fmt.Sprintf(echoMeshYAML, port, "127.0.0.1")
	e2e.WriteFileAtomic(t, echoFile, plain)
	e2e.WriteFileAtomic(t, filepath.Join(cfgDir, "policy.yaml"), meshStrictYAML)
	srv := e2e.Serve(t, "--config-dir", cfgDir, "--debounce", "20ms")
	rootPEM, err := os.ReadFile(filepath.Join(srv.DataDir, "root-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	echoCerts, clientCerts := issueCertFiles(t, srv, rootPEM, "echo"), issueCertFiles(t, srv, rootPEM, "inventory")
	callers := serveEchoXDS(t, lis, proxylessBootstrap(t, srv.GRPCAddr, "sidecar~127.0.0.1~echo-1.default~default.svc.cluster.local", echoCerts))
	target := fmt.Sprintf("xds:///echo.default.svc.cluster.local:%d", port)
	client := proxylessBootstrap(t, srv.GRPCAddr, "sidecar~127.0.0.2~inventory-1.default~default.svc.cluster.local", clientCerts)
	call := func() (string, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		return callEcho(ctx, t, target, client, false)
	}

	// No sidecar label: plaintext, which the STRICT server refuses.
	if id, err := call(); err == nil {
		t.Fatalf("an RPC in plaintext to the STRICT server passed (server %s)", id)
	}

	labelled := strings.Replace(plain, "labels: {app: echo}", "labels: {app: echo, security.istio.io/tlsMode: istio}", 1)
	if labelled == plain {
		t.Fatal("echoMeshYAML has no pod labels to extend")
	}
	e2e.WriteFileAtomic(t, echoFile, labelled)
	var id string
	e2e.Eventually(t, "the client to reach the STRICT server with mTLS", 30*time.Second, func() bool {
		id, err = call()
		return err == nil
	})
	if want := spiffeID("default", "echo"); id != want {
		t.Errorf("the client reached %s, want %s over mTLS", id, want)
	}
	if got, want := callers.last(), spiffeID("default", "inventory"); got != want {
		t.Errorf("the server saw %s, want %s over mTLS", got, want)
	}
}
