package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/librarymesh/controlplane/internal/e2e"
	"github.com/librarymesh/controlplane/snapshot/bootstrap"
	"github.com/librarymesh/controlplane/vmbundle"
)

const (
	vmName       = "postgres-1-vm"
	vmOutbound   = "outbound|5432||postgres-1-vm.default.svc.cluster.local"
	vmSPIFFEID   = "spiffe://cluster.local/ns/default/sa/postgres"
	vmSDSNode    = "sidecar~127.0.0.1~postgres-1-vm.default~default.svc.cluster.local"
	vmCertTTL    = 20 * time.Second // renewal every 10 s
	vmTokenTTL   = 5 * time.Second  // expired long before the first renewal
	tokenUsedLog = "with_token=true"
	renewedLog   = "with_token=false"
)

// TestJoinVMFileMode joins a VM from a clean temp dir with the real binary:
// serve, register, vm bundle, agent; then renewals with client certificates
// only, a control plane outage, and an agent restart.
func TestJoinVMFileMode(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: about 50 s")
	}
	root := t.TempDir()
	cfgDir, dataDir, bundleDir := filepath.Join(root, "config"), filepath.Join(root, "data"), filepath.Join(root, "bundle")
	if err := os.Mkdir(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	secureAddr := e2e.FreeLoopbackAddr(t)
	serveArgs := []string{"--config-dir", cfgDir, "--data-dir", dataDir, "--secure-grpc-addr", secureAddr}
	srv := e2e.Serve(t, serveArgs...)

	registerReachesPods(t, srv.GRPCAddr, cfgDir)
	writeBundle(t, secureAddr, dataDir, bundleDir)
	agent, sds, cert := startAgent(t, root, bundleDir, filepath.Join(dataDir, "root-cert.pem"))

	for i := 1; i <= 2; i++ {
		cert = waitRenewal(t, sds, cert)
		t.Logf("renewal %d: serial %s, valid until %s", i, cert.SerialNumber, cert.NotAfter.Format(time.TimeOnly))
	}
	checkTokenUsedOnce(t, agent, srv)

	srv.Stop(t)
	stoppedAt := time.Now()
	still, _ := nextCert(t, openSDS(t, filepath.Join(root, "vm", "sds.sock"), vmSDSNode), "", 5*time.Second)
	if still.SerialNumber.Cmp(cert.SerialNumber) != 0 {
		t.Errorf("during the outage a new SDS stream got serial %s, want the current %s", still.SerialNumber, cert.SerialNumber)
	}
	agent.waitLog(t, "certificate renewal failed; still serving the current certificate", 1, vmCertTTL)
	srv = e2e.Serve(t, serveArgs...)
	if srv.SecureGRPCAddr != secureAddr {
		t.Fatalf("restarted serve listens on %s, want %s", srv.SecureGRPCAddr, secureAddr)
	}
	t.Logf("control plane was down for %s", time.Since(stoppedAt).Round(100*time.Millisecond))
	cert = waitRenewal(t, sds, cert)
	t.Logf("renewed after the outage: serial %s", cert.SerialNumber)
	if n := strings.Count(agent.Logs(), tokenUsedLog); n != 1 {
		t.Errorf("the agent used the bootstrap token %d times, want 1", n)
	}
	restartAgent(t, agent, root, bundleDir, cert)
}

// restartAgent: a new agent process on the same state dir serves the kept
// certificate and renews with it; the (used, expired) token is not sent.
func restartAgent(t *testing.T, old *process, root, bundleDir string, kept *x509.Certificate) {
	t.Helper()
	old.stop()
	agent := startProcess(t, agentArgs(root, bundleDir)...)
	agent.waitLog(t, "serving SDS", 1, 15*time.Second)
	sds := openSDS(t, filepath.Join(root, "vm", "sds.sock"), vmSDSNode)
	first, _ := nextCert(t, sds, "", 5*time.Second)
	if first.SerialNumber.Cmp(kept.SerialNumber) != 0 && !strings.Contains(agent.Logs(), renewedLog) {
		t.Errorf("restarted agent serves serial %s, neither the kept %s nor a renewal", first.SerialNumber, kept.SerialNumber)
	}
	agent.waitLog(t, renewedLog, 1, vmCertTTL)
	renewed := waitRenewal(t, sds, kept)
	t.Logf("restarted agent renewed with the kept certificate: serial %s", renewed.SerialNumber)
	if strings.Contains(agent.Logs(), tokenUsedLog) {
		t.Errorf("restarted agent used the bootstrap token:\n%s", agent.Logs())
	}
}

func agentArgs(root, bundleDir string) []string {
	vmDir := filepath.Join(root, "vm")
	return []string{"agent", "--bundle", bundleDir, "--sds-socket", filepath.Join(vmDir, "sds.sock"),
		"--state-dir", filepath.Join(vmDir, "state"), "--output-dir", filepath.Join(vmDir, "certs"), "--metrics-address", "off"}
}

// registerReachesPods runs `register` while a pod sidecar's ADS stream is
// open and waits for the VM's cluster and endpoint on it.
func registerReachesPods(t *testing.T, grpcAddr, cfgDir string) {
	t.Helper()
	pod := openADS(t, grpcAddr)
	pod.request(t, podNode, resourcev3.ClusterType)
	first := pod.waitFor(t, "CDS", 10*time.Second, isType(resourcev3.ClusterType))
	if hasCluster(t, first, vmOutbound) {
		t.Fatalf("%s exists before register", vmOutbound)
	}
	runCP(t, "register", vmName, "127.0.0.1", "5432:tcp/TCP", "--namespace", "default",
		"--service-account", "postgres", "--config-dir", cfgDir)
	pod.waitFor(t, vmOutbound+" over CDS", 10*time.Second, func(r *discoveryv3.DiscoveryResponse) bool {
		return r.GetTypeUrl() == resourcev3.ClusterType && hasCluster(t, r, vmOutbound)
	})
	pod.request(t, podNode, resourcev3.EndpointType, vmOutbound)
	pod.waitFor(t, "the VM endpoint over EDS", 10*time.Second, func(r *discoveryv3.DiscoveryResponse) bool {
		return r.GetTypeUrl() == resourcev3.EndpointType && hasEndpoint(t, r, vmOutbound, "127.0.0.1", 5432)
	})
}

func isType(typeURL string) func(*discoveryv3.DiscoveryResponse) bool {
	return func(r *discoveryv3.DiscoveryResponse) bool { return r.GetTypeUrl() == typeURL }
}

func hasCluster(t *testing.T, r *discoveryv3.DiscoveryResponse, name string) bool {
	t.Helper()
	for _, a := range r.GetResources() {
		c := &clusterv3.Cluster{}
		if err := a.UnmarshalTo(c); err != nil {
			t.Fatalf("CDS resource: %v", err)
		}
		if c.GetName() == name {
			return true
		}
	}
	return false
}

func hasEndpoint(t *testing.T, r *discoveryv3.DiscoveryResponse, cluster, ip string, port uint32) bool {
	t.Helper()
	for _, a := range r.GetResources() {
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := a.UnmarshalTo(cla); err != nil {
			t.Fatalf("EDS resource: %v", err)
		}
		if cla.GetClusterName() != cluster {
			continue
		}
		for _, loc := range cla.GetEndpoints() {
			for _, lb := range loc.GetLbEndpoints() {
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				if sa.GetAddress() == ip && sa.GetPortValue() == port {
					return true
				}
			}
		}
	}
	return false
}

// writeBundle runs `vm bundle` against serve's data dir and checks the files.
func writeBundle(t *testing.T, secureAddr, dataDir, bundleDir string) {
	t.Helper()
	runCP(t, "vm", "bundle", "--name", vmName, "--namespace", "default", "--service-account", "postgres",
		"--ip", "127.0.0.1", "--ports", "5432", "--address", secureAddr, "-o", bundleDir, "--data-dir", dataDir,
		"--token-ttl", vmTokenTTL.String(), "--cert-ttl", vmCertTTL.String())
	for _, f := range []string{vmbundle.FileBootstrap, vmbundle.FileRootCert, vmbundle.FileToken, vmbundle.FileClusterEnv,
		vmbundle.FileAgentUnit, vmbundle.FileEnvoyUnit, vmbundle.FileReadme} {
		if _, err := os.Stat(filepath.Join(bundleDir, f)); err != nil {
			t.Errorf("bundle lacks %s: %v", f, err)
		}
	}
	data, err := os.ReadFile(filepath.Join(bundleDir, vmbundle.FileBootstrap))
	if err != nil {
		t.Fatal(err)
	}
	b, err := bootstrap.UnmarshalYAML(data)
	if err != nil {
		t.Fatalf("%s: %v", vmbundle.FileBootstrap, err)
	}
	if got := b.GetNode().GetId(); got != vmSDSNode {
		t.Errorf("bootstrap node %q, want %q", got, vmSDSNode)
	}
	if !bytes.Contains(data, []byte(strings.Split(secureAddr, ":")[1])) {
		t.Errorf("bootstrap does not dial %s:\n%s", secureAddr, data)
	}
}

// startAgent runs `agent --bundle` with test paths and checks the first
// certificate and the trust bundle over SDS.
func startAgent(t *testing.T, root, bundleDir, rootFile string) (*process, *xdsStream, *x509.Certificate) {
	t.Helper()
	vmDir := filepath.Join(root, "vm")
	socket := filepath.Join(vmDir, "sds.sock")
	agent := startProcess(t, agentArgs(root, bundleDir)...)
	agent.waitLog(t, "certificate issued", 1, 15*time.Second)
	sds := openSDS(t, socket, vmSDSNode)
	cert, _ := nextCert(t, sds, "", 10*time.Second)
	checkSAN(t, cert)
	_, got := nextCert(t, openSDS(t, socket, vmSDSNode), "", 10*time.Second)
	wantRoot, err := os.ReadFile(rootFile)
	if err != nil {
		t.Fatal(err)
	}
	if ca := got["ROOTCA"].GetValidationContext().GetTrustedCa().GetInlineBytes(); !bytes.Equal(ca, wantRoot) {
		t.Errorf("SDS ROOTCA is not serve's root-cert.pem:\n%s", ca)
	}
	if _, err := os.Stat(filepath.Join(vmDir, "certs", "key.pem")); err != nil {
		t.Errorf("--output-dir: %v", err)
	}
	return agent, sds, cert
}

func checkSAN(t *testing.T, cert *x509.Certificate) {
	t.Helper()
	if len(cert.URIs) != 1 || cert.URIs[0].String() != vmSPIFFEID {
		t.Errorf("certificate SAN %v, want %s", cert.URIs, vmSPIFFEID)
	}
}

// waitRenewal waits for the next certificate over SDS (renewal is at half-life).
func waitRenewal(t *testing.T, sds *xdsStream, prev *x509.Certificate) *x509.Certificate {
	t.Helper()
	next, _ := nextCert(t, sds, prev.SerialNumber.String(), vmCertTTL)
	checkSAN(t, next)
	if !next.NotAfter.After(prev.NotAfter) {
		t.Errorf("renewed certificate expires %s, not after the previous %s", next.NotAfter, prev.NotAfter)
	}
	if ttl := next.NotAfter.Sub(time.Now()); ttl > vmCertTTL+time.Second {
		t.Errorf("renewed certificate valid for %s, want at most %s", ttl, vmCertTTL)
	}
	return next
}

// checkTokenUsedOnce: the first certificate came with the token, renewals
// with the client certificate; the agent's and the CA's logs agree.
func checkTokenUsedOnce(t *testing.T, agent *process, srv *e2e.Server) {
	t.Helper()
	agent.waitLog(t, renewedLog, 2, 5*time.Second) // SDS may see a renewal before the log line
	for _, c := range []struct {
		who, logs, substr string
		min, max          int
	}{
		{"agent", agent.Logs(), tokenUsedLog, 1, 1},
		{"agent", agent.Logs(), renewedLog, 2, 1 << 10},
		{"serve", srv.Logs(), "auth=bootstrap_token", 1, 1},
		{"serve", srv.Logs(), "auth=client_cert", 2, 1 << 10},
	} {
		if n := strings.Count(c.logs, c.substr); n < c.min || n > c.max {
			t.Errorf("%s logged %q %d times, want %d..%d", c.who, c.substr, n, c.min, c.max)
		}
	}
}

// runCP runs the binary and fails the test on error.
func runCP(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := e2e.Run(ctx, t, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("controlplane %s:\n%s", args[0], out)
	return out
}
