package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/xds"

	"github.com/librarymesh/controlplane/internal/e2e"
)

// netnsEnv marks a test binary re-run inside its own network namespace.
const netnsEnv = "CONTROLPLANE_E2E_NETNS"

// inNetworkNamespace re-runs the calling test in a new user and network
// namespace (`unshare -rn`) with only its own loopback, because Istio's agent
// binds its status port on every interface. It returns true in the re-run
// (which then runs the test body) and false in the parent, which waited for
// the re-run and failed if it failed.
func inNetworkNamespace(t *testing.T) bool {
	t.Helper()
	return inNamespaces(t, "-rn")
}

// inNetworkAndMountNamespace is inNetworkNamespace with a mount namespace of
// its own as well, so that the re-run may bind-mount files over the
// machine's (a VM's /etc/hosts) without touching them.
func inNetworkAndMountNamespace(t *testing.T) bool {
	t.Helper()
	return inNamespaces(t, "-rnm")
}

// inNamespaces re-runs the calling test under `unshare FLAGS`.
func inNamespaces(t *testing.T, flags string) bool {
	t.Helper()
	if os.Getenv(netnsEnv) == "1" {
		if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
			t.Fatalf("bring up loopback in the network namespace: %v\n%s", err, out)
		}
		return true
	}
	if out, err := exec.Command("unshare", flags, "true").CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot make a network namespace: %v %s", err, out)
		}
		t.Skipf("cannot make a network namespace: %v %s", err, out)
	}
	bin := e2e.Binary(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", flags, "--", os.Args[0],
		"-test.run=^"+t.Name()+"$", "-test.v", "-test.timeout=3m")
	cmd.Env = append(os.Environ(), netnsEnv+"=1", e2e.BinaryEnv+"="+bin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s in a network namespace: %v\n%s", t.Name(), err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("%s did not pass in the network namespace:\n%s", t.Name(), out)
	}
	t.Logf("in a network namespace:\n%s", out)
	return false
}

// istioAgent is a running pilot-agent: Istio's node agent for a proxyless
// gRPC workload (DISABLE_ENVOY), in its own folder.
type istioAgent struct {
	dir   string
	certs string // OUTPUT_CERTS, relative to dir
}

func (a istioAgent) path(p string) string { return filepath.Join(a.dir, p) }

// bootstrap is the grpc-go xDS bootstrap the agent wrote (xDS through the
// agent's socket, certificate files it keeps current).
func (a istioAgent) bootstrap(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(a.path("etc/istio/proxy/grpc-bootstrap.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startIstioAgent runs pilot-agent for pod/sa in namespace default with the
// given instance IP. It authenticates to the CA on the TLS port with token
// (read, as in a pod, from ./var/run/secrets/tokens/istio-token), trusts
// rootPEM (./var/run/secrets/istio/root-cert.pem), and proxies xDS over mTLS
// with the certificate it got. It returns once the cert files and the gRPC
// bootstrap are written.
func startIstioAgent(t *testing.T, srv *e2e.Server, rootPEM []byte, pod, sa, ip string, statusPort int) istioAgent {
	t.Helper()
	dir, err := os.MkdirTemp("", "pilot-agent-") // short: the XDS socket path must fit sun_path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	a := istioAgent{dir: dir, certs: "certs"}
	// Reusable: the token stands in for a pod's service account token, which
	// pilot-agent sends with every CreateCertificate (it does not renew with
	// its certificate as our VM agent does).
	token := tokenCreate(t, srv.DataDir, "default", sa, "--ttl", "10m", "--reusable")
	for path, content := range map[string][]byte{
		"var/run/secrets/tokens/istio-token":  []byte(token),
		"var/run/secrets/istio/root-cert.pem": rootPEM,
	} {
		if err := os.MkdirAll(filepath.Dir(a.path(path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(a.path(path), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(a.path("certs"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(e2e.Tool(t, "pilot-agent"), "proxy", "sidecar")
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + dir,
		"DISABLE_ENVOY=true",
		fmt.Sprintf(`PROXY_CONFIG={"discoveryAddress": %q, "configPath": %q, "controlPlaneAuthPolicy": "MUTUAL_TLS", "statusPort": %d}`,
			srv.SecureGRPCAddr, a.path("etc/istio/proxy"), statusPort),
		"CA_ADDR=" + srv.SecureGRPCAddr,
		"OUTPUT_CERTS=" + a.path("certs"),
		"GRPC_XDS_BOOTSTRAP=" + a.path("etc/istio/proxy/grpc-bootstrap.json"),
		"POD_NAME=" + pod, "POD_NAMESPACE=default", "SERVICE_ACCOUNT=" + sa, "INSTANCE_IP=" + ip,
	}
	a.waitFiles(t, runLogged(t, cmd, a.path("pilot-agent.log")), sa)
	return a
}

// waitFiles waits until the agent has written its certificate files and
// the gRPC bootstrap, failing if it exits first or takes over 30 s.
func (a istioAgent) waitFiles(t *testing.T, exited <-chan struct{}, who string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, f := range []string{a.certs + "/cert-chain.pem", a.certs + "/key.pem", a.certs + "/root-cert.pem", "etc/istio/proxy/grpc-bootstrap.json"} {
		for {
			if _, err := os.Stat(a.path(f)); err == nil {
				break
			}
			select {
			case <-exited:
				t.Fatalf("pilot-agent for %s exited before writing %s", who, f)
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("pilot-agent for %s did not write %s within 30s", who, f)
			}
		}
	}
}

// checkAgentCerts checks the files pilot-agent wrote: a key and chain for
// exactly wantID that verify to our root, and our root.
func checkAgentCerts(t *testing.T, a istioAgent, rootPEM []byte, wantID string) {
	t.Helper()
	chain, err := os.ReadFile(a.path(a.certs + "/cert-chain.pem"))
	if err != nil {
		t.Fatal(err)
	}
	leaf := checkChain(t, chain, rootPEM, wantID)
	if _, err := tls.LoadX509KeyPair(a.path(a.certs+"/cert-chain.pem"), a.path(a.certs+"/key.pem")); err != nil {
		t.Fatalf("pilot-agent's key does not fit its certificate: %v", err)
	}
	root, err := os.ReadFile(a.path(a.certs + "/root-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(root)) != strings.TrimSpace(string(rootPEM)) {
		t.Errorf("pilot-agent's root-cert.pem is not our root:\n%s", root)
	}
	t.Logf("pilot-agent holds %s, valid until %s", leaf.URIs[0], leaf.NotAfter.Format(time.RFC3339))
}

// peerIDs records the SPIFFE ID (or "plaintext") of each caller.
type peerIDs struct {
	mu  sync.Mutex
	ids []string
}

func (p *peerIDs) last() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ids) == 0 {
		return ""
	}
	return p.ids[len(p.ids)-1]
}

func peerID(info credentials.AuthInfo) string {
	ti, ok := info.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 || len(ti.State.PeerCertificates[0].URIs) == 0 {
		return "plaintext"
	}
	return ti.State.PeerCertificates[0].URIs[0].String()
}

// serveEchoXDS runs a grpc-go xDS server (health service) on lis, configured
// through bootstrap, recording who calls it.
func serveEchoXDS(t *testing.T, lis net.Listener, bootstrap []byte) *peerIDs {
	t.Helper()
	creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	callers := &peerIDs{}
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if p, ok := peer.FromContext(ctx); ok {
			callers.mu.Lock()
			callers.ids = append(callers.ids, peerID(p.AuthInfo))
			callers.mu.Unlock()
		}
		return h(ctx, req)
	}
	srv, err := xds.NewGRPCServer(grpc.Creds(creds), grpc.UnaryInterceptor(record), xds.BootstrapContentsForTesting(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return callers
}

// callEcho dials target through xDS with bootstrap, makes one health RPC and
// returns the server's SPIFFE ID. Without waitForReady it fails once the
// channel fails to connect.
func callEcho(ctx context.Context, t *testing.T, target string, bootstrap []byte, waitForReady bool) (string, error) {
	t.Helper()
	p, err := e2e.XDSHealthCheck(ctx, t, target, bootstrap, waitForReady)
	if err != nil {
		return "", err
	}
	return peerID(p.AuthInfo), nil
}

const echoMeshYAML = `apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec:
  selector: {app: echo}
  ports:
  - {name: grpc, port: %[1]d, targetPort: %[1]d, appProtocol: grpc}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-1
  namespace: default
  labels: {kubernetes.io/service-name: echo}
addressType: IPv4
ports:
- {name: grpc, port: %[1]d, appProtocol: grpc}
endpoints:
- addresses: ["%[2]s"]
  conditions: {ready: true}
  targetRef: {kind: Pod, namespace: default, name: echo-1}
---
apiVersion: v1
kind: Pod
metadata:
  name: echo-1
  namespace: default
  labels: {app: echo}
spec:
  serviceAccountName: echo
status:
  phase: Running
  podIP: "%[2]s"
  conditions:
  - {type: Ready, status: "True"}
`

// meshPolicyYAML is STRICT mesh-wide and ISTIO_MUTUAL to every *.local host,
// optionally expecting the given SANs from servers.
func meshPolicyYAML(sans ...string) string {
	dr := `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: default, namespace: istio-system}
spec:
  host: "*.local"
  trafficPolicy:
    tls:
      mode: ISTIO_MUTUAL
`
	if len(sans) > 0 {
		dr += "      subjectAltNames: [\"" + strings.Join(sans, `", "`) + "\"]\n"
	}
	return dr
}

// TestIstioPilotAgent: Istio's own node agent, unchanged, gets its workload
// certificate from our CA (bootstrap token over the TLS port) and its xDS
// through us (mTLS with that certificate); a grpc-go client and a grpc-go xDS
// server, each behind its own agent, talk mTLS with SPIFFE SAN checks, and a
// DestinationRule naming another service account makes the handshake fail.
func TestIstioPilotAgent(t *testing.T) {
	e2e.Tool(t, "pilot-agent")
	if !inNetworkNamespace(t) {
		return
	}
	const echoIP, clientIP = "127.0.0.3", "127.0.0.4" // the namespace's loopback serves all of 127/8
	lis, err := net.Listen("tcp", echoIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	port := lis.Addr().(*net.TCPAddr).Port
	cfgDir := t.TempDir()
	e2e.WriteFileAtomic(t, filepath.Join(cfgDir, "echo.yaml"), fmt.Sprintf(echoMeshYAML, port, echoIP))
	e2e.WriteFileAtomic(t, filepath.Join(cfgDir, "policy.yaml"), meshPolicyYAML())
	srv := e2e.Serve(t, "--config-dir", cfgDir, "--extra-san", "127.0.0.1")
	rootPEM, err := os.ReadFile(filepath.Join(srv.DataDir, "root-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}

	echo := startIstioAgent(t, srv, rootPEM, "echo-1", "echo", echoIP, 15020)
	client := startIstioAgent(t, srv, rootPEM, "client-1", "client", clientIP, 15030)
	checkAgentCerts(t, echo, rootPEM, spiffeID("default", "echo"))
	checkAgentCerts(t, client, rootPEM, spiffeID("default", "client"))

	callers := serveEchoXDS(t, lis, echo.bootstrap(t))
	target := fmt.Sprintf("xds:///echo.default.svc.cluster.local:%d", port)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	serverID, err := callEcho(ctx, t, target, client.bootstrap(t), true)
	if err != nil {
		t.Fatalf("RPC through pilot-agent's xDS: %v", err)
	}
	if want := spiffeID("default", "echo"); serverID != want {
		t.Errorf("client saw server %s, want %s (mTLS)", serverID, want)
	}
	if got, want := callers.last(), spiffeID("default", "client"); got != want {
		t.Errorf("server saw caller %s, want %s (mTLS)", got, want)
	}

	other := spiffeID("default", "someone-else")
	e2e.WriteFileAtomic(t, filepath.Join(cfgDir, "policy.yaml"), meshPolicyYAML(other))
	if !e2e.Poll(20*time.Second, 100*time.Millisecond, func() bool {
		short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
		_, err = callEcho(short, t, target, client.bootstrap(t), false)
		cancelShort()
		return err != nil && strings.Contains(err.Error(), "SAN")
	}) {
		t.Fatalf("20s after the DestinationRule named %s the RPC still gives %v, want a SAN handshake failure", other, err)
	}
	t.Logf("with a DestinationRule expecting %s: %v", other, err)
}
