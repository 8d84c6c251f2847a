package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/librarymesh/controlplane/internal/e2e"
	"github.com/librarymesh/controlplane/meshname"
)

const (
	groupCluster = "outbound|5432||pg.default.svc.cluster.local"
	groupGrace   = 2 * time.Second
)

// groupMesh is a WorkloadGroup whose VMs serve pg through a ServiceEntry,
// a manual WorkloadEntry of the same service, and a group whose service
// account no VM of the bundle has.
const groupMesh = `apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: pg, namespace: default}
spec:
  metadata: {labels: {app: pg}}
  template: {serviceAccount: postgres, ports: {tcp: %[1]d}}
  probe: {periodSeconds: 1, failureThreshold: 2, tcpSocket: {port: %[1]d}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: pg-admin, namespace: default}
spec:
  template: {serviceAccount: admin}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: pg, namespace: default}
spec:
  hosts: [pg.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  workloadSelector: {labels: {app: pg}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: pg-manual, namespace: default}
spec: {address: 127.0.0.9, labels: {app: pg}, serviceAccount: postgres, ports: {tcp: %[1]d}}
`

// TestVMGroupFileMode: one group bundle, two agents with their own IPs;
// each is registered within 2 s of connecting, probed (a stopped workload
// is UNHEALTHY within period x threshold, and healthy again when it is
// back), and removed after the grace period when its agent stops; the
// manual WorkloadEntry stays; an agent whose identity is not its group's
// is refused.
func TestVMGroupFileMode(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	root := t.TempDir()
	cfgDir, dataDir, bundleDir := filepath.Join(root, "config"), filepath.Join(root, "data"), filepath.Join(root, "bundle")
	lisA := listenLoopback(t, "127.0.0.2", 0)
	port := lisA.Addr().(*net.TCPAddr).Port
	listenLoopback(t, "127.0.0.3", port)
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "pg.yaml"), []byte(fmt.Sprintf(groupMesh, port)), 0o644); err != nil {
		t.Fatal(err)
	}
	secureAddr := e2e.FreeLoopbackAddr(t)
	srv := e2e.Serve(t, "--config-dir", cfgDir, "--data-dir", dataDir, "--secure-grpc-addr", secureAddr,
		"--auto-register-grace-period", groupGrace.String())
	runCP(t, "vm", "bundle", "--group", "default/pg", "--config-dir", cfgDir, "--address", secureAddr,
		"-o", bundleDir, "--data-dir", dataDir)
	if _, err := os.Stat(filepath.Join(bundleDir, "mesh.yaml")); err != nil {
		t.Fatalf("group bundle lacks mesh.yaml: %v", err)
	}
	pod := openADS(t, srv.GRPCAddr)
	pod.request(t, podNode, resourcev3.ClusterType)
	pod.request(t, podNode, resourcev3.EndpointType, groupCluster)
	eds := &edsWatch{pod: pod, cluster: groupCluster}

	a := startGroupAgent(t, root, bundleDir, "127.0.0.2", "vm-a")
	eds.wait(t, "the first VM within 2 s of its connection", 2*time.Second,
		map[string]corev3.HealthStatus{"127.0.0.9": corev3.HealthStatus_UNKNOWN, "127.0.0.2": anyHealth})
	eds.wait(t, "the first VM healthy once probed", 10*time.Second,
		map[string]corev3.HealthStatus{"127.0.0.9": corev3.HealthStatus_UNKNOWN, "127.0.0.2": corev3.HealthStatus_UNKNOWN})
	// The agent's DNS answers the mesh's services and, once it has the VM
	// sidecar's listeners, NXDOMAIN for other names of the mesh domain.
	if got, err := a.lookup(t, "pg.default.svc.cluster.local"); err != nil || got != meshname.LoopbackAddress("pg.default.svc.cluster.local") {
		t.Errorf("the agent's DNS: pg = %v, %v; want its loopback address", got, err)
	}
	e2e.Eventually(t, "the agent's DNS to answer NXDOMAIN for a name that is no service", 10*time.Second, func() bool {
		_, err := a.lookup(t, "nope.default.svc.cluster.local")
		var dnsErr *net.DNSError
		return errors.As(err, &dnsErr) && dnsErr.IsNotFound
	})
	a.waitMetrics(t, "the agent's metrics: connected, probed, healthy, certificate", func(m map[string]float64) bool {
		return m["controlplane_agent_xds_connected"] == 1 && m["controlplane_agent_workload_healthy"] == 1 &&
			m[`controlplane_agent_probes_total{result="success"}`] >= 1 && m[`controlplane_agent_certificate_requests_total{result="issued"}`] == 1 &&
			m["controlplane_agent_certificate_expiry_timestamp_seconds"] > float64(time.Now().Unix())
	})
	b := startGroupAgent(t, root, bundleDir, "127.0.0.3", "vm-b")
	eds.wait(t, "both VMs, healthy", 10*time.Second, map[string]corev3.HealthStatus{
		"127.0.0.9": corev3.HealthStatus_UNKNOWN, "127.0.0.2": corev3.HealthStatus_UNKNOWN, "127.0.0.3": corev3.HealthStatus_UNKNOWN})

	lisA.Close()
	stopped := time.Now()
	eds.wait(t, "the stopped workload UNHEALTHY", 10*time.Second, map[string]corev3.HealthStatus{
		"127.0.0.9": corev3.HealthStatus_UNKNOWN, "127.0.0.2": corev3.HealthStatus_UNHEALTHY, "127.0.0.3": corev3.HealthStatus_UNKNOWN})
	took := time.Since(stopped)
	t.Logf("UNHEALTHY in the pod's EDS %s after the workload stopped (period 1s x threshold 2)", took.Round(10*time.Millisecond))
	if took > 2*time.Second+time.Second { // period x threshold, plus one push
		t.Errorf("UNHEALTHY after %s, want within period x threshold (2s) and a push", took)
	}
	a.waitMetrics(t, "the agent's metrics: unhealthy after failed probes", func(m map[string]float64) bool {
		return m["controlplane_agent_workload_healthy"] == 0 && m[`controlplane_agent_probes_total{result="failure"}`] >= 2
	})
	lisA = listenLoopback(t, "127.0.0.2", port)
	eds.wait(t, "the workload healthy again", 10*time.Second, map[string]corev3.HealthStatus{
		"127.0.0.9": corev3.HealthStatus_UNKNOWN, "127.0.0.2": corev3.HealthStatus_UNKNOWN, "127.0.0.3": corev3.HealthStatus_UNKNOWN})

	checkRegistryz(t, srv, "pg-127.0.0.3")
	b.stop()
	stopped = time.Now()
	time.Sleep(groupGrace / 2)
	eds.wait(t, "the stopped VM still served within its grace period", time.Second, map[string]corev3.HealthStatus{
		"127.0.0.9": corev3.HealthStatus_UNKNOWN, "127.0.0.2": corev3.HealthStatus_UNKNOWN, "127.0.0.3": anyHealth})
	eds.wait(t, "the stopped VM gone after the grace period", 10*time.Second, map[string]corev3.HealthStatus{
		"127.0.0.9": corev3.HealthStatus_UNKNOWN, "127.0.0.2": corev3.HealthStatus_UNKNOWN})
	t.Logf("removed %s after its agent stopped (grace %s)", time.Since(stopped).Round(10*time.Millisecond), groupGrace)
	// The push that took it out of EDS can reach the proxy before the line
	// logged just ahead of it comes through the log pipe.
	srv.WaitLog(t, "removed auto-registered workload", 5*time.Second)
	refusedIdentity(t, root, bundleDir)

}

// anyHealth in waitEndpoints accepts any health status.
const anyHealth = corev3.HealthStatus(-1)

// refusedIdentity runs an agent of the pg bundle (service account postgres)
// that names group pg-admin (service account admin): it is refused.
func refusedIdentity(t *testing.T, root, bundleDir string) {
	t.Helper()
	other := filepath.Join(root, "bundle-admin")
	if err := os.CopyFS(other, os.DirFS(bundleDir)); err != nil {
		t.Fatal(err)
	}
	env, err := os.ReadFile(filepath.Join(other, "cluster.env"))
	if err != nil {
		t.Fatal(err)
	}
	env = []byte(strings.Replace(string(env), "ISTIO_META_AUTO_REGISTER_GROUP=pg\n", "ISTIO_META_AUTO_REGISTER_GROUP=pg-admin\n", 1))
	if err := os.WriteFile(filepath.Join(other, "cluster.env"), env, 0o644); err != nil {
		t.Fatal(err)
	}
	agent := startGroupAgent(t, root, other, "127.0.0.4", "vm-intruder")
	agent.waitLog(t, "WorkloadGroup default/pg-admin runs as service account default/admin, but the caller proved default/postgres", 1, 30*time.Second)
}

// groupAgent is a running agent of a group bundle; it serves its metrics
// on its own IP (the bundle's 0.0.0.0:15020 is not for tests).
type groupAgent struct {
	*process
	metrics string // HOST:PORT
	dns     string // HOST:PORT, UDP and TCP
}

func startGroupAgent(t *testing.T, root, bundleDir, ip, name string) *groupAgent {
	t.Helper()
	dir := filepath.Join(root, name)
	metrics := listenLoopback(t, ip, 0)
	addr := metrics.Addr().String()
	metrics.Close()
	dnsLis, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	dns := dnsLis.LocalAddr().String()
	dnsLis.Close()
	return &groupAgent{metrics: addr, dns: dns, process: startProcess(t, "agent", "--bundle", bundleDir, "--ip", ip, "--name", name,
		"--sds-socket", filepath.Join(dir, "sds.sock"), "--state-dir", filepath.Join(dir, "state"), "--output-dir", filepath.Join(dir, "certs"),
		"--metrics-address", addr, "--dns-address", dns)}
}

// lookup asks the agent's DNS for name's IPv4 address.
func (a *groupAgent) lookup(t *testing.T, name string) (netip.Addr, error) {
	t.Helper()
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", a.dns)
	}}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	ips, err := res.LookupNetIP(ctx, "ip4", name)
	if err != nil {
		return netip.Addr{}, err
	}
	return ips[0], nil
}

// waitMetrics polls the agent's metrics until cond holds (the agent may
// not serve them yet at first).
func (a *groupAgent) waitMetrics(t *testing.T, what string, cond func(map[string]float64) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", a.metrics)
		if err == nil {
			c.Close()
			m := scrape(t, a.metrics)
			if cond(m) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s: the agent's metrics have\n%s", what, dumpMetrics(m, "controlplane_agent_"))
			}
		} else if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func listenLoopback(t *testing.T, ip string, port int) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(port)))
	if err != nil {
		t.Fatalf("listen on %s:%d: %v", ip, port, err)
	}
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { lis.Close() })
	return lis
}

// edsWatch follows a group cluster's endpoints on a pod sidecar's stream.
type edsWatch struct {
	pod     *xdsStream
	cluster string
	last    map[string]corev3.HealthStatus // the latest EDS of cluster
}

// wait waits until the group cluster's EDS holds exactly the addresses of
// want with their health (anyHealth: any); the latest EDS counts too.
func (w *edsWatch) wait(t *testing.T, what string, timeout time.Duration, want map[string]corev3.HealthStatus) {
	t.Helper()
	if w.last != nil && healthMatches(w.last, want) {
		return
	}
	defer func() {
		if t.Failed() {
			t.Logf("last EDS of %s: %v", w.cluster, w.last)
		}
	}()
	w.pod.waitFor(t, what, timeout, func(r *discoveryv3.DiscoveryResponse) bool {
		if r.GetTypeUrl() != resourcev3.EndpointType {
			return false
		}
		w.last = endpointHealth(t, r, w.cluster)
		return healthMatches(w.last, want)
	})
}

func healthMatches(got, want map[string]corev3.HealthStatus) bool {
	if len(got) != len(want) {
		return false
	}
	for ip, h := range want {
		g, ok := got[ip]
		if !ok || (h != anyHealth && g != h) {
			return false
		}
	}
	return true
}

func endpointHealth(t *testing.T, r *discoveryv3.DiscoveryResponse, cluster string) map[string]corev3.HealthStatus {
	t.Helper()
	out := map[string]corev3.HealthStatus{}
	for _, a := range r.GetResources() {
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := a.UnmarshalTo(cla); err != nil {
			t.Fatal(err)
		}
		if cla.GetClusterName() != cluster {
			continue
		}
		for _, loc := range cla.GetEndpoints() {
			for _, lb := range loc.GetLbEndpoints() {
				out[lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()] = lb.GetHealthStatus()
			}
		}
	}
	return out
}

// checkRegistryz: /debug/registryz shows the group and the entry.
func checkRegistryz(t *testing.T, srv *e2e.Server, entry string) {
	t.Helper()
	body := httpGet(t, "http://"+srv.HTTPAddr+"/debug/registryz")
	for _, want := range []string{`"workloadGroups"`, `"Name": "pg"`, "WorkloadEntry default/" + entry} {
		if !strings.Contains(body, want) {
			t.Errorf("/debug/registryz lacks %q", want)
		}
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return string(body)
}
