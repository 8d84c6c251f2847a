package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/librarymesh/controlplane/internal/e2e"
	"github.com/librarymesh/controlplane/meshname"
)

// allowOnlyYAML is an AuthorizationPolicy on the echo server that lets only
// service account sa of namespace default call it.
func allowOnlyYAML(sa string) string {
	return fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: echo-callers, namespace: default}
spec:
  selector:
    matchLabels: {app: echo}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/%s"]
`, sa)
}

// meshCertFiles are a workload's certificate chain, key and root, as files
// for grpc-go's file_watcher certificate provider.
type meshCertFiles struct{ cert, key, ca string }

// issueCertFiles gets a certificate for default/sa from the server's CA (a
// bootstrap token over the TLS port) and writes it to files.
func issueCertFiles(t *testing.T, srv *e2e.Server, rootPEM []byte, sa string) meshCertFiles {
	t.Helper()
	anonymous := e2e.Dial(t, srv.SecureGRPCAddr, tlsCreds(t, rootPEM, nil))
	token := tokenCreate(t, srv.DataDir, "default", sa, "--ttl", "1h")
	cert := createCertificate(withBearer(t.Context(), token), t, anonymous, rootPEM, spiffeID("default", sa))
	return writeCertFiles(t, sa, cert, rootPEM)
}

func writeCertFiles(t *testing.T, name string, cert *tls.Certificate, rootPEM []byte) meshCertFiles {
	t.Helper()
	dir := t.TempDir()
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	f := meshCertFiles{cert: filepath.Join(dir, name+"-cert.pem"), key: filepath.Join(dir, name+"-key.pem"), ca: filepath.Join(dir, "root-cert.pem")}
	for path, data := range map[string][]byte{f.cert: chain, f.key: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), f.ca: rootPEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// proxylessBootstrap is a grpc-go bootstrap for node id against the
// server's plaintext xDS port, with the workload's certificate files as the
// certificate provider instance the generated TLS contexts name.
func proxylessBootstrap(t *testing.T, xdsAddr, id string, files meshCertFiles) []byte {
	t.Helper()
	return proxylessBootstrapRefresh(t, xdsAddr, id, files, "600s")
}

// proxylessBootstrapRefresh is proxylessBootstrap with the file watcher
// re-reading the files every refresh (a duration such as "0.2s").
func proxylessBootstrapRefresh(t *testing.T, xdsAddr, id string, files meshCertFiles, refresh string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri": xdsAddr, "channel_creds": []any{map[string]any{"type": "insecure"}},
			"server_features": []string{"xds_v3"},
		}},
		"node": map[string]any{"id": id, "metadata": map[string]any{"GENERATOR": "grpc", "NAMESPACE": "default"}},
		"certificate_providers": map[string]any{meshname.GRPCProviderInstance: map[string]any{
			"plugin_name": "file_watcher",
			"config": map[string]any{
				"certificate_file": files.cert, "private_key_file": files.key,
				"ca_certificate_file": files.ca, "refresh_interval": refresh,
			},
		}},
		"server_listener_resource_name_template": "grpc/server?xds.resource.listening_address=%s",
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAuthorizationPolicyOnProxylessServer: an AuthorizationPolicy read
// from the config directory allows only default/inventory to call a grpc-go
// xDS server: over mTLS with certificates from our CA, inventory's RPC
// passes and orders' gets PermissionDenied from grpc-go's RBAC; rewriting
// the policy to allow orders flips both without a restart.
func TestAuthorizationPolicyOnProxylessServer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := lis.Addr().(*net.TCPAddr).Port
	cfgDir := t.TempDir()
	e2e.WriteFileAtomic(t, filepath.Join(cfgDir, "echo.yaml"), fmt.Sprintf(echoMeshYAML, port, "127.0.0.1"))
	e2e.WriteFileAtomic(t, filepath.Join(cfgDir, "policy.yaml"), meshPolicyYAML())
	e2e.WriteFileAtomic(t, filepath.Join(cfgDir, "authz.yaml"), allowOnlyYAML("inventory"))
	srv := e2e.Serve(t, "--config-dir", cfgDir)
	rootPEM, err := os.ReadFile(filepath.Join(srv.DataDir, "root-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	certs := map[string]meshCertFiles{}
	for _, sa := range []string{"echo", "inventory", "orders"} {
		certs[sa] = issueCertFiles(t, srv, rootPEM, sa)
	}
	callers := serveEchoXDS(t, lis, proxylessBootstrap(t, srv.GRPCAddr, "sidecar~127.0.0.1~echo-1.default~default.svc.cluster.local", certs["echo"]))
	target := fmt.Sprintf("xds:///echo.default.svc.cluster.local:%d", port)
	call := func(ctx context.Context, sa string) error {
		id := "sidecar~127.0.0.2~" + sa + "-1.default~default.svc.cluster.local"
		_, err := callEcho(ctx, t, target, proxylessBootstrap(t, srv.GRPCAddr, id, certs[sa]), true)
		return err
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	checkCallers(ctx, t, call, "inventory", "orders")
	if got := callers.last(); got != spiffeID("default", "inventory") {
		t.Errorf("the server last served %s, want inventory over mTLS", got)
	}

	e2e.WriteFileAtomic(t, filepath.Join(cfgDir, "authz.yaml"), allowOnlyYAML("orders"))
	checkCallers(ctx, t, call, "orders", "inventory")

	// A DENY rule on a header grpc-go's RBAC refuses to match: the server
	// keeps serving (the rule applies without the header, denying only the
	// account it names), and /debug/problems names the field.
	e2e.WriteFileAtomic(t, filepath.Join(cfgDir, "deny.yaml"), denyGRPCHeaderYAML)
	e2e.Eventually(t, "the problem on /debug/problems", 20*time.Second, func() bool {
		return strings.Contains(e2e.HTTPGet(t, "http://"+srv.HTTPAddr+"/debug/problems"), "spec.rules[0].when[0].values")
	})
	checkCallers(ctx, t, call, "orders", "inventory")
}

const denyGRPCHeaderYAML = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-retries, namespace: default}
spec:
  selector:
    matchLabels: {app: echo}
  action: DENY
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/nobody"]
    when:
    - key: request.headers[grpc-previous-rpc-attempts]
      values: ["*"]
`

// checkCallers waits until allowed's RPC passes and denied's fails with
// PermissionDenied (the policy may still be on its way to the server).
func checkCallers(ctx context.Context, t *testing.T, call func(context.Context, string) error, allowed, denied string) {
	t.Helper()
	var okErr, deniedErr error
	start := time.Now()
	if !e2e.Poll(30*time.Second, 100*time.Millisecond, func() bool {
		short, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		okErr, deniedErr = call(short, allowed), call(short, denied)
		return okErr == nil && status.Code(deniedErr) == codes.PermissionDenied
	}) {
		t.Fatalf("after 30s: %s's RPC gives %v (want success), %s's gives %v (want PermissionDenied)", allowed, okErr, denied, deniedErr)
	}
	t.Logf("%s allowed, %s denied (%v) after %v", allowed, denied, deniedErr, time.Since(start).Round(time.Millisecond))
}
